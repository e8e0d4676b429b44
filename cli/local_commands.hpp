// `seppo map --local --command NAME=TEMPLATE NAME`: GNU parallel's job on one machine. The
// template is expanded with the workers' quoting code (worker/shell_command) and run in the
// caller's folder, N at a time. The process runs under seppo's own control, so per-job
// --timeout, --retries, --halt now (kill what runs), --joblog, --results and --dry-run work here.
#pragma once

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "cli/job_records.hpp"
#include "cli/sources.hpp"

namespace seppo::cli {

// --halt WHEN,WHAT=N: stop starting jobs (soon) or also kill the running ones (now) once N jobs
// (or N% of all jobs) failed, succeeded or are done.
struct Halt {
  enum class When { Never, Soon, Now } when = When::Never;
  enum class What { Fail, Success, Done } what = What::Fail;
  std::uint64_t count = 1;
  unsigned percent = 0;  // WHAT=N%: of all jobs, as parallel (which reads the input whole first)
  // Whether these counts halt the run; `total` (all jobs) matters for a percentage only.
  bool reached(std::uint64_t failed, std::uint64_t succeeded, std::uint64_t total) const;
  // The exit status of a halted run, as parallel's: for a percentage of failed or done jobs the
  // percentage of jobs that failed (rounded up), else the failed jobs, 101 for more than 100;
  // 0 when it halted on success. For fail=1 and done=1, `trigger` (the exit status of the job
  // that halted the run, 128 + N for signal N) when known (>= 0), as parallel emulates bash.
  int exit_status(std::uint64_t failed, std::uint64_t total, int trigger = -1) const;
};
// "now,fail=1", "soon,success=3", "soon,fail=30%", "never", and parallel's old forms (0, 1, 2,
// -1, -2, 30%). Throws seppo::Error with a one-line reason.
Halt parse_halt(const std::string& text);

struct JobControl {
  unsigned jobs = 1;                     // -j: commands running at once
  std::chrono::milliseconds timeout{0};  // per job, 0: none
  unsigned retries = 0;                  // extra attempts for a failed job
  Halt halt;
  std::string joblog;                       // a file, or empty
  Resume::Mode resume = Resume::Mode::Off;  // --resume, --resume-failed (with --joblog)
  std::string results;                      // a folder, or empty
  bool dry_run = false;
  bool tag = false;
  std::chrono::milliseconds delay{0};  // --delay: between the starts of two commands
  std::optional<int> nice;             // --nice: the commands' niceness
  std::string tagstring;  // --tagstring: the tag instead of the arguments (implies --tag)
  bool ordered = true;
  bool progress = false;
  bool context_replace = false;  // -X: each word with {} once per argument
  bool pipe = false;  // --pipe: each job's block is its stdin; nothing appended to the template
  // --env NAME through a broker: NAME and its value here, sent with each item.
  std::vector<std::pair<std::string, std::string>> env;
};

// Exit status as parallel's: the number of failed jobs, 101 for more than 100.
int run_local_command(JobSource& source, const std::string& name,
                      const std::string& command_template, const JobControl& control,
                      std::FILE* out);

}  // namespace seppo::cli
