// One line per event on stderr, in a form both people and journald read well.
#pragma once

#include <string>
#include <string_view>
#include <vector>

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

// Journal fields sent with a line under journald besides its text (issue 24), e.g.
// {"SEPPO_JOB", "3f2a91bc/12"}: `journalctl SEPPO_FUNCTION=physics.simulate` then finds them.
// Names are upper case letters, digits and underscores; values are sent as they are.
struct Field {
  std::string name;
  std::string value;
};
using Fields = std::vector<Field>;
void write_with(Level level, const std::string& text, const Fields& fields);
// Fields sent with every line of this process from now on (a worker process's SEPPO_WORKER).
void set_process_fields(Fields fields);

// Where lines go when stderr is the journal's stream (JOURNAL_STREAM names it): the programs
// linking libsystemd install one that sends each line with its fields (sd_journal_sendv), and
// returns false when that failed, so the line goes to stderr after all. Without one, or off
// the journal, lines go to stderr ("<N>" priority prefixes under journald).
using JournalSink = bool (*)(int priority, const std::string& program, const std::string& message,
                             const Fields& fields);
void set_journal_sink(JournalSink sink);

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
