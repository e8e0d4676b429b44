// Why a socket's connections fail their handshake. ZeroMQ retries a refused or mismatched
// CurveZMQ handshake silently forever; this reads the socket's monitor events so a program can
// say "the broker refused this key" instead of timing out without a word.
#pragma once

#include <optional>
#include <string>

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
  // The next event, without waiting.
  std::optional<Event> take();

 private:
  zmq::socket_t& socket_;
  zmq::socket_t pipe_;
};

}  // namespace seppo
