// seppo-broker --http HOST:PORT: read-only information for operators over HTTP/1.1 (docs/
// operating.md, "Observing a cluster"): / (a dashboard page), /metrics (Prometheus text format
// 0.0.4) and /api/status (JSON).
//
// The broker's loop never waits for it. The server runs on a thread of its own with its own
// sockets; the loop only hands it, at most every `refresh` and only while someone is asking, a
// copy of the STATUS snapshot (the msgpack map of docs/protocol.md §4.13). Rendering JSON and
// metrics, and talking to slow HTTP clients, happen on the server's thread.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

namespace seppo::broker {

struct HttpAddress {
  std::string host;  // numeric, as bound: 127.0.0.1, ::1
  std::uint16_t port = 0;
  bool loopback = false;
  std::string text() const;  // 127.0.0.1:8080, [::1]:8080
};

// Parses HOST:PORT ([V6]:PORT; "localhost" means 127.0.0.1); throws seppo::Error when it is no
// such address. Names other than localhost are not resolved: give the address to listen on.
HttpAddress parse_http_address(const std::string& text);

class HttpServer {
 public:
  using Clock = std::chrono::steady_clock;

  // Listens on `address` (port 0: one the system chooses) and starts serving; throws
  // seppo::Error when it cannot listen.
  HttpServer(const HttpAddress& address, std::chrono::milliseconds refresh);
  ~HttpServer();
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  const HttpAddress& address() const { return address_; }  // with the port as bound

  // What the loop is asked for: /metrics reads only part of the STATUS map
  // (Core::metrics_payload: no task stream, issue 28); the dashboard and /api/status read all
  // of it (Core::status_payload), which serves /metrics too.
  enum Want : unsigned { kNothing = 0, kMetrics = 1, kFull = 2 };
  // Called by the broker's loop at every turn: what it should publish now (something was asked
  // for and the last snapshot is at least `refresh` old). An atomic load when nobody asks.
  Want due(Clock::time_point now) const {
    const unsigned wanted = wanted_.load(std::memory_order_relaxed);
    if (wanted == kNothing || now - published_at_ < refresh_) return kNothing;
    return (wanted & kFull) ? kFull : kMetrics;
  }
  // `status` is Core::status_payload's when `full`, Core::metrics_payload's otherwise.
  void publish(std::string status, Clock::time_point now, bool full = true);

  struct Snapshot {
    std::string status;  // msgpack, as STATUS carries it (or the part /metrics reads)
    Clock::time_point taken;
  };

 private:
  void run();
  void serve_connection(int fd);
  std::shared_ptr<const Snapshot> fresh_snapshot(bool full);

  HttpAddress address_;
  std::chrono::milliseconds refresh_;
  int listen_fd_ = -1;
  int stop_pipe_[2] = {-1, -1};
  std::atomic<unsigned> wanted_{kNothing};  // Want bits
  Clock::time_point published_at_{};        // the loop's alone
  std::mutex mutex_;
  std::condition_variable published_;
  std::shared_ptr<const Snapshot> snapshot_;  // the full map; under mutex_
  std::shared_ptr<const Snapshot> metrics_;   // the part /metrics reads; under mutex_
  std::thread thread_;
};

// The renderings of a STATUS snapshot (exposition.cpp): JSON for /api/status and the text
// format for /metrics. Both throw seppo::Error on a snapshot that does not decode.
std::string status_json(const std::string& status);
std::string status_metrics(const std::string& status);
// The dashboard: one self-contained page (dashboard.cpp).
extern const char* const kDashboardPage;

}  // namespace seppo::broker
