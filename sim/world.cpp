#include "sim/world.hpp"

#include <algorithm>
#include <chrono>
#include <deque>
#include <map>
#include <memory>
#include <ostream>
#include <sstream>
#include <vector>

#include <msgpack.hpp>

#include "broker/core.hpp"
#include "libclient/job_core.hpp"
#include "protocol/wire.hpp"
#include "seppo/result_entry.hpp"
#include "sim/broker_adapter.hpp"
#include "sim/describe.hpp"
#include "sim/random.hpp"
#include "worker/session_core.hpp"

namespace seppo::sim {
namespace {

using namespace std::chrono_literals;
using Us = std::int64_t;  // virtual microseconds since the run started
using TimePoint = std::chrono::steady_clock::time_point;

constexpr Us kMs = 1000;
constexpr Us kSecond = 1000 * kMs;
// The cores' clocks start here, so that no time point of a run is TimePoint{} or below it.
const TimePoint kOrigin = TimePoint{} + 1h;

// --- the world's fixed settings -------------------------------------------------------------
constexpr std::chrono::milliseconds kHeartbeat{250};
constexpr std::uint32_t kLiveness = 3;
constexpr Us kExpiry = kHeartbeat.count() * kMs * kLiveness;
constexpr std::uint32_t kMaxCapacity = 64;
constexpr std::chrono::milliseconds kMaxReconnectDelay{1000};
constexpr std::chrono::milliseconds kClientTimeout{20000};
constexpr std::chrono::milliseconds kWorkerWait{10000};
// A job whose faults stopped must complete within this much virtual time.
constexpr Us kJobBound = 60 * kSecond;
// After every job ended the broker has this long to forget them (a DONE may have been lost:
// then only the client's expiry removes its state).
constexpr Us kSettle = kExpiry + 2 * kSecond;
// A worker reconnecting this long after anything disturbed its link or the broker did so
// needlessly: it heard nothing although the broker was there (the heartbeat gap).
constexpr Us kCalmWindow = kExpiry + kMaxReconnectDelay.count() * kMs + kExpiry;
constexpr std::uint64_t kDefaultStepLimit = 3'000'000;

// Items are integers; what a worker does with one is a function of the integer alone, so the
// checker knows every right answer. x % 1000 >= 900 is a poison item, x % 7 == 3 raises.
bool is_poison(std::int64_t x) {
  return x % 1000 >= 900;
}
// Items of one job in five are all slow: a worker with a large prefetch then answers a backlog
// for longer than the liveness while no new TASK comes (the heartbeat gap's situation).
bool is_slow(std::int64_t x) {
  return (x / 1000) % 5 == 0;
}
bool raises(std::int64_t x) {
  return !is_poison(x) && x % 7 == 3;
}
std::string raise_message(std::int64_t x) {
  return "ValueError: " + std::to_string(x) + " is odd";
}

std::string inputs_of(const Bytes& payload) {
  msgpack::object_handle h = msgpack::unpack(payload.data(), payload.size());
  std::string out;
  for (std::int64_t x : h.get().as<std::vector<std::int64_t>>()) {
    out += (out.empty() ? "" : ",") + std::to_string(x);
  }
  return "[" + out + "]";
}

struct Frame {
  std::string header;
  std::optional<Bytes> payload;
};

enum class Ev {
  ToBroker,
  ToPeer,
  Connected,
  RouterDrop,
  Tick,
  BrokerTick,
  ExecDone,
  Fault,
  JobStart
};
enum class FaultKind {
  WorkerCrash,
  WorkerRestart,
  BrokerCrash,
  BrokerRestart,
  ClientVanish,
  PartitionStart,
  PartitionEnd,
  Freeze,
  Thaw,
  Cancel
};

struct Event {
  Ev kind = Ev::Tick;
  int peer = -1;
  std::uint64_t tag = 0;  // epoch, tick generation, incarnation or sequence
  Frame frame;
  FaultKind fault = FaultKind::WorkerCrash;
  std::uint64_t arg = 0;
};

// A DEALER's connection to the broker's ROUTER.
struct Link {
  std::string id;             // routing id
  bool wanted = false;        // the process has a socket that keeps connecting
  bool up = false;            // connected now
  std::uint64_t epoch = 1;    // bumped by every break: frames of an older one are lost
  bool router_knows = false;  // the ROUTER still has a pipe to this id (it notices a break late)
  std::uint64_t router_epoch = 0;
  Us partitioned_until = 0;
  std::vector<Frame> queued;  // sent while not connected: ZeroMQ keeps them for the connection
  Us last_to_broker = 0, last_to_peer = 0;  // arrival times, to keep each direction in order
};

struct ItemCheck {
  std::int64_t input = 0;
  bool received = false;
};

struct JobRecord {
  std::uint64_t id = 0;
  std::vector<ItemCheck> items;
  std::uint64_t next_input = 0;  // items packed so far
  std::uint64_t emitted = 0;     // items handed on in order (the reorder buffer's front)
  Us started = 0;
  Us cancel_at = -1;
  enum class State { Running, Completed, Cancelled, Vanished, Failed } state = State::Running;
};

struct Peer {
  enum class Kind { Worker, Client } kind;
  std::string name;  // "W1", "C2": the slot; the routing id may change across restarts
  Link link;
  std::int64_t ppm = 0;  // clock drift
  Us offset = 0;
  bool alive = false;
  bool frozen = false;
  std::vector<Event> deferred;  // what happened to it while stopped, in order
  std::uint64_t tick_gen = 0;
  Us disturbed_at = 0;  // last event that could make the broker look silent to it
  std::uint64_t incarnation = 0;
  int restarts = 0;

  // A worker: its core and the executor's queue.
  std::unique_ptr<worker::SessionCore> core;
  std::uint32_t prefetch = 0;
  std::deque<worker::SessionCore::Start> exec;
  bool running = false;
  std::uint64_t running_sequence = 0;
  std::vector<std::int64_t> running_inputs;
  Us running_since = 0;
  // The heartbeat gap: since when the worker has heard nothing but ALIVE while sending RESULTs
  // less than a heartbeat apart. A worker that let RESULTs stand in for HEARTBEAT (the bug)
  // would have heard nothing at all for that long.
  Us busy_since = 0;
  Us last_result_at = 0;
  bool gap_counted = false;

  // A client: its jobs, one at a time.
  std::unique_ptr<client::JobCore> job;
  client::JobCoreOptions job_options;
  std::vector<JobRecord> jobs;
  std::size_t jobs_planned = 0;
  std::size_t max_chunk_bytes = 0;
  std::chrono::milliseconds broker_heartbeat{0};
  bool job_pending = false;  // a JobStart event is scheduled
};

Event make_event(Ev kind, int peer, std::uint64_t tag) {
  Event e;
  e.kind = kind;
  e.peer = peer;
  e.tag = tag;
  return e;
}

struct Violation {
  std::string what;
};

class World {
 public:
  explicit World(const RunOptions& options)
      : options_(options), rng_(options.seed), trace_(options.trace) {}

  RunReport run();

 private:
  // --- time ---
  Us local(const Peer& p) const { return now_ + (now_ * p.ppm) / 1'000'000 + p.offset; }
  TimePoint local_tp(const Peer& p) const { return kOrigin + std::chrono::microseconds(local(p)); }
  TimePoint broker_tp() const { return kOrigin + std::chrono::microseconds(now_); }
  // The first global instant at which p's clock shows at least `deadline`.
  std::optional<Us> global_of(const Peer& p, TimePoint deadline) const;

  // --- events ---
  void schedule(Us at, Event event);
  void step(Event& event);
  bool defer(Peer& p, Event& event);

  // --- the network ---
  void try_connect(int i, Us delay);
  void break_link(int i, Us router_notices_after);
  void peer_send(int i, Frame frame);
  void deliver_to_broker(int i, Event& e);
  void deliver_to_peer(int i, Event& e);
  void broker_flush();
  void broker_tick_schedule();

  // --- workers ---
  void start_worker(int i, bool new_id);
  void kill_worker(int i, const std::string& why);
  void worker_pump(int i);
  void exec_next(int i);
  void exec_done(int i);

  // --- clients ---
  void start_job(int i);
  void client_pump(int i);
  void end_job(int i, JobRecord::State state);
  void check_result(int i, const client::JobCore::ItemResult& r);

  // --- faults ---
  void plan_faults();
  void fault(FaultKind kind, int i, std::uint64_t arg);

  // --- invariants ---
  void check_step();
  void check_end();
  [[noreturn]] void violate(const std::string& what) { throw Violation{what}; }
  void tracef(const std::string& line);
  bool all_jobs_ended() const;

  RunOptions options_;
  Random rng_;
  std::ostream* trace_;
  Us now_ = 0;
  std::uint64_t steps_ = 0;
  std::uint64_t next_seq_ = 0;
  std::map<std::pair<Us, std::uint64_t>, Event> events_;

  broker::Config config_;
  std::unique_ptr<broker::Core> broker_;
  std::uint64_t broker_tick_gen_ = 0;
  Us broker_disturbed_at_ = 0;
  std::vector<Peer> peers_;
  std::map<std::string, int> by_id_;  // routing id -> peer
  std::vector<int> workers_, clients_;
  Us calm_at_ = 0;  // when the last fault's effect ends
  Us all_ended_at_ = -1;
  RunReport report_;
  std::uint64_t next_job_id_ = 1;
};

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
  if (!p.link.wanted || p.link.up || !broker_ || now_ < p.link.partitioned_until || !p.alive) {
    return;
  }
  schedule(now_ + delay, make_event(Ev::Connected, i, p.link.epoch));
}

void World::break_link(int i, Us router_notices_after) {
  Peer& p = peers_[i];
  const bool was_up = p.link.up;
  p.link.up = false;
  ++p.link.epoch;
  p.disturbed_at = now_;
  if (was_up && p.link.router_knows) {
    schedule(now_ + router_notices_after, make_event(Ev::RouterDrop, i, p.link.router_epoch));
  }
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
  e.frame = std::move(frame);
  schedule(at, std::move(e));
}

void World::broker_flush() {
  if (!broker_) return;
  // on_send_failed may queue more (none today): drain until empty, bounded.
  for (int round = 0; round < 8; ++round) {
    std::vector<BrokerOut> out = take_broker_outbox(*broker_);
    if (out.empty()) break;
    for (BrokerOut& o : out) {
      auto it = by_id_.find(o.peer);
      Peer* p = it == by_id_.end() ? nullptr : &peers_[it->second];
      if (p == nullptr || !p->link.router_knows) {
        if (trace_)
          tracef("B -> " + printable(o.peer) + " " + describe_header(o.header) +
                 ": send failed (peer gone)");
        broker_->on_send_failed(o.peer, broker_tp());
        continue;
      }
      const Us delay =
          rng_.chance(950) ? rng_.between(20, 2 * kMs) : rng_.between(2 * kMs, 40 * kMs);
      const Us at = std::max(now_ + delay, p->link.last_to_peer);
      p->link.last_to_peer = at;
      Event e = make_event(Ev::ToPeer, it->second, p->link.router_epoch);
      e.frame = Frame{std::move(o.header), std::move(o.payload)};
      schedule(at, std::move(e));
    }
  }
  broker_tick_schedule();
}

void World::broker_tick_schedule() {
  if (!broker_) return;
  const TimePoint next = broker_->next_deadline(broker_tp());
  schedule(
      std::max(now_, static_cast<Us>(
                         std::chrono::ceil<std::chrono::microseconds>(next - kOrigin).count())),
      make_event(Ev::BrokerTick, -1, ++broker_tick_gen_));
}

void World::deliver_to_broker(int i, Event& e) {
  Peer& p = peers_[i];
  if (!broker_ || !p.link.up || e.tag != p.link.epoch) {
    if (trace_) tracef(p.name + " -> B " + describe_header(e.frame.header) + ": lost in flight");
    return;
  }
  if (trace_) tracef(p.name + " -> B " + describe_header(e.frame.header));
  feed_broker(*broker_, p.link.id, e.frame.header, e.frame.payload, broker_tp());
  broker_flush();
}

void World::deliver_to_peer(int i, Event& e) {
  Peer& p = peers_[i];
  if (!p.alive || !p.link.up || e.tag != p.link.epoch) {
    if (trace_)
      tracef("B -> " + p.name + " " + describe_header(e.frame.header) + ": lost in flight");
    return;
  }
  wire::Message message = wire::decode(e.frame.header.data(), e.frame.header.size());
  if (trace_) {
    std::string items;
    if (std::holds_alternative<wire::Task>(message) && e.frame.payload) {
      // The inputs name the job and the index: x = job * 1000 + index (+900 if poison).
      items = " items=" + inputs_of(*e.frame.payload);
    }
    tracef("B -> " + p.name + " " + describe(message) + items);
  }
  if (p.kind == Peer::Kind::Worker) {
    if (!std::holds_alternative<wire::Alive>(message)) {
      p.busy_since = now_;
      p.gap_counted = false;
    }
    p.core->on_message(message, e.frame.payload, local_tp(p));
    worker_pump(i);
  } else {
    if (p.job) p.job->feed(message, e.frame.payload, local_tp(p));
    if (const auto* f = std::get_if<wire::Failed>(&message); f && is_over_limit(*f)) {
      ++report_.over_limit;
    }
    client_pump(i);
  }
}

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
  p.running = false;
  p.busy_since = now_;
  p.disturbed_at = now_;
  worker::SessionCoreOptions o;
  o.endpoint = "sim";
  o.prefetch = p.prefetch;
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

void World::kill_worker(int i, const std::string& why) {
  Peer& p = peers_[i];
  if (!p.alive) return;
  if (trace_) tracef(p.name + " dies: " + why);
  p.alive = false;
  p.frozen = false;
  p.deferred.clear();
  p.core.reset();
  p.exec.clear();
  p.running = false;
  p.link.wanted = false;
  p.link.queued.clear();
  break_link(i, 0);  // the kernel closes the socket: the ROUTER sees it at once
  ++p.restarts;
}

void World::worker_pump(int i) {
  Peer& p = peers_[i];
  if (!p.alive || p.frozen) return;
  worker::SessionCore& core = *p.core;
  // Skipped tasks answer at once and may queue more: until nothing moves (bounded).
  for (int round = 0;
       round < 64 && (!core.outbox().empty() || !core.starts().empty() || round == 0); ++round) {
    // What the core queued after deciding to start over belongs to the new socket.
    if (core.take_reconnect()) {
      ++report_.worker_reconnects;
      const Us calm_since = std::max({p.disturbed_at, broker_disturbed_at_});
      if (trace_) tracef(p.name + " reconnects (a fresh socket, same id)");
      if (now_ - calm_since > kCalmWindow) {
        violate(p.name +
                " reconnected although neither its connection nor the broker was "
                "disturbed for " +
                std::to_string((now_ - calm_since) / kMs) +
                " ms: it heard nothing from a broker that was there (the heartbeat gap)");
      }
      break_link(i, 0);
      p.link.queued.clear();
      try_connect(i, rng_.between(100, 3 * kMs));
    }
    for (auto& out : std::exchange(core.outbox(), {})) {
      if (trace_) tracef(p.name + " sends " + describe(out.message));
      if (std::holds_alternative<wire::Result>(out.message)) {
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
      peer_send(i, Frame{wire::encode(out.message), std::move(out.payload)});
    }
    for (auto& start : std::exchange(core.starts(), {})) p.exec.push_back(std::move(start));
    exec_next(i);
  }
  if (!p.alive) return;  // a poison item killed it
  if (core.ending() != worker::SessionCore::Ending::Running) {
    kill_worker(i, "its core stopped");
    return;
  }
  if (auto at = global_of(p, core.next_deadline()))
    schedule(*at, make_event(Ev::Tick, i, ++p.tick_gen));
}

void World::exec_next(int i) {
  Peer& p = peers_[i];
  while (p.alive && !p.running && !p.exec.empty()) {
    worker::SessionCore::Start start = std::move(p.exec.front());
    p.exec.pop_front();
    if (start.sequence <= p.core->skip_through()) {
      p.core->on_finished(start.sequence, worker::SessionCore::Outcome::Skipped, 0, Bytes(),
                          local_tp(p));
      continue;  // the caller's pump sends what this queued
    }
    msgpack::object_handle h = msgpack::unpack(start.payload.data(), start.payload.size());
    p.running_inputs = h.get().as<std::vector<std::int64_t>>();
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
    } else {
      schedule(now_ + duration, make_event(Ev::ExecDone, i, p.incarnation));
    }
  }
}

void World::exec_done(int i) {
  Peer& p = peers_[i];
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
  p.core->on_finished(p.running_sequence, worker::SessionCore::Outcome::Ok,
                      static_cast<std::uint64_t>(std::max<Us>(elapsed, 1)),
                      Bytes::copy(buffer.data(), buffer.size()), local_tp(p));
  worker_pump(i);
}

// --- clients ----------------------------------------------------------------------------------

void World::start_job(int i) {
  Peer& p = peers_[i];
  p.job_pending = false;
  if (!p.alive || p.jobs.size() >= p.jobs_planned) return;
  JobRecord& job = p.jobs.emplace_back();
  job.id = (static_cast<std::uint64_t>(i) << 32) | next_job_id_++;
  job.started = now_;
  const std::size_t count = static_cast<std::size_t>(rng_.between(1, 40));
  const std::int64_t base = static_cast<std::int64_t>(job.id & 0xffffff) * 1000;
  const std::size_t poison_at =
      (options_.faults & kPoison) && rng_.chance(300) ? rng_.below(count) : count;
  for (std::size_t k = 0; k < count; ++k) {
    job.items.push_back(
        ItemCheck{base + static_cast<std::int64_t>(k) + (k == poison_at ? 900 : 0)});
  }
  if (rng_.chance(150)) job.cancel_at = now_ + rng_.between(0, 3 * kSecond);
  if (job.cancel_at >= 0) {
    Event e = make_event(Ev::Fault, i, 0);
    e.fault = FaultKind::Cancel;
    e.arg = job.id;
    schedule(job.cancel_at, std::move(e));
  }
  client::JobCoreOptions o = p.job_options;
  o.broker_heartbeat = p.broker_heartbeat;
  p.job = std::make_unique<client::JobCore>(job.id, "m.square", o, local_tp(p));
  if (trace_)
    tracef(p.name + " starts job " + std::to_string(job.id) + " of " + std::to_string(count) +
           " items" + (poison_at < count ? ", item " + std::to_string(poison_at) + " poison" : ""));
  client_pump(i);
}

void World::check_result(int i, const client::JobCore::ItemResult& r) {
  Peer& p = peers_[i];
  JobRecord& job = p.jobs.back();
  const std::string where =
      p.name + " job " + std::to_string(job.id) + " item " + std::to_string(r.index);
  if (r.index >= job.next_input) violate(where + ": a result for an item never submitted");
  ItemCheck& item = job.items[r.index];
  if (item.received) violate(where + ": received twice");
  item.received = true;
  ++report_.items;
  const std::int64_t x = item.input;
  if (r.value != nullptr) {
    if ((options_.faults & kRaise) && raises(x))
      violate(where + ": a value for an item that raises");
    if ((options_.faults & kPoison) && is_poison(x)) violate(where + ": a value for a poison item");
    std::int64_t v = 0;
    try {
      v = r.value->as<std::int64_t>();
    } catch (const std::exception&) {
      violate(where + ": a value that is not an integer");
    }
    if (v != x * x)
      violate(where + ": value " + std::to_string(v) + ", expected " + std::to_string(x * x));
  } else {
    ++report_.error_items;
    // Lost workers may use up an item's attempts before it ever raises: worker_lost is right then.
    if ((options_.faults & kRaise) && raises(x) && r.error.rfind("worker lost", 0) != 0) {
      if (r.error != raise_message(x))
        violate(where + ": error \"" + r.error + "\", expected the raise");
    } else if (r.error.rfind("worker lost", 0) != 0) {
      violate(where + ": unexpected error \"" + r.error + "\"");
    }
  }
  // The caller reads in order: a reorder buffer hands on the run of items now complete.
  while (job.emitted < job.items.size() && job.items[job.emitted].received) ++job.emitted;
}

void World::client_pump(int i) {
  Peer& p = peers_[i];
  if (!p.alive || !p.job) return;
  client::JobCore& core = *p.job;
  JobRecord& job = p.jobs.back();
  while (job.next_input < job.items.size()) {
    const std::uint32_t wanted = core.wanted();
    if (wanted == 0) break;
    const std::uint64_t left = job.items.size() - job.next_input;
    const std::uint32_t count = static_cast<std::uint32_t>(
        rng_.between(1, static_cast<std::int64_t>(std::min<std::uint64_t>(wanted, left))));
    std::vector<Bytes> items;
    for (std::uint32_t k = 0; k < count; ++k) {
      msgpack::sbuffer b;
      msgpack::pack(b, job.items[job.next_input + k].input);
      items.push_back(Bytes::copy(b.data(), b.size()));
    }
    Bytes payload = client::JobCore::pack_chunk(items);
    p.max_chunk_bytes = std::max(p.max_chunk_bytes, payload.size());
    core.add_chunk(std::move(payload), count, local_tp(p));
    job.next_input += count;
  }
  if (job.next_input == job.items.size()) core.end_input(local_tp(p));
  for (const auto& r : core.take_results()) check_result(i, r);
  if (core.inflight_bytes() > p.job_options.max_inflight_bytes + p.max_chunk_bytes) {
    violate(p.name + " holds " + std::to_string(core.inflight_bytes()) +
            " bytes in flight, over its limit of " +
            std::to_string(p.job_options.max_inflight_bytes));
  }
  if (core.done()) {
    if (job.emitted != job.items.size()) {
      violate(p.name + " job " + std::to_string(job.id) + " done with " +
              std::to_string(job.emitted) + " of " + std::to_string(job.items.size()) +
              " items handed on in order");
    }
    end_job(i, JobRecord::State::Completed);
  } else if (core.failed()) {
    violate(p.name + " job " + std::to_string(job.id) + " failed: " + core.failure()->message);
  }
  if (p.job) {
    for (auto& out : core.take_outbox()) {
      if (trace_) tracef(p.name + " sends " + describe(out.message));
      peer_send(i, Frame{wire::encode(out.message), std::move(out.payload)});
    }
    if (auto at = global_of(p, core.next_deadline()))
      schedule(*at, make_event(Ev::Tick, i, ++p.tick_gen));
  }
}

void World::end_job(int i, JobRecord::State state) {
  Peer& p = peers_[i];
  JobRecord& job = p.jobs.back();
  job.state = state;
  if (state == JobRecord::State::Completed || state == JobRecord::State::Cancelled) {
    p.job->close(local_tp(p));
    for (auto& out : p.job->take_outbox()) {
      if (trace_) tracef(p.name + " sends " + describe(out.message));
      peer_send(i, Frame{wire::encode(out.message), std::move(out.payload)});
    }
    p.broker_heartbeat = p.job->broker_heartbeat();
  }
  if (state == JobRecord::State::Completed) {
    ++report_.jobs_completed;
    report_.max_job_lag_us =
        std::max(report_.max_job_lag_us, now_ - std::max(job.started, calm_at_));
  }
  if (state == JobRecord::State::Cancelled) ++report_.jobs_cancelled;
  if (state == JobRecord::State::Vanished) ++report_.jobs_vanished;
  if (trace_) {
    static const char* names[] = {"running", "completed", "cancelled", "vanished", "failed"};
    tracef(p.name + " job " + std::to_string(job.id) + " " + names[static_cast<int>(state)]);
  }
  p.job.reset();
  if (p.alive && p.jobs.size() < p.jobs_planned) {
    p.job_pending = true;
    schedule(now_ + rng_.between(0, 500 * kMs), make_event(Ev::JobStart, i, 0));
  }
}

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
}

void World::fault(FaultKind kind, int i, std::uint64_t arg) {
  auto later = [&](Us delay, FaultKind k, int peer, std::uint64_t a = 0) {
    Event e = make_event(Ev::Fault, peer, 0);
    e.fault = k;
    e.arg = a;
    schedule(now_ + delay, std::move(e));
    calm_at_ = std::max(calm_at_, now_ + delay);
  };
  switch (kind) {
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
      kill_worker(i, "crashed");
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
      broker_.reset();
      broker_disturbed_at_ = now_;
      for (std::size_t k = 0; k < peers_.size(); ++k) {
        break_link(static_cast<int>(k), 0);
        peers_[k].link.router_knows = false;
      }
      later(rng_.between(100 * kMs, 4 * kSecond), FaultKind::BrokerRestart, -1);
      break;
    }
    case FaultKind::BrokerRestart: {
      const std::uint64_t instance = rng_.next() | 1;
      broker_ = make_broker(config_, instance,
                            trace_ ? [this](const std::string& line) { tracef("B log: " + line); }
                                   : std::function<void(const std::string&)>());
      broker_disturbed_at_ = now_;
      if (trace_) tracef("B restarts empty, instance " + std::to_string(instance));
      for (std::size_t k = 0; k < peers_.size(); ++k) {
        try_connect(static_cast<int>(k), rng_.between(kMs, 200 * kMs));
      }
      broker_tick_schedule();
      break;
    }
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
    case FaultKind::Cancel: {
      Peer& p = peers_[i];
      if (!p.alive || !p.job || p.job->job_id() != arg) return;
      if (trace_) tracef(p.name + " cancels job " + std::to_string(arg));
      end_job(i, JobRecord::State::Cancelled);
      break;
    }
  }
}

// --- the loop ---------------------------------------------------------------------------------

void World::step(Event& e) {
  switch (e.kind) {
    case Ev::ToBroker:
      deliver_to_broker(e.peer, e);
      break;
    case Ev::ToPeer:
      deliver_to_peer(e.peer, e);
      break;
    case Ev::Connected: {
      Peer& p = peers_[e.peer];
      if (e.tag != p.link.epoch || p.link.up || !p.link.wanted || !broker_ || !p.alive ||
          now_ < p.link.partitioned_until) {
        break;
      }
      p.link.up = true;
      // The ROUTER takes the new pipe for this id (the old one, if any, is gone or handed over).
      p.link.router_knows = true;
      p.link.router_epoch = p.link.epoch;
      p.disturbed_at = now_;
      if (trace_) tracef(p.name + " connected as " + p.link.id);
      for (Frame& f : std::exchange(p.link.queued, {})) peer_send(e.peer, std::move(f));
      break;
    }
    case Ev::RouterDrop: {
      Peer& p = peers_[e.peer];
      if (p.link.router_knows && p.link.router_epoch == e.tag) p.link.router_knows = false;
      break;
    }
    case Ev::Tick: {
      Peer& p = peers_[e.peer];
      if (!p.alive || e.tag != p.tick_gen) break;
      if (p.kind == Peer::Kind::Worker) {
        p.core->on_tick(local_tp(p));
        worker_pump(e.peer);
      } else if (p.job) {
        p.job->tick(local_tp(p));
        client_pump(e.peer);
      }
      break;
    }
    case Ev::BrokerTick:
      if (broker_ && e.tag == broker_tick_gen_) {
        broker_->on_tick(broker_tp());
        broker_flush();
      }
      break;
    case Ev::ExecDone:
      if (peers_[e.peer].alive && e.tag == peers_[e.peer].incarnation) exec_done(e.peer);
      break;
    case Ev::Fault:
      fault(e.fault, e.peer, e.arg);
      break;
    case Ev::JobStart:
      start_job(e.peer);
      break;
  }
}

// A stopped process does nothing: its events wait, in order, until it resumes.
bool World::defer(Peer& p, Event& event) {
  if (!p.frozen) return false;
  const bool its_own =
      event.kind == Ev::ToPeer || event.kind == Ev::Tick || event.kind == Ev::ExecDone ||
      (event.kind == Ev::Fault && event.fault == FaultKind::WorkerCrash && event.arg == 1);
  if (!its_own) return false;
  if (trace_ && event.kind == Ev::ToPeer) {
    tracef("B -> " + p.name + " " + describe_header(event.frame.header) + ": waits, " + p.name +
           " is stopped");
  }
  p.deferred.push_back(std::move(event));
  return true;
}

bool World::all_jobs_ended() const {
  for (int i : clients_) {
    const Peer& p = peers_[i];
    if (p.job || (p.alive && p.jobs.size() < p.jobs_planned)) return false;
  }
  return true;
}

void World::check_step() {
  for (int i : clients_) {
    const Peer& p = peers_[i];
    if (!p.job) continue;
    const JobRecord& job = p.jobs.back();
    const Us deadline = std::max(job.started, calm_at_) + kJobBound;
    if (now_ > deadline) {
      violate(p.name + " job " + std::to_string(job.id) + " has not completed " +
              std::to_string((now_ - std::max(job.started, calm_at_)) / kMs) +
              " ms after its faults stopped (" + std::to_string(job.emitted) + " of " +
              std::to_string(job.items.size()) + " items)");
    }
  }
  if (!broker_) return;
  for (int i : workers_) {
    const Peer& p = peers_[i];
    if (broker_->inflight_count(p.link.id) > config_.max_capacity) {
      violate("the broker holds " + std::to_string(broker_->inflight_count(p.link.id)) +
              " tasks at " + p.name + ", over the capacity cap");
    }
  }
  for (int i : clients_) {
    const Peer& p = peers_[i];
    const std::uint64_t held = broker_queued_bytes(*broker_, p.link.id);
    if (held > config_.max_client_bytes) {
      violate("the broker holds " + std::to_string(held) + " bytes of " + p.name +
              ", over its limit of " + std::to_string(config_.max_client_bytes));
    }
  }
}

void World::check_end() {
  for (int i : clients_) {
    for (const JobRecord& job : peers_[i].jobs) {
      if (job.state != JobRecord::State::Completed) continue;
      for (std::size_t k = 0; k < job.items.size(); ++k) {
        if (!job.items[k].received) {
          violate(peers_[i].name + " job " + std::to_string(job.id) + " completed without item " +
                  std::to_string(k));
        }
      }
    }
  }
  if (!broker_) return;
  if (broker_->task_count() || broker_->job_count() || broker_client_count(*broker_)) {
    violate("after every job ended the broker still holds " +
            std::to_string(broker_->task_count()) + " tasks, " +
            std::to_string(broker_->job_count()) + " jobs and " +
            std::to_string(broker_client_count(*broker_)) + " clients");
  }
}

RunReport World::run() {
  // The world's shape, drawn first so that it does not depend on what happens later.
  config_.heartbeat = kHeartbeat;
  config_.liveness = kLiveness;
  config_.max_capacity = kMaxCapacity;
  // Sometimes small enough for FAILED over_limit; then chunks are small, since a chunk larger
  // than the limit can never run and fails its job (as it should).
  const bool tight = rng_.chance(300);
  config_.max_client_bytes =
      tight ? static_cast<std::uint64_t>(rng_.between(60, 200)) : 512ull << 20;
  const int worker_count = static_cast<int>(rng_.between(1, 4));
  const int client_count = static_cast<int>(rng_.between(1, 3));
  for (int k = 0; k < worker_count + client_count; ++k) {
    Peer p;
    p.kind = k < worker_count ? Peer::Kind::Worker : Peer::Kind::Client;
    p.name = (k < worker_count ? "W" : "C") +
             std::to_string(k < worker_count ? k + 1 : k - worker_count + 1);
    if (options_.faults & kDrift) {
      p.ppm = rng_.between(-20000, 20000);
      p.offset = rng_.between(0, 1000 * kSecond);
    }
    if (p.kind == Peer::Kind::Worker) {
      // Adaptive credit, or a fixed prefetch: a large one builds the backlogs of the heartbeat gap.
      p.prefetch = rng_.chance(500) ? 0 : static_cast<std::uint32_t>(rng_.between(1, 16));
      workers_.push_back(k);
    } else {
      p.link.id = p.name;
      p.jobs_planned = static_cast<std::size_t>(rng_.between(1, 3));
      p.job_options.endpoint = "sim";
      p.job_options.window = static_cast<std::size_t>(rng_.between(1, 8));
      p.job_options.max_inflight_bytes =
          rng_.chance(300) ? static_cast<std::size_t>(rng_.between(60, 400)) : 8u << 20;
      p.job_options.chunk_size =
          !tight && rng_.chance(500) ? 0 : static_cast<std::size_t>(rng_.between(1, 6));
      p.job_options.timeout = kClientTimeout;
      p.job_options.worker_wait = kWorkerWait;
      clients_.push_back(k);
    }
    peers_.push_back(std::move(p));
  }
  for (int i : clients_) by_id_[peers_[i].link.id] = i;
  const std::uint64_t instance = rng_.next() | 1;
  broker_ = make_broker(config_, instance,
                        trace_ ? [this](const std::string& line) { tracef("B log: " + line); }
                               : std::function<void(const std::string&)>());
  if (trace_) {
    tracef("seed " + std::to_string(options_.seed) + ": " + std::to_string(worker_count) +
           " workers, " + std::to_string(client_count) + " clients, faults " +
           fault_names(options_.faults) + ", broker max_client_bytes " +
           std::to_string(config_.max_client_bytes));
  }
  plan_faults();
  broker_tick_schedule();
  for (int i : workers_) start_worker(i, false);
  for (int i : clients_) {
    Peer& p = peers_[i];
    p.alive = true;
    p.link.wanted = true;
    try_connect(i, rng_.between(100, 5 * kMs));
    p.job_pending = true;
    schedule(rng_.between(0, 2 * kSecond), make_event(Ev::JobStart, i, 0));
  }

  const std::uint64_t step_limit = options_.max_steps ? options_.max_steps : kDefaultStepLimit;
  try {
    while (!events_.empty()) {
      if (steps_ >= step_limit) {
        if (!options_.max_steps)
          violate("the run did not end within " + std::to_string(step_limit) + " steps");
        break;
      }
      auto node = events_.extract(events_.begin());
      Event& e = node.mapped();
      now_ = node.key().first;
      if (e.peer >= 0 && defer(peers_[e.peer], e)) continue;
      ++steps_;
      step(e);
      check_step();
      if (all_ended_at_ < 0 && all_jobs_ended()) all_ended_at_ = now_;
      if (all_ended_at_ >= 0 && now_ >= std::max(all_ended_at_, calm_at_) + kSettle) {
        check_end();
        report_.finished = true;
        break;
      }
    }
    if (!report_.finished && !options_.max_steps) violate("the world ran out of events");
  } catch (const Violation& v) {
    report_.ok = false;
    report_.failure = v.what;
    report_.failed_step = steps_;
    report_.failed_us = now_;
    if (trace_) tracef("INVARIANT FAILED: " + v.what);
  }
  report_.steps = steps_;
  report_.end_us = now_;
  return report_;
}

}  // namespace

std::optional<std::uint32_t> parse_faults(const std::string& text) {
  static const std::pair<const char*, Fault> names[] = {{"worker-crash", kWorkerCrash},
                                                        {"broker-crash", kBrokerCrash},
                                                        {"client-vanish", kClientVanish},
                                                        {"partition", kPartition},
                                                        {"freeze", kFreeze},
                                                        {"raise", kRaise},
                                                        {"poison", kPoison},
                                                        {"drift", kDrift}};
  if (text == "all") return kAllFaults;
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
  if (faults == 0) return "none";
  static const char* names[] = {"worker-crash", "broker-crash", "client-vanish", "partition",
                                "freeze",       "raise",        "poison",        "drift"};
  std::string out;
  for (int k = 0; k < 8; ++k) {
    if (faults & (1u << k)) out += (out.empty() ? "" : ",") + std::string(names[k]);
  }
  return out;
}

RunReport run(const RunOptions& options) {
  World world(options);
  return world.run();
}

}  // namespace seppo::sim
