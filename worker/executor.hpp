// Runs chunks on a thread of its own, so the worker's socket loop keeps heartbeating while a
// function computes for minutes. Tasks go in through a queue under a mutex (an eventfd wakes
// the thread only when it waits for one); each finished chunk goes to a callback on the
// executor's own thread, which may answer the broker itself (worker/session.cpp). There used
// to be an inproc PAIR socket between the two threads: each message over it cost several
// syscalls on both sides (its signaler's getpid, poll and read), a zmq_poll of three sockets a
// dozen more, and two wake-ups of the socket loop per task, which made the syscalls, not the
// work, most of a 10 ms task's cost on a loaded machine (issue 16, bench/PROFILE.md).
//
// A task may also run on the caller's thread (run_here) when the executor is idle: the socket
// loop then runs a lone task itself, with no hand-off and no wake-up of this thread (issue 28).
// Should it run longer than `stand_in_after`, a timer wakes this idle thread, which calls
// `stand_in` (the session runs its socket loop there until the task ends): heartbeats, CANCEL
// and signals are then handled as when the task runs here.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <mutex>
#include <optional>
#include <set>
#include <thread>
#include <vector>

#include "protocol/bytes.hpp"
#include "worker/module_loader.hpp"

namespace seppo::worker {

class Executor {
 public:
  enum class Status : unsigned char { Ok = 0, Failed = 1, Skipped = 2 };
  struct Outcome {
    std::uint64_t sequence = 0;
    Status status = Status::Failed;  // Failed: output is a message for the whole chunk
    std::uint64_t elapsed_us = 0;
    Bytes output;
    bool more_queued = false;  // another chunk waits to run right after this one
  };
  // Called on the executor's thread for each chunk finished (or skipped), in submission order,
  // with none of the executor's locks held: it may call submit() and cancel(). Not called for
  // a chunk run_here() ran: that one's outcome is run_here's.
  using Finished = std::function<void(Outcome&&)>;
  // Called on the executor's thread, with none of its locks held, when a chunk run_here()
  // started has run for `stand_in_after` and still runs; it may call submit() and cancel().
  using StandIn = std::function<void()>;

  Executor(const std::vector<Function>& functions, Finished finished, StandIn stand_in = {},
           std::chrono::microseconds stand_in_after = std::chrono::milliseconds(5));
  ~Executor();  // asks the thread to stop after its current chunk and joins it
  Executor(const Executor&) = delete;
  Executor& operator=(const Executor&) = delete;

  // Queues a chunk; the thread runs them one after another in submission order, so a stream of
  // tiny tasks needs no round trip between threads per task.
  void submit(std::uint64_t sequence, std::uint32_t function_index, Bytes payload);

  // Runs a chunk on the calling thread and returns its outcome, when nothing is queued or runs
  // (the executor's thread starts nothing meanwhile, and the chunk is cancelled, skipped and
  // abandoned as a queued one is); otherwise queues it as submit() does and returns nothing.
  // `stand_in_after`, when given, replaces the constructor's for this chunk (the caller's next
  // deadline may be nearer). A function that throws fails the chunk (execute), here as on the
  // executor's thread.
  std::optional<Outcome> run_here(
      std::uint64_t sequence, std::uint32_t function_index, Bytes payload,
      std::optional<std::chrono::microseconds> stand_in_after = std::nullopt);

  // The constructor's stand_in_after.
  std::chrono::microseconds stand_in_after() const { return stand_in_after_; }

  // Chunks with a sequence number up to this one that have not started are skipped, not run:
  // how a stopping worker hands back its queue, and a reset one forgets it.
  void skip_through(std::uint64_t sequence) { skip_through_.store(sequence); }

  // The broker no longer wants this task: one not started is skipped (reported Skipped). With
  // `abandon`, a running one is stopped if its function is interruptible; returns true when it
  // is running and cannot be stopped in this process, which must then be replaced.
  bool cancel(std::uint64_t sequence, bool abandon);

  // Set to stop the running function, for functions that watch it (Function::interruptible);
  // cleared before each task starts. One per process, like the executor thread.
  static std::atomic<bool>& abandon_flag();

 private:
  struct Queued {
    std::uint64_t sequence;
    std::uint32_t function_index;
    Bytes payload;
  };

  void run();
  // Runs or skips `task` (called with `lock` held, which it releases while the function runs).
  Outcome execute(Queued& task, std::unique_lock<std::mutex>& lock);
  void wake(int fd);

  const std::vector<Function>& functions_;
  Finished finished_;
  StandIn stand_in_;
  const std::chrono::microseconds stand_in_after_;
  std::atomic<std::uint64_t> skip_through_{0};
  int wake_fd_ = -1;           // eventfd: queued_ or stop_ changed while the thread sleeps
  int timer_fd_ = -1;          // timerfd: armed while run_here runs a chunk
  std::mutex mutex_;           // guards everything below that the thread and the socket loop share:
  std::deque<Queued> queued_;  // submitted, not started
  bool stop_ = false;          // the destructor's request
  bool sleeping_ = false;      // the thread waits in poll: write wake_fd_
  bool here_ = false;          // run_here runs a chunk: the thread starts none
  bool busy_ = false;          // the thread runs a chunk, or reports one
  std::set<std::uint64_t> cancelled_;  // not started yet, to skip
  std::uint64_t last_started_ = 0;     // sequences up to this have started (or been skipped)
  std::uint64_t running_ = 0;          // 0: nothing runs
  std::uint32_t running_function_ = 0;
  std::thread thread_;
};

}  // namespace seppo::worker
