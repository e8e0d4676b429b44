// Turning msgpack into C++ values and back, safely: shared by modules (arguments, results) and
// clients (results). Bytes from the network are untrusted, so every decode goes through limits.
#pragma once

#include <cstddef>
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
    case msgpack::type::NIL: return "nil";
    case msgpack::type::BOOLEAN: return "boolean";
    case msgpack::type::POSITIVE_INTEGER:
    case msgpack::type::NEGATIVE_INTEGER: return "integer";
    case msgpack::type::FLOAT32:
    case msgpack::type::FLOAT64: return "float";
    case msgpack::type::STR: return "string";
    case msgpack::type::BIN: return "binary";
    case msgpack::type::ARRAY: return "array";
    case msgpack::type::MAP: return "map";
    case msgpack::type::EXT: return "extension";
  }
  return "unknown";
}

namespace detail {
template <class T> struct is_vector : std::false_type {};
template <class T, class A> struct is_vector<std::vector<T, A>> : std::true_type {};
template <class T> struct is_map : std::false_type {};
template <class K, class V, class C, class A> struct is_map<std::map<K, V, C, A>> : std::true_type {};
template <class K, class V, class H, class E, class A>
struct is_map<std::unordered_map<K, V, H, E, A>> : std::true_type {};
}  // namespace detail

// The name of what a C++ type accepts, as it appears in "expected X, got Y".
template <class T>
const char* expected_name() {
  using U = std::remove_cv_t<std::remove_reference_t<T>>;
  if constexpr (std::is_same_v<U, bool>) return "boolean";
  else if constexpr (std::is_integral_v<U>) return "integer";
  else if constexpr (std::is_floating_point_v<U>) return "number";
  else if constexpr (std::is_same_v<U, std::string>) return "string";
  else if constexpr (detail::is_vector<U>::value) return "array";
  else if constexpr (detail::is_map<U>::value) return "map";
  else return "a value of the declared type";
}

// Converts a decoded value to T; on a mismatch throws TypeError "<what>: expected X, got Y",
// where `what` is a string or a callable making one (called only on failure: hot loops pay
// nothing for the message).
template <class T, class What>
T convert(const msgpack::object& object, const What& what) {
  try {
    if constexpr (std::is_same_v<T, msgpack::object>) {
      return object;
    } else {
      return object.as<T>();
    }
  } catch (const msgpack::type_error&) {
  } catch (const std::bad_cast&) {
  }
  std::string context;
  if constexpr (std::is_invocable_v<const What&>) {
    context = what();
  } else {
    context = std::string(what);
  }
  throw TypeError(context + ": expected " + expected_name<T>() + ", got " +
                  type_name(object.type));
}

}  // namespace seppo
