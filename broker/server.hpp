// The socket loop around broker::Core: receive, feed the core, send what it produced.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "broker/auth.hpp"
#include "broker/core.hpp"
#include "broker/ha_link.hpp"
#include "common/curve.hpp"

namespace seppo::broker {

struct ServerOptions {
  std::vector<std::string> endpoints;
  std::int64_t max_message_bytes = 256ll << 20;
  // Connections open at once, beyond which new ones are closed (seppo-broker --max-connections,
  // lowered to fit the descriptor limit); 0: no cap.
  std::size_t max_connections = 0;
  std::chrono::milliseconds shutdown_grace{2000};
  // CurveZMQ: on when `curve` is set. `lists` were loaded from `authorized` and are read again
  // from there on SIGHUP.
  std::optional<curve::KeyPair> curve;
  AuthConfig authorized;
  std::shared_ptr<const KeyLists> lists;
  // Without keys: who may connect over ipc:// (a ZAP handler checks the peer's uid). Set by
  // seppo-broker; a local cluster's broker, in a private folder, needs none.
  std::optional<LocalPolicy> local;
  // (The socket's ZMTP heartbeats and how long a routing id stays bound, with users told apart
  // (§14.6), follow the core's Config::heartbeat and liveness: set there, read from there.)
  // Embedded in another program (libseppo's LocalCluster), the broker must leave the process'
  // signal handlers alone: it then stops when `stop_fd` becomes readable instead.
  bool handle_signals = true;
  int stop_fd = -1;
  // Called once from serve()'s thread: with the endpoints as bound (a wildcard port resolved)
  // and an empty error, or with why binding failed, before serve() returns 1. Lets a caller
  // running serve() on a thread start synchronously.
  std::function<void(const std::vector<std::string>& bound, const std::string& error)> on_ready;
  // Called at every turn of the loop, on its thread: seppo-broker --http hands its server a
  // STATUS snapshot from here when one is due. Must be cheap when nothing is due.
  std::function<void(Core& core, TimePoint now)> on_turn;
  // One broker of a pair (docs/protocol.md §15): the HA link's endpoints and this broker's role.
  // Its timers follow the core's heartbeat (interval heartbeat / 4, expiry heartbeat).
  std::optional<ha::PairOptions> pair;
};

// Runs until SIGINT or SIGTERM (SIGHUP reloads the key lists), or until `stop_fd` is readable;
// returns the exit status (3: a backup of a pair that found the primary active too, §15 H11).
int serve(const ServerOptions& options, Core& core);

}  // namespace seppo::broker
