// A pair of brokers (issue 25 §2, seppo-sim --pair): two broker::Core instances, each behind its
// own broker::ha::HaCore, glued by broker/ha_gate.hpp exactly as broker/server.cpp glues them,
// and an HA link between them that carries each broker's state messages with a delay. Workers
// and clients are given both endpoints: their own cores (W40, W41, C30, C31) decide which broker
// their connection goes to, and the network delivers to that one.
//
// The single-broker code serves either broker unchanged: the World's broker fields (broker_,
// admission_, where_, ...) are the current broker's, and use_broker() swaps them with the
// other's slot before an event that concerns it.
#include "sim/world_impl.hpp"

namespace seppo::sim::detail {

void World::use_broker(int b) {
  if (!options_.pair || b == current_) return;
  auto swap_with = [this](BrokerSlot& s) {
    std::swap(s.core, broker_);
    std::swap(s.admission, admission_);
    std::swap(s.ha, ha_);
    std::swap(s.where, where_);
    std::swap(s.lost, lost_);
    std::swap(s.bound, bound_);
    std::swap(s.cancels, cancels_);
    std::swap(s.tick_gen, broker_tick_gen_);
  };
  swap_with(slots_[current_]);  // the current broker's fields go to its slot
  swap_with(slots_[b]);         // and b's come out of its own
  current_ = b;
}

// Broker b's process starts (as seppo-broker --ha-role primary|backup --ha-peer ...): a new
// instance of the core, a new HaCore in its role's state (H1, H2), listening for peers.
void World::make_pair_broker(int b, Random& rng) {
  use_broker(b);
  make_broker(rng.next() | 1);
  make_admission();
  broker::ha::Config c;
  c.role = b == 0 ? broker::ha::Role::Primary : broker::ha::Role::Backup;
  // seppo-broker's defaults from its --heartbeat-ms: interval heartbeat / 4, expiry heartbeat.
  c.interval = kHeartbeat / 4;
  c.expiry = kHeartbeat;
  broker::ha::HaCore::LogSink sink;
  if (trace_) {
    sink = [this, b](log::Level, const std::string& line) {
      tracef(std::string(b == 0 ? "B1" : "B2") + " log: " + line);
    };
  }
  ha_ = std::make_unique<broker::ha::HaCore>(c, broker_tp(), sink);
  slots_[b].active_since = -1;
  slots_[b].served_at = -1;
  slots_[b].turned_at = -1;
  if (trace_)
    tracef(std::string(b == 0 ? "B1 (primary)" : "B2 (backup)") + " starts, state " +
           broker::ha::name(ha_->state()));
  for (std::size_t k = 0; k < peers_.size(); ++k) {
    if (peers_[k].link.target == b) try_connect(static_cast<int>(k), rng.between(kMs, 200 * kMs));
  }
  ha_publish();
  broker_tick_schedule();
}

// The HA link (broker/ha_link.cpp: a PUB to the peer broker's SUB): each message is delayed,
// in order; lost while the link is cut, or when either end is down when it arrives.
void World::ha_publish() {
  if (!ha_) return;
  const int to = 1 - current_;
  for (std::string& state : ha_->take_outbox()) {
    if (now_ < ha_cut_until_) {
      ++report_.ha_lost;
      continue;
    }
    const Us delay =
        rng25p_.chance(950) ? rng25p_.between(50, 2 * kMs) : rng25p_.between(2 * kMs, 30 * kMs);
    const Us at = std::max(now_ + delay, last_ha_send_[current_]);
    last_ha_send_[current_] = at;
    Event e = make_event(Ev::HaState, -1, 0);
    e.broker = to;
    e.frame.header = std::move(state);
    schedule(at, std::move(e));
  }
}

void World::ha_receive(Event& e) {
  // Lost while the link is cut or the receiver is down; a message on the wire arrives even if
  // its sender exited since.
  if (!broker_ || !ha_ || now_ < ha_cut_until_) {
    ++report_.ha_lost;
    return;
  }
  ha_->on_peer_state(e.frame.header.data(), e.frame.header.size(), broker_tp());
  ha_after();
}

// After the current broker's HaCore took a state or a tick in: the shared glue (a new adoption
// window when it became active, STATUS's ha map), its messages out, and H11's yield.
void World::ha_after() {
  if (!ha_) return;
  const bool was_active = slots_[current_].active_since >= 0;
  broker::ha::sync(*ha_, *broker_, broker_tp());
  if (ha_->serving() && !was_active) {
    // Invariant 19 (Binary Star's rule): a broker that takes over while its peer is silent does
    // so only because a client or worker turned to it within the expiry (H6, H14, H16).
    if (!ha_->peer(broker_tp()) && (slots_[current_].turned_at < 0 ||
                                    now_ - slots_[current_].turned_at > kHeartbeat.count() * kMs)) {
      violate("B" + std::to_string(current_ + 1) +
              " became active while its peer was silent, and no client or worker had turned to it");
    }
    slots_[current_].active_since = now_;
    ++report_.takeovers;
  }
  ha_publish();
  if (ha_->must_yield()) {
    // H11: the backup stops serving: broker/server.cpp shuts its broker down (BYE to its peers)
    // and exits; its service manager starts it again, and it finds the primary active.
    const int b = current_;
    if (trace_) tracef("B2 yields to the active primary: it stops and is started again");
    broker_disturbed_at_ = now_;
    broker_->shutdown();
    broker_flush();
    drop_broker(0);
    Event again = make_event(Ev::Fault, -1, 0);
    again.fault = FaultKind::YieldRestart;
    again.arg = static_cast<std::uint64_t>(b);
    schedule(now_ + rng25p_.between(200 * kMs, kSecond), std::move(again));
  }
}

// The current broker's process is gone: every connection to it breaks (the peers notice at
// once, router_notices_after 0, or only by its silence, -1: its host vanished).
void World::drop_broker(Us router_notices_after) {
  broker_.reset();
  admission_.reset();
  ha_.reset();
  where_.clear();
  lost_.clear();
  bound_.clear();
  slots_[current_].active_since = -1;
  for (std::size_t k = 0; k < peers_.size(); ++k) {
    if (peers_[k].link.target != current_) continue;
    break_link(static_cast<int>(k), router_notices_after);
    peers_[k].link.router_knows = false;
  }
}

// A peer's core chose the other endpoint (W40, W41, C30, C31): its socket leaves the broker it
// was connected to (which notices the close) and connects to the other.
void World::peer_moved(int i, int target) {
  Peer& p = peers_[i];
  if (p.link.target == target) return;
  if (trace_)
    tracef(p.name + " turns to " + (target == 0 ? "B1" : "B2") + " (its core's endpoint)");
  break_link(i, 0);
  p.link.target = target;
}

void World::plan_pair_faults(Us window) {
  auto add = [&](Us t, FaultKind kind, std::uint64_t arg) {
    Event e = make_event(Ev::Fault, -1, 0);
    e.fault = kind;
    e.arg = arg;
    schedule(t, std::move(e));
    calm_at_ = std::max(calm_at_, t + static_cast<Us>(arg) + 2 * kSecond);
  };
  if ((options_.faults & kHostLost) && rng25p_.chance(600)) {
    // Gone for good in some runs: the survivor finishes alone.
    add(rng25p_.between(0, window), FaultKind::HostLost,
        rng25p_.chance(700) ? static_cast<std::uint64_t>(rng25p_.between(kSecond, 6 * kSecond))
                            : 0);
  }
  if (options_.faults & kHaPartition) {
    for (int n = static_cast<int>(rng25p_.below(3)); n-- > 0;) {
      add(rng25p_.between(0, window), FaultKind::HaCut,
          static_cast<std::uint64_t>(rng25p_.between(100 * kMs, 4 * kSecond)));
    }
  }
}

void World::pair_fault(FaultKind kind, std::uint64_t arg) {
  ++report_.faults_injected;
  switch (kind) {
    case FaultKind::HostLost: {
      // The active broker's host vanishes: no FIN, no RST; its HA messages stop.
      int b = -1;
      for (int k = 0; k < 2; ++k) {
        if (broker_up(k) && ha_of(k)->serving()) b = k;
      }
      if (b < 0) return;
      // A backup that never heard its primary does not take over (H8, Binary Star's rule): if
      // the survivor has not (the HA link was cut from the start), or is down itself (a backup
      // that yielded, H11, and starts again as a backup), nothing serves until the lost host
      // is back, and an operator brings it back; the run does that in 1-6 s.
      const broker::ha::HaCore* other = ha_of(1 - b);
      if (!arg && (!other || other->state() == broker::ha::State::Backup)) {
        arg = static_cast<std::uint64_t>(rng25p_.between(kSecond, 6 * kSecond));
        calm_at_ = std::max(calm_at_, now_ + static_cast<Us>(arg) + 2 * kSecond);
      }
      use_broker(b);
      if (trace_)
        tracef(std::string(b == 0 ? "B1" : "B2") + "'s host is lost" +
               (arg ? ", back in " + std::to_string(arg / kMs) + " ms" : ", for good"));
      broker_disturbed_at_ = now_;
      // Invariant 16 across a fail-over: what runs now is adopted by the survivor once it takes
      // over (its adoption window opens then), not started again elsewhere.
      note_running();
      ++broker_generation_;
      drop_broker(-1);
      if (arg) {
        Event back = make_event(Ev::Fault, -1, 0);
        back.fault = FaultKind::HostBack;
        back.arg = static_cast<std::uint64_t>(b);
        schedule(now_ + static_cast<Us>(arg), std::move(back));
      }
      break;
    }
    case FaultKind::HostBack:
    case FaultKind::YieldRestart:
      if (broker_up(static_cast<int>(arg))) return;
      make_pair_broker(static_cast<int>(arg), rng25p_);
      break;
    case FaultKind::HaCut:
      if (trace_)
        tracef("the link between the brokers is cut for " + std::to_string(arg / kMs) + " ms");
      if (now_ >= ha_cut_until_) ha_cut_since_ = now_;
      ha_cut_until_ = std::max(ha_cut_until_, now_ + static_cast<Us>(arg));
      break;
    default:
      break;
  }
}

// Invariant 17 (Binary Star's rule): while only the link between the brokers is cut, no
// client or worker turns to the passive broker, so it never takes over: never two active
// brokers both serving peers, unless a peer did turn to a broker that was not active (a peer
// of its own broke, restarted or was stopped: it cannot tell that from its broker's loss).
void World::check_pair() {
  if (!broker_up(0) || !broker_up(1)) return;
  if (!ha_of(0)->serving() || !ha_of(1)->serving()) return;
  const Us since = std::max(slots_[0].active_since, slots_[1].active_since);
  if (slots_[0].served_at < since || slots_[1].served_at < since) return;
  if (last_turn_ >= 0 && last_turn_ >= ha_cut_since_ - kExpiry) return;
  violate("both brokers of the pair are active and serve peers (since " +
          std::to_string(since / kMs) + " ms), and no peer turned to a passive one");
}

}  // namespace seppo::sim::detail
