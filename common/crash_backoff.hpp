// How soon a supervisor may start a process again after one died (issue 27 §4: the one rule that
// seppo-worker's supervisor and the local cluster's keeper both follow). A few deaths are
// normal (a poison item, an out-of-memory kill): the replacement starts at once. Past three per
// process within the window, a crash loop is assumed (a module that dies on load): the delay
// grows by 100 ms per recent death, up to 5 s, so the host is not made to fork without pause.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <vector>

namespace seppo {

class CrashBackoff {
 public:
  using Clock = std::chrono::steady_clock;

  explicit CrashBackoff(std::chrono::milliseconds window = std::chrono::seconds(10))
      : window_(window) {}

  // A process died at `now`, one of `processes` kept running: the earliest time its
  // replacement may start.
  Clock::time_point died(Clock::time_point now, std::size_t processes) {
    deaths_.push_back(now);
    std::erase_if(deaths_, [&](Clock::time_point t) { return now - t > window_; });
    const std::size_t recent = deaths_.size();
    const auto delay = std::chrono::milliseconds(
        recent <= processes * 3 ? 0 : std::min<long>(5000, 100L * static_cast<long>(recent)));
    return now + delay;
  }

 private:
  std::chrono::milliseconds window_;
  std::vector<Clock::time_point> deaths_;
};

}  // namespace seppo
