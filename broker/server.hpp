// The socket loop around broker::Core: receive, feed the core, send what it produced.
#pragma once

#include <string>
#include <vector>

#include "broker/auth.hpp"
#include "broker/core.hpp"
#include "common/curve.hpp"

namespace seppo::broker {

struct ServerOptions {
  std::vector<std::string> endpoints;
  std::int64_t max_message_bytes = 256ll << 20;
  std::chrono::milliseconds shutdown_grace{2000};
  // CurveZMQ: on when `curve` is set. `lists` were loaded from `authorized` and are read again
  // from there on SIGHUP.
  std::optional<curve::KeyPair> curve;
  AuthConfig authorized;
  std::shared_ptr<const KeyLists> lists;
};

// Runs until SIGINT or SIGTERM (SIGHUP reloads the key lists); returns the exit status.
int serve(const ServerOptions& options, Core& core);

}  // namespace seppo::broker
