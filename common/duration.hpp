// Durations on command lines: "30s", "500ms", "2m", "1h"; a bare number is seconds.
#pragma once

#include <chrono>
#include <optional>
#include <string>

namespace seppo {

// Nothing for text that is not a duration, a negative one or one over about 30 years.
std::optional<std::chrono::milliseconds> parse_duration(const std::string& text);

}  // namespace seppo
