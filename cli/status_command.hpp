// `seppo status` and `seppo ping`: the broker's view, for people and for scripts.
#pragma once

#include <chrono>
#include <cstdio>

#include <seppo/client.hpp>

namespace seppo::cli {

int run_status(Client& client, std::chrono::milliseconds timeout, bool json, std::FILE* out);
int run_ping(Client& client, std::chrono::milliseconds timeout, std::FILE* out);

}  // namespace seppo::cli
