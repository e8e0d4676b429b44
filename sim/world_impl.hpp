// The simulated world's insides, shared by its parts (sim/network.cpp, workers.cpp,
// clients.cpp, faults.cpp, world.cpp): the settings, the event, link and peer records, and the
// World class that owns them. Not for use outside sim/.
#pragma once

#include "sim/world.hpp"

#include <algorithm>
#include <chrono>
#include <deque>
#include <map>
#include <memory>
#include <ostream>
#include <set>
#include <sstream>
#include <vector>

#include "seppo/msgpack.hpp"

#include "broker/admission.hpp"
#include "broker/core.hpp"
#include "broker/delivery.hpp"
#include "broker/driver.hpp"
#include "broker/ha_core.hpp"
#include "broker/ha_gate.hpp"
#include "libclient/job_core.hpp"
#include "protocol/wire.hpp"
#include "seppo/result_entry.hpp"
#include "sim/describe.hpp"
#include "sim/random.hpp"
#include "worker/session_core.hpp"

// The broker's work in a run, in frames that bench/scale.sh has callgrind count
// (--toggle-collect='seppo_sim_core_*' --toggle-collect=seppo_sim_transport): each calls
// fn(arg) and nothing else, and callgrind's inclusive cost of each is what the core spent on
// that kind of work. seppo_sim_transport, inside them, is the simulator's pipes: not counted.
extern "C" {
void seppo_sim_core_task(void (*fn)(void*), void* arg);              // SUBMIT, RESULT, DONE, ...
void seppo_sim_core_worker_heartbeat(void (*fn)(void*), void* arg);  // a worker's HEARTBEAT
void seppo_sim_core_client_heartbeat(void (*fn)(void*), void* arg);  // a client's HEARTBEAT
void seppo_sim_core_join(void (*fn)(void*), void* arg);              // READY, BYE
void seppo_sim_core_tick(void (*fn)(void*), void* arg);              // on_tick
void seppo_sim_core_status(void (*fn)(void*), void* arg);            // one STATUS snapshot
void seppo_sim_core_metrics_snapshot(void (*fn)(void*), void* arg);  // the snapshot /metrics uses
void seppo_sim_core_metrics(void (*fn)(void*), void* arg);           // rendering /metrics from it
void seppo_sim_core_metrics_full(void (*fn)(void*), void* arg);  // rendering it from STATUS's map
void seppo_sim_transport(void (*fn)(void*), void* arg);
}

namespace seppo::sim::detail {

// Calls f() inside one of the frames above.
template <typename F>
void within(void (*frame)(void (*)(void*), void*), F&& f) {
  frame([](void* arg) { (*static_cast<std::remove_reference_t<F>*>(arg))(); }, &f);
}

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
// How long a routing id stays bound to its user after the broker last heard it (as
// broker/server.cpp: four times the expiry).
constexpr Us kBindFor = 4 * kExpiry;

// Items are integers; what a worker does with one is a function of the integer alone, so the
// checker knows every right answer. x % 1000 >= 900 is a poison item, 800 to 899 an item that
// hangs (never returns: `hang`), x % 7 == 3 raises.
inline bool is_poison(std::int64_t x) {
  return x % 1000 >= 900;
}
inline bool is_hang(std::int64_t x) {
  return x % 1000 >= 800 && x % 1000 < 900;
}
// Items of one job in five are all slow: a worker with a large prefetch then answers a backlog
// for longer than the liveness while no new TASK comes (the heartbeat gap's situation).
inline bool is_slow(std::int64_t x) {
  return (x / 1000) % 5 == 0;
}
inline bool raises(std::int64_t x) {
  return !is_poison(x) && !is_hang(x) && x % 7 == 3;
}
inline std::string raise_message(std::int64_t x) {
  return "ValueError: " + std::to_string(x) + " is odd";
}

inline std::string inputs_of(const Bytes& payload) {
  msgpack::object_handle h = msgpack::unpack(payload.data(), payload.size());
  std::string out;
  for (std::int64_t x : h.get().as<std::vector<std::int64_t>>()) {
    out += (out.empty() ? "" : ",") + std::to_string(x);
  }
  return "[" + out + "]";
}

// The inputs of each task a TASK or TASKS carries (none for other messages).
inline std::vector<std::vector<std::int64_t>> task_inputs(const std::string& header,
                                                          const std::optional<Bytes>& payload) {
  std::vector<std::vector<std::int64_t>> out;
  if (!payload || header.size() < 3) return out;
  const auto type = static_cast<unsigned char>(header[2]);
  if (type != static_cast<int>(wire::Type::Task) && type != static_cast<int>(wire::Type::Tasks))
    return out;
  const wire::Message message = wire::decode(header.data(), header.size());
  std::vector<Bytes> parts;
  if (const auto* tasks = std::get_if<wire::Tasks>(&message)) {
    for (wire::BatchedTask& part : wire::split(*tasks, *payload)) parts.push_back(part.payload);
  } else {
    parts.push_back(*payload);
  }
  for (const Bytes& part : parts) {
    msgpack::object_handle h = msgpack::unpack(part.data(), part.size());
    out.push_back(h.get().as<std::vector<std::int64_t>>());
  }
  return out;
}

struct Frame {
  std::string header;
  std::optional<Bytes> payload;
  std::vector<std::int64_t> inputs;  // a RESULT's items, known to the simulated worker only
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
  JobStart,
  Closed,  // the ROUTER's monitor reports a connection closed (ZMQ_EVENT_DISCONNECTED)
           // (arg: the connection's number)
  HaState  // a pair's HA link: a state message reaches Event::broker (frame.header)
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
  Cancel,
  GhostStart,  // a peer connects and sends READY (churn)
  GhostClose,  // and closes before saying anything else
  // Issue 27 (kKeys):
  ImpostorStart,  // a peer connects under another's routing id with its own key
  ImpostorClose,
  IntruderSend,    // a client whose key is revoked keeps sending (arg: the message)
  IntruderReady,   // a worker whose key will be revoked announces itself
  Revoke,          // the broker reloads its lists without the intruders' keys
  SupervisorDies,  // a worker's supervisor is killed: its process gets SIGTERM (issue 27)
  OrphanCheck,     // its orphan must have ended by now
  // Issue 25 (kBrokerRestart):
  RestartRunning,  // restart the broker once a worker runs a task (arg: tries so far)
  BrokerStop,      // a broker told to stop (SIGTERM) has said BYE and exits
  BrokerBack,      // and starts again empty
  // Issue 25 §2 (--pair):
  HostLost,     // the active broker's host vanishes
  HostBack,     // and comes back: its broker starts again (arg: which)
  HaCut,        // the link between the brokers is cut (arg: for how long)
  YieldRestart  // a backup that yielded (H11) is started again by its service manager (arg)
};

struct Event {
  Ev kind = Ev::Tick;
  int peer = -1;
  std::uint64_t tag = 0;  // epoch, tick generation, incarnation or sequence
  Frame frame;
  FaultKind fault = FaultKind::WorkerCrash;
  std::uint64_t arg = 0;
  std::string id;  // Closed: the routing id whose connection closed
  int broker = 0;  // a pair (--pair): the broker the event concerns (0 primary, 1 backup)
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
  int connection = -1;         // the connection's number (ZMQ_SRCFD for broker::Admission)
  bool close_noticed = false;  // the broker's monitor reported its last connection closed
  int target = 0;  // a pair: the endpoint this connection goes to, as the peer's core chose it
};

struct ItemCheck {
  std::int64_t input = 0;
  bool received = false;
};

struct JobRecord {
  std::uint64_t id = 0;
  std::set<std::uint64_t> submitted;  // firsts sent: another SUBMIT of one is a resubmission
  std::vector<ItemCheck> items;
  std::uint64_t next_input = 0;  // items packed so far
  std::uint64_t emitted = 0;     // items handed on in order (the reorder buffer's front)
  Us started = 0;
  Us cancel_at = -1;
  Us limit = 0;  // the time limit per item the broker applies to it (0: none)
  enum class State { Running, Completed, Cancelled, Vanished, Failed } state = State::Running;
};

struct Peer {
  // Impostor and Intruder (kKeys): a peer that presents another's routing id, and a client
  // whose key the broker's lists stop granting; neither must ever have a message taken.
  enum class Kind { Worker, Client, Ghost, Impostor, Intruder } kind;
  std::string name;  // "W1", "C2": the slot; the routing id may change across restarts
  std::string user;  // the ZAP User-Id its connections are admitted as ("worker:KEY")
  int victim = -1;   // an impostor's: the peer whose routing id it presents
  // An intruder that registered as a worker (READY, then silent) before its key was revoked
  // (issue 26): from the reload on, the broker holds no task at it and sends it nothing.
  bool revoked_worker = false;
  Link link;
  std::int64_t ppm = 0;  // clock drift
  Us offset = 0;
  bool alive = false;
  bool frozen = false;
  std::vector<Event> deferred;  // what happened to it while stopped, in order
  std::uint64_t tick_gen = 0;
  Us disturbed_at = 0;   // last event that could make the broker look silent to it
  Us faulted_at = -1;    // last fault that concerned it (issue 25's invariant 16 excuses it)
  Us cancelled_at = -1;  // last CANCEL the broker sent it
  // Issue 25: it listed kept tasks to this broker generation while its adoption window was
  // open; the highest sequence its executor got, and what it was at the last restart.
  std::uint64_t listed_generation = 0;
  std::uint64_t max_sequence = 0;
  std::uint64_t sequence_at_restart = 0;
  std::uint64_t incarnation_at_restart = 0;
  std::uint64_t incarnation = 0;
  int restarts = 0;

  // A worker: its core and the executor's queue.
  std::unique_ptr<worker::SessionCore> core;
  std::uint32_t prefetch = 0;
  std::deque<worker::SessionCore::Start> exec;
  std::deque<Us> exec_at;  // when each of `exec` arrived
  // Queued sequences the core told it to skip (tasks the broker cancelled or took back), as
  // worker/executor.cpp's cancelled_: they never start, and are reported Skipped in their turn.
  std::set<std::uint64_t> skipped;
  std::uint64_t skip_through = 0;  // the virtual executor skips queued ones up to it
  Us orphaned_at = -1;  // its supervisor died then (SIGTERM, on_parent_gone); -1: it has one
  bool running = false;
  std::uint64_t running_sequence = 0;
  std::vector<std::int64_t> running_inputs;
  Us running_since = 0;
  bool running_hangs = false;                 // the running task holds an item that never returns
  std::vector<std::int64_t> finished_inputs;  // the task just finished, for its RESULT frame
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
  bool job_pending = false;       // a JobStart event is scheduled
  std::uint64_t scale_items = 0;  // a scale world's client: the items of its job
};

inline Event make_event(Ev kind, int peer, std::uint64_t tag) {
  Event e;
  e.kind = kind;
  e.peer = peer;
  e.tag = tag;
  return e;
}

// What the executors did with an item, to tell a time limit kept from an innocent item charged.
struct ItemRun {
  Us longest = 0;        // its longest run, or wait in a worker's queue, in global time
  bool excused = false;  // a TASK holding it was lost, or waited while its worker was stopped
  std::uint32_t starts = 0;
};

// Issue 25: an item running at a worker when the broker restarted.
struct KeptRun {
  int peer = -1;
  std::uint64_t incarnation = 0;
  std::uint64_t sequence = 0;
  Us at = 0;
};

// A pair (--pair): what each broker of the pair has of its own. The World's broker fields are
// the current broker's; use_broker() swaps them with its slot (so that the single-broker code
// serves either broker unchanged).
struct BrokerSlot {
  std::unique_ptr<broker::Core> core;
  std::unique_ptr<broker::Admission> admission;
  std::unique_ptr<broker::ha::HaCore> ha;
  std::map<std::string, std::uint64_t> where;
  std::vector<std::string> lost;
  std::map<std::string, std::pair<std::string, Us>> bound;
  std::map<std::pair<std::string, std::uint64_t>, std::vector<Us>> cancels;
  std::uint64_t tick_gen = 0;
  Us served_at = -1;     // the last client or worker message its gate let through
  Us active_since = -1;  // when it last became active
  Us turned_at = -1;     // a client or worker last spoke to it while it was not active
  Us last_ha_arrival = 0;
};

struct Violation {
  std::string what;
};

class World {
 public:
  explicit World(const RunOptions& options)
      : options_(options),
        rng_(options.seed),
        rng12_(options.seed ^ 0x5eb0'12'12'5eb0'1212ull),
        rng27_(options.seed ^ 0x5eb0'27'27'5eb0'2727ull),
        rng27o_(options.seed ^ 0x0a0a'27'27'0a0a'2727ull),
        rng25_(options.seed ^ 0x5eb0'25'25'5eb0'2525ull),
        trace_(options.trace),
        rng25p_(options.seed ^ 0x0b0b'25'25'0b0b'2525ull) {}

  RunReport run();

 private:
  // --- a pair of brokers (issue 25 §2, sim/pair.cpp) ---
  void use_broker(int b);
  bool broker_up(int b) const {
    return b == current_ ? broker_ != nullptr : slots_[b].core != nullptr;
  }
  broker::ha::HaCore* ha_of(int b) { return b == current_ ? ha_.get() : slots_[b].ha.get(); }
  void make_pair_broker(int b, Random& rng);
  void ha_publish();  // the current broker's HaCore outbox, over the HA link
  void ha_receive(Event& e);
  void ha_after();  // after the current HaCore took something in: sync, yield
  void plan_pair_faults(Us window);
  void pair_fault(FaultKind kind, std::uint64_t arg);
  void check_pair();
  void peer_moved(int i, int target);
  void drop_broker(Us router_notices_after);
  RunReport run_scale();
  void make_scale_world();
  void start_peers(Us jobs_within);
  RunReport loop();
  // Half way through a scale run: one STATUS snapshot and one /metrics rendering, counted.
  void take_snapshots();
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
  // Invariant 10 (issue 26): a CANCEL of one task id to one worker registration goes at most
  // twice within a liveness (one for its RETURN, its time limit or its job; one for a HEARTBEAT
  // listing it), not at every heartbeat.
  void note_cancels(const std::string& peer, const std::string& header);
  void count_resubmission(JobRecord& job, const wire::Message& message);
  void heard(const std::string& id, std::uint64_t connection);
  void router_closed(const std::string& id, std::uint64_t connection);
  void excuse_task(const Frame& frame);
  void excuse_inputs(const Frame& frame);
  void schedule_close(int i, Us after);
  void broker_tick_schedule();
  // Schedules a frame from the broker to peer i, in order on its connection.
  void broker_send(int i, std::string header, std::optional<Bytes> payload);

  // --- admission (issue 27, kKeys) ---
  void make_broker(std::uint64_t instance);
  void make_admission();
  std::shared_ptr<const broker::KeyLists> key_lists() const;
  void plan_keys(Us window);
  void keys_fault(FaultKind kind, int i, std::uint64_t arg);
  std::string user_of(const Peer& p) const;
  // The broker judges a message of peer i, as broker/server.cpp does; a refused one is dropped.
  broker::Admission::Verdict admit(int i);

  // --- workers ---
  void start_worker(int i, bool new_id);
  void kill_worker(int i, const std::string& why, bool host_vanished = false);
  void worker_pump(int i);
  void abandon(int i);
  void exec_next(int i);
  void exec_done(int i);
  void ran(std::int64_t x, Us how_long);
  void ended_running(int i);

  // --- clients ---
  void start_job(int i);
  void client_pump(int i);
  void end_job(int i, JobRecord::State state);
  void start_scale_job(int i, JobRecord& job);
  void check_result(int i, const client::JobCore::ItemResult& r);

  // --- faults ---
  void plan_faults();
  void fault(FaultKind kind, int i, std::uint64_t arg);
  void plan_churn(Us window);
  void plan_orphans(Us window);
  void orphan(int i);
  void check_orphan(int i, std::uint64_t incarnation);
  void orphan_ended(int i, const std::string& how);
  void plan_restarts(Us window);
  void restart_fault(FaultKind kind, std::uint64_t arg);
  void note_running();
  void tear_down_broker();
  void start_broker(Random& rng);
  // Invariant 16 (issue 25): item x starts at worker i.
  void check_kept_start(int i, std::int64_t x, std::uint64_t sequence);
  void note_listing(int i, const std::string& header);

  // --- invariants ---
  void check_step(int peer);  // after a step concerning `peer` (-1: the broker)
  void check_end();
  [[noreturn]] void violate(const std::string& what) { throw Violation{what}; }
  void tracef(const std::string& line);
  bool all_jobs_ended() const;

  RunOptions options_;
  Random rng_;
  Random rng12_;   // issue 12's choices: without those faults, rng_ draws as before
  Random rng27_;   // issue 27's (kKeys)
  Random rng27o_;  // issue 27's orphans: rng_ and rng12_ draw as before
  Random rng25_;   // issue 25's broker restarts with running tasks
  std::ostream* trace_;
  Us now_ = 0;
  std::uint64_t steps_ = 0;
  std::uint64_t next_seq_ = 0;
  std::map<std::pair<Us, std::uint64_t>, Event> events_;

  broker::Config config_;
  std::unique_ptr<broker::Core> broker_;
  // The broker's key gate and routing-id bindings (open, taking everything, without kKeys).
  std::unique_ptr<broker::Admission> admission_;
  int next_connection_ = 0;
  std::map<std::string, int> stolen_;  // routing id -> the impostor whose connection has it
  // Jobs whose DONE the broker took, by the low 24 bits of their id (a TASK's inputs name
  // them): from then on no TASK of theirs may be sent (invariant 15, issue 26 item 7).
  std::set<std::uint64_t> done_jobs_;
  bool revoked_ = false;  // the intruders' keys were taken out of the lists
  // The world's truth for invariant 11: each routing id's user and when the broker last took
  // a message under it (a binding lives kBindFor from there), for the broker's instance.
  std::map<std::string, std::pair<std::string, Us>> bound_;
  std::uint64_t broker_tick_gen_ = 0;
  bool scale_tick_pending_ = false;  // the scale world's next BrokerTick is scheduled
  Us broker_disturbed_at_ = 0;
  std::vector<Peer> peers_;
  std::map<std::string, int> by_id_;  // routing id -> peer
  std::vector<int> workers_, clients_;
  Us calm_at_ = 0;  // when the last fault's effect ends
  Us all_ended_at_ = -1;
  RunReport report_;
  std::uint64_t next_job_id_ = 1;
  // broker/connections.cpp's view: the connection each routing id was last heard on, and the
  // ids whose connection closed since the last flush (server.cpp hands them to the core).
  std::map<std::string, std::uint64_t> where_;
  std::vector<std::string> lost_;
  std::map<std::pair<std::string, std::uint64_t>, std::vector<Us>> cancels_;  // invariant 10
  std::map<std::int64_t, ItemRun> runs_;  // by item (x), for the time-limit check
  // Added to kJobBound: a hung item holds a worker for its chunk's limit (a chunk of n items
  // runs n times the limit before it is split, docs/protocol.md §10.1), and with few workers
  // every job waits for that. The sum of (items + 1) x limit over the jobs with one.
  Us hang_allowance_ = 0;
  // Issue 25: the broker's generation (each start), and the items running at the last restart.
  std::uint64_t broker_generation_ = 1;
  std::map<std::int64_t, std::vector<KeptRun>> kept_;
  Us scale_allowance_ = 0;             // added to kJobBound in the scale world
  std::uint64_t scale_next_item_ = 0;  // a scale world's items so far, over all its jobs
  // A pair (--pair): the current broker's HaCore, the other's fields, the HA link.
  std::unique_ptr<broker::ha::HaCore> ha_;
  int current_ = 0;
  BrokerSlot slots_[2];
  Random rng25p_{0};  // the pair's choices (a fifth stream)
  Us ha_cut_until_ = 0;
  Us last_ha_send_[2] = {0, 0};
  Us ha_cut_since_ = -1;  // the HA link's last cut began then
  Us last_turn_ = -1;     // a client or worker last spoke to a broker that was not active
  std::uint64_t takeovers_seen_ = 0;
};

}  // namespace seppo::sim::detail
