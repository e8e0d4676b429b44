// The worker's side of the protocol (docs/protocol.md §8, §9), with no socket, thread or clock
// of its own (docs/design-worker.md). It keeps the contract of protocol/core_io.hpp: feed it
// the broker's frames as received, the executor's finished tasks and the time; carry_out()
// then hands the executor its tasks and the socket loop its messages, in the one order that is
// safe. worker/session.cpp is the thin socket loop around it, sim/workers.cpp the simulator's,
// tests/unit/worker_core_test.cpp drives it with a fake clock. Built into seppo_worker_rules,
// which has no ZeroMQ, thread or executor (worker/meson.build refuses zmq.h there).
#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "common/log.hpp"
#include "protocol/bytes.hpp"
#include "protocol/core_io.hpp"
#include "protocol/wire.hpp"
#include "worker/credit.hpp"

namespace seppo::worker {

struct SessionCoreOptions {
  // The broker's, for log lines; or a comma-separated list of a pair's endpoints (§15.4): the
  // core says which to use (endpoint_index()) and moves along the list (W40, W41).
  std::string endpoint;
  std::uint32_t prefetch = 0;                 // tasks held at once; 0 adapts it (credit.hpp)
  std::chrono::milliseconds heartbeat{1000};  // until the broker announces its own
  std::uint32_t liveness = 3;
  std::chrono::milliseconds max_reconnect_delay{4000};
  // Leave (BYE "worker idle") after holding no task for this long; 0: never.
  std::chrono::milliseconds exit_when_idle{0};
  // Stop when the broker says BYE instead of waiting for it to come back.
  bool exit_on_broker_bye = false;
  // Tasks waiting behind one that has run this long go back to the broker (RETURN), so an
  // idle worker can take them (docs/protocol.md §4.16, W21).
  std::chrono::milliseconds return_after{100};
  // A stopping worker whose supervisor is gone (on_parent_gone) gives its running task this
  // long, then leaves it unfinished: no one else would ever end a function that hangs.
  std::chrono::milliseconds orphan_grace{5000};
  // Results of tasks kept from a broker that went away (docs/protocol.md §9.1, "adopt"), held
  // until the next broker takes them: at most this many payload bytes in all. A result beyond
  // is dropped (logged), and its items run again when their client resubmits them.
  std::uint64_t keep_result_bytes = 64ull << 20;
  // Announce the feature "batch" (§4.17, §4.18): the broker may then send several tasks in one
  // TASKS, and results finished together leave in one RESULTS. Off: one task per message, as
  // a worker that predates it (seppo-worker --no-batch).
  bool batch = true;
};

class SessionCore {
 public:
  using Clock = std::chrono::steady_clock;
  using TimePoint = Clock::time_point;
  using LogSink = std::function<void(log::Level, const std::string&)>;

  // A task for the executor: it runs these one at a time in order and reports each back with
  // on_finished, in the same order, with the same sequence number.
  struct Start {
    std::uint64_t sequence = 0;
    std::uint32_t function_index = 0;  // into the functions given to the constructor
    Bytes payload;
  };
  enum class Outcome { Ok, Failed, Skipped };  // Failed: output is one message for every item
  // Stopped: BYE was queued, or the broker's BYE ends it; Forbidden: the broker refuses this
  // key as a worker's; Abandoned: the process must end at once, sending nothing more (a
  // cancelled task that cannot be stopped, or an orphan's task past orphan_grace): what it held
  // goes back to the broker when the connection closes.
  enum class Ending { Running, Stopped, Forbidden, Abandoned };

  // What carries out the core's decisions: worker/executor.cpp's thread and the socket in a
  // process, virtual ones in the simulator and the tests.
  class Effects {
   public:
    // Start over on a fresh socket with the same routing id, before anything more is sent.
    virtual void reconnect() = 0;
    // Tasks with a sequence up to this that have not started are skipped in their turn.
    virtual void skip_through(std::uint64_t sequence) = 0;
    // Queue a task: run one at a time, in order, each reported back with on_finished.
    virtual void start(Start start) = 0;
    // The broker no longer wants this task: one not started is skipped in its turn. With
    // `abandon`, a running one is stopped if its function can be; returns true when it runs and
    // cannot be stopped inside this process (which must then end).
    virtual bool cancel(std::uint64_t sequence, bool abandon) = 0;

   protected:
    ~Effects() = default;
  };

  // `ready` names this worker (name, host, pid); its functions are `functions`, its capacity
  // the credit policy's. Queues the first connection and READY. Log lines go to `log` (the
  // process passes log::write; the simulator its trace).
  SessionCore(SessionCoreOptions options, wire::Ready ready, std::vector<std::string> functions,
              TimePoint now, LogSink log);

  // A message from the broker (`from` is empty: a worker has one peer): its header frame as
  // received, and its payload frame if it had one (the core may move from it). A header that
  // does not decode is logged and dropped.
  void on_message(const wire::PeerId& from, const void* header, std::size_t header_size,
                  Bytes* payload, TimePoint now);
  // The executor finished (or skipped) the task started with this sequence number.
  void on_finished(std::uint64_t sequence, Outcome outcome, std::uint64_t elapsed_us, Bytes output,
                   TimePoint now);
  // SIGINT or SIGTERM: finish the running task, hand back the rest, say BYE.
  void on_stop(TimePoint now);
  // The supervisor that started this process is gone (a process's parent changed): a
  // stopping orphan leaves after orphan_grace even if its task has not finished.
  void on_parent_gone(TimePoint now);
  // Time passed: heartbeats, the broker's liveness, leaving. Call by next_deadline(now).
  void on_tick(TimePoint now);

  // The one drain, after every input: first a fresh connection if the core started over, then
  // the executor's work (tasks skipped, started, and the ones the broker cancelled, W19 to
  // W22), then the messages to send, appended to `out` in order (Outgoing::peer empty: the
  // broker). A cancelled task that cannot be stopped ends the session there (ending()
  // Abandoned): nothing more is sent, and the caller ends the process.
  void carry_out(Effects& effects, std::vector<wire::Outgoing>& out);
  // The messages alone (protocol/core_io.hpp): for a caller with no executor work pending.
  void take_outbox(std::vector<wire::Outgoing>& out);
  // Something waits for carry_out().
  bool pending() const {
    return reconnect_ || !outbox_.empty() || !starts_.empty() || !skips_.empty() ||
           !abandons_.empty() || skip_through_ != skip_through_told_;
  }
  // When on_tick wants calling next; TimePoint::min() once the session ended.
  TimePoint next_deadline(TimePoint now) const;
  Ending ending() const { return ending_; }

  // Introspection, for tests.
  std::size_t held() const { return submitted_.size(); }
  std::chrono::milliseconds heartbeat() const { return heartbeat_; }
  std::uint32_t liveness() const { return liveness_; }
  std::uint64_t instance() const { return instance_; }
  bool leaving() const { return leaving_; }
  // Which endpoint of the list the socket loop connects to (0 with one endpoint).
  std::size_t endpoint_index() const { return endpoint_; }
  // The broker's --max-message-bytes from its ALIVE (§4.9); 0 until announced.
  std::uint64_t max_message_bytes() const { return max_message_bytes_; }
  // Tasks kept from a broker that went away (running or waiting), and results of such tasks
  // held for the next broker, with their bytes (§9.1).
  std::size_t detached() const;
  // Whether the task started with this sequence number is one kept for the next broker.
  bool keeps(std::uint64_t sequence) const;
  std::size_t results_held() const { return kept_.size(); }
  std::uint64_t result_bytes_held() const { return kept_bytes_; }

 private:
  struct Submitted {
    std::uint64_t sequence = 0;
    std::uint64_t task_id = 0;
    std::uint32_t count = 0;
    std::uint64_t epoch = 0;  // connection it came on: results of an earlier one are dropped
    bool cancelled = false;   // by the broker: answered "cancelled", whatever the outcome
    bool offered = false;     // offered back with RETURN, which the broker may not understand
    bool returned = false;    // the broker took it back (its CANCEL after our RETURN): no answer
    // Its identity that outlives the broker (TASK's job and first; job 0: none sent), and
    // whether it is kept from a broker that went away, for the next one to adopt (§9.1).
    std::uint64_t job = 0;
    std::uint64_t first = 0;
    bool detached = false;
  };
  // A result of a detached task, finished while no broker that adopts was there.
  struct Kept {
    wire::HeldTask task;
    std::uint64_t elapsed_us = 0;
    std::uint32_t failed = 0;
    Bytes payload;
  };

  void connect(TimePoint now);
  void announce(TimePoint now);
  void forget_tasks();
  void drop_detached(const std::string& why);
  void hand_over_kept(TimePoint now);
  std::vector<std::uint64_t> held_listing() const;

  void on_task(const wire::Task& task, std::optional<Bytes> payload);
  void on_tasks(const wire::Tasks& tasks, Bytes* payload);
  // W31: runs of RESULTs in the outbox leave as RESULTS when the broker speaks "batch".
  void coalesce_results();
  void on_error(const wire::Error& error, TimePoint now);
  // Several endpoints (§15.4): the broker's silence after which the next one is tried (W40),
  // and the move itself (worker/failover.cpp).
  std::chrono::steady_clock::duration silence_limit() const;
  void fail_over(TimePoint now);
  void on_not_active(TimePoint now);
  void on_cancel(const wire::Cancel& cancel);
  void on_message(const wire::Message& message, Bytes* payload, TimePoint now);
  bool orphan_front() const;
  bool orphan_running(TimePoint now) const;
  void return_waiting(TimePoint now);
  bool waiting_behind() const;
  void step(TimePoint now);
  void send(wire::Message message, TimePoint now, std::optional<Bytes> payload = std::nullopt);
  void finish(Ending ending);
  void abandon_process(const std::string& why);
  std::chrono::steady_clock::duration expiry() const { return heartbeat_ * liveness_; }

  SessionCoreOptions options_;
  wire::Ready ready_;
  std::unordered_map<std::string, std::uint32_t> index_;
  LogSink log_;
  std::chrono::milliseconds heartbeat_;
  std::uint32_t liveness_;
  std::uint64_t max_message_bytes_ = 0;  // from ALIVE; 0: not announced
  CreditPolicy credit_;
  std::uint32_t announced_credit_ = 0;

  std::deque<Submitted> submitted_;
  std::uint64_t sequence_ = 0;
  std::uint64_t skip_through_ = 0;
  std::uint64_t skip_through_told_ = 0;  // to the executor, by carry_out
  std::uint64_t epoch_ = 0;
  std::uint64_t instance_ = 0;
  // The broker of this connection announced "adopt" in its ALIVE: detached results go to it.
  bool broker_adopts_ = false;
  // ... and "batch": results finished together go in one RESULTS (W31, W32).
  bool broker_batches_ = false;
  // The RESULTs in outbox_, in order: (index in outbox_, the message).
  std::vector<std::pair<std::size_t, wire::Result>> result_notes_;
  std::deque<Kept> kept_;
  std::uint64_t kept_bytes_ = 0;
  bool leaving_ = false;
  Ending ending_ = Ending::Running;

  TimePoint last_beat_{};    // last HEARTBEAT or READY: the messages the broker answers
  TimePoint last_heard_{};   // last message from the broker we understood
  TimePoint idle_since_{};   // when the worker last held nothing
  TimePoint front_since_{};  // when the first held task became first: it has run since
  TimePoint next_reconnect_{};
  std::optional<TimePoint> stopping_since_;  // on_stop
  bool parent_gone_ = false;
  std::chrono::milliseconds reconnect_delay_{0};

  bool reconnect_ = false;
  std::vector<std::string> endpoints_;  // the list (§15.4), one entry without a comma
  std::size_t endpoint_ = 0;
  std::vector<wire::Outgoing> outbox_;
  std::vector<Start> starts_;
  std::vector<std::uint64_t> skips_;
  std::vector<std::uint64_t> abandons_;
};

}  // namespace seppo::worker
