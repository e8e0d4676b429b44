// One worker process's life: announce functions, pull tasks, run them, return results, keep the
// broker informed with heartbeats, and find the broker again when it restarts.
#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <vector>

#include "worker/module_loader.hpp"
#include "worker/session_core.hpp"

namespace seppo::worker {

// The core's options (the endpoint, prefetch, heartbeat, ...: worker/session_core.hpp), and what
// only the socket loop uses.
struct SessionOptions : SessionCoreOptions {
  // CurveZMQ, when all three are set (Z85): this worker's key pair and the broker's public key.
  std::string curve_public_key, curve_secret_key, curve_server_key;
  // Every task runs on the executor's thread, a lone one too (--no-inline): a module function
  // then always runs on one thread of the process.
  bool no_inline = false;
};

// The exit status of a worker process that left under exit_when_idle: it is done, not crashed,
// so the supervisor does not restart it.
inline constexpr int kExitIdle = 0;

// The exit status of a worker process whose key the broker accepts, but not as a worker's: it
// will never be given work, so the supervisor does not restart it.
inline constexpr int kExitForbidden = 78;  // EX_CONFIG

// The exit status of a worker process that left because the broker cancelled a task it could
// not stop otherwise (a module function past its time limit): the supervisor restarts it at
// once, and does not count it as a crash.
inline constexpr int kExitAbandoned = 75;  // EX_TEMPFAIL

// Runs until SIGINT or SIGTERM, after which it finishes the running chunk, returns its result
// and says BYE so the broker re-queues what was prefetched. Returns the exit status: 0, or
// kExitForbidden.
int run_session(const SessionOptions& options, const std::vector<Function>& functions);

}  // namespace seppo::worker
