// `seppo status` and `seppo ping`: the broker's view, for people and for scripts.
#pragma once

#include <chrono>
#include <cstdio>

#include <seppo/client.hpp>

namespace seppo::cli {

struct StatusOptions {
  std::chrono::milliseconds timeout{10000};
  bool json = false;
  // --watch: redraw every `interval` until q, Ctrl-C (or SIGTERM), or `count` redraws (0: no
  // limit). On a terminal the alternate screen is used, as top does.
  bool watch = false;
  std::chrono::milliseconds interval{2000};
  unsigned count = 0;
};

int run_status(Client& client, const StatusOptions& options, std::FILE* out);
int run_ping(Client& client, std::chrono::milliseconds timeout, std::FILE* out);

}  // namespace seppo::cli
