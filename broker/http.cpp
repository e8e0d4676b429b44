#include "broker/http.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string_view>

#include "common/log.hpp"
#include "seppo/error.hpp"

namespace seppo::broker {
namespace {

constexpr std::size_t kMaxRequestBytes = 8192;
// How long one HTTP connection may take, its request and the answer together: the server talks
// to one at a time, so a slow (or deliberately slow) client must not hold it longer. None of
// this touches the broker's loop.
constexpr auto kConnectionTime = std::chrono::milliseconds(2000);
// How long a request waits for the loop to publish a newer snapshot before the last one serves.
constexpr auto kFreshWait =
    std::chrono::milliseconds(1500);  // > the loop's longest idle wait (1 s)

bool is_loopback(const std::string& host) {
  in_addr v4{};
  if (::inet_pton(AF_INET, host.c_str(), &v4) == 1) return (ntohl(v4.s_addr) >> 24) == 127;
  return host == "::1";
}

void close_fd(int& fd) {
  if (fd >= 0) ::close(fd);
  fd = -1;
}

// One accepted connection: non-blocking, with its deadline, and the server's stop pipe, which
// ends every wait at once (the broker is stopping).
struct Connection {
  int fd;
  int stop_fd;
  std::chrono::steady_clock::time_point deadline;

  // Whether `fd` is ready for `events` before the deadline and before a stop.
  bool ready(short events) const {
    while (true) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
                            deadline - std::chrono::steady_clock::now())
                            .count();
      if (left <= 0) return false;
      pollfd fds[2] = {{fd, events, 0}, {stop_fd, POLLIN, 0}};
      const int n = ::poll(fds, 2, static_cast<int>(left));
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 || fds[1].revents != 0) return false;
      if (fds[0].revents != 0) return true;
    }
  }
};

bool write_all(const Connection& c, std::string_view data) {
  while (!data.empty()) {
    const ssize_t n = ::send(c.fd, data.data(), data.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      if (!c.ready(POLLOUT)) return false;
      continue;
    }
    if (n <= 0) return false;
    data.remove_prefix(static_cast<std::size_t>(n));
  }
  return true;
}

std::string response(int code, std::string_view reason, std::string_view type,
                     const std::string& body, bool head) {
  std::string out = "HTTP/1.1 " + std::to_string(code) + " " + std::string(reason) + "\r\n";
  out += "Content-Type: " + std::string(type) + "\r\n";
  out += "Content-Length: " + std::to_string(body.size()) + "\r\n";
  out +=
      "Connection: close\r\nCache-Control: no-store\r\nX-Content-Type-Options: nosniff\r\n"
      "Content-Security-Policy: default-src 'none'; script-src 'unsafe-inline'; style-src "
      "'unsafe-inline'; img-src data:; connect-src 'self'\r\n\r\n";
  if (!head) out += body;
  return out;
}

// The host part of a Host header ("localhost:8080", "[::1]:8080").
std::string host_of(std::string_view value) {
  while (!value.empty() && (value.front() == ' ' || value.front() == '\t')) value.remove_prefix(1);
  while (!value.empty() && (value.back() == ' ' || value.back() == '\t')) value.remove_suffix(1);
  if (!value.empty() && value.front() == '[') {
    const auto end = value.find(']');
    return std::string(value.substr(1, end == std::string_view::npos ? value.npos : end - 1));
  }
  return std::string(value.substr(0, value.find(':')));
}

}  // namespace

std::string HttpAddress::text() const {
  return (host.find(':') != std::string::npos ? "[" + host + "]" : host) + ":" +
         std::to_string(port);
}

HttpAddress parse_http_address(const std::string& text) {
  const auto colon = text.rfind(':');
  if (colon == std::string::npos || colon + 1 == text.size()) {
    throw Error("--http " + text + ": expected HOST:PORT, e.g. 127.0.0.1:9090");
  }
  std::string host = text.substr(0, colon);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  if (host == "localhost" || host.empty()) host = "127.0.0.1";
  unsigned long port = 0;
  const std::string digits = text.substr(colon + 1);
  if (digits.find_first_not_of("0123456789") != std::string::npos || digits.size() > 5 ||
      (port = std::stoul(digits)) > 65535) {
    throw Error("--http " + text + ": the port must be a number from 0 to 65535");
  }
  in_addr v4{};
  in6_addr v6{};
  if (::inet_pton(AF_INET, host.c_str(), &v4) != 1 &&
      ::inet_pton(AF_INET6, host.c_str(), &v6) != 1) {
    throw Error("--http " + text + ": " + host +
                " is not a numeric address (give 127.0.0.1, ::1, or an address of this host)");
  }
  return HttpAddress{host, static_cast<std::uint16_t>(port), is_loopback(host)};
}

HttpServer::HttpServer(const HttpAddress& address, std::chrono::milliseconds refresh)
    : address_(address), refresh_(refresh) {
  const bool v6 = address.host.find(':') != std::string::npos;
  sockaddr_storage storage{};
  socklen_t length = 0;
  if (v6) {
    auto* a = reinterpret_cast<sockaddr_in6*>(&storage);
    a->sin6_family = AF_INET6;
    a->sin6_port = htons(address.port);
    ::inet_pton(AF_INET6, address.host.c_str(), &a->sin6_addr);
    length = sizeof *a;
  } else {
    auto* a = reinterpret_cast<sockaddr_in*>(&storage);
    a->sin_family = AF_INET;
    a->sin_port = htons(address.port);
    ::inet_pton(AF_INET, address.host.c_str(), &a->sin_addr);
    length = sizeof *a;
  }
  listen_fd_ = ::socket(v6 ? AF_INET6 : AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  const int on = 1;
  if (listen_fd_ < 0 || ::setsockopt(listen_fd_, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on) != 0 ||
      ::bind(listen_fd_, reinterpret_cast<sockaddr*>(&storage), length) != 0 ||
      ::listen(listen_fd_, 16) != 0 ||
      ::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&storage), &length) != 0 ||
      ::pipe2(stop_pipe_, O_CLOEXEC) != 0) {
    const std::string why = std::strerror(errno);
    close_fd(listen_fd_);
    throw Error("cannot listen for HTTP on " + address.text() + ": " + why);
  }
  address_.port = ntohs(v6 ? reinterpret_cast<sockaddr_in6*>(&storage)->sin6_port
                           : reinterpret_cast<sockaddr_in*>(&storage)->sin_port);
  thread_ = std::thread([this] { run(); });
}

HttpServer::~HttpServer() {
  const char stop = 's';
  while (::write(stop_pipe_[1], &stop, 1) < 0 && errno == EINTR) {
  }
  if (thread_.joinable()) thread_.join();
  close_fd(listen_fd_);
  close_fd(stop_pipe_[0]);
  close_fd(stop_pipe_[1]);
}

void HttpServer::publish(std::string status, Clock::time_point now, bool full) {
  auto snapshot = std::make_shared<const Snapshot>(Snapshot{std::move(status), now});
  published_at_ = now;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    (full ? snapshot_ : metrics_) = std::move(snapshot);
    // A full map serves both pages; a metrics one leaves a dashboard's request waiting.
    wanted_.fetch_and(full ? 0u : ~unsigned{kMetrics}, std::memory_order_relaxed);
  }
  published_.notify_all();
}

std::shared_ptr<const HttpServer::Snapshot> HttpServer::fresh_snapshot(bool full) {
  const Clock::time_point asked = Clock::now();
  std::unique_lock<std::mutex> lock(mutex_);
  // The newest that serves: for /metrics either kind, for the others the full map only.
  const auto best = [&]() -> std::shared_ptr<const Snapshot> {
    if (full || !metrics_) return snapshot_;
    if (!snapshot_) return metrics_;
    return snapshot_->taken >= metrics_->taken ? snapshot_ : metrics_;
  };
  if (auto s = best(); s && asked - s->taken < refresh_) return s;
  // Older than `refresh`: ask the loop for a new one, and serve the last if none comes soon
  // (the loop turns at least every quarter heartbeat).
  wanted_.fetch_or(full ? kFull : kMetrics, std::memory_order_relaxed);
  published_.wait_for(lock, kFreshWait, [&] {
    const auto s = best();
    return s && s->taken >= asked - refresh_;
  });
  return best();
}

void HttpServer::run() {
  while (true) {
    pollfd fds[2] = {{listen_fd_, POLLIN, 0}, {stop_pipe_[0], POLLIN, 0}};
    if (::poll(fds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      log::error(std::string("HTTP server: poll: ") + std::strerror(errno));
      return;
    }
    if (fds[1].revents != 0) return;
    if ((fds[0].revents & POLLIN) == 0) continue;
    const int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
    if (fd < 0) {
      // Out of descriptors or memory: the listener stays readable, so wait a little (or for
      // the stop) instead of spinning on accept.
      if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
        pollfd stop{stop_pipe_[0], POLLIN, 0};
        if (::poll(&stop, 1, 100) > 0) return;
      }
      continue;
    }
    try {
      serve_connection(fd);
    } catch (const std::exception& e) {
      log::warning(std::string("HTTP server: ") + e.what());
    }
    ::close(fd);
  }
}

void HttpServer::serve_connection(int fd) {
  const Connection c{fd, stop_pipe_[0], std::chrono::steady_clock::now() + kConnectionTime};
  std::string request;
  char buffer[2048];
  while (request.find("\r\n\r\n") == std::string::npos) {
    if (request.size() > kMaxRequestBytes) {
      write_all(
          c, response(431, "Request Header Fields Too Large", "text/plain", "too large\n", false));
      return;
    }
    const ssize_t n = ::recv(fd, buffer, sizeof buffer, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      if (!c.ready(POLLIN)) return;  // too slow, or the broker is stopping
      continue;
    }
    if (n <= 0) return;  // closed
    request.append(buffer, static_cast<std::size_t>(n));
  }
  const std::string_view text(request);
  const std::string_view line = text.substr(0, text.find("\r\n"));
  const auto space1 = line.find(' ');
  const auto space2 = line.find(' ', space1 == line.npos ? line.npos : space1 + 1);
  if (space1 == line.npos || space2 == line.npos) {
    write_all(c, response(400, "Bad Request", "text/plain", "bad request\n", false));
    return;
  }
  const std::string_view method = line.substr(0, space1);
  std::string_view target = line.substr(space1 + 1, space2 - space1 - 1);
  target = target.substr(0, target.find('?'));
  const bool head = method == "HEAD";
  if (method != "GET" && !head) {
    write_all(c, response(405, "Method Not Allowed", "text/plain",
                          "read-only: GET /, /metrics or /api/status\n", false));
    return;
  }
  // On loopback, only pages that name the host as loopback may read: a web page elsewhere
  // whose name resolves to 127.0.0.1 (DNS rebinding) is refused.
  if (address_.loopback) {
    std::string host;
    std::size_t at = 0;
    while ((at = text.find("\r\n", at)) != std::string_view::npos) {
      at += 2;
      const std::string_view header = text.substr(at, text.find("\r\n", at) - at);
      if (header.size() > 5 && strncasecmp(header.data(), "host:", 5) == 0) {
        host = host_of(header.substr(5));
        break;
      }
    }
    if (!host.empty() && host != "localhost" && !is_loopback(host)) {
      write_all(c, response(403, "Forbidden", "text/plain",
                            "this server answers requests for a loopback host name only\n", false));
      return;
    }
  }
  if (target == "/" || target == "/index.html") {
    write_all(c, response(200, "OK", "text/html; charset=utf-8", kDashboardPage, head));
    return;
  }
  if (target != "/metrics" && target != "/api/status") {
    write_all(c, response(404, "Not Found", "text/plain",
                          "not found: this server has /, /metrics and /api/status\n", head));
    return;
  }
  const std::shared_ptr<const Snapshot> snapshot = fresh_snapshot(target != "/metrics");
  if (!snapshot) {
    write_all(c, response(503, "Service Unavailable", "text/plain",
                          "no snapshot yet: the broker's loop has not answered\n", head));
    return;
  }
  if (target == "/metrics") {
    write_all(c, response(200, "OK", "text/plain; version=0.0.4; charset=utf-8",
                          status_metrics(snapshot->status), head));
  } else {
    write_all(c, response(200, "OK", "application/json", status_json(snapshot->status), head));
  }
}

}  // namespace seppo::broker
