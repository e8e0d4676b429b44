// The client's quick reader of DELIVER payloads (libclient/scalar_entries.hpp) must agree with
// msgpack's own decoder on every payload it accepts, and hand the rest to it.
#include <doctest/doctest.h>

#include <cmath>
#include <limits>
#include <random>

#include "seppo/msgpack.hpp"

#include "libclient/scalar_entries.hpp"
#include "seppo/convert.hpp"
#include "seppo/result_entry.hpp"

using seppo::client::decode_scalar_entries;

namespace {

using Packer = msgpack::packer<msgpack::sbuffer>;

// The same object, as the CLI and the conversions read it.
bool same(const msgpack::object& a, const msgpack::object& b) {
  if (a.type != b.type) return false;
  if (a.type == msgpack::type::FLOAT32 || a.type == msgpack::type::FLOAT64) {
    return std::isnan(a.via.f64) ? std::isnan(b.via.f64) : a.via.f64 == b.via.f64;
  }
  return a == b;
}

// Decodes `payload` both ways; true when the quick reader took it (and then agreed).
bool agrees(const msgpack::sbuffer& payload, std::uint32_t count) {
  std::vector<msgpack::object> values;
  if (!decode_scalar_entries(payload.data(), payload.size(), count, values)) return false;
  const msgpack::object_handle all = seppo::unpack_untrusted(payload.data(), payload.size());
  REQUIRE(all.get().type == msgpack::type::ARRAY);
  REQUIRE(all.get().via.array.size == count);
  REQUIRE(values.size() == count);
  std::uint32_t differ = 0;  // counted, not checked one by one: 70,000 assertions are slow
  for (std::uint32_t i = 0; i < count; ++i) {
    const seppo::entry::Decoded d = seppo::entry::decode(all.get().via.array.ptr[i]);
    if (d.value == nullptr || !same(values[i], *d.value)) ++differ;
  }
  CHECK(differ == 0);
  return true;
}

}  // namespace

TEST_CASE("scalar result entries read quickly decode as msgpack decodes them") {
  std::mt19937_64 random(16);
  for (std::uint32_t count : {0u, 1u, 15u, 16u, 70000u}) {
    msgpack::sbuffer buffer;
    Packer p(buffer);
    p.pack_array(count);
    for (std::uint32_t i = 0; i < count; ++i) {
      seppo::entry::begin_value(p);
      const std::uint64_t r = random();
      switch (i % 12) {
        case 0:
          p.pack(r);
          break;
        case 1:
          p.pack(static_cast<std::int64_t>(r));
          break;
        case 2:
          p.pack(static_cast<std::int64_t>(r % 300) - 150);
          break;
        case 3:
          p.pack(static_cast<std::int32_t>(r));
          break;
        case 4:
          p.pack(static_cast<std::int16_t>(r));
          break;
        case 5:
          p.pack(static_cast<double>(r) / 7.0);
          break;
        case 6:
          p.pack(static_cast<float>(r % 1000) / 3.0f);
          break;
        case 7:
          p.pack(std::string(r % 40, 'x'));
          break;
        case 8:
          p.pack(std::string(i == 8 ? 70000 : r % 300, 'y'));  // str8, str16, str32
          break;
        case 9:
          p.pack_nil();
          break;
        case 10:
          p.pack(r % 2 == 0);
          break;
        default: {
          const std::string bytes(r % 300, '\x01');
          p.pack_bin(static_cast<std::uint32_t>(bytes.size()));
          p.pack_bin_body(bytes.data(), static_cast<std::uint32_t>(bytes.size()));
        }
      }
    }
    CHECK(agrees(buffer, count));
  }
  // Signed encodings of non-negative values and the extremes.
  msgpack::sbuffer buffer;
  Packer p(buffer);
  p.pack_array(6);
  for (const std::int64_t v :
       {std::int64_t{0}, std::int64_t{-1}, std::int64_t{-32}, std::int64_t{-33},
        std::numeric_limits<std::int64_t>::min(), std::numeric_limits<std::int64_t>::max()}) {
    seppo::entry::begin_value(p);
    p.pack_int64(v);
  }
  CHECK(agrees(buffer, 6));
}

TEST_CASE("payloads that are not all scalar successes go to the general decoder") {
  std::vector<msgpack::object> values;
  const auto quick = [&](const msgpack::sbuffer& b, std::uint32_t count) {
    return decode_scalar_entries(b.data(), b.size(), count, values);
  };
  msgpack::sbuffer error_entry;
  Packer e(error_entry);
  e.pack_array(1);
  seppo::entry::pack_error(e, "boom");
  CHECK_FALSE(quick(error_entry, 1));

  msgpack::sbuffer nested;
  Packer n(nested);
  n.pack_array(1);
  seppo::entry::begin_value(n);
  n.pack(std::vector<int>{1, 2});
  CHECK_FALSE(quick(nested, 1));

  msgpack::sbuffer two;
  Packer t(two);
  t.pack_array(2);
  for (int i = 0; i < 2; ++i) {
    seppo::entry::begin_value(t);
    t.pack(i);
  }
  CHECK(quick(two, 2));
  CHECK_FALSE(quick(two, 3));  // not the count the DELIVER announced
  for (std::size_t cut = 0; cut < two.size(); ++cut) {
    CHECK_FALSE(decode_scalar_entries(two.data(), cut, 2, values));  // truncated
  }
  std::string trailing(two.data(), two.size());
  trailing += '\x00';
  CHECK_FALSE(decode_scalar_entries(trailing.data(), trailing.size(), 2, values));
  // A string longer than the bytes present, and an array count no bytes could hold.
  const char long_string[] = {'\x91', '\x92', '\x00', '\xdb', '\x7f', '\xff', '\xff', '\xff'};
  CHECK_FALSE(decode_scalar_entries(long_string, sizeof long_string, 1, values));
  const char huge_count[] = {'\xdd', '\x7f', '\xff', '\xff', '\xff'};
  CHECK_FALSE(decode_scalar_entries(huge_count, sizeof huge_count, 0x7fffffff, values));
}
