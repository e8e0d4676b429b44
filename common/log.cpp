#include "common/log.hpp"

#include <pthread.h>
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
  std::mutex mutex;
};

State& state() {
  static State s;
  // A process forked while another thread logs (a local cluster's manager, forked beside a
  // running broker thread) would inherit the mutex held and block on its first line: fork
  // waits for the line to finish instead.
  static const bool fork_safe = [] {
    ::pthread_atfork([] { s.mutex.lock(); }, [] { s.mutex.unlock(); },
                     [] { s.mutex.unlock(); });
    return true;
  }();
  (void)fork_safe;
  return s;
}

const char* name(Level level) {
  switch (level) {
    case Level::Debug: return "debug";
    case Level::Info: return "info";
    case Level::Warning: return "warning";
    case Level::Error: return "error";
  }
  return "?";
}

int syslog_priority(Level level) {
  switch (level) {
    case Level::Debug: return 7;
    case Level::Info: return 6;
    case Level::Warning: return 4;
    case Level::Error: return 3;
  }
  return 6;
}

}  // namespace

Level parse_level(std::string_view text) {
  if (text == "debug") return Level::Debug;
  if (text == "info") return Level::Info;
  if (text == "warning" || text == "warn") return Level::Warning;
  if (text == "error") return Level::Error;
  throw std::invalid_argument("unknown log level '" + std::string(text) +
                              "' (use debug, info, warning or error)");
}

void set_program(std::string program) { state().program = std::move(program); }
void set_level(Level level) { state().level = level; }
bool enabled(Level level) { return level >= state().level; }

void write(Level level, const std::string& text) {
  State& s = state();
  if (level < s.level) return;
  std::lock_guard<std::mutex> lock(s.mutex);
  if (s.journal) {
    std::fprintf(stderr, "<%d>%s\n", syslog_priority(level), text.c_str());
    return;
  }
  const auto now = std::chrono::system_clock::now();
  const std::time_t t = std::chrono::system_clock::to_time_t(now);
  const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()) % 1000;
  std::tm tm{};
  gmtime_r(&t, &tm);
  char stamp[32];
  std::strftime(stamp, sizeof stamp, "%Y-%m-%dT%H:%M:%S", &tm);
  std::fprintf(stderr, "%s.%03dZ %s[%d] %s: %s\n", stamp, static_cast<int>(ms.count()),
               s.program.c_str(), static_cast<int>(::getpid()), name(level), text.c_str());
}

}  // namespace seppo::log
