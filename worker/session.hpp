// One worker process's life: announce functions, pull tasks, run them, return results, keep the
// broker informed with heartbeats, and find the broker again when it restarts.
#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <vector>

#include "worker/module_loader.hpp"

namespace seppo::worker {

struct SessionOptions {
  std::string endpoint;
  std::uint32_t prefetch = 0;  // tasks held at once; 0 adapts it to the tasks' duration
  std::chrono::milliseconds heartbeat{1000};  // until the broker announces its own
  std::uint32_t liveness = 3;
  std::chrono::milliseconds max_reconnect_delay{4000};
  // Leave (BYE "worker idle") after holding no task for this long; 0: never.
  std::chrono::milliseconds exit_when_idle{0};
  // Stop when the broker says BYE instead of waiting for it to come back.
  bool exit_on_broker_bye = false;
  // CurveZMQ, when all three are set (Z85): this worker's key pair and the broker's public key.
  std::string curve_public_key, curve_secret_key, curve_server_key;
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
