#include <netdb.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdint>
#include <cstring>
#include <random>

#include "common/host.hpp"

namespace seppo {

std::string fqdn() {
  char name[256] = {};
  if (::gethostname(name, sizeof name - 1) != 0) return "localhost";
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_flags = AI_CANONNAME;
  addrinfo* info = nullptr;
  std::string result = name;
  if (::getaddrinfo(name, nullptr, &hints, &info) == 0 && info != nullptr) {
    if (info->ai_canonname != nullptr && std::strchr(info->ai_canonname, '.') != nullptr) {
      result = info->ai_canonname;
    }
    ::freeaddrinfo(info);
  }
  return result;
}

std::uint64_t random_u64() {
  static thread_local std::mt19937_64 engine{std::random_device{}() ^
                                             (static_cast<std::uint64_t>(::getpid()) << 32)};
  return engine();
}

std::string random_routing_id(char role) {
  // A leading non-zero byte (ids starting with 0 are reserved by ZeroMQ) and 64 random bits:
  // nine bytes fit the broker's short-string storage, so routing costs no allocation.
  std::string id(1, role);
  const std::uint64_t r = random_u64();
  id.append(reinterpret_cast<const char*>(&r), sizeof r);
  return id;
}

}  // namespace seppo
