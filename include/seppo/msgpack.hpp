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

// Not all of <msgpack.hpp> (issue 27 §5): its object, packer, unpacker and the adaptors of the
// types a user's inputs and results are made of. Left out, for what they add to every program
// including seppo: std::complex (<complex> and <cmath> alone were 10,000 lines) and the parts no
// user calls (vrefbuffer, iterator, tr1, boost). <seppo/seppo.hpp> is 126,482 preprocessed lines
// with g++ 12 and -DMSGPACK_NO_BOOST (137,406 with all of it; tests/ops/public_headers.sh).
// <seppo/msgpack_all.hpp> has them all.
#include <msgpack/null_visitor.hpp>
#include <msgpack/object.hpp>
#include <msgpack/pack.hpp>
#include <msgpack/sbuffer.hpp>
#include <msgpack/unpack.hpp>
#include <msgpack/version.hpp>
#include <msgpack/zone.hpp>

#include <msgpack/adaptor/array_ref.hpp>
#include <msgpack/adaptor/bool.hpp>
#include <msgpack/adaptor/carray.hpp>
#include <msgpack/adaptor/char_ptr.hpp>
#include <msgpack/adaptor/cpp11/array.hpp>
#include <msgpack/adaptor/cpp11/array_char.hpp>
#include <msgpack/adaptor/cpp11/array_unsigned_char.hpp>
#include <msgpack/adaptor/cpp11/chrono.hpp>
#include <msgpack/adaptor/cpp11/reference_wrapper.hpp>
#include <msgpack/adaptor/cpp11/shared_ptr.hpp>
#include <msgpack/adaptor/cpp11/timespec.hpp>
#include <msgpack/adaptor/cpp11/tuple.hpp>
#include <msgpack/adaptor/cpp11/unique_ptr.hpp>
#include <msgpack/adaptor/cpp11/forward_list.hpp>
#include <msgpack/adaptor/cpp11/unordered_map.hpp>
#include <msgpack/adaptor/cpp11/unordered_set.hpp>
#include <msgpack/adaptor/cpp17/array_byte.hpp>
#include <msgpack/adaptor/cpp17/byte.hpp>
#include <msgpack/adaptor/cpp17/carray_byte.hpp>
#include <msgpack/adaptor/cpp17/optional.hpp>
#include <msgpack/adaptor/cpp17/string_view.hpp>
#include <msgpack/adaptor/cpp17/vector_byte.hpp>
#include <msgpack/adaptor/define.hpp>
#include <msgpack/adaptor/deque.hpp>
#include <msgpack/adaptor/ext.hpp>
#include <msgpack/adaptor/fixint.hpp>
#include <msgpack/adaptor/float.hpp>
#include <msgpack/adaptor/int.hpp>
#include <msgpack/adaptor/list.hpp>
#include <msgpack/adaptor/map.hpp>
#include <msgpack/adaptor/msgpack_tuple.hpp>
#include <msgpack/adaptor/nil.hpp>
#include <msgpack/adaptor/pair.hpp>
#include <msgpack/adaptor/raw.hpp>
#include <msgpack/adaptor/set.hpp>
#include <msgpack/adaptor/size_equal_only.hpp>
#include <msgpack/adaptor/string.hpp>
#include <msgpack/adaptor/v4raw.hpp>
#include <msgpack/adaptor/vector.hpp>
#include <msgpack/adaptor/vector_bool.hpp>
#include <msgpack/adaptor/vector_char.hpp>
#include <msgpack/adaptor/vector_unsigned_char.hpp>
#include <msgpack/adaptor/wstring.hpp>
#include <msgpack/adaptor/cpp20/span.hpp>

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
