#include "broker/ha_link.hpp"

#include "broker/ha_gate.hpp"
#include "seppo/error.hpp"

namespace seppo::broker::ha {

PairLink::PairLink(const PairOptions& options, Config config,
                   const std::optional<curve::KeyPair>& curve, TimePoint now, HaCore::LogSink log)
    : core_(config, now, std::move(log)),
      pub_(context_, zmq::socket_type::pub),
      sub_(context_, zmq::socket_type::sub) {
  // Its own context: the broker's ZAP handler admits clients' and workers' keys, and the HA
  // link is the pair's alone. State is published often; an old one is worth nothing. The size
  // limit applies to the handshake's commands too: CurveZMQ's INITIATE (its vouch and metadata)
  // is over 256 bytes, so a smaller limit closed every keyed link before a state went over it.
  for (zmq::socket_t* s : {&pub_, &sub_}) {
    s->set(zmq::sockopt::linger, 0);
    s->set(zmq::sockopt::sndhwm, 16);
    s->set(zmq::sockopt::rcvhwm, 16);
    s->set(zmq::sockopt::maxmsgsize, std::int64_t{4096});
  }
  if (curve) {
    // Bound before the PUB, so that no handshake goes unjudged (without a handler, libzmq
    // admits every key).
    pair_key_ = curve::decode(curve->public_key);
    zap_.emplace(context_, zmq::socket_type::rep);
    zap_->set(zmq::sockopt::linger, 0);
    zap_->bind("inproc://zeromq.zap.01");
    pub_.set(zmq::sockopt::zap_domain, "seppo-ha");
    pub_.set(zmq::sockopt::curve_server, 1);
    pub_.set(zmq::sockopt::curve_secretkey, zmq::buffer(curve::decode(curve->secret_key)));
    pub_.set(zmq::sockopt::curve_publickey, zmq::buffer(curve::decode(curve->public_key)));
    sub_.set(zmq::sockopt::curve_serverkey, zmq::buffer(curve::decode(curve->public_key)));
    sub_.set(zmq::sockopt::curve_publickey, zmq::buffer(curve::decode(curve->public_key)));
    sub_.set(zmq::sockopt::curve_secretkey, zmq::buffer(curve::decode(curve->secret_key)));
  }
  sub_.set(zmq::sockopt::subscribe, "");
  try {
    pub_.bind(options.bind);
  } catch (const zmq::error_t& e) {
    throw seppo::Error("cannot bind --ha-bind " + options.bind + ": " + e.what());
  }
  bound_ = pub_.get(zmq::sockopt::last_endpoint);
  try {
    sub_.connect(options.peer);
  } catch (const zmq::error_t& e) {
    throw seppo::Error("cannot connect --ha-peer " + options.peer + ": " + e.what());
  }
  publish();
}

PairLink::~PairLink() {
  // A backup stopping because both were active (H11) published its state last: that one goes
  // out (the primary opens its adoption window on it), within a short linger.
  if (core_.must_yield()) {
    try {
      publish();
      pub_.set(zmq::sockopt::linger, 200);
    } catch (const zmq::error_t&) {
    }
  }
  pub_.close();
  sub_.close();
  if (zap_) zap_->close();
  context_.close();
}

void PairLink::publish() {
  for (const std::string& m : core_.take_outbox()) {
    try {
      pub_.send(zmq::buffer(m), zmq::send_flags::dontwait);
    } catch (const zmq::error_t&) {
    }
  }
}

std::vector<zmq::pollitem_t> PairLink::pollitems() {
  std::vector<zmq::pollitem_t> items = {{sub_.handle(), 0, ZMQ_POLLIN, 0}};
  if (zap_) items.push_back({zap_->handle(), 0, ZMQ_POLLIN, 0});
  return items;
}

void PairLink::answer_zap() {
  if (!zap_) return;
  for (int i = 0; i < 16; ++i) {
    zmq::message_t part;
    if (!zap_->recv(part, zmq::recv_flags::dontwait)) return;
    // version, request id, domain, address, routing id, mechanism, credentials (RFC 27).
    std::vector<std::string> request{part.to_string()};
    while (part.more()) {
      if (!zap_->recv(part)) break;
      if (request.size() < 8) request.push_back(part.to_string());
    }
    const bool pair = request.size() >= 7 && request[5] == "CURVE" && request[6] == pair_key_;
    const std::string id = request.size() >= 2 ? request[1] : std::string();
    zap_->send(zmq::buffer(std::string("1.0")), zmq::send_flags::sndmore);
    zap_->send(zmq::buffer(id), zmq::send_flags::sndmore);
    zap_->send(zmq::buffer(std::string(pair ? "200" : "400")), zmq::send_flags::sndmore);
    zap_->send(zmq::buffer(std::string(pair ? "OK" : "not the pair's key")),
               zmq::send_flags::sndmore);
    zap_->send(zmq::buffer(std::string()), zmq::send_flags::sndmore);  // user id
    zap_->send(zmq::buffer(std::string()), zmq::send_flags::none);     // metadata
  }
}

void PairLink::turn(TimePoint now) {
  answer_zap();
  for (int i = 0; i < 64; ++i) {
    if (!sub_.recv(frame_, zmq::recv_flags::dontwait)) break;
    if (frame_.more()) {
      while (frame_.more() && sub_.recv(frame_, zmq::recv_flags::dontwait)) {
      }
      continue;  // one frame per message (§15.2)
    }
    core_.on_peer_state(frame_.data(), frame_.size(), now);
  }
  if (now >= core_.next_deadline()) core_.on_tick(now);
  publish();
}

std::optional<std::string> PairLink::admit(Core& core, const void* header, std::size_t size,
                                           TimePoint now) {
  std::optional<std::string> refused = gate(core_, core, header, size, now);
  publish();
  return refused;
}

}  // namespace seppo::broker::ha
