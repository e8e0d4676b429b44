#include "common/monitor.hpp"

#include <atomic>
#include <cstring>
#include <vector>

#include <zmq_addon.hpp>

namespace seppo {
namespace {

constexpr int kEvents = ZMQ_EVENT_HANDSHAKE_SUCCEEDED | ZMQ_EVENT_HANDSHAKE_FAILED_AUTH |
                        ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL | ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL |
                        ZMQ_EVENT_CONNECTED | ZMQ_EVENT_CONNECT_RETRIED | ZMQ_EVENT_DISCONNECTED;

std::string address() {
  static std::atomic<unsigned> counter{0};
  return "inproc://seppo-handshake-monitor-" + std::to_string(++counter);
}

}  // namespace

HandshakeMonitor::HandshakeMonitor(zmq::context_t& context, zmq::socket_t& socket)
    : socket_(socket), pipe_(context, zmq::socket_type::pair) {
  const std::string endpoint = address();
  if (zmq_socket_monitor(socket_.handle(), endpoint.c_str(), kEvents) != 0) throw zmq::error_t();
  pipe_.set(zmq::sockopt::linger, 0);
  pipe_.connect(endpoint);
}

HandshakeMonitor::~HandshakeMonitor() {
  zmq_socket_monitor(socket_.handle(), nullptr, 0);
  pipe_.close();
}

std::optional<HandshakeMonitor::Event> HandshakeMonitor::take() {
  while (true) {
    std::vector<zmq::message_t> frames;
    if (!zmq::recv_multipart(pipe_, std::back_inserter(frames), zmq::recv_flags::dontwait)) {
      return std::nullopt;
    }
    if (frames.size() != 2 || frames[0].size() != 6) continue;
    std::uint16_t event = 0;
    std::uint32_t value = 0;
    std::memcpy(&event, frames[0].data(), sizeof event);
    std::memcpy(&value, frames[0].data<char>() + sizeof event, sizeof value);
    switch (event) {
      case ZMQ_EVENT_CONNECTED:
        ever_connected_ = true;
        failing_since_.reset();
        continue;
      case ZMQ_EVENT_CONNECT_RETRIED:
        if (!ever_connected_ && !failing_since_) failing_since_ = std::chrono::steady_clock::now();
        continue;
      case ZMQ_EVENT_DISCONNECTED:
        ++disconnections_;
        continue;
      case ZMQ_EVENT_HANDSHAKE_SUCCEEDED:
        return Event{Outcome::Succeeded, "handshake succeeded"};
      case ZMQ_EVENT_HANDSHAKE_FAILED_AUTH:
        return Event{Outcome::Refused,
                     "authentication refused (status " + std::to_string(value) + ")"};
      case ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL:
        if (value == ZMQ_PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH) {
          return Event{Outcome::MechanismMismatch, "security mechanism mismatch"};
        }
        return Event{Outcome::Failed, "handshake protocol error " + std::to_string(value)};
      case ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL:
        return Event{Outcome::Failed, std::string("connection closed during the handshake (") +
                                          zmq_strerror(static_cast<int>(value)) + ")"};
      default:
        continue;
    }
  }
}

}  // namespace seppo
