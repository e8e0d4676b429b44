// One HTTP/1.1 request to the broker's --http server on loopback (observe_test, ha_test).
#pragma once

#include <doctest/doctest.h>

#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <string>

#include "tests/support/raw_peer.hpp"

namespace seppo::test {

struct HttpReply {
  int code = 0;
  std::string head, body;
};

// One HTTP/1.1 request to 127.0.0.1:port, read to the server's close, within 10 s.
inline HttpReply http(int port, const std::string& request_line,
                      const std::string& host_header = "127.0.0.1") {
  HttpReply reply;
  const int fd = connect_tcp(port);
  if (fd < 0) return reply;
  const std::string request =
      request_line + "\r\nHost: " + host_header + "\r\nConnection: close\r\n\r\n";
  CHECK(::send(fd, request.data(), request.size(), MSG_NOSIGNAL) ==
        static_cast<ssize_t>(request.size()));
  std::string text;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (std::chrono::steady_clock::now() < deadline) {
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, 200) <= 0) continue;
    char buffer[65536];
    const ssize_t n = ::recv(fd, buffer, sizeof buffer, 0);
    if (n <= 0) break;
    text.append(buffer, static_cast<std::size_t>(n));
  }
  ::close(fd);
  const auto end = text.find("\r\n\r\n");
  if (end == std::string::npos) return reply;
  reply.head = text.substr(0, end);
  reply.body = text.substr(end + 4);
  if (reply.head.rfind("HTTP/1.1 ", 0) == 0) reply.code = std::stoi(reply.head.substr(9, 3));
  return reply;
}

}  // namespace seppo::test
