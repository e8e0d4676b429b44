// Durations on command lines, one grammar for every seppo program (seppo map --timeout,
// seppo-broker --task-timeout and --worker-grace, seppo-worker --exit-when-idle):
//   DIGITS[.DIGITS][UNIT], UNIT one of ms, s, m, min, h; no unit means seconds.
// So "2", "1.5", ".5", "500ms", "30s", "2m", "5min", "1h". Not accepted: a sign, an exponent
// (1e3), hexadecimal (0x10), inf, nan, white space, other units. A positive duration is never
// shorter than asked: it rounds up to whole milliseconds (0.0004 is 1 ms, never 0).
#pragma once

#include <chrono>
#include <optional>
#include <string>

namespace seppo {

// The forms, for error messages: "say 2, 1.5, 500ms, 30s, 5m or 1h".
inline constexpr const char* kDurationForms = "say 2, 1.5, 500ms, 30s, 5m or 1h";

// Nothing for text outside the grammar or over 10^12 ms (about 30 years); "0" is 0 ms (each
// caller says whether 0 means anything).
std::optional<std::chrono::milliseconds> parse_duration(const std::string& text);

}  // namespace seppo
