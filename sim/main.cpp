// seppo-sim: runs the deterministic simulation of broker, workers and clients (sim/world.hpp).
//   seppo-sim --seed N [--steps M] [--faults all|none|LIST] [--trace]   one run, replayable
//   seppo-sim --seeds A..B [--faults ...] [--jobs J]                      many runs, a summary
//   --pair: a pair of brokers (issue 25 §2), for either of the two above
//   seppo-sim --workers N --clients M --items K [--seed N] [--chunk-size C]  the scale world
// Exits 1 when an invariant fails, printing the seed and the step; 2 on a usage error.
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "sim/world.hpp"

namespace {

using seppo::sim::RunOptions;
using seppo::sim::RunReport;

int usage(const std::string& why) {
  std::cerr << "seppo-sim: " << why << "\n"
            << "usage: seppo-sim --seed N [--steps M] [--faults all|none|LIST] [--trace]\n"
            << "       seppo-sim --seeds A..B [--faults all|none|LIST] [--jobs J]\n"
            << "         --pair (with either): two brokers, primary and backup, and the\n"
            << "         faults host-lost and ha-partition (broker-crash, broker-restart and\n"
            << "         keys are not simulated in a pair)\n"
            << "       seppo-sim --workers N --clients M --items K [--seed N] [--chunk-size C]\n"
            << "         the scale world: N workers and M clients (one job each) sharing K items\n"
            << "         in chunks of C (default 1), no faults; the broker is the real core\n"
            << "LIST: comma-separated worker-crash, broker-crash, client-vanish, partition,\n"
            << "      freeze, raise, poison, drift, hang, close-notice, churn, keys,\n"
            << "      broker-restart, host-lost, ha-partition (the last two with --pair)\n"
            << "      (issue11: the first eight, as seeds quoted before issue 12 ran)\n";
  return 2;
}

bool number(const std::string& text, std::uint64_t& out) {
  if (text.empty() || text.find_first_not_of("0123456789") != std::string::npos) return false;
  out = std::strtoull(text.c_str(), nullptr, 10);
  return true;
}

bool pair = false;  // --pair

std::string replay_hint(std::uint64_t seed, std::uint64_t step, std::uint32_t faults) {
  return "seppo-sim --seed " + std::to_string(seed) + " --steps " + std::to_string(step) +
         " --faults " + seppo::sim::fault_names(faults) + (pair ? " --pair" : "") + " --trace";
}

std::string pair_line(const RunReport& r) {
  if (!pair) return "";
  return "; pair: " + std::to_string(r.takeovers) + " takeovers, " + std::to_string(r.ha_lost) +
         " HA state messages lost";
}

void print_failure(std::uint64_t seed, const RunReport& r, std::uint32_t faults) {
  std::printf("FAILED seed %llu at step %llu (t=%.6f s): %s\n  replay: %s\n",
              static_cast<unsigned long long>(seed), static_cast<unsigned long long>(r.failed_step),
              r.failed_us / 1e6, r.failure.c_str(),
              replay_hint(seed, r.failed_step, faults).c_str());
}

// One run of the scale world: a line of what it did, and what the bench divides by.
int run_scale(std::uint64_t seed, std::uint64_t workers, std::uint64_t clients, std::uint64_t items,
              std::uint64_t chunk_size, std::uint64_t steps, bool trace) {
  RunOptions o;
  o.seed = seed;
  o.max_steps = steps;
  o.faults = 0;
  o.trace = trace ? &std::cout : nullptr;
  o.workers = static_cast<std::uint32_t>(workers);
  o.clients = static_cast<std::uint32_t>(clients);
  o.items = items;
  o.chunk_size = static_cast<std::uint32_t>(chunk_size);
  const auto started = std::chrono::steady_clock::now();
  const RunReport r = seppo::sim::run(o);
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  if (!r.ok) {
    std::cout.flush();
    std::printf("FAILED scale world seed %llu at step %llu (t=%.6f s): %s\n",
                static_cast<unsigned long long>(seed),
                static_cast<unsigned long long>(r.failed_step), r.failed_us / 1e6,
                r.failure.c_str());
    return 1;
  }
  const auto u = [](std::uint64_t v) { return static_cast<unsigned long long>(v); };
  std::printf(
      "scale seed %llu: %s, %llu workers, %llu clients, %llu items in chunks of %llu: %llu steps, "
      "%.3f s of virtual time, %.1f s; %llu jobs completed, %llu items received\n",
      u(seed), r.finished ? "ok" : "stopped", u(workers), u(clients), u(items), u(chunk_size),
      u(r.steps), r.end_us / 1e6, seconds, u(r.jobs_completed), u(r.items));
  const seppo::sim::ScaleCounts& c = r.scale;
  std::printf(
      "counts tasks=%llu worker_heartbeats=%llu client_heartbeats=%llu ticks=%llu "
      "snapshot_workers=%llu snapshot_clients=%llu status_bytes=%llu "
      "metrics_snapshot_bytes=%llu metrics_bytes=%llu\n",
      u(c.tasks), u(c.worker_heartbeats), u(c.client_heartbeats), u(c.ticks), u(c.snapshot_workers),
      u(c.snapshot_clients), u(c.status_bytes), u(c.metrics_snapshot_bytes), u(c.metrics_bytes));
  return r.finished || steps ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  std::uint64_t seed = 1, first = 0, last = 0, steps = 0, jobs = 1;
  bool range = false, trace = false, faults_given = false;
  std::uint32_t faults = seppo::sim::kAllFaults;
  std::uint64_t workers = 0, clients = 0, items = 0, chunk_size = 1;
  for (std::size_t k = 0; k < args.size(); ++k) {
    const std::string& a = args[k];
    auto value = [&]() -> std::string {
      if (k + 1 >= args.size()) return {};
      return args[++k];
    };
    if (a == "--seed") {
      if (!number(value(), seed)) return usage("--seed needs a number");
    } else if (a == "--seeds" || a == "--seed-range") {
      const std::string v = value();
      const auto dots = v.find("..");
      if (dots == std::string::npos || !number(v.substr(0, dots), first) ||
          !number(v.substr(dots + 2), last) || last < first) {
        return usage("--seeds needs A..B with A <= B");
      }
      range = true;
    } else if (a == "--steps") {
      if (!number(value(), steps)) return usage("--steps needs a number");
    } else if (a == "--jobs") {
      if (!number(value(), jobs) || jobs == 0 || jobs > 64) return usage("--jobs needs 1 to 64");
    } else if (a == "--faults") {
      const auto f = seppo::sim::parse_faults(value());
      if (!f) return usage("unknown fault in --faults");
      faults = *f;
      faults_given = true;
    } else if (a == "--workers") {
      if (!number(value(), workers) || workers == 0 || workers > 1'000'000)
        return usage("--workers needs 1 to 1000000");
    } else if (a == "--clients") {
      if (!number(value(), clients) || clients == 0 || clients > 100'000)
        return usage("--clients needs 1 to 100000");
    } else if (a == "--items") {
      if (!number(value(), items) || items == 0 || items > 1'000'000'000)
        return usage("--items needs 1 to 1000000000");
    } else if (a == "--chunk-size") {
      if (!number(value(), chunk_size) || chunk_size == 0 || chunk_size > 10'000)
        return usage("--chunk-size needs 1 to 10000");
    } else if (a == "--trace") {
      trace = true;
    } else if (a == "--pair") {
      pair = true;
    } else if (a == "--help" || a == "-h") {
      usage("the deterministic simulation of seppo's broker, workers and clients");
      return 0;
    } else {
      return usage("unknown argument " + a);
    }
  }

  if (workers || clients || items) {
    if (!workers || !clients || !items)
      return usage("the scale world needs --workers, --clients and --items together");
    if (range) return usage("the scale world runs one seed: --seed, not --seeds");
    if (faults_given && faults != 0) return usage("the scale world has no faults (--faults none)");
    if (pair) return usage("the scale world has one broker (no --pair)");
    if (items < clients) return usage("--items must be at least --clients (a job each)");
    return run_scale(seed, workers, clients, items, chunk_size, steps, trace);
  }

  if (!range) {
    RunOptions o;
    o.seed = seed;
    o.max_steps = steps;
    o.faults = faults;
    o.pair = pair;
    o.trace = trace ? &std::cout : nullptr;
    const RunReport r = seppo::sim::run(o);
    if (!r.ok) {
      std::cout.flush();
      print_failure(seed, r, faults);
      return 1;
    }
    std::printf(
        "seed %llu: %s after %llu steps, %.3f s of virtual time; %llu jobs completed, "
        "%llu cancelled, %llu vanished, %llu items (%llu errors), %llu faults, "
        "%llu worker reconnects, %llu heartbeat gaps, %llu over_limit; %llu timeouts, "
        "%llu abandons, %llu returns, %llu close notices, %llu ghosts, %llu resubmissions, "
        "%llu refused, %llu orphans, %llu restarts with running tasks (%llu items kept)%s\n",
        static_cast<unsigned long long>(seed), r.finished ? "ok" : "stopped",
        static_cast<unsigned long long>(r.steps), r.end_us / 1e6,
        static_cast<unsigned long long>(r.jobs_completed),
        static_cast<unsigned long long>(r.jobs_cancelled),
        static_cast<unsigned long long>(r.jobs_vanished), static_cast<unsigned long long>(r.items),
        static_cast<unsigned long long>(r.error_items),
        static_cast<unsigned long long>(r.faults_injected),
        static_cast<unsigned long long>(r.worker_reconnects),
        static_cast<unsigned long long>(r.heartbeat_gaps),
        static_cast<unsigned long long>(r.over_limit), static_cast<unsigned long long>(r.timeouts),
        static_cast<unsigned long long>(r.abandons), static_cast<unsigned long long>(r.returns),
        static_cast<unsigned long long>(r.notices), static_cast<unsigned long long>(r.ghosts),
        static_cast<unsigned long long>(r.resubmits), static_cast<unsigned long long>(r.refused),
        static_cast<unsigned long long>(r.orphans),
        static_cast<unsigned long long>(r.restarts_running),
        static_cast<unsigned long long>(r.kept_items), pair_line(r).c_str());
    return 0;
  }

  // Many seeds, spread over threads; each run is independent and deterministic.
  const auto started = std::chrono::steady_clock::now();
  std::atomic<std::uint64_t> next{first};
  std::mutex lock;
  RunReport total;
  std::uint64_t failures = 0, runs = 0, gap_seeds = 0, steps_total = 0;
  auto work = [&] {
    for (std::uint64_t s; (s = next.fetch_add(1)) <= last;) {
      RunOptions o;
      o.seed = s;
      o.faults = faults;
      o.pair = pair;
      const RunReport r = seppo::sim::run(o);
      std::lock_guard<std::mutex> guard(lock);
      ++runs;
      steps_total += r.steps;
      if (!r.ok) {
        ++failures;
        print_failure(s, r, faults);
        std::fflush(stdout);
      }
      total.jobs_completed += r.jobs_completed;
      total.jobs_cancelled += r.jobs_cancelled;
      total.jobs_vanished += r.jobs_vanished;
      total.items += r.items;
      total.error_items += r.error_items;
      total.faults_injected += r.faults_injected;
      total.worker_reconnects += r.worker_reconnects;
      total.heartbeat_gaps += r.heartbeat_gaps;
      total.over_limit += r.over_limit;
      total.timeouts += r.timeouts;
      total.abandons += r.abandons;
      total.returns += r.returns;
      total.notices += r.notices;
      total.ghosts += r.ghosts;
      total.resubmits += r.resubmits;
      total.submits += r.submits;
      total.submits_chunks += r.submits_chunks;
      total.refused += r.refused;
      total.orphans += r.orphans;
      total.restarts_running += r.restarts_running;
      total.kept_items += r.kept_items;
      total.takeovers += r.takeovers;
      total.ha_lost += r.ha_lost;
      if (r.heartbeat_gaps) ++gap_seeds;
      total.max_job_lag_us = std::max(total.max_job_lag_us, r.max_job_lag_us);
    }
  };
  std::vector<std::thread> threads;
  for (std::uint64_t t = 1; t < jobs; ++t) threads.emplace_back(work);
  work();
  for (auto& t : threads) t.join();
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  std::printf(
      "%llu seeds (%llu..%llu, faults %s): %llu failed; %llu steps, %llu jobs completed, "
      "%llu cancelled, %llu vanished, %llu items (%llu errors), %llu faults, "
      "%llu worker reconnects, heartbeat gaps in %llu seeds, %llu over_limit; %llu timeouts, "
      "%llu abandons, %llu returns, %llu close notices, %llu ghosts, %llu resubmissions, "
      "%llu SUBMITS (%llu chunks), %llu refused, %llu orphans, %llu restarts with running tasks "
      "(%llu items kept); "
      "slowest job %.1f s past its faults%s; %.1f s\n",
      static_cast<unsigned long long>(runs), static_cast<unsigned long long>(first),
      static_cast<unsigned long long>(last), seppo::sim::fault_names(faults).c_str(),
      static_cast<unsigned long long>(failures), static_cast<unsigned long long>(steps_total),
      static_cast<unsigned long long>(total.jobs_completed),
      static_cast<unsigned long long>(total.jobs_cancelled),
      static_cast<unsigned long long>(total.jobs_vanished),
      static_cast<unsigned long long>(total.items),
      static_cast<unsigned long long>(total.error_items),
      static_cast<unsigned long long>(total.faults_injected),
      static_cast<unsigned long long>(total.worker_reconnects),
      static_cast<unsigned long long>(gap_seeds), static_cast<unsigned long long>(total.over_limit),
      static_cast<unsigned long long>(total.timeouts),
      static_cast<unsigned long long>(total.abandons),
      static_cast<unsigned long long>(total.returns),
      static_cast<unsigned long long>(total.notices), static_cast<unsigned long long>(total.ghosts),
      static_cast<unsigned long long>(total.resubmits),
      static_cast<unsigned long long>(total.submits),
      static_cast<unsigned long long>(total.submits_chunks),
      static_cast<unsigned long long>(total.refused),
      static_cast<unsigned long long>(total.orphans),
      static_cast<unsigned long long>(total.restarts_running),
      static_cast<unsigned long long>(total.kept_items), total.max_job_lag_us / 1e6,
      pair_line(total).c_str(), seconds);
  return failures ? 1 : 0;
}
