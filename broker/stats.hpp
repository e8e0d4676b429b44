// What the broker counts for operators (docs/operating.md, "Observing a cluster"): items
// finished, failed, retried and timed out per function, a histogram of task run times, messages
// refused by reason, and the recent tasks the dashboard's task stream draws. Fed by broker::Core
// at the points where these happen; read when the core renders its STATUS snapshot. Nothing here
// sends or allocates per message except the task stream, which is recorded only when asked
// (seppo-broker --http).
#pragma once

#include <array>
#include <chrono>
#include <cstdint>
#include <deque>
#include <map>
#include <string>
#include <string_view>

#include "seppo/msgpack.hpp"

namespace seppo::broker {

class Stats {
 public:
  using TimePoint = std::chrono::steady_clock::time_point;

  // Upper bounds, in seconds, of the run time histogram's buckets (then +Inf).
  static constexpr std::array<double, 12> kBuckets = {0.001, 0.005, 0.01, 0.05, 0.1, 0.5,
                                                      1,     5,     10,   60,   300, 3600};
  // Functions counted separately; later names count under kOther, so that clients cannot grow
  // the counters without bound by naming functions.
  static constexpr std::size_t kMaxFunctions = 1000;
  static constexpr std::string_view kOther = "(other)";
  // The task stream keeps this many of the latest tasks, and none older than kRecentAge.
  static constexpr std::size_t kRecentMax = 2000;
  static constexpr std::chrono::minutes kRecentAge{5};
  // The reason items failed by their function (RESULT's items_failed) count under, beside the
  // FAILED codes of the items the broker failed.
  static constexpr std::string_view kFunctionError = "error";

  struct Function {
    std::uint64_t finished = 0;   // items whose results a worker returned
    std::uint64_t retried = 0;    // items queued again after their worker was lost
    std::uint64_t timed_out = 0;  // items of tasks that overran their time limit
    // Items failed, by FAILED code, or kFunctionError for those their function failed.
    std::map<std::string, std::uint64_t, std::less<>> failed;
    std::array<std::uint64_t, kBuckets.size() + 1> buckets{};  // tasks per bucket (not cumulative)
    double seconds = 0;                                        // run time of all tasks
    std::uint64_t tasks = 0;                                   // tasks returned
  };
  struct Recent {
    TimePoint ended;
    std::uint64_t elapsed_us = 0;
    std::string worker, function, client;
    std::uint64_t job = 0, first = 0;
    std::uint32_t count = 0;
    bool ok = true;  // false: the broker failed it (worker lost, timeout) or some items failed
  };

  void start(TimePoint now) {
    if (started_ == TimePoint{}) started_ = now;
  }
  TimePoint started() const { return started_; }
  void record_tasks(bool on) { record_ = on; }
  bool recording() const { return record_; }

  void finished(std::string_view function, std::uint32_t count, std::uint64_t elapsed_us);
  void failed(std::string_view function, std::string_view code, std::uint32_t count);
  void retried(std::string_view function, std::uint32_t count);
  void timed_out(std::string_view function, std::uint32_t count);
  void refused(std::string_view reason);
  // A message read (decoded), by its type number: STATUS's "messages" (issue 28: how many
  // SUBMITs and SUBMITS carried a client's chunks).
  void received(std::uint8_t type) { ++received_[type % received_.size()]; }
  // One task for the stream, when recording.
  void recent(Recent&& task);

  // Adds "counters", "refused", "messages" and (when recording and `recent`) "recent" to a
  // STATUS map being packed: 3 or 4 entries, as `entries(recent)` says. /metrics has no use for
  // "recent".
  std::uint32_t entries(bool recent = true) const { return record_ && recent ? 4 : 3; }
  void pack(msgpack::packer<msgpack::sbuffer>& p, TimePoint now, bool recent = true) const;

 private:
  Function& of(std::string_view function);

  TimePoint started_{};
  bool record_ = false;
  std::map<std::string, Function, std::less<>> functions_;
  std::map<std::string, std::uint64_t, std::less<>> refused_;
  std::array<std::uint64_t, 32> received_{};
  std::deque<Recent> recent_;
};

}  // namespace seppo::broker
