// The broker's key gate and routing-id bindings in the simulated world (issue 27): every
// message reaches the core through broker::Admission, as in broker/server.cpp; with kKeys the
// broker runs as under CurveZMQ, impostors present other peers' routing ids under their own
// keys, and a client's key is revoked (a SIGHUP reload) while its peer keeps talking.
//
// Invariants (docs/simulation.md):
//   11. a routing id bound to one key is never used for another's: nothing the broker sends
//       reaches an impostor, and no message under an id bound to another key is taken;
//   12. a peer whose key is no longer authorised has no message taken, and is sent nothing but
//       ERROR forbidden;
//   13. a peer under its own key and routing id is never refused.
#include "sim/world_impl.hpp"

#include "common/curve.hpp"

namespace seppo::sim::detail {
namespace {

// A 40-character stand-in for a Z85 public key, unique per peer slot.
std::string key_of(const std::string& name) {
  std::string key = "simkey-" + name;
  key.resize(curve::kZ85Chars, '.');
  return key;
}

}  // namespace

std::string World::user_of(const Peer& p) const {
  const bool client =
      p.kind == Peer::Kind::Client || (p.kind == Peer::Kind::Intruder && !p.revoked_worker);
  return (client ? "client:" : "worker:") + key_of(p.name);
}

std::shared_ptr<const broker::KeyLists> World::key_lists() const {
  std::vector<std::pair<std::string, broker::Role>> keys;
  for (const Peer& p : peers_) {
    if (p.kind == Peer::Kind::Intruder && revoked_) continue;
    const bool client =
        p.kind == Peer::Kind::Client || (p.kind == Peer::Kind::Intruder && !p.revoked_worker);
    keys.emplace_back(key_of(p.name), client ? broker::Role::Client : broker::Role::Worker);
  }
  return broker::KeyLists::of(keys);
}

void World::make_admission() {
  broker::Admission::Options o;
  if (options_.faults & kKeys) {
    o.lists = key_lists();
    // Four times the expiry, the period broker/server.cpp binds ids for.
    o.bind_for =
        std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::microseconds(kBindFor));
  }
  broker::Admission::LogSink sink;
  if (trace_) sink = [this](log::Level, const std::string& line) { tracef("B log: " + line); };
  admission_ = std::make_unique<broker::Admission>(o, sink);
}

broker::Admission::Verdict World::admit(int i) {
  Peer& p = peers_[i];
  broker::Admission::Verdict v =
      admission_->on_message(p.link.id, p.user.c_str(), p.link.connection, broker_tp());
  const bool keys = (options_.faults & kKeys) != 0;
  auto b = bound_.find(p.link.id);
  const bool taken =
      keys && b != bound_.end() && b->second.first != p.user && now_ - b->second.second <= kBindFor;
  const bool revoked = p.kind == Peer::Kind::Intruder && revoked_;
  if (v.accepted) {
    if (taken) {
      violate("the broker took a message of " + p.name + " under routing id " +
              printable(p.link.id) + ", which is bound to another key");
    }
    if (revoked) violate("the broker took a message of " + p.name + ", whose key was revoked");
    if (keys) bound_[p.link.id] = {p.user, now_};
    return v;
  }
  ++report_.refused;
  broker_->stats().refused(v.reason);
  if (trace_) tracef("B refuses it (" + std::string(v.reason) + ")");
  if (!taken && !revoked) {
    violate("the broker refused a message of " + p.name + " (" + v.reason +
            ") under its own key and a routing id no other key holds");
  }
  if (!v.refusal.empty() && p.link.router_knows) {
    broker_send(i, wire::encode(wire::Error{wire::Code::Forbidden, v.refusal}), std::nullopt);
  }
  return v;
}

void World::plan_keys(Us window) {
  if (!(options_.faults & kKeys)) return;
  auto add = [&](Us t, FaultKind kind, int peer, std::uint64_t arg = 0) {
    Event e = make_event(Ev::Fault, peer, 0);
    e.fault = kind;
    e.arg = arg;
    schedule(t, std::move(e));
    calm_at_ = std::max(calm_at_, t);
  };
  auto new_peer = [&](Peer::Kind kind, const std::string& prefix) {
    Peer p;
    p.kind = kind;
    p.name = prefix + std::to_string(peers_.size() + 1);
    p.user = user_of(p);
    peers_.push_back(std::move(p));
    return static_cast<int>(peers_.size()) - 1;
  };
  const int owners = static_cast<int>(workers_.size() + clients_.size());
  // Impostors need the close of their victim's connection known (kCloseNotice): before that,
  // neither ZeroMQ (whose ROUTER still holds the id) nor the bindings would let them in.
  if ((options_.faults & kCloseNotice) && rng27_.chance(600)) {
    for (int n = static_cast<int>(rng27_.between(1, 4)); n-- > 0;) {
      const int i = new_peer(Peer::Kind::Impostor, "I");
      const int pick = static_cast<int>(rng27_.below(static_cast<std::uint64_t>(owners)));
      peers_[i].victim = pick < static_cast<int>(workers_.size())
                             ? workers_[pick]
                             : clients_[pick - static_cast<int>(workers_.size())];
      add(rng27_.between(0, window + 2 * kSecond), FaultKind::ImpostorStart, i);
    }
  }
  auto connect = [&](int i) {
    Peer& p = peers_[i];
    p.link.id = p.name;
    by_id_[p.link.id] = i;
    p.alive = true;
    p.link.wanted = true;
    try_connect(i, rng27_.between(100, 5 * kMs));
  };
  Us revoke = -1;
  if (rng27_.chance(500)) {
    const int i = new_peer(Peer::Kind::Intruder, "X");
    connect(i);
    revoke = rng27_.between(window / 4, window);
    add(revoke, FaultKind::Revoke, -1);
    for (std::uint64_t k = 0; k < 3; ++k) {
      add(revoke + rng27_.between(kMs, 500 * kMs), FaultKind::IntruderSend, i, k);
    }
  }
  // Issue 26: a worker registered before the reload that revokes its key. It announces itself
  // 20-300 ms before (so the broker counts it then, and may send it TASKs) and never answers:
  // from the reload on, the broker must hold nothing at it and send it nothing.
  if (rng27_.chance(500)) {
    const int i = new_peer(Peer::Kind::Intruder, "Y");
    peers_[i].revoked_worker = true;
    peers_[i].user = user_of(peers_[i]);
    connect(i);
    if (revoke < 0) {
      revoke = rng27_.between(window / 4, window);
      add(revoke, FaultKind::Revoke, -1);
    }
    add(std::max<Us>(kMs, revoke - rng27_.between(20 * kMs, 300 * kMs)), FaultKind::IntruderReady,
        i);
  }
}

void World::keys_fault(FaultKind kind, int i, std::uint64_t arg) {
  switch (kind) {
    case FaultKind::ImpostorStart: {
      Peer& p = peers_[i];
      const Peer& v = peers_[p.victim];
      // ROUTER_HANDOVER is off under CurveZMQ: while the ROUTER holds the id, ZeroMQ refuses
      // a second connection presenting it. An id bound to nobody (its owner never spoke to this
      // broker, or not for kBindFor) is anyone's: the impostor goes for bound ones only.
      auto b = bound_.find(v.link.id);
      const bool bound = b != bound_.end() && now_ - b->second.second <= kBindFor - kSecond;
      if (!broker_ || !bound || v.link.connection < 0 || v.link.router_knows ||
          !v.link.close_noticed || stolen_.count(v.link.id)) {
        if (trace_) tracef(p.name + " tries routing id " + printable(v.link.id) + ": refused");
        return;
      }
      ++report_.faults_injected;
      p.alive = true;
      p.link = Link{};
      p.link.id = v.link.id;
      p.link.wanted = true;
      p.link.up = true;
      p.link.router_knows = true;
      p.link.router_epoch = p.link.epoch;
      p.link.connection = ++next_connection_;
      stolen_[p.link.id] = i;
      if (trace_)
        tracef(p.name + " connects as " + printable(p.link.id) + " (" + v.name +
               "'s routing id) under its own key");
      // A worker's READY takes the id's tasks; a client's HEARTBEAT asks for job 1's results.
      const wire::Ready ready{p.name, "impostorhost", 666, 8, {"m.square"}};
      peer_send(i, Frame{wire::encode(ready), std::nullopt, {}});
      peer_send(i, Frame{wire::encode(wire::Heartbeat{1, 0, {0}}), std::nullopt, {}});
      Event e = make_event(Ev::Fault, i, 0);
      e.fault = FaultKind::ImpostorClose;
      schedule(now_ + rng27_.between(5 * kMs, 50 * kMs), std::move(e));
      break;
    }
    case FaultKind::ImpostorClose: {
      Peer& p = peers_[i];
      if (!p.alive) return;
      if (trace_) tracef(p.name + " closes");
      p.alive = false;
      p.link.wanted = false;
      p.link.up = false;
      p.link.router_knows = false;
      ++p.link.epoch;
      if (auto s = stolen_.find(p.link.id); s != stolen_.end() && s->second == i) stolen_.erase(s);
      if (admission_) admission_->on_closed(p.link.connection);
      break;
    }
    case FaultKind::Revoke: {
      revoked_ = true;
      if (trace_) tracef("B reloads its key lists: the intruders' keys are gone");
      if (!admission_) break;
      // broker::reload's rule, which the server runs too: the connections of workers whose key
      // went close.
      for (const broker::Admission::Revoked& r :
           broker::reload(*admission_, broker_.get(), key_lists(), broker_tp())) {
        auto it = by_id_.find(r.peer);
        if (it == by_id_.end() || peers_[it->second].link.connection != r.connection) continue;
        Peer& p = peers_[it->second];
        if (trace_) tracef("B closes " + p.name + "'s connection");
        p.alive = false;
        p.link.wanted = false;
        p.link.queued.clear();
        break_link(it->second, 0);
      }
      broker_flush();
      break;
    }
    case FaultKind::IntruderReady: {
      Peer& p = peers_[i];
      if (!p.alive || revoked_) return;
      const wire::Ready ready{p.name, "intruderhost", 668, 2, {"m.square"}};
      peer_send(i, Frame{wire::encode(ready), std::nullopt, {}});
      break;
    }
    case FaultKind::IntruderSend: {
      Peer& p = peers_[i];
      if (!p.alive) return;
      if (arg == 0) {
        msgpack::sbuffer items;
        msgpack::packer<msgpack::sbuffer>(items).pack(std::vector<std::int64_t>{7});
        peer_send(i, Frame{wire::encode(wire::Submit{1, "m.square", 0, 1, 1000}),
                           Bytes(std::string(items.data(), items.size())),
                           {}});
      } else if (arg == 1) {
        peer_send(i, Frame{wire::encode(wire::Heartbeat{1, 0, {0}}), std::nullopt, {}});
      } else {
        const wire::Ready ready{p.name, "intruderhost", 667, 4, {"m.square"}};
        peer_send(i, Frame{wire::encode(ready), std::nullopt, {}});
      }
      break;
    }
    default:
      break;
  }
}

}  // namespace seppo::sim::detail
