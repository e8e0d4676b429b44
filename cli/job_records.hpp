// GNU parallel's --joblog and --results, written the same way for commands this seppo runs
// (--local) and for a worker's named commands (through a broker, from each item's record).
#pragma once

#include <cstdint>
#include <cstdio>
#include <set>
#include <string>
#include <vector>

namespace seppo::cli {

// One line of the job log, in parallel's columns.
struct JobLogLine {
  std::uint64_t seq = 0;
  std::string host = ":";  // parallel's name for this machine
  double start_epoch = 0;  // seconds since the Unix epoch
  double runtime_s = 0;
  std::uint64_t sent = 0;      // bytes given on stdin (--pipe)
  std::uint64_t received = 0;  // bytes of stdout
  int exitval = 0;             // -1 when killed by a signal, 255 when it could not run
  int signal = 0;
  std::string command;  // the command line as --dry-run prints it
};

class JobLog {
 public:
  // Empty `path`: no log. Throws seppo::Error when the file cannot be written. `append`
  // (--resume): lines go after what the file holds, the header only into an empty file.
  explicit JobLog(const std::string& path, bool append = false);
  ~JobLog();
  JobLog(const JobLog&) = delete;
  JobLog& operator=(const JobLog&) = delete;
  // Flushed at once, as parallel does: `tail -f` shows a job when it ends.
  void write(const JobLogLine& line);

 private:
  std::FILE* file_ = nullptr;
};

// --resume and --resume-failed: which jobs an earlier run's job log lists as done (any exit),
// or with --resume-failed as succeeded (Exitval 0, Signal 0); those are not run again.
class Resume {
 public:
  enum class Mode { Off, Done, Succeeded };
  // Throws seppo::Error when `joblog` exists but cannot be read. A missing file: nothing done.
  Resume(const std::string& joblog, Mode mode);
  bool skip(std::uint64_t seq) const { return done_.count(seq) > 0; }
  bool enabled() const { return mode_ != Mode::Off; }

 private:
  Mode mode_;
  std::set<std::uint64_t> done_;
};

// The --results path of a job: DIR/1/ARG1/2/ARG2..., each argument with \ as \\ and / as \_.
std::string results_folder(const std::string& dir, const std::vector<std::string>& args);

// DIR/1/ARG.../{seq,stdout,stderr}. Throws seppo::Error when they cannot be written.
void write_results(const std::string& dir, const std::vector<std::string>& args, std::uint64_t seq,
                   const std::string& out, const std::string& err);

// --results PATH: parallel's tree of files (write_results) for a folder, or for a PATH ending in
// .csv or .tsv one CSV/TSV file: a header (Seq Host Starttime JobRuntime Send Receive Exitval
// Signal Command V1..Vn Stdout Stderr), then one row per job in completion order, quoted as
// parallel quotes (a field with a quote, white space, the separator or a NUL is in quotes).
class Results {
 public:
  // Empty `path`: none. Throws seppo::Error when the file cannot be written.
  explicit Results(const std::string& path);
  ~Results();
  Results(const Results&) = delete;
  Results& operator=(const Results&) = delete;
  bool enabled() const { return !path_.empty(); }
  void write(const JobLogLine& line, const std::vector<std::string>& args, const std::string& out,
             const std::string& err);

 private:
  std::string path_;
  std::FILE* table_ = nullptr;  // the .csv/.tsv file
  char separator_ = ',';
  bool header_written_ = false;
};

// One CSV/TSV row's fields joined as parallel's combine_ref does, with its newline.
std::string table_row(const std::vector<std::string>& fields, char separator);

// --tag: every line of `out` (the last one may lack its newline) prefixed with `tag` and a tab.
std::string tag_lines(const std::string& out, const std::string& tag);

// A job's arguments as --tag shows them: space-separated.
std::string joined(const std::vector<std::string>& args);

// --tagstring STR: STR with parallel's replacement strings filled in, as text (no quoting):
// {} (all arguments, space-separated) {.} {/} {//} {/.}, {N} and {N.} etc. for the N-th, {#}
// the job number, {%} the slot. Other braces stay as written.
std::string expand_tag(const std::string& tagstring, const std::vector<std::string>& args,
                       std::uint64_t seq, unsigned slot);

}  // namespace seppo::cli
