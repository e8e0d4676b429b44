#include "common/log.hpp"

#include <pthread.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <mutex>
#include <stdexcept>

namespace seppo::log {
namespace {

struct State {
  std::string program = "seppo";
  Level level = Level::Info;
  // Under systemd, journald adds its own timestamps and reads <N> priority prefixes.
  bool journal = std::getenv("JOURNAL_STREAM") != nullptr;
  // ...and stderr is that stream itself (its device:inode), not a file it was redirected to:
  // then lines may go to the journal natively, with fields.
  bool journal_stream = stderr_is_journal();
  JournalSink sink = nullptr;
  Fields process_fields;
  std::mutex mutex;

  static bool stderr_is_journal() {
    const char* stream = std::getenv("JOURNAL_STREAM");
    struct stat st {};
    if (stream == nullptr || ::fstat(STDERR_FILENO, &st) != 0) return false;
    unsigned long long dev = 0, ino = 0;
    return std::sscanf(stream, "%llu:%llu", &dev, &ino) == 2 &&
           dev == static_cast<unsigned long long>(st.st_dev) &&
           ino == static_cast<unsigned long long>(st.st_ino);
  }
};

State& state() {
  static State s;
  // A process forked while another thread logs (a local cluster's manager, forked beside a
  // running broker thread) would inherit the mutex held and block on its first line: fork
  // waits for the line to finish instead.
  static const bool fork_safe = [] {
    ::pthread_atfork([] { s.mutex.lock(); }, [] { s.mutex.unlock(); }, [] { s.mutex.unlock(); });
    return true;
  }();
  (void)fork_safe;
  return s;
}

const char* name(Level level) {
  switch (level) {
    case Level::Debug:
      return "debug";
    case Level::Info:
      return "info";
    case Level::Warning:
      return "warning";
    case Level::Error:
      return "error";
  }
  return "?";
}

int syslog_priority(Level level) {
  switch (level) {
    case Level::Debug:
      return 7;
    case Level::Info:
      return 6;
    case Level::Warning:
      return 4;
    case Level::Error:
      return 3;
  }
  return 6;
}

// The length of the valid UTF-8 sequence starting at text[i] (2 to 4 bytes), or 0 when there is
// none: overlong forms, surrogates and values past U+10FFFF count as invalid.
std::size_t utf8_length(std::string_view text, std::size_t i) {
  const auto byte = [&](std::size_t k) { return static_cast<unsigned char>(text[k]); };
  const unsigned char c = byte(i);
  std::size_t n = 0;
  char32_t value = 0;
  if (c >= 0xc2 && c <= 0xdf) {
    n = 2, value = c & 0x1f;
  } else if (c >= 0xe0 && c <= 0xef) {
    n = 3, value = c & 0x0f;
  } else if (c >= 0xf0 && c <= 0xf4) {
    n = 4, value = c & 0x07;
  } else {
    return 0;
  }
  if (i + n > text.size()) return 0;
  for (std::size_t k = 1; k < n; ++k) {
    if ((byte(i + k) & 0xc0) != 0x80) return 0;
    value = (value << 6) | (byte(i + k) & 0x3f);
  }
  if ((n == 3 && value < 0x800) || (n == 4 && (value < 0x10000 || value > 0x10ffff))) return 0;
  if (value >= 0xd800 && value <= 0xdfff) return 0;
  return n;
}

char32_t utf8_value(std::string_view text, std::size_t i, std::size_t n) {
  char32_t value = static_cast<unsigned char>(text[i]) & (n == 2 ? 0x1f : n == 3 ? 0x0f : 0x07);
  for (std::size_t k = 1; k < n; ++k) value = (value << 6) | (text[i + k] & 0x3f);
  return value;
}

}  // namespace

std::string escape(std::string_view text) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  out.reserve(text.size());
  for (std::size_t i = 0; i < text.size();) {
    const unsigned char c = static_cast<unsigned char>(text[i]);
    if (c >= 0x20 && c < 0x7f) {
      if (c == '\\') out += '\\';
      out += static_cast<char>(c);
      ++i;
      continue;
    }
    if (c < 0x80) {
      switch (c) {
        case '\n':
          out += "\\n";
          break;
        case '\r':
          out += "\\r";
          break;
        case '\t':
          out += "\\t";
          break;
        default:
          out += "\\x", out += kHex[c >> 4], out += kHex[c & 15];
      }
      ++i;
      continue;
    }
    const std::size_t n = utf8_length(text, i);
    if (n == 0) {
      out += "\\x", out += kHex[c >> 4], out += kHex[c & 15];
      ++i;
      continue;
    }
    // C1 controls (U+0080..U+009F, NEL among them) and U+2028/U+2029 end lines for some
    // readers and terminals.
    const char32_t value = utf8_value(text, i, n);
    if (value <= 0x9f || value == 0x2028 || value == 0x2029) {
      out += "\\u{";
      for (int shift = 12; shift >= 0; shift -= 4) out += kHex[(value >> shift) & 15];
      out += '}';
    } else {
      out.append(text.substr(i, n));
    }
    i += n;
  }
  return out;
}

Level parse_level(std::string_view text) {
  if (text == "debug") return Level::Debug;
  if (text == "info") return Level::Info;
  if (text == "warning" || text == "warn") return Level::Warning;
  if (text == "error") return Level::Error;
  throw std::invalid_argument("unknown log level '" + std::string(text) +
                              "' (use debug, info, warning or error)");
}

void set_program(std::string program) {
  state().program = std::move(program);
}
void set_level(Level level) {
  state().level = level;
}
bool enabled(Level level) {
  return level >= state().level;
}

void set_process_fields(Fields fields) {
  State& s = state();
  std::lock_guard<std::mutex> lock(s.mutex);
  s.process_fields = std::move(fields);
}

void set_journal_sink(JournalSink sink) {
  State& s = state();
  std::lock_guard<std::mutex> lock(s.mutex);
  s.sink = sink;
}

void write(Level level, const std::string& text) {
  write_with(level, text, Fields{});
}

void write_with(Level level, const std::string& text, const Fields& fields) {
  State& s = state();
  if (level < s.level) return;
  // Escaped before the lock: the line is built once, and a forged "\n<3>..." stays on its line.
  const std::string line = escape(text);
  std::lock_guard<std::mutex> lock(s.mutex);
  if (s.journal) {
    if (s.journal_stream && s.sink != nullptr) {
      Fields all = s.process_fields;
      all.insert(all.end(), fields.begin(), fields.end());
      if (s.sink(syslog_priority(level), s.program, line, all)) return;
    }
    std::fprintf(stderr, "<%d>%s\n", syslog_priority(level), line.c_str());
    return;
  }
  const auto now = std::chrono::system_clock::now();
  const std::time_t t = std::chrono::system_clock::to_time_t(now);
  const auto ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()) % 1000;
  std::tm tm{};
  gmtime_r(&t, &tm);
  char stamp[32];
  std::strftime(stamp, sizeof stamp, "%Y-%m-%dT%H:%M:%S", &tm);
  std::fprintf(stderr, "%s.%03dZ %s[%d] %s: %s\n", stamp, static_cast<int>(ms.count()),
               s.program.c_str(), static_cast<int>(::getpid()), name(level), line.c_str());
}

}  // namespace seppo::log
