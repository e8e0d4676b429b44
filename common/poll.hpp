// zmq::poll that treats a signal's interruption as an early wake-up, not an error: the
// programs see their signals through a pipe in the same poll set.
#pragma once

#include <cerrno>
#include <chrono>
#include <vector>

#include <zmq.hpp>

namespace seppo {

inline void poll(std::vector<zmq::pollitem_t>& items, std::chrono::milliseconds timeout) {
  try {
    zmq::poll(items, timeout);
  } catch (const zmq::error_t& e) {
    if (e.num() != EINTR) throw;
    for (auto& item : items) item.revents = 0;
  }
}

}  // namespace seppo
