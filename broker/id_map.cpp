#include "broker/id_map.hpp"

#include <random>

namespace seppo::broker {

std::uint64_t id_map_secret() {
  static const std::uint64_t secret = [] {
    std::random_device device;
    return (std::uint64_t{device()} << 32) ^ device();
  }();
  return secret;
}

}  // namespace seppo::broker
