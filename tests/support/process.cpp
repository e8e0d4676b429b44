#include "tests/support/process.hpp"

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <thread>

extern char** environ;

namespace seppo::test {

bool eventually(const std::function<bool()>& condition, std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (true) {
    if (condition()) return true;
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(10ms);
  }
}

TempDir::TempDir() {
  std::string pattern = (std::filesystem::temp_directory_path() / "seppo-test-XXXXXX").string();
  if (::mkdtemp(pattern.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
  path_ = pattern;
}

TempDir::~TempDir() {
  if (std::getenv("SEPPO_KEEP_TMP")) return;  // to read the logs of a failing test
  std::error_code ignored;
  std::filesystem::remove_all(path_, ignored);
}

std::string read_file(const std::filesystem::path& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

namespace {

std::vector<char*> c_strings(std::vector<std::string>& strings) {
  std::vector<char*> out;
  for (auto& s : strings) out.push_back(s.data());
  out.push_back(nullptr);
  return out;
}

std::vector<std::string> environment(const std::vector<std::string>& extra) {
  std::vector<std::string> env;
  for (char** e = environ; *e != nullptr; ++e) {
    const std::string entry = *e;
    const std::string name = entry.substr(0, entry.find('='));
    bool overridden = false;
    for (const auto& x : extra) overridden |= x.substr(0, x.find('=')) == name;
    if (!overridden) env.push_back(entry);
  }
  env.insert(env.end(), extra.begin(), extra.end());
  return env;
}

pid_t spawn(std::vector<std::string> argv, const std::string& in, const std::string& out,
            const std::string& err, const std::vector<std::string>& extra_env) {
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 0, in.empty() ? "/dev/null" : in.c_str(), O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&actions, 1, out.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
  posix_spawn_file_actions_addopen(&actions, 2, err.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
  std::vector<std::string> env = environment(extra_env);
  auto args = c_strings(argv);
  auto envp = c_strings(env);
  pid_t pid = -1;
  const int rc = posix_spawn(&pid, args[0], &actions, nullptr, args.data(), envp.data());
  posix_spawn_file_actions_destroy(&actions);
  if (rc != 0) throw std::runtime_error("cannot start " + argv[0] + ": " + std::strerror(rc));
  return pid;
}

int decode(int status) {
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return -1;
}

}  // namespace

Process::Process(std::vector<std::string> argv, std::filesystem::path log,
                 std::vector<std::string> extra_env, const std::string& stdin_file)
    : log_(std::move(log)) {
  pid_ = spawn(std::move(argv), stdin_file, log_.string(), log_.string(), extra_env);
}

Process::~Process() {
  if (reaped_) return;
  kill(SIGTERM);
  if (wait(10s) == -1) {
    kill(SIGKILL);
    wait(10s);
  }
}

bool Process::running() {
  if (reaped_) return false;
  int status = 0;
  if (::waitpid(pid_, &status, WNOHANG) == pid_) {
    reaped_ = true;
    status_ = decode(status);
    return false;
  }
  return true;
}

void Process::kill(int signal) {
  if (!reaped_) ::kill(pid_, signal);
}

int Process::wait(std::chrono::milliseconds timeout) {
  if (eventually([&] { return !running(); }, timeout)) return status_;
  return -1;
}

Completed run(std::vector<std::string> argv, const std::string& input,
              std::chrono::milliseconds timeout, std::vector<std::string> extra_env) {
  TempDir dir;
  const auto in = dir.path() / "in";
  const auto out = dir.path() / "out";
  const auto err = dir.path() / "err";
  {
    std::ofstream f(in);
    f << input;
  }
  const pid_t pid = spawn(std::move(argv), in.string(), out.string(), err.string(), extra_env);
  Completed result;
  int status = 0;
  const bool done = eventually([&] { return ::waitpid(pid, &status, WNOHANG) == pid; }, timeout);
  if (!done) {
    ::kill(pid, SIGKILL);
    ::waitpid(pid, &status, 0);
    result.status = -1;
  } else {
    result.status = decode(status);
  }
  result.out = read_file(out);
  result.err = read_file(err);
  return result;
}

}  // namespace seppo::test
