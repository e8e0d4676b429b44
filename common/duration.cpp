#include "common/duration.hpp"

#include <cstdint>
#include <string_view>

namespace seppo {

std::optional<std::chrono::milliseconds> parse_duration(const std::string& text) {
  constexpr std::uint64_t kMaxMs = 1'000'000'000'000;  // about 30 years
  std::string_view rest = text;
  std::uint64_t whole = 0, fraction = 0;  // fraction: millionths
  bool digits = false, beyond = false;    // beyond: a non-zero digit past the sixth decimal
  std::size_t i = 0;
  for (; i < rest.size() && rest[i] >= '0' && rest[i] <= '9'; ++i) {
    if (whole > kMaxMs) return std::nullopt;
    whole = whole * 10 + static_cast<std::uint64_t>(rest[i] - '0');
    digits = true;
  }
  if (i < rest.size() && rest[i] == '.') {
    ++i;
    std::uint64_t scale = 100000;
    for (; i < rest.size() && rest[i] >= '0' && rest[i] <= '9'; ++i) {
      const auto d = static_cast<std::uint64_t>(rest[i] - '0');
      if (scale > 0) {
        fraction += d * scale;
        scale /= 10;
      } else if (d != 0) {
        beyond = true;
      }
      digits = true;
    }
  }
  if (!digits || whole > kMaxMs) return std::nullopt;
  const std::string_view unit = rest.substr(i);
  std::uint64_t unit_ms = 0;
  if (unit.empty() || unit == "s") {
    unit_ms = 1000;
  } else if (unit == "ms") {
    unit_ms = 1;
  } else if (unit == "m" || unit == "min") {
    unit_ms = 60'000;
  } else if (unit == "h") {
    unit_ms = 3'600'000;
  } else {
    return std::nullopt;
  }
  // Rounded up: a limit is never shorter than asked, and a positive one never 0 ("none").
  const std::uint64_t part = fraction * unit_ms;  // millionths of a millisecond
  std::uint64_t ms = whole * unit_ms + part / 1'000'000;
  if (part % 1'000'000 != 0 || beyond) ++ms;
  if (ms > kMaxMs) return std::nullopt;
  return std::chrono::milliseconds(static_cast<std::int64_t>(ms));
}

}  // namespace seppo
