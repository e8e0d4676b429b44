// Runs chunks on a thread of its own, so the worker's socket loop keeps heartbeating while a
// function computes for minutes. Shaped like czmq's zactor: a thread plus an inproc PAIR pipe,
// started and stopped synchronously.
#pragma once

#include <cstdint>
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

  // Starts a chunk; the thread runs one at a time.
  void start(std::uint32_t function_index, zmq::message_t&& payload);

  struct Outcome {
    bool ok = false;  // false: output is a message for the whole chunk, not a results array
    std::uint64_t elapsed_us = 0;
    zmq::message_t output;
  };
  // Reads a finished chunk from the pipe (call when the pipe is readable).
  Outcome finish();

 private:
  void run(zmq::context_t& context, std::string endpoint);

  const std::vector<Function>& functions_;
  zmq::socket_t pipe_;
  std::thread thread_;
};

}  // namespace seppo::worker
