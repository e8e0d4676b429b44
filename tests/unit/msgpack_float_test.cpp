// Issue 22: whole-number floats are packed as msgpack floats (docs/protocol.md §5.3), however
// they reach the packer: a double, a float, a msgpack::object, inside a container.
#include <doctest/doctest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "seppo/convert.hpp"
#include "seppo/msgpack.hpp"

namespace {

template <class T>
std::string packed(const T& value) {
  msgpack::sbuffer buffer;
  msgpack::pack(buffer, value);
  return std::string(buffer.data(), buffer.size());
}

std::string bytes(std::initializer_list<unsigned char> list) {
  return std::string(list.begin(), list.end());
}

}  // namespace

TEST_CASE("whole-number doubles and floats are packed as msgpack floats") {
  CHECK(packed(2.0) == bytes({0xcb, 0x40, 0, 0, 0, 0, 0, 0, 0}));
  CHECK(packed(-0.0) == bytes({0xcb, 0x80, 0, 0, 0, 0, 0, 0, 0}));
  CHECK(packed(2.0f) == bytes({0xca, 0x40, 0, 0, 0}));
  CHECK(packed(2.5) == bytes({0xcb, 0x40, 0x04, 0, 0, 0, 0, 0, 0}));
  CHECK(packed(std::int64_t{2}) == bytes({0x02}));
  msgpack::object object(2.0);
  CHECK(object.type == msgpack::type::FLOAT64);
  CHECK(packed(object) == packed(2.0));
  CHECK(packed(std::vector<double>{1.0, 3.0}) ==
        bytes({0x92, 0xcb, 0x3f, 0xf0, 0, 0, 0, 0, 0, 0, 0xcb, 0x40, 0x08, 0, 0, 0, 0, 0, 0}));
}

TEST_CASE("floats round-trip with their type and bits") {
  for (double d :
       {0.0, -0.0, 1.0, -3.0, 1e15, 9007199254740993.0, 18446744073709551616.0,
        std::numeric_limits<double>::infinity(), std::numeric_limits<double>::quiet_NaN(),
        std::numeric_limits<double>::denorm_min()}) {
    const std::string b = packed(d);
    msgpack::object_handle h = seppo::unpack_untrusted(b.data(), b.size());
    CHECK(h.get().type == msgpack::type::FLOAT64);
    const double back = h.get().via.f64;
    CHECK(std::memcmp(&back, &d, sizeof d) == 0);
  }
}
