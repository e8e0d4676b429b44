// Issue 22: whole-number floats are packed as msgpack floats (docs/protocol.md §5.3), however
// they reach the packer: a double, a float, a msgpack::object, inside a container.
#include <doctest/doctest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <string>
#include <tuple>
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

// Issue 22: Python's tuples (ext 2) and numpy arrays (ext 3) as C++ reads them (protocol.md §5.4).
TEST_CASE("seppo::convert reads a tuple as its array and an ndarray as nested numbers") {
  auto unpacked = [](const std::string& b) { return seppo::unpack_untrusted(b.data(), b.size()); };
  // (1, "a") = d6 02 92 01 a1 61, the example of docs/protocol.md §5.4.
  const auto tuple = unpacked(bytes({0xd6, 0x02, 0x92, 0x01, 0xa1, 0x61}));
  CHECK(seppo::holds_python_ext(tuple.get()));
  const auto pair = seppo::convert<std::tuple<int, std::string>>(tuple.get(), "argument");
  CHECK(std::get<0>(pair) == 1);
  CHECK(std::get<1>(pair) == "a");
  // float64 [1.0, 2.0] = ext 3 ["<f8", [2], bin 16], the example of §5.4.
  std::string array = bytes({0xc7, 0x19, 0x03, 0x93, 0xa3, '<', 'f', '8', 0x91, 0x02, 0xc4, 0x10});
  array += bytes({0, 0, 0, 0, 0, 0, 0xf0, 0x3f, 0, 0, 0, 0, 0, 0, 0, 0x40});
  const auto floats = unpacked(array);
  CHECK(seppo::convert<std::vector<double>>(floats.get(), "argument") ==
        std::vector<double>{1.0, 2.0});
  // int8 2x2 [[1, -2], [3, -4]].
  const auto ints = unpacked(bytes({0xc7, 0x0e, 0x03, 0x93, 0xa3, '|', 'i', '1', 0x92, 0x02, 0x02,
                                    0xc4, 0x04, 0x01, 0xfe, 0x03, 0xfc}));
  CHECK(seppo::convert<std::vector<std::vector<int>>>(ints.get(), "argument") ==
        std::vector<std::vector<int>>{{1, -2}, {3, -4}});
  // A shape that does not match the bytes, or an object dtype, is a TypeError, not a crash.
  const auto lying = unpacked(bytes({0xc7, 0x0e, 0x03, 0x93, 0xa3, '|', 'i', '1', 0x92, 0x7f, 0x7f,
                                     0xc4, 0x04, 0x01, 0xfe, 0x03, 0xfc}));
  CHECK_THROWS_AS(seppo::convert<std::vector<std::vector<int>>>(lying.get(), "argument"),
                  seppo::TypeError);
  // Empty arrays cost an object each: (65536, 0) in 14 bytes would build 65,537 of them.
  const auto empties = unpacked(bytes({0xc7, 0x0e, 0x03, 0x93, 0xa3, '|', 'i', '1', 0x92, 0xce,
                                       0x00, 0x01, 0x00, 0x00, 0x00, 0xc4, 0x00}));
  CHECK_THROWS(seppo::convert<std::vector<std::vector<int>>>(empties.get(), "argument"));
  const auto objects = unpacked(bytes({0xc7, 0x11, 0x03, 0x93, 0xa3, '|', 'O', '8', 0x91, 0x01,
                                       0xc4, 0x08, 1,    2,    3,    4,   5,   6,   7,    8}));
  CHECK_THROWS_AS(seppo::convert<std::vector<int>>(objects.get(), "argument"), seppo::TypeError);
  // msgpack::object gets the value as sent.
  CHECK(seppo::convert<msgpack::object>(tuple.get(), "argument").type == msgpack::type::EXT);
}
