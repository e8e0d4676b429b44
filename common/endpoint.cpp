#include "common/endpoint.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <stdexcept>

namespace seppo {

std::string private_folder() {
  const char* value = std::getenv(kRuntimeFolderVariable);
  if (value != nullptr && *value != '\0') return value;
  return "/tmp/seppo-" + std::to_string(::geteuid());
}

std::string private_endpoint() {
  return "ipc://" + private_folder() + "/broker";
}

std::string default_broker_endpoint() {
  const char* value = std::getenv(kBrokerVariable);
  return value != nullptr && *value != '\0' ? std::string(value) : private_endpoint();
}

void check_private_endpoint(const std::string& endpoint, bool create) {
  if (endpoint != private_endpoint()) return;
  const std::string folder = private_folder();
  struct stat st {};
  if (::lstat(folder.c_str(), &st) != 0) {
    if (errno != ENOENT) {
      throw std::runtime_error("cannot use " + folder + ": " + std::strerror(errno));
    }
    if (!create) return;  // nothing listens there; connecting says so
    if (::mkdir(folder.c_str(), 0700) != 0 && errno != EEXIST) {
      throw std::runtime_error("cannot make the folder " + folder + " for " + endpoint + ": " +
                               std::strerror(errno) + " (set " + kRuntimeFolderVariable +
                               " to a folder of yours, or give an endpoint)");
    }
    if (::lstat(folder.c_str(), &st) != 0) {
      throw std::runtime_error("cannot use " + folder + ": " + std::strerror(errno));
    }
  }
  const std::string fix =
      ": another user could have made it to take your jobs; remove it "
      "(rm -r " +
      folder + ") or set " + kRuntimeFolderVariable + " to a folder of yours";
  if (!S_ISDIR(st.st_mode)) throw std::runtime_error(folder + " is not a folder" + fix);
  if (st.st_uid != ::geteuid()) {
    throw std::runtime_error(folder + " belongs to uid " + std::to_string(st.st_uid) + ", not " +
                             std::to_string(::geteuid()) + fix);
  }
  // Group bits without write are the broker's --allow-group; others get nothing.
  if ((st.st_mode & 027) != 0) {
    char mode[8];
    std::snprintf(mode, sizeof mode, "%04o", static_cast<unsigned>(st.st_mode & 07777));
    throw std::runtime_error(folder + " has mode " + mode +
                             ": others could reach or replace the broker's socket in it; run "
                             "chmod 700 " +
                             folder);
  }
}

std::string unreachable_reason(const std::string& endpoint) {
  int fd = -1;
  int result = -1;
  if (endpoint.rfind("ipc://", 0) == 0 && endpoint.size() > 6 && endpoint[6] != '@') {
    const std::string path = endpoint.substr(6);
    sockaddr_un address{};
    if (path.size() >= sizeof address.sun_path) return "";
    address.sun_family = AF_UNIX;
    std::memcpy(address.sun_path, path.c_str(), path.size() + 1);
    fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return "";
    result = ::connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof address);
  } else if (endpoint.rfind("tcp://127.", 0) == 0) {
    // Loopback only: a refused connection comes back at once, and nothing leaves the machine.
    const std::string rest = endpoint.substr(6);
    const auto colon = rest.rfind(':');
    if (colon == std::string::npos || rest.find(';') != std::string::npos) return "";
    sockaddr_in address{};
    address.sin_family = AF_INET;
    if (::inet_pton(AF_INET, rest.substr(0, colon).c_str(), &address.sin_addr) != 1) return "";
    const int port = std::atoi(rest.c_str() + colon + 1);
    if (port <= 0 || port > 65535) return "";
    address.sin_port = htons(static_cast<std::uint16_t>(port));
    fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return "";
    result = ::connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof address);
  } else {
    return "";
  }
  const int error = errno;
  ::close(fd);
  return result == 0 ? std::string() : std::string(std::strerror(error));
}

bool is_local_endpoint(const std::string& endpoint) {
  if (endpoint.rfind("ipc://", 0) == 0 || endpoint.rfind("inproc://", 0) == 0) return true;
  if (endpoint.rfind("tcp://", 0) != 0) return false;
  std::string address = endpoint.substr(6);
  // A connect endpoint may name a source address first (tcp://SOURCE;HOST:PORT): the
  // destination is what decides where the traffic goes.
  if (const auto semicolon = address.rfind(';'); semicolon != std::string::npos) {
    address.erase(0, semicolon + 1);
  }
  const auto colon = address.rfind(':');
  if (colon == std::string::npos) return false;
  std::string host = address.substr(0, colon);
  if (host == "localhost") return true;
  // Literal addresses only: a name such as 127.example.org could resolve anywhere.
  if (host.size() > 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
    in6_addr a6{};
    if (::inet_pton(AF_INET6, host.c_str(), &a6) != 1) return false;
    if (IN6_IS_ADDR_LOOPBACK(&a6)) return true;
    return IN6_IS_ADDR_V4MAPPED(&a6) && a6.s6_addr[12] == 127;
  }
  in_addr a4{};
  if (::inet_pton(AF_INET, host.c_str(), &a4) != 1) return false;
  return (ntohl(a4.s_addr) >> 24) == 127;
}

std::string connectable_endpoint(const std::string& bound, const std::string& host) {
  for (const char* wildcard : {"tcp://0.0.0.0:", "tcp://[::]:", "tcp://*:"}) {
    const std::string prefix(wildcard);
    if (bound.rfind(prefix, 0) == 0) return "tcp://" + host + ":" + bound.substr(prefix.size());
  }
  return bound;
}

}  // namespace seppo
