// Fuzzes seppo::wire::decode, the decoder of every header frame the broker, worker and client
// receive. Contract under test (protocol/wire.hpp): decode either returns a Message or throws
// seppo::ProtocolError (a seppo::Error); anything else escaping (std::bad_alloc, msgpack errors,
// std::out_of_range...) or any sanitizer report is a bug.
//
// When a header decodes, it must survive a round trip: encode(m) decodes again, to the same
// type, and re-encoding that gives the same bytes. encode writes the shortest msgpack forms and
// drops the extra trailing fields decode tolerates, so it is never longer than the input, but
// for one documented substitution: a FAILED or ERROR code this program does not know decodes as
// "no code" (docs/protocol.md row C8) and is written back as "unknown", which may be longer than
// the name it replaced.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <optional>
#include <string>
#include <variant>

#include "protocol/bytes.hpp"
#include "protocol/wire.hpp"
#include "seppo/error.hpp"

namespace {

[[noreturn]] void fail(const char* what, const std::string& detail = {}) {
  std::fprintf(stderr, "fuzz_wire_decode: %s%s%s\n", what, detail.empty() ? "" : ": ",
               detail.c_str());
  std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  namespace wire = seppo::wire;
  wire::Message message;
  try {
    message = wire::decode(data, size);
  } catch (const seppo::Error&) {
    return 0;  // the documented way to refuse a header
  } catch (const std::exception& e) {
    fail("decode let a non-seppo exception escape", e.what());
  }

  // A batched message (§4.17-§4.20) is split against a payload: the input's own bytes, whose
  // size the sizes it lists may or may not add up to. Parts, or seppo::ProtocolError; each
  // part within the payload.
  const seppo::Bytes payload = seppo::Bytes::copy(data, size);
  try {
    const auto check = [&](const seppo::Bytes& part) {
      if (part.size() > 0 && (part.data() < payload.data() ||
                              part.data() + part.size() > payload.data() + payload.size())) {
        fail("a batched part lies outside its payload");
      }
    };
    if (const auto* tasks = std::get_if<wire::Tasks>(&message)) {
      for (const wire::BatchedTask& part : wire::split(*tasks, payload)) check(part.payload);
    } else if (const auto* results = std::get_if<wire::Results>(&message)) {
      for (const wire::BatchedResult& part : wire::split(*results, payload)) check(part.payload);
    } else if (const auto* delivers = std::get_if<wire::Delivers>(&message)) {
      for (const wire::BatchedDeliver& part : wire::split(*delivers, payload)) {
        check(part.payload);
      }
    } else if (const auto* submits = std::get_if<wire::Submits>(&message)) {
      for (const wire::BatchedSubmit& part : wire::split(*submits, payload)) {
        check(part.payload);
        if (part.submit.count == 0 || part.submit.count > wire::kMaxChunkItems) {
          fail("a SUBMITS part's count is outside 1..2^20");
        }
      }
    }
  } catch (const seppo::Error&) {
  } catch (const std::exception& e) {
    fail("split let a non-seppo exception escape", e.what());
  }

  const wire::Type type = wire::type_of(message);
  if (std::strcmp(wire::type_name(type), "UNKNOWN") == 0) fail("decode produced an unknown type");

  std::string once;
  wire::Message again;
  try {
    once = wire::encode(message);
    again = wire::decode(once.data(), once.size());
  } catch (const std::exception& e) {
    fail("re-decoding an encoded message failed", e.what());
  }
  if (wire::type_of(again) != type) fail("round trip changed the message type");
  const std::string twice = wire::encode(again);
  if (twice != once) fail("round trip changed the message fields");
  std::size_t allowed = size;
  if (const auto* failed = std::get_if<wire::Failed>(&message); failed && !failed->code) {
    allowed += wire::code_name(std::nullopt).size() + 1;
  }
  if (const auto* error = std::get_if<wire::Error>(&message); error && !error->code) {
    allowed += wire::code_name(std::nullopt).size() + 1;
  }
  if (once.size() > allowed) {
    fail("encode wrote a longer header than the one decoded",
         std::to_string(once.size()) + " > " + std::to_string(size));
  }
  return 0;
}
