#include "cli/status_command.hpp"

#include "common/endpoint_list.hpp"

#include <poll.h>
#include <pwd.h>
#include <termios.h>
#include <unistd.h>

#include <csignal>
#include <cstdarg>
#include <string>

#include "cli/json.hpp"

namespace seppo::cli {
namespace {

std::string duration(std::int64_t ms) {
  char text[48];
  const std::int64_t s = ms / 1000;
  if (s < 60) {
    std::snprintf(text, sizeof text, "%.1f s", static_cast<double>(ms) / 1000);
  } else if (s < 3600) {
    std::snprintf(text, sizeof text, "%lldm%02llds", static_cast<long long>(s / 60),
                  static_cast<long long>(s % 60));
  } else if (s < 86400) {
    std::snprintf(text, sizeof text, "%lldh%02lldm", static_cast<long long>(s / 3600),
                  static_cast<long long>(s % 3600 / 60));
  } else {
    std::snprintf(text, sizeof text, "%lldd%02lldh", static_cast<long long>(s / 86400),
                  static_cast<long long>(s % 86400 / 3600));
  }
  return text;
}

std::string bytes(std::uint64_t n) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  double v = static_cast<double>(n);
  int i = 0;
  while (v >= 1024 && i < 4) {
    v /= 1024;
    ++i;
  }
  char text[32];
  std::snprintf(text, sizeof text, i ? "%.1f %s" : "%.0f %s", v, units[i]);
  return text;
}

std::string items(std::uint64_t first, std::uint64_t count) {
  return count > 1 ? std::to_string(first) + "-" + std::to_string(first + count - 1)
                   : std::to_string(first);
}

// "uid:1000" as "uid 1000 (alice)" when this machine knows the user; a key's name as it is.
std::string owner(const std::string& text) {
  if (text.empty()) return "?";
  if (text.rfind("uid:", 0) != 0) return text;
  const std::string uid = text.substr(4);
  if (uid.empty() || uid.find_first_not_of("0123456789") != std::string::npos) return text;
  if (const passwd* pw = ::getpwuid(static_cast<uid_t>(std::stoul(uid)))) {
    return "uid " + uid + " (" + pw->pw_name + ")";
  }
  return "uid " + uid;
}

std::string str(const nlohmann::json& j, const char* key) {
  const auto it = j.find(key);
  return it != j.end() && it->is_string() ? it->get<std::string>() : std::string();
}
std::int64_t num(const nlohmann::json& j, const char* key) {
  const auto it = j.find(key);
  return it != j.end() && it->is_number() ? it->get<std::int64_t>() : 0;
}

void line(std::string& out, const char* format, ...) __attribute__((format(printf, 2, 3)));
void line(std::string& out, const char* format, ...) {
  char text[1024];
  va_list args;
  va_start(args, format);
  std::vsnprintf(text, sizeof text, format, args);
  va_end(args);
  out += text;
}

std::string render(const nlohmann::json& s, const std::string& endpoint) {
  std::string out;
  line(out, "broker %s (protocol %s", endpoint.c_str(),
       s.value("protocol", nlohmann::json()).dump().c_str());
  if (s.contains("version")) line(out, ", version %s", str(s, "version").c_str());
  if (s.contains("uptime_ms")) line(out, ", up %s", duration(num(s, "uptime_ms")).c_str());
  out += ")\n";
  if (s.contains("ha") && s["ha"].is_object()) {  // one broker of a pair (docs/protocol.md §15.3)
    line(out, "pair: %s, %s; peer %s\n", str(s["ha"], "role").c_str(),
         str(s["ha"], "state").c_str(), str(s["ha"], "peer").c_str());
  }
  if (s.contains("clients")) {
    line(out, "clients %lld, holding %s\n", static_cast<long long>(num(s, "clients")),
         bytes(static_cast<std::uint64_t>(num(s, "bytes_held"))).c_str());
  }

  const auto& workers = s.value("workers", nlohmann::json::array());
  line(out, "\nworkers: %zu\n", workers.size());
  for (const auto& w : workers) {
    const auto busy = num(w, "busy");
    const std::string state = busy == 0 ? "idle" : "busy " + std::to_string(busy);
    std::string names;
    for (const auto& f : w.value("functions", nlohmann::json::array())) {
      names += (names.empty() ? "" : ", ") + f.get<std::string>();
    }
    if (names.size() > 60) names = names.substr(0, 57) + "...";
    std::string up = w.contains("uptime_ms") ? "up " + duration(num(w, "uptime_ms")) : "";
    // A worker's version, once READY carries one (a key STATUS readers ignore until then).
    if (!str(w, "version").empty()) up = "v" + str(w, "version") + " " + up;
    line(out, "  %-32s %-8s done %-8lld heard %5lld ms ago  %-10s %s\n", str(w, "name").c_str(),
         state.c_str(), static_cast<long long>(num(w, "tasks_done")),
         static_cast<long long>(num(w, "last_heard_ms")), up.c_str(), names.c_str());
  }

  // Running items: a worker process runs the first task it holds; the others wait there.
  std::string running;
  std::size_t n_running = 0;
  for (const auto& w : workers) {
    for (const auto& r : w.value("running", nlohmann::json::array())) {
      ++n_running;
      const std::string job = str(r, "client") + "/" + std::to_string(num(r, "job"));
      line(running, "  %-14s items %-14s %-32s %9s  %s\n", job.c_str(),
           items(static_cast<std::uint64_t>(num(r, "first")),
                 static_cast<std::uint64_t>(num(r, "count")))
               .c_str(),
           str(w, "name").c_str(), duration(num(r, "elapsed_ms")).c_str(),
           str(r, "function").c_str());
      break;
    }
  }
  if (s.contains("uptime_ms")) line(out, "\nrunning: %zu\n%s", n_running, running.c_str());

  const auto& functions = s.value("functions", nlohmann::json::object());
  line(out, "\nfunctions: %zu\n", functions.size());
  for (const auto& [name, f] : functions.items()) {
    line(out, "  %-40s workers %s  queued %s\n", name.c_str(),
         f.value("workers", nlohmann::json()).dump().c_str(),
         f.value("queued", nlohmann::json()).dump().c_str());
  }
  const auto& jobs = s.value("jobs", nlohmann::json::array());
  line(out, "\njobs: %zu\n", jobs.size());
  for (const auto& j : jobs) {
    if (!j.contains("owner")) {  // a broker before issue 24
      line(out, "  %-40s done %s  queued %s\n", str(j, "function").c_str(),
           j.value("items_done", nlohmann::json()).dump().c_str(),
           j.value("queued", nlohmann::json()).dump().c_str());
      continue;
    }
    const std::string job = str(j, "client") + "/" + std::to_string(num(j, "job"));
    const auto done = num(j, "items_done"), failed = num(j, "items_failed");
    const std::string progress =
        std::to_string(done) + "/" + std::to_string(done + num(j, "items_open"));
    line(out, "  %-14s %-24s %-32s done %-14s failed %-6lld queued %-6lld age %s\n", job.c_str(),
         owner(str(j, "owner")).c_str(), str(j, "function").c_str(), progress.c_str(),
         static_cast<long long>(failed), static_cast<long long>(num(j, "queued")),
         duration(num(j, "age_ms")).c_str());
  }
  return out;
}

volatile std::sig_atomic_t interrupted = 0;
void on_interrupt(int) {
  interrupted = 1;
}

// The terminal in character mode without echo while watching, restored however we leave.
class RawTerminal {
 public:
  RawTerminal() {
    if (!::isatty(STDIN_FILENO) || ::tcgetattr(STDIN_FILENO, &saved_) != 0) return;
    termios raw = saved_;
    raw.c_lflag &= static_cast<tcflag_t>(~(ICANON | ECHO));
    raw.c_cc[VMIN] = 0;
    raw.c_cc[VTIME] = 0;
    active_ = ::tcsetattr(STDIN_FILENO, TCSANOW, &raw) == 0;
  }
  ~RawTerminal() {
    if (active_) ::tcsetattr(STDIN_FILENO, TCSANOW, &saved_);
  }
  bool active() const { return active_; }

 private:
  termios saved_{};
  bool active_ = false;
};

// One broker's status as text or a JSON line; for a pair's list (§15.4) each broker's in turn,
// one that does not answer told by an error line in `errors` (and `status` set to 1), so that
// --json's output stays one JSON object per line. With one endpoint, its error is thrown.
std::string snapshot(Client& client, const StatusOptions& options, int& status,
                     std::string& errors) {
  const auto one = [&](Client& asked) {
    const msgpack::object_handle reply = asked.status(options.timeout);
    const nlohmann::json s = to_json(reply.get());
    return options.json ? s.dump() + "\n" : render(s, asked.endpoint());
  };
  const std::vector<std::string> endpoints = split_endpoints(client.endpoint());
  if (endpoints.size() < 2) return one(client);
  std::string text;
  for (const std::string& endpoint : endpoints) {
    try {
      Client asked(endpoint, client.options());
      text += one(asked);
    } catch (const Error& e) {
      errors += std::string("seppo: ") + e.what() + "\n";
      status = 1;
    }
  }
  return text;
}

}  // namespace

int run_status(Client& client, const StatusOptions& options, std::FILE* out) {
  if (!options.watch) {
    int status = 0;
    std::string errors;
    std::fputs(snapshot(client, options, status, errors).c_str(), out);
    std::fflush(out);
    std::fputs(errors.c_str(), stderr);
    return status;
  }
  // --watch: like top, the screen redrawn every interval until q, Ctrl-C or --count.
  struct sigaction action {};
  action.sa_handler = on_interrupt;
  struct sigaction old_int {
  }, old_term{};
  ::sigaction(SIGINT, &action, &old_int);
  ::sigaction(SIGTERM, &action, &old_term);
  int status = 0;
  {
    RawTerminal terminal;
    const bool screen = ::isatty(::fileno(out));
    if (screen) std::fputs("\033[?1049h", out);  // the alternate screen, as top uses
    for (unsigned shown = 0; !interrupted && (options.count == 0 || shown < options.count);
         ++shown) {
      std::string text, errors;
      try {
        text = snapshot(client, options, status, errors);
      } catch (const Error& e) {
        errors = std::string("seppo: ") + e.what() + "\n";
        status = 1;
      }
      // On the screen errors follow the brokers that answered; with --json, stdout stays JSON
      // lines and errors go to stderr.
      if (options.json) {
        std::fputs(errors.c_str(), stderr);
      } else {
        text += errors;
      }
      if (screen) std::fputs("\033[H\033[2J", out);
      std::fputs(text.c_str(), out);
      if (screen && terminal.active()) std::fputs("\n(q to quit)", out);
      std::fflush(out);
      if (options.count != 0 && shown + 1 >= options.count) break;
      // Waits out the interval, or less when q arrives.
      pollfd in{STDIN_FILENO, POLLIN, 0};
      const int ready =
          ::poll(&in, terminal.active() ? 1 : 0, static_cast<int>(options.interval.count()));
      if (ready > 0 && (in.revents & POLLIN)) {
        char c = 0;
        if (::read(STDIN_FILENO, &c, 1) == 1 && (c == 'q' || c == 'Q')) break;
      }
    }
    if (screen) std::fputs("\033[?1049l", out);
    std::fflush(out);
  }
  ::sigaction(SIGINT, &old_int, nullptr);
  ::sigaction(SIGTERM, &old_term, nullptr);
  return status;
}

// With a pair's list (§15.4) each broker is asked and reported in turn (a line each on stdout,
// its error on stderr); 0 only when every one answered. With one endpoint its error is thrown.
int run_ping(Client& client, std::chrono::milliseconds timeout, std::FILE* out) {
  const auto one = [&](Client& asked) {
    const msgpack::object_handle status = asked.status(timeout);
    const nlohmann::json s = to_json(status.get());
    std::string state;
    if (s.contains("ha") && s["ha"].is_object())
      state = " (" + str(s["ha"], "role") + ", " + str(s["ha"], "state") + ")";
    std::fprintf(out, "broker at %s is alive%s: %zu workers, %zu jobs\n", asked.endpoint().c_str(),
                 state.c_str(), s.value("workers", nlohmann::json::array()).size(),
                 s.value("jobs", nlohmann::json::array()).size());
    std::fflush(out);
  };
  const std::vector<std::string> endpoints = split_endpoints(client.endpoint());
  if (endpoints.size() < 2) {
    one(client);
    return 0;
  }
  int status = 0;
  for (const std::string& endpoint : endpoints) {
    try {
      Client asked(endpoint, client.options());
      one(asked);
    } catch (const Error& e) {
      std::fprintf(stderr, "seppo: broker at %s: %s\n", endpoint.c_str(), e.what());
      status = 1;
    }
  }
  return status;
}

}  // namespace seppo::cli
