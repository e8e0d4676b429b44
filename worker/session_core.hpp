// The worker's side of the protocol (docs/protocol.md §8, §9), with no socket, thread or clock
// of its own: feed it the broker's decoded messages, the executor's finished tasks and the
// time; drain the messages to send, the tasks to start and its next deadline. worker/session.cpp
// is the thin socket loop around it; tests/unit/worker_core_test.cpp drives it with a fake clock.
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
#include "protocol/wire.hpp"
#include "worker/credit.hpp"

namespace seppo::worker {

struct SessionCoreOptions {
  std::string endpoint;                       // the broker's, for log lines only
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
};

class SessionCore {
 public:
  using Clock = std::chrono::steady_clock;
  using TimePoint = Clock::time_point;
  using LogSink = std::function<void(log::Level, const std::string&)>;

  struct Outgoing {
    wire::Message message;
    std::optional<Bytes> payload;  // TASK-like types only: RESULT here
  };
  // A task for the executor: it runs these one at a time in order and reports each back with
  // on_finished, in the same order, with the same sequence number.
  struct Start {
    std::uint64_t sequence = 0;
    std::uint32_t function_index = 0;  // into the functions given to the constructor
    Bytes payload;
  };
  enum class Outcome { Ok, Failed, Skipped };  // Failed: output is one message for every item
  enum class Ending { Running, Stopped, Forbidden };

  // `ready` names this worker (name, host, pid); its functions are `functions`, its capacity
  // the credit policy's. Queues the first connection and READY.
  SessionCore(SessionCoreOptions options, wire::Ready ready, std::vector<std::string> functions,
              TimePoint now, LogSink log = log::write);

  // A message from the broker, decoded; `payload` is its second frame, if it had one.
  void on_message(const wire::Message& message, std::optional<Bytes> payload, TimePoint now);
  // The executor finished (or skipped) the task started with this sequence number.
  void on_finished(std::uint64_t sequence, Outcome outcome, std::uint64_t elapsed_us, Bytes output,
                   TimePoint now);
  // SIGINT or SIGTERM: finish the running task, hand back the rest, say BYE.
  void on_stop(TimePoint now);
  // Time passed: heartbeats, the broker's liveness, leaving. Call by next_deadline().
  void on_tick(TimePoint now);

  // True once after the core decided to start over: close the socket, open a new one with the
  // same routing id, connect, then send the outbox (it starts with READY).
  bool take_reconnect() { return std::exchange(reconnect_, false); }
  std::vector<Outgoing>& outbox() { return outbox_; }
  std::vector<Start>& starts() { return starts_; }
  // Sequences the executor must not start (tasks the broker took back): skip, never abort.
  std::vector<std::uint64_t>& skips() { return skips_; }
  // Sequences the broker cancelled: skip them, and abandon the one running (W19, W20).
  std::vector<std::uint64_t>& abandons() { return abandons_; }
  // The executor skips tasks with a sequence up to this that have not started.
  std::uint64_t skip_through() const { return skip_through_; }
  TimePoint next_deadline() const;
  Ending ending() const { return ending_; }

  // Introspection, for tests.
  std::size_t held() const { return submitted_.size(); }
  std::chrono::milliseconds heartbeat() const { return heartbeat_; }
  std::uint32_t liveness() const { return liveness_; }
  std::uint64_t instance() const { return instance_; }
  bool leaving() const { return leaving_; }
  // The broker's --max-message-bytes from its ALIVE (§4.9); 0 until announced.
  std::uint64_t max_message_bytes() const { return max_message_bytes_; }

 private:
  struct Submitted {
    std::uint64_t sequence = 0;
    std::uint64_t task_id = 0;
    std::uint32_t count = 0;
    std::uint64_t epoch = 0;  // connection it came on: results of an earlier one are dropped
    bool cancelled = false;   // by the broker: answered "cancelled", whatever the outcome
    bool offered = false;     // offered back with RETURN, which the broker may not understand
    bool returned = false;    // the broker took it back (its CANCEL after our RETURN): no answer
  };

  void connect(TimePoint now);
  void announce(TimePoint now);
  void forget_tasks();
  void on_task(const wire::Task& task, std::optional<Bytes> payload);
  void on_error(const wire::Error& error, TimePoint now);
  void on_cancel(const wire::Cancel& cancel);
  bool orphan_front() const;
  bool orphan_running(TimePoint now) const;
  void return_waiting(TimePoint now);
  bool waiting_behind() const;
  void step(TimePoint now);
  void send(wire::Message message, TimePoint now, std::optional<Bytes> payload = std::nullopt);
  void finish(Ending ending);
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
  std::uint64_t epoch_ = 0;
  std::uint64_t instance_ = 0;
  bool leaving_ = false;
  Ending ending_ = Ending::Running;

  TimePoint last_beat_{};    // last HEARTBEAT or READY: the messages the broker answers
  TimePoint last_heard_{};   // last message from the broker we understood
  TimePoint idle_since_{};   // when the worker last held nothing
  TimePoint front_since_{};  // when the first held task became first: it has run since
  TimePoint next_reconnect_{};
  std::chrono::milliseconds reconnect_delay_{0};

  bool reconnect_ = false;
  std::vector<Outgoing> outbox_;
  std::vector<Start> starts_;
  std::vector<std::uint64_t> skips_;
  std::vector<std::uint64_t> abandons_;
};

}  // namespace seppo::worker
