#include "cli/map_command.hpp"

#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstring>

#include "cli/json.hpp"
#include "cli/progress.hpp"

namespace seppo::cli {
namespace {

// How many workers serve `function`, from a second connection so the job's is not disturbed.
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

bool progress_wanted(ProgressMode mode) {
  if (mode == ProgressMode::Auto) return ::isatty(STDERR_FILENO) == 1;
  return mode == ProgressMode::On;
}

}  // namespace

int run_map(Client& client, const MapOptions& options, std::FILE* out) {
  LineInput input(options.input, options.input_format);
  std::vector<std::uint64_t> released;  // printed or dropped, not yet told to the client
  ResultPrinter printer(out, options.output,
                        [&released](std::uint64_t index) { released.push_back(index); });
  Progress::Options meter;
  meter.enabled = progress_wanted(options.progress);
  meter.label = options.function;
  meter.count_fd = input.regular_file_fd();
  meter.workers = [&client, &options] { return workers_serving(client, options.function); };
  Progress progress(stderr, meter);

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
  // A held engine: a chunk keeps its place in the client's window until its lines are printed,
  // so an item that takes long cannot make the results behind it pile up without bound.
  detail::Engine engine(
      client, options.function,
      [&](Client::Packer& packer) {
        if (stop_reading) return false;
        const bool more = input.next(packer);
        if (!report_rejected()) stop_reading = true;  // --fail-fast: what is packed still goes
        return more;
      },
      [&](const Client::Item& item) {
        const std::uint64_t line = input.line_of(item.index);
        const bool ok = item.error == nullptr;
        progress.done_one(!ok);
        if (!ok) {
          ++failed;
          std::string what = options.function + ": " + *item.error;
          if (!item.worker->empty()) what += " (on " + *item.worker + ")";
          report(line, what);
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
    if (!engine.step()) break;
  }
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
