#include "cli/map_command.hpp"

#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstring>
#include <map>

#include "cli/interrupt.hpp"
#include "cli/job_records.hpp"
#include "cli/json.hpp"
#include "cli/progress.hpp"
#include "common/duration.hpp"
#include "protocol/codes.hpp"
#include "protocol/command_record.hpp"

namespace seppo::cli {

std::optional<std::size_t> workers_serving(const Client& client, const std::string& function) {
  try {
    Client probe(client.endpoint(), client.options());
    const msgpack::object_handle status = probe.status(std::chrono::milliseconds(1000));
    const nlohmann::json s = to_json(status.get());
    const auto functions = s.value("functions", nlohmann::json::object());
    if (!functions.contains(function)) return 0;
    return functions[function].value("workers", std::size_t{0});
  } catch (const std::exception&) {
    return std::nullopt;
  }
}

namespace {

bool progress_wanted(ProgressMode mode) {
  if (mode == ProgressMode::Auto) return ::isatty(STDERR_FILENO) == 1;
  return mode == ProgressMode::On;
}

}  // namespace

std::chrono::milliseconds parse_duration(const std::string& text) {
  if (text.empty()) return std::chrono::milliseconds(0);
  const std::optional<std::chrono::milliseconds> d = seppo::parse_duration(text);
  if (!d || d->count() == 0) {
    throw Error("--timeout " + text + ": not a positive duration (" + kDurationForms + ")");
  }
  return *d;
}

namespace {

// Sources a LineInput reads as well, with its line numbers and --json rejections: one file or
// stdin, lines, no columns.
bool plain_lines(const MapOptions& o, bool named_commands_too = false) {
  // A named command answers with its run's record (its stderr too): it goes as a job.
  if (o.command_requests && !named_commands_too) return false;
  if (o.tag || !o.control.tagstring.empty() || o.control.resume != Resume::Mode::Off ||
      o.retries > 0 || o.halt || !o.control.joblog.empty() || !o.control.results.empty() ||
      o.control.dry_run) {
    return false;
  }
  if (!o.sources) return true;
  const SourcesOptions& s = *o.sources;
  return s.separator == '\n' && !s.pipe && !s.fill && !s.colsep && !s.shuffle &&
         s.args_per_job <= 1 && s.sources.size() <= 1 &&
         (s.sources.empty() || s.sources[0].kind == Source::Kind::File);
}

void pack_arg(Client::Packer& packer, const std::string& arg, InputFormat format) {
  switch (format) {
    case InputFormat::Auto:
      pack_line(packer, arg);
      return;
    case InputFormat::Raw:
    case InputFormat::CommandRequest:
      packer.pack(arg);
      return;
    case InputFormat::Json: {
      const nlohmann::json value = nlohmann::json::parse(arg, nullptr, false);
      if (value.is_discarded()) {
        packer.pack(arg);
      } else {
        pack_json(packer, value);
      }
      return;
    }
  }
}

// An old worker's answer to a request item, said so that its operator knows what to do.
std::string explain(const std::string& error, bool command_requests) {
  if (command_requests && error.find("got map") != std::string::npos) {
    return error +
           " (this worker predates request items, docs/protocol.md §5.2: upgrade seppo-worker)";
  }
  return error;
}

// "node1, process 42" -> "node1": the joblog's Host.
std::string host_of(const std::string& worker) {
  return worker.substr(0, worker.find(", process "));
}

// An item the broker abandoned past ClientOptions::item_timeout (--timeout): its code says so,
// whatever the wording of its message.
bool timed_out(const Client::Item& item, const MapOptions& o) {
  return o.control.timeout.count() > 0 && item.error != nullptr &&
         item.code == wire::to_wire(wire::Code::Timeout);
}

// "... at worker node1, process 42; abandoned" -> "node1, process 42", or empty.
std::string worker_in(const std::string& error) {
  const std::string at = " at worker ";
  const auto from = error.rfind(at);
  if (from == std::string::npos) return "";
  const auto begin = from + at.size();
  return error.substr(begin, error.find(';', begin) - begin);
}

std::string seconds_text(std::chrono::milliseconds d) {
  std::string text = std::to_string(static_cast<double>(d.count()) / 1000.0);
  text.erase(text.find_last_not_of('0') + 1);
  if (text.back() == '.') text.pop_back();
  return text;
}

// "FUNCTION stopped: it ran longer than its time limit of 2 s (on node1, process 42)". The
// limit is the broker's ("ran longer than L at worker"): its --task-timeout may be lower than
// --timeout. Neither the broker nor this client knows how the worker stopped it (a command is
// killed, a function interrupted by replacing its process), so the text says neither.
std::string killed_after_timeout(const std::string& error, const MapOptions& o) {
  const std::string at = worker_in(error);
  const std::string longer = "ran longer than ";
  std::string limit = seconds_text(o.control.timeout) + " s";
  if (const auto from = error.find(longer); from != std::string::npos) {
    const auto begin = from + longer.size();
    const auto end = error.find(" at worker ", begin);
    if (end != std::string::npos) limit = error.substr(begin, end - begin);
  }
  return o.function + " stopped: it ran longer than its time limit of " + limit +
         (at.empty() ? "" : " (on " + at + ")");
}

std::string ran_how(const std::string& name, const wire::CommandRecord& r) {
  if (r.signal != 0) return "command " + name + " killed by signal " + std::to_string(r.signal);
  if (r.exit != 0) return "command " + name + " exited with status " + std::to_string(r.exit);
  return r.message;
}

// Through a broker, for parallel's sources, --tag, --retries, --halt, --joblog, --results
// and --dry-run. A failed item with attempts left is resubmitted in a later pass over the
// failures (a job's input ends once), so in ordered output the results after it wait in memory
// until it is settled. A named command answers each item with its run's record: stdout is
// printed as the command wrote it, stderr goes to stderr, as parallel does. --halt now ends the
// job at once: the broker cancels its running tasks at their workers (docs/protocol.md §4.15).
int run_map_jobs(Client& client, const MapOptions& options, std::FILE* out) {
  const bool command = options.command_requests;
  const bool dry_run = options.control.dry_run;
  // Lines into a named command without parallel's options: one result per line as before (a
  // missing last newline added), errors by line number, the command's stderr on stderr.
  const bool lines = command && plain_lines(options, true);
  const std::string cwd = command ? current_folder() : std::string();
  SourcesOptions sources = options.sources.value_or(SourcesOptions{});
  if (options.halt && options.halt->percent > 0) sources.read_whole = true;  // the total
  JobSource source(std::move(sources));
  const Resume resume(options.control.joblog, options.control.resume);
  JobLog joblog(options.control.joblog, resume.enabled());
  Results results(options.control.results);
  Progress::Options meter;
  meter.enabled = progress_wanted(options.progress);
  meter.label = options.function;
  meter.count_fd = source.regular_file_fd();
  meter.total = source.total();
  meter.workers = [&client, &options] { return workers_serving(client, options.function); };
  Progress progress(stderr, meter);
  std::signal(SIGPIPE, SIG_IGN);

  struct Pending {
    Job job;
    unsigned attempts = 0;
  };
  std::uint64_t failed = 0, succeeded = 0, next_print = 1;
  std::map<std::uint64_t, std::optional<std::string>> waiting;
  int write_error = 0;
  const auto write = [&](const std::optional<std::string>& text) {
    if (!text || text->empty() || write_error != 0) return;
    const auto guard = progress.before_output(out);  // --bar on the same terminal: cleared
    if (std::fwrite(text->data(), 1, text->size(), out) != text->size()) {
      write_error = errno != 0 ? errno : EIO;
    }
    if (guard.owns_lock()) std::fflush(out);
  };
  const auto settle = [&](std::uint64_t seq, std::optional<std::string> text) {
    if (!options.output.ordered) {
      write(text);
      return;
    }
    waiting[seq] = std::move(text);
    for (auto it = waiting.begin(); it != waiting.end() && it->first == next_print;
         it = waiting.erase(it), ++next_print) {
      write(it->second);
    }
  };
  bool halted = false, cancel = false;
  int trigger = -1;  // the exit status of the command that halted the run, when known
  const auto halting = [&] {
    if (options.fail_fast && failed > 0) return cancel = true;
    if (!options.halt) return false;
    halted = options.halt->reached(failed, succeeded, source.total().value_or(0));
    return halted;
  };
  std::vector<Pending> retry_now, retry_next;
  bool first_pass = true, stop = false;
  while (first_pass || (!retry_now.empty() && !stop)) {
    std::map<std::uint64_t, Pending> sent;  // item index in this pass -> its job
    std::uint64_t index = 0;
    std::size_t retry_at = 0;
    detail::Engine engine(
        client, options.function,
        [&](Client::Packer& packer) {
          if (stop) return false;
          Pending p;
          if (first_pass) {
            auto job = source.next();
            while (job && resume.skip(job->seq)) {  // --resume: done in an earlier run
              settle(job->seq, std::nullopt);
              job = source.next();
            }
            if (!job) {
              progress.seen(index, true);
              return false;
            }
            p.job = std::move(*job);
            progress.seen(p.job.seq, false);
          } else {
            if (retry_at == retry_now.size()) return false;
            p = std::move(retry_now[retry_at++]);
          }
          if (command) {
            wire::pack_command_request(packer, p.job.args, p.job.seq, !dry_run, dry_run, cwd,
                                       p.job.stdin_data ? &*p.job.stdin_data : nullptr,
                                       options.control.context_replace, options.control.env);
          } else if (p.job.args.size() == 1) {
            pack_arg(packer, p.job.args[0], options.input_format);
          } else {
            packer.pack_array(static_cast<std::uint32_t>(p.job.args.size()));
            for (const std::string& arg : p.job.args) pack_arg(packer, arg, options.input_format);
          }
          sent.emplace(index++, std::move(p));
          return true;
        },
        [&](const Client::Item& item) {
          auto found = sent.find(item.index);
          Pending p = std::move(found->second);
          sent.erase(found);
          std::optional<wire::CommandRecord> record;
          std::string error = item.error ? explain(*item.error, command) : std::string();
          const bool killed = timed_out(item, options);
          if (command && !dry_run && error.empty()) {
            record = wire::decode_command_record(*item.value);
            if (!record)
              error = "the worker answered without a command record (docs/protocol.md §5.2)";
          }
          const bool ok = error.empty() && !(record && record->failed());
          if (!ok && p.attempts < options.retries) {
            ++p.attempts;
            retry_next.push_back(std::move(p));
            return true;
          }
          ok ? ++succeeded : ++failed;
          progress.done_one(!ok);
          const std::string where = std::string(lines ? "seppo: line " : "seppo: job ") +
                                    std::to_string(p.job.seq) + ": ";
          const std::string on = item.worker->empty() ? "" : " (on " + *item.worker + ")";
          std::optional<std::string> text;
          if (record) {
            const std::string err = !record->err.empty() && record->err.back() == '\n'
                                        ? record->err.substr(0, record->err.size() - 1)
                                        : record->err;
            if (lines && !ok) {
              progress.message(where + options.function + ": " +
                               ran_how(options.function, *record) +
                               (err.empty() ? "" : ": " + err) + on);
            } else {
              if (!err.empty() && !results.enabled()) progress.message(err);  // --results: files
              if (!ok) progress.message(where + ran_how(options.function, *record) + on);
            }
            text = std::move(record->out);
            if (lines && !text->empty() && text->back() != '\n') *text += '\n';
          } else if (killed) {
            progress.message(where + killed_after_timeout(error, options));
          } else if (!error.empty()) {
            progress.message(where + options.function + ": " + error + on);
          } else {
            text = options.output.json ? to_json(*item.value).dump() : format_result(*item.value);
            if (dry_run || !(text->empty() && options.output.skip_empty)) *text += '\n';
          }
          if (command) {
            JobLogLine line;
            line.seq = p.job.seq;
            line.sent = p.job.stdin_data ? p.job.stdin_data->size() : 0;
            line.host = record ? record->host : host_of(*item.worker);
            if (record) {
              line.start_epoch = static_cast<double>(record->start_us) / 1e6;
              line.runtime_s = static_cast<double>(record->runtime_us) / 1e6;
              line.received = text ? text->size() : 0;
              line.exitval = record->exit;
              line.signal = record->signal;
              line.command = record->command;
            } else if (killed) {
              // As parallel's line for a job it killed: Exitval -1 and the signal (seppo's
              // is SIGKILL); the worker's record of the run does not come back.
              line.host = host_of(worker_in(error));
              line.runtime_s = static_cast<double>(options.control.timeout.count()) / 1000.0;
              line.start_epoch =
                  std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch())
                      .count() -
                  line.runtime_s;
              line.exitval = -1;
              line.signal = SIGKILL;
            } else {
              line.exitval = 255;
            }
            if (!dry_run) joblog.write(line);
            if (results.enabled() && !dry_run) {
              results.write(line, p.job.args, text.value_or(""),
                            record ? record->err : error + "\n");
              text.reset();  // parallel: with --results the output goes to the files only
            }
          }
          if (text && !options.control.tagstring.empty()) {
            // {%} is a worker's slot, which this side does not know: 0.
            text =
                tag_lines(*text, expand_tag(options.control.tagstring, p.job.args, p.job.seq, 0));
          } else if (text && options.tag) {
            text = tag_lines(*text, joined(p.job.args));
          }
          settle(p.job.seq, std::move(text));
          if (item.last_in_message && write_error == 0 && std::fflush(out) != 0) {
            write_error = errno != 0 ? errno : EIO;
          }
          if (!stop && halting()) {
            stop = true;  // soon: what was submitted finishes
            if (record) trigger = record->signal != 0 ? 128 + record->signal : record->exit;
            if (killed) trigger = 255;  // parallel: a timed-out job's exit value -1
            // now: the sink's false ends the job; the broker cancels what runs.
            if (halted && options.halt->when == Halt::When::Now) cancel = true;
          }
          return write_error == 0 && !cancel;
        },
        false);
    // Ctrl-C, SIGTERM: leaving destroys the engine, whose DONE ends the job at the broker now.
    while (interrupt::step(engine)) {
      interrupt::check();
    }
    interrupt::check();
    if (write_error != 0) break;
    first_pass = false;
    retry_now.swap(retry_next);
    retry_next.clear();
  }
  // Halted: what waits behind an item that never ran prints still.
  for (auto& [seq, text] : waiting) write(text);
  std::fflush(out);
  std::signal(SIGPIPE, SIG_DFL);
  if (write_error == EPIPE) throw OutputClosed{};
  if (write_error != 0)
    throw Error(std::string("cannot write results: ") + std::strerror(write_error));
  if (halted) return options.halt->exit_status(failed, source.total().value_or(0), trigger);
  return failed > 100 ? 101 : static_cast<int>(failed);
}

}  // namespace

int run_map(Client& client, const MapOptions& options, std::FILE* out) {
  if (!plain_lines(options)) return run_map_jobs(client, options, out);
  std::string path = options.input;
  if (options.sources && !options.sources->sources.empty()) path = options.sources->sources[0].path;
  LineInput input(path, options.input_format);
  std::vector<std::uint64_t> released;  // printed or dropped, not yet told to the client
  ResultPrinter printer(out, options.output,
                        [&released](std::uint64_t index) { released.push_back(index); });
  Progress::Options meter;
  meter.enabled = progress_wanted(options.progress);
  meter.label = options.function;
  meter.count_fd = input.regular_file_fd();
  meter.workers = [&client, &options] { return workers_serving(client, options.function); };
  Progress progress(stderr, meter);
  printer.before_write([&progress, out] { return progress.before_output(out); });
  struct Unhook {  // before progress goes: the printer's destructor writes what is left
    ResultPrinter& printer;
    ~Unhook() { printer.before_write(nullptr); }
  } unhook{printer};

  std::uint64_t failed = 0;
  const auto report = [&](std::uint64_t line, const std::string& what) {
    progress.message("seppo: line " + std::to_string(line) + ": " + what);
  };
  // Lines refused before submission (not JSON under --json) count as failed items.
  const auto report_rejected = [&] {
    for (const LineInput::Rejected& r : input.take_rejected()) {
      ++failed;
      progress.done_one(true);
      report(r.line, r.why);
    }
    return !(options.fail_fast && failed > 0);
  };
  // Written to a closed pipe, a write fails with EPIPE instead of killing us mid-job: the job
  // is cancelled at the broker first, and SIGPIPE is raised after.
  std::signal(SIGPIPE, SIG_IGN);
  bool stop_reading = false;
  std::uint64_t packed = 0;
  // A held engine: a chunk keeps its place in the client's window until its lines are printed,
  // so an item that takes long cannot make the results behind it pile up without bound.
  detail::Engine engine(
      client, options.function,
      [&](Client::Packer& packer) {
        if (stop_reading) return false;
        const bool more = input.next(packer);
        // A pipe's total is counted as it is read (items, rejected lines aside).
        if (more) progress.seen(++packed, false);
        if (!more) progress.seen(packed, true);
        if (!report_rejected()) stop_reading = true;  // --fail-fast: what is packed still goes
        return more;
      },
      [&](const Client::Item& item) {
        const std::uint64_t line = input.line_of(item.index);
        const bool ok = item.error == nullptr;
        progress.done_one(!ok);
        if (!ok) {
          ++failed;
          report(line, timed_out(item, options)
                           ? killed_after_timeout(*item.error, options)
                           : options.function + ": " +
                                 explain(*item.error, options.command_requests) +
                                 (item.worker->empty() ? "" : " (on " + *item.worker + ")"));
        }
        printer.put(item.index, line, ok ? item.value : nullptr);
        if (item.last_in_message && !printer.flush()) return false;
        return !(options.fail_fast && failed > 0);
      },
      true);
  while (true) {
    // Outside the sink: consumed() may step the engine, which calls the sink again.
    while (!released.empty()) {
      std::vector<std::uint64_t> batch;
      batch.swap(released);
      for (const std::uint64_t index : batch) engine.consumed(index);
    }
    if (!interrupt::step(engine)) break;
    interrupt::check();  // Ctrl-C, SIGTERM: the engine's DONE ends the job at the broker now
  }
  interrupt::check();
  report_rejected();
  printer.flush();
  std::signal(SIGPIPE, SIG_DFL);
  if (printer.write_error() == EPIPE) throw OutputClosed{};
  if (printer.write_error() != 0) {
    throw Error(std::string("cannot write results: ") + std::strerror(printer.write_error()));
  }
  return failed > 100 ? 101 : static_cast<int>(failed);
}

}  // namespace seppo::cli
