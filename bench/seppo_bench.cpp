// seppo-bench: seppo's figures next to the raw-ZeroMQ baseline's, measured in the same run.
//
// Each scenario starts its own broker and two worker processes (tests/support/cluster), runs,
// and stops them. The baseline program (zmq-baseline) runs right before the scenario it is
// compared with, so both see the same load on a shared machine. Prints a Markdown table.
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <numeric>
#include <optional>
#include <ranges>
#include <regex>
#include <sstream>

#include <CLI/CLI.hpp>
#include <seppo/seppo.hpp>

#include "bench/callgrind.hpp"
#include "bench/common.hpp"
#include "bench/scheduling.hpp"
#include "tests/support/cluster.hpp"

using namespace seppo;
using namespace seppo::test;
using namespace seppo::bench;

namespace {

// Runs zmq-baseline and returns its key=value figures (from the median line when --runs > 1).
std::map<std::string, double> baseline(std::vector<std::string> args) {
  args.insert(args.begin(), SEPPO_BENCH_BASELINE);
  const Completed r = run(args, "", std::chrono::minutes(5));
  std::map<std::string, double> out;
  std::istringstream lines(r.out);
  std::string line;
  const std::regex pair(R"((\w+)=([0-9.]+))");
  while (std::getline(lines, line)) {
    for (std::sregex_iterator m(line.begin(), line.end(), pair), end; m != end; ++m) {
      out[(*m)[1]] = std::stod((*m)[2]);
    }
  }
  if (out.count("rate") == 0) throw std::runtime_error("zmq-baseline failed: " + r.err);
  return out;
}

ClientOptions options(std::size_t chunk_size = 0) {
  ClientOptions o;
  o.timeout = std::chrono::seconds(60);
  o.chunk_size = chunk_size;
  return o;
}

// Maps square over 0..n-1 without storing inputs or results: the streaming path.
double stream_squares(Client& client, std::uint64_t n, std::uint64_t* sum_out = nullptr) {
  std::uint64_t next = 0;
  std::uint64_t sum = 0;
  const auto start = Clock::now();
  client.run(
      "example_module.square",
      [&](Client::Packer& p) {
        if (next == n) return false;
        p.pack(next++);
        return true;
      },
      [&](const Client::Item& item) {
        if (item.error) throw std::runtime_error(*item.error);
        sum += item.value->as<std::uint64_t>();
        return true;
      });
  const double s = seconds_since(start);
  if (sum_out) *sum_out = sum;
  return s;
}

std::uint64_t vm_hwm_kib(pid_t pid) {
  std::ifstream status("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind("VmHWM:", 0) == 0) return std::stoull(line.substr(6));
  }
  return 0;
}

Row throughput(std::uint64_t items) {
  auto base = baseline({"--mode", "batched", "--items", std::to_string(items), "--runs", "3"});
  Cluster cluster(std::vector<std::string>{});
  cluster.add_worker(2);
  if (!cluster.wait_for_workers(2)) throw std::runtime_error("workers did not start");
  Client client(cluster.endpoint(), options());
  stream_squares(client, items / 10);  // warm-up: connections, chunk sizing
  std::vector<double> rates;
  for (int i = 0; i < 3; ++i) rates.push_back(items / stream_squares(client, items));
  std::sort(rates.begin(), rates.end());
  const double seppo = rates[1];
  record("a.items_per_s", seppo, base["rate"]);
  return {"(a) " + std::to_string(items) + " squares, 2 workers, adaptive chunks", rate(seppo),
          rate(base["rate"]) + " (batches of 1000)", fmt("%.0f%%", 100 * seppo / base["rate"]),
          "items/s, median of 3"};
}

// Context switches, voluntary and not, of every thread of `root` and its descendants so far
// (a seppo-worker supervisor and its worker processes): /proc/PID/task/TID/status.
std::uint64_t context_switches(pid_t root) {
  std::uint64_t total = 0;
  std::vector<pid_t> pending = {root};
  for (std::size_t n = 0; n < pending.size() && n < 4096; ++n) {
    const std::filesystem::path tasks = "/proc/" + std::to_string(pending[n]) + "/task";
    std::error_code ec;
    for (const auto& task : std::filesystem::directory_iterator(tasks, ec)) {
      std::ifstream status(task.path() / "status");
      std::string line;
      while (std::getline(status, line)) {
        if (line.rfind("voluntary_ctxt_switches:", 0) == 0 ||
            line.rfind("nonvoluntary_ctxt_switches:", 0) == 0) {
          total += std::stoull(line.substr(line.find(':') + 1));
        }
      }
      std::ifstream children(task.path() / "children");
      pid_t child = 0;
      while (children >> child) pending.push_back(child);
    }
  }
  return total;
}

// (b) at chunk size 1, with workers and client that batch (TASKS, RESULTS, DELIVERS: issue 28)
// and, in the same run, with a client that does not (ClientOptions::batch false: one DELIVER
// per answer), and with workers started --no-batch too (one task per message each way, as
// before issue 28); each with the worker processes' context switches per task over the three
// timed runs. The client's window is the relay's 1,000 messages (issue 28's target reads
// "window 1000"), and once more ClientOptions' default 256.
std::vector<Row> unbatched(std::uint64_t items) {
  auto base = baseline(
      {"--mode", "window", "--window", "1000", "--items", std::to_string(items), "--runs", "3"});
  std::vector<Row> rows;
  for (const int mode : {0, 4, 3, 1, 2}) {
    const bool batch = mode != 2;
    Cluster cluster(std::vector<std::string>{});
    Process& workers = cluster.add_worker(
        2, batch ? std::vector<std::string>{} : std::vector<std::string>{"--no-batch"});
    if (!cluster.wait_for_workers(2)) throw std::runtime_error("workers did not start");
    ClientOptions client_options = options(1);
    // The relay's window, as issue 28's target reads; mode 4 keeps ClientOptions' default.
    if (mode != 4) client_options.window = 1000;
    client_options.batch = mode == 0 || mode == 3 || mode == 4;
    client_options.submits = mode == 0 || mode == 4;  // 3: DELIVERS, but one SUBMIT per chunk
    Client client(cluster.endpoint(), client_options);
    stream_squares(client, items / 10);
    const std::uint64_t switches_before = context_switches(workers.pid());
    std::vector<double> rates;
    for (int i = 0; i < 3; ++i) rates.push_back(items / stream_squares(client, items));
    const double switches =
        static_cast<double>(context_switches(workers.pid()) - switches_before) / (3.0 * items);
    std::sort(rates.begin(), rates.end());
    record(mode == 0   ? "b.tasks_per_s"
           : mode == 4 ? "b.tasks_per_s.window_256"
           : mode == 3 ? "b.tasks_per_s.client_submits_false"
           : mode == 1 ? "b.tasks_per_s.client_batch_false"
                       : "b.tasks_per_s.no_batch",
           rates[1], base["rate"]);
    rows.push_back({"(b) " + std::to_string(items) + " squares, chunk size 1" +
                        (mode == 0   ? ""
                         : mode == 4 ? ", client window 256 (the default)"
                         : mode == 3 ? ", client submits false"
                         : mode == 1 ? ", client batch false"
                                     : ", client batch false, workers --no-batch"),
                    rate(rates[1]), rate(base["rate"]) + " (window 1000)",
                    fmt("%.0f%%", 100 * rates[1] / base["rate"]),
                    "tasks/s, median of 3; worker processes' context switches per task " +
                        fmt("%.2f", switches)});
  }
  return rows;
}

Row latency(int samples) {
  auto base = baseline({"--mode", "latency", "--samples", std::to_string(samples)});
  Cluster cluster(std::vector<std::string>{});
  Process& workers = cluster.add_worker(2);
  if (!cluster.wait_for_workers(2)) throw std::runtime_error("workers did not start");
  Client client(cluster.endpoint(), options());
  const std::vector<std::int64_t> one{7};
  std::vector<double> us;
  std::uint64_t switches_from = 0;
  for (int i = 0; i < samples + 100; ++i) {
    if (i == 100) switches_from = context_switches(workers.pid());
    const auto start = Clock::now();
    client.map_parallel<std::int64_t>("example_module.square", one);
    if (i >= 100) us.push_back(seconds_since(start) * 1e6);
  }
  // The worker processes' wake-ups per task (issue 28: the relay worker's are 2, receive and
  // send): context switches of all their threads, one task in flight.
  const double switches =
      static_cast<double>(context_switches(workers.pid()) - switches_from) / samples;
  std::sort(us.begin(), us.end());
  const double p50 = us[us.size() / 2];
  const double p99 = us[us.size() * 99 / 100];
  record("c.p50_us", p50, base["p50_us"]);
  record("c.p99_us", p99, base["p99_us"]);
  return {"(c) one-item map_parallel round trip",
          fmt("p50 %.0f µs", p50) + fmt(", p99 %.0f µs", p99),
          fmt("p50 %.0f µs", base["p50_us"]) + fmt(", p99 %.0f µs", base["p99_us"]),
          fmt("%.2f×", p50 / base["p50_us"]),
          "p50 ratio (lower is better); worker processes' context switches per task " +
              fmt("%.2f", switches)};
}

Row efficiency(int items, int ms) {
  Cluster cluster(std::vector<std::string>{});
  cluster.add_worker(2);
  if (!cluster.wait_for_workers(2)) throw std::runtime_error("workers did not start");
  Client client(cluster.endpoint(), options());
  int next = 0;
  std::uint64_t busy_us = 0;  // what the workers spent running chunks, by their own clocks
  const auto start = Clock::now();
  client.run(
      "example_module.sleep_ms",
      [&](Client::Packer& p) {
        if (next == items) return false;
        p.pack(ms);
        ++next;
        return true;
      },
      [&](const Client::Item& item) {
        if (item.error) throw std::runtime_error(*item.error);
        if (item.last_in_message) busy_us += item.chunk_elapsed_us;
        return true;
      });
  const double wall = seconds_since(start);
  const double ideal = items * ms / 1000.0 / 2;
  // A sleep of 1 ms takes longer than 1 ms (timer slack, virtualisation): measured against
  // what the sleeps really took, the rest of the shortfall is seppo's.
  const double achievable = busy_us / 1e6 / 2;
  record("d.efficiency", ideal / wall);
  return {"(d) " + std::to_string(items) + " items of " + std::to_string(ms) + " ms, 2 workers",
          fmt("%.2f s", wall), fmt("ideal %.2f s", ideal), fmt("%.1f%%", 100 * ideal / wall),
          "efficiency = ideal / wall; " +
              fmt("the sleeps took %.3f ms each, ", busy_us / 1000.0 / items) +
              fmt("so %.1f%% of what they allow", 100 * achievable / wall)};
}

// The client runs in a child process of its own so that its peak RSS is its own. `mode` is
// run (Client::run), imap or unordered (imap_unordered).
Row memory(std::uint64_t items, const std::string& mode) {
  Cluster cluster(std::vector<std::string>{});
  cluster.add_worker(2);
  if (!cluster.wait_for_workers(2)) throw std::runtime_error("workers did not start");
  const auto start = Clock::now();
  const Completed child = run({"/proc/self/exe", "--stream-child", std::to_string(items),
                               "--stream-mode", mode, "--endpoint", cluster.endpoint()},
                              "", std::chrono::minutes(5));
  const double wall = seconds_since(start);
  if (child.status != 0) throw std::runtime_error("streaming child failed: " + child.err);
  const std::uint64_t client_kib = std::stoull(child.out);
  const std::uint64_t broker_kib = vm_hwm_kib(cluster.broker().pid());
  const std::string letter = mode == "run" ? "e" : mode == "imap" ? "g" : "h";
  record(letter + ".client_mb", client_kib / 1024.0);
  record(letter + ".broker_mb", broker_kib / 1024.0);
  const std::string what =
      mode == "run"    ? "(e) " + std::to_string(items) + " items streamed (Client::run)"
      : mode == "imap" ? "(g) " + std::to_string(items) + " items through imap, summed in order"
                       : "(h) " + std::to_string(items) + " items through imap_unordered, summed";
  return {what,
          fmt("client %.1f MB", client_kib / 1024.0) + fmt(", broker %.1f MB", broker_kib / 1024.0),
          "-", "-", fmt("peak RSS; %.2f M items/s", items / wall / 1e6)};
}

// As memory(), with no cluster of its own: the child starts a LocalCluster.
Row local_memory(std::uint64_t items) {
  const auto start = Clock::now();
  const Completed child =
      run({"/proc/self/exe", "--stream-child", std::to_string(items), "--stream-mode", "local"}, "",
          std::chrono::minutes(5));
  const double wall = seconds_since(start);
  if (child.status != 0) throw std::runtime_error("local cluster child failed: " + child.err);
  record("i.program_mb", std::stoull(child.out) / 1024.0);
  return {"(i) LocalCluster of 2: 100000 items by map_parallel, then " + std::to_string(items) +
              " generated through imap, summed",
          fmt("program %.1f MB (broker thread included)", std::stoull(child.out) / 1024.0), "-",
          "-", fmt("peak RSS; %.1f s in all", wall)};
}

int stream_child(std::uint64_t items, const std::string& mode, const std::string& endpoint,
                 std::size_t chunk_size, bool batch, bool submits, std::size_t window) {
  std::optional<seppo::LocalCluster> local;
  if (mode == "local") {
    // Issue 7's program: a local cluster (broker thread in this process, 2 worker processes)
    // maps a vector of 100,000, then a generator of `items` through imap.
    seppo::LocalClusterOptions cluster = seppo::LocalClusterOptions::from_env();
    cluster.module_path = std::filesystem::path(Paths::example_module()).parent_path().string();
    local.emplace(2, cluster);
    std::vector<std::uint64_t> small(100000);
    std::iota(small.begin(), small.end(), std::uint64_t{0});
    const auto squares = local->map_parallel<std::uint64_t>("example_module.square", small);
    for (std::uint64_t x = 0; x < small.size(); ++x) {
      if (squares[x] != x * x) {
        std::fprintf(stderr, "wrong square of %llu\n", static_cast<unsigned long long>(x));
        return 1;
      }
    }
  }
  ClientOptions child_options = options(chunk_size);
  child_options.batch = batch;      // (m): false for the pass of one DELIVER per answer (issue 28)
  child_options.submits = submits;  // false: one SUBMIT per chunk (before SUBMITS, issue 28)
  if (window > 0) child_options.window = window;  // (o): 1, one task in flight
  Client client = local ? local->client(child_options) : Client(endpoint, child_options);
  std::uint64_t sum = 0;
  // The inputs are generated as they are read: nothing of size `items` exists anywhere.
  const auto inputs = std::views::iota(std::uint64_t{0}, items);
  if (mode == "imap" || mode == "local") {
    for (std::uint64_t y : client.imap<std::uint64_t>("example_module.square", inputs)) sum += y;
  } else if (mode == "unordered") {
    for (const auto& y : client.imap_unordered<std::uint64_t>("example_module.square", inputs)) {
      sum += y.value;
    }
  } else {
    stream_squares(client, items, &sum);
  }
  std::uint64_t expected = 0;  // wraps around like the sum
  for (std::uint64_t x = 0; x < items; ++x) expected += x * x;
  if (sum != expected) {
    std::fprintf(stderr, "wrong sum of squares: %llu, not %llu\n",
                 static_cast<unsigned long long>(sum), static_cast<unsigned long long>(expected));
    return 1;
  }
  rusage usage{};
  ::getrusage(RUSAGE_SELF, &usage);
  std::printf("%ld\n", usage.ru_maxrss);
  return 0;
}

Row shell(std::uint64_t lines) {
  auto base = baseline({"--mode", "batched", "--items", std::to_string(lines)});
  Cluster cluster(std::vector<std::string>{});
  cluster.add_worker(2);
  if (!cluster.wait_for_workers(2)) throw std::runtime_error("workers did not start");
  const std::string command = "seq 1 " + std::to_string(lines) + " | " + Paths::cli() +
                              " --broker " + cluster.endpoint() +
                              " map example_module.square | tail -n 1";
  const auto start = Clock::now();
  const Completed r = run({"/bin/sh", "-c", command}, "", std::chrono::minutes(5));
  const double wall = seconds_since(start);
  if (r.status != 0) throw std::runtime_error("seppo map failed: " + r.err);
  record("f.lines_per_s", lines / wall, base["rate"]);
  return {"(f) seq 1 " + std::to_string(lines) + " \\| seppo map example_module.square",
          rate(lines / wall), rate(base["rate"]) + " (batches of 1000)",
          fmt("%.0f%%", 100 * lines / wall / base["rate"]), "lines/s"};
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{
      "seppo-bench: seppo's throughput, latency, efficiency and memory next to raw ZeroMQ"};
  std::vector<std::string> only;
  bool quick = false;
  std::uint64_t child_items = 0;
  std::string child_mode = "run";
  std::string endpoint;
  std::size_t child_chunk_size = 0;
  CallgrindOptions callgrind;
  std::uint64_t scale_callgrind_tasks = 1000;
  app.add_option(
      "--only", only,
      "scenarios to run: a b c d e f g h i j k l m o, or j2 j20 j200 j200s (default all)");
  app.add_flag("--quick", quick, "smaller sizes, for a smoke test");
  app.add_option("--callgrind-tasks", callgrind.tasks,
                 "(m): N, the passes run N and 2N single-item tasks under callgrind")
      ->capture_default_str();
  app.add_option("--in-flight-callgrind-tasks", callgrind.in_flight_tasks,
                 "(o): N, the passes run N and 2N tasks one at a time under callgrind")
      ->capture_default_str();
  app.add_option("--scale-callgrind-tasks", scale_callgrind_tasks,
                 "(j): N for the broker's instructions per task at each size (0: skip)")
      ->capture_default_str();
  std::size_t window = 0;
  app.add_option("--window", window,
                 "(j), (k), (l): the client's window in chunks (default: ClientOptions' 256)");
  std::uint32_t prefetch = 0;
  app.add_option("--prefetch", prefetch,
                 "(j), (k), (l): the workers' --prefetch (default: adapted to the tasks' time)");
  app.add_option("--keep-callgrind", callgrind.keep,
                 "copy every callgrind file of (j) and (m) to this folder (for bench/profile.sh)");
  app.add_option("--stream-child", child_items)->group("");
  app.add_option("--stream-mode", child_mode)->group("");
  app.add_option("--chunk-size", child_chunk_size)->group("");
  app.add_option("--endpoint", endpoint)->group("");
  bool child_batch = true;
  app.add_option("--client-batch", child_batch)->group("");
  bool child_submits = true;
  app.add_option("--client-submits", child_submits)->group("");
  std::size_t child_window = 0;
  app.add_option("--client-window", child_window)->group("");
  std::string results;
  app.add_option("--results", results,
                 "also write every figure to this file, one a line: key, seppo, baseline "
                 "(tab-separated; bench/targets.py reads it)");
  CLI11_PARSE(app, argc, argv);
  if (child_items > 0) {
    return stream_child(child_items, child_mode, endpoint, child_chunk_size, child_batch,
                        child_submits, child_window);
  }
  set_client_window(window);
  set_worker_prefetch(prefetch);

  const auto want = [&](const std::string& s) {
    return only.empty() || std::find(only.begin(), only.end(), s) != only.end();
  };
  const std::uint64_t scale = quick ? 10 : 1;
  std::vector<Row> rows;
  try {
    if (want("a")) rows.push_back(throughput(1000000 / scale));
    if (want("b")) {
      for (Row& r : unbatched(200000 / scale)) rows.push_back(std::move(r));
    }
    if (want("c")) rows.push_back(latency(quick ? 200 : 2000));
    if (want("d")) rows.push_back(efficiency(quick ? 200 : 2000, 1));
    if (want("e")) rows.push_back(memory(10000000 / scale, "run"));
    if (want("f")) rows.push_back(shell(1000000 / scale));
    if (want("g")) rows.push_back(memory(10000000 / scale, "imap"));
    if (want("h")) rows.push_back(memory(10000000 / scale, "unordered"));
    if (want("i")) rows.push_back(local_memory(10000000 / scale));
    // (j): 20,000 items of 10 ms; 2 workers get a tenth of them, or they would take 100 s.
    // --only j2, j20, j200 or j200s runs one size.
    const std::uint64_t cg = quick ? 0 : scale_callgrind_tasks;
    if (want("j") || want("j2")) {
      rows.push_back(seppo::bench::scale(2, quick ? 40 : 2000, 10, cg, callgrind.keep));
    }
    if (want("j") || want("j20")) {
      rows.push_back(seppo::bench::scale(20, quick ? 400 : 20000, 10, cg, callgrind.keep));
    }
    if ((want("j") && !quick) || want("j200")) {
      rows.push_back(seppo::bench::scale(200, quick ? 4000 : 20000, 10, cg, callgrind.keep));
    }
    // 200 connections at a tenth of the task rate (2,000 items of 100 ms, ideal 1 s): 200
    // processes on 2 cores cost about 300 µs of CPU per task (bench/PROFILE.md), so at 20,000
    // tasks/s the cores, not the scheduling, limit j200; here they do not.
    if ((want("j") && !quick) || want("j200s")) {
      rows.push_back(seppo::bench::scale(200, quick ? 400 : 2000, 100, cg, callgrind.keep));
    }
    if (want("k")) rows.push_back(tiny_then_slow(8, quick ? 2000 : 20000, quick ? 20 : 100, 50));
    if (want("l")) rows.push_back(heavy_tail(8, quick ? 500 : 5000));
    if (want("m")) {
      if (quick) callgrind.tasks = std::min<std::uint64_t>(callgrind.tasks, 200);
      for (Row& r : callgrind_rows(callgrind)) rows.push_back(std::move(r));
    }
    if (want("o")) {
      if (quick)
        callgrind.in_flight_tasks = std::min<std::uint64_t>(callgrind.in_flight_tasks, 200);
      for (Row& r : in_flight_rows(callgrind)) rows.push_back(std::move(r));
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "seppo-bench: %s\n", e.what());
    return 1;
  }
  std::printf(
      "| scenario | seppo | raw ZeroMQ baseline | ratio | figure |\n|---|---|---|---|---|\n");
  for (const Row& r : rows) {
    std::printf("| %s | %s | %s | %s | %s |\n", r.scenario.c_str(), r.seppo.c_str(),
                r.baseline.c_str(), r.ratio.c_str(), r.note.c_str());
  }
  if (!results.empty()) {
    std::ofstream out(results);
    for (const Figure& f : figures()) {
      out << f.key << '\t' << fmt("%.6g", f.seppo) << '\t' << fmt("%.6g", f.baseline) << '\n';
    }
    if (!out) {
      std::fprintf(stderr, "seppo-bench: could not write %s\n", results.c_str());
      return 1;
    }
  }
  return 0;
}
