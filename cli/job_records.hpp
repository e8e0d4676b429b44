// GNU parallel's --joblog and --results, written the same way for commands this seppo runs
// (--local) and for a worker's named commands (through a broker, from each item's record).
#pragma once

#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

namespace seppo::cli {

// One line of the job log, in parallel's columns.
struct JobLogLine {
  std::uint64_t seq = 0;
  std::string host = ":";  // parallel's name for this machine
  double start_epoch = 0;  // seconds since the Unix epoch
  double runtime_s = 0;
  std::uint64_t received = 0;  // bytes of stdout
  int exitval = 0;             // -1 when killed by a signal, 255 when it could not run
  int signal = 0;
  std::string command;  // the command line as --dry-run prints it
};

class JobLog {
 public:
  // Empty `path`: no log. Throws seppo::Error when the file cannot be written.
  explicit JobLog(const std::string& path);
  ~JobLog();
  JobLog(const JobLog&) = delete;
  JobLog& operator=(const JobLog&) = delete;
  // Flushed at once, as parallel does: `tail -f` shows a job when it ends.
  void write(const JobLogLine& line);

 private:
  std::FILE* file_ = nullptr;
};

// The --results path of a job: DIR/1/ARG1/2/ARG2..., each argument with \ as \\ and / as \_.
std::string results_folder(const std::string& dir, const std::vector<std::string>& args);

// DIR/1/ARG.../{seq,stdout,stderr}. Throws seppo::Error when they cannot be written.
void write_results(const std::string& dir, const std::vector<std::string>& args, std::uint64_t seq,
                   const std::string& out, const std::string& err);

// --tag: every line of `out` (the last one may lack its newline) prefixed with `tag` and a tab.
std::string tag_lines(const std::string& out, const std::string& tag);

// A job's arguments as --tag shows them: space-separated.
std::string joined(const std::vector<std::string>& args);

}  // namespace seppo::cli
