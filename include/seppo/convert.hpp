// Turning msgpack into C++ values and back, safely: shared by modules (arguments, results) and
// clients (results). Bytes from the network are untrusted, so every decode goes through limits.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <unordered_map>
#include <vector>

#include "seppo/msgpack.hpp"

#include "seppo/error.hpp"

namespace seppo {

// Nesting deeper than this is refused: no honest input needs it, and recursion must stay bounded.
inline constexpr std::size_t kMaxDepth = 64;

// Decodes one msgpack value that must fill [data, data+size) exactly. Declared array, map, string
// and binary lengths may not exceed the bytes actually present, so hostile lengths such as
// dd ff 00 00 00 fail at once instead of allocating gigabytes.
inline msgpack::object_handle unpack_untrusted(const char* data, std::size_t size) {
  if (size == 0) throw ProtocolError("empty msgpack data");
  const msgpack::unpack_limit limit(size, size / 2, size, size, size, kMaxDepth);
  std::size_t offset = 0;
  msgpack::object_handle handle;
  try {
    handle = msgpack::unpack(data, size, offset, nullptr, nullptr, limit);
  } catch (const msgpack::unpack_error& e) {
    throw ProtocolError(std::string("malformed msgpack: ") + e.what());
  } catch (const std::bad_alloc&) {
    throw ProtocolError("malformed msgpack: too large to decode");
  }
  if (offset != size) {
    throw ProtocolError("malformed msgpack: " + std::to_string(size - offset) +
                        " trailing bytes after the value");
  }
  return handle;
}

// The name a user would use for a msgpack type in an error message.
inline const char* type_name(msgpack::type::object_type type) {
  switch (type) {
    case msgpack::type::NIL:
      return "nil";
    case msgpack::type::BOOLEAN:
      return "boolean";
    case msgpack::type::POSITIVE_INTEGER:
    case msgpack::type::NEGATIVE_INTEGER:
      return "integer";
    case msgpack::type::FLOAT32:
    case msgpack::type::FLOAT64:
      return "float";
    case msgpack::type::STR:
      return "string";
    case msgpack::type::BIN:
      return "binary";
    case msgpack::type::ARRAY:
      return "array";
    case msgpack::type::MAP:
      return "map";
    case msgpack::type::EXT:
      return "extension";
  }
  return "unknown";
}

// msgpack extension types seppo defines (docs/protocol.md §5.4).
inline constexpr std::int8_t kCallExt = 1;        // a call f(*args, **kwargs): [args, kwargs]
inline constexpr std::int8_t kTupleExt = 2;       // a Python tuple: its data is the msgpack array
inline constexpr std::int8_t kNdarrayExt = 3;     // a numpy array: [dtype, shape, bin]
inline constexpr std::int8_t kNamedTupleExt = 4;  // a Python namedtuple: [class name, array]

// True when `object` is or holds a tuple (ext 2) or an ndarray (ext 3).
inline bool holds_python_ext(const msgpack::object& object, std::size_t depth = 0) {
  if (depth > kMaxDepth) return false;
  switch (object.type) {
    case msgpack::type::EXT:
      return object.via.ext.type() == kTupleExt || object.via.ext.type() == kNdarrayExt ||
             object.via.ext.type() == kNamedTupleExt;
    case msgpack::type::ARRAY:
      for (std::uint32_t i = 0; i < object.via.array.size; ++i)
        if (holds_python_ext(object.via.array.ptr[i], depth + 1)) return true;
      return false;
    case msgpack::type::MAP:
      for (std::uint32_t i = 0; i < object.via.map.size; ++i)
        if (holds_python_ext(object.via.map.ptr[i].key, depth + 1) ||
            holds_python_ext(object.via.map.ptr[i].val, depth + 1))
          return true;
      return false;
    default:
      return false;
  }
}

namespace detail {
// One element of an ndarray of dtype kind `kind` and `size` bytes, little-endian, at `p`.
inline msgpack::object ndarray_element(char kind, std::size_t size, const unsigned char* p) {
  std::uint64_t bits = 0;
  for (std::size_t i = 0; i < size; ++i) bits |= std::uint64_t{p[i]} << (8 * i);
  msgpack::object out;
  if (kind == 'b') {
    out.type = msgpack::type::BOOLEAN;
    out.via.boolean = bits != 0;
  } else if (kind == 'f' && size == 8) {
    out.type = msgpack::type::FLOAT64;
    std::memcpy(&out.via.f64, &bits, 8);
  } else if (kind == 'f') {
    float f = 0;
    const auto narrow = static_cast<std::uint32_t>(bits);
    std::memcpy(&f, &narrow, 4);
    out.type = msgpack::type::FLOAT32;
    out.via.f64 = f;
  } else if (kind == 'i' && size < 8 && (bits >> (8 * size - 1)) != 0) {
    out.type = msgpack::type::NEGATIVE_INTEGER;  // sign-extended
    out.via.i64 = static_cast<std::int64_t>(bits | (~std::uint64_t{0} << (8 * size)));
  } else if (kind == 'i' && static_cast<std::int64_t>(bits) < 0) {
    out.type = msgpack::type::NEGATIVE_INTEGER;
    out.via.i64 = static_cast<std::int64_t>(bits);
  } else {
    out.type = msgpack::type::POSITIVE_INTEGER;
    out.via.u64 = bits;
  }
  return out;
}

// Dimension `dim` of an ndarray as nested msgpack arrays in `zone`, from element `at` on.
inline msgpack::object ndarray_dimension(const std::vector<std::uint32_t>& shape, std::size_t dim,
                                         char kind, std::size_t size, const unsigned char* data,
                                         std::size_t& at, msgpack::zone& zone) {
  if (dim == shape.size()) return ndarray_element(kind, size, data + size * at++);
  msgpack::object out;
  out.type = msgpack::type::ARRAY;
  out.via.array.size = shape[dim];
  out.via.array.ptr = static_cast<msgpack::object*>(
      zone.allocate_align(sizeof(msgpack::object) * (shape[dim] == 0 ? 1 : shape[dim])));
  for (std::uint32_t i = 0; i < shape[dim]; ++i)
    out.via.array.ptr[i] = ndarray_dimension(shape, dim + 1, kind, size, data, at, zone);
  return out;
}

// An ndarray's data [dtype, shape, bin] as nested arrays of its numbers. dtype is numpy's
// dtype.str: '<' or '|' (little-endian), a kind (b bool, i int, u uint, f float), a size.
inline msgpack::object ndarray_as_arrays(const msgpack::object& value, msgpack::zone& zone) {
  auto bad = [](const char* why) {
    return ProtocolError(std::string("an ndarray (ext 3) ") + why);
  };
  if (value.type != msgpack::type::ARRAY || value.via.array.size != 3 ||
      value.via.array.ptr[0].type != msgpack::type::STR ||
      value.via.array.ptr[1].type != msgpack::type::ARRAY ||
      value.via.array.ptr[2].type != msgpack::type::BIN) {
    throw bad("is not [dtype, shape, data]");
  }
  const std::string dtype(value.via.array.ptr[0].via.str.ptr, value.via.array.ptr[0].via.str.size);
  const std::string kinds = "biuf";
  if (dtype.size() < 3 || (dtype[0] != '<' && dtype[0] != '|') ||
      kinds.find(dtype[1]) == std::string::npos) {
    throw bad(("has a dtype C++ does not read: " + dtype).c_str());
  }
  const std::string digits = dtype.substr(2);
  const std::size_t size = digits == "1"   ? 1
                           : digits == "2" ? 2
                           : digits == "4" ? 4
                           : digits == "8" ? 8
                                           : 0;
  if (size == 0 || (dtype[1] == 'f' && size < 4))
    throw bad(("has a dtype C++ does not read: " + dtype).c_str());
  const msgpack::object_array& dims = value.via.array.ptr[1].via.array;
  const msgpack::object_bin& bin = value.via.array.ptr[2].via.bin;
  if (dims.size > kMaxDepth) throw bad("has too many dimensions");
  // Every level's count of arrays or elements is bounded by the bytes there are (plus some
  // empty arrays: shape (5, 0)), so a hostile shape cannot make this allocate without end.
  const std::uint64_t limit = bin.size / size + 65536;
  std::vector<std::uint32_t> shape;
  std::uint64_t count = 1;
  for (std::uint32_t i = 0; i < dims.size; ++i) {
    if (dims.ptr[i].type != msgpack::type::POSITIVE_INTEGER || dims.ptr[i].via.u64 > limit)
      throw bad("has a bad shape");
    shape.push_back(static_cast<std::uint32_t>(dims.ptr[i].via.u64));
    count *= dims.ptr[i].via.u64;  // at most limit * limit: no overflow
    if (count > limit) throw bad("has a bad shape");
  }
  if (count * size != bin.size) throw bad("holds fewer or more bytes than its shape");
  // The nested arrays cost one msgpack::object each, element or array: bound them by the
  // elements there are, or a shape of empty arrays ((65536, 0), (65536, 1, ..., 1, 0)) in a few
  // bytes would build millions of them.
  std::uint64_t objects = 1, level = 1;
  for (const std::uint32_t n : shape) {
    level *= n;  // at most count, or 0 after a 0
    objects += level;
  }
  if (objects > 4 * count + 4 * shape.size() + 16) throw bad("has a shape too big for its bytes");
  std::size_t at = 0;
  return ndarray_dimension(shape, 0, dtype[1], size,
                           reinterpret_cast<const unsigned char*>(bin.ptr), at, zone);
}
}  // namespace detail

// A copy of `object` in `zone` as C++ sees Python values: every tuple (ext 2) is its array and
// every ndarray (ext 3) nested arrays of its numbers. Throws ProtocolError for one that is
// malformed, or an ndarray of a dtype other than bool, int, uint and float.
inline msgpack::object as_plain(const msgpack::object& object, msgpack::zone& zone,
                                std::size_t depth = 0) {
  if (depth > kMaxDepth) throw ProtocolError("msgpack value nested too deep");
  msgpack::object out = object;
  if (object.type == msgpack::type::EXT &&
      (object.via.ext.type() == kTupleExt || object.via.ext.type() == kNdarrayExt ||
       object.via.ext.type() == kNamedTupleExt)) {
    const msgpack::object_handle inner =
        unpack_untrusted(object.via.ext.data(), object.via.ext.size);
    if (object.via.ext.type() == kNdarrayExt) return detail::ndarray_as_arrays(inner.get(), zone);
    if (object.via.ext.type() == kNamedTupleExt) {
      const msgpack::object& named = inner.get();
      if (named.type != msgpack::type::ARRAY || named.via.array.size != 2 ||
          named.via.array.ptr[0].type != msgpack::type::STR ||
          named.via.array.ptr[1].type != msgpack::type::ARRAY)
        throw ProtocolError("a namedtuple (ext 4) is not [class name, array]");
      return as_plain(named.via.array.ptr[1], zone, depth + 1);
    }
    if (inner.get().type != msgpack::type::ARRAY)
      throw ProtocolError("a tuple (ext 2) is not an array");
    return as_plain(inner.get(), zone, depth + 1);
  } else if (object.type == msgpack::type::ARRAY) {
    const std::uint32_t n = object.via.array.size;
    out.via.array.ptr = static_cast<msgpack::object*>(
        zone.allocate_align(sizeof(msgpack::object) * (n == 0 ? 1 : n)));
    for (std::uint32_t i = 0; i < n; ++i)
      out.via.array.ptr[i] = as_plain(object.via.array.ptr[i], zone, depth + 1);
  } else if (object.type == msgpack::type::MAP) {
    const std::uint32_t n = object.via.map.size;
    out.via.map.ptr = static_cast<msgpack::object_kv*>(
        zone.allocate_align(sizeof(msgpack::object_kv) * (n == 0 ? 1 : n)));
    for (std::uint32_t i = 0; i < n; ++i) {
      out.via.map.ptr[i].key = as_plain(object.via.map.ptr[i].key, zone, depth + 1);
      out.via.map.ptr[i].val = as_plain(object.via.map.ptr[i].val, zone, depth + 1);
    }
  } else {
    out = msgpack::object(object, zone);  // strings and binaries into the zone
  }
  return out;
}

namespace detail {
template <class T>
struct is_vector : std::false_type {};
template <class T, class A>
struct is_vector<std::vector<T, A>> : std::true_type {};
template <class T>
struct is_map : std::false_type {};
template <class K, class V, class C, class A>
struct is_map<std::map<K, V, C, A>> : std::true_type {};
template <class K, class V, class H, class E, class A>
struct is_map<std::unordered_map<K, V, H, E, A>> : std::true_type {};
}  // namespace detail

// The name of what a C++ type accepts, as it appears in "expected X, got Y".
template <class T>
const char* expected_name() {
  using U = std::remove_cv_t<std::remove_reference_t<T>>;
  if constexpr (std::is_same_v<U, bool>)
    return "boolean";
  else if constexpr (std::is_integral_v<U>)
    return "integer";
  else if constexpr (std::is_floating_point_v<U>)
    return "number";
  else if constexpr (std::is_same_v<U, std::string>)
    return "string";
  else if constexpr (detail::is_vector<U>::value)
    return "array";
  else if constexpr (detail::is_map<U>::value)
    return "map";
  else
    return "a value of the declared type";
}

// Converts a decoded value to T; on a mismatch throws TypeError "<what>: expected X, got Y",
// where `what` is a string or a callable making one (called only on failure: hot loops pay
// nothing for the message). A Python tuple (ext 2) converts as its array and a numpy array
// (ext 3) as nested arrays of its numbers (so std::vector<double> takes a float64 array);
// T = msgpack::object gets the value as sent.
template <class T, class What>
T convert(const msgpack::object& object, const What& what) {
  try {
    if constexpr (std::is_same_v<T, msgpack::object>) {
      return object;
    } else {
      try {
        return object.as<T>();
      } catch (const msgpack::type_error&) {
        if (!holds_python_ext(object)) throw;
      } catch (const std::bad_cast&) {
        if (!holds_python_ext(object)) throw;
      }
      msgpack::zone zone;  // only on a mismatch: the hot path never looks for these
      return as_plain(object, zone).as<T>();
    }
  } catch (const msgpack::type_error&) {
  } catch (const std::bad_cast&) {
  } catch (const ProtocolError&) {
  }
  std::string context;
  if constexpr (std::is_invocable_v<const What&>) {
    context = what();
  } else {
    context = std::string(what);
  }
  throw TypeError(context + ": expected " + expected_name<T>() + ", got " + type_name(object.type));
}

}  // namespace seppo
