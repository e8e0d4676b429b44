// msgpack-cxx as seppo uses it: include this header, never <msgpack.hpp> directly.
//
// msgpack-cxx 4.x packs a whole-number double (2.0, -0.0, 1e15) as a msgpack *integer*
// (packer::pack_double and pack_float check `d == double(int64_t(d))`), so a float sent as 2.0
// arrives as the int 2: Python gets an int, numpy.array(results) becomes int64, JSON prints 2.
// seppo's wire contract (docs/protocol.md §5) is that a float is always a float: 64-bit floats
// are packed as msgpack float 64 (0xcb) and 32-bit floats as float 32 (0xca), whatever their value.
//
// The explicit specializations below replace those two members for packer<sbuffer>, the packer
// seppo and its modules use. An explicit specialization must be seen before the first use in every
// translation unit, which is why every seppo source (and seppo/module.hpp, seppo/client.hpp,
// seppo/convert.hpp for users' modules) includes <msgpack.hpp> only through this header; the test
// `msgpack_include` checks that no other file includes <msgpack.hpp> or <msgpack/...> itself.
#pragma once

#include <cstdint>
#include <cstring>

#include "seppo/export.hpp"  // first: says so when the compiler is not in C++20 mode

#include <msgpack.hpp>

namespace msgpack {
MSGPACK_API_VERSION_NAMESPACE(v1) {
  template <>
  inline packer<sbuffer>& packer<sbuffer>::pack_double(double d) {
    std::uint64_t bits = 0;
    std::memcpy(&bits, &d, sizeof bits);
    char buf[9];
    buf[0] = static_cast<char>(0xcbu);
    for (int i = 0; i < 8; ++i) buf[1 + i] = static_cast<char>((bits >> (56 - 8 * i)) & 0xffu);
    append_buffer(buf, sizeof buf);
    return *this;
  }

  template <>
  inline packer<sbuffer>& packer<sbuffer>::pack_float(float d) {
    std::uint32_t bits = 0;
    std::memcpy(&bits, &d, sizeof bits);
    char buf[5];
    buf[0] = static_cast<char>(0xcau);
    for (int i = 0; i < 4; ++i) buf[1 + i] = static_cast<char>((bits >> (24 - 8 * i)) & 0xffu);
    append_buffer(buf, sizeof buf);
    return *this;
  }

}  // MSGPACK_API_VERSION_NAMESPACE(v1)
}  // namespace msgpack
