// The broker's whole scheduling logic, with no sockets and no clock of its own: feed it messages
// and times, drain its outbox. That makes every rule (dispatch, credits, heartbeats, retries,
// expiry, duplicates) testable deterministically with a fake clock; broker/server.cpp is the
// thin socket loop around it.
//
// State at a glance (compare mdbroker.c's services, workers, waiting):
//   workers_   routing id -> Worker: functions, capacity, tasks it holds, last heard
//   services_  function   -> Service: providers, jobs with queued tasks (round robin)
//   jobs_      (client, job id) -> Job: its queue, its chunks not yet delivered
//   tasks_     task id    -> Task: payload, attempts, and which worker holds it, so a lost worker's
//              tasks are never forgotten
//   clients_   routing id -> Client: its jobs and when it was last heard
#pragma once

#include <array>
#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "broker/fair_share.hpp"
#include "broker/id_map.hpp"
#include "broker/provider_index.hpp"
#include "broker/stable_id_map.hpp"
#include "broker/stats.hpp"
#include "common/log.hpp"
#include "protocol/bytes.hpp"
#include "protocol/codes.hpp"
#include "protocol/core_io.hpp"
#include "protocol/wire.hpp"

namespace seppo::broker {

using Clock = std::chrono::steady_clock;
using TimePoint = Clock::time_point;
using Duration = Clock::duration;
using PeerId = std::string;  // ZeroMQ routing id, as bytes

struct Config {
  std::chrono::milliseconds heartbeat{1000};
  std::uint32_t liveness = 3;         // heartbeats missed before a peer is presumed dead
  std::uint32_t max_attempts = 3;     // runs of a task whose worker died before it is reported lost
  std::uint32_t max_capacity = 1024;  // cap on a worker's announced capacity
  std::uint32_t max_chunk_items = 1u << 20;       // items one SUBMIT may carry
  std::uint64_t max_client_bytes = 512ull << 20;  // payload bytes one client may have queued
  // A function whose last worker left less than this ago is still waited for (an outage, a
  // rolling upgrade); only a function no worker served within it fails after the job's wait.
  Duration worker_grace = std::chrono::seconds(60);
  // The socket's ZMQ_MAXMSGSIZE, announced in ALIVE so that peers refuse larger messages
  // themselves (ZeroMQ would drop the connection); 0: not announced.
  std::uint64_t max_message_bytes = 0;
  // Time limit per item: the default for jobs that set none, and a cap for those that do.
  // 0: none (docs/protocol.md §10.1).
  std::chrono::milliseconds task_timeout{0};
  // The build version STATUS reports as `version` (issue 24: mixed versions in a cluster are
  // visible); empty: not reported.
  std::string version;
};

// What a client's chunk and job cost the broker beyond their payload bytes (records, map
// nodes, the task header): counted against --max-client-bytes so that a million tiny chunks
// cannot grow the broker unbounded.
inline constexpr std::uint64_t kChunkOverhead = 256;
inline constexpr std::uint64_t kJobOverhead = 1024;

// What a peer's key allows it to send (docs/protocol.md §14). The socket loop learns it from
// the CurveZMQ handshake; without CURVE every peer is Any and may send everything.
enum class Role { Any, Worker, Client };
const char* role_name(Role role);

// What the core sends (protocol/core_io.hpp): its header in place when short, so no allocation
// per TASK or DELIVER; a TASK names its task id, reported back by on_delivery if it never left.
using Outgoing = wire::Outgoing;

class Core {
 public:
  // Where the core's lines go. None by default: the core writes nowhere of its own (the
  // broker's program gives it log::write, tests and the simulator what they keep).
  using LogSink = std::function<void(log::Level, const std::string&)>;

  Core(Config config, std::uint64_t instance, LogSink log = {});

  // Journal fields of a line about a job or a worker (issue 24): SEPPO_JOB ("client/job"),
  // SEPPO_WORKER, SEPPO_FUNCTION; empty ones are left out.
  struct LogFields {
    std::string job, worker, function;
  };
  using FieldsLogSink = std::function<void(log::Level, const std::string&, const LogFields&)>;
  // Such lines go here, with their fields, when set; otherwise to the LogSink.
  void set_fields_log(FieldsLogSink sink) { fields_log_ = std::move(sink); }

  // One message from a peer: its header frame and, for types that carry one, its payload.
  // Malformed input is answered with ERROR (or dropped) and logged; it never throws.
  // `role` is what the sender's key allows, `key` names that key in logs: a message its role
  // may not send is answered with ERROR forbidden and changes nothing.
  void on_message(const PeerId& from, const void* header, std::size_t header_size, Bytes* payload,
                  TimePoint now, Role role = Role::Any, std::string_view key = {});
  // A frame count the protocol does not allow (the socket loop sees the frames, not the core).
  void on_malformed(const PeerId& from, const std::string& why);
  // Expires silent workers and clients, fails jobs nobody can run. Call by next_deadline().
  void on_tick(TimePoint now);
  // What the socket loop could not deliver (protocol/core_io.hpp): a report with
  // `disconnected` is on_disconnected, one without on_send_failed. broker/delivery.hpp's
  // flush() makes the reports; tests may call the two below directly.
  void on_delivery(const wire::DeliveryReport& report, TimePoint now);
  // The socket loop could not send to this peer (ROUTER_MANDATORY: gone, or at its HWM).
  // `unsent_tasks` are the TASKs to it that failed: a worker never received them, so the task
  // it was running is charged an attempt only if its TASK was not among them (§10).
  void on_send_failed(const PeerId& peer, TimePoint now,
                      const std::vector<std::uint64_t>& unsent_tasks = {});
  // The socket loop saw this peer's connection close (a worker process that died): a worker is
  // presumed lost at once instead of after heartbeat x liveness (docs/protocol.md §8).
  // `unsent_tasks` are TASKs to it the loop held back because the close was already known: as
  // with on_send_failed, the worker never received them.
  void on_disconnected(const PeerId& peer, TimePoint now,
                       const std::vector<std::uint64_t>& unsent_tasks = {});
  // A worker whose key reloaded lists no longer grant (broker/admission.hpp): forgotten at
  // once, its tasks requeued without an attempt (it did not fail them), instead of being sent
  // TASKs whose answers the key gate drops until it is presumed dead. True when it was a
  // registered worker (a peer whose key stays a client's is left alone).
  bool on_revoked(const PeerId& peer, TimePoint now);
  // Says BYE to every worker and client; the caller then flushes the outbox and exits.
  void shutdown();

  TimePoint next_deadline(TimePoint now) const;
  // Moves what the core queued, in order, into `out` (whose old contents are dropped): the core
  // keeps `out`'s former buffer, so a caller that hands back an emptied vector lends its
  // capacity to the next batch (no reallocation per batch).
  // TASKs queued for a worker that speaks "batch" leave as TASKS (coalesce_tasks(), B58).
  // DELIVERs queued for a client that speaks "batch" leave as DELIVERS (coalesce_delivers(), B59).
  void take_outbox(std::vector<Outgoing>& out) {
    if (task_notes_.size() > 1 || deliver_notes_.size() > 1) coalesce();
    task_notes_.clear();
    deliver_notes_.clear();
    out.clear();
    out.swap(outbox_);
  }
  bool outbox_empty() const { return outbox_.empty(); }
  std::size_t outbox_size() const { return outbox_.size(); }
  // The queued messages, for checks that look before taking (fuzz/fuzz_broker.cpp).
  const std::vector<Outgoing>& queued() const { return outbox_; }

  // Introspection, for status replies and tests.
  std::size_t worker_count() const { return workers_.size(); }
  std::size_t job_count() const { return jobs_.size(); }
  std::size_t task_count() const { return tasks_.size(); }
  std::size_t queued_count() const;
  std::size_t inflight_count(const PeerId& worker) const;
  std::size_t client_count() const { return clients_.size(); }
  // Payload bytes of this client's tasks the broker holds (limited by max_client_bytes).
  std::uint64_t queued_bytes(const PeerId& client) const {
    auto c = clients_.find(client);
    return c == clients_.end() ? 0 : c->second.queued_bytes;
  }
  std::string status_payload(TimePoint now) const;  // msgpack map, see docs/protocol.md
  // What a /metrics scrape reads of that map (seppo-broker --http): the same shape without the
  // task stream, the tasks each worker holds, and the fields /metrics does not show.
  std::string metrics_payload(TimePoint now) const;
  // What operators see (docs/operating.md): counters, and the task stream when recording.
  Stats& stats() { return stats_; }
  const Stats& stats() const { return stats_; }
  // Names the sender of the message being handled (a key's file name, "uid:1000"): asked once
  // per client, when its first job starts, and shown in STATUS as the job's owner.
  void set_owner_source(std::function<std::string()> source) { owner_source_ = std::move(source); }
  std::uint64_t instance() const { return instance_; }
  // What it was made with: the socket loop follows its heartbeat and liveness (ZMTP heartbeats,
  // how long a routing id stays bound), so they are set in one place.
  const Config& config() const { return config_; }
  // The adoption window (§9.1) is still open: kept tasks listed now may yet be adopted.
  bool adoption_open() const { return window_open_; }
  // A broker of a pair that became active (§15.1) opens a new adoption window from `now`.
  void reopen_adoption(TimePoint now);
  // A broker of a pair: its role, state and its peer's, shown in STATUS as `ha` (§15.3).
  void set_pair_state(std::string role, std::string state, std::string peer) {
    pair_state_ = {std::move(role), std::move(state), std::move(peer)};
  }
  // Checks every dispatch's choice against a scan over every provider, the rule the provider
  // indexes stand in for (the simulator's seeds and the unit tests turn it on; O(workers)).
  // It also keeps every service's index, however few its providers, so that the seeds' small
  // worlds check the index (without it a service of few providers is chosen from by the scan).
  void set_self_check(bool on) {
    self_check_ = on;
    index_from_ = on ? 0 : kIndexFrom;
  }

 private:
  struct JobKey {
    PeerId client;
    std::uint64_t id;
    bool operator==(const JobKey& o) const { return id == o.id && client == o.client; }
  };
  struct JobKeyHash {
    std::size_t operator()(const JobKey& k) const {
      return std::hash<std::string>()(k.client) ^ (k.id * 0x9e3779b97f4a7c15ull);
    }
  };
  struct Service;
  static constexpr std::size_t kNotDue = ~std::size_t{0};
  struct Worker {
    std::string name, host;
    std::string version;  // its build version (READY, §4.1); empty from an older worker
    std::int64_t pid = 0;
    std::uint32_t capacity = 1;
    std::vector<std::string> functions;
    // services_ entries of `functions`, same order: they live while this worker provides them.
    std::vector<Service*> services;
    // Its rank in each of `services`, same order: its place in that service's `providers`.
    std::vector<std::uint32_t> ranks;
    // Task ids sent and not yet answered, in the order sent. Workers run tasks in that order,
    // so the first is the one running: only it can have killed the worker.
    std::deque<std::uint64_t> inflight;
    // A suspect task (one that was running when a worker died) runs alone, so that if this
    // worker dies too the blame is certain; nothing else is sent here until it answers.
    std::uint64_t isolating = 0;
    // A suspect of this service waits for this worker (B50): it gets no other task until it holds
    // nothing, then the suspect. Set and cleared with Service::drain, by reserve()/unreserve().
    Service* drained_for = nullptr;
    TimePoint last_heard{};
    TimePoint joined{};
    // It sent something after its READY, so it is receiving: its death can be blamed on a task.
    bool spoken = false;
    void heard(TimePoint now) {
      last_heard = now;
      spoken = true;
    }
    // Held tasks its last listing HEARTBEAT left out, a liveness after they were sent: a second
    // such HEARTBEAT shows them lost (§4.8).
    std::unordered_set<std::uint64_t> unlisted;
    // Listed ids it holds that we do not count there, and when we last sent CANCEL for each:
    // CANCEL goes once per heartbeat_ms x liveness while it lists one, not at every heartbeat
    // (a task that started before its CANCEL arrived runs on, listed, §4.16).
    std::unordered_map<std::uint64_t, TimePoint> cancelled_listed;
    // When the first task of `inflight` became the first: the clock of the time limit (§10.1).
    TimePoint head_since{};
    std::uint64_t tasks_done = 0;
    // It announced "adopt" (READY's features, §13.1): its TASKs carry their job tag and first.
    bool adopts = false;
    // It announced "batch" (§4.17): several TASKs queued for it at once leave as one TASKS.
    bool batches = false;
    // Tasks it kept from a broker it lost, in its order (READY's and HEARTBEAT's `held`):
    // adopted ones go into `inflight` in this order. `pending`: how many wait in pending_ for
    // their client's resubmission; it gets no new task meanwhile (it runs those first).
    std::vector<std::uint64_t> listed;
    std::size_t pending = 0;
    // Kept tasks we told it to drop, and when: once per heartbeat_ms x liveness while listed.
    std::unordered_map<std::uint64_t, TimePoint> cancelled_kept;
    // Its place in its services' provider indexes (dispatch.cpp, reindex()): its key in
    // workers_, and the state it is indexed under.
    const PeerId* id = nullptr;
    bool indexed_open = false, indexed_idle = false;
    std::uint32_t indexed_used = 0, indexed_free = 0;
    // Its place in reindex_due_, or kNotDue: removed in O(1) when the worker goes.
    std::size_t reindex_at = kNotDue;
  };
  struct Task {
    JobKey job;
    std::uint64_t chunk_first = 0;  // the SUBMIT this task came from (tasks split on requeue)
    std::uint64_t first = 0;
    std::uint32_t count = 0;
    Bytes payload;
    std::uint32_t attempts = 0;  // runs started whose worker was then lost
    // Its worker was lost before it spoke after READY: maybe never received, so no attempt.
    bool unproven_loss = false;
    // Runs alone next, so that a worker dying under it is certainly its doing.
    bool suspect() const { return attempts > 0 || unproven_loss; }
    TimePoint sent{};  // when its TASK last left: a worker not holding it after expiry lost it
    PeerId holder;     // the worker running it; empty while queued
    std::uint64_t charged = 0;  // bytes counted against the client's limit
    std::uint64_t tag = 0;      // its job's wire::job_tag: with `first`, outlives the broker
  };
  struct Job {
    std::string function;
    // Its services_ entry, which lives while a job counts in its `jobs`: no lookup by name per
    // task.
    Service* service = nullptr;
    std::uint32_t wait_ms = 0;
    std::deque<std::uint64_t> queue;            // task ids, next to run first
    IdMap<std::uint32_t, Keys::Theirs> chunks;  // chunk first -> items not delivered
    // Chunks completed by a DELIVER or FAILED the client may not have read yet, by seq: a
    // heartbeat listing one of these as open is not a loss, just a message in flight.
    std::uint64_t next_seq = 1;
    std::deque<std::pair<std::uint64_t, std::uint64_t>> unseen;  // (seq, chunk first)
    // Per chunk first in `unseen`: how many times it is there, and when it was last answered (an
    // answer is "on its way" only for a liveness, since one sent on a connection that then broke,
    // unnoticed by the ROUTER, never arrives). One record, one node per chunk (issue 28).
    struct Answered {
      std::uint32_t unseen = 0;
      TimePoint at{};
    };
    IdMap<Answered, Keys::Theirs> answered;
    // When the client last acknowledged an answer: one reading a long backlog slowly is not
    // losing answers, so the liveness counts from here too.
    TimePoint read_at{};
    std::uint64_t items_delivered = 0;
    std::uint64_t items_failed = 0;  // of items_delivered: FAILED, or failed by the function
    // DELIVERs (seq, bytes) handed to the socket and not yet acknowledged by the client's
    // `seen`: they sit in ZeroMQ's send queue, whose high-water mark counts messages.
    std::deque<std::pair<std::uint64_t, std::uint64_t>> unread;
    IdSet tasks;  // every task of the job, queued or running
    bool needs_resync = false;
    // Resubmitted after this broker started (a RESYNC for it during the adoption window): its
    // tasks wait for the window's end unless a worker that kept them adopts them (§9.1).
    bool resuming = false;
    std::uint64_t tag = 0;  // wire::job_tag(client, id)
    TimePoint started{};
    std::uint32_t item_timeout_ms = 0;  // the client's limit per item (SUBMIT), 0 for none
  };
  // A worker in a service's provider list, and which of its `services` that service is.
  struct Provider {
    Worker* worker = nullptr;  // null: it left (the list is compacted when those outnumber)
    std::uint32_t slot = 0;
  };
  struct Service {
    // Its providers in order of joining, with a hole where one left: a worker leaves each of
    // its services in O(1), not by a scan and an erase of the list (20,000 workers leaving at
    // once took a second). A provider's place here is its rank in `index`.
    std::vector<Provider> providers;
    std::size_t provider_count = 0;  // those not left
    std::deque<JobKey> ready;        // jobs with queued tasks, served round robin
    std::size_t jobs = 0;            // jobs for this function, queued or not
    TimePoint no_provider_since{};
    // The provider reserved for the queued suspect `drain_for` (B50): while every provider keeps
    // its credit filled none ever holds nothing, so one stops getting work and drains for it.
    Worker* drain = nullptr;
    std::uint64_t drain_for = 0;
    // The providers dispatch() chooses from, so that it does not visit every provider per task
    // (issue 28: 10,000 workers): open, those not isolating a task that have free credit, in
    // order of choice; idle, those not isolating that hold nothing and have spoken, by order
    // of joining (the first is the one a suspect goes to). Kept only while `indexed`: from
    // index_from_ providers on, until they fall below half that. With a few providers the scan
    // of them costs less than keeping the index (a class per load and credit, which a few
    // workers of changing credit rarely share: each move made a class and emptied one).
    ProviderIndex index;
    bool indexed = false;
  };
  struct Client {
    TimePoint last_heard{};
    std::vector<std::uint64_t> jobs;
    // jobs_ entries of `jobs`, in the same order: charge_share() reads them per task, for every
    // client with tasks queued, without looking each up (issue 28).
    std::vector<Job*> job_records;
    std::uint64_t queued_bytes = 0;
    std::uint64_t unread_bytes = 0;  // sum of its jobs' unread DELIVER bytes
    std::uint64_t queued_tasks = 0;  // tasks of its jobs waiting in their queues
    ShareTag share;
    std::string owner;         // from owner_source_, for STATUS
    bool owner_asked = false;  // owner_source_ asked once, whatever it said (issue 28: per SUBMIT)
    bool batches = false;      // its last SUBMIT named "batch": it takes DELIVERS (B59)
  };

  std::string snapshot(TimePoint now, bool full) const;
  void handle(const PeerId& from, wire::Message&& message, Bytes* payload, TimePoint now);
  bool permitted(const PeerId& from, const wire::Message& message, Role role, std::string_view key);
  void on_ready(const PeerId& from, wire::Ready&& m, TimePoint now);
  void on_result(const PeerId& from, const wire::Result& m, Bytes* payload, TimePoint now);
  void on_results(const PeerId& from, const wire::Results& m, Bytes* payload, TimePoint now);
  // Merges the TASKs in the outbox to each worker that speaks "batch" into TASKS (B58), the
  // DELIVERs to each client that does into DELIVERS (B59); `merged` marks what they took in.
  void coalesce();
  void coalesce_tasks(std::vector<bool>& merged);
  void coalesce_delivers(std::vector<bool>& merged);
  // A SUBMIT, or one chunk of a SUBMITS with its message's fields: views, so that a SUBMITS
  // copies no name or feature list per chunk (issue 28).
  struct SubmitView {
    std::uint64_t job_id = 0;
    std::string_view function;
    std::uint64_t first = 0;
    std::uint32_t count = 0;
    std::uint32_t wait_ms = 0;
    std::uint32_t item_timeout_ms = 0;
    bool batches = false;  // it names "batch" (B59)
  };
  void on_submit(const PeerId& from, const SubmitView& m, Bytes* payload, TimePoint now);
  void on_submits(const PeerId& from, const wire::Submits& m, Bytes* payload, TimePoint now);
  void on_heartbeat(const PeerId& from, const wire::Heartbeat& m, TimePoint now);
  void on_done(const PeerId& from, std::uint64_t job_id, TimePoint now);

  // Notes that a worker's entries in its services' provider indexes may be out of date: called
  // wherever its tasks held, credit, isolation or first words change. The indexes are brought
  // up to date (index_pending()) only where they are read, at dispatch(): a task answered and
  // the next sent to the same worker leave it where it was, and cost no index update (issue 28).
  void reindex(Worker& worker) {
    if (worker.reindex_at == kNotDue) {
      worker.reindex_at = reindex_due_.size();
      reindex_due_.push_back(&worker);
    }
  }
  void index_pending();
  void index_now(Worker& worker);
  void unindex(Worker& worker);
  // A worker's entries in one service's index, by the state it is indexed under: taken out
  // (add false) or put back at `rank`.
  static void index_entries(Service& service, const Worker& worker, std::uint32_t rank, bool add);
  // Closes the holes in `service.providers` (ranks change, order kept) once they outnumber the
  // providers: amortized O(1) per worker that left.
  static void compact(Service& service);
  // Every provider's entries in `service.index`, taken out or put back at their ranks.
  static void index_all(Service& service, bool add);
  // Starts or ends keeping `service.index` (Service::indexed).
  static void set_indexed(Service& service, bool on);
  // The rule's choice by a scan over every provider in order of joining: what dispatch() uses
  // for a service not indexed, and what the self-check compares the index's choice with.
  static void scan_choice(const Service& service, Worker*& best, Worker*& idle);
  // Ends the reservations of providers of `service` that hold nothing while their suspect
  // cannot go now (B50), as a dispatch finds them.
  void release_drained(Service& service);
  // With self_check_: the providers the scan over every provider would choose.
  void check_choice(const Service& service, const Worker* best, const Worker* idle) const;
  void dispatch(const std::string& function);
  void dispatch(Service& service, const std::string& function);
  void dispatch_worker(const PeerId& id);
  // A suspect of `service` is queued and no provider holds nothing (B50): unless a live
  // reservation exists, reserve the spoken provider holding the fewest tasks.
  void reserve(Service& service, std::uint64_t suspect);
  void unreserve(Service& service);
  // The reserved-for suspect is still queued: it exists and nobody holds it.
  bool reservation_live(const Service& service) const;
  // And it could be sent now: first in its job's queue, its client not backlogged.
  bool reservation_waits(const Service& service) const;
  // A suspect of `service` was sent: the reservation made for it, if any, is over.
  void took_suspect(Service& service, std::uint64_t task_id) {
    if (service.drain != nullptr && service.drain_for == task_id) unreserve(service);
  }
  bool delivery_backlogged(const PeerId& client) const;
  void send_task(const PeerId& worker_id, Worker& worker, std::uint64_t task_id, Task& task,
                 const std::string& function);
  void acknowledge(const JobKey& key, Job& job, std::uint64_t seen);
  bool in_grace(const std::string& function, TimePoint now) const;
  std::uint64_t new_task(Job& job);
  void erase_task(std::uint64_t task_id);
  // The same when the caller holds the task's job already (nullptr: it is gone): one look-up
  // of the job's key fewer per answered task.
  void erase_task(std::uint64_t task_id, Job* job);
  void enqueue(std::uint64_t task_id, Task& task, Job& job, bool front);
  void remove_worker(const PeerId& id, bool count_attempt, const std::string& why, TimePoint now,
                     bool redispatch = true);
  // Whether the task `worker` was running reached it: its TASK is not among `unsent`.
  static bool received_running(const Worker& worker, const std::vector<std::uint64_t>& unsent);
  void requeue(std::uint64_t task_id, bool count_attempt);
  void fail_task(std::uint64_t task_id, wire::Code why, const std::string& message);
  void remove_job(const JobKey& key, const std::string& why);
  void remove_client(const PeerId& id, const std::string& why);
  void chunk_finished(Job& job, const Task& task, std::uint64_t seq);
  void charge(Task& task, std::uint64_t bytes);
  void charge_share(const PeerId& client_id);
  void dequeued(const PeerId& client_id, std::uint64_t tasks);
  void release(Task& task);

  // Adopting the work workers kept from a broker they lost (adopt.cpp, docs/protocol.md §9.1).
  using ItemKey = std::pair<std::uint64_t, std::uint64_t>;  // (job tag, first item)
  struct Pending {
    wire::HeldTask task;
    PeerId worker;
  };
  struct Stashed {
    wire::HeldTask task;
    std::string worker;  // its name, for the DELIVER
    std::uint64_t elapsed_us = 0;
    std::uint32_t items_failed = 0;
    Bytes payload;
  };
  void begin(TimePoint now);
  bool held_back(const Job& job) const { return job.resuming && window_open_; }
  void take_listing(const PeerId& id, Worker& worker, const std::vector<std::uint64_t>& flat,
                    bool complete);
  void adopt(const PeerId& id, Worker& worker, std::uint64_t task_id);
  void adopt_chunk(Job& job, std::uint64_t task_id);
  bool stash_result(const PeerId& from, Worker& worker, const wire::Result& m, Bytes* payload);
  void deliver(Job& job, Task& task, const std::string& worker, std::uint64_t elapsed_us,
               std::uint32_t items_failed, Bytes payload);
  std::uint64_t rekey(std::uint64_t task_id, std::uint64_t new_id);
  void forget_pending(const PeerId& worker);
  void close_window();

  // Time limits, cancel and returned tasks (task_timer.cpp, docs/protocol.md §10.1).
  void on_return(const PeerId& from, const wire::Return& m, TimePoint now);
  void check_timeouts(TimePoint now);
  void time_out(const PeerId& worker_id, Worker& worker, std::uint64_t task_id);
  void cancel_held(const JobKey& key);
  Duration time_limit(const Job& job) const;
  // Replaces a task by single-item tasks at the front of its job's queue (same attempts);
  // fails it with bad_request if its payload is not an array of `count` items.
  void split(std::uint64_t task_id, Job& job);

  void send(const PeerId& to, const wire::Message& message);
  void send(const PeerId& to, const wire::Message& message, Bytes payload);
  void log(log::Level level, const std::string& text) const;
  void log(log::Level level, const std::string& text, const LogFields& fields) const;
  Duration expiry() const { return config_.heartbeat * config_.liveness; }
  wire::Alive alive() const;

  Config config_;
  std::uint64_t instance_;
  LogSink log_;
  FieldsLogSink fields_log_;
  std::uint64_t next_task_id_ = 1;
  std::unordered_map<PeerId, Worker> workers_;
  std::map<std::string, Service> services_;
  std::unordered_map<JobKey, Job, JobKeyHash> jobs_;
  StableIdMap<Task> tasks_;
  std::unordered_map<PeerId, Client> clients_;
  std::vector<Outgoing> outbox_;
  // The TASKs in outbox_ that may join a TASKS (to a worker that speaks "batch", a payload
  // within wire::kMaxBatchBytes), in outbox order.
  struct TaskNote {
    std::size_t index = 0;  // in outbox_ (its function is read from its header: a worker's
                            // names may be gone by the time the outbox is taken)
    std::uint32_t count = 0;
    std::uint64_t job = 0, first = 0;
  };
  std::vector<TaskNote> task_notes_;
  // The DELIVERs in outbox_ that may join a DELIVERS (to a client that speaks "batch", a payload
  // within wire::kMaxBatchBytes), in outbox order; the worker's name is read from the header.
  struct DeliverNote {
    std::size_t index = 0;  // in outbox_
    std::uint64_t job_id = 0, first = 0;
    std::uint32_t count = 0;
    std::uint64_t elapsed_us = 0, seq = 0;
  };
  std::vector<DeliverNote> deliver_notes_;
  bool shutting_down_ = false;
  FairShare fair_;
  // Functions whose last provider left, and when: waited for during config_.worker_grace.
  std::unordered_map<std::string, TimePoint> unserved_since_;
  TimePoint now_{};  // of the event being handled: for code paths that take no time argument
  Stats stats_;
  std::function<std::string()> owner_source_;
  // Adoption (§9.1): open for two heartbeats (at least 1 s) from the first event this core handles.
  bool started_ = false;
  bool window_open_ = true;
  std::optional<std::array<std::string, 3>> pair_state_;  // role, state, peer (§15.3)
  TimePoint adopt_until_{};
  std::map<ItemKey, Pending> pending_;  // listed kept tasks waiting for their resubmission
  std::map<ItemKey, Stashed> stashed_;  // their results, when they finished first
  std::uint64_t stashed_bytes_ = 0;
  std::unordered_map<std::uint64_t, JobKey> tags_;   // job tag -> job
  std::unordered_set<JobKey, JobKeyHash> resynced_;  // unknown jobs answered RESYNC, in the window
  std::uint64_t adopted_ = 0;         // tasks adopted, for the log line closing the window
  std::vector<Service*> draining_;    // services with a provider kept for a suspect (drain set)
  std::vector<Worker*> reindex_due_;  // workers whose provider index entries may be stale
  bool self_check_ = false;
  static constexpr std::size_t kIndexFrom = 32;
  std::size_t index_from_ = kIndexFrom;  // providers from which a service keeps its index
};

// Renders a routing id for logs: printable ids as text, others as hex.
std::string printable_id(const PeerId& id);
// What STATUS shows for a client: 8 hex digits of a hash of its routing id. Never the id itself:
// with ROUTER_HANDOVER, knowing a client's id is enough to take over its results.
std::string client_label(const PeerId& id);

}  // namespace seppo::broker
