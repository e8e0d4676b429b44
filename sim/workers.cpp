// Simulated worker processes: a SessionCore and an executor that runs items in virtual time.
#include "sim/world_impl.hpp"

namespace seppo::sim::detail {

// --- workers ----------------------------------------------------------------------------------

void World::start_worker(int i, bool new_id) {
  Peer& p = peers_[i];
  if (new_id || p.link.id.empty()) {
    if (!p.link.id.empty()) by_id_.erase(p.link.id);
    p.link.id = p.name + (p.restarts > 0 ? "." + std::to_string(p.restarts) : "");
    by_id_[p.link.id] = i;
  }
  ++p.incarnation;
  p.alive = true;
  p.frozen = false;
  p.exec.clear();
  p.exec_at.clear();
  p.skipped.clear();
  p.skip_through = 0;
  p.orphaned_at = -1;  // a process forked by a live supervisor
  p.running = false;
  p.running_hangs = false;
  p.busy_since = now_;
  p.disturbed_at = now_;
  worker::SessionCoreOptions o;
  o.endpoint = options_.pair ? "b1,b2" : "sim";
  p.link.target = 0;  // a new process starts at the first endpoint of its list
  o.prefetch = p.prefetch;
  // Mixed framing (issue 28): every third worker speaks only single TASK and RESULT, as a
  // worker that predates "batch".
  o.batch = i % 3 != 2;
  o.heartbeat = kHeartbeat;
  o.liveness = kLiveness;
  o.max_reconnect_delay = kMaxReconnectDelay;
  const std::string pid = std::to_string(1000 + i * 100 + p.restarts);
  wire::Ready ready{p.name + ", process " + pid, "simhost", std::stoll(pid), 0, {}};
  auto log = [this, name = p.name](log::Level, const std::string& line) {
    if (trace_) tracef(name + " log: " + line);
  };
  p.core = std::make_unique<worker::SessionCore>(o, ready, std::vector<std::string>{"m.square"},
                                                 local_tp(p), log);
  p.link.wanted = true;
  p.link.queued.clear();
  if (trace_)
    tracef(p.name + " starts as " + p.link.id + " (prefetch " + std::to_string(p.prefetch) + ")");
  try_connect(i, rng_.between(100, 5 * kMs));
  worker_pump(i);
}

void World::kill_worker(int i, const std::string& why, bool host_vanished) {
  Peer& p = peers_[i];
  if (!p.alive) return;
  if (trace_) tracef(p.name + " dies: " + why + (host_vanished ? " (its host vanished)" : ""));
  ended_running(i);
  // What it held never finishes: the broker's clock on it runs on until it learns of the loss.
  for (const Event& d : p.deferred) excuse_task(d.frame);
  for (const auto& start : p.exec)
    excuse_task(Frame{wire::encode(wire::Task{}), start.payload, {}});
  for (std::int64_t x : p.running_inputs) runs_[x].excused = true;
  for (const Frame& f : p.link.queued) excuse_inputs(f);
  p.alive = false;
  p.frozen = false;
  p.deferred.clear();
  p.core.reset();
  p.exec.clear();
  p.exec_at.clear();
  p.skipped.clear();
  p.running = false;
  p.running_hangs = false;
  p.link.wanted = false;
  p.link.queued.clear();
  // The kernel closes the socket: the ROUTER sees it at once; unless the host vanished.
  break_link(i, host_vanished ? -1 : 0);
  ++p.restarts;
}

// A TASK that will never run where it was sent (lost in flight, held by a worker that died or
// was stopped): the broker's time limit may expire on it without its having run that long.
void World::excuse_task(const Frame& frame) {
  if (!frame.payload) return;
  try {
    for (const std::vector<std::int64_t>& inputs : task_inputs(frame.header, frame.payload)) {
      for (std::int64_t x : inputs) runs_[x].excused = true;
    }
  } catch (const std::exception&) {
  }
}

// A RESULT lost on the way: until the worker misses a heartbeat, the broker cannot tell it from
// a task still running.
void World::excuse_inputs(const Frame& frame) {
  for (std::int64_t x : frame.inputs) runs_[x].excused = true;
}

void World::ran(std::int64_t x, Us how_long) {
  ItemRun& r = runs_[x];
  r.longest = std::max(r.longest, how_long);
}

void World::ended_running(int i) {
  Peer& p = peers_[i];
  if (!p.running) return;
  for (std::int64_t x : p.running_inputs) ran(x, now_ - p.running_since);
}

void World::worker_pump(int i) {
  Peer& p = peers_[i];
  if (!p.alive || p.frozen) return;
  worker::SessionCore& core = *p.core;
  // The simulated process's socket and executor (worker/session.cpp holds the real ones):
  // the core's carry_out decides what is done and in which order.
  struct Effects final : worker::SessionCore::Effects {
    World& w;
    int i;
    Effects(World& world, int peer) : w(world), i(peer) {}
    void reconnect() override {
      Peer& p = w.peers_[i];
      ++w.report_.worker_reconnects;
      const Us calm_since = std::max({p.disturbed_at, w.broker_disturbed_at_});
      if (w.trace_) w.tracef(p.name + " reconnects (a fresh socket, same id)");
      // What it queued is forgotten (skipped); the broker times it until it learns so.
      for (const auto& start : p.exec)
        w.excuse_task(Frame{wire::encode(wire::Task{}), start.payload, {}});
      const int target = static_cast<int>(p.core->endpoint_index());
      if (w.now_ - calm_since > kCalmWindow && target == p.link.target) {
        w.violate(p.name +
                  " reconnected although neither its connection nor the broker was "
                  "disturbed for " +
                  std::to_string((w.now_ - calm_since) / kMs) +
                  " ms: it heard nothing from a broker that was there (the heartbeat gap)");
      }
      w.break_link(i, 0);
      if (w.options_.pair && w.trace_ && target != p.link.target)
        w.tracef(p.name + " turns to B" + std::to_string(target + 1));
      p.link.target = target;
      for (const Frame& f : p.link.queued) w.excuse_inputs(f);
      p.link.queued.clear();
      w.try_connect(i, w.rng_.between(100, 3 * kMs));
    }
    // The virtual executor: skip_through and cancel mark queued tasks, skipped in their turn.
    void skip_through(std::uint64_t sequence) override { w.peers_[i].skip_through = sequence; }
    void start(worker::SessionCore::Start start) override {
      Peer& p = w.peers_[i];
      p.max_sequence = std::max(p.max_sequence, start.sequence);
      p.exec.push_back(std::move(start));
      p.exec_at.push_back(w.now_);
    }
    // A cancelled task running is a module function (m.square), which cannot be stopped inside
    // the process.
    bool cancel(std::uint64_t sequence, bool abandon) override {
      Peer& p = w.peers_[i];
      const bool queued =
          std::any_of(p.exec.begin(), p.exec.end(),
                      [&](const worker::SessionCore::Start& s) { return s.sequence == sequence; });
      if (queued) p.skipped.insert(sequence);
      return !queued && abandon && p.running && sequence == p.running_sequence;
    }
  } effects(*this, i);
  std::vector<wire::Outgoing> out;
  // Skipped tasks answer at once and may queue more: until nothing moves (bounded).
  for (int round = 0; round < 64 && (core.pending() || round == 0); ++round) {
    core.carry_out(effects, out);
    if (core.ending() == worker::SessionCore::Ending::Abandoned) {
      if (p.orphaned_at >= 0) {
        orphan_ended(i, "left its unfinished task (exit status 75)");
      } else {
        abandon(i);
      }
      return;
    }
    for (auto& o : std::exchange(out, {})) {
      const wire::Message message = wire::decode(o.header.data(), o.header.size());
      if (trace_) tracef(p.name + " sends " + describe(message));
      if (std::holds_alternative<wire::Return>(message)) ++report_.returns;
      const bool results = std::holds_alternative<wire::Result>(message) ||
                           std::holds_alternative<wire::Results>(message);
      if (results) {
        if (now_ - p.last_result_at >= kHeartbeat.count() * kMs) p.busy_since = now_;
        p.last_result_at = now_;
        if (now_ - p.busy_since > kExpiry && !p.gap_counted && p.link.up) {
          ++report_.heartbeat_gaps;
          p.gap_counted = true;
          if (trace_)
            tracef(p.name + " is in the heartbeat gap: RESULTs for " +
                   std::to_string((now_ - p.busy_since) / kMs) +
                   " ms and nothing but ALIVE from the broker");
        }
      }
      Frame frame{std::string(o.header), std::move(o.payload), {}};
      if (results) frame.inputs = std::exchange(p.finished_inputs, {});
      peer_send(i, std::move(frame));
    }
    exec_next(i);
  }
  if (!p.alive) return;  // a poison item killed it
  if (core.ending() != worker::SessionCore::Ending::Running) {
    if (p.orphaned_at >= 0) {
      orphan_ended(i, "finished its task and said BYE");
    } else {
      kill_worker(i, "its core stopped");
    }
    return;
  }
  if (auto at = global_of(p, core.next_deadline(local_tp(p))))
    schedule(*at, make_event(Ev::Tick, i, ++p.tick_gen));
}

// The core abandoned the task its process runs (docs/protocol.md W20): a cancelled module
// function cannot be stopped inside the process, which exits (status 75), and its supervisor
// forks a new one at once, with a new routing id (worker/session.cpp abandon_process,
// worker/supervisor.cpp).
void World::abandon(int i) {
  ++report_.abandons;
  kill_worker(i, "abandoned the cancelled task it was running (exit status 75)");
  Event e = make_event(Ev::Fault, i, 0);
  e.fault = FaultKind::WorkerRestart;
  e.arg = 1;  // a new process: a new routing id
  schedule(now_ + rng_.between(1 * kMs, 20 * kMs), std::move(e));
}

// --- orphans (issue 27) ------------------------------------------------------------------------
// A worker's supervisor is killed (SIGKILL, the OOM killer): the kernel sends its process
// SIGTERM (PR_SET_PDEATHSIG, worker/supervisor.cpp) and the process sees its parent change. It
// finishes its running task and says BYE, but no supervisor will kill it if that task never
// returns: the core's orphan rule must end it within orphan_grace. Later a new supervisor
// (systemd restarting the unit) forks a fresh process.

constexpr std::chrono::milliseconds kOrphanGrace = worker::SessionCoreOptions{}.orphan_grace;
// Its grace on its own clock (2% drift at most), and a tick's slack.
constexpr Us kOrphanBound = kOrphanGrace.count() * kMs * 102 / 100 + 50 * kMs;

void World::plan_orphans(Us window) {
  // With hang only: a run of issue 11's faults stays the run its seeds describe.
  if (!(options_.faults & kWorkerCrash) || !(options_.faults & kHang) || !rng27o_.chance(300))
    return;
  for (int n = static_cast<int>(rng27o_.between(1, 2)); n-- > 0;) {
    Event e = make_event(Ev::Fault, workers_[rng27o_.below(workers_.size())], 0);
    e.fault = FaultKind::SupervisorDies;
    const Us t = rng27o_.between(0, window);
    schedule(t, std::move(e));
    calm_at_ = std::max(calm_at_, t);
  }
}

void World::orphan(int i) {
  Peer& p = peers_[i];
  if (!p.alive || p.orphaned_at >= 0) return;
  if (p.frozen) {  // the signal waits for SIGCONT
    Event e = make_event(Ev::Fault, i, 0);
    e.fault = FaultKind::SupervisorDies;
    p.deferred.push_back(std::move(e));
    return;
  }
  ++report_.faults_injected;
  ++report_.orphans;
  if (trace_) tracef(p.name + "'s supervisor dies: SIGTERM, and no parent left");
  p.orphaned_at = now_;
  p.core->on_stop(local_tp(p));
  p.core->on_parent_gone(local_tp(p));
  Event check = make_event(Ev::Fault, i, 0);
  check.fault = FaultKind::OrphanCheck;
  check.arg = p.incarnation;
  schedule(now_ + kOrphanBound, std::move(check));
  calm_at_ = std::max(calm_at_, now_ + kOrphanBound);
  worker_pump(i);
}

// Invariant: no worker process outlives its supervisor by more than its grace (a hung function
// would otherwise hold the host's slot, and its memory, for ever).
void World::check_orphan(int i, std::uint64_t incarnation) {
  Peer& p = peers_[i];
  if (!p.alive || p.incarnation != incarnation) return;
  if (p.frozen || now_ - p.disturbed_at < kOrphanBound) {
    // Stopped (SIGSTOP) meanwhile: its clock did not run; give it its grace again.
    Event check = make_event(Ev::Fault, i, 0);
    check.fault = FaultKind::OrphanCheck;
    check.arg = incarnation;
    schedule(now_ + kOrphanBound, std::move(check));
    return;
  }
  violate(p.name + " outlived its supervisor by " + std::to_string((now_ - p.orphaned_at) / kMs) +
          " ms, past its grace of " + std::to_string(kOrphanGrace.count()) +
          " ms: a stopping orphan must leave");
}

void World::orphan_ended(int i, const std::string& how) {
  kill_worker(i, "an orphan, " + how);
  Event e = make_event(Ev::Fault, i, 0);
  e.fault = FaultKind::WorkerRestart;
  e.arg = 1;  // a new supervisor's process: a new routing id
  schedule(now_ + rng27o_.between(100 * kMs, 2 * kSecond), std::move(e));
}

void World::exec_next(int i) {
  Peer& p = peers_[i];
  while (p.alive && !p.running && !p.exec.empty()) {
    worker::SessionCore::Start start = std::move(p.exec.front());
    p.exec.pop_front();
    const Us arrived = p.exec_at.front();
    p.exec_at.pop_front();
    if (start.sequence <= p.skip_through || p.skipped.erase(start.sequence) > 0) {
      // A stopping worker hands it back with its BYE, which its exit may lose (the simulated
      // process has no linger): the broker's clock on it runs on until it learns.
      if (p.core->leaving()) excuse_task(Frame{wire::encode(wire::Task{}), start.payload, {}});
      p.core->on_finished(start.sequence, worker::SessionCore::Outcome::Skipped, 0, Bytes(),
                          local_tp(p));
      continue;  // the caller's pump sends what this queued
    }
    msgpack::object_handle h = msgpack::unpack(start.payload.data(), start.payload.size());
    p.running_inputs = h.get().as<std::vector<std::int64_t>>();
    p.running_hangs = false;
    for (std::int64_t x : p.running_inputs) {
      ran(x, now_ - arrived);  // its wait in this worker's queue
      ++runs_[x].starts;
      if (!kept_.empty()) check_kept_start(i, x, start.sequence);
      if ((options_.faults & kHang) && is_hang(x)) p.running_hangs = true;
    }
    p.running = true;
    p.running_sequence = start.sequence;
    p.running_since = now_;
    Us duration = 0;
    bool poison = false;
    for (std::int64_t x : p.running_inputs) {
      const std::uint64_t kind = rng_.below(100);
      duration += is_slow(x)  ? rng_.between(30 * kMs, 150 * kMs)
                  : kind < 70 ? rng_.between(50, 2 * kMs)
                  : kind < 95 ? rng_.between(5 * kMs, 50 * kMs)
                              : rng_.between(100 * kMs, 400 * kMs);
      if ((options_.faults & kPoison) && is_poison(x)) poison = true;
    }
    if (poison) {
      Event e = make_event(Ev::Fault, i, 0);
      e.fault = FaultKind::WorkerCrash;
      e.arg = 1;  // poisoned: comes back like any crashed worker
      schedule(now_ + duration / 2, std::move(e));
    } else if (p.running_hangs) {
      // Never returns: only a CANCEL (its process replaced) or a crash ends it.
      if (trace_) tracef(p.name + " runs an item that never returns");
    } else {
      schedule(now_ + duration, make_event(Ev::ExecDone, i, p.incarnation));
    }
  }
}

void World::exec_done(int i) {
  Peer& p = peers_[i];
  ended_running(i);
  p.running = false;
  msgpack::sbuffer buffer;
  msgpack::packer<msgpack::sbuffer> packer(buffer);
  packer.pack_array(static_cast<std::uint32_t>(p.running_inputs.size()));
  for (std::int64_t x : p.running_inputs) {
    if ((options_.faults & kRaise) && raises(x)) {
      entry::pack_error(packer, raise_message(x));
    } else {
      entry::begin_value(packer);
      packer.pack(x * x);
    }
  }
  // Elapsed as the worker's own clock measured it.
  const Us elapsed = (now_ - p.running_since) + ((now_ - p.running_since) * p.ppm) / 1'000'000;
  p.finished_inputs = p.running_inputs;
  if (!kept_.empty() && p.core->keeps(p.running_sequence)) {
    for (std::int64_t x : p.running_inputs) {
      auto k = kept_.find(x);
      if (k == kept_.end()) continue;
      for (const KeptRun& run : k->second) {
        if (run.peer == i && run.sequence == p.running_sequence) ++report_.kept_items;
      }
    }
  }
  p.core->on_finished(p.running_sequence, worker::SessionCore::Outcome::Ok,
                      static_cast<std::uint64_t>(std::max<Us>(elapsed, 1)),
                      Bytes::copy(buffer.data(), buffer.size()), local_tp(p));
  worker_pump(i);
}

// Invariant 16 (issue 25): an item a worker was running when the broker restarted, and still
// runs as a task kept for the new broker (which it told within the broker's adoption window),
// never starts at another worker meanwhile: the new broker adopted it instead of running it
// again. Excused: a worker that a fault touched since (crash, partition, freeze...), or that
// the broker sent a CANCEL since (a time limit, a cancelled job, a copy it does not adopt), and
// tasks a worker received before the restart (a copy it held already).
void World::check_kept_start(int i, std::int64_t x, std::uint64_t sequence) {
  auto k = kept_.find(x);
  if (k == kept_.end()) return;
  const Peer& starter = peers_[i];
  if (starter.incarnation == starter.incarnation_at_restart &&
      sequence <= starter.sequence_at_restart) {
    return;
  }
  for (const KeptRun& run : k->second) {
    const Peer& h = peers_[run.peer];
    if (run.peer == i || !h.alive || h.incarnation != run.incarnation || !h.running ||
        h.running_sequence != run.sequence || !h.core->keeps(run.sequence)) {
      continue;
    }
    if (h.faulted_at >= run.at || h.cancelled_at >= run.at) continue;
    if (h.listed_generation != broker_generation_) continue;  // told no broker in its window
    violate("item " + std::to_string(x) + " started at " + starter.name + " while " + h.name +
            " still runs it, kept across the broker restart at " + std::to_string(run.at / 1000) +
            " ms and listed to the new broker in its adoption "
            "window: the restart made it run twice");
  }
}

void World::note_listing(int i, const std::string& header) {
  if (!broker_ || !broker_->adoption_open() || header.size() < 3) return;
  const int type = static_cast<unsigned char>(header[2]);
  if (type != static_cast<int>(wire::Type::Ready) &&
      type != static_cast<int>(wire::Type::Heartbeat)) {
    return;
  }
  const wire::Message message = wire::decode(header.data(), header.size());
  const std::vector<std::uint64_t>* held = nullptr;
  if (const auto* ready = std::get_if<wire::Ready>(&message)) held = &ready->held;
  if (const auto* beat = std::get_if<wire::Heartbeat>(&message)) held = &beat->held;
  if (held != nullptr && !held->empty()) peers_[i].listed_generation = broker_generation_;
}

}  // namespace seppo::sim::detail
