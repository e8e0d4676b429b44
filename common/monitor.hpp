// Why a socket's connections fail their handshake. ZeroMQ retries a refused or mismatched
// CurveZMQ handshake silently forever; this reads the socket's monitor events so a program can
// say "the broker refused this key" instead of timing out without a word. It also follows the
// connections themselves: whether one ever came up, since when connecting has been failing
// (nothing listens there).
#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <vector>

#include <zmq.hpp>

namespace seppo {

class HandshakeMonitor {
 public:
  enum class Outcome {
    Succeeded,          // the handshake completed (authentication included, if any)
    Refused,            // the peer's authentication handler refused our key (ZAP 400)
    MechanismMismatch,  // one side uses CurveZMQ and the other does not
    Failed,             // any other handshake failure, e.g. the wrong server key
  };
  struct Event {
    Outcome outcome;
    std::string detail;  // what ZeroMQ said, for messages
  };

  // Starts monitoring `socket`, which must outlive this object.
  HandshakeMonitor(zmq::context_t& context, zmq::socket_t& socket);
  ~HandshakeMonitor();
  HandshakeMonitor(const HandshakeMonitor&) = delete;
  HandshakeMonitor& operator=(const HandshakeMonitor&) = delete;

  // For a poll set: readable when an event is waiting.
  zmq::pollitem_t pollitem() { return {pipe_.handle(), 0, ZMQ_POLLIN, 0}; }
  // The next handshake event, without waiting. Connection events met on the way update the
  // state below.
  std::optional<Event> take();

  // Whether a connection (for a connecting socket) ever came up, handshake or not.
  bool ever_connected() const { return ever_connected_; }
  // Connections that closed (the peer went, or sent a frame over ZMQ_MAXMSGSIZE).
  int disconnections() const { return disconnections_; }
  // For a connecting socket that never connected: when its first attempt failed (refused, no
  // such socket file, no permission), as ZeroMQ retries silently.
  std::optional<std::chrono::steady_clock::time_point> failing_since() const {
    return failing_since_;
  }

 private:
  zmq::socket_t& socket_;
  zmq::socket_t pipe_;
  bool ever_connected_ = false;
  int disconnections_ = 0;
  std::optional<std::chrono::steady_clock::time_point> failing_since_;
};

}  // namespace seppo
