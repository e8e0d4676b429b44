// The one fast msgpack reader (issue 27 §4): msgpack values read straight from the bytes into
// msgpack::objects as msgpack::unpack makes them (strings and binaries point into the input),
// with no zone, no allocation and no copy. msgpack-c's parser allocates its stacks and a zone on
// every call (issue 16), which the hot paths cannot afford: the header decoder (wire.cpp), the
// payload's array header (payload.cpp) and the client's DELIVER reader
// (libclient/scalar_entries.cpp) read with this instead.
//
// It reads what those callers need: array headers and scalars (nil, booleans, integers, floats,
// strings, binaries). Each call returns false for anything else, malformed or truncated input
// included, and the caller then decodes with msgpack-c (unpack_untrusted), which validates and
// explains, or refuses: so it never has to be complete, only right when it says true.
#pragma once

#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstring>

#include "seppo/msgpack.hpp"

namespace seppo::wire {

class MsgpackReader {
 public:
  MsgpackReader(const void* data, std::size_t size)
      : begin_(static_cast<const unsigned char*>(data)), p_(begin_), end_(begin_ + size) {}

  bool at_end() const { return p_ == end_; }
  // Bytes read so far.
  std::size_t offset() const { return static_cast<std::size_t>(p_ - begin_); }
  bool has(std::size_t n) const { return static_cast<std::size_t>(end_ - p_) >= n; }

  bool byte(unsigned char& out) {
    if (p_ == end_) return false;
    out = *p_++;
    return true;
  }

  // A big-endian unsigned integer of 1, 2, 4 or 8 bytes.
  bool big_endian(std::size_t bytes, std::uint64_t& out) {
    if (!has(bytes)) return false;
    switch (bytes) {
      case 1:
        out = p_[0];
        break;
      case 2: {
        std::uint16_t v;
        std::memcpy(&v, p_, 2);
        out = from_big(v);
        break;
      }
      case 4: {
        std::uint32_t v;
        std::memcpy(&v, p_, 4);
        out = from_big(v);
        break;
      }
      default: {
        std::uint64_t v;
        std::memcpy(&v, p_, 8);
        out = from_big(v);
      }
    }
    p_ += bytes;
    return true;
  }

  // Whether `first`, a value's first byte, starts an array (fixarray, array 16, array 32).
  static bool is_array(unsigned char first) {
    return (first & 0xf0) == 0x90 || first == 0xdc || first == 0xdd;
  }
  // The element count of the array whose first byte `first` was read already.
  bool array_count(unsigned char first, std::uint32_t& count) {
    std::uint64_t n = first & 0x0f;
    if (first == 0xdc && !big_endian(2, n)) return false;
    if (first == 0xdd && !big_endian(4, n)) return false;
    if (!is_array(first)) return false;
    count = static_cast<std::uint32_t>(n);
    return true;
  }
  // An array header: its element count.
  bool array_header(std::uint32_t& count) {
    unsigned char first = 0;
    return byte(first) && array_count(first, count);
  }

  // The scalar whose first byte `first` was read already, into `o`: false for an array, a map,
  // an extension, a reserved byte, or too few bytes.
  bool scalar(unsigned char first, msgpack::object& o) {
    const unsigned b = first;
    std::uint64_t n = 0;
    if (b <= 0x7f) {
      o.type = msgpack::type::POSITIVE_INTEGER;
      o.via.u64 = b;
      return true;
    }
    if (b >= 0xe0) {
      integer(o, static_cast<std::int8_t>(b));
      return true;
    }
    if ((b & 0xe0) == 0xa0) return bytes(o, msgpack::type::STR, b & 0x1f);
    switch (b) {
      case 0xc0:
        o.type = msgpack::type::NIL;
        return true;
      case 0xc2:
      case 0xc3:
        o.type = msgpack::type::BOOLEAN;
        o.via.boolean = b == 0xc3;
        return true;
      case 0xcc:
      case 0xcd:
      case 0xce:
      case 0xcf:
        if (!big_endian(std::size_t{1} << (b - 0xcc), n)) return false;
        o.type = msgpack::type::POSITIVE_INTEGER;
        o.via.u64 = n;
        return true;
      case 0xd0:
      case 0xd1:
      case 0xd2:
      case 0xd3: {
        const std::size_t size = std::size_t{1} << (b - 0xd0);
        if (!big_endian(size, n)) return false;
        const unsigned shift = static_cast<unsigned>(64 - 8 * size);
        integer(o, static_cast<std::int64_t>(n << shift) >> shift);
        return true;
      }
      case 0xca: {
        if (!big_endian(4, n)) return false;
        const auto bits = static_cast<std::uint32_t>(n);
        float f = 0;
        std::memcpy(&f, &bits, sizeof f);
        o.type = msgpack::type::FLOAT32;
        o.via.f64 = f;
        return true;
      }
      case 0xcb: {
        if (!big_endian(8, n)) return false;
        double d = 0;
        std::memcpy(&d, &n, sizeof d);
        o.type = msgpack::type::FLOAT64;
        o.via.f64 = d;
        return true;
      }
      case 0xd9:
      case 0xda:
      case 0xdb:
        return big_endian(std::size_t{1} << (b - 0xd9), n) && bytes(o, msgpack::type::STR, n);
      case 0xc4:
      case 0xc5:
      case 0xc6:
        return big_endian(std::size_t{1} << (b - 0xc4), n) && bytes(o, msgpack::type::BIN, n);
      default:
        return false;  // maps, extensions, reserved
    }
  }

  // Steps over the scalar whose first byte `first` was read already, as scalar() reads it but
  // keeping nothing: for a reader that only checks a payload's shape (wire::count_failed).
  bool skip_scalar(unsigned char first) {
    const unsigned b = first;
    std::uint64_t n = 0;
    if (b <= 0x7f || b >= 0xe0 || b == 0xc0 || b == 0xc2 || b == 0xc3) return true;
    if ((b & 0xe0) == 0xa0) return skip(b & 0x1f);
    switch (b) {
      case 0xcc:
      case 0xd0:
        return skip(1);
      case 0xcd:
      case 0xd1:
        return skip(2);
      case 0xce:
      case 0xd2:
      case 0xca:
        return skip(4);
      case 0xcf:
      case 0xd3:
      case 0xcb:
        return skip(8);
      case 0xd9:
      case 0xda:
      case 0xdb:
        return big_endian(std::size_t{1} << (b - 0xd9), n) && skip(n);
      case 0xc4:
      case 0xc5:
      case 0xc6:
        return big_endian(std::size_t{1} << (b - 0xc4), n) && skip(n);
      default:
        return false;  // maps, extensions, reserved
    }
  }

 private:
  bool skip(std::uint64_t n) {
    if (static_cast<std::uint64_t>(end_ - p_) < n) return false;
    p_ += n;
    return true;
  }
  template <typename T>
  static T from_big(T v) {
    if constexpr (std::endian::native == std::endian::little) {
      if constexpr (sizeof(T) == 2) return __builtin_bswap16(v);
      if constexpr (sizeof(T) == 4) return __builtin_bswap32(v);
      if constexpr (sizeof(T) == 8) return __builtin_bswap64(v);
    }
    return v;
  }
  // As msgpack-c does: a signed encoding of a value >= 0 is a positive integer.
  static void integer(msgpack::object& o, std::int64_t v) {
    if (v >= 0) {
      o.type = msgpack::type::POSITIVE_INTEGER;
      o.via.u64 = static_cast<std::uint64_t>(v);
    } else {
      o.type = msgpack::type::NEGATIVE_INTEGER;
      o.via.i64 = v;
    }
  }
  bool bytes(msgpack::object& o, msgpack::type::object_type type, std::uint64_t size) {
    if (!has(size)) return false;
    o.type = type;
    if (type == msgpack::type::STR) {
      o.via.str.ptr = reinterpret_cast<const char*>(p_);
      o.via.str.size = static_cast<std::uint32_t>(size);
    } else {
      o.via.bin.ptr = reinterpret_cast<const char*>(p_);
      o.via.bin.size = static_cast<std::uint32_t>(size);
    }
    p_ += size;
    return true;
  }

  const unsigned char* begin_;
  const unsigned char* p_;
  const unsigned char* end_;
};

}  // namespace seppo::wire
