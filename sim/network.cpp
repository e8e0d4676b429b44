// The world's clock and its ZeroMQ-like pipes: ordered per connection, lost when it breaks.
#include "sim/world_impl.hpp"

// Frames for callgrind (world_impl.hpp): noinline, and no tail call, so that each shows up as
// the caller of what it runs.
#define SEPPO_SIM_FRAME(name)                                                    \
  extern "C" __attribute__((noinline)) void name(void (*fn)(void*), void* arg) { \
    fn(arg);                                                                     \
    asm volatile("" ::: "memory");                                               \
  }
SEPPO_SIM_FRAME(seppo_sim_core_task)
SEPPO_SIM_FRAME(seppo_sim_core_worker_heartbeat)
SEPPO_SIM_FRAME(seppo_sim_core_client_heartbeat)
SEPPO_SIM_FRAME(seppo_sim_core_join)
SEPPO_SIM_FRAME(seppo_sim_core_tick)
SEPPO_SIM_FRAME(seppo_sim_core_status)
SEPPO_SIM_FRAME(seppo_sim_core_metrics_snapshot)
SEPPO_SIM_FRAME(seppo_sim_core_metrics)
SEPPO_SIM_FRAME(seppo_sim_core_metrics_full)
SEPPO_SIM_FRAME(seppo_sim_transport)
#undef SEPPO_SIM_FRAME

namespace seppo::sim::detail {

std::optional<Us> World::global_of(const Peer& p, TimePoint deadline) const {
  if (deadline == TimePoint::max() || deadline == TimePoint::min()) return std::nullopt;
  const Us target = std::chrono::ceil<std::chrono::microseconds>(deadline - kOrigin).count();
  // local = g + g*ppm/1e6 + offset, solved for g, then nudged past rounding.
  __int128 g = (static_cast<__int128>(target - p.offset) * 1'000'000) / (1'000'000 + p.ppm);
  Us at = static_cast<Us>(std::max<__int128>(g - 2, 0));
  while (at + (at * p.ppm) / 1'000'000 + p.offset < target) ++at;
  return std::max(at, now_);
}

void World::schedule(Us at, Event event) {
  events_.emplace(std::make_pair(at, next_seq_++), std::move(event));
}

void World::tracef(const std::string& line) {
  if (!trace_) return;
  char stamp[48];
  std::snprintf(stamp, sizeof stamp, "%10.6f #%-7llu ", static_cast<double>(now_) / kSecond,
                static_cast<unsigned long long>(steps_));
  *trace_ << stamp << line << '\n';
}

// --- the network ------------------------------------------------------------------------------

// ZeroMQ connects (and reconnects, every reconnect_ivl) by itself while the socket exists.
void World::try_connect(int i, Us delay) {
  Peer& p = peers_[i];
  if (!p.link.wanted || p.link.up || !broker_up(p.link.target) || now_ < p.link.partitioned_until ||
      !p.alive) {
    return;
  }
  schedule(now_ + delay, make_event(Ev::Connected, i, p.link.epoch));
}

// `router_notices_after` < 0: never (the peer's host vanished: no FIN, no RST). When the ROUTER
// drops the pipe its monitor reports the connection closed, as broker/connections.cpp reads it.
void World::break_link(int i, Us router_notices_after) {
  Peer& p = peers_[i];
  const bool was_up = p.link.up;
  p.link.up = false;
  ++p.link.epoch;
  p.disturbed_at = now_;
  if (was_up && p.link.router_knows && router_notices_after >= 0) {
    Event drop = make_event(Ev::RouterDrop, i, p.link.router_epoch);
    drop.broker = p.link.target;
    schedule(now_ + router_notices_after, std::move(drop));
    schedule_close(i, router_notices_after);
  }
}

void World::schedule_close(int i, Us after) {
  if (!(options_.faults & kCloseNotice)) return;
  Event e = make_event(Ev::Closed, i, peers_[i].link.router_epoch);
  e.id = peers_[i].link.id;
  e.arg = static_cast<std::uint64_t>(peers_[i].link.connection);
  e.broker = peers_[i].link.target;
  // The monitor's event reaches the broker's poll loop a little after the close.
  schedule(now_ + after + rng12_.between(10, 2 * kMs), std::move(e));
}

// Connections::heard: the connection a peer was last heard on; heard on a new one, it moved.
void World::heard(const std::string& id, std::uint64_t connection) {
  auto w = where_.find(id);
  if (w != where_.end() && w->second == connection) return;
  where_[id] = connection;
  lost_.erase(std::remove(lost_.begin(), lost_.end(), id), lost_.end());
}

// Connections::read_events on DISCONNECTED: a peer last heard on that connection is lost. The
// poll loop wakes for the event and flushes, which tells the core (server.cpp's flush).
void World::router_closed(const std::string& id, std::uint64_t connection) {
  if (!broker_) return;
  auto w = where_.find(id);
  if (w == where_.end() || w->second != connection) return;
  where_.erase(w);
  lost_.push_back(id);
  // The poll loop wakes for the event; when messages woke it too, their batch comes first and
  // its answers meet the lost peer in one flush (server.cpp): TASKs to it are held back.
  if (rng12_.chance(500)) broker_flush();
}

void World::peer_send(int i, Frame frame) {
  Peer& p = peers_[i];
  if (!p.link.wanted) return;
  if (!p.link.up) {
    p.link.queued.push_back(std::move(frame));
    return;
  }
  // Mostly fast, sometimes slow; never overtaking an earlier frame on the same connection.
  const Us delay = rng_.chance(950) ? rng_.between(20, 2 * kMs) : rng_.between(2 * kMs, 40 * kMs);
  const Us at = std::max(now_ + delay, p.link.last_to_broker);
  p.link.last_to_broker = at;
  Event e = make_event(Ev::ToBroker, i, p.link.epoch);
  e.broker = p.link.target;
  e.frame = std::move(frame);
  schedule(at, std::move(e));
}

// The broker's flush (broker/delivery.hpp), through the world's pipes: the peers whose
// connection closed since the last flush are reported to the core with the TASKs to them held
// back, unsent; a send to an id the ROUTER has no pipe for fails.
void World::broker_flush() {
  if (!broker_) return;
  struct Pipes final : broker::Link {
    World& w;
    std::vector<std::string> told_closed;
    explicit Pipes(World& world) : w(world) {}
    std::vector<std::string> take_lost() override {
      std::vector<std::string> lost;
      if (w.options_.faults & kCloseNotice) lost.swap(w.lost_);
      return lost;
    }
    bool send(broker::Outgoing& o) override {
      // broker/server.cpp's veto (§14.6): nothing goes to an id another key's connection took,
      // nor to one whose owner's connection closed, until its owner speaks again.
      if (!w.admission_->may_send(o.peer)) {
        if (w.trace_)
          w.tracef("B -> " + printable(o.peer) + " " + header_of(o) +
                   ": vetoed (the id is not its owner's now)");
        return false;
      }
      // The rest is the simulator's: its pipes and its checks.
      bool sent = false;
      within(seppo_sim_transport, [&] { sent = deliver(o); });
      return sent;
    }
    bool deliver(broker::Outgoing& o) {
      // Invariant 11 (issue 27): a routing id bound to one key is never used for another's.
      if (auto s = w.stolen_.find(o.peer);
          s != w.stolen_.end() && w.peers_[s->second].link.router_knows) {
        w.violate("the broker sent " + header_of(o) + " to routing id " + printable(o.peer) +
                  " while " + w.peers_[s->second].name +
                  "'s connection, under another key, held it");
      }
      auto it = w.by_id_.find(o.peer);
      Peer* p = it == w.by_id_.end() ? nullptr : &w.peers_[it->second];
      // A pair: this broker's ROUTER has no pipe to a peer whose connection went to the other.
      if (p == nullptr || !p->link.router_knows ||
          (w.options_.pair && p->link.target != w.current_)) {
        if (w.trace_)
          w.tracef("B -> " + printable(o.peer) + " " + header_of(o) + ": send failed (peer gone)");
        return false;
      }
      // Invariant 15 (issue 26 item 7): a job whose client said DONE (it ended or was
      // cancelled) has nothing more sent to workers.
      const auto tasks = task_inputs(std::string(o.header.view()), o.payload);
      for (const std::vector<std::int64_t>& inputs :
           w.done_jobs_.empty() ? decltype(tasks){} : tasks) {
        if (!inputs.empty() && inputs.front() >= 0 &&
            w.done_jobs_.count(static_cast<std::uint64_t>(inputs.front() / 1000)) != 0) {
          w.violate("the broker sent " + header_of(o) + " of job " +
                    std::to_string(inputs.front() / 1000) + " after it took the job's DONE");
        }
      }
      // Invariant 12 (issue 26): nothing goes to a worker once its key was revoked.
      if (p->revoked_worker && w.revoked_) {
        w.violate("the broker sent " + header_of(o) + " to " + p->name +
                  ", a worker whose key was revoked");
      }
      // Invariant 18 (issue 25 §2): only the active broker of a pair hands out work and results.
      if (w.options_.pair && (!w.ha_ || !w.ha_->serving())) {
        const auto type = o.header.size() > 2 ? static_cast<unsigned char>(o.header.view()[2]) : 0;
        if (type == static_cast<int>(wire::Type::Deliver) || !tasks.empty()) {
          w.violate("broker " + std::to_string(w.current_ + 1) + ", not active, sent " +
                    header_of(o) + " to " + p->name);
        }
      }
      w.report_.scale.tasks += tasks.size();
      w.broker_send(it->second, std::string(o.header.view()), std::move(o.payload));
      return true;
    }
    void held_back(const broker::Outgoing& o) override {
      if (w.trace_)
        w.tracef("B -> " + printable(o.peer) + " " + header_of(o) +
                 ": held back (its connection closed)");
    }
    void reporting(const wire::DeliveryReport& r) override {
      if (!r.disconnected) return;
      ++w.report_.notices;
      told_closed.push_back(r.peer);
      if (w.trace_)
        w.tracef("B is told " + printable(r.peer) + "'s connection closed (" +
                 std::to_string(r.unsent_tasks.size()) + " TASKs held back)");
    }
    static std::string header_of(const broker::Outgoing& o) {
      return describe_header(std::string(o.header.view()));
    }
  } pipes(*this);
  broker::flush(*broker_, pipes, broker_tp());
  // A worker process that is gone, noticed by its connection closing, holds nothing at the
  // broker any more: its tasks run elsewhere now, not after heartbeat x liveness (issue 12).
  if (revoked_) {
    for (const Peer& p : peers_) {
      if (!p.revoked_worker || broker_->inflight_count(p.link.id) == 0) continue;
      violate("the broker still holds " + std::to_string(broker_->inflight_count(p.link.id)) +
              " tasks at " + p.name + ", a worker whose key was revoked");
    }
  }
  for (const std::string& peer : pipes.told_closed) {
    auto it = by_id_.find(peer);
    const bool gone = it == by_id_.end() || !peers_[it->second].alive ||
                      peers_[it->second].link.id != peer || !peers_[it->second].link.wanted;
    if (gone && broker_->inflight_count(peer) > 0) {
      violate("the broker still holds " + std::to_string(broker_->inflight_count(peer)) +
              " tasks at " + printable(peer) + " after it was told its connection closed");
    }
  }
  broker_tick_schedule();
}

void World::broker_send(int i, std::string header, std::optional<Bytes> payload) {
  Peer& p = peers_[i];
  const Us delay = rng_.chance(950) ? rng_.between(20, 2 * kMs) : rng_.between(2 * kMs, 40 * kMs);
  const Us at = std::max(now_ + delay, p.link.last_to_peer);
  p.link.last_to_peer = at;
  note_cancels(p.link.id, header);
  if (header.size() > 2 &&
      static_cast<unsigned char>(header[2]) == static_cast<int>(wire::Type::Cancel)) {
    p.cancelled_at = now_;
  }
  Event e = make_event(Ev::ToPeer, i, p.link.router_epoch);
  e.broker = current_;
  e.frame = Frame{std::move(header), std::move(payload), {}};
  schedule(at, std::move(e));
}

void World::note_cancels(const std::string& peer, const std::string& header) {
  if (header.size() < 3 ||
      static_cast<unsigned char>(header[2]) != static_cast<int>(wire::Type::Cancel)) {
    return;
  }
  const wire::Message message = wire::decode(header.data(), header.size());
  const auto* cancel = std::get_if<wire::Cancel>(&message);
  if (cancel == nullptr) return;
  // The broker's clock may run 2 % off the world's: a liveness less a tenth.
  const Us window = kExpiry * 9 / 10;
  for (std::uint64_t id : cancel->task_ids) {
    std::vector<Us>& at = cancels_[{peer, id}];
    at.erase(std::remove_if(at.begin(), at.end(), [&](Us t) { return now_ - t > window; }),
             at.end());
    at.push_back(now_);
    if (at.size() > 2) {
      violate("the broker sent CANCEL of task " + std::to_string(id) + " to " + printable(peer) +
              " " + std::to_string(at.size()) + " times within a liveness");
    }
  }
}

void World::broker_tick_schedule() {
  if (!broker_) return;
  TimePoint next = broker_->next_deadline(broker_tp());
  // HaCore's deadline is TimePoint::min() when a change is to be told at once.
  if (ha_) next = std::min(next, std::max(ha_->next_deadline(), broker_tp()));
  // The scale world ticks as broker/server.cpp does, every next_deadline() whatever the
  // traffic (the seeds' small worlds reschedule at every flush, as they always did).
  if (options_.workers > 0) {
    if (scale_tick_pending_) return;
    scale_tick_pending_ = true;
  }
  Event tick = make_event(Ev::BrokerTick, -1, ++broker_tick_gen_);
  tick.broker = current_;
  schedule(
      std::max(now_, static_cast<Us>(
                         std::chrono::ceil<std::chrono::microseconds>(next - kOrigin).count())),
      std::move(tick));
}

void World::deliver_to_broker(int i, Event& e) {
  Peer& p = peers_[i];
  if (!broker_ || !p.link.up || e.tag != p.link.epoch) {
    if (trace_) tracef(p.name + " -> B " + describe_header(e.frame.header) + ": lost in flight");
    excuse_inputs(e.frame);
    return;
  }
  if (trace_) tracef(p.name + " -> B " + describe_header(e.frame.header));
  const broker::Admission::Verdict admitted = admit(i);
  if (!admitted.accepted) return;
  // A pair (issue 25 §2): the gate broker/server.cpp uses, before the core reads the message.
  if (ha_ && e.frame.header.size() > 2) {
    const bool active = ha_->serving();
    const auto refusal =
        broker::ha::gate(*ha_, *broker_, e.frame.header.data(), e.frame.header.size(), broker_tp());
    const bool status = static_cast<unsigned char>(e.frame.header[2]) ==
                        static_cast<int>(wire::Type::StatusRequest);
    if (!active && !status) last_turn_ = slots_[current_].turned_at = now_;
    if (!status && !refusal) slots_[current_].served_at = now_;
    if (refusal) {
      if (trace_) tracef("B" + std::to_string(current_ + 1) + " refuses: not active");
      broker_send(i, *refusal, std::nullopt);
      excuse_inputs(e.frame);
      ha_after();
      return;
    }
    if (!active) ha_after();  // took over on this very message (H6, H14)
  }
  if (!cancels_.empty() && e.frame.header.size() > 2 &&
      static_cast<unsigned char>(e.frame.header[2]) == static_cast<int>(wire::Type::Ready)) {
    // A new registration: what the worker held is forgotten on both sides.
    cancels_.erase(cancels_.lower_bound({p.link.id, 0}),
                   cancels_.upper_bound({p.link.id, ~std::uint64_t{0}}));
  }
  if (e.frame.header.size() > 2 &&
      static_cast<unsigned char>(e.frame.header[2]) == static_cast<int>(wire::Type::Done)) {
    const wire::Message message = wire::decode(e.frame.header.data(), e.frame.header.size());
    if (const auto* done = std::get_if<wire::Done>(&message))
      done_jobs_.insert(done->job_id & 0xffffff);
  }
  // Only an admitted message says which connection a peer is on (server.cpp).
  heard(p.link.id, e.tag);
  if (p.kind == Peer::Kind::Worker && !kept_.empty()) note_listing(i, e.frame.header);
  const auto type = e.frame.header.size() > 2 ? static_cast<unsigned char>(e.frame.header[2]) : 0;
  auto frame = seppo_sim_core_task;
  if (type == static_cast<int>(wire::Type::Heartbeat)) {
    frame = p.kind == Peer::Kind::Worker ? seppo_sim_core_worker_heartbeat
                                         : seppo_sim_core_client_heartbeat;
    ++(p.kind == Peer::Kind::Worker ? report_.scale.worker_heartbeats
                                    : report_.scale.client_heartbeats);
  } else if (type == static_cast<int>(wire::Type::Ready) ||
             type == static_cast<int>(wire::Type::Bye)) {
    frame = seppo_sim_core_join;
  }
  within(frame, [&] {
    broker::feed(*broker_, p.link.id, e.frame.header, e.frame.payload, broker_tp(), admitted.role,
                 admitted.key);
    broker_flush();
  });
}

void World::deliver_to_peer(int i, Event& e) {
  Peer& p = peers_[i];
  if (!p.alive || !p.link.up || e.tag != p.link.epoch ||
      (options_.pair && e.broker != p.link.target)) {
    if (trace_)
      tracef("B -> " + p.name + " " + describe_header(e.frame.header) + ": lost in flight");
    // Lost on a worker's broken connection, the broker cannot tell it from a crash while it ran;
    // a peer that said READY and closed must never be charged (invariant 9).
    if (p.kind != Peer::Kind::Ghost) excuse_task(e.frame);
    return;
  }
  if (p.kind == Peer::Kind::Ghost) {
    if (trace_) tracef("B -> " + p.name + " " + describe_header(e.frame.header) + ": ignored");
    return;
  }
  wire::Message message = wire::decode(e.frame.header.data(), e.frame.header.size());
  if (p.revoked_worker) {
    // What it was sent before its key went may arrive after; what the broker sent after is
    // checked when sent (invariant 12). It answers nothing.
    if (trace_) tracef("B -> " + p.name + " " + describe(message) + ": never answered");
    return;
  }
  if (p.kind == Peer::Kind::Impostor || p.kind == Peer::Kind::Intruder) {
    // Invariants 11 and 12 (issue 27): an impostor gets nothing; a revoked client's key gets
    // nothing but ERROR forbidden.
    if (trace_) tracef("B -> " + p.name + " " + describe(message));
    const auto* error = std::get_if<wire::Error>(&message);
    const bool forbidden = error && error->code == wire::Code::Forbidden;
    if (p.kind == Peer::Kind::Impostor || !forbidden || !revoked_) {
      violate("the broker sent " + describe(message) + " to " + p.name + ", " +
              (p.kind == Peer::Kind::Impostor ? "an impostor" : "a client whose key is revoked"));
    }
    return;
  }
  if (trace_) {
    std::string items;
    // The inputs name the job and the index: x = job * 1000 + index (+900 if poison).
    for (const std::vector<std::int64_t>& inputs : task_inputs(e.frame.header, e.frame.payload)) {
      std::string list;
      for (std::int64_t x : inputs) list += (list.empty() ? "" : ",") + std::to_string(x);
      items += " items=[" + list + "]";
    }
    tracef("B -> " + p.name + " " + describe(message) + items);
  }
  if (p.kind == Peer::Kind::Worker) {
    if (!std::holds_alternative<wire::Alive>(message)) {
      p.busy_since = now_;
      p.gap_counted = false;
    }
    p.core->on_message({}, e.frame.header.data(), e.frame.header.size(),
                       e.frame.payload ? &*e.frame.payload : nullptr, local_tp(p));
    worker_pump(i);
  } else {
    if (p.job) {
      p.job->on_message({}, e.frame.header.data(), e.frame.header.size(),
                        e.frame.payload ? &*e.frame.payload : nullptr, local_tp(p));
    }
    if (const auto* f = std::get_if<wire::Failed>(&message); f && is_over_limit(*f)) {
      ++report_.over_limit;
    }
    client_pump(i);
  }
}

}  // namespace seppo::sim::detail
