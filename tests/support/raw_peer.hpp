// Peers that speak TCP and ZMTP by hand, for tests of what the broker does with hostile or
// misconfigured connections (issue 26): only ever to 127.0.0.1.
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <cstdint>
#include <string>

namespace seppo::test {

// The port of a "tcp://127.0.0.1:PORT" endpoint.
inline int port_of(const std::string& endpoint) {
  return std::stoi(endpoint.substr(endpoint.rfind(':') + 1));
}

// A plain TCP connection to 127.0.0.1:port (blocking, sends time out after 10 s), or -1.
inline int connect_tcp(int port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  timeval timeout{10, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, sizeof timeout);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(static_cast<std::uint16_t>(port));
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

// Sends all of `bytes`; false when the peer closed or the send timed out.
inline bool send_all(int fd, const std::string& bytes) {
  std::size_t done = 0;
  while (done < bytes.size()) {
    const ssize_t n = ::send(fd, bytes.data() + done, bytes.size() - done, MSG_NOSIGNAL);
    if (n <= 0) return false;
    done += static_cast<std::size_t>(n);
  }
  return true;
}

// The ZMTP 3.0 greeting of a NULL-mechanism peer (one without CurveZMQ keys), whole.
inline std::string null_greeting() {
  std::string greeting(64, '\0');
  greeting[0] = '\xff';
  greeting[8] = '\x01';
  greeting[9] = '\x7f';
  greeting[10] = '\x03';  // version 3.0
  greeting.replace(12, 4, "NULL");
  return greeting;
}

}  // namespace seppo::test
