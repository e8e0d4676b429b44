// How many items go in the next chunk: enough that per-chunk overhead vanishes for tiny items,
// few enough that slow items spread over every worker and the tail stays short.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <limits>

namespace seppo {

class ChunkSizer {
 public:
  static constexpr std::uint32_t kMaxItems = 65536;

  using TimePoint = std::chrono::steady_clock::time_point;
  static constexpr std::size_t kUnlimited = std::numeric_limits<std::size_t>::max();
  // How many chunks may be unanswered at a job's start (see chunk_limit()), and how often that
  // number doubles.
  static constexpr std::size_t kBlindChunks = 8;
  static constexpr std::chrono::milliseconds kBlindDoubling{1};

  // `window`: the most chunks the job may have unanswered; `start`: when the job began;
  // `start_chunks`: the limit at the start (the simulator lowers it, to have it bind there).
  ChunkSizer(std::size_t fixed, std::chrono::microseconds target, std::size_t window = kUnlimited,
             TimePoint start = {}, std::size_t start_chunks = kBlindChunks)
      : fixed_(static_cast<std::uint32_t>(std::min<std::size_t>(fixed, kMaxItems))),
        target_us_(static_cast<double>(target.count())),
        window_(window),
        start_(start),
        blind_limit_(std::max<std::size_t>(start_chunks, 1)) {}

  // Until a first measurement arrives items go alone: a slow function must not be batched
  // blindly. Then each chunk aims at the target compute time.
  std::uint32_t next_size() const {
    if (fixed_ > 0) return fixed_;
    if (per_item_us_ <= 0) return 1;
    const double items = target_us_ / std::max(per_item_us_, 0.01);
    return static_cast<std::uint32_t>(std::clamp(items, 1.0, static_cast<double>(kMaxItems)));
  }

  // How many chunks may be unanswered now (the window still applies). Until the estimate
  // rests on a chunk at least half the size it asks for, the window must not fill at once:
  // first with single items (a trivial function answers within a millisecond, and 256 of
  // them sent meanwhile cost a third of a 100,000-item map's time, each a message, a task and
  // a result), then with chunks sized from them (a single item's time is mostly per-chunk
  // overhead, so that first estimate asks for chunks ten times too small). 8 chunks find the
  // cost as well. A slow function must still reach every worker soon: the limit doubles every
  // millisecond from the job's start, whatever the answers, reaching a window of 256 at 5 ms.
  std::size_t chunk_limit() const {
    if (fixed_ > 0) return kUnlimited;
    if (per_item_us_ > 0 && largest_ * 2 >= std::min(next_size(), cut_at_)) return kUnlimited;
    return blind_limit_;
  }
  // The driver closed a chunk at `count` items, fewer than next_size(), at its byte limit: no
  // chunk of these items gets larger, so one that size measured is as good as it gets.
  void cut(std::uint32_t count) { cut_at_ = std::max<std::uint32_t>(count, 1); }
  // When chunk_limit()'s time-based part next grows; TimePoint::max() once it reached the window.
  TimePoint limit_grows_at() const {
    if (fixed_ > 0 || blind_limit_ >= window_) return TimePoint::max();
    return start_ + kBlindDoubling * (blind_steps_ + 1);
  }
  // Time passed (the driver calls this before it fills and on each tick).
  void tick(TimePoint now) {
    while (now >= limit_grows_at()) {
      ++blind_steps_;
      blind_limit_ = blind_limit_ > window_ / 2 ? window_ : blind_limit_ * 2;
    }
  }

  void observe(std::uint32_t count, std::uint64_t elapsed_us) {
    // A chunk's time includes decoding and encoding; a floor keeps tiny costs from rounding
    // to zero. Time and items are summed with older chunks fading (0.7 per answer), so the
    // estimate weighs each chunk by its items: the single-item chunks a job starts with,
    // whose time is mostly per-chunk overhead, do not hold the size of the big ones down
    // (hundreds of them answered while 10,000-item chunks were already running).
    largest_ = std::max(largest_, count);
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
  std::size_t window_;
  TimePoint start_;
  std::size_t blind_limit_;
  int blind_steps_ = 0;
  std::uint32_t largest_ = 0;
  std::uint32_t cut_at_ = kMaxItems;
};

}  // namespace seppo
