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
  if (options_.workers > 0) {
    start_scale_job(i, job);
    return;
  }
  const std::size_t count = static_cast<std::size_t>(rng_.between(1, 40));
  const std::int64_t base = static_cast<std::int64_t>(job.id & 0xffffff) * 1000;
  const std::size_t poison_at =
      (options_.faults & kPoison) && rng_.chance(300) ? rng_.below(count) : count;
  // Issue 12 case 1: in some jobs an item never returns; such a job always has a time limit
  // (its own, or the broker's), other jobs sometimes.
  std::size_t hang_at = count;
  std::uint32_t item_timeout_ms = 0;
  if (options_.faults & kHang) {
    if (rng12_.chance(300)) hang_at = rng12_.below(count);
    if (hang_at == poison_at) hang_at = count;
    if (rng12_.chance(500)) item_timeout_ms = static_cast<std::uint32_t>(rng12_.between(500, 2500));
    if (hang_at < count && item_timeout_ms == 0 && config_.task_timeout.count() == 0)
      item_timeout_ms = static_cast<std::uint32_t>(rng12_.between(500, 2500));
  }
  const std::int64_t cap = config_.task_timeout.count();
  job.limit = kMs * (item_timeout_ms == 0 ? cap
                     : cap == 0           ? item_timeout_ms
                                          : std::min<std::int64_t>(cap, item_timeout_ms));
  if (hang_at < count) hang_allowance_ += static_cast<Us>(count + 1) * job.limit;
  for (std::size_t k = 0; k < count; ++k) {
    job.items.push_back(ItemCheck{base + static_cast<std::int64_t>(k) +
                                  (k == poison_at ? 900
                                   : k == hang_at ? 800
                                                  : 0)});
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
  o.client.item_timeout = std::chrono::milliseconds(item_timeout_ms);
  p.job = std::make_unique<client::JobCore>(job.id, "m.square", o, local_tp(p));
  if (trace_)
    tracef(p.name + " starts job " + std::to_string(job.id) + " of " + std::to_string(count) +
           " items" + (poison_at < count ? ", item " + std::to_string(poison_at) + " poison" : "") +
           (hang_at < count ? ", item " + std::to_string(hang_at) + " hangs" : "") +
           (job.limit ? ", time limit " + std::to_string(job.limit / kMs) + " ms per item" : ""));
  client_pump(i);
}

// A scale world's job: its share of the items, each a distinct integer (the jobs' ranges one
// after the other, from 1,000,000), with no limit, poison or cancel.
void World::start_scale_job(int i, JobRecord& job) {
  Peer& p = peers_[i];
  job.items.reserve(p.scale_items);
  for (std::uint64_t k = 0; k < p.scale_items; ++k) {
    job.items.push_back(ItemCheck{static_cast<std::int64_t>(1'000'000 + scale_next_item_++)});
  }
  p.job = std::make_unique<client::JobCore>(job.id, "m.square", p.job_options, local_tp(p));
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
  if (options_.workers > 0 && report_.items == options_.items / 2) take_snapshots();
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
    const std::string code = r.answer ? r.answer->code : std::string();
    const std::string& error = *r.error;
    const bool lost = error.rfind("worker lost", 0) == 0;
    const bool hangs = (options_.faults & kHang) && is_hang(x);
    if (code == "timeout") {
      ++report_.timeouts;
      if (job.limit == 0) violate(where + ": timed out in a job with no time limit");
      // An item that returns was charged only if it ran (or waited at its worker) about as long
      // as its limit, or the broker could not see it was not running (lost, stopped, dead).
      if (!hangs) {
        const ItemRun& run = runs_[x];
        Us longest = run.longest;
        bool answer_waits = false;  // its RESULT waits for a connection that is down
        for (int w : workers_) {
          const Peer& q = peers_[w];
          for (const Frame& f : q.link.queued) {
            if (std::find(f.inputs.begin(), f.inputs.end(), x) != f.inputs.end())
              answer_waits = true;
          }
          if (q.alive && q.running &&
              std::find(q.running_inputs.begin(), q.running_inputs.end(), x) !=
                  q.running_inputs.end())
            longest = std::max(longest, now_ - q.running_since);
          // Still waiting in the worker's queue (behind a task that never returns, say): that
          // wait is on the broker's clock too.
          for (std::size_t k = 0; q.alive && k < q.exec.size(); ++k) {
            const msgpack::object_handle h =
                msgpack::unpack(q.exec[k].payload.data(), q.exec[k].payload.size());
            const auto queued = h.get().as<std::vector<std::int64_t>>();
            if (std::find(queued.begin(), queued.end(), x) != queued.end())
              longest = std::max(longest, now_ - q.exec_at[k]);
          }
        }
        if (!run.excused && !answer_waits && longest < job.limit - 50 * kMs) {
          violate(where + ": timed out (\"" + error + "\") although it ran or waited at most " +
                  std::to_string(longest / kMs) + " ms of its " + std::to_string(job.limit / kMs) +
                  " ms limit");
        }
      }
    } else if (hangs && !lost) {
      violate(where + ": an item that never returns ended \"" + error + "\" (code \"" + code +
              "\"), expected timeout");
    } else if ((options_.faults & kRaise) && raises(x) && !lost) {
      // Lost workers may use up an item's attempts before it ever raises: worker_lost then.
      if (error != raise_message(x))
        violate(where + ": error \"" + error + "\", expected the raise");
    } else if (!lost) {
      violate(where + ": unexpected error \"" + error + "\"");
    } else if ((options_.faults & kChurn) && !is_poison(x) && runs_[x].starts == 0 &&
               !runs_[x].excused) {
      // Issue 12 case 5: charged for peers that never ran it (READY, then closed). A TASK lost
      // on a worker's broken connection, or held by a stopped or dying one, looks to the broker
      // like a crash while it ran: that may be charged.
      violate(where + ": \"" + error + "\" although no worker ever started it");
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
    // A caller whose input comes in bursts: chunks of any size the window allows.
    const std::uint32_t count = static_cast<std::uint32_t>(
        rng_.between(1, static_cast<std::int64_t>(std::min<std::uint64_t>(wanted, left))));
    core.fill(
        [&](msgpack::sbuffer& buffer) {
          if (job.next_input == job.items.size()) return false;
          msgpack::pack(buffer, job.items[job.next_input++].input);
          p.max_chunk_bytes = std::max(p.max_chunk_bytes, buffer.size());
          return true;
        },
        local_tp(p), count);
  }
  if (job.next_input == job.items.size()) core.end_input(local_tp(p));
  for (const auto& r : core.take_results()) check_result(i, r);
  if (core.inflight_bytes() > p.job_options.client.max_inflight_bytes + p.max_chunk_bytes) {
    violate(p.name + " holds " + std::to_string(core.inflight_bytes()) +
            " bytes in flight, over its limit of " +
            std::to_string(p.job_options.client.max_inflight_bytes));
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
    // libclient/client.cpp's flush: a move to the next endpoint (C30, C31) comes first.
    if (core.take_switch()) {
      peer_moved(i, 1 - p.link.target);
      try_connect(i, rng25p_.between(100, 3 * kMs));
    }
    std::vector<wire::Outgoing> out;
    core.take_outbox(out);
    for (wire::Outgoing& o : out) {
      const wire::Message message = wire::decode(o.header.data(), o.header.size());
      if (trace_) tracef(p.name + " sends " + describe(message));
      count_resubmission(job, message);
      peer_send(i, Frame{std::string(o.header.view()), std::move(o.payload), {}});
    }
    if (auto at = global_of(p, core.next_deadline(local_tp(p))))
      schedule(*at, make_event(Ev::Tick, i, ++p.tick_gen));
  }
}

void World::count_resubmission(JobRecord& job, const wire::Message& message) {
  const auto* submit = std::get_if<wire::Submit>(&message);
  if (submit != nullptr && !job.submitted.insert(submit->first).second) ++report_.resubmits;
  if (const auto* submits = std::get_if<wire::Submits>(&message)) {
    ++report_.submits;
    report_.submits_chunks += submits->chunks.size() / wire::kSubmitFields;
    for (std::size_t i = 0; i + wire::kSubmitFields <= submits->chunks.size();
         i += wire::kSubmitFields) {
      if (!job.submitted.insert(submits->chunks[i]).second) ++report_.resubmits;
    }
  }
}

void World::end_job(int i, JobRecord::State state) {
  Peer& p = peers_[i];
  JobRecord& job = p.jobs.back();
  job.state = state;
  if (state == JobRecord::State::Completed || state == JobRecord::State::Cancelled) {
    p.job->close(local_tp(p));
    std::vector<wire::Outgoing> out;
    p.job->take_outbox(out);
    for (wire::Outgoing& o : out) {
      const wire::Message message = wire::decode(o.header.data(), o.header.size());
      if (trace_) tracef(p.name + " sends " + describe(message));
      count_resubmission(job, message);
      peer_send(i, Frame{std::string(o.header.view()), std::move(o.payload), {}});
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
