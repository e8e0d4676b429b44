// `seppo map --local --command NAME=TEMPLATE NAME`: GNU parallel's job on one machine. The
// template is expanded with the workers' quoting code (worker/shell_command) and run in the
// caller's folder, N at a time. The process runs under seppo's own control, so per-job
// --timeout, --retries, --halt now (kill what runs), --joblog, --results and --dry-run work here.
#pragma once

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <string>

#include "cli/sources.hpp"

namespace seppo::cli {

// --halt WHEN,WHAT=N: stop starting jobs (soon) or also kill the running ones (now) once N jobs
// failed, succeeded or are done.
struct Halt {
  enum class When { Never, Soon, Now } when = When::Never;
  enum class What { Fail, Success, Done } what = What::Fail;
  std::uint64_t count = 1;
};
// "now,fail=1", "soon,success=3", "never". Throws seppo::Error with a one-line reason.
Halt parse_halt(const std::string& text);

struct JobControl {
  unsigned jobs = 1;                     // -j: commands running at once
  std::chrono::milliseconds timeout{0};  // per job, 0: none
  unsigned retries = 0;                  // extra attempts for a failed job
  Halt halt;
  std::string joblog;   // a file, or empty
  std::string results;  // a folder, or empty
  bool dry_run = false;
  bool tag = false;
  bool ordered = true;
  bool progress = false;
};

// Exit status as parallel's: the number of failed jobs, 101 for more than 100.
int run_local_command(JobSource& source, const std::string& name,
                      const std::string& command_template, const JobControl& control,
                      std::FILE* out);

// The --results path of a job: DIR/1/ARG1/2/ARG2..., each argument with \ as \\ and / as \_.
std::string results_folder(const std::string& dir, const std::vector<std::string>& args);

}  // namespace seppo::cli
