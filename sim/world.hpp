// The whole system in one process, deterministic (issue 11): one broker::Core, several
// worker::SessionCore and client::JobCore instances wired through in-memory pipes that behave as
// ZeroMQ does, under a virtual clock, with every choice (delays, durations, scheduling, faults)
// drawn from one seeded random source. docs/simulation.md describes the model.
#pragma once

#include <cstdint>
#include <iosfwd>
#include <optional>
#include <string>

namespace seppo::sim {

// Each fault can be switched on alone (seppo-sim --faults worker-crash,partition).
enum Fault : std::uint32_t {
  kWorkerCrash = 1u << 0,   // a worker process dies; comes back under the same or a new id
  kBrokerCrash = 1u << 1,   // the broker dies and restarts empty (a new instance)
  kClientVanish = 1u << 2,  // a client process dies in the middle of a job
  kPartition = 1u << 3,     // a peer's connection breaks, then reconnects (partition and heal)
  kFreeze = 1u << 4,        // a worker is stopped (SIGSTOP) past the liveness, then resumed
  kRaise = 1u << 5,         // the function raises on some items: error results
  kPoison = 1u << 6,        // an item that kills every worker that runs it
  kDrift = 1u << 7,         // peers' clocks run up to 2% fast or slow
  // Issue 12's mechanisms (their choices come from a second random stream, so that a run
  // without them is the run issue 11's seeds describe):
  kHang = 1u << 8,         // items that never return, under per-item and broker time limits
  kCloseNotice = 1u << 9,  // the ROUTER's monitor reports closed connections (on_disconnected)
  kChurn = 1u << 10,       // peers that send READY and close before saying anything else
  // Issue 27 (a third random stream): the broker judges every message as under CurveZMQ
  // (broker::Admission: keys and routing-id bindings); impostors present another peer's routing
  // id under their own key, and a client key is revoked by a reload while its peer talks on.
  kKeys = 1u << 11,
  // Issue 25 (a fourth random stream): the broker is restarted (SIGTERM: BYE first, or killed)
  // while workers run tasks, which they keep running for the new broker to adopt.
  kBrokerRestart = 1u << 12,
  // Issue 25 §2, a pair of brokers (seppo-sim --pair; a fifth random stream): the active
  // broker's host vanishes (its process and every link gone; it may come back, a returning
  // primary that must stand by), and the link between the two brokers alone is cut, then healed.
  // Without --pair they do nothing.
  kHostLost = 1u << 13,
  kHaPartition = 1u << 14,
  kIssue11Faults = (1u << 8) - 1,
  kAllFaults = (1u << 15) - 1,
};

// "all", "none", "issue11" (the first eight), or a comma list of names (worker-crash,
// broker-crash, client-vanish, partition, freeze, raise, poison, drift, hang, close-notice,
// churn, keys, broker-restart); empty on an unknown name.
std::optional<std::uint32_t> parse_faults(const std::string& text);
std::string fault_names(std::uint32_t faults);

struct RunOptions {
  std::uint64_t seed = 1;
  std::uint64_t max_steps = 0;  // stop after this many steps (0: run to the end)
  std::uint32_t faults = kAllFaults;
  std::ostream* trace = nullptr;  // a readable line per step, when set
  // The scale world (issue 28; seppo-sim --workers N --clients M --items K): instead of the
  // seed's small world of 1-4 workers and 1-3 clients, `workers` workers and `clients` clients
  // sharing `items` items (one job each, chunks of `chunk_size`), with no faults. The seed
  // still draws every delay and duration. workers == 0: the seed's own world.
  std::uint32_t workers = 0;
  std::uint32_t clients = 0;
  std::uint64_t items = 0;
  std::uint32_t chunk_size = 1;
  // A pair of brokers (issue 25 §2): two broker::Core, each with a broker::ha::HaCore, joined by
  // a simulated HA link; workers and clients are given both endpoints (W40, W41, C30, C31).
  // Faults broker-crash, broker-restart and keys are not simulated in a pair (yet).
  bool pair = false;
};

// What a scale run asked of the broker's core, to divide its instructions by (bench/scale.sh
// counts them under callgrind, inside the functions named seppo_sim_core_* in sim/network.cpp).
struct ScaleCounts {
  std::uint64_t tasks = 0;                   // TASKs the broker sent
  std::uint64_t worker_heartbeats = 0;       // HEARTBEATs from workers the core handled
  std::uint64_t client_heartbeats = 0;       // and from clients
  std::uint64_t ticks = 0;                   // on_tick calls
  std::uint64_t status_bytes = 0;            // the STATUS snapshot taken half way (0: none taken)
  std::uint64_t metrics_snapshot_bytes = 0;  // the snapshot /metrics renders from
  std::uint64_t metrics_bytes = 0;           // the /metrics text rendered from it
  std::uint32_t snapshot_workers = 0;        // workers and clients the broker held then
  std::uint32_t snapshot_clients = 0;
};

struct RunReport {
  bool ok = true;
  bool finished = false;  // ran to the end (not stopped by max_steps)
  std::uint64_t steps = 0;
  std::int64_t end_us = 0;  // virtual time at the end
  std::string failure;      // the invariant that failed, and how
  std::uint64_t failed_step = 0;
  std::int64_t failed_us = 0;
  // What the run exercised.
  std::uint64_t jobs_completed = 0, jobs_cancelled = 0, jobs_vanished = 0, items = 0;
  std::uint64_t error_items = 0, faults_injected = 0, worker_reconnects = 0;
  std::uint64_t heartbeat_gaps =
      0;                         // a worker answering a backlog while no TASK came for a liveness
  std::uint64_t over_limit = 0;  // FAILED over_limit the clients saw
  std::int64_t max_job_lag_us = 0;  // longest a job took past the end of its faults
  // Issue 12's mechanisms at work.
  std::uint64_t timeouts = 0;  // items that ended FAILED timeout
  std::uint64_t abandons = 0;  // worker processes replaced to abandon a cancelled task
  std::uint64_t returns = 0;   // RETURNs the workers sent
  std::uint64_t notices = 0;   // on_disconnected calls (closed connections noticed)
  std::uint64_t ghosts = 0;    // peers that sent READY and closed
  // Issue 26: SUBMITs of a chunk its job had sent already (RESYNC, a new broker instance).
  std::uint64_t resubmits = 0;
  // Issue 28: SUBMITS the clients sent (C25), and the chunks they carried.
  std::uint64_t submits = 0;
  std::uint64_t submits_chunks = 0;
  // Issue 27: messages broker::Admission refused (impostors, revoked keys).
  std::uint64_t refused = 0;
  // Issue 27: worker processes whose supervisor died while they ran (worker-crash).
  std::uint64_t orphans = 0;
  // Issue 25: broker restarts while tasks ran, and the items running then that a worker kept
  // and whose work the new broker adopted (not started again elsewhere).
  std::uint64_t restarts_running = 0;
  std::uint64_t kept_items = 0;
  // Issue 25 §2 (--pair): times a broker of the pair became active, and HA state messages lost.
  std::uint64_t takeovers = 0;
  std::uint64_t ha_lost = 0;
  ScaleCounts scale;  // a scale run's (RunOptions::workers > 0)
};

RunReport run(const RunOptions& options);

}  // namespace seppo::sim
