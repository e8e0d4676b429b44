// The forked worker manager (localcluster/local_manager.hpp): it keeps the local cluster's
// workers, answering the program's requests over its socket, until the program is gone.
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <map>
#include <set>
#include <thread>

#include "common/crash_backoff.hpp"
#include "common/exit_status.hpp"
#include "common/log.hpp"
#include "localcluster/local_keeper.hpp"
#include "localcluster/module_path.hpp"
#include "seppo/convert.hpp"
#include "seppo/error.hpp"
#include "worker/supervisor.hpp"

namespace seppo::local {
namespace {

using Clock = std::chrono::steady_clock;
using Packer = msgpack::packer<msgpack::sbuffer>;

constexpr int kControlFd = 3;  // where the manager keeps its end of the socket pair

// The manager's side: everything below runs in the forked process and ends in _exit, so none
// of the program's atexit handlers or static destructors run twice.
class Keeper {
 public:
  Keeper(const ManagerOptions& options, pid_t parent)
      : options_(options), functions_(options.functions), parent_(parent), self_(::getpid()) {}

  [[noreturn]] void run() {
    sigset_t chld;
    sigemptyset(&chld);
    sigaddset(&chld, SIGCHLD);
    ::sigprocmask(SIG_SETMASK, &chld, nullptr);
    signal_fd_ = ::signalfd(-1, &chld, SFD_CLOEXEC | SFD_NONBLOCK);
    if (signal_fd_ < 0) ::_exit(1);
    while (true) {
      pollfd fds[2] = {{kControlFd, POLLIN, 0}, {signal_fd_, POLLIN, 0}};
      ::poll(fds, 2, timeout_ms());
      if (fds[1].revents & POLLIN) reap();
      // The parent is gone: the socket closed, or (when the program forked children that
      // still hold its end) this process was handed to another parent.
      if (::getppid() != parent_) finish(false);
      if (fds[0].revents & (POLLIN | POLLHUP | POLLERR)) command();
      kill_overdue();
      respawn();
    }
  }

 private:
  struct Child {
    std::uint64_t generation = 0;
    bool leaving = false;
    Clock::time_point kill_at{};
    bool python = false;  // a seppo-worker --python supervisor, not a fork of the program
    int told = -1;        // the read end of the pipe a fork tells its own exit status on (issue 26)
  };

  struct PythonModule {
    std::string module;
    std::string folder;
  };

  int timeout_ms() const {
    auto next = Clock::now() + std::chrono::seconds(1);
    for (const auto& [pid, child] : children_) {
      if (child.leaving) next = std::min(next, child.kill_at);
    }
    if (owed_ > 0 || python_owed_) next = std::min(next, respawn_at_);
    const auto wait =
        std::chrono::duration_cast<std::chrono::milliseconds>(next - Clock::now()).count();
    return static_cast<int>(std::clamp<long>(wait + 1, 0, 1000));
  }

  void command() {
    char buffer[kMaxMessage];
    const ssize_t n = ::recv(kControlFd, buffer, sizeof buffer, MSG_DONTWAIT);
    if (n == 0) finish(false);  // the parent closed its end: stop at once
    if (n < 0) {
      if (errno == EAGAIN || errno == EINTR) return;
      finish(false);
    }
    std::string name, argument;
    std::uint64_t number = 0;
    try {
      msgpack::object_handle handle = unpack_untrusted(buffer, static_cast<std::size_t>(n));
      const auto message = handle.get().as<std::tuple<std::string, std::string, std::uint64_t>>();
      std::tie(name, argument, number) = message;
    } catch (const std::exception&) {
      finish(false);  // only our parent writes here: garbage means it is not our parent
    }
    msgpack::sbuffer reply;
    Packer packer(reply);
    if (name == "load") {
      load(argument, packer);
    } else if (name == "python") {
      load_python(argument, packer);
    } else if (name == "start") {
      start(static_cast<unsigned>(number));
      pack_pids(packer);
    } else if (name == "pids") {
      pack_pids(packer);
    } else if (name == "stop") {
      finish(true);
    } else {
      packer.pack_array(2).pack("error").pack("unknown request " + name);
    }
    if (!send_message(kControlFd, reply)) finish(false);
  }

  void load(const std::string& path, Packer& packer) {
    try {
      std::vector<worker::Function> loaded = worker::load_module(path);
      std::vector<std::string> names;
      for (const worker::Function& f : loaded) {
        for (const worker::Function& old : functions_) {
          if (old.name == f.name) {
            throw std::runtime_error("function " + f.name + " is already provided");
          }
        }
        names.push_back(f.name);
      }
      functions_.insert(functions_.end(), loaded.begin(), loaded.end());
      packer.pack_array(2).pack("ok").pack(names);
    } catch (const std::exception& e) {
      packer.pack_array(2).pack("error").pack(std::string(e.what()));
    }
  }

  // argument: module NUL folder. Lists the module's functions with seppo-worker itself, so the
  // names are what its workers will announce, and an import error is reported at once.
  void load_python(const std::string& argument, Packer& packer) {
    const std::size_t nul = argument.find('\0');
    PythonModule m{argument.substr(0, nul),
                   nul == std::string::npos ? "" : argument.substr(nul + 1)};
    try {
      const std::vector<std::string> names = list_python(m);
      for (const std::string& name : names) {
        const bool taken = std::any_of(functions_.begin(), functions_.end(),
                                       [&](const worker::Function& f) { return f.name == name; }) ||
                           python_names_.count(name) != 0;
        if (taken) throw std::runtime_error("function " + name + " is already provided");
      }
      python_.push_back(m);
      python_names_.insert(names.begin(), names.end());
      packer.pack_array(2).pack("ok").pack(names);
    } catch (const std::exception& e) {
      packer.pack_array(2).pack("error").pack(std::string(e.what()));
    }
  }

  // SEPPO_MODULE_PATH for Python workers: the loaded modules' folders first.
  std::string python_module_path(const std::string& extra) const {
    std::string path = extra;
    for (const PythonModule& m : python_) path += (path.empty() ? "" : ":") + m.folder;
    const char* old = std::getenv("SEPPO_MODULE_PATH");
    if (old != nullptr && *old != '\0') path += (path.empty() ? "" : ":") + std::string(old);
    return path;
  }

  std::vector<std::string> worker_args() const {
    return {worker_program_,
            "--broker",
            options_.session.endpoint,
            "--heartbeat-ms",
            std::to_string(options_.session.heartbeat.count()),
            "--log-level",
            options_.log_level};
  }

  // Runs seppo-worker in a child of this process; `out` and `err` replace its stdout and stderr
  // when not -1. Returns its pid, or -1.
  pid_t exec_worker(const std::vector<std::string>& args, const std::string& module_path, int out,
                    int err) {
    const pid_t pid = ::fork();
    if (pid != 0) return pid;
    // This process is single-threaded: allocating after the fork is safe.
    become_child();
    if (out >= 0) ::dup2(out, STDOUT_FILENO);
    if (err >= 0) ::dup2(err, STDERR_FILENO);
    if (out < 0 && options_.stdout_to_stderr) ::dup2(STDERR_FILENO, STDOUT_FILENO);
    ::setenv("SEPPO_MODULE_PATH", module_path.c_str(), 1);
    std::vector<char*> argv;
    for (const std::string& a : args) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    ::execvp(argv[0], argv.data());
    const std::string why = "seppo: cannot run " + args[0] +
                            " to serve Python functions: " + std::strerror(errno) +
                            " (set SEPPO_WORKER to seppo-worker's path)\n";
    [[maybe_unused]] const ssize_t n = ::write(STDERR_FILENO, why.data(), why.size());
    ::_exit(127);
  }

  std::vector<std::string> list_python(const PythonModule& m) {
    if (worker_program_.empty()) worker_program_ = worker_program();
    int out[2], err[2];
    if (::pipe2(out, O_CLOEXEC) != 0) throw std::runtime_error("no pipe");
    if (::pipe2(err, O_CLOEXEC) != 0) {
      ::close(out[0]);
      ::close(out[1]);
      throw std::runtime_error("no pipe");
    }
    std::vector<std::string> args = worker_args();
    args.insert(args.end(), {"--list-functions", "--python", m.module});
    const pid_t pid = exec_worker(args, python_module_path(m.folder), out[1], err[1]);
    ::close(out[1]);
    ::close(err[1]);
    std::string text[2];
    const auto deadline = Clock::now() + std::chrono::seconds(50);  // an import may be slow
    pollfd fds[2] = {{out[0], POLLIN, 0}, {err[0], POLLIN, 0}};
    while (pid > 0 && (fds[0].fd >= 0 || fds[1].fd >= 0) && Clock::now() < deadline) {
      if (::poll(fds, 2, 100) <= 0) continue;
      for (int i = 0; i < 2; ++i) {
        if (fds[i].fd < 0 || fds[i].revents == 0) continue;
        char buffer[4096];
        const ssize_t n = ::read(fds[i].fd, buffer, sizeof buffer);
        if (n > 0) {
          text[i].append(buffer, static_cast<std::size_t>(n));
        } else if (n == 0 || errno != EINTR) {
          fds[i].fd = -1;
        }
      }
    }
    ::close(out[0]);
    ::close(err[0]);
    int status = 0;
    if (pid > 0) {
      if (fds[0].fd >= 0 || fds[1].fd >= 0) ::kill(pid, SIGKILL);  // past the deadline
      while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
      }
    }
    std::string& why = text[1];
    while (!why.empty() && why.back() == '\n') why.pop_back();
    if (pid < 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
      if (why.empty()) why = worker_program_ + " " + describe_exit(status);
      throw std::runtime_error("Python module " + m.module + " (from " + m.folder +
                               ") cannot be served: " + why);
    }
    std::vector<std::string> names;
    std::size_t at = 0;
    while (at < text[0].size()) {
      const std::size_t end = text[0].find('\n', at);
      const std::string line = text[0].substr(at, end - at);
      if (line.rfind(m.module + ".", 0) == 0) names.push_back(line);
      if (end == std::string::npos) break;
      at = end + 1;
    }
    return names;
  }

  bool spawn_python() {
    std::vector<std::string> args = worker_args();
    args.insert(args.end(), {"-j", std::to_string(std::max(1u, wanted_))});
    for (const PythonModule& m : python_) args.insert(args.end(), {"--python", m.module});
    const pid_t pid = exec_worker(args, python_module_path(""), -1, -1);
    if (pid < 0) {
      log::error(std::string("cannot start a Python worker: ") + std::strerror(errno));
      respawn_at_ = Clock::now() + std::chrono::seconds(1);
      return false;
    }
    children_[pid] = Child{generation_, false, {}, true};
    return true;
  }

  void pack_pids(Packer& packer) {
    std::vector<std::int64_t> pids;
    for (const auto& [pid, child] : children_) {
      if (!child.leaving) pids.push_back(pid);
    }
    packer.pack_array(2).pack("ok").pack(pids);
  }

  // A new generation: its workers serve everything loaded; the previous ones leave.
  void start(unsigned processes) {
    ++generation_;
    wanted_ = processes;
    owed_ = 0;
    python_owed_ = false;
    // No deadline: SIGTERM lets each finish its running task however long it takes, and hand the
    // prefetched ones back. Killing one would charge its task an attempt, and a long task of
    // another job could be reported lost because a module was loaded. The cluster's own stop
    // still kills after the grace.
    for (auto& [pid, child] : children_) {
      if (child.leaving) continue;
      child.leaving = true;
      child.kill_at = Clock::time_point::max();
      ::kill(pid, SIGTERM);
    }
    // Forks serve the compiled modules; a seppo-worker --python serves the Python ones.
    if (!functions_.empty() || python_.empty()) {
      for (unsigned i = 0; i < processes; ++i) {
        if (!spawn()) ++owed_;
      }
    }
    if (!python_.empty() && !spawn_python()) python_owed_ = true;
  }

  bool spawn() {
    int told[2];
    if (!worker::open_status_pipe(told)) {
      log::error(std::string("cannot start a worker process: ") + std::strerror(errno));
      respawn_at_ = Clock::now() + std::chrono::seconds(1);
      return false;
    }
    const pid_t pid = ::fork();
    if (pid < 0) {
      log::error(std::string("cannot start a worker process: ") + std::strerror(errno));
      ::close(told[0]);
      ::close(told[1]);
      respawn_at_ = Clock::now() + std::chrono::seconds(1);
      return false;
    }
    if (pid == 0) {
      for (const auto& [other, c] : children_) {
        if (c.told >= 0) ::close(c.told);
      }
      ::close(told[0]);
      worker::tell_status_on(told[1]);
      work();
    }
    ::close(told[1]);
    children_[pid] = Child{generation_, false, {}, false, told[0]};
    return true;
  }

  // In a child just forked: it dies with the manager (single-threaded, so the death signal
  // follows the manager itself), drops the manager's descriptors, and gets default signal
  // handling back (a blocked SIGCHLD would survive exec).
  void become_child() {
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != self_) ::_exit(1);
    ::close(kControlFd);
    ::close(signal_fd_);
    sigset_t none;
    sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    ::signal(SIGPIPE, SIG_DFL);
  }

  [[noreturn]] void work() {
    become_child();
    if (options_.stdout_to_stderr) ::dup2(STDERR_FILENO, STDOUT_FILENO);
    log::set_program("seppo-worker");
    int status = 1;
    // On a thread of its own: per-thread state copied from the manager would be shared by all
    // its workers otherwise, such as the random engine that makes their routing ids (two
    // workers with one id would take each other's connection at the broker).
    std::thread session([&] {
      try {
        status = worker::run_session(options_.session, functions_);
      } catch (const std::exception& e) {
        log::error(e.what());
      }
    });
    session.join();
    std::fflush(nullptr);  // what a function printed
    ::_exit(status);
  }

  void reap() {
    signalfd_siginfo info;
    while (::read(signal_fd_, &info, sizeof info) == sizeof info) {
    }
    int status = 0;
    pid_t pid;
    while ((pid = ::waitpid(-1, &status, WNOHANG)) > 0) {
      const auto it = children_.find(pid);
      if (it == children_.end()) continue;
      const Child child = it->second;
      children_.erase(it);
      const int told = child.told >= 0 ? worker::told_status(child.told) : -1;
      if (child.leaving || child.generation != generation_) continue;
      // Only the process's own decision, told on its pipe: a function's exit(75) is a crash.
      if (told == worker::kExitAbandoned && WIFEXITED(status) &&
          WEXITSTATUS(status) == worker::kExitAbandoned) {
        ++owed_;  // it abandoned a cancelled task: replaced at once, not a crash
        continue;
      }
      log::warning("worker process " + std::to_string(pid) + " " + describe_exit(status) +
                   "; restarting it");
      // A module that kills every worker at once must not make this loop fork without pause.
      respawn_at_ = std::max(respawn_at_, backoff_.died(Clock::now(), wanted_));
      if (child.python) {
        python_owed_ = true;
      } else {
        ++owed_;
      }
    }
  }

  void respawn() {
    while (owed_ > 0 && Clock::now() >= respawn_at_) {
      if (!spawn()) return;
      --owed_;
    }
    if (python_owed_ && Clock::now() >= respawn_at_ && spawn_python()) python_owed_ = false;
  }

  void kill_overdue() {
    const auto now = Clock::now();
    for (auto& [pid, child] : children_) {
      if (child.leaving && now >= child.kill_at) {
        ::kill(pid, SIGKILL);
        child.kill_at = now + std::chrono::hours(24);
      }
    }
  }

  // Stops every worker and exits: politely (SIGTERM, then SIGKILL after the grace) when asked,
  // at once when the parent is gone, since nobody waits for the results any more.
  [[noreturn]] void finish(bool polite) {
    const auto kill_at = Clock::now() + (polite ? options_.stop_grace : Clock::duration::zero());
    for (const auto& [pid, child] : children_) ::kill(pid, polite ? SIGTERM : SIGKILL);
    bool killed = !polite;
    while (!children_.empty()) {
      int status = 0;
      const pid_t pid = ::waitpid(-1, &status, WNOHANG);
      if (pid > 0) {
        children_.erase(pid);
        continue;
      }
      if (pid < 0 && errno == ECHILD) break;
      if (!killed && Clock::now() >= kill_at) {
        for (const auto& [child, info] : children_) ::kill(child, SIGKILL);
        killed = true;
      }
      pollfd fd{signal_fd_, POLLIN, 0};
      ::poll(&fd, 1, 20);
      signalfd_siginfo info;
      while (::read(signal_fd_, &info, sizeof info) == sizeof info) {
      }
    }
    if (polite) {
      msgpack::sbuffer reply;
      Packer(reply).pack_array(1).pack("ok");
      send_message(kControlFd, reply);
    } else if (!options_.folder.empty()) {
      std::error_code ignored;  // the program is gone: nobody else will remove its socket
      std::filesystem::remove_all(options_.folder, ignored);
    }
    ::_exit(0);
  }

  const ManagerOptions& options_;
  std::vector<worker::Function> functions_;
  std::vector<PythonModule> python_;
  std::set<std::string> python_names_;
  std::string worker_program_;
  bool python_owed_ = false;
  const pid_t parent_;
  const pid_t self_;
  int signal_fd_ = -1;
  std::map<pid_t, Child> children_;
  std::uint64_t generation_ = 0;
  unsigned wanted_ = 0;
  unsigned owed_ = 0;
  Clock::time_point respawn_at_{};
  CrashBackoff backoff_;  // common/crash_backoff.hpp, as seppo-worker's supervisor
};

}  // namespace

// The fresh manager process: drop what it inherited from the program that it must not use.
[[noreturn]] void become_manager(int fd, const ManagerOptions& options, pid_t parent) {
  try {
    // Its own process group: a terminal's Ctrl-C reaches the program, which then decides;
    // the manager follows when the program exits.
    ::setpgid(0, 0);
    if (fd != kControlFd) {
      if (::dup2(fd, kControlFd) < 0) ::_exit(1);
    }
    // The program's other descriptors (its sockets, its ZeroMQ contexts' pipes) stay its own.
    if (::close_range(kControlFd + 1, ~0u, 0) != 0) {
      const long max = std::min(::sysconf(_SC_OPEN_MAX), 65536L);
      for (long i = kControlFd + 1; i < max; ++i) ::close(static_cast<int>(i));
    }
    const int null = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (null >= 0) {
      ::dup2(null, STDIN_FILENO);  // workers must not read the program's input
      ::close(null);
    }
    // The program's handlers are meaningless here.
    struct sigaction reset {};
    reset.sa_handler = SIG_DFL;
    sigemptyset(&reset.sa_mask);
    for (int s = 1; s < NSIG; ++s) {
      if (s != SIGKILL && s != SIGSTOP) ::sigaction(s, &reset, nullptr);
    }
    ::signal(SIGPIPE, SIG_IGN);
    log::set_program("seppo-local");
    Keeper keeper(options, parent);
    keeper.run();
  } catch (...) {
  }
  ::_exit(1);
}

}  // namespace seppo::local
