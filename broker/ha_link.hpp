// The socket side of a broker pair (docs/protocol.md §15.2): a PUB socket on --ha-bind that
// publishes this broker's state, a SUB socket connected to the peer's --ha-peer that takes the
// peer's, and the gate in front of broker::Core that asks broker::ha::HaCore whether a client's
// or worker's message is served here. The server's loop polls pollitems() and calls turn().
#pragma once

#include <zmq.hpp>

#include <optional>
#include <string>
#include <vector>

#include "broker/core.hpp"
#include "broker/ha_core.hpp"
#include "common/curve.hpp"

namespace seppo::broker::ha {

struct PairOptions {
  Role role = Role::Primary;
  std::string bind;  // --ha-bind
  std::string peer;  // --ha-peer
};

class PairLink {
 public:
  // Binds and connects; throws seppo::Error naming the endpoint that failed. With `curve`, the
  // PUB is a CurveZMQ server with the pair's key and the SUB expects that key (§15.2).
  PairLink(const PairOptions& options, Config config, const std::optional<curve::KeyPair>& curve,
           TimePoint now, HaCore::LogSink log);
  ~PairLink();
  PairLink(const PairLink&) = delete;
  PairLink& operator=(const PairLink&) = delete;

  // The SUB socket, and with keys the link's authentication handler.
  std::vector<zmq::pollitem_t> pollitems();
  // Answers the handler, takes in the peer's state messages, runs the timers, publishes.
  void turn(TimePoint now);
  TimePoint next_deadline() const { return core_.next_deadline(); }
  // The gate (broker/ha_gate.hpp) for the message whose header frame this is: nothing to pass
  // it to `core`, or the ERROR not_active header to answer; then this broker's state goes out.
  std::optional<std::string> admit(Core& core, const void* header, std::size_t size, TimePoint now);
  const std::string& bound() const { return bound_; }

  HaCore& core() { return core_; }

 private:
  void publish();
  // With keys: admits to the PUB only the pair's own key (ZAP, RFC 27), so a client or worker,
  // which all hold the broker's public key, cannot hold connections to the HA endpoint.
  void answer_zap();

  HaCore core_;
  zmq::context_t context_{1};
  zmq::socket_t pub_;
  zmq::socket_t sub_;
  std::optional<zmq::socket_t> zap_;  // with keys
  std::string pair_key_;              // the pair's public key, 32 bytes
  zmq::message_t frame_;
  std::string bound_;
};

}  // namespace seppo::broker::ha
