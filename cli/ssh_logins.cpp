#include "cli/ssh_logins.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include <seppo/error.hpp>

#include "cli/interrupt.hpp"

namespace seppo::cli {
namespace {

namespace fs = std::filesystem;

std::string trim(const std::string& text) {
  const auto first = text.find_first_not_of(" \t\r");
  if (first == std::string::npos) return "";
  return text.substr(first, text.find_last_not_of(" \t\r") - first + 1);
}

std::string home_file(const std::string& name) {
  const char* home = std::getenv("HOME");
  return std::string(home != nullptr ? home : "") + "/.parallel/" + name;
}

// One login as seppo-ssh-workers takes it, with N/ from -j when it has none.
std::string login_line(const std::string& login, unsigned jobs, const std::string& where) {
  const std::string text = trim(login);
  if (text.find_first_of(" \t") != std::string::npos || text.rfind('@', 0) == 0 ||
      text.find("//") != std::string::npos) {
    throw Error(where + "'" + text +
                "': seppo map -S takes [N/][user@]host or : (an ssh command with options, a "
                "hostgroup or another ssh program per login is not supported: give --ssh and an "
                "ssh configuration); see docs/parallel.md");
  }
  if (text.find_first_of("'\"\\") != std::string::npos) {
    throw Error(where + "'" + text +
                "': a login with a quote or a backslash is not supported by seppo map -S");
  }
  const auto slash = text.find('/');
  if (slash != std::string::npos) {
    const std::string count = text.substr(0, slash);
    if (count.empty() || count.size() > 4 ||
        count.find_first_not_of("0123456789") != std::string::npos || std::stoi(count) < 1 ||
        slash + 1 == text.size()) {
      throw Error(where + "'" + text + "': expected N/host with N a number of jobs");
    }
    return text;
  }
  return jobs > 0 ? std::to_string(jobs) + "/" + text : text;
}

std::string self_program() {
  std::error_code error;
  const fs::path self = fs::read_symlink("/proc/self/exe", error);
  return error ? std::string("seppo") : self.string();
}

// NAME next to this program (installed: all in one bin folder), or in the build tree's
// SUBDIR beside it, or $VARIABLE, or else NAME on the PATH.
std::string sibling_program(const char* variable, const std::string& name,
                            const std::string& subdir) {
  if (const char* set = std::getenv(variable); set != nullptr && *set != '\0') return set;
  const fs::path dir = fs::path(self_program()).parent_path();
  for (const fs::path& candidate : {dir / name, dir / ".." / subdir / name}) {
    if (::access(candidate.c_str(), X_OK) == 0) return candidate.lexically_normal().string();
  }
  return name;
}

// fork and exec ARGV in its own process group (a terminal's Ctrl-C reaches seppo map alone,
// which then stops them in order), dying with seppo map. stdin, stdout: -1 keeps ours.
pid_t spawn(const std::vector<std::string>& argv, int in, int out) {
  std::vector<char*> args;
  for (const std::string& arg : argv) args.push_back(const_cast<char*>(arg.c_str()));
  args.push_back(nullptr);
  const pid_t parent = ::getpid();
  const pid_t pid = ::fork();
  if (pid < 0) throw Error(std::string("cannot start ") + argv[0] + ": " + std::strerror(errno));
  if (pid == 0) {
    ::setpgid(0, 0);
    ::prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (::getppid() != parent) ::_exit(127);
    if (in >= 0) ::dup2(in, STDIN_FILENO);
    if (out >= 0) ::dup2(out, STDOUT_FILENO);
    ::execvp(args[0], args.data());
    const std::string message = "seppo: cannot run " + argv[0] + ": " + std::strerror(errno) + "\n";
    [[maybe_unused]] const ssize_t n = ::write(STDERR_FILENO, message.data(), message.size());
    ::_exit(127);
  }
  return pid;
}

// Waits for PID up to `limit`, then sends it SIGKILL (its group with it) and reaps it.
void reap(pid_t pid, std::chrono::milliseconds limit) {
  const auto end = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < end) {
    if (::waitpid(pid, nullptr, WNOHANG) != 0) return;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  ::kill(-pid, SIGKILL);
  ::kill(pid, SIGKILL);
  ::waitpid(pid, nullptr, 0);
}

}  // namespace

std::string ssh_login_lines(const std::vector<std::string>& sshlogins,
                            const std::vector<std::string>& slf, unsigned jobs) {
  std::string lines;
  std::vector<std::string> files = slf;
  for (const std::string& value : sshlogins) {
    std::stringstream list(value);
    for (std::string login; std::getline(list, login, ',');) {
      login = trim(login);
      if (login.empty()) continue;
      if (login == "..") {  // parallel: the logins of ~/.parallel/sshloginfile
        files.push_back(login);
        continue;
      }
      if (login == "-") {
        throw Error(
            "-S -: reading the logins from stdin is not supported (stdin holds the "
            "inputs); give --slf FILE; see docs/parallel.md");
      }
      lines += login_line(login, jobs, "-S ") + "\n";
    }
  }
  for (std::size_t f = 0; f < files.size(); ++f) {  // files may grow: by index
    const std::string file = files[f];
    const char* config = std::getenv("XDG_CONFIG_HOME");
    if (file == ".." && !fs::exists(home_file("sshloginfile")) && config != nullptr &&
        fs::exists(std::string(config) + "/parallel/sshloginfile")) {
      files.push_back(std::string(config) + "/parallel/sshloginfile");
      continue;
    }
    std::string path = file == ".."  ? home_file("sshloginfile")
                       : file == "." ? std::string("/etc/parallel/sshloginfile")
                                     : file;
    if (!fs::exists(path) && file.find('/') == std::string::npos && fs::exists(home_file(file))) {
      path = home_file(file);
    }
    std::ifstream in(path);
    if (!in) throw Error("--slf " + file + ": cannot read " + path);
    int number = 0;
    for (std::string line; std::getline(in, line);) {
      ++number;
      line = trim(line);
      if (line.empty() || line[0] == '#') continue;
      lines +=
          login_line(line, jobs, "--slf " + path + " line " + std::to_string(number) + ": ") + "\n";
    }
  }
  if (lines.empty()) throw Error("-S, --slf: no ssh logins given");
  return lines;
}

SshWorkers::SshWorkers(const std::string& login_lines, const SshWorkersOptions& options) {
  const char* tmp = std::getenv("TMPDIR");
  std::string pattern =
      std::string(tmp != nullptr && *tmp != '\0' ? tmp : "/tmp") + "/seppo-S.XXXXXX";
  if (pattern.size() > 80) pattern = "/tmp/seppo-S.XXXXXX";  // a socket path fits in 108 bytes
  if (::mkdtemp(pattern.data()) == nullptr) {
    throw Error("cannot make a folder for -S's broker: " + std::string(std::strerror(errno)));
  }
  folder_ = pattern;
  endpoint_ = "ipc://" + folder_ + "/broker";
  try {
    {
      std::ofstream hosts(folder_ + "/sshlogins");
      hosts << login_lines;
      if (!hosts.flush()) throw Error("cannot write " + folder_ + "/sshlogins");
    }
    broker_ = spawn({sibling_program("SEPPO_BROKER_PROGRAM", "seppo-broker", "broker"), "--bind",
                     endpoint_, "--log-level", "error"},
                    -1, -1);
    // Bounded: the broker binds its socket at once, or has exited.
    const auto end = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (!fs::exists(folder_ + "/broker")) {
      if (::waitpid(broker_, nullptr, WNOHANG) != 0) {
        broker_ = -1;
        throw Error("-S: seppo-broker exited at once");
      }
      if (std::chrono::steady_clock::now() > end) throw Error("-S: seppo-broker did not start");
      interrupt::check();
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    std::vector<std::string> argv = {
        sibling_program("SEPPO_SSH_WORKERS", "seppo-ssh-workers", "worker"),
        "--broker",
        endpoint_,
        "--seppo-program",
        self_program(),
        "--state",
        folder_ + "/state"};
    if (const char* worker = std::getenv("SEPPO_WORKER_PROGRAM"); worker != nullptr && *worker) {
      argv.insert(argv.end(), {"--worker-program", worker});
    }
    if (!options.ssh.empty()) argv.insert(argv.end(), {"--ssh", options.ssh});
    if (!options.local_shell.empty())
      argv.insert(argv.end(), {"--local-shell", options.local_shell});
    argv.insert(argv.end(), {"run", folder_ + "/sshlogins", "--"});
    argv.insert(argv.end(), options.worker_args.begin(), options.worker_args.end());
    int in[2], out[2];
    if (::pipe2(in, O_CLOEXEC) != 0) throw Error("-S: pipe: " + std::string(std::strerror(errno)));
    if (::pipe2(out, O_CLOEXEC) != 0) {
      ::close(in[0]);
      ::close(in[1]);
      throw Error("-S: pipe: " + std::string(std::strerror(errno)));
    }
    runner_ = spawn(argv, in[0], out[1]);
    ::close(in[0]);
    ::close(out[1]);
    runner_stdin_ = in[1];
    // seppo-ssh-workers prints "ready" once every worker registered; it names failures itself.
    std::string said;
    for (;;) {
      pollfd fds[2] = {{out[0], POLLIN, 0}, {interrupt::fd(), POLLIN, 0}};
      const int n = ::poll(fds, interrupt::fd() >= 0 ? 2 : 1, 200);
      interrupt::check();
      if (n <= 0) continue;
      char buffer[256];
      const ssize_t got = ::read(out[0], buffer, sizeof buffer);
      if (got < 0 && errno == EINTR) continue;
      if (got <= 0) break;
      said.append(buffer, static_cast<std::size_t>(got));
      if (said.find("ready\n") != std::string::npos) break;
    }
    ::close(out[0]);
    if (said.find("ready\n") == std::string::npos) {
      throw Error("-S: the workers did not all start (seppo-ssh-workers says why above)");
    }
  } catch (...) {
    // Interrupted or failed while starting: the runner stops its sessions at once (SIGTERM),
    // rather than waiting for registrations that will not come.
    if (runner_ > 0) ::kill(runner_, SIGTERM);
    stop();
    throw;
  }
}

SshWorkers::~SshWorkers() {
  stop();
}

void SshWorkers::stop() {
  if (runner_stdin_ >= 0) ::close(runner_stdin_);  // every session ends: its worker stops
  runner_stdin_ = -1;
  if (runner_ > 0) reap(runner_, std::chrono::seconds(70));
  runner_ = -1;
  if (broker_ > 0) {
    ::kill(broker_, SIGTERM);
    reap(broker_, std::chrono::seconds(5));
  }
  broker_ = -1;
  std::error_code ignored;
  if (!folder_.empty()) fs::remove_all(folder_, ignored);
  folder_.clear();
}

}  // namespace seppo::cli
