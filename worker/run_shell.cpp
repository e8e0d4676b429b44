// Running one command line: fork, a guard process, pipes read with poll.
//
// Process tree:  worker thread -> guard (new process group) -> SHELL -c SCRIPT SHELL ARGS -> ...
// The guard exists so that a worker killed with SIGKILL leaves nothing behind: the kernel sends
// the guard SIGTERM when the worker's thread dies (PR_SET_PDEATHSIG), and the guard then kills
// its whole process group, which holds the shell and everything the shell started. The guard
// reports the shell's exact wait status through a pipe of its own. It is also the subreaper of
// everything the shell starts, so what left the group (`setsid cmd &`) is found and killed too.
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "worker/shell_command.hpp"

namespace seppo::worker {
namespace {

class Fd {
 public:
  Fd() = default;
  explicit Fd(int fd) : fd_(fd) {}
  ~Fd() { reset(); }
  Fd(Fd&& other) noexcept : fd_(other.fd_) { other.fd_ = -1; }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  int get() const { return fd_; }
  void reset() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }

 private:
  int fd_ = -1;
};

struct Pipe {
  Fd read, write;
};

Pipe make_pipe() {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) {
    throw std::runtime_error(std::string("pipe: ") + std::strerror(errno));
  }
  return Pipe{Fd(fds[0]), Fd(fds[1])};
}

// In the guard and the shell only async-signal-safe calls: the worker has other threads, whose
// locks a forked child may have inherited held.
void write_text(int fd, const char* text) {
  [[maybe_unused]] ssize_t n = ::write(fd, text, std::strlen(text));
}

void kill_own_group(int) {
  ::kill(0, SIGKILL);
}

// The guard's children once the shell has exited: orphans of the shell's tree, which the
// kernel hands to the guard as their subreaper, whichever session or group they moved to.
// Killed and reaped, a few generations deep (a killed orphan's own children come next).
// Async-signal-safe: /proc read with open/read, numbers parsed by hand.
void kill_orphans() {
  char path[64] = "/proc/self/task/";
  char* p = path + std::strlen(path);
  char digits[16];
  int n = 0;
  for (pid_t self = ::getpid(); self > 0 && n < 15; self /= 10) digits[n++] = '0' + self % 10;
  while (n > 0) *p++ = digits[--n];
  std::memcpy(p, "/children", 10);
  for (int round = 0; round < 16; ++round) {
    const int fd = ::open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return;
    // Read to the end of the file or of the buffer. A pid is acted on only once the separator
    // after it was read: one cut by the buffer's end ("123456" read as "1234") would name an
    // unrelated process; it is read whole in the next round, once those before it are gone.
    char text[4096];
    ssize_t got = 0;
    bool whole = false;
    while (got < static_cast<ssize_t>(sizeof text)) {
      const ssize_t r = ::read(fd, text + got, sizeof text - static_cast<std::size_t>(got));
      if (r < 0 && errno == EINTR) continue;
      if (r <= 0) {
        whole = r == 0;
        break;
      }
      got += r;
    }
    ::close(fd);
    if (got <= 0) return;
    int pids[1024];
    const std::size_t count =
        whole_pids(text, static_cast<std::size_t>(got), whole, pids, std::size(pids));
    for (std::size_t k = 0; k < count; ++k) {
      ::kill(pids[k], SIGKILL);
      int status;
      while (::waitpid(pids[k], &status, 0) < 0 && errno == EINTR) {
      }
    }
    if (count == 0) return;
  }
}

[[noreturn]] void guard(const char* const* argv, const char* const* envp, int fds[4], pid_t worker,
                        const char* cwd) {
  struct sigaction action {};
  action.sa_handler = SIG_DFL;
  sigemptyset(&action.sa_mask);
  // The worker's handlers write to its signal pipe: none of that here.
  for (int s = 1; s < NSIG; ++s) ::sigaction(s, &action, nullptr);
  ::setpgid(0, 0);
  ::prctl(PR_SET_CHILD_SUBREAPER, 1);
  struct sigaction on_worker_death = action;
  on_worker_death.sa_handler = kill_own_group;
  ::sigaction(SIGTERM, &on_worker_death, nullptr);
  ::prctl(PR_SET_PDEATHSIG, SIGTERM);
  sigset_t none;
  sigemptyset(&none);
  ::sigprocmask(SIG_SETMASK, &none, nullptr);
  if (::getppid() != worker) kill_own_group(0);  // it died before prctl took effect

  // stdin, stdout, stderr and the status pipe become 0..3; everything else the worker had open
  // (its sockets) is closed. Moved above 3 first, so no dup2 overwrites a source still needed.
  int high[4];
  for (int i = 0; i < 4; ++i) {
    high[i] = ::fcntl(fds[i], F_DUPFD_CLOEXEC, 10);
    if (high[i] < 0) ::_exit(127);
  }
  for (int i = 0; i < 4; ++i) {
    if (::dup2(high[i], i) < 0) ::_exit(127);
  }
  ::close_range(4, ~0U, 0);

  const pid_t shell = ::fork();
  if (shell == 0) {
    ::sigaction(SIGTERM, &action, nullptr);
    ::close(3);
    if (cwd[0] != '\0' && ::chdir(cwd) != 0) {  // seppo-worker --client-folders
      write_text(2, "seppo-worker: cannot enter the client's folder ");
      write_text(2, cwd);
      write_text(2, ": ");
      const char* why = ::strerrordesc_np(errno);
      write_text(2, why ? why : "unknown error");
      write_text(2, "\n");
      ::_exit(127);
    }
    ::execve(argv[0], const_cast<char* const*>(argv), const_cast<char* const*>(envp));
    write_text(2, "seppo-worker: cannot run the shell ");
    write_text(2, argv[0]);
    write_text(2, ": ");
    const char* why = ::strerrordesc_np(errno);  // untranslated: no locale, no locks
    write_text(2, why ? why : "unknown error");
    write_text(2, "\n");
    ::_exit(127);
  }
  int status = 127 << 8;
  if (shell < 0) write_text(2, "seppo-worker: cannot start the shell: fork failed\n");
  // Only the shell's tree holds stdout and stderr now, so the worker sees them close with it.
  ::close(1);
  ::close(2);
  while (shell > 0 && ::waitpid(shell, &status, 0) < 0 && errno == EINTR) {
  }
  [[maybe_unused]] ssize_t n = ::write(3, &status, sizeof status);
  // The item ends with its shell: what the command left running in the background would hold
  // stdout open (the worker would wait for it forever) and outlive the item. The status is
  // written, so the group's end, the guard's included, is no one's error. First what left the
  // group (setsid), which kill(0) would miss; then the group.
  kill_orphans();
  ::kill(0, SIGKILL);
  ::_exit(0);
}

void wait_for(pid_t pid, int* status) {
  while (::waitpid(pid, status, 0) < 0 && errno == EINTR) {
  }
}

}  // namespace

std::size_t whole_pids(const char* text, std::size_t size, bool at_end, int* out,
                       std::size_t capacity) {
  std::size_t count = 0;
  int pid = 0;
  bool digits = false;
  for (std::size_t i = 0; i <= size && count < capacity; ++i) {
    if (i < size && text[i] >= '0' && text[i] <= '9') {
      pid = pid * 10 + (text[i] - '0');
      digits = true;
      continue;
    }
    if (digits && pid > 0 && (i < size || at_end)) out[count++] = pid;
    pid = 0;
    digits = false;
  }
  return count;
}

CommandRun run_shell(const std::string& line, const CommandLimits& limits) {
  return run_shell(ShellScript{line, {}, std::nullopt}, limits);
}

// Writes to the command's stdin what the pipe has room for, from `done` on. False once there is
// no more to write: all of it, or the command stopped reading (EPIPE, as `head` does; the rest is
// not its to read). SIGPIPE is held back in this thread meanwhile and the one EPIPE raises
// taken, so it cannot kill the worker.
bool feed_stdin(int fd, const std::string& data, std::size_t& done) {
  sigset_t pipe_signal, previous;
  sigemptyset(&pipe_signal);
  sigaddset(&pipe_signal, SIGPIPE);
  ::pthread_sigmask(SIG_BLOCK, &pipe_signal, &previous);
  bool more = true;
  while (done < data.size()) {
    const ssize_t n = ::write(fd, data.data() + done, data.size() - done);
    if (n > 0) {
      done += static_cast<std::size_t>(n);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
    if (n < 0 && errno == EPIPE) {
      const timespec now{};
      ::sigtimedwait(&pipe_signal, nullptr, &now);
    }
    more = false;
    break;
  }
  if (done >= data.size()) more = false;
  ::pthread_sigmask(SIG_SETMASK, &previous, nullptr);
  return more;
}

CommandRun run_shell(const ShellScript& script, const CommandLimits& limits) {
  Pipe out = make_pipe(), err = make_pipe(), status = make_pipe();
  // stdin: /dev/null, or the item's block (seppo map --pipe) through a pipe, as GNU parallel
  // gives it: a seekable file would change what commands do (wc pads its counts only for a
  // pipe, head seeks back to the end of what it printed). Fed from the loop below as the command
  // reads it.
  std::optional<Pipe> in;
  std::optional<Fd> devnull;
  if (script.stdin_data) {
    in.emplace(make_pipe());
    if (::fcntl(in->write.get(), F_SETFL, O_NONBLOCK) != 0) {
      throw std::runtime_error(std::string("stdin block: ") + std::strerror(errno));
    }
  } else {
    devnull.emplace(::open("/dev/null", O_RDONLY | O_CLOEXEC));
    if (devnull->get() < 0)
      throw std::runtime_error(std::string("/dev/null: ") + std::strerror(errno));
  }
  // SHELL -c SCRIPT SHELL VALUES...: the values are $1, $2... ($0 is the shell, as with -c alone).
  std::vector<const char*> argv_list = {limits.shell.c_str(), "-c", script.text.c_str(),
                                        limits.shell.c_str()};
  for (const std::string& value : script.parameters) argv_list.push_back(value.c_str());
  argv_list.push_back(nullptr);
  const char* const* argv = argv_list.data();
  // The environment: this process's, with the item's variables (seppo map --env, allowed by the
  // worker's operator) in place of any of the same name. Built before fork: no allocation there.
  std::vector<const char*> env_list;
  for (char** e = environ; *e != nullptr; ++e) {
    const std::string_view entry(*e);
    const std::string_view name = entry.substr(0, entry.find('='));
    bool replaced = false;
    for (const std::string& set : script.environment) {
      replaced = replaced || std::string_view(set).substr(0, set.find('=')) == name;
    }
    if (!replaced) env_list.push_back(*e);
  }
  for (const std::string& set : script.environment) env_list.push_back(set.c_str());
  env_list.push_back(nullptr);
  int child_fds[4] = {in ? in->read.get() : devnull->get(), out.write.get(), err.write.get(),
                      status.write.get()};
  const pid_t worker = ::getpid();

  // No signal handler may run in the child before it resets them.
  sigset_t all, previous;
  sigfillset(&all);
  ::pthread_sigmask(SIG_SETMASK, &all, &previous);
  const pid_t guard_pid = ::fork();
  if (guard_pid == 0) guard(argv, env_list.data(), child_fds, worker, limits.cwd.c_str());
  const int fork_error = errno;
  ::pthread_sigmask(SIG_SETMASK, &previous, nullptr);
  if (guard_pid < 0) throw std::runtime_error(std::string("fork: ") + std::strerror(fork_error));
  // Also here, so killing the group cannot race the guard's own setpgid.
  ::setpgid(guard_pid, guard_pid);
  devnull.reset();  // the optional: closes it
  if (in) in->read.reset();
  out.write.reset();
  err.write.reset();
  status.write.reset();

  CommandRun run;
  std::string err_all;
  // The status pipe is polled with the output: a command that closes its stdout and stderr
  // early must still be subject to the deadline and to cancelling while it runs on.
  pollfd fds[4] = {{out.read.get(), POLLIN, 0},
                   {err.read.get(), POLLIN, 0},
                   {status.read.get(), POLLIN, 0},
                   {in ? in->write.get() : -1, POLLOUT, 0}};
  std::size_t fed = 0;
  const auto end_stdin = [&] {
    fds[3].fd = -1;
    if (in) in->write.reset();  // the command reads the end of its input
  };
  if (in && script.stdin_data->empty()) end_stdin();
  int shell_status = 0;
  bool reported = false;
  char buffer[65536];
  const auto deadline = std::chrono::steady_clock::now() + limits.timeout;
  // Once the shell has exited, what it wrote is in the pipes already: read it, and wait only a
  // short while for their end, which a process that escaped the guard could hold off for ever.
  constexpr std::chrono::milliseconds kDrainGrace{200};
  std::chrono::steady_clock::time_point drain_until{};
  unsigned reads_past_grace = 0;
  const auto stop = [&](bool& why) {
    why = true;
    ::kill(-guard_pid, SIGKILL);
    fds[0].fd = fds[1].fd = fds[2].fd = -1;  // a process that left the group could hold them
    end_stdin();
  };
  while (fds[0].fd >= 0 || fds[1].fd >= 0 || fds[2].fd >= 0) {
    // Woken at least every 50 ms when someone may cancel, at the deadline when there is one.
    int wait_ms = limits.cancel != nullptr ? 50 : -1;
    if (limits.timeout.count() > 0) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
                            deadline - std::chrono::steady_clock::now())
                            .count();
      if (left <= 0) {
        stop(run.timed_out);
        break;
      }
      wait_ms = wait_ms < 0 ? static_cast<int>(std::min<long long>(left, 1 << 30))
                            : static_cast<int>(std::min<long long>(left, wait_ms));
    }
    if (limits.cancel != nullptr && limits.cancel->load()) {
      stop(run.cancelled);
      break;
    }
    // Past the grace, what is ready is still read (this thread may have been descheduled for
    // all of it), without waiting, and a bounded number of times.
    bool past_grace = false;
    if (reported) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
                            drain_until - std::chrono::steady_clock::now())
                            .count();
      past_grace = left <= 0;
      if (past_grace && ++reads_past_grace > 1024) break;
      wait_ms = past_grace    ? 0
                : wait_ms < 0 ? static_cast<int>(left)
                              : static_cast<int>(std::min<long long>(left, wait_ms));
    }
    const int ready = ::poll(fds, 4, wait_ms);
    if (ready == 0) {
      if (past_grace) break;
      continue;
    }
    if (ready < 0) {
      if (errno == EINTR) continue;
      ::kill(-guard_pid, SIGKILL);
      break;
    }
    if (fds[3].fd >= 0 && fds[3].revents != 0 && !feed_stdin(fds[3].fd, *script.stdin_data, fed))
      end_stdin();
    if (fds[2].fd >= 0 && fds[2].revents != 0) {
      const ssize_t n = ::read(fds[2].fd, &shell_status, sizeof shell_status);
      if (!(n < 0 && errno == EINTR)) {
        reported = n == static_cast<ssize_t>(sizeof shell_status);
        fds[2].fd = -1;
        if (reported) drain_until = std::chrono::steady_clock::now() + kDrainGrace;
      }
    }
    for (int i = 0; i < 2; ++i) {
      if (fds[i].fd < 0 || fds[i].revents == 0) continue;
      const ssize_t n = ::read(fds[i].fd, buffer, sizeof buffer);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) {
        fds[i].fd = -1;
        continue;
      }
      if (i == 0) {
        run.out.append(buffer, static_cast<std::size_t>(n));
        if (run.out.size() > limits.max_stdout) {
          run.out_over_limit = true;
          ::kill(-guard_pid, SIGKILL);
          fds[0].fd = fds[1].fd = -1;  // a process that left the group could hold them open
        }
      } else {
        err_all.append(buffer, static_cast<std::size_t>(n));
        if (err_all.size() > 2 * limits.stderr_tail + sizeof buffer) {
          err_all.erase(0, err_all.size() - limits.stderr_tail);
        }
      }
    }
  }
  reported = reported && !run.out_over_limit && !run.timed_out && !run.cancelled;
  int guard_status = 0;
  wait_for(guard_pid, &guard_status);
  // Without a report the guard itself was killed (someone signalled the group): that is how the
  // command ended.
  run.wait_status = reported ? shell_status : guard_status;
  run.err_tail = err_all.size() > limits.stderr_tail
                     ? err_all.substr(err_all.size() - limits.stderr_tail)
                     : std::move(err_all);
  return run;
}

std::string describe_wait_status(int wait_status) {
  if (WIFEXITED(wait_status)) {
    return "exited with status " + std::to_string(WEXITSTATUS(wait_status));
  }
  if (WIFSIGNALED(wait_status)) {
    const int signal = WTERMSIG(wait_status);
    const char* abbreviation = ::sigabbrev_np(signal);
    return "killed by signal " + std::to_string(signal) +
           (abbreviation ? std::string(" (SIG") + abbreviation + ")" : std::string());
  }
  return "ended with wait status " + std::to_string(wait_status);
}

}  // namespace seppo::worker
