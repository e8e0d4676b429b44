#include "cli/local_commands.hpp"

#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <thread>

#include <seppo/error.hpp>

#include "cli/interrupt.hpp"
#include "cli/job_records.hpp"
#include "cli/progress.hpp"
#include "worker/shell_command.hpp"

namespace seppo::cli {
namespace {

using Clock = std::chrono::steady_clock;

struct Outcome {
  Job job;
  unsigned slot = 0;
  std::string display;  // the command line as parallel prints it
  worker::CommandRun run;
  std::string error;     // could not run at all (a NUL in an argument, fork failed)
  bool skipped = false;  // --resume: done in an earlier run, not run again
  double start_epoch = 0, runtime_s = 0;
  std::uint64_t sent = 0;  // --pipe: the block's bytes
  bool ok() const {
    return error.empty() && run.wait_status == 0 && !run.timed_out && !run.cancelled &&
           !run.out_over_limit;
  }
};

}  // namespace

Halt parse_halt(const std::string& given) {
  // parallel's old forms: 0 never, 1 soon,fail=1, 2 now,fail=1, -1 soon,success=1, -2
  // now,success=1, N% soon,fail=N%.
  std::string text = given;
  if (text == "1") text = "soon,fail=1";
  if (text == "2") text = "now,fail=1";
  if (text == "-1") text = "soon,success=1";
  if (text == "-2") text = "now,success=1";
  if (!text.empty() && text.back() == '%' && text.find(',') == std::string::npos) {
    text = "soon,fail=" + text;
  }
  Halt halt;
  if (text == "never" || text == "0") {
    halt.when = Halt::When::Never;
    return halt;
  }
  const auto comma = text.find(',');
  const std::string when = text.substr(0, comma);
  if (when == "now") {
    halt.when = Halt::When::Now;
  } else if (when == "soon") {
    halt.when = Halt::When::Soon;
  } else {
    throw Error("--halt " + given +
                ": expected now|soon,fail=N|success=N|done=N (N or N%) or never");
  }
  if (comma == std::string::npos) return halt;
  const std::string rule = text.substr(comma + 1);
  const auto equals = rule.find('=');
  const std::string what = rule.substr(0, equals);
  if (what == "fail") {
    halt.what = Halt::What::Fail;
  } else if (what == "success") {
    halt.what = Halt::What::Success;
  } else if (what == "done") {
    halt.what = Halt::What::Done;
  } else {
    throw Error("--halt " + given + ": expected fail=N, success=N or done=N after the comma");
  }
  if (equals == std::string::npos) return halt;
  std::string number = rule.substr(equals + 1);
  const bool percent = !number.empty() && number.back() == '%';
  if (percent) number.pop_back();
  if (number.empty() || number.find_first_not_of("0123456789") != std::string::npos ||
      number.size() > 18 || std::stoull(number) == 0 || (percent && std::stoull(number) > 100)) {
    throw Error("--halt " + given +
                ": N must be a whole number from 1, or a percentage (1% to 100%)");
  }
  if (percent) {
    halt.percent = static_cast<unsigned>(std::stoul(number));
  } else {
    halt.count = std::stoull(number);
  }
  return halt;
}

bool Halt::reached(std::uint64_t failed, std::uint64_t succeeded, std::uint64_t total) const {
  if (when == When::Never) return false;
  const std::uint64_t n = what == What::Fail      ? failed
                          : what == What::Success ? succeeded
                                                  : failed + succeeded;
  // parallel: halt once n >= total * percent / 100 (and not before a first such job).
  if (percent > 0) return n > 0 && n * 100 >= total * percent;
  return n >= count;
}

int Halt::exit_status(std::uint64_t failed, std::uint64_t total, int trigger) const {
  if (what == What::Success) return 0;  // parallel: halting on success is a success
  if (percent == 0 && count == 1 && trigger >= 0) return trigger;
  if (percent > 0 && what != What::Success && total > 0) {
    return static_cast<int>((failed * 100 + total - 1) / total);
  }
  return failed > 100 ? 101 : static_cast<int>(failed);
}

int run_local_command(JobSource& source, const std::string& name,
                      const std::string& command_template, const JobControl& control,
                      std::FILE* out) {
  const worker::CommandTemplate plain(command_template, !control.pipe);
  // -X: each job's own template, its words with {} repeated once per argument.
  const auto template_for = [&](const Job& job) {
    return control.context_replace ? worker::CommandTemplate(worker::context_replaced(
                                         command_template, job.args.size()))
                                   : plain;
  };
  if (control.dry_run) {
    std::uint64_t failed = 0;
    while (const auto job = source.next()) {
      try {
        const std::string line = template_for(*job).expand(job->args, job->seq, 1, true);
        std::fprintf(out, "%s\n", line.c_str());
      } catch (const std::exception& e) {  // an input no command line can carry (a NUL)
        ++failed;
        std::fflush(out);
        std::fprintf(stderr, "seppo: job %llu: %s: %s\n", static_cast<unsigned long long>(job->seq),
                     name.c_str(), e.what());
      }
    }
    if (std::fflush(out) != 0) return 255;
    return failed > 100 ? 101 : static_cast<int>(failed);
  }
  const Resume resume(control.joblog, control.resume);
  JobLog joblog(control.joblog, resume.enabled());
  Results results(control.results);

  std::mutex mutex;
  std::condition_variable changed;
  std::deque<Outcome> finished;
  bool stop_starting = false;
  unsigned running_threads = control.jobs;
  std::atomic<bool> cancel{false};
  worker::CommandLimits limits;
  limits.stderr_tail = limits.max_stdout;  // all of it: passed on, and kept by --results
  limits.timeout = control.timeout;
  limits.cancel = &cancel;
  limits.shell = worker::parallel_shell();  // GNU parallel's choice: issue 23

  Progress::Options meter;
  meter.enabled = control.progress;
  meter.label = name;
  meter.count_fd = source.regular_file_fd();
  meter.total = source.total();
  Progress progress(stderr, meter);

  // --nice: this process and so every command it starts (parallel runs them under nice).
  if (control.nice && ::setpriority(PRIO_PROCESS, 0, *control.nice) != 0) {
    throw Error(std::string("--nice: ") + std::strerror(errno));
  }
  // --delay: starts at least this far apart, in input order: each job's start is booked as it
  // is taken (under `mutex`), so a later job never takes an earlier one's turn.
  Clock::time_point next_start = Clock::now();
  std::uint64_t read = 0;  // jobs taken from the source, under `mutex`
  const auto work = [&](unsigned slot) {
    while (true) {
      std::optional<Job> job;
      Clock::time_point start_at{};
      {
        std::lock_guard lock(mutex);
        if (!stop_starting) job = source.next();
        if (job) {
          if (control.delay.count() > 0) {
            start_at = std::max(Clock::now(), next_start);
            next_start = start_at + control.delay;
          }
          read = job->seq;
          progress.seen(read, false);
        } else if (!stop_starting) {
          progress.seen(read, true);  // the input ended: what was read is the total
        }
      }
      if (!job) break;
      Outcome outcome;
      outcome.slot = slot;
      outcome.job = std::move(*job);
      if (resume.skip(outcome.job.seq)) {
        outcome.skipped = true;
        std::lock_guard lock(mutex);
        finished.push_back(std::move(outcome));
        changed.notify_all();
        continue;
      }
      worker::ShellScript script;
      try {
        const worker::CommandTemplate tmpl = template_for(outcome.job);
        script = tmpl.script(outcome.job.args, outcome.job.seq, slot);
        outcome.sent = outcome.job.stdin_data ? outcome.job.stdin_data->size() : 0;
        script.stdin_data = std::move(outcome.job.stdin_data);  // --pipe: the block
        outcome.display = tmpl.expand(outcome.job.args, outcome.job.seq, slot, true);
      } catch (const std::exception& e) {
        outcome.error = e.what();
      }
      if (control.delay.count() > 0) {
        // In short steps: Ctrl-C and --halt now (cancel) do not wait for the delay.
        while (!cancel.load() && Clock::now() < start_at) {
          std::this_thread::sleep_for(
              std::min<Clock::duration>(start_at - Clock::now(), std::chrono::milliseconds(20)));
        }
        if (cancel.load()) outcome.run.cancelled = true;  // never started
      }
      for (unsigned attempt = 0;
           outcome.error.empty() && !outcome.run.cancelled && attempt <= control.retries;
           ++attempt) {
        outcome.start_epoch =
            std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch())
                .count();
        const auto start = Clock::now();
        try {
          outcome.run = worker::run_shell(script, limits);
        } catch (const std::exception& e) {
          outcome.error = std::string("could not start: ") + e.what();
        }
        outcome.runtime_s = std::chrono::duration<double>(Clock::now() - start).count();
        if (outcome.ok() || outcome.run.cancelled) break;
      }
      std::lock_guard lock(mutex);
      finished.push_back(std::move(outcome));
      changed.notify_all();
    }
    std::lock_guard lock(mutex);
    --running_threads;
    changed.notify_all();
  };
  std::vector<std::thread> threads;
  for (unsigned slot = 1; slot <= control.jobs; ++slot) threads.emplace_back(work, slot);

  std::uint64_t failed = 0, succeeded = 0, next_print = 1;
  std::map<std::uint64_t, std::optional<std::string>> waiting;  // ordered output held back
  int write_error = 0;
  const auto write = [&](const std::string& text) {
    if (write_error != 0 || text.empty()) return;
    const auto guard = progress.before_output(out);  // --bar on the same terminal: cleared
    if (std::fwrite(text.data(), 1, text.size(), out) != text.size()) {
      write_error = errno != 0 ? errno : EIO;
    }
    if (guard.owns_lock()) std::fflush(out);
  };
  const auto handle = [&](Outcome& o) {
    if (o.skipped) {  // --resume: nothing to print or count, but later output may follow it
      if (!control.ordered) return;
      waiting[o.job.seq] = std::nullopt;
      for (auto it = waiting.begin(); it != waiting.end() && it->first == next_print;
           it = waiting.erase(it), ++next_print) {
        if (it->second) write(*it->second);
      }
      std::fflush(out);
      return;
    }
    const bool ok = o.ok();
    if (!o.run.cancelled) {
      progress.done_one(!ok);
      ok ? ++succeeded : ++failed;
    }
    std::string text =
        !control.tagstring.empty()
            ? tag_lines(o.run.out, expand_tag(control.tagstring, o.job.args, o.job.seq, o.slot))
        : control.tag ? tag_lines(o.run.out, joined(o.job.args))
                      : o.run.out;
    if (!o.run.err_tail.empty() && !results.enabled()) {  // with --results: in its files
      progress.message(o.run.err_tail.back() == '\n'
                           ? o.run.err_tail.substr(0, o.run.err_tail.size() - 1)
                           : o.run.err_tail);
    }
    const std::string where = "seppo: job " + std::to_string(o.job.seq) + ": ";
    if (!o.error.empty()) {
      progress.message(where + name + ": " + o.error);
    } else if (o.run.timed_out) {
      progress.message(where + "killed after the --timeout of " +
                       std::to_string(control.timeout.count() / 1000.0).substr(0, 5) +
                       " s: " + o.display);
    } else if (o.run.out_over_limit) {
      progress.message(where + "stopped: more than 64 MiB on stdout: " + o.display);
    } else if (!ok && !o.run.cancelled) {
      progress.message(where + o.display + " " + worker::describe_wait_status(o.run.wait_status));
    }
    if (!o.run.cancelled) {
      const int status = o.run.wait_status;
      JobLogLine line;
      line.seq = o.job.seq;
      line.start_epoch = o.start_epoch;
      line.runtime_s = o.runtime_s;
      line.sent = o.sent;
      line.received = o.run.out.size();
      line.exitval = !o.error.empty() ? 255 : WIFEXITED(status) ? WEXITSTATUS(status) : -1;
      line.signal = WIFSIGNALED(status) ? WTERMSIG(status) : 0;
      line.command = o.display;
      joblog.write(line);
      results.write(line, o.job.args, o.run.out, o.run.err_tail);
    }
    std::optional<std::string> shown;
    // parallel: with --results the output goes to the files only.
    if (!o.run.cancelled && !results.enabled()) shown = std::move(text);
    if (!control.ordered) {
      if (shown) write(*shown);
      std::fflush(out);
      return;
    }
    waiting[o.job.seq] = std::move(shown);
    for (auto it = waiting.begin(); it != waiting.end() && it->first == next_print;
         it = waiting.erase(it), ++next_print) {
      if (it->second) write(*it->second);
    }
    std::fflush(out);
  };
  bool halted = false;
  int trigger = -1;  // the exit status of the job that halted the run
  const auto halting = [&] {
    halted = control.halt.reached(failed, succeeded, source.total().value_or(0));
    return halted;
  };
  std::unique_lock lock(mutex);
  try {
    while (true) {
      changed.wait_for(lock, std::chrono::milliseconds(100), [&] {
        return !finished.empty() || running_threads == 0 || interrupt::pending() != 0;
      });
      interrupt::check();  // Ctrl-C, SIGTERM: what runs is killed below, nothing more starts
      if (finished.empty() && running_threads == 0) break;
      if (finished.empty()) continue;
      Outcome outcome = std::move(finished.front());
      finished.pop_front();
      lock.unlock();
      handle(outcome);
      lock.lock();
      if (control.halt.when != Halt::When::Never && !stop_starting && halting()) {
        const int status = outcome.run.wait_status;
        // A timed-out job's exit value is parallel's -1: 255.
        trigger = !outcome.error.empty() || outcome.run.timed_out ? 255
                  : WIFSIGNALED(status)                           ? 128 + WTERMSIG(status)
                  : WIFEXITED(status)                             ? WEXITSTATUS(status)
                                                                  : -1;
        stop_starting = true;
        if (control.halt.when == Halt::When::Now) cancel = true;
      }
    }
  } catch (...) {
    // --results cannot be written: nothing more starts, what runs is killed, then the error.
    if (!lock.owns_lock()) lock.lock();
    stop_starting = true;
    cancel = true;
    lock.unlock();
    for (std::thread& t : threads) t.join();
    throw;
  }
  lock.unlock();
  for (std::thread& t : threads) t.join();
  // What was held for order behind a job that was killed or never started (halted) is
  // printed still: the failure that halted the run shows.
  for (auto& [seq, text] : waiting) {
    if (text) write(*text);
  }
  std::fflush(out);
  if (write_error != 0) {
    throw Error(std::string("cannot write results: ") + std::strerror(write_error));
  }
  if (halted) return control.halt.exit_status(failed, source.total().value_or(0), trigger);
  return failed > 100 ? 101 : static_cast<int>(failed);
}

}  // namespace seppo::cli
