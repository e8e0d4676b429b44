// How many items go in the next chunk: enough that per-chunk overhead vanishes for tiny items,
// few enough that slow items spread over every worker and the tail stays short.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdint>

namespace seppo {

class ChunkSizer {
 public:
  static constexpr std::uint32_t kMaxItems = 65536;

  ChunkSizer(std::size_t fixed, std::chrono::microseconds target)
      : fixed_(static_cast<std::uint32_t>(std::min<std::size_t>(fixed, kMaxItems))),
        target_us_(static_cast<double>(target.count())) {}

  // Until a first measurement arrives items go alone: a slow function must not be batched
  // blindly. Then each chunk aims at the target compute time.
  std::uint32_t next_size() const {
    if (fixed_ > 0) return fixed_;
    if (per_item_us_ <= 0) return 1;
    const double items = target_us_ / std::max(per_item_us_, 0.01);
    return static_cast<std::uint32_t>(std::clamp(items, 1.0, static_cast<double>(kMaxItems)));
  }

  void observe(std::uint32_t count, std::uint64_t elapsed_us) {
    // A chunk's time includes decoding and encoding; a floor keeps tiny costs from rounding
    // to zero. Time and items are summed with older chunks fading (0.7 per answer), so the
    // estimate weighs each chunk by its items: the single-item chunks a job starts with,
    // whose time is mostly per-chunk overhead, do not hold the size of the big ones down
    // (hundreds of them answered while 10,000-item chunks were already running).
    items_ = kFade * items_ + count;
    time_us_ = kFade * time_us_ + std::max(static_cast<double>(elapsed_us), 1.0);
    per_item_us_ = time_us_ / items_;
  }

  double per_item_us() const { return per_item_us_; }

 private:
  std::uint32_t fixed_;
  double target_us_;
  static constexpr double kFade = 0.7;
  double items_ = 0, time_us_ = 0;
  double per_item_us_ = 0;
};

}  // namespace seppo
