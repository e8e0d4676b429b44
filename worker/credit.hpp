// How many tasks a worker asks the broker to keep outstanding at it: enough to cover a round
// trip when tasks are tiny, one when they are slow so none waits behind another while a
// neighbour idles.
#pragma once

#include <algorithm>
#include <cstdint>

namespace seppo::worker {

class CreditPolicy {
 public:
  static constexpr std::uint32_t kMax = 256;
  // Work held beyond the running task covers this much time: several round trips.
  static constexpr double kPrefetchUs = 5000;
  static constexpr double kSlowUs = 50000;

  // fixed > 0 turns adaptation off.
  explicit CreditPolicy(std::uint32_t fixed) : fixed_(fixed) {}

  std::uint32_t initial() const { return fixed_ > 0 ? fixed_ : 2; }

  void observe(std::uint64_t elapsed_us) {
    const double sample = std::max<double>(static_cast<double>(elapsed_us), 1.0);
    mean_us_ = mean_us_ <= 0 ? sample : 0.8 * mean_us_ + 0.2 * sample;
  }

  std::uint32_t wanted() const {
    if (fixed_ > 0) return fixed_;
    if (mean_us_ <= 0) return initial();
    // Slow tasks: hold only the running one, so the tail is never one task waiting behind
    // another while a neighbour idles. Otherwise at least one waits, so the worker never idles
    // for a round trip between tasks.
    if (mean_us_ >= kSlowUs) return 1;
    return static_cast<std::uint32_t>(std::clamp(1.0 + kPrefetchUs / mean_us_, 2.0, double(kMax)));
  }

  // Announcing every small change would cost a message per task; halving or doubling is news.
  static bool worth_announcing(std::uint32_t announced, std::uint32_t wanted) {
    return wanted >= 2 * announced || 2 * wanted <= announced ||
           (wanted != announced && std::min(wanted, announced) <= 2);
  }

 private:
  std::uint32_t fixed_;
  double mean_us_ = 0;
};

}  // namespace seppo::worker
