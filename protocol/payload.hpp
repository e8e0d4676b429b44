// Payload frames are msgpack arrays of items. The broker never decodes items; it only needs their
// byte boundaries, to split a chunk into single items when a worker died running it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace seppo::wire {

struct Span {
  std::size_t offset = 0;
  std::size_t size = 0;
};

// Byte ranges of the elements of a msgpack array that must fill the buffer exactly and hold
// `expected` elements. Throws seppo::ProtocolError otherwise. Bounded by the buffer's size.
std::vector<Span> item_spans(const char* data, std::size_t size, std::uint32_t expected);

// The bytes of a one-element array holding the given encoded item.
std::string single_item_array(const char* item, std::size_t size);

// Writes a 5-byte array32 header (dd + count, big-endian): lets a writer fix the count afterwards.
void write_array32_header(char* out, std::uint32_t count);
inline constexpr std::size_t kArray32HeaderSize = 5;

}  // namespace seppo::wire
