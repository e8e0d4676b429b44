#include "libclient/scalar_entries.hpp"

#include "protocol/msgpack_reader.hpp"

namespace seppo::client {

bool decode_scalar_entries(const char* data, std::size_t size, std::uint32_t count,
                           std::vector<msgpack::object>& values) {
  wire::MsgpackReader in(data, size);
  std::uint32_t n = 0;
  if (!in.array_header(n)) return false;
  // Every entry takes at least three bytes: a count the bytes cannot hold is refused before
  // anything is allocated for it.
  if (n != count || !in.has(std::size_t{n} * 3)) return false;
  values.resize(n);
  for (msgpack::object& value : values) {
    unsigned char array = 0, success = 0, first = 0;
    // [0, value]: a fixarray of two whose first element is the positive fixint 0.
    if (!in.byte(array) || array != 0x92 || !in.byte(success) || success != 0x00) return false;
    if (!in.byte(first) || !in.scalar(first, value)) return false;
  }
  return in.at_end();
}

}  // namespace seppo::client
