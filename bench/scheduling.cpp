#include "bench/scheduling.hpp"

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <map>
#include <numeric>
#include <queue>
#include <random>
#include <sstream>
#include <stdexcept>

#include <seppo/seppo.hpp>

#include "bench/callgrind.hpp"
#include "tests/support/cluster.hpp"

namespace seppo::bench {

using namespace seppo::test;

namespace {

struct JobRun {
  double wall = 0;            // first item sent to last result in, seconds
  std::uint64_t busy_us = 0;  // what the workers spent on the chunks, by their own clocks
  std::map<std::string, int> per_worker;  // items each worker process ran
  int messages = 0;                       // result messages (chunks) from the broker
};

// Maps example_module.sleep_ms over `ms` (adaptive chunks, the default), checking every answer.
JobRun sleep_job(Client& client, const std::vector<int>& ms) {
  JobRun r;
  std::size_t next = 0, back = 0;
  const auto start = Clock::now();
  client.run(
      "example_module.sleep_ms",
      [&](Client::Packer& p) {
        if (next == ms.size()) return false;
        p.pack(ms[next++]);
        return true;
      },
      [&](const Client::Item& item) {
        if (item.error) throw std::runtime_error(*item.error);
        if (item.index >= ms.size() || item.value->as<std::int64_t>() != ms[item.index]) {
          throw std::runtime_error("sleep_ms: wrong answer");
        }
        if (item.last_in_message) {
          r.busy_us += item.chunk_elapsed_us;
          ++r.messages;
        }
        if (item.worker) ++r.per_worker[*item.worker];
        ++back;
        return true;
      });
  r.wall = seconds_since(start);
  if (back != ms.size()) throw std::runtime_error("sleep_ms: answers missing");
  return r;
}

std::size_t g_window = 0;
std::uint32_t g_prefetch = 0;

ClientOptions client_options() {
  ClientOptions o;
  o.timeout = std::chrono::seconds(60);
  if (g_window > 0) o.window = g_window;
  return o;
}

// A broker and `workers` worker connections (one seppo-worker with -j), all connected.
std::unique_ptr<Cluster> cluster_of(unsigned workers) {
  auto cluster = std::make_unique<Cluster>(std::vector<std::string>{});
  std::vector<std::string> extra;
  if (g_prefetch > 0) extra = {"--prefetch", std::to_string(g_prefetch)};
  cluster->add_worker(workers, extra);
  if (!cluster->wait_for_workers(workers, std::chrono::minutes(3))) {
    throw std::runtime_error(std::to_string(workers) + " workers did not connect");
  }
  return cluster;
}

// CPU seconds (user + system, all threads) of a process, from /proc/PID/stat.
double cpu_seconds(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const std::size_t close = text.rfind(')');  // the command name may hold spaces
  if (close == std::string::npos) return 0;
  std::istringstream fields(text.substr(close + 2));
  std::string field;
  double ticks = 0;
  for (int i = 3; i <= 15 && fields >> field; ++i) {
    if (i == 14 || i == 15) ticks += std::stod(field);  // utime, stime
  }
  return ticks / static_cast<double>(::sysconf(_SC_CLK_TCK));
}

struct Cpu {
  double broker = 0, workers = 0, client = 0;  // seconds
  double total() const { return broker + workers + client; }
  Cpu operator-(const Cpu& o) const {
    return {broker - o.broker, workers - o.workers, client - o.client};
  }
};

// CPU seconds of the broker, the worker supervisor and its processes, and this one.
Cpu cluster_cpu_seconds(Cluster& cluster) {
  const pid_t supervisor = cluster.worker(0).pid();
  Cpu cpu{cpu_seconds(cluster.broker().pid()), cpu_seconds(supervisor), cpu_seconds(::getpid())};
  for (const auto& entry : std::filesystem::directory_iterator("/proc")) {
    const std::string name = entry.path().filename().string();
    if (name.find_first_not_of("0123456789") != std::string::npos) continue;
    std::ifstream in(entry.path() / "stat");
    std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    const std::size_t close = text.rfind(')');
    if (close == std::string::npos) continue;
    std::istringstream fields(text.substr(close + 2));
    std::string state;
    pid_t parent = 0;
    if (fields >> state >> parent && parent == supervisor) {
      cpu.workers += cpu_seconds(std::stoi(name));
    }
  }
  return cpu;
}

// The best one can do: all the work spread evenly, and never less than the longest item.
double lower_bound_ms(const std::vector<int>& ms, unsigned workers) {
  const double total = std::accumulate(ms.begin(), ms.end(), 0.0);
  return std::max(total / workers, static_cast<double>(*std::max_element(ms.begin(), ms.end())));
}

}  // namespace

void set_client_window(std::size_t chunks) {
  g_window = chunks;
}

void set_worker_prefetch(std::uint32_t tasks) {
  g_prefetch = tasks;
}

double lpt_makespan_ms(std::vector<int> ms, unsigned workers) {
  std::sort(ms.begin(), ms.end(), std::greater<>());
  std::priority_queue<double, std::vector<double>, std::greater<>> loads;
  for (unsigned i = 0; i < workers; ++i) loads.push(0);
  double makespan = 0;
  for (int m : ms) {
    const double load = loads.top() + m;
    loads.pop();
    loads.push(load);
    makespan = std::max(makespan, load);
  }
  return makespan;
}

Row scale(unsigned workers, int items, int ms, std::uint64_t callgrind_tasks,
          const std::string& keep) {
  JobRun r;
  Cpu cpu;  // what the whole cluster spent on the timed job
  {
    const auto cluster = cluster_of(workers);
    Client client(cluster->endpoint(), client_options());
    sleep_job(client, std::vector<int>(2 * workers, ms));  // warm-up: every connection used
    const Cpu before = cluster_cpu_seconds(*cluster);
    r = sleep_job(client, std::vector<int>(items, ms));
    cpu = cluster_cpu_seconds(*cluster) - before;
  }
  const double ideal = static_cast<double>(items) * ms / 1000.0 / workers;
  std::string note =
      "efficiency = ideal / wall; " +
      fmt("the sleeps took %.2f ms each, ", r.busy_us / 1000.0 / items) +
      fmt("so %.1f%% of what they allow; ", 100 * r.busy_us / 1e6 / workers / r.wall) +
      std::to_string(r.per_worker.size()) + " workers used; " +
      fmt("CPU per task (user + system) %.0f µs: ", cpu.total() / items * 1e6) +
      fmt("broker %.0f, ", cpu.broker / items * 1e6) +
      fmt("workers %.0f, ", cpu.workers / items * 1e6) +
      fmt("client %.0f; ", cpu.client / items * 1e6) +
      fmt("%.2f cores at the ideal rate", cpu.total() / ideal);
  if (callgrind_tasks > 0) {
    const double per_task = broker_instructions_per_task(workers, callgrind_tasks, ms, keep);
    note += "; broker " + count(per_task) + " instructions per task (callgrind, " +
            std::to_string(2 * callgrind_tasks) + " − " + std::to_string(callgrind_tasks) +
            " tasks)";
  }
  record(fmt("j.%.0f", workers) + fmt("x%.0fms.efficiency", ms), ideal / r.wall);
  return {"(j) " + std::to_string(items) + " items of " + std::to_string(ms) + " ms, " +
              std::to_string(workers) + " worker connections",
          fmt("%.2f s", r.wall), fmt("ideal %.2f s", ideal), fmt("%.1f%%", 100 * ideal / r.wall),
          note};
}

Row tiny_then_slow(unsigned workers, int tiny, int slow, int slow_ms) {
  const auto cluster = cluster_of(workers);
  Client client(cluster->endpoint(), client_options());
  const JobRun fast = sleep_job(client, std::vector<int>(tiny, 0));
  const std::vector<int> slow_ms_list(slow, slow_ms);
  const JobRun r = sleep_job(client, slow_ms_list);
  const double lpt = lpt_makespan_ms(slow_ms_list, workers) / 1000;
  const double bound = lower_bound_ms(slow_ms_list, workers) / 1000;
  int most = 0;
  for (const auto& [worker, n] : r.per_worker) most = std::max(most, n);
  const int fair = (slow + static_cast<int>(workers) - 1) / static_cast<int>(workers);
  record("k.best_over_wall", lpt / r.wall);
  return {"(k) " + std::to_string(tiny) + " items of 0 ms, then " + std::to_string(slow) + " of " +
              std::to_string(slow_ms) + " ms, " + std::to_string(workers) + " worker connections",
          fmt("%.3f s", r.wall) + fmt(" (tiny job %.2f s)", fast.wall),
          fmt("best %.3f s", lpt) + fmt(", bound %.3f s", bound), fmt("%.1f%%", 100 * lpt / r.wall),
          "slow job's makespan; ratio = best / wall; most slow items on one worker: " +
              std::to_string(most) + " (fair share " + std::to_string(fair) + "), " +
              std::to_string(r.per_worker.size()) + " workers used, " + std::to_string(r.messages) +
              " result messages"};
}

Row heavy_tail(unsigned workers, int items) {
  // 1 % of the items, at places drawn with a fixed seed, take 200 ms; the rest 1 ms.
  std::vector<int> ms(items, 1);
  std::vector<int> places(items);
  std::iota(places.begin(), places.end(), 0);
  std::mt19937 random(16);
  const int slow = std::max(1, items / 100);
  for (int i = 0; i < slow; ++i) {
    std::uniform_int_distribution<int> pick(i, items - 1);
    std::swap(places[i], places[pick(random)]);
    ms[places[i]] = 200;
  }
  const auto cluster = cluster_of(workers);
  Client client(cluster->endpoint(), client_options());
  sleep_job(client, std::vector<int>(2 * workers, 1));  // warm-up: every connection used
  const JobRun r = sleep_job(client, ms);
  const double lpt = lpt_makespan_ms(ms, workers) / 1000;
  const double bound = lower_bound_ms(ms, workers) / 1000;
  const double allowed = std::max(r.busy_us / 1e6 / workers, 0.2);
  record("l.best_over_wall", lpt / r.wall);
  return {"(l) " + std::to_string(items) + " items, 99% of 1 ms and 1% of 200 ms, " +
              std::to_string(workers) + " worker connections",
          fmt("%.3f s", r.wall), fmt("best %.3f s", lpt) + fmt(", bound %.3f s", bound),
          fmt("%.1f%%", 100 * lpt / r.wall),
          "ratio = best (LPT schedule) / wall; " +
              fmt("the sleeps took %.2f s in all, ", r.busy_us / 1e6) +
              fmt("so their own bound is %.3f s: ", allowed) +
              fmt("%.1f%% of it", 100 * allowed / r.wall)};
}

}  // namespace seppo::bench
