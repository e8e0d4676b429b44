#include "worker/supervisor.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <map>
#include <string>
#include <thread>

#include "common/crash_backoff.hpp"
#include "common/exit_status.hpp"
#include "common/log.hpp"
#include "common/signals.hpp"

namespace seppo::worker {
namespace {

using Clock = std::chrono::steady_clock;

struct Child {
  Clock::time_point started;
  unsigned generation = 0;  // of the configuration it started with; SIGHUP makes a new one
  unsigned slot = 1;        // {%} of named commands: 1..processes, reused by its replacement
  int told = -1;            // the read end of the pipe the child tells its exit status on
};

// In a supervised child: the write end of its pipe to the supervisor.
int told_fd = -1;

void tell(int status) {
  if (told_fd < 0) return;
  const unsigned char byte = static_cast<unsigned char>(status);
  while (::write(told_fd, &byte, 1) < 0 && errno == EINTR) {
  }
}

}  // namespace

int told_status(int fd) {
  unsigned char byte = 0;
  ssize_t n;
  while ((n = ::read(fd, &byte, 1)) < 0 && errno == EINTR) {
  }
  ::close(fd);
  return n == 1 ? byte : -1;
}

bool open_status_pipe(int fds[2]) {
  return ::pipe2(fds, O_CLOEXEC | O_NONBLOCK) == 0;
}

void tell_status_on(int fd) {
  told_fd = fd;
}

void exit_process(int status) {
  tell(status);
  ::_exit(status);
}

int supervise(const SupervisorOptions& options, const std::function<int()>& child) {
  SignalPipe signals({SIGINT, SIGTERM, SIGCHLD, SIGHUP});
  std::map<pid_t, Child> children;
  CrashBackoff backoff(options.restart_window);
  const pid_t parent = ::getpid();
  unsigned generation = 0;
  pid_t retiring = 0;  // the child being replaced after a SIGHUP, one at a time

  auto spawn = [&]() -> bool {
    unsigned slot = 1;  // the lowest no running child holds
    while (std::any_of(children.begin(), children.end(),
                       [slot](const auto& c) { return c.second.slot == slot; })) {
      ++slot;
    }
    // Until the child has its own handlers, a signal sent to it would run the supervisor's,
    // which writes to the supervisor's pipe: a SIGTERM forwarded to a child forked a moment
    // before would be lost. Blocked across the fork, it waits for the child's own disposition.
    sigset_t blocked;
    sigset_t previous;
    sigemptyset(&blocked);
    for (int s : {SIGINT, SIGTERM, SIGCHLD, SIGHUP}) sigaddset(&blocked, s);
    int told[2];
    if (!open_status_pipe(told)) {
      log::error(std::string("pipe failed: ") + std::strerror(errno));
      return false;
    }
    ::pthread_sigmask(SIG_BLOCK, &blocked, &previous);
    const pid_t pid = ::fork();
    if (pid != 0) ::pthread_sigmask(SIG_SETMASK, &previous, nullptr);
    if (pid < 0) {
      log::error(std::string("fork failed: ") + std::strerror(errno));
      ::close(told[0]);
      ::close(told[1]);
      return false;
    }
    if (pid == 0) {
      for (const auto& [other, c] : children) ::close(c.told);
      ::close(told[0]);
      tell_status_on(told[1]);
      // The child must not outlive its supervisor, even when the supervisor is SIGKILLed.
      ::prctl(PR_SET_PDEATHSIG, SIGTERM);
      if (::getppid() != parent) ::_exit(0);
      struct sigaction reset {};
      reset.sa_handler = SIG_DFL;
      for (int s : {SIGINT, SIGTERM, SIGCHLD}) ::sigaction(s, &reset, nullptr);
      // Reloading is the supervisor's job; a SIGHUP sent to the whole group must not kill us.
      reset.sa_handler = SIG_IGN;
      ::sigaction(SIGHUP, &reset, nullptr);
      ::pthread_sigmask(SIG_SETMASK, &previous, nullptr);
      ::setenv("SEPPO_WORKER_SLOT", std::to_string(slot).c_str(), 1);
      // Returning is the session's own decision (stopped, forbidden, idle): told as such.
      exit_process(child());
    }
    ::close(told[1]);
    children[pid] = Child{Clock::now(), generation, slot, told[0]};
    return true;
  };

  for (unsigned i = 0; i < options.processes; ++i) {
    if (!spawn()) return 1;
  }
  log::info("started " + std::to_string(options.processes) + " worker processes");

  bool stopping = false;
  bool given_up = false;  // a child exited with options.no_restart_status
  Clock::time_point kill_at{};
  Clock::time_point respawn_at{};
  unsigned owed = 0;  // children to restart once the crash-loop delay has passed
  while (!children.empty() || (!stopping && owed > 0)) {
    int timeout = 1000;
    if (stopping) timeout = 100;
    if (owed > 0) timeout = 50;
    pollfd fd{signals.fd(), POLLIN, 0};
    ::poll(&fd, 1, timeout);
    while (const int s = signals.take()) {
      if ((s == SIGINT || s == SIGTERM) && !stopping) {
        stopping = true;
        kill_at = Clock::now() + options.stop_grace;
        log::info("stopping " + std::to_string(children.size()) + " worker processes");
        for (const auto& [pid, started] : children) ::kill(pid, SIGTERM);
      } else if (s == SIGHUP && !stopping) {
        if (!options.reload) {
          log::info("received SIGHUP: nothing to reload");
        } else if (options.reload()) {
          ++generation;  // every child older than this is replaced below
          log::info("received SIGHUP: replacing the worker processes one at a time");
        }
      }
    }
    int status = 0;
    pid_t pid;
    while ((pid = ::waitpid(-1, &status, WNOHANG)) > 0) {
      const auto found = children.find(pid);
      if (found == children.end()) continue;
      const int told = told_status(found->second.told);
      children.erase(found);
      if (stopping) continue;
      // Its own decision only when it told it and exits with it: a function's exit is a crash.
      const auto own = [&](int wanted) {
        return wanted >= 0 && told == wanted && WIFEXITED(status) && WEXITSTATUS(status) == wanted;
      };
      if (pid == retiring) {
        retiring = 0;
        if (!spawn()) ++owed;
        continue;
      }
      if (own(options.no_restart_status)) {
        log::error("worker process " + std::to_string(pid) +
                   " cannot serve this broker; not "
                   "restarting it");
        given_up = true;
        continue;
      }
      if (own(options.replace_status)) {
        log::info("worker process " + std::to_string(pid) +
                  " abandoned a cancelled task; replacing it");
        if (!spawn()) ++owed;
        continue;
      }
      if (own(options.done_status)) {
        log::info("worker process " + std::to_string(pid) + " is done");
        continue;
      }
      log::warning("worker process " + std::to_string(pid) + " " + describe_exit(status) +
                   (told < 0 && WIFEXITED(status)
                        ? " without the worker deciding it (a function ended the process)"
                        : "") +
                   "; restarting it");
      // Crash loops back off: a module that dies on load must not fork thousands of times.
      respawn_at = std::max(respawn_at, backoff.died(Clock::now(), options.processes));
      ++owed;
    }
    if (stopping && Clock::now() >= kill_at && !children.empty()) {
      log::warning("worker processes did not stop in time; killing them");
      for (const auto& [child_pid, started] : children) ::kill(child_pid, SIGKILL);
      kill_at = Clock::now() + std::chrono::hours(1);
    }
    while (!stopping && owed > 0 && Clock::now() >= respawn_at) {
      if (!spawn()) break;
      --owed;
    }
    // One at a time, so the host keeps serving while its processes take up the new modules.
    if (!stopping && retiring == 0) {
      for (const auto& [child_pid, c] : children) {
        if (c.generation == generation) continue;
        retiring = child_pid;
        log::info("replacing worker process " + std::to_string(child_pid));
        ::kill(child_pid, SIGTERM);
        break;
      }
    }
  }
  log::info("all worker processes stopped");
  return given_up ? 1 : 0;
}

}  // namespace seppo::worker
