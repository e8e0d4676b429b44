// One line per event on stderr, in a form both people and journald read well.
#pragma once

#include <string>
#include <string_view>

namespace seppo::log {

enum class Level { Debug = 0, Info = 1, Warning = 2, Error = 3 };

// Parses "debug", "info", "warning" or "error"; throws std::invalid_argument otherwise.
Level parse_level(std::string_view text);

void set_program(std::string name);
void set_level(Level level);
bool enabled(Level level);
void write(Level level, const std::string& text);

inline void debug(const std::string& text) { write(Level::Debug, text); }
inline void info(const std::string& text) { write(Level::Info, text); }
inline void warning(const std::string& text) { write(Level::Warning, text); }
inline void error(const std::string& text) { write(Level::Error, text); }

}  // namespace seppo::log
