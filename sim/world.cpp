// The event loop, the invariants checked after every step and at the end, and run().
#include "sim/world_impl.hpp"

#include "broker/http.hpp"

namespace seppo::sim::detail {

// --- the loop ---------------------------------------------------------------------------------

void World::step(Event& e) {
  // A pair: the broker the event concerns is the current one while it is handled.
  if (options_.pair) {
    if (e.kind == Ev::Connected) {
      use_broker(peers_[e.peer].link.target);
    } else if (e.kind == Ev::ToBroker || e.kind == Ev::BrokerTick || e.kind == Ev::Closed ||
               e.kind == Ev::HaState) {
      use_broker(e.broker);
    }
  }
  switch (e.kind) {
    case Ev::HaState:
      ha_receive(e);
      break;
    case Ev::ToBroker:
      deliver_to_broker(e.peer, e);
      break;
    case Ev::ToPeer:
      deliver_to_peer(e.peer, e);
      break;
    case Ev::Connected: {
      Peer& p = peers_[e.peer];
      if (e.tag != p.link.epoch || p.link.up || !p.link.wanted || !broker_ || !p.alive ||
          now_ < p.link.partitioned_until) {
        break;
      }
      // ROUTER_HANDOVER off (kKeys): while an impostor's connection holds the id, ZeroMQ
      // refuses this one; its DEALER tries again. A revoked key is refused by the ZAP handler.
      if (auto s = stolen_.find(p.link.id);
          s != stolen_.end() && s->second != e.peer && peers_[s->second].link.router_knows) {
        if (trace_) tracef(p.name + " cannot connect: " + peers_[s->second].name + " holds its id");
        try_connect(e.peer, rng27_.between(50 * kMs, 200 * kMs));
        break;
      }
      if (p.kind == Peer::Kind::Intruder && revoked_) {
        if (trace_) tracef(p.name + "'s connection is refused: its key is no longer listed");
        break;
      }
      p.link.up = true;
      p.link.connection = ++next_connection_;
      p.link.close_noticed = false;
      // The ROUTER takes the new pipe for this id (the old one, if any, is gone or handed over).
      p.link.router_knows = true;
      p.link.router_epoch = p.link.epoch;
      p.disturbed_at = now_;
      if (trace_) tracef(p.name + " connected as " + p.link.id);
      for (Frame& f : std::exchange(p.link.queued, {})) peer_send(e.peer, std::move(f));
      break;
    }
    case Ev::RouterDrop: {
      Peer& p = peers_[e.peer];
      if (p.link.router_knows && p.link.router_epoch == e.tag) p.link.router_knows = false;
      break;
    }
    case Ev::Tick: {
      Peer& p = peers_[e.peer];
      if (!p.alive || e.tag != p.tick_gen) break;
      if (p.kind == Peer::Kind::Worker) {
        p.core->on_tick(local_tp(p));
        worker_pump(e.peer);
      } else if (p.job) {
        p.job->on_tick(local_tp(p));
        client_pump(e.peer);
      }
      break;
    }
    case Ev::BrokerTick:
      if (broker_ && e.tag == broker_tick_gen_) {
        scale_tick_pending_ = false;
        if (ha_) {
          // broker/server.cpp: HaCore's timers (H3, H16), then the glue and the state out.
          ha_->on_tick(broker_tp());
          ha_after();
          if (!broker_) break;  // it yielded (H11)
        }
        ++report_.scale.ticks;
        within(seppo_sim_core_tick, [&] {
          broker_->on_tick(broker_tp());
          broker_flush();
        });
      }
      break;
    case Ev::ExecDone:
      if (peers_[e.peer].alive && e.tag == peers_[e.peer].incarnation) exec_done(e.peer);
      break;
    case Ev::Fault:
      fault(e.fault, e.peer, e.arg);
      break;
    case Ev::JobStart:
      start_job(e.peer);
      break;
    case Ev::Closed:
      // The monitor reports the connection's descriptor: its routing id's binding learns first.
      if (admission_) admission_->on_closed(static_cast<int>(e.arg));
      if (peers_[e.peer].link.router_epoch == e.tag) peers_[e.peer].link.close_noticed = true;
      router_closed(e.id, e.tag);
      break;
  }
}

// A stopped process does nothing: its events wait, in order, until it resumes.
bool World::defer(Peer& p, Event& event) {
  if (!p.frozen) return false;
  const bool its_own =
      event.kind == Ev::ToPeer || event.kind == Ev::Tick || event.kind == Ev::ExecDone ||
      (event.kind == Ev::Fault && event.fault == FaultKind::WorkerCrash && event.arg == 1);
  if (!its_own) return false;
  if (event.kind == Ev::ToPeer) {
    if (trace_)
      tracef("B -> " + p.name + " " + describe_header(event.frame.header) + ": waits, " + p.name +
             " is stopped");
    excuse_task(event.frame);  // its clock runs at the broker while it waits
  }
  p.deferred.push_back(std::move(event));
  return true;
}

bool World::all_jobs_ended() const {
  for (int i : clients_) {
    const Peer& p = peers_[i];
    if (p.job || (p.alive && p.jobs.size() < p.jobs_planned)) return false;
  }
  return true;
}

void World::check_step(int peer) {
  // The scale world holds thousands of peers: there, each step checks the peer it concerned,
  // and every 4096th step all of them.
  if (options_.workers > 0 && (steps_ & 4095) != 0) {
    if (peer < 0 || !broker_) return;
    const Peer& p = peers_[peer];
    if (p.kind == Peer::Kind::Worker && broker_->inflight_count(p.link.id) > config_.max_capacity) {
      violate("the broker holds " + std::to_string(broker_->inflight_count(p.link.id)) +
              " tasks at " + p.name + ", over the capacity cap");
    }
    if (p.kind == Peer::Kind::Client &&
        broker_->queued_bytes(p.link.id) > config_.max_client_bytes) {
      violate("the broker holds " + std::to_string(broker_->queued_bytes(p.link.id)) +
              " bytes of " + p.name + ", over its limit of " +
              std::to_string(config_.max_client_bytes));
    }
    return;
  }
  for (int i : clients_) {
    const Peer& p = peers_[i];
    if (!p.job) continue;
    const JobRecord& job = p.jobs.back();
    const Us deadline =
        std::max(job.started, calm_at_) + kJobBound + hang_allowance_ + scale_allowance_;
    if (now_ > deadline) {
      violate(p.name + " job " + std::to_string(job.id) + " has not completed " +
              std::to_string((now_ - std::max(job.started, calm_at_)) / kMs) +
              " ms after its faults stopped (" + std::to_string(job.emitted) + " of " +
              std::to_string(job.items.size()) + " items)");
    }
  }
  if (!broker_) return;
  for (int i : workers_) {
    const Peer& p = peers_[i];
    if (broker_->inflight_count(p.link.id) > config_.max_capacity) {
      violate("the broker holds " + std::to_string(broker_->inflight_count(p.link.id)) +
              " tasks at " + p.name + ", over the capacity cap");
    }
  }
  for (int i : clients_) {
    const Peer& p = peers_[i];
    const std::uint64_t held = broker_->queued_bytes(p.link.id);
    if (held > config_.max_client_bytes) {
      violate("the broker holds " + std::to_string(held) + " bytes of " + p.name +
              ", over its limit of " + std::to_string(config_.max_client_bytes));
    }
  }
}

void World::check_end() {
  for (int i : clients_) {
    for (const JobRecord& job : peers_[i].jobs) {
      if (job.state != JobRecord::State::Completed) continue;
      for (std::size_t k = 0; k < job.items.size(); ++k) {
        if (!job.items[k].received) {
          violate(peers_[i].name + " job " + std::to_string(job.id) + " completed without item " +
                  std::to_string(k));
        }
      }
    }
  }
  for (int b = options_.pair ? 1 : 0; b >= 0; --b) {
    use_broker(b);
    if (!broker_) continue;
    if (!broker_->task_count() && !broker_->job_count() && !broker_->client_count()) continue;
    violate("after every job ended " + std::string(options_.pair ? b ? "B2" : "B1" : "the broker") +
            " still holds " + std::to_string(broker_->task_count()) + " tasks, " +
            std::to_string(broker_->job_count()) + " jobs and " +
            std::to_string(broker_->client_count()) + " clients");
  }
  // Invariant 17's end (issue 25 §2): once the faults are over, one broker of the pair serves.
  if (options_.pair && broker_up(0) && broker_up(1) && ha_of(0)->serving() == ha_of(1)->serving()) {
    violate(std::string("at the end the brokers of the pair are ") +
            broker::ha::name(ha_of(0)->state()) + " and " + broker::ha::name(ha_of(1)->state()));
  }
}

void World::take_snapshots() {
  if (!broker_) return;
  ScaleCounts& c = report_.scale;
  c.snapshot_workers = static_cast<std::uint32_t>(broker_->worker_count());
  c.snapshot_clients = static_cast<std::uint32_t>(broker_->client_count());
  std::string status, snapshot, metrics;
  within(seppo_sim_core_status, [&] { status = broker_->status_payload(broker_tp()); });
  within(seppo_sim_core_metrics_snapshot,
         [&] { snapshot = broker_->metrics_payload(broker_tp()); });
  within(seppo_sim_core_metrics, [&] { metrics = broker::status_metrics(snapshot); });
  // What a scrape cost before /metrics had a snapshot of its own: rendering the full map.
  within(seppo_sim_core_metrics_full, [&] { metrics = broker::status_metrics(status); });
  c.status_bytes = status.size();
  c.metrics_snapshot_bytes = snapshot.size();
  c.metrics_bytes = metrics.size();
}

void World::make_broker(std::uint64_t instance) {
  broker::Core::LogSink sink;
  if (trace_) sink = [this](log::Level, const std::string& line) { tracef("B log: " + line); };
  broker_ = std::make_unique<broker::Core>(config_, instance, sink);
  // The seeds' small worlds check every dispatch's choice against the scan over every provider
  // (issue 28's provider indexes); the scale world, where that scan is what it avoids, does not.
  broker_->set_self_check(options_.workers == 0);
}

// The scale world (issue 28): `workers` workers with adaptive credit, `clients` clients with
// one job each sharing `items` items, the library's default window, no faults. Workers connect
// within 5 ms, jobs start within 10 ms; every delay and duration is the seed's, as in any run.
void World::make_scale_world() {
  const std::uint32_t workers = options_.workers, clients = options_.clients;
  for (std::uint32_t k = 0; k < workers + clients; ++k) {
    Peer p;
    p.kind = k < workers ? Peer::Kind::Worker : Peer::Kind::Client;
    p.name = (k < workers ? "W" : "C") + std::to_string(k < workers ? k + 1 : k - workers + 1);
    p.user = user_of(p);
    if (p.kind == Peer::Kind::Worker) {
      workers_.push_back(static_cast<int>(k));
    } else {
      p.link.id = p.name;
      p.jobs_planned = 1;
      const std::uint64_t c = k - workers;
      p.scale_items = options_.items / clients + (c < options_.items % clients ? 1 : 0);
      p.job_options.endpoint = "sim";
      p.job_options.client.chunk_size = options_.chunk_size;
      p.job_options.client.timeout = kClientTimeout;
      p.job_options.client.worker_wait = kWorkerWait;
      clients_.push_back(static_cast<int>(k));
    }
    peers_.push_back(std::move(p));
  }
}

RunReport World::run() {
  // The world's shape, drawn first so that it does not depend on what happens later.
  config_.heartbeat = kHeartbeat;
  config_.liveness = kLiveness;
  config_.max_capacity = kMaxCapacity;
  // Sometimes small enough for FAILED over_limit; then chunks are small, since a chunk larger
  // than the limit can never run and fails its job (as it should).
  if (options_.workers > 0) return run_scale();
  const bool tight = rng_.chance(300);
  config_.max_client_bytes =
      tight ? static_cast<std::uint64_t>(rng_.between(3000, 4500)) : 512ull << 20;
  // A broker-wide time limit per item in some runs with hung items (--task-timeout).
  if ((options_.faults & kHang) && rng12_.chance(400)) {
    config_.task_timeout = std::chrono::milliseconds(rng12_.between(500, 3000));
  }
  const int worker_count = static_cast<int>(rng_.between(1, 4));
  const int client_count = static_cast<int>(rng_.between(1, 3));
  for (int k = 0; k < worker_count + client_count; ++k) {
    Peer p;
    p.kind = k < worker_count ? Peer::Kind::Worker : Peer::Kind::Client;
    p.name = (k < worker_count ? "W" : "C") +
             std::to_string(k < worker_count ? k + 1 : k - worker_count + 1);
    p.user = user_of(p);
    if (options_.faults & kDrift) {
      p.ppm = rng_.between(-20000, 20000);
      p.offset = rng_.between(0, 1000 * kSecond);
    }
    if (p.kind == Peer::Kind::Worker) {
      // Adaptive credit, or a fixed prefetch: a large one builds the backlogs of the heartbeat gap.
      p.prefetch = rng_.chance(500) ? 0 : static_cast<std::uint32_t>(rng_.between(1, 16));
      workers_.push_back(k);
    } else {
      p.link.id = p.name;
      p.jobs_planned = static_cast<std::size_t>(rng_.between(1, 3));
      p.job_options.endpoint = "sim";
      p.job_options.client.window = static_cast<std::size_t>(rng_.between(1, 8));
      p.job_options.client.max_inflight_bytes =
          rng_.chance(300) ? static_cast<std::size_t>(rng_.between(60, 400)) : 8u << 20;
      p.job_options.client.chunk_size =
          !tight && rng_.chance(500) ? 0 : static_cast<std::size_t>(rng_.between(1, 6));
      p.job_options.client.timeout = kClientTimeout;
      p.job_options.client.worker_wait = kWorkerWait;
      // Clients that name the feature batch (DELIVERS, B59) beside ones that do not (one
      // DELIVER per answer, as older clients): C1, C3 do, C2 does not. No draw: the seeds'
      // worlds stay as they were.
      p.job_options.client.batch = (k - worker_count) % 2 == 0;
      // The adaptive sizer's start limit, 8, never binds under windows of 1-8: one client in
      // three starts at 1 (then 2, 4, 8 a millisecond apart). No draw, as above.
      if ((k - worker_count) % 3 == 1) p.job_options.start_chunks = 1;
      clients_.push_back(k);
    }
    peers_.push_back(std::move(p));
  }
  for (int i : clients_) by_id_[peers_[i].link.id] = i;
  const std::uint64_t instance = rng_.next() | 1;
  if (options_.pair) {
    // Not simulated in a pair (yet): a lone broker's crash and restart, and the key gate.
    options_.faults &= ~(kKeys | kBrokerCrash | kBrokerRestart);
    for (Peer& p : peers_) p.job_options.endpoint = "b1,b2";
  } else {
    make_broker(instance);
  }
  if (trace_) {
    tracef("seed " + std::to_string(options_.seed) + ": " + std::to_string(worker_count) +
           " workers, " + std::to_string(client_count) + " clients, faults " +
           fault_names(options_.faults) + ", broker max_client_bytes " +
           std::to_string(config_.max_client_bytes) + ", task_timeout " +
           std::to_string(config_.task_timeout.count()) + " ms");
  }
  plan_faults();
  if (options_.pair) {
    plan_pair_faults(rng25p_.between(2 * kSecond, 12 * kSecond));
    make_pair_broker(1, rng25p_);
    make_pair_broker(0, rng25p_);
  } else {
    make_admission();
  }
  start_peers(2 * kSecond);
  return loop();
}

// The broker ticks; workers start and connect; each client connects and starts its first job
// within `jobs_within`.
void World::start_peers(Us jobs_within) {
  broker_tick_schedule();
  for (int i : workers_) start_worker(i, false);
  for (int i : clients_) {
    Peer& p = peers_[i];
    p.alive = true;
    p.link.wanted = true;
    try_connect(i, rng_.between(100, 5 * kMs));
    p.job_pending = true;
    schedule(rng_.between(0, jobs_within), make_event(Ev::JobStart, i, 0));
  }
}

RunReport World::run_scale() {
  make_scale_world();
  // A job of the scale world may wait for all the others: their items, each at most 400 ms,
  // shared by the workers.
  scale_allowance_ = static_cast<Us>(options_.items) * 400 * kMs / options_.workers;
  for (int i : clients_) by_id_[peers_[i].link.id] = i;
  make_broker(rng_.next() | 1);
  // As seppo-broker --http: the task stream is recorded, so that the snapshots hold it.
  broker_->stats().record_tasks(true);
  make_admission();
  start_peers(10 * kMs);
  return loop();
}

RunReport World::loop() {
  // A scale run may take many more steps: its items' and its workers' heartbeats'.
  const std::uint64_t default_limit =
      options_.workers > 0
          ? kDefaultStepLimit + 40 * options_.items + 2000 * std::uint64_t{options_.workers}
          : kDefaultStepLimit;
  const std::uint64_t step_limit = options_.max_steps ? options_.max_steps : default_limit;
  try {
    while (!events_.empty()) {
      if (steps_ >= step_limit) {
        if (!options_.max_steps)
          violate("the run did not end within " + std::to_string(step_limit) + " steps");
        break;
      }
      auto node = events_.extract(events_.begin());
      Event& e = node.mapped();
      now_ = node.key().first;
      if (e.peer >= 0 && defer(peers_[e.peer], e)) continue;
      ++steps_;
      const int peer = e.peer;
      step(e);
      check_step(peer);
      if (options_.pair) check_pair();
      if (all_ended_at_ < 0 && all_jobs_ended()) all_ended_at_ = now_;
      // With no faults a scale run ends once the broker has forgotten every job and client.
      if (all_ended_at_ >= 0 && options_.workers > 0 && broker_ && !broker_->task_count() &&
          !broker_->job_count() && !broker_->client_count()) {
        check_end();
        report_.finished = true;
        break;
      }
      if (all_ended_at_ >= 0 && now_ >= std::max(all_ended_at_, calm_at_) + kSettle) {
        check_end();
        report_.finished = true;
        break;
      }
    }
    if (!report_.finished && !options_.max_steps) violate("the world ran out of events");
  } catch (const Violation& v) {
    report_.ok = false;
    report_.failure = v.what;
    report_.failed_step = steps_;
    report_.failed_us = now_;
    if (trace_) tracef("INVARIANT FAILED: " + v.what);
  }
  report_.steps = steps_;
  report_.end_us = now_;
  return report_;
}

}  // namespace seppo::sim::detail

namespace seppo::sim {

RunReport run(const RunOptions& options) {
  detail::World world(options);
  return world.run();
}

}  // namespace seppo::sim
