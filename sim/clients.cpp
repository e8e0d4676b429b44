// Simulated clients: a JobCore per job, its input, and the checks on every result.
#include "sim/world_impl.hpp"

namespace seppo::sim::detail {

// --- clients ----------------------------------------------------------------------------------

void World::start_job(int i) {
  Peer& p = peers_[i];
  p.job_pending = false;
  if (!p.alive || p.jobs.size() >= p.jobs_planned) return;
  JobRecord& job = p.jobs.emplace_back();
  job.id = (static_cast<std::uint64_t>(i) << 32) | next_job_id_++;
  job.started = now_;
  const std::size_t count = static_cast<std::size_t>(rng_.between(1, 40));
  const std::int64_t base = static_cast<std::int64_t>(job.id & 0xffffff) * 1000;
  const std::size_t poison_at =
      (options_.faults & kPoison) && rng_.chance(300) ? rng_.below(count) : count;
  for (std::size_t k = 0; k < count; ++k) {
    job.items.push_back(
        ItemCheck{base + static_cast<std::int64_t>(k) + (k == poison_at ? 900 : 0)});
  }
  if (rng_.chance(150)) job.cancel_at = now_ + rng_.between(0, 3 * kSecond);
  if (job.cancel_at >= 0) {
    Event e = make_event(Ev::Fault, i, 0);
    e.fault = FaultKind::Cancel;
    e.arg = job.id;
    schedule(job.cancel_at, std::move(e));
  }
  client::JobCoreOptions o = p.job_options;
  o.broker_heartbeat = p.broker_heartbeat;
  p.job = std::make_unique<client::JobCore>(job.id, "m.square", o, local_tp(p));
  if (trace_)
    tracef(p.name + " starts job " + std::to_string(job.id) + " of " + std::to_string(count) +
           " items" + (poison_at < count ? ", item " + std::to_string(poison_at) + " poison" : ""));
  client_pump(i);
}

void World::check_result(int i, const client::JobCore::ItemResult& r) {
  Peer& p = peers_[i];
  JobRecord& job = p.jobs.back();
  const std::string where =
      p.name + " job " + std::to_string(job.id) + " item " + std::to_string(r.index);
  if (r.index >= job.next_input) violate(where + ": a result for an item never submitted");
  ItemCheck& item = job.items[r.index];
  if (item.received) violate(where + ": received twice");
  item.received = true;
  ++report_.items;
  const std::int64_t x = item.input;
  if (r.value != nullptr) {
    if ((options_.faults & kRaise) && raises(x))
      violate(where + ": a value for an item that raises");
    if ((options_.faults & kPoison) && is_poison(x)) violate(where + ": a value for a poison item");
    std::int64_t v = 0;
    try {
      v = r.value->as<std::int64_t>();
    } catch (const std::exception&) {
      violate(where + ": a value that is not an integer");
    }
    if (v != x * x)
      violate(where + ": value " + std::to_string(v) + ", expected " + std::to_string(x * x));
  } else {
    ++report_.error_items;
    // Lost workers may use up an item's attempts before it ever raises: worker_lost is right then.
    if ((options_.faults & kRaise) && raises(x) && r.error.rfind("worker lost", 0) != 0) {
      if (r.error != raise_message(x))
        violate(where + ": error \"" + r.error + "\", expected the raise");
    } else if (r.error.rfind("worker lost", 0) != 0) {
      violate(where + ": unexpected error \"" + r.error + "\"");
    }
  }
  // The caller reads in order: a reorder buffer hands on the run of items now complete.
  while (job.emitted < job.items.size() && job.items[job.emitted].received) ++job.emitted;
}

void World::client_pump(int i) {
  Peer& p = peers_[i];
  if (!p.alive || !p.job) return;
  client::JobCore& core = *p.job;
  JobRecord& job = p.jobs.back();
  while (job.next_input < job.items.size()) {
    const std::uint32_t wanted = core.wanted();
    if (wanted == 0) break;
    const std::uint64_t left = job.items.size() - job.next_input;
    const std::uint32_t count = static_cast<std::uint32_t>(
        rng_.between(1, static_cast<std::int64_t>(std::min<std::uint64_t>(wanted, left))));
    std::vector<Bytes> items;
    for (std::uint32_t k = 0; k < count; ++k) {
      msgpack::sbuffer b;
      msgpack::pack(b, job.items[job.next_input + k].input);
      items.push_back(Bytes::copy(b.data(), b.size()));
    }
    Bytes payload = client::JobCore::pack_chunk(items);
    p.max_chunk_bytes = std::max(p.max_chunk_bytes, payload.size());
    core.add_chunk(std::move(payload), count, local_tp(p));
    job.next_input += count;
  }
  if (job.next_input == job.items.size()) core.end_input(local_tp(p));
  for (const auto& r : core.take_results()) check_result(i, r);
  if (core.inflight_bytes() > p.job_options.max_inflight_bytes + p.max_chunk_bytes) {
    violate(p.name + " holds " + std::to_string(core.inflight_bytes()) +
            " bytes in flight, over its limit of " +
            std::to_string(p.job_options.max_inflight_bytes));
  }
  if (core.done()) {
    if (job.emitted != job.items.size()) {
      violate(p.name + " job " + std::to_string(job.id) + " done with " +
              std::to_string(job.emitted) + " of " + std::to_string(job.items.size()) +
              " items handed on in order");
    }
    end_job(i, JobRecord::State::Completed);
  } else if (core.failed()) {
    violate(p.name + " job " + std::to_string(job.id) + " failed: " + core.failure()->message);
  }
  if (p.job) {
    for (auto& out : core.take_outbox()) {
      if (trace_) tracef(p.name + " sends " + describe(out.message));
      peer_send(i, Frame{wire::encode(out.message), std::move(out.payload)});
    }
    if (auto at = global_of(p, core.next_deadline()))
      schedule(*at, make_event(Ev::Tick, i, ++p.tick_gen));
  }
}

void World::end_job(int i, JobRecord::State state) {
  Peer& p = peers_[i];
  JobRecord& job = p.jobs.back();
  job.state = state;
  if (state == JobRecord::State::Completed || state == JobRecord::State::Cancelled) {
    p.job->close(local_tp(p));
    for (auto& out : p.job->take_outbox()) {
      if (trace_) tracef(p.name + " sends " + describe(out.message));
      peer_send(i, Frame{wire::encode(out.message), std::move(out.payload)});
    }
    p.broker_heartbeat = p.job->broker_heartbeat();
  }
  if (state == JobRecord::State::Completed) {
    ++report_.jobs_completed;
    report_.max_job_lag_us =
        std::max(report_.max_job_lag_us, now_ - std::max(job.started, calm_at_));
  }
  if (state == JobRecord::State::Cancelled) ++report_.jobs_cancelled;
  if (state == JobRecord::State::Vanished) ++report_.jobs_vanished;
  if (trace_) {
    static const char* names[] = {"running", "completed", "cancelled", "vanished", "failed"};
    tracef(p.name + " job " + std::to_string(job.id) + " " + names[static_cast<int>(state)]);
  }
  p.job.reset();
  if (p.alive && p.jobs.size() < p.jobs_planned) {
    p.job_pending = true;
    schedule(now_ + rng_.between(0, 500 * kMs), make_event(Ev::JobStart, i, 0));
  }
}

}  // namespace seppo::sim::detail
