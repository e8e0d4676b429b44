// The socket loop around broker::Core: receive, feed the core, send what it produced.
#pragma once

#include <string>
#include <vector>

#include "broker/core.hpp"

namespace seppo::broker {

struct ServerOptions {
  std::vector<std::string> endpoints;
  std::int64_t max_message_bytes = 256ll << 20;
  std::chrono::milliseconds shutdown_grace{2000};
};

// Runs until SIGINT or SIGTERM; returns the process exit status.
int serve(const ServerOptions& options, Core& core);

}  // namespace seppo::broker
