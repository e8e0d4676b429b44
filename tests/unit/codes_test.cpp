// The protocol's codes and result entries have one owner (protocol/, seppo/result_entry.hpp):
// every code round-trips through its wire name, and entries decode as docs/protocol.md §5.2 says.
#include <doctest/doctest.h>

#include "protocol/codes.hpp"
#include "protocol/result_entry.hpp"
#include "protocol/wire.hpp"
#include "seppo/convert.hpp"

using namespace seppo;

TEST_CASE("every code round-trips through its wire name, and unknown names match none") {
  for (const auto& [code, name] : wire::kCodeNames) {
    CHECK(wire::to_wire(code) == name);
    CHECK(wire::code_from_wire(name) == code);
  }
  CHECK(wire::to_wire(wire::Code::OverLimit) == "over_limit");
  CHECK(wire::to_wire(wire::Code::NotReady) == "not_ready");
  CHECK_FALSE(wire::code_from_wire("no_such_code"));
  CHECK_FALSE(wire::is("forbidden ", wire::Code::Forbidden));
}

TEST_CASE("type_of names the type each message is encoded with") {
  const std::string bytes = wire::encode(wire::Credit{4});
  CHECK(wire::type_of(wire::decode(bytes.data(), bytes.size())) == wire::Type::Credit);
  CHECK(wire::type_of(wire::Ready{}) == wire::Type::Ready);
  CHECK(wire::kLastType == wire::Type::Submits);  // TASKS, RESULTS, DELIVERS, SUBMITS: issue 28
}

TEST_CASE("result entries decode to a value, an item error, or a malformed entry") {
  msgpack::sbuffer buffer;
  msgpack::packer<msgpack::sbuffer> packer(buffer);
  packer.pack_array(4);
  entry::begin_value(packer);
  packer.pack(42);
  entry::pack_error(packer, "boom");
  packer.pack_array(2).pack(1).pack(7);  // an error without a message
  packer.pack(3);                        // not an entry at all
  const msgpack::object_handle handle = unpack_untrusted(buffer.data(), buffer.size());
  const msgpack::object* e = handle.get().via.array.ptr;
  const entry::Decoded value = entry::decode(e[0]);
  REQUIRE(value.value != nullptr);
  CHECK(value.value->as<int>() == 42);
  CHECK(entry::decode(e[1]).error == "boom");
  CHECK(entry::decode(e[1]).value == nullptr);
  CHECK(entry::decode(e[2]).error == "error without a message");
  CHECK(entry::decode(e[3]).error == "malformed result entry");
}

TEST_CASE("a payload of all-failed entries holds one error entry per item") {
  const std::string payload = wire::all_failed(3, "cannot run");
  const msgpack::object_handle handle = unpack_untrusted(payload.data(), payload.size());
  REQUIRE(handle.get().via.array.size == 3);
  for (std::uint32_t i = 0; i < 3; ++i) {
    CHECK(entry::decode(handle.get().via.array.ptr[i]).error == "cannot run");
  }
}

TEST_CASE("count_failed counts the entries a client reads as failed, in one pass") {
  msgpack::sbuffer buffer;
  msgpack::packer<msgpack::sbuffer> packer(buffer);
  packer.pack_array(7);
  entry::begin_value(packer);
  packer.pack(42);
  entry::pack_error(packer, "boom");
  entry::begin_value(packer);  // a value that is itself an array holding [1, "x"]
  packer.pack_array(2).pack(1).pack("x");
  packer.pack_array(2).pack(1).pack(7);          // an error without a message
  packer.pack(3);                                // not an entry at all
  packer.pack_array(3).pack(0).pack(1).pack(2);  // three elements: malformed
  entry::begin_value(packer);                    // a map value
  packer.pack_map(1).pack(1).pack(1);
  CHECK(wire::count_failed(buffer.data(), buffer.size(), 7) == 4);
  // Not `count` entries, truncated, trailing bytes, not an array: every item counts as failed.
  CHECK(wire::count_failed(buffer.data(), buffer.size(), 6) == 6);
  CHECK(wire::count_failed(buffer.data(), buffer.size() - 1, 7) == 7);
  const std::string trailing = std::string(buffer.data(), buffer.size()) + '\x01';
  CHECK(wire::count_failed(trailing.data(), trailing.size(), 7) == 7);
  CHECK(wire::count_failed("\x05", 1, 2) == 2);
  const std::string all = wire::all_failed(3, "cannot run");
  CHECK(wire::count_failed(all.data(), all.size(), 3) == 3);
  CHECK(wire::count_failed("\x92\x92\x00\xc0\x92\x00\x01", 7, 2) == 0);
  // A tag 0 in a signed encoding (int8, int16: another msgpack library's choice) is a success,
  // as entry::decode reads it; a signed -1 is not (it counted as failed before).
  CHECK(wire::count_failed("\x92\x92\xd0\x00\xc0\x92\xd1\x00\x00\x01", 10, 2) == 0);
  CHECK(wire::count_failed("\x91\x92\xd0\xff\xc0", 5, 1) == 1);

  // The usual payload, every entry a success with a scalar, is read by a fast path: the same
  // answers, cut short, with a wrong count or trailing bytes too.
  msgpack::sbuffer scalars;
  msgpack::packer<msgpack::sbuffer> s(scalars);
  s.pack_array(11);
  for (const std::int64_t v : {std::int64_t{0}, std::int64_t{-1}, std::int64_t{1} << 40}) {
    entry::begin_value(s);
    s.pack(v);
  }
  entry::begin_value(s);
  s.pack(2.5);
  entry::begin_value(s);
  s.pack(std::string(300, 'x'));
  entry::pack_nil(s);
  entry::begin_value(s);
  s.pack(true);
  entry::begin_value(s);
  s.pack_bin(2).pack_bin_body("\x01\x02", 2);
  for (const std::int64_t v : {std::int64_t{-200}, std::int64_t{40000}}) {
    entry::begin_value(s);
    s.pack(v);
  }
  entry::begin_value(s);
  s.pack(std::string(40, 'y'));
  CHECK(wire::count_failed(scalars.data(), scalars.size(), 11) == 0);
  CHECK(wire::count_failed(scalars.data(), scalars.size(), 10) == 10);
  CHECK(wire::count_failed(scalars.data(), scalars.size() - 1, 11) == 11);
  const std::string longer = std::string(scalars.data(), scalars.size()) + '\x00';
  CHECK(wire::count_failed(longer.data(), longer.size(), 11) == 11);
  // A string whose length runs past the payload's end.
  CHECK(wire::count_failed("\x91\x92\x00\xd9\x05"
                           "ab",
                           7, 1) == 1);
}
