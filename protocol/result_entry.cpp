#include "protocol/result_entry.hpp"

namespace seppo::wire {

std::string all_failed(std::uint32_t count, const std::string& message) {
  msgpack::sbuffer buffer;
  msgpack::packer<msgpack::sbuffer> packer(buffer);
  packer.pack_array(count);
  for (std::uint32_t i = 0; i < count; ++i) entry::pack_error(packer, message);
  return std::string(buffer.data(), buffer.size());
}

}  // namespace seppo::wire
