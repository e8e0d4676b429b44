// The progress line of `seppo map` on stderr, like `parallel --bar`: done/total, rate, ETA,
// failures and workers, redrawn a few times a second by its own thread.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

namespace seppo::cli {

class Progress {
 public:
  struct Options {
    bool enabled = false;
    std::string label;                   // the function's name
    int count_fd = -1;                   // a regular file to count the total from, or -1
    std::optional<std::uint64_t> total;  // known in advance (`::: a b c`)
    // Workers serving the function, asked of the broker now and then; nullopt if unknown.
    std::function<std::optional<std::size_t>()> workers;
    std::chrono::milliseconds redraw{250};
  };

  Progress(std::FILE* err, Options options);
  ~Progress();  // draws the final figures and ends the line
  Progress(const Progress&) = delete;
  Progress& operator=(const Progress&) = delete;

  void done_one(bool failed) {
    if (!options_.enabled) return;  // nothing reads the counts: no atomic add per item
    done_.fetch_add(1, std::memory_order_relaxed);
    if (failed) failed_.fetch_add(1, std::memory_order_relaxed);
  }
  // Inputs read so far, for a total counted as we go when the input is a pipe: shown as
  // "done/read+" with an ETA against what was read, until `ended` makes it the total.
  void seen(std::uint64_t read, bool ended) {
    seen_.store(read, std::memory_order_relaxed);
    if (ended) seen_ended_ = true;
  }
  // A line for stderr (an item's error) that must not be torn by the progress line.
  void message(const std::string& line);
  // Results are about to be written to `out`: when it is the terminal the progress line is on,
  // the line is cleared first and not redrawn until the returned lock is released (flush `out`
  // before). An empty lock otherwise.
  std::unique_lock<std::mutex> before_output(std::FILE* out);

  // The line as drawn, for tests of its format.
  static std::string render(std::uint64_t done, std::optional<std::uint64_t> total,
                            std::uint64_t failed, std::optional<std::size_t> workers,
                            double elapsed_s, const std::string& label, bool more = false);

  // Escape codes only for a terminal that understands them: not with TERM=dumb or NO_COLOR.
  static bool escapes_allowed();

 private:
  void loop();
  void draw(bool final);
  void clear();

  std::FILE* err_;
  Options options_;
  const std::chrono::steady_clock::time_point start_ = std::chrono::steady_clock::now();
  std::atomic<std::uint64_t> done_{0}, failed_{0};
  std::atomic<bool> counted_{false};
  std::atomic<std::uint64_t> total_{0};
  std::atomic<std::uint64_t> seen_{0};
  std::atomic<bool> seen_ended_{false};
  bool tty_ = false, escapes_ = false;
  std::size_t drawn_width_ = 0;
  std::atomic<std::int64_t> workers_{-1};
  std::mutex mutex_;  // stderr, and the stop flag
  std::condition_variable wake_;
  std::atomic<bool> stop_{false};
  bool drawn_ = false;  // a progress line is on the screen, to be cleared before a message
  std::thread thread_;
};

}  // namespace seppo::cli
