#include "protocol/payload.hpp"

#include "seppo/msgpack.hpp"

#include "protocol/msgpack_reader.hpp"
#include "seppo/convert.hpp"
#include "seppo/error.hpp"

namespace seppo::wire {
namespace {

// Reads a msgpack array header; returns the element count and advances offset past the header.
std::uint32_t read_array_header(const unsigned char* p, std::size_t size, std::size_t& offset) {
  if (size == 0) throw ProtocolError("empty payload");
  MsgpackReader in(p, size);
  std::uint32_t count = 0;
  if (!in.array_header(count)) throw ProtocolError("payload is not a msgpack array");
  offset = in.offset();
  return count;
}

}  // namespace

std::vector<Span> item_spans(const char* data, std::size_t size, std::uint32_t expected) {
  std::size_t offset = 0;
  const std::uint32_t count =
      read_array_header(reinterpret_cast<const unsigned char*>(data), size, offset);
  if (count != expected) {
    throw ProtocolError("payload holds " + std::to_string(count) + " items, header says " +
                        std::to_string(expected));
  }
  if (count > size) throw ProtocolError("payload declares more items than it has bytes");
  const msgpack::unpack_limit limit(size, size / 2, size, size, size, kMaxDepth);
  std::vector<Span> spans;
  spans.reserve(count);
  try {
    for (std::uint32_t i = 0; i < count; ++i) {
      const std::size_t begin = offset;
      msgpack::unpack(data, size, offset, nullptr, nullptr, limit);
      spans.push_back(Span{begin, offset - begin});
    }
  } catch (const msgpack::unpack_error& e) {
    throw ProtocolError(std::string("malformed payload: ") + e.what());
  } catch (const std::bad_alloc&) {
    throw ProtocolError("malformed payload: too large to decode");
  }
  if (offset != size) throw ProtocolError("payload has trailing bytes");
  return spans;
}

std::string single_item_array(const char* item, std::size_t size) {
  std::string out;
  out.reserve(size + 1);
  out.push_back(static_cast<char>(0x91));
  out.append(item, size);
  return out;
}

void write_array32_header(char* out, std::uint32_t count) {
  out[0] = static_cast<char>(0xdd);
  out[1] = static_cast<char>(count >> 24);
  out[2] = static_cast<char>(count >> 16);
  out[3] = static_cast<char>(count >> 8);
  out[4] = static_cast<char>(count);
}

}  // namespace seppo::wire
