#include "libclient/scalar_entries.hpp"

#include <cstring>

namespace seppo::client {
namespace {

class Reader {
 public:
  Reader(const char* data, std::size_t size)
      : p_(reinterpret_cast<const unsigned char*>(data)), end_(p_ + size) {}

  bool at_end() const { return p_ == end_; }
  bool has(std::size_t n) const { return static_cast<std::size_t>(end_ - p_) >= n; }
  bool byte(unsigned char& out) {
    if (p_ == end_) return false;
    out = *p_++;
    return true;
  }
  // A big-endian unsigned integer of N bytes.
  template <std::size_t N>
  bool big_endian(std::uint64_t& out) {
    if (!has(N)) return false;
    out = 0;
    for (std::size_t i = 0; i < N; ++i) out = out << 8 | p_[i];
    p_ += N;
    return true;
  }
  const char* take(std::size_t n) {
    const char* at = reinterpret_cast<const char*>(p_);
    p_ += n;
    return at;
  }

 private:
  const unsigned char* p_;
  const unsigned char* end_;
};

template <std::size_t N>
bool length(Reader& in, std::uint32_t& out) {
  std::uint64_t n = 0;
  if (!in.big_endian<N>(n)) return false;
  out = static_cast<std::uint32_t>(n);
  return true;
}

// A signed integer as msgpack::unpack makes it: negative values NEGATIVE_INTEGER, others
// POSITIVE_INTEGER.
void set_signed(msgpack::object& o, std::int64_t v) {
  if (v < 0) {
    o.type = msgpack::type::NEGATIVE_INTEGER;
    o.via.i64 = v;
  } else {
    o.type = msgpack::type::POSITIVE_INTEGER;
    o.via.u64 = static_cast<std::uint64_t>(v);
  }
}

template <std::size_t N, class Signed>
bool signed_int(Reader& in, msgpack::object& o) {
  std::uint64_t bits = 0;
  if (!in.big_endian<N>(bits)) return false;
  set_signed(o, static_cast<Signed>(bits));
  return true;
}

bool bytes(Reader& in, msgpack::object& o, msgpack::type::object_type type, std::uint32_t n) {
  if (!in.has(n)) return false;
  o.type = type;
  if (type == msgpack::type::STR) {
    o.via.str.size = n;
    o.via.str.ptr = in.take(n);
  } else {
    o.via.bin.size = n;
    o.via.bin.ptr = in.take(n);
  }
  return true;
}

bool scalar(Reader& in, msgpack::object& o) {
  unsigned char b = 0;
  if (!in.byte(b)) return false;
  std::uint64_t u = 0;
  std::uint32_t n = 0;
  if (b <= 0x7f) {
    o.type = msgpack::type::POSITIVE_INTEGER;
    o.via.u64 = b;
    return true;
  }
  if (b >= 0xe0) {
    set_signed(o, static_cast<std::int8_t>(b));
    return true;
  }
  if (b >= 0xa0 && b <= 0xbf) return bytes(in, o, msgpack::type::STR, b & 0x1f);
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
      if (!in.big_endian<1>(u)) return false;
      break;
    case 0xcd:
      if (!in.big_endian<2>(u)) return false;
      break;
    case 0xce:
      if (!in.big_endian<4>(u)) return false;
      break;
    case 0xcf:
      if (!in.big_endian<8>(u)) return false;
      break;
    case 0xd0:
      return signed_int<1, std::int8_t>(in, o);
    case 0xd1:
      return signed_int<2, std::int16_t>(in, o);
    case 0xd2:
      return signed_int<4, std::int32_t>(in, o);
    case 0xd3:
      return signed_int<8, std::int64_t>(in, o);
    case 0xca: {
      if (!in.big_endian<4>(u)) return false;
      const auto bits = static_cast<std::uint32_t>(u);
      float f = 0;
      std::memcpy(&f, &bits, sizeof f);
      o.type = msgpack::type::FLOAT32;
      o.via.f64 = f;
      return true;
    }
    case 0xcb: {
      if (!in.big_endian<8>(u)) return false;
      double d = 0;
      std::memcpy(&d, &u, sizeof d);
      o.type = msgpack::type::FLOAT64;
      o.via.f64 = d;
      return true;
    }
    case 0xd9:
      return length<1>(in, n) && bytes(in, o, msgpack::type::STR, n);
    case 0xda:
      return length<2>(in, n) && bytes(in, o, msgpack::type::STR, n);
    case 0xdb:
      return length<4>(in, n) && bytes(in, o, msgpack::type::STR, n);
    case 0xc4:
      return length<1>(in, n) && bytes(in, o, msgpack::type::BIN, n);
    case 0xc5:
      return length<2>(in, n) && bytes(in, o, msgpack::type::BIN, n);
    case 0xc6:
      return length<4>(in, n) && bytes(in, o, msgpack::type::BIN, n);
    default:
      return false;  // arrays, maps, extensions: the general decoder
  }
  o.type = msgpack::type::POSITIVE_INTEGER;
  o.via.u64 = u;
  return true;
}

}  // namespace

bool decode_scalar_entries(const char* data, std::size_t size, std::uint32_t count,
                           std::vector<msgpack::object>& values) {
  Reader in(data, size);
  unsigned char b = 0;
  std::uint32_t n = 0;
  if (!in.byte(b)) return false;
  if (b >= 0x90 && b <= 0x9f) {
    n = b & 0x0f;
  } else if (b == 0xdc) {
    if (!length<2>(in, n)) return false;
  } else if (b == 0xdd) {
    if (!length<4>(in, n)) return false;
  } else {
    return false;
  }
  // Every entry takes at least three bytes: a count the bytes cannot hold is refused before
  // anything is allocated for it.
  if (n != count || !in.has(std::size_t{n} * 3)) return false;
  values.resize(n);
  for (msgpack::object& value : values) {
    unsigned char array = 0, success = 0;
    // [0, value]: a fixarray of two whose first element is the positive fixint 0.
    if (!in.byte(array) || array != 0x92 || !in.byte(success) || success != 0x00) return false;
    if (!scalar(in, value)) return false;
  }
  return in.at_end();
}

}  // namespace seppo::client
