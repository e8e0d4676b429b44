// Python values <-> msgpack: the one conversion shared by the `seppo` extension (client) and
// seppo-worker's Python functions, so both directions accept and produce the same types.
//
//   None <-> nil, bool <-> bool, int (64-bit) <-> integer, float <-> float, str <-> str,
//   bytes/bytearray -> bin -> bytes, list <-> array, tuple <-> ext 2 (its array), dict <-> map.
//
// Anything else (a set, an object, an int over 64 bits, a cycle) is a seppo::TypeError that
// names the type and the item, never a crash.
#pragma once

#include <pybind11/pybind11.h>

#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>
#include <string>

#include "seppo/convert.hpp"
#include "seppo/msgpack.hpp"

namespace seppo::python {

// Builds a msgpack object in `zone` from `value`; `item` names the value in errors (for
// example "item 3"), and is called only on failure: the hot path makes no string. `bytes` grows by
// the size of its strings, so callers can bound batches. Throws seppo::TypeError. Needs the GIL.
msgpack::object to_msgpack(pybind11::handle value, msgpack::zone& zone,
                           const std::function<std::string()>& item, std::size_t& bytes);

// Packs a converted value: scalars (most values) straight to the packer, which writes the same
// bytes as msgpack's generic object walk at a fraction of its cost.
template <class Packer>
void pack_converted(Packer& packer, const msgpack::object& value) {
  switch (value.type) {
    case msgpack::type::POSITIVE_INTEGER:
      packer.pack_uint64(value.via.u64);
      break;
    case msgpack::type::NEGATIVE_INTEGER:
      packer.pack_int64(value.via.i64);
      break;
    case msgpack::type::FLOAT64:
      packer.pack_double(value.via.f64);  // always float64 (seppo/msgpack.hpp)
      break;
    default:
      packer.pack(value);
  }
}

// `v` with its bytes in big-endian order (msgpack's).
template <class T>
T to_big_endian(T v) {
  if constexpr (std::endian::native == std::endian::little) {
    if constexpr (sizeof v == 2) return __builtin_bswap16(v);
    if constexpr (sizeof v == 4) return __builtin_bswap32(v);
    if constexpr (sizeof v == 8) return __builtin_bswap64(v);
  }
  return v;
}

// The most bytes write_int writes.
inline constexpr std::size_t kMaxIntBytes = 9;

// `v` packed as msgpack-c's packer packs an int64 (its shortest form, the unsigned forms for
// values >= 0), written to `out` in place: for loops over many values, where a packer call and
// a buffer write per value cost more than the value. Returns the bytes written.
inline std::size_t write_int(unsigned char* out, long long v) {
  // The type byte, then `u` big-endian: one byte swap and one store, not a loop over its bytes.
  const auto typed = [out](unsigned char type, auto u) {
    out[0] = type;
    u = to_big_endian(u);
    std::memcpy(out + 1, &u, sizeof u);
    return 1 + sizeof u;
  };
  if (v >= -32 && v < 128) {  // a positive or negative fixint
    out[0] = static_cast<unsigned char>(v);
    return 1;
  }
  const auto u = static_cast<std::uint64_t>(v);  // two's complement: its low bytes are v's
  if (v >= 0) {
    if (u <= UINT8_MAX) return typed(0xcc, static_cast<std::uint8_t>(u));
    if (u <= UINT16_MAX) return typed(0xcd, static_cast<std::uint16_t>(u));
    if (u <= UINT32_MAX) return typed(0xce, static_cast<std::uint32_t>(u));
    return typed(0xcf, u);
  }
  if (v >= INT8_MIN) return typed(0xd0, static_cast<std::uint8_t>(u));
  if (v >= INT16_MIN) return typed(0xd1, static_cast<std::uint16_t>(u));
  if (v >= INT32_MIN) return typed(0xd2, static_cast<std::uint32_t>(u));
  return typed(0xd3, u);
}

// The most bytes write_scalar writes: a float64.
inline constexpr std::size_t kMaxScalarBytes = 9;

// An exact int (within 64 bits) or float packed at `out` as convert() would pack it (ints in
// their shortest form, floats always as float64): the bytes written, or 0, nothing written and
// no Python error set, for any other value. Needs the GIL.
std::size_t write_scalar(unsigned char* out, PyObject* value);

// A success entry [0, value] for an exact int (within 64 bits) or float, appended to `buffer`
// in one write, the bytes pack_converted's path writes: false, nothing written and no Python
// error set, for any other value. Needs the GIL.
bool pack_scalar_entry(msgpack::sbuffer& buffer, PyObject* value);

// msgpack ext types (docs/protocol.md §5.4, seppo/convert.hpp): kCallExt, a call with several
// arguments, whose data is [args, kwargs] (kwargs a map with str keys, or nil); kTupleExt, a
// tuple, whose data is its array.

// function(value) for an item; function(*args, **kwargs) for a call ext. Throws
// pybind11::error_already_set (the function's exception) or seppo::ProtocolError. Needs the GIL.
pybind11::object call_with(pybind11::handle function, const msgpack::object& item);

// The Python value of a decoded msgpack object: list for arrays, dict for maps, bytes for bin
// and ext. Throws pybind11::error_already_set (a map key that is not hashable). Needs the GIL.
pybind11::object from_msgpack(const msgpack::object& object);

// A result payload (docs/protocol.md §5.2) of `count` entries that all succeeded with a scalar
// value (None, bool, int, float, str, bytes), decoded in one pass straight into out[0..count) as
// new references: a map's list slots. False, every slot left null and no Python error set, for
// anything else (an error entry, a list, a tuple, malformed bytes): the caller then reads the
// entries one by one. Needs the GIL.
bool scalar_entries_to_python(const char* data, std::size_t size, std::uint32_t count,
                              PyObject** out);

// The function seppo-worker --python builtins calls for builtins.`name` (`function`): the builtin
// itself, or for bytes, format, pow and round a wrapper that refuses an argument that would make
// it allocate without bound (a ValueError naming the limit). Needs the GIL.
pybind11::object served_builtin(const std::string& name, pybind11::object function);

}  // namespace seppo::python
