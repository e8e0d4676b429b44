// Real processes for integration tests: started with their output in files, stopped by PID,
// never left behind, and waited for with deadlines rather than sleeps.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

namespace seppo::test {

using namespace std::chrono_literals;

// Polls `condition` every few milliseconds until it holds or `timeout` passes.
bool eventually(const std::function<bool()>& condition, std::chrono::milliseconds timeout = 10s);

// A temporary folder removed with everything in it when the test ends.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
};

std::string read_file(const std::filesystem::path& path);

class Process {
 public:
  // Starts argv[0] with the given arguments; stdout and stderr go to `log` (appended).
  Process(std::vector<std::string> argv, std::filesystem::path log,
          std::vector<std::string> extra_env = {}, const std::string& stdin_file = "");
  ~Process();  // SIGTERM, then SIGKILL after a grace period; always reaped
  Process(const Process&) = delete;
  Process& operator=(const Process&) = delete;

  pid_t pid() const { return pid_; }
  bool running();
  void kill(int signal);
  // Waits for exit; returns the exit status (128+signal when killed), or -1 on timeout.
  int wait(std::chrono::milliseconds timeout = 10s);
  std::string output() const { return read_file(log_); }

 private:
  pid_t pid_ = -1;
  int status_ = -1;
  bool reaped_ = false;
  std::filesystem::path log_;
};

// Runs a command to completion (bounded by `timeout`), returning its exit status and output.
struct Completed {
  int status = -1;
  std::string out;
  std::string err;
};
Completed run(std::vector<std::string> argv, const std::string& input = "",
              std::chrono::milliseconds timeout = 60s, std::vector<std::string> extra_env = {});

}  // namespace seppo::test
