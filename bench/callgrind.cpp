#include "bench/callgrind.hpp"

#include <signal.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <regex>
#include <sstream>
#include <stdexcept>
#include <tuple>

#include <seppo/seppo.hpp>

#include "tests/support/cluster.hpp"

namespace seppo::bench {

namespace fs = std::filesystem;
using namespace seppo::test;

namespace {

// Heartbeats cost per second, not per task, and a pass under callgrind lasts 50 times longer
// than it would natively: with beats 10 s apart they stay out of the per-task figures.
const std::string kSlowHeartbeatMs = "10000";
// Every step of a pass is bounded; callgrind slows a program 20 to 100 times.
constexpr auto kStepTimeout = std::chrono::minutes(20);

std::string valgrind() {
  const char* path = std::getenv("PATH");
  std::istringstream dirs(path ? path : "/usr/bin:/bin");
  for (std::string dir; std::getline(dirs, dir, ':');) {
    const fs::path candidate = fs::path(dir) / "valgrind";
    if (::access(candidate.c_str(), X_OK) == 0) return candidate.string();
  }
  throw std::runtime_error("valgrind is not installed (apt-get install valgrind)");
}

// argv run under callgrind, one output file per process: DIR/ROLE.PID (forked children, such
// as seppo-worker's processes, write their own).
std::vector<std::string> under_callgrind(const fs::path& dir, const std::string& role,
                                         std::vector<std::string> argv) {
  std::vector<std::string> out = {valgrind(), "--tool=callgrind",
                                  "--callgrind-out-file=" + (dir / (role + ".%p")).string(),
                                  "--log-file=" + (dir / ("log-" + role + ".%p")).string()};
  out.insert(out.end(), argv.begin(), argv.end());
  return out;
}

// The total instructions of a callgrind file: every thread of the process.
std::uint64_t total_of(const fs::path& file) {
  std::istringstream text(read_file(file));
  for (std::string line; std::getline(text, line);) {
    if (line.rfind("summary:", 0) == 0 || line.rfind("totals:", 0) == 0) {
      return std::stoull(line.substr(line.find(':') + 1));
    }
  }
  throw std::runtime_error("no totals in " + file.string() + " (did the process exit cleanly?)");
}

// pid -> total for every DIR/ROLE.PID file.
std::map<int, std::uint64_t> totals(const fs::path& dir, const std::string& role) {
  std::map<int, std::uint64_t> out;
  const std::regex name(role + R"(\.([0-9]+))");
  for (const auto& entry : fs::directory_iterator(dir)) {
    std::smatch m;
    const std::string file = entry.path().filename().string();
    if (std::regex_match(file, m, name)) out[std::stoi(m[1])] = total_of(entry.path());
  }
  return out;
}

void keep(const fs::path& dir, const std::string& keep_dir, const std::string& pass) {
  if (keep_dir.empty()) return;
  const fs::path target = fs::path(keep_dir) / pass;
  fs::create_directories(target);
  for (const auto& entry : fs::directory_iterator(dir)) {
    fs::copy(entry.path(), target / entry.path().filename(), fs::copy_options::overwrite_existing);
  }
}

// Workers the broker has logged as joined ("worker NAME joined with ..."): read from its log,
// not asked for with STATUS, whose cost would land in one pass more than in the other.
std::size_t joined_workers(const Process& broker) {
  const std::string text = broker.output();
  std::size_t n = 0;
  for (std::size_t at = text.find(" joined with "); at != std::string::npos;
       at = text.find(" joined with ", at + 1)) {
    ++n;
  }
  return n;
}

// SIGTERM, then a bounded wait: callgrind writes its file as the process exits.
void stop(Process& p, const char* what) {
  p.kill(SIGTERM);
  if (p.wait(std::chrono::minutes(2)) != 0) {
    throw std::runtime_error(std::string(what) + " did not exit cleanly:\n" + p.output());
  }
}

struct Pass {
  std::uint64_t broker = 0, workers = 0, client = 0;
};

// One pass of seppo: broker, `workers` worker connections (one seppo-worker -j), a client.
// With `everything` all three run under callgrind and the client maps `square` over 0..n-1 in
// single-item chunks (seppo-bench's streaming child); otherwise the broker alone does, and the
// client, in this process, maps sleep_ms(ms) over n items.
Pass seppo_pass(std::uint64_t n, unsigned workers, bool everything, int ms,
                const std::string& keep_dir, const std::string& name,
                const std::vector<std::string>& worker_extra = {}, bool client_batch = true,
                std::size_t client_window = 0, bool client_submits = true) {
  TempDir dir;
  const fs::path endpoint_file = dir.path() / "endpoint";
  Process broker(under_callgrind(dir.path(), "broker",
                                 {Paths::broker(), "--bind", "tcp://127.0.0.1:*", "--endpoint-file",
                                  endpoint_file.string(), "--heartbeat-ms", kSlowHeartbeatMs}),
                 dir.path() / "broker.log");
  std::string endpoint;
  if (!eventually(
          [&] {
            endpoint = read_file(endpoint_file);
            return !endpoint.empty() || !broker.running();
          },
          std::chrono::minutes(2)) ||
      endpoint.empty()) {
    throw std::runtime_error("broker did not start under callgrind:\n" + broker.output());
  }
  endpoint = endpoint.substr(0, endpoint.find_first_of("\n "));
  std::vector<std::string> worker_argv = {
      Paths::worker(),        "--broker", endpoint, "--module", Paths::example_module(), "-j",
      std::to_string(workers)};
  worker_argv.insert(worker_argv.end(), worker_extra.begin(), worker_extra.end());
  Process worker(everything ? under_callgrind(dir.path(), "worker", worker_argv) : worker_argv,
                 dir.path() / "worker.log");
  if (!eventually([&] { return joined_workers(broker) >= workers || !worker.running(); },
                  std::chrono::minutes(5)) ||
      !worker.running()) {
    throw std::runtime_error("workers did not connect:\n" + worker.output());
  }
  if (everything) {
    const std::string self = fs::read_symlink("/proc/self/exe").string();
    const Completed c = run(
        under_callgrind(
            dir.path(), "client",
            {self, "--stream-child", std::to_string(n), "--stream-mode", "run", "--chunk-size", "1",
             "--endpoint", endpoint, "--client-batch", client_batch ? "1" : "0", "--client-submits",
             client_submits ? "1" : "0", "--client-window", std::to_string(client_window)}),
        "", kStepTimeout);
    if (c.status != 0) throw std::runtime_error("client under callgrind failed: " + c.err);
  } else {
    ClientOptions o;
    o.timeout = std::chrono::minutes(2);
    o.chunk_size = 1;
    Client client(endpoint, o);
    std::uint64_t next = 0, back = 0;
    client.run(
        "example_module.sleep_ms",
        [&](Client::Packer& p) {
          if (next == n) return false;
          p.pack(ms);
          ++next;
          return true;
        },
        [&](const Client::Item& item) {
          if (item.error) throw std::runtime_error(*item.error);
          ++back;
          return true;
        });
    if (back != n) throw std::runtime_error("sleep_ms: items missing");
  }
  stop(worker, "seppo-worker");
  stop(broker, "seppo-broker");
  std::ofstream(dir.path() / "pids") << "supervisor=" << worker.pid() << "\n";
  keep(dir.path(), keep_dir, name);

  Pass pass;
  const auto b = totals(dir.path(), "broker");
  if (b.size() != 1) throw std::runtime_error("expected one broker callgrind file");
  pass.broker = b.begin()->second;
  if (everything) {
    // The supervisor's, its module probe's (the same in every pass, so it cancels out) and one
    // per worker process.
    const auto w = totals(dir.path(), "worker");
    if (w.size() < workers + 1 || w.count(worker.pid()) == 0) {
      throw std::runtime_error("expected a callgrind file per worker process");
    }
    for (const auto& [pid, total] : w) {
      if (pid != worker.pid()) pass.workers += total;  // the supervisor does no per-task work
    }
    const auto c = totals(dir.path(), "client");
    if (c.size() != 1) throw std::runtime_error("expected one client callgrind file");
    pass.client = c.begin()->second;
  }
  return pass;
}

// One pass of zmq-baseline in window mode (single-item requests, 1,000 in flight, 2 workers)
// or in latency mode (one request at a time: `latency`), every process under callgrind; the
// program says which pid is which.
Pass baseline_pass(std::uint64_t n, const std::string& keep_dir, const std::string& name,
                   bool latency = false) {
  TempDir dir;
  const Completed r =
      run(under_callgrind(dir.path(), "baseline",
                          {SEPPO_BENCH_BASELINE, "--mode", latency ? "latency" : "window",
                           latency ? "--samples" : "--items", std::to_string(n), "--warmup", "0",
                           "--pids", "--timeout", "1100"}),
          "", kStepTimeout);
  if (r.status != 0) throw std::runtime_error("zmq-baseline under callgrind failed: " + r.err);
  std::smatch m;
  const std::regex pids(R"(pids client=([0-9]+) relay=([0-9]+) workers=([0-9,]+))");
  if (!std::regex_search(r.out, m, pids)) throw std::runtime_error("zmq-baseline: no pids line");
  const int client = std::stoi(m[1]);
  const int relay = std::stoi(m[2]);
  std::ofstream(dir.path() / "pids") << m[0] << "\n";  // for bench/profile.py
  keep(dir.path(), keep_dir, name);
  Pass pass;
  for (const auto& [pid, total] : totals(dir.path(), "baseline")) {
    if (pid == client) {
      pass.client = total;
    } else if (pid == relay) {
      pass.broker = total;
    } else {
      pass.workers += total;
    }
  }
  return pass;
}

double per_task(std::uint64_t small, std::uint64_t large, std::uint64_t n) {
  return (static_cast<double>(large) - static_cast<double>(small)) / static_cast<double>(n);
}

}  // namespace

std::vector<Row> callgrind_rows(const CallgrindOptions& options) {
  const std::uint64_t n = options.tasks;
  const Pass s1 = seppo_pass(n, 2, true, 0, options.keep, "seppo-" + std::to_string(n));
  const Pass s2 = seppo_pass(2 * n, 2, true, 0, options.keep, "seppo-" + std::to_string(2 * n));
  // The same with workers that keep one task per message (--no-batch, issue 28): before.
  const std::vector<std::string> single = {"--no-batch"};
  const Pass o1 = seppo_pass(n, 2, true, 0, "", "single-" + std::to_string(n), single);
  const Pass o2 = seppo_pass(2 * n, 2, true, 0, "", "single-" + std::to_string(2 * n), single);
  // With a client that does not name "batch" (ClientOptions::batch false): one DELIVER per
  // answer, as before DELIVERS (issue 28).
  const Pass d1 = seppo_pass(n, 2, true, 0, "", "deliver-" + std::to_string(n), {}, false);
  const Pass d2 = seppo_pass(2 * n, 2, true, 0, "", "deliver-" + std::to_string(2 * n), {}, false);
  // With a client that sends one SUBMIT per chunk (ClientOptions::submits false), as before
  // SUBMITS (issue 28), DELIVERS still on.
  const Pass u1 = seppo_pass(n, 2, true, 0, "", "submit-" + std::to_string(n), {}, true, 0, false);
  const Pass u2 =
      seppo_pass(2 * n, 2, true, 0, "", "submit-" + std::to_string(2 * n), {}, true, 0, false);
  const Pass b1 = baseline_pass(n, options.keep, "baseline-" + std::to_string(n));
  const Pass b2 = baseline_pass(2 * n, options.keep, "baseline-" + std::to_string(2 * n));
  const auto row = [&](const std::string& what, std::uint64_t Pass::*field, const Pass& p1,
                       const Pass& p2) {
    const double seppo = per_task(p1.*field, p2.*field, n);
    const double base = per_task(b1.*field, b2.*field, n);
    return Row{"(m) callgrind, single-item tasks: " + what, count(seppo), count(base),
               fmt("%.2f×", seppo / base),
               "instructions per task, all threads; (pass of " + std::to_string(2 * n) +
                   " − pass of " + std::to_string(n) + ") / " + std::to_string(n)};
  };
  record("m.broker", per_task(s1.broker, s2.broker, n), per_task(b1.broker, b2.broker, n));
  record("m.workers", per_task(s1.workers, s2.workers, n), per_task(b1.workers, b2.workers, n));
  record("m.client", per_task(s1.client, s2.client, n), per_task(b1.client, b2.client, n));
  return {row("broker (baseline: relay)", &Pass::broker, s1, s2),
          row("worker processes, summed", &Pass::workers, s1, s2),
          row("client", &Pass::client, s1, s2),
          row("broker, client submits false", &Pass::broker, u1, u2),
          row("client, client submits false", &Pass::client, u1, u2),
          row("broker, client batch false", &Pass::broker, d1, d2),
          row("client, client batch false", &Pass::client, d1, d2),
          row("broker, workers --no-batch", &Pass::broker, o1, o2),
          row("worker processes --no-batch, summed", &Pass::workers, o1, o2)};
}

std::vector<Row> in_flight_rows(const CallgrindOptions& options) {
  const std::uint64_t n = options.in_flight_tasks;
  // The client maps square over 0..n-1 in chunks of 1 with a window of 1 chunk: one task in
  // flight, each sent when the one before is answered.
  const Pass s1 = seppo_pass(n, 2, true, 0, options.keep, "one-" + std::to_string(n), {}, true, 1);
  const Pass s2 =
      seppo_pass(2 * n, 2, true, 0, options.keep, "one-" + std::to_string(2 * n), {}, true, 1);
  const Pass b1 = baseline_pass(n, options.keep, "baseline-latency-" + std::to_string(n), true);
  const Pass b2 =
      baseline_pass(2 * n, options.keep, "baseline-latency-" + std::to_string(2 * n), true);
  std::vector<Row> rows;
  for (const auto& [what, key, field] :
       {std::tuple{"broker (baseline: relay)", "broker", &Pass::broker},
        std::tuple{"worker processes, summed", "workers", &Pass::workers},
        std::tuple{"client", "client", &Pass::client}}) {
    const double seppo = per_task(s1.*field, s2.*field, n);
    const double base = per_task(b1.*field, b2.*field, n);
    record(std::string("o.") + key, seppo, base);
    rows.push_back({std::string("(o) callgrind, one task in flight: ") + what, count(seppo),
                    count(base), fmt("%.2f×", seppo / base),
                    "instructions per task, all threads; client window 1 chunk of 1 item, "
                    "baseline zmq-baseline --mode latency; (pass of " +
                        std::to_string(2 * n) + " − pass of " + std::to_string(n) + ") / " +
                        std::to_string(n)});
  }
  return rows;
}

double broker_instructions_per_task(unsigned workers, std::uint64_t tasks, int ms,
                                    const std::string& keep) {
  const std::string name = "scale-" + std::to_string(workers) + "-";
  const Pass a = seppo_pass(tasks, workers, false, ms, keep, name + std::to_string(tasks));
  const Pass b = seppo_pass(2 * tasks, workers, false, ms, keep, name + std::to_string(2 * tasks));
  return per_task(a.broker, b.broker, tasks);
}

}  // namespace seppo::bench
