#include <netdb.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <random>

#include "common/host.hpp"

namespace seppo {

std::string environment(const char* name) {
  const char* value = std::getenv(name);
  return value != nullptr ? std::string(value) : std::string();
}

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
  // From the kernel on every call: a forked process must not repeat its parent's ids (two
  // workers with one routing id take over each other's connection), and routing ids are
  // secrets (protocol.md §14.6). Few calls per process, so the syscall costs nothing that shows.
  std::uint64_t value = 0;
  auto* bytes = reinterpret_cast<unsigned char*>(&value);
  std::size_t filled = 0;
  while (filled < sizeof value) {
    const ssize_t n = ::getrandom(bytes + filled, sizeof value - filled, 0);
    if (n > 0) {
      filled += static_cast<std::size_t>(n);
    } else if (n < 0 && errno != EINTR) {
      // No kernel entropy interface (pre-3.17 kernels): fall back on random_device.
      std::random_device device;
      return (static_cast<std::uint64_t>(device()) << 32) ^ device() ^
             (static_cast<std::uint64_t>(::getpid()) << 16);
    }
  }
  return value;
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
