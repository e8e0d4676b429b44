// The faults: planned from the seed at the start, carried out as events.
#include "sim/world_impl.hpp"

#include <sstream>

namespace seppo::sim::detail {

// --- faults -----------------------------------------------------------------------------------

void World::plan_faults() {
  const Us window = rng_.between(2 * kSecond, 12 * kSecond);
  auto at = [&] { return rng_.between(0, window); };
  auto add = [&](Us t, FaultKind kind, int peer, std::uint64_t arg = 0) {
    Event e = make_event(Ev::Fault, peer, 0);
    e.fault = kind;
    e.arg = arg;
    schedule(t, std::move(e));
    calm_at_ = std::max(calm_at_, t);
  };
  const std::uint32_t f = options_.faults;
  if (f & kWorkerCrash) {
    for (int n = static_cast<int>(rng_.below(4)); n-- > 0;) {
      add(at(), FaultKind::WorkerCrash, workers_[rng_.below(workers_.size())]);
    }
  }
  if (f & kBrokerCrash) {
    for (int n = static_cast<int>(rng_.below(3)); n-- > 0;) add(at(), FaultKind::BrokerCrash, -1);
  }
  if ((f & kClientVanish) && rng_.chance(300)) {
    add(at(), FaultKind::ClientVanish, clients_[rng_.below(clients_.size())]);
  }
  if (f & kPartition) {
    for (int n = static_cast<int>(rng_.below(4)); n-- > 0;) {
      const int peer = static_cast<int>(rng_.below(peers_.size()));
      add(at(), FaultKind::PartitionStart, peer,
          static_cast<std::uint64_t>(rng_.between(50 * kMs, 3 * kSecond)));
    }
  }
  if (f & kFreeze) {
    for (int n = static_cast<int>(rng_.below(3)); n-- > 0;) {
      add(at(), FaultKind::Freeze, workers_[rng_.below(workers_.size())],
          static_cast<std::uint64_t>(rng_.between(kExpiry / 2, 4 * kSecond)));
    }
  }
  plan_churn(window);
  plan_keys(window);
  plan_orphans(window);
  plan_restarts(window);
}

// Issue 25: the broker restarts while workers run tasks: they keep running them, tell the new
// broker, which adopts them when the clients resubmit their chunks (docs/protocol.md §9.1).
void World::plan_restarts(Us window) {
  if (!(options_.faults & kBrokerRestart)) return;
  for (int n = static_cast<int>(rng25_.below(3)); n-- > 0;) {
    Event e = make_event(Ev::Fault, -1, 0);
    e.fault = FaultKind::RestartRunning;
    const Us t = rng25_.between(0, window);
    schedule(t, std::move(e));
    calm_at_ = std::max(calm_at_, t + 2 * kSecond);
  }
}

// Invariant 16: the items running when the broker went (a restart, or a pair's host lost), which
// their workers keep for the next broker to adopt.
void World::note_running() {
  kept_.clear();
  for (int i : workers_) {
    Peer& p = peers_[i];
    p.sequence_at_restart = p.max_sequence;
    p.incarnation_at_restart = p.incarnation;
    if (!p.alive || p.frozen || !p.running) continue;
    for (std::int64_t x : p.running_inputs) {
      kept_[x].push_back(KeptRun{i, p.incarnation, p.running_sequence, now_});
    }
  }
}

void World::tear_down_broker() {
  broker_.reset();
  admission_.reset();
  // An impostor's connection goes with the broker's socket; it does not come back.
  for (Peer& p : peers_) {
    if (p.kind == Peer::Kind::Impostor) p.alive = p.link.wanted = false;
  }
  stolen_.clear();
  bound_.clear();
  where_.clear();  // the new instance's monitor knows no connection
  lost_.clear();
  broker_disturbed_at_ = now_;
  for (std::size_t k = 0; k < peers_.size(); ++k) {
    break_link(static_cast<int>(k), 0);
    peers_[k].link.router_knows = false;
  }
}

void World::start_broker(Random& rng) {
  const std::uint64_t instance = rng.next() | 1;
  make_broker(instance);
  make_admission();
  ++broker_generation_;
  broker_disturbed_at_ = now_;
  if (trace_) tracef("B restarts empty, instance " + std::to_string(instance));
  for (std::size_t k = 0; k < peers_.size(); ++k) {
    try_connect(static_cast<int>(k), rng.between(kMs, 200 * kMs));
  }
  broker_tick_schedule();
}

void World::restart_fault(FaultKind kind, std::uint64_t arg) {
  auto later = [&](Us delay, FaultKind k, std::uint64_t a = 0) {
    Event e = make_event(Ev::Fault, -1, 0);
    e.fault = k;
    e.arg = a;
    schedule(now_ + delay, std::move(e));
    calm_at_ = std::max(calm_at_, now_ + delay + 2 * kSecond);
  };
  switch (kind) {
    case FaultKind::RestartRunning: {
      if (!broker_) return;  // down already (broker-crash)
      bool running = false;
      for (int i : workers_) {
        const Peer& p = peers_[i];
        running = running || (p.alive && !p.frozen && p.running);
      }
      if (!running) {
        if (arg < 40) later(rng25_.between(20 * kMs, 200 * kMs), kind, arg + 1);
        return;
      }
      ++report_.faults_injected;
      ++report_.restarts_running;
      note_running();
      if (rng25_.chance(500)) {
        // SIGTERM: BYE to every peer, flushed, then the process exits.
        if (trace_) tracef("B stops (SIGTERM) while tasks run");
        broker_disturbed_at_ = now_;  // its BYE makes workers reconnect
        broker_->shutdown();
        broker_flush();
        later(rng25_.between(2 * kMs, 20 * kMs), FaultKind::BrokerStop);
      } else {
        if (trace_) tracef("B is killed while tasks run");
        tear_down_broker();
        later(rng25_.between(50 * kMs, kSecond), FaultKind::BrokerBack);
      }
      break;
    }
    case FaultKind::BrokerStop:
      if (!broker_) return;
      tear_down_broker();
      later(rng25_.between(50 * kMs, kSecond), FaultKind::BrokerBack);
      break;
    case FaultKind::BrokerBack:
      if (broker_) return;
      start_broker(rng25_);
      break;
    default:
      break;
  }
}

// Issue 12 case 5: a burst of peers that send READY and close before anything else (a port
// scan, a crash loop). The broker may send them TASKs before it knows they are gone; those
// items never ran and must not be charged.
void World::plan_churn(Us window) {
  if (!(options_.faults & kChurn) || !rng12_.chance(500)) return;
  const Us burst = rng12_.between(0, window);
  for (int n = static_cast<int>(rng12_.between(5, 40)); n-- > 0;) {
    Peer p;
    p.kind = Peer::Kind::Ghost;
    p.name = "G" + std::to_string(peers_.size() + 1);
    p.user = user_of(p);
    p.link.id = p.name;
    by_id_[p.link.id] = static_cast<int>(peers_.size());
    peers_.push_back(std::move(p));
    Event e = make_event(Ev::Fault, static_cast<int>(peers_.size()) - 1, 0);
    e.fault = FaultKind::GhostStart;
    const Us t = burst + rng12_.between(0, 500 * kMs);
    schedule(t, std::move(e));
    calm_at_ = std::max(calm_at_, t);
  }
}

void World::fault(FaultKind kind, int i, std::uint64_t arg) {
  if (i >= 0 && static_cast<std::size_t>(i) < peers_.size()) peers_[i].faulted_at = now_;
  auto later = [&](Us delay, FaultKind k, int peer, std::uint64_t a = 0) {
    Event e = make_event(Ev::Fault, peer, 0);
    e.fault = k;
    e.arg = a;
    schedule(now_ + delay, std::move(e));
    calm_at_ = std::max(calm_at_, now_ + delay);
  };
  switch (kind) {
    case FaultKind::HostLost:
    case FaultKind::HostBack:
    case FaultKind::HaCut:
    case FaultKind::YieldRestart:
      pair_fault(kind, arg);  // sim/pair.cpp
      break;
    case FaultKind::WorkerCrash: {
      Peer& p = peers_[i];
      if (!p.alive) return;
      ++report_.faults_injected;
      if (arg == 1) {
        // Poison is the item's doing, not a fault that stops: the run's calm does not wait for
        // it. Its supervisor forks a new process, which picks a new routing id.
        kill_worker(i, "ran a poison item");
        Event e = make_event(Ev::Fault, i, 0);
        e.fault = FaultKind::WorkerRestart;
        e.arg = 1;
        schedule(now_ + rng_.between(20 * kMs, 2 * kSecond), std::move(e));
        break;
      }
      // Mostly the process dies and its kernel closes the connection; sometimes the host
      // vanishes and nothing tells the broker (no FIN, no RST): only the expiry does.
      kill_worker(i, "crashed", (options_.faults & kCloseNotice) && rng12_.chance(150));
      later(rng_.between(20 * kMs, 2 * kSecond), FaultKind::WorkerRestart, i, rng_.below(2));
      break;
    }
    case FaultKind::WorkerRestart:
      if (!peers_[i].alive) start_worker(i, arg == 1);
      break;
    case FaultKind::BrokerCrash: {
      if (!broker_) return;
      ++report_.faults_injected;
      if (trace_) tracef("B crashes");
      tear_down_broker();
      later(rng_.between(100 * kMs, 4 * kSecond), FaultKind::BrokerRestart, -1);
      break;
    }
    case FaultKind::BrokerRestart:
      if (broker_) return;  // started again already (broker-restart)
      start_broker(rng_);
      break;
    case FaultKind::RestartRunning:
    case FaultKind::BrokerStop:
    case FaultKind::BrokerBack:
      restart_fault(kind, arg);
      break;
    case FaultKind::ClientVanish: {
      Peer& p = peers_[i];
      if (!p.alive) return;
      ++report_.faults_injected;
      if (trace_) tracef(p.name + " vanishes");
      p.alive = false;
      if (p.job) end_job(i, JobRecord::State::Vanished);
      p.link.wanted = false;
      p.link.queued.clear();
      break_link(i, 0);
      break;
    }
    case FaultKind::PartitionStart: {
      Peer& p = peers_[i];
      if (!p.alive) return;
      ++report_.faults_injected;
      if (trace_) tracef(p.name + " is cut off for " + std::to_string(arg / kMs) + " ms");
      p.link.partitioned_until =
          std::max<Us>(p.link.partitioned_until, now_ + static_cast<Us>(arg));
      // No FIN crosses a partition: the ROUTER notices only later (ZMTP heartbeats, TCP).
      break_link(i, rng_.between(0, static_cast<Us>(arg)));
      later(static_cast<Us>(arg), FaultKind::PartitionEnd, i);
      break;
    }
    case FaultKind::PartitionEnd:
      peers_[i].disturbed_at = now_;
      if (trace_) tracef(peers_[i].name + " is reachable again");
      try_connect(i, rng_.between(kMs, 100 * kMs));
      break;
    case FaultKind::Freeze: {
      Peer& p = peers_[i];
      if (!p.alive || p.frozen) return;
      ++report_.faults_injected;
      if (trace_) tracef(p.name + " is stopped (SIGSTOP) for " + std::to_string(arg / kMs) + " ms");
      p.frozen = true;
      p.disturbed_at = now_;
      later(static_cast<Us>(arg), FaultKind::Thaw, i, p.incarnation);
      break;
    }
    case FaultKind::Thaw: {
      Peer& p = peers_[i];
      if (!p.alive || !p.frozen || p.incarnation != arg) return;
      p.frozen = false;
      p.disturbed_at = now_;
      if (trace_) tracef(p.name + " resumes (SIGCONT)");
      // What arrived meanwhile waited in the socket; the running item resumes where it stopped.
      for (Event& d : std::exchange(p.deferred, {})) schedule(now_, std::move(d));
      break;
    }
    case FaultKind::GhostStart: {
      Peer& p = peers_[i];
      ++report_.ghosts;
      p.alive = true;
      p.link.wanted = true;
      if (trace_) tracef(p.name + " connects, sends READY and will close");
      const wire::Ready ready{p.name + ", a peer that closes at once",
                              "ghosthost",
                              static_cast<std::int64_t>(9000 + i),
                              static_cast<std::uint32_t>(rng12_.between(1, 16)),
                              {"m.square"}};
      peer_send(i, Frame{wire::encode(ready), std::nullopt, {}});
      try_connect(i, rng12_.between(100, 3 * kMs));
      later(rng12_.between(1 * kMs, 15 * kMs), FaultKind::GhostClose, i);
      break;
    }
    case FaultKind::GhostClose: {
      Peer& p = peers_[i];
      if (!p.alive) return;
      if (trace_) tracef(p.name + " closes");
      p.alive = false;
      p.link.wanted = false;
      p.link.queued.clear();
      break_link(i, (options_.faults & kCloseNotice) && rng12_.chance(100) ? -1 : 0);
      break;
    }
    case FaultKind::ImpostorStart:
    case FaultKind::ImpostorClose:
    case FaultKind::Revoke:
    case FaultKind::IntruderSend:
    case FaultKind::IntruderReady:
      keys_fault(kind, i, arg);
      break;
    case FaultKind::SupervisorDies:
      orphan(i);
      break;
    case FaultKind::OrphanCheck:
      check_orphan(i, arg);
      break;
    case FaultKind::Cancel: {
      Peer& p = peers_[i];
      if (!p.alive || !p.job || p.job->job_id() != arg) return;
      if (trace_) tracef(p.name + " cancels job " + std::to_string(arg));
      end_job(i, JobRecord::State::Cancelled);
      break;
    }
  }
}

}  // namespace seppo::sim::detail

namespace seppo::sim {

std::optional<std::uint32_t> parse_faults(const std::string& text) {
  static const std::pair<const char*, Fault> names[] = {{"hang", kHang},
                                                        {"close-notice", kCloseNotice},
                                                        {"churn", kChurn},
                                                        {"keys", kKeys},
                                                        {"broker-restart", kBrokerRestart},
                                                        {"host-lost", kHostLost},
                                                        {"ha-partition", kHaPartition},
                                                        {"worker-crash", kWorkerCrash},
                                                        {"broker-crash", kBrokerCrash},
                                                        {"client-vanish", kClientVanish},
                                                        {"partition", kPartition},
                                                        {"freeze", kFreeze},
                                                        {"raise", kRaise},
                                                        {"poison", kPoison},
                                                        {"drift", kDrift}};
  if (text == "all") return kAllFaults;
  if (text == "issue11") return kIssue11Faults;
  if (text == "none" || text.empty()) return 0u;
  std::uint32_t faults = 0;
  std::stringstream list(text);
  std::string name;
  while (std::getline(list, name, ',')) {
    bool known = false;
    for (const auto& [n, f] : names) {
      if (name == n) {
        faults |= f;
        known = true;
      }
    }
    if (!known) return std::nullopt;
  }
  return faults;
}

std::string fault_names(std::uint32_t faults) {
  if (faults == kAllFaults) return "all";
  if (faults == kIssue11Faults) return "issue11";
  if (faults == 0) return "none";
  static const char* names[] = {"worker-crash",   "broker-crash", "client-vanish", "partition",
                                "freeze",         "raise",        "poison",        "drift",
                                "hang",           "close-notice", "churn",         "keys",
                                "broker-restart", "host-lost",    "ha-partition"};
  std::string out;
  for (int k = 0; k < 15; ++k) {
    if (faults & (1u << k)) out += (out.empty() ? "" : ",") + std::string(names[k]);
  }
  return out;
}

}  // namespace seppo::sim
