// The wire protocol's encoder and decoder: every message round-trips, hostile bytes are refused
// with a message, never a crash or a huge allocation.
#include <doctest/doctest.h>

#include "protocol/payload.hpp"
#include "protocol/wire.hpp"
#include "seppo/convert.hpp"
#include "seppo/error.hpp"

using namespace seppo;

namespace {

template <class T>
T round_trip(const T& message) {
  const std::string bytes = wire::encode(message);
  wire::Message decoded = wire::decode(bytes.data(), bytes.size());
  REQUIRE(std::holds_alternative<T>(decoded));
  return std::get<T>(decoded);
}

wire::Message decode(const std::string& bytes) {
  return wire::decode(bytes.data(), bytes.size());
}

}  // namespace

TEST_CASE("every message type survives encoding and decoding") {
  const auto ready = round_trip(wire::Ready{"h, process 1", "h", 1, 2, {"m.a", "m.b"}});
  CHECK(ready.functions == std::vector<std::string>{"m.a", "m.b"});
  CHECK(ready.capacity == 2);
  CHECK(round_trip(wire::Task{5, "m.a", 3}).count == 3);
  CHECK(round_trip(wire::Result{5, 77}).elapsed_us == 77);
  CHECK(round_trip(wire::Result{5, 77}).items_failed == 0);
  CHECK(round_trip(wire::Result{5, 77, 3}).items_failed == 3);
  // Optional trailing fields (§4.1, §4.3): left out when empty or 0, so such a READY or RESULT is
  // byte for byte what an older peer sends; decoded as empty or 0 when absent.
  CHECK(wire::encode(wire::Result{17, 842}) == std::string("\x94\x01\x03\x11\xcd\x03\x4a", 7));
  CHECK(wire::encode(wire::Result{17, 842, 1}) ==
        std::string("\x95\x01\x03\x11\xcd\x03\x4a\x01", 8));
  CHECK(round_trip(wire::Ready{"n", "h", 1, 1, {"m.f"}, "0.1.0-3-gabc"}).version == "0.1.0-3-gabc");
  CHECK(round_trip(wire::Ready{"n", "h", 1, 1, {"m.f"}}).version.empty());
  CHECK(wire::encode(wire::Ready{"n", "h", 1, 1, {"m.f"}, "v"}).size() ==
        wire::encode(wire::Ready{"n", "h", 1, 1, {"m.f"}}).size() + 2);
  const auto submit = round_trip(wire::Submit{1ull << 40, "m.a", 1ull << 33, 9, 500});
  CHECK(submit.job_id == 1ull << 40);
  CHECK(submit.first == 1ull << 33);
  CHECK(submit.wait_ms == 500);
  CHECK(round_trip(wire::Deliver{1, 2, 3, "w", 4, 5}).seq == 5);
  CHECK(round_trip(wire::Failed{1, 2, 3, wire::Code::WorkerLost, "why", 6}).message == "why");
  CHECK(round_trip(wire::Done{8}).job_id == 8);
  CHECK(round_trip(wire::Heartbeat{8, 9, {1, 2}}).open == std::vector<std::uint64_t>{1, 2});
  CHECK(round_trip(wire::Alive{42, 1000, 3}).instance == 42);
  CHECK(round_trip(wire::Resync{8}).job_id == 8);
  CHECK(round_trip(wire::Resync{8}).instance == 0);
  CHECK(round_trip(wire::Resync{8, 0x8f3b2c1d4e5f6a7b}).instance == 0x8f3b2c1d4e5f6a7b);
  // Without an instance RESYNC is byte for byte what it was; with one, a trailing uint64.
  CHECK(wire::encode(wire::Resync{8}) == std::string("\x93\x01\x0a\x08", 4));
  CHECK(wire::encode(wire::Resync{8, 9}) == std::string("\x94\x01\x0a\x08\x09", 5));
  CHECK(round_trip(wire::Bye{"bye"}).reason == "bye");
  CHECK(round_trip(wire::Error{wire::Code::BadMessage, "x"}).code == wire::Code::BadMessage);
  round_trip(wire::StatusRequest{});
  round_trip(wire::Status{});
}

TEST_CASE("a header of another protocol version is refused by name") {
  std::string bytes = wire::encode(wire::Done{1});
  bytes[1] = 2;  // [version=2, ...]
  REQUIRE_THROWS_WITH_AS(decode(bytes), doctest::Contains("unsupported protocol version"),
                         ProtocolError);
}

TEST_CASE("an unknown message type is refused") {
  const std::string bytes = "\x92\x01\x63";  // [1, 99]
  REQUIRE_THROWS_WITH_AS(decode(bytes), "unknown message type", ProtocolError);
}

TEST_CASE("a header with a missing field names the message") {
  const std::string bytes = "\x93\x01\x07";  // DONE without job id... and one byte short
  CHECK_THROWS_AS(decode(bytes), ProtocolError);
  const std::string short_done = "\x92\x01\x07";  // [1, 7]
  REQUIRE_THROWS_WITH_AS(decode(short_done), "DONE: expected 3 header fields, got 2",
                         ProtocolError);
}

TEST_CASE("a field of the wrong type is named") {
  const std::string bytes = "\x93\x01\x07\xa1x";  // [1, 7, "x"]
  REQUIRE_THROWS_WITH_AS(decode(bytes), "DONE: field job_id: expected unsigned integer, got string",
                         ProtocolError);
}

TEST_CASE("a declared four-billion-element array is refused without allocating it") {
  CHECK_THROWS_AS(decode(std::string("\xdd\xff\x00\x00\x00", 5)), ProtocolError);
  CHECK_THROWS_AS(unpack_untrusted("\xdd\xff\xff\xff\xff", 5), ProtocolError);
  CHECK_THROWS_AS(unpack_untrusted("\xdf\xff\xff\xff\xff", 5), ProtocolError);
  CHECK_THROWS_AS(unpack_untrusted("\xdb\xff\xff\xff\xff", 5), ProtocolError);
}

TEST_CASE("deep nesting is refused") {
  const std::string deep(100000, '\x91');
  CHECK_THROWS_AS(unpack_untrusted(deep.data(), deep.size()), ProtocolError);
}

TEST_CASE("truncated msgpack and trailing bytes are refused") {
  const std::string bytes = wire::encode(wire::Ready{"n", "h", 1, 1, {"m.f"}});
  CHECK_THROWS_AS(decode(bytes.substr(0, bytes.size() - 1)), ProtocolError);
  CHECK_THROWS_AS(decode(bytes + "x"), ProtocolError);
  CHECK_THROWS_AS(decode(""), ProtocolError);
}

TEST_CASE("an oversized header is refused before decoding") {
  const std::string big(wire::kMaxHeaderBytes + 1, '\xc0');
  REQUIRE_THROWS_WITH_AS(decode(big), doctest::Contains("exceeds the limit"), ProtocolError);
}

TEST_CASE("a payload's item boundaries are found without decoding into objects") {
  msgpack::sbuffer buffer;
  msgpack::packer<msgpack::sbuffer> p(buffer);
  p.pack_array(3).pack(1).pack(std::string("two")).pack(std::vector<int>{3, 3, 3});
  const auto spans = wire::item_spans(buffer.data(), buffer.size(), 3);
  REQUIRE(spans.size() == 3);
  const std::string single =
      wire::single_item_array(buffer.data() + spans[1].offset, spans[1].size);
  const auto handle = unpack_untrusted(single.data(), single.size());
  CHECK(handle.get().via.array.ptr[0].as<std::string>() == "two");
  CHECK_THROWS_AS(wire::item_spans(buffer.data(), buffer.size(), 4), ProtocolError);
  CHECK_THROWS_AS(wire::item_spans("\xdd\xff\x00\x00\x00", 5, 0xff000000u), ProtocolError);
}

TEST_CASE("an array32 header written afterwards decodes as the count") {
  char header[wire::kArray32HeaderSize];
  wire::write_array32_header(header, 70000);
  std::string bytes(header, sizeof header);
  for (int i = 0; i < 70000; ++i) bytes.push_back('\x01');
  CHECK(unpack_untrusted(bytes.data(), bytes.size()).get().via.array.size == 70000);
}

TEST_CASE("ALIVE's optional max_message_bytes travels when set and is 0 from an older broker") {
  const std::string with = wire::encode(wire::Alive{7, 1000, 3, 268435456});
  CHECK(static_cast<unsigned char>(with[0]) == 0x96);  // array(6): the trailing field is there
  const auto alive = std::get<wire::Alive>(decode(with));
  CHECK(alive.max_message_bytes == 268435456u);
  const std::string without = wire::encode(wire::Alive{7, 1000, 3});
  CHECK(static_cast<unsigned char>(without[0]) == 0x95);  // unchanged for older peers
  CHECK(std::get<wire::Alive>(decode(without)).max_message_bytes == 0);
}

TEST_CASE("TASK and DELIVER encoded from views are the bytes of the messages encoded") {
  CHECK(wire::encode_task(1ull << 40, "example_module.square", 3) ==
        wire::encode(wire::Task{1ull << 40, "example_module.square", 3}));
  CHECK(wire::encode_deliver(1, 1ull << 33, 9, "host, process 12", 77, 5) ==
        wire::encode(wire::Deliver{1, 1ull << 33, 9, "host, process 12", 77, 5}));
  const std::string name(300, 'n');  // str16
  CHECK(wire::encode_task(5, name, 1) == wire::encode(wire::Task{5, name, 1}));
}

TEST_CASE("headers in every integer and string width decode as msgpack-c reads them") {
  msgpack::sbuffer buffer;
  msgpack::packer<msgpack::sbuffer> p(buffer);
  // SUBMIT with fields in wider encodings than needed, signed ones >= 0 and a str8 name.
  p.pack_array(8).pack_uint8(1).pack_int16(4).pack_uint64(7).pack_str(3);
  p.pack_str_body("m.f", 3);
  p.pack_int64(1ull << 40).pack_uint32(2).pack_int8(0).pack_uint16(65535);
  const auto submit = std::get<wire::Submit>(decode(std::string(buffer.data(), buffer.size())));
  CHECK(submit.job_id == 7);
  CHECK(submit.function == "m.f");
  CHECK(submit.first == 1ull << 40);
  CHECK(submit.count == 2);
  CHECK(submit.wait_ms == 0);
  CHECK(submit.item_timeout_ms == 65535);
  // Negative integers are refused where unsigned ones belong, in every width.
  for (const std::string& bytes :
       {std::string("\x93\x01\x07\xff"), std::string("\x93\x01\x07\xd0\x80"),
        std::string("\x93\x01\x07\xd3\xff\xff\xff\xff\xff\xff\xff\xff")}) {
    REQUIRE_THROWS_WITH_AS(
        decode(bytes), "DONE: field job_id: expected unsigned integer, got integer", ProtocolError);
  }
  // More values than the quick reader holds, and a map: msgpack-c's parser decides.
  std::vector<std::uint64_t> open(500);
  for (std::size_t i = 0; i < open.size(); ++i) open[i] = i * 1000;
  CHECK(round_trip(wire::Heartbeat{8, 9, open}).open == open);
  REQUIRE_THROWS_WITH_AS(decode("\x93\x01\x07\x80"),
                         "DONE: field job_id: expected unsigned integer, got map", ProtocolError);
}

TEST_CASE("the quick header reader reads scalars as msgpack-c does") {
  // protocol/msgpack_reader.hpp reads every scalar kind (issue 27 §4: one reader for headers,
  // payloads and DELIVERs); a header field of the wrong kind is named as msgpack-c names it.
  const std::pair<std::string, const char*> cases[] = {
      {std::string("\x93\x01\x07\xc0", 4), "nil"},
      {std::string("\x93\x01\x07\xc3", 4), "boolean"},
      {std::string("\x93\x01\x07\xca\x3f\x80\x00\x00", 8), "float"},
      {std::string("\x93\x01\x07\xcb\x40\x00\x00\x00\x00\x00\x00\x00", 12), "float"},
      {std::string("\x93\x01\x07\xc4\x01\x61", 6), "binary"},
      {std::string("\x93\x01\x07\xd9\x01\x61", 6), "string"},
  };
  for (const auto& [bytes, kind] : cases) {
    const std::string expected =
        std::string("DONE: field job_id: expected unsigned integer, got ") + kind;
    REQUIRE_THROWS_WITH_AS(decode(bytes), expected.c_str(), ProtocolError);
    // The same bytes through msgpack-c's parser alone.
    const msgpack::object_handle slow = seppo::unpack_untrusted(bytes.data(), bytes.size());
    CHECK(std::string(seppo::type_name(slow.get().via.array.ptr[2].type)) == kind);
  }
  // Truncated scalars are left to msgpack-c, which refuses them.
  for (const std::string& bytes :
       {std::string("\x93\x01\x07\xcb\x40", 5), std::string("\x93\x01\x07\xc4\x05\x61", 6)}) {
    REQUIRE_THROWS_AS(decode(bytes), ProtocolError);
  }
}
