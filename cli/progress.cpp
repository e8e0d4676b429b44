#include "cli/progress.hpp"

#include <sys/ioctl.h>
#include <unistd.h>

#include <cmath>
#include <cstdlib>
#include <string_view>

#include "cli/input.hpp"

namespace seppo::cli {
namespace {

std::string with_commas(std::uint64_t n) {
  const std::string digits = std::to_string(n);
  std::string out;
  for (std::size_t i = 0; i < digits.size(); ++i) {
    if (i > 0 && (digits.size() - i) % 3 == 0) out += ',';
    out += digits[i];
  }
  return out;
}

std::string rate_text(double per_second) {
  char text[32];
  if (per_second >= 1e6) {
    std::snprintf(text, sizeof text, "%.1fM/s", per_second / 1e6);
  } else if (per_second >= 1e4) {
    std::snprintf(text, sizeof text, "%.1fk/s", per_second / 1e3);
  } else {
    std::snprintf(text, sizeof text, "%.1f/s", per_second);
  }
  return text;
}

std::string duration_text(double seconds) {
  const auto s = static_cast<std::uint64_t>(std::llround(seconds));
  char text[32];
  std::snprintf(text, sizeof text, "%llu:%02llu:%02llu", static_cast<unsigned long long>(s / 3600),
                static_cast<unsigned long long>(s / 60 % 60),
                static_cast<unsigned long long>(s % 60));
  return text;
}

std::size_t terminal_columns(int fd) {
  winsize size{};
  if (::ioctl(fd, TIOCGWINSZ, &size) == 0 && size.ws_col > 0) return size.ws_col;
  return 80;
}

}  // namespace

std::string Progress::render(std::uint64_t done, std::optional<std::uint64_t> total,
                             std::uint64_t failed, std::optional<std::size_t> workers,
                             double elapsed_s, const std::string& label, bool more) {
  const double rate = elapsed_s > 0 ? static_cast<double>(done) / elapsed_s : 0;
  // Figures first and the name last: a narrow terminal cuts the name, not the figures.
  std::string line = with_commas(done);
  if (total) {
    line += "/" + with_commas(*total) + (more ? "+" : "");
    if (*total > 0 && !more) {
      line += " " + std::to_string(std::min<std::uint64_t>(100, done * 100 / *total)) + "%";
    }
  }
  line += " | " + rate_text(rate);
  if (total && rate > 0 && done < *total) {
    line += " | ETA " + duration_text(static_cast<double>(*total - done) / rate);
  } else {
    line += " | " + duration_text(elapsed_s);
  }
  line += " | " + with_commas(failed) + " failed";
  if (workers) line += " | " + std::to_string(*workers) + (*workers == 1 ? " worker" : " workers");
  line += " | " + label;
  return line;
}

bool Progress::escapes_allowed() {
  const char* term = std::getenv("TERM");
  const char* no_color = std::getenv("NO_COLOR");
  return !(term != nullptr && std::string_view(term) == "dumb") &&
         !(no_color != nullptr && *no_color != 0);
}

Progress::Progress(std::FILE* err, Options options) : err_(err), options_(std::move(options)) {
  tty_ = ::isatty(::fileno(err_)) == 1;
  escapes_ = tty_ && escapes_allowed();
  if (options_.total) {
    total_ = *options_.total;
    counted_ = true;
  }
  if (options_.enabled) thread_ = std::thread([this] { loop(); });
}

Progress::~Progress() {
  if (!thread_.joinable()) return;
  {
    std::lock_guard lock(mutex_);
    stop_ = true;
  }
  wake_.notify_all();
  thread_.join();
  std::lock_guard lock(mutex_);
  draw(true);
}

void Progress::message(const std::string& line) {
  std::lock_guard lock(mutex_);
  if (drawn_) clear();
  drawn_ = false;
  std::fputs(line.c_str(), err_);
  std::fputc('\n', err_);
  std::fflush(err_);
}

std::unique_lock<std::mutex> Progress::before_output(std::FILE* out) {
  if (!thread_.joinable() || !tty_ || ::isatty(::fileno(out)) != 1) return {};
  std::unique_lock lock(mutex_);
  if (drawn_) clear();
  drawn_ = false;
  std::fflush(err_);
  return lock;
}

void Progress::clear() {
  if (escapes_) {
    std::fputs("\r\033[K", err_);
  } else if (tty_) {  // TERM=dumb, NO_COLOR: blanks over the old line instead of an escape
    std::fputc('\r', err_);
    std::fputs(std::string(drawn_width_, ' ').c_str(), err_);
    std::fputc('\r', err_);
  }
}

void Progress::draw(bool final) {
  // Not a terminal (a log file): only the final figures, no carriage returns.
  if (!tty_ && !final) return;
  std::optional<std::uint64_t> total;
  bool more = false;
  if (counted_) {
    total = total_.load();
  } else if (const std::uint64_t seen = seen_.load(); seen > 0) {
    total = seen;  // counted as we go
    more = !seen_ended_;
  }
  std::optional<std::size_t> workers;
  if (const auto w = workers_.load(); w >= 0) workers = static_cast<std::size_t>(w);
  const double elapsed =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  std::string line = render(done_, total, failed_, workers, elapsed, options_.label, more);
  // Never wider than the terminal: a wrapped line cannot be redrawn in place.
  const std::size_t columns = terminal_columns(::fileno(err_));
  if (tty_ && line.size() >= columns) line.resize(columns - 1);
  if (drawn_) clear();
  std::fputs(line.c_str(), err_);
  drawn_width_ = line.size();
  if (final) std::fputc('\n', err_);
  std::fflush(err_);
  drawn_ = !final;
}

void Progress::loop() {
  // Counting a big file takes a moment: the line shows done/rate meanwhile.
  if (options_.count_fd >= 0) {
    if (const auto lines = count_lines(options_.count_fd, stop_)) {
      total_ = *lines;
      counted_ = true;
    }
  }
  auto next_probe = std::chrono::steady_clock::now();
  std::unique_lock lock(mutex_);
  while (!stop_) {
    if (options_.workers && std::chrono::steady_clock::now() >= next_probe) {
      lock.unlock();  // the broker's answer takes a round trip: do not hold stderr meanwhile
      const auto workers = options_.workers();
      workers_ = workers ? static_cast<std::int64_t>(*workers) : -1;
      next_probe = std::chrono::steady_clock::now() + std::chrono::seconds(2);
      lock.lock();
      if (stop_) break;
    }
    draw(false);
    wake_.wait_for(lock, options_.redraw, [this] { return stop_.load(); });
  }
}

}  // namespace seppo::cli
