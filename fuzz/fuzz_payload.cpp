// Fuzzes the code that touches payload frames, all of them untrusted bytes:
//   - seppo::wire::item_spans (protocol/payload.cpp): the broker splits a chunk into items with it
//     when a worker died running the chunk;
//   - seppo::unpack_untrusted (include/seppo/convert.hpp): every msgpack decode of network bytes;
//   - seppo::detail::call_chunk<F> (include/seppo/module.hpp): what a worker runs on a TASK
//     payload, instantiated here for a few argument types as modules would write them;
//   - seppo::wire::count_failed (protocol/result_entry.cpp): what a worker reports of a RESULT
//     payload, read by a fast path when every entry is [0, scalar].
//
// The module functions below cover integer, string, floating point, container, tuple, struct
// (MSGPACK_DEFINE_MAP), msgpack::object and void signatures.
//
// Input layout: byte 0 chooses the item count item_spans is told to expect (0..0xef as is;
// 0xf0..0xff: the count is the next 4 bytes, big-endian); the rest is the payload.
//
// Checked: only seppo::Error leaves item_spans / unpack_untrusted; call_chunk never throws
// (it is noexcept: an escape would std::terminate) and returns 0 with a msgpack array of one
// [status, value] entry per item, or non-zero with a text message; spans tile the buffer; each
// span decodes on its own; item_spans agrees with unpack_untrusted on which payloads are arrays;
// count_failed is at most the count, and on an array of that many entries that unpack_untrusted
// accepts, it counts the entries entry::decode fails.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <map>
#include <sstream>
#include <stdexcept>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "seppo/msgpack.hpp"

#include "protocol/payload.hpp"
#include "protocol/result_entry.hpp"
#include "seppo/convert.hpp"
#include "seppo/error.hpp"
#include "seppo/module.hpp"

namespace {

[[noreturn]] void fail(const char* what, const std::string& detail = {}) {
  std::fprintf(stderr, "fuzz_payload: %s%s%s\n", what, detail.empty() ? "" : ": ",
               detail.c_str());
  std::abort();
}

// Module functions, written the way a module author would (see examples/example_module).
// square checks for overflow: the fuzzer must find bugs in seppo, not in this file.
std::int64_t square(std::int64_t x) {
  std::int64_t result = 0;
  if (__builtin_mul_overflow(x, x, &result)) throw std::overflow_error("square overflows");
  return result;
}
std::string greet(const std::string& name) { return "hello " + name; }
// msgpack-cxx 4.1.3 (Debian 12) packs a float or double that holds a whole number as an integer,
// and for exactly 2^64 its range check passes and it converts 2^64 to uint64_t: undefined
// behaviour (upstream removed the feature, msgpack-c PR #1144). Not seppo's bug, so the
// functions here refuse that one value rather than stop the fuzzer on it. See fuzz/README.md.
template <class F>
F packable(F x) {
  if (x == static_cast<F>(0x1p64)) throw std::domain_error("2^64 does not pack (msgpack-cxx 4.1.3)");
  return x;
}
double half(double x) { return packable(x / 2); }
std::uint32_t count_items(const std::vector<std::string>& items) {
  return static_cast<std::uint32_t>(items.size());
}
std::int64_t sum_values(const std::map<std::string, std::int64_t>& values) {
  std::int64_t sum = 0;
  for (const auto& [key, value] : values) {
    if (__builtin_add_overflow(sum, value, &sum)) throw std::overflow_error("sum overflows");
  }
  return sum;
}
// Like example_module's fail: prints any value (msgpack's operator<< walks the whole object).
msgpack::object describe(msgpack::object value) {
  std::ostringstream text;
  text << value;
  throw std::runtime_error(text.str());
}
void ignore(msgpack::object) {}
// Several arguments, as module.hpp suggests: a tuple (from an array) and a struct (from a map).
std::string join(const std::tuple<std::int64_t, std::string, double>& t) {
  return std::to_string(std::get<0>(t)) + std::get<1>(t) + std::to_string(std::get<2>(t));
}
struct Point {
  double x = 0;
  double y = 0;
  std::vector<std::uint8_t> tags;
  MSGPACK_DEFINE_MAP(x, y, tags);
};
Point mirror(Point p) {
  std::swap(p.x, p.y);
  packable(p.x);
  packable(p.y);
  return p;
}
float narrow(float x) { return packable(x); }

struct Sink {
  std::string bytes;
  seppo_sink sink{this, [](void* context, const char* data, std::size_t size) {
                    static_cast<Sink*>(context)->bytes.append(data, size);
                  }};
};

// Runs one instantiation and checks the module ABI's promises about its output.
void check_call(seppo_call_chunk call, const char* name, const char* data, std::size_t size) {
  Sink out;
  const int rc = call(data, size, &out.sink);  // noexcept: an escaping exception terminates
  if (rc != 0) {
    if (out.bytes.empty()) fail("call_chunk failed without a message", name);
    return;
  }
  // Success: a msgpack array with one [0, result] or [1, message] entry per input item.
  std::size_t items = 0;
  try {
    const msgpack::object_handle input = seppo::unpack_untrusted(data, size);
    items = input.get().via.array.size;
  } catch (const seppo::Error& e) {
    fail("call_chunk accepted input that unpack_untrusted refuses", std::string(name) + ": " + e.what());
  }
  msgpack::object_handle output;
  try {
    output = seppo::unpack_untrusted(out.bytes.data(), out.bytes.size());
  } catch (const seppo::Error& e) {
    fail("call_chunk wrote output that does not decode", std::string(name) + ": " + e.what());
  }
  const msgpack::object& array = output.get();
  if (array.type != msgpack::type::ARRAY || array.via.array.size != items) {
    fail("call_chunk output is not an array with one entry per item", name);
  }
  for (std::uint32_t i = 0; i < array.via.array.size; ++i) {
    const msgpack::object& entry = array.via.array.ptr[i];
    if (entry.type != msgpack::type::ARRAY || entry.via.array.size != 2 ||
        entry.via.array.ptr[0].type != msgpack::type::POSITIVE_INTEGER ||
        entry.via.array.ptr[0].via.u64 > 1) {
      fail("call_chunk output entry is not [0|1, value]", name);
    }
    if (entry.via.array.ptr[0].via.u64 == 1 && entry.via.array.ptr[1].type != msgpack::type::STR) {
      fail("call_chunk error entry does not carry a string", name);
    }
  }
}

void check_count_failed(const char* data, std::size_t size, std::uint32_t expected) {
  const std::uint32_t failed = seppo::wire::count_failed(data, size, expected);
  if (failed > expected) fail("count_failed counts more entries than there are");
  try {
    const msgpack::object_handle handle = seppo::unpack_untrusted(data, size);
    const msgpack::object& root = handle.get();
    if (root.type != msgpack::type::ARRAY || root.via.array.size != expected) return;
    std::uint32_t decoded = 0;
    for (std::uint32_t i = 0; i < expected; ++i) {
      if (seppo::entry::decode(root.via.array.ptr[i]).value == nullptr) ++decoded;
    }
    if (failed != decoded) fail("count_failed disagrees with entry::decode");
  } catch (const seppo::Error&) {
  }
}

void check_spans(const char* data, std::size_t size, std::uint32_t expected) {
  std::vector<seppo::wire::Span> spans;
  try {
    spans = seppo::wire::item_spans(data, size, expected);
  } catch (const seppo::Error&) {
    return;
  } catch (const std::exception& e) {
    fail("item_spans let a non-seppo exception escape", e.what());
  }
  if (spans.size() != expected) fail("item_spans returned the wrong number of spans");
  const unsigned char tag = static_cast<unsigned char>(data[0]);
  std::size_t offset = (tag & 0xf0) == 0x90 ? 1 : tag == 0xdc ? 3 : 5;
  for (const seppo::wire::Span& span : spans) {
    if (span.offset != offset || span.size == 0 || span.size > size - offset) {
      fail("item_spans returned spans that do not tile the buffer");
    }
    // An item is a complete msgpack value: it decodes alone, and as a one-item chunk (which is
    // how broker/core.cpp re-queues it).
    try {
      seppo::unpack_untrusted(data + span.offset, span.size);
      const std::string single = seppo::wire::single_item_array(data + span.offset, span.size);
      const auto one = seppo::wire::item_spans(single.data(), single.size(), 1);
      if (one.size() != 1 || one[0].offset != 1 || one[0].size != span.size) {
        fail("single_item_array does not round-trip through item_spans");
      }
    } catch (const seppo::Error& e) {
      fail("an item found by item_spans does not decode alone", e.what());
    }
    offset += span.size;
  }
  if (offset != size) fail("item_spans spans do not cover the buffer");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  std::uint32_t expected = data[0];
  std::size_t skip = 1;
  if (expected >= 0xf0) {
    if (size < 5) return 0;
    expected = (std::uint32_t(data[1]) << 24) | (std::uint32_t(data[2]) << 16) |
               (std::uint32_t(data[3]) << 8) | data[4];
    skip = 5;
  }
  // A copy of exactly the payload bytes, so ASan sees any read past its end.
  const std::vector<char> payload(data + skip, data + size);
  const char* p = payload.data();
  const std::size_t n = payload.size();

  check_spans(p, n, expected);
  check_count_failed(p, n, expected);

  // unpack_untrusted, and the differential check: an array it accepts has spans item_spans finds.
  try {
    const msgpack::object_handle handle = seppo::unpack_untrusted(p, n);
    const msgpack::object& root = handle.get();
    if (root.type == msgpack::type::ARRAY) {
      try {
        const auto spans = seppo::wire::item_spans(p, n, root.via.array.size);
        if (spans.size() != root.via.array.size) fail("item_spans disagrees with unpack_untrusted");
      } catch (const seppo::Error& e) {
        fail("item_spans refuses an array unpack_untrusted accepts", e.what());
      }
    }
  } catch (const seppo::Error&) {
  } catch (const std::exception& e) {
    fail("unpack_untrusted let a non-seppo exception escape", e.what());
  }

  check_call(&seppo::detail::call_chunk<&square>, "square", p, n);
  check_call(&seppo::detail::call_chunk<&greet>, "greet", p, n);
  check_call(&seppo::detail::call_chunk<&half>, "half", p, n);
  check_call(&seppo::detail::call_chunk<&count_items>, "count_items", p, n);
  check_call(&seppo::detail::call_chunk<&sum_values>, "sum_values", p, n);
  check_call(&seppo::detail::call_chunk<&describe>, "describe", p, n);
  check_call(&seppo::detail::call_chunk<&ignore>, "ignore", p, n);
  check_call(&seppo::detail::call_chunk<&join>, "join", p, n);
  check_call(&seppo::detail::call_chunk<&mirror>, "mirror", p, n);
  check_call(&seppo::detail::call_chunk<&narrow>, "narrow", p, n);
  return 0;
}
