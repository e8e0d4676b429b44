// What seppo-bench's scenario files share: a table row and the formatting of figures.
#pragma once

#include <chrono>
#include <cstdio>
#include <limits>
#include <string>
#include <vector>

namespace seppo::bench {

using Clock = std::chrono::steady_clock;

struct Row {
  std::string scenario, seppo, baseline, ratio, note;
};

// A figure for bench/targets.py, as well as the table's text: `key` names the measure (the
// scenario's letter and what it is: "b.tasks_per_s", "m.broker"), `seppo` is seppo's figure and
// `baseline` the one measured with it in the same run (NaN when there is none). seppo-bench
// --results FILE writes them one a line, tab-separated: key, seppo, baseline.
struct Figure {
  std::string key;
  double seppo, baseline;
};

inline std::vector<Figure>& figures() {
  static std::vector<Figure> all;
  return all;
}

inline void record(std::string key, double seppo,
                   double baseline = std::numeric_limits<double>::quiet_NaN()) {
  figures().push_back({std::move(key), seppo, baseline});
}

inline double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

inline std::string fmt(const char* format, double value) {
  char text[64];
  std::snprintf(text, sizeof text, format, value);
  return text;
}

inline std::string rate(double per_second) {
  if (per_second >= 1e6) return fmt("%.2f M/s", per_second / 1e6);
  if (per_second >= 1e3) return fmt("%.1f k/s", per_second / 1e3);
  return fmt("%.0f /s", per_second);
}

// Instructions with thousands separated, for the callgrind rows.
inline std::string count(double n) {
  if (n >= 1e9) return fmt("%.2f G", n / 1e9);
  if (n >= 1e6) return fmt("%.2f M", n / 1e6);
  if (n >= 1e4) return fmt("%.1f k", n / 1e3);
  return fmt("%.0f", n);
}

}  // namespace seppo::bench
