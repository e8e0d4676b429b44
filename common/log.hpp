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
// Writes one line. Every byte that could end the line or fake another is escaped first (see
// escape): peers choose function names, worker names, hosts and error texts that end up in
// log lines, and must not be able to forge lines or, under journald, their priorities.
void write(Level level, const std::string& text);

// `text` as one printable line: control characters (newlines included) and DEL become \n, \r,
// \t or \xHH, C1 controls and the Unicode line and paragraph separators \u{HHHH}, bytes that
// are not UTF-8 \xHH, and a backslash \\, so an escaped line reads back unambiguously.
// Valid UTF-8 text (accents, CJK, emoji) is kept as it is.
std::string escape(std::string_view text);

inline void debug(const std::string& text) {
  write(Level::Debug, text);
}
inline void info(const std::string& text) {
  write(Level::Info, text);
}
inline void warning(const std::string& text) {
  write(Level::Warning, text);
}
inline void error(const std::string& text) {
  write(Level::Error, text);
}

}  // namespace seppo::log
