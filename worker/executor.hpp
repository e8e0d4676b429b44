// Runs chunks on a thread of its own, so the worker's socket loop keeps heartbeating while a
// function computes for minutes. Shaped like czmq's zactor: a thread plus an inproc PAIR pipe,
// started and stopped synchronously.
#pragma once

#include <atomic>
#include <cstdint>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <zmq.hpp>

#include "worker/module_loader.hpp"

namespace seppo::worker {

class Executor {
 public:
  Executor(zmq::context_t& context, const std::vector<Function>& functions);
  ~Executor();  // asks the thread to stop after its current chunk and joins it
  Executor(const Executor&) = delete;
  Executor& operator=(const Executor&) = delete;

  // The pipe to poll for finished chunks.
  zmq::socket_t& pipe() { return pipe_; }

  // Queues a chunk; the thread runs them one after another in submission order, so a stream of
  // tiny tasks needs no round trip between threads per task.
  void submit(std::uint64_t sequence, std::uint32_t function_index, zmq::message_t&& payload);

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

  enum class Status : unsigned char { Ok = 0, Failed = 1, Skipped = 2 };
  struct Outcome {
    std::uint64_t sequence = 0;
    Status status = Status::Failed;  // Failed: output is a message for the whole chunk
    std::uint64_t elapsed_us = 0;
    zmq::message_t output;
  };
  // The next finished chunk, if one is waiting in the pipe.
  std::optional<Outcome> try_finish();

 private:
  void run(zmq::context_t& context, std::string endpoint);

  const std::vector<Function>& functions_;
  zmq::socket_t pipe_;
  std::atomic<std::uint64_t> skip_through_{0};
  std::mutex mutex_;                   // guards what cancel() and the thread share:
  std::set<std::uint64_t> cancelled_;  // not started yet, to skip
  std::uint64_t last_started_ = 0;     // sequences up to this have started (or been skipped)
  std::uint64_t running_ = 0;          // 0: nothing runs
  std::uint32_t running_function_ = 0;
  std::thread thread_;
};

}  // namespace seppo::worker
