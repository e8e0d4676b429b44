#include "worker/session_core.hpp"

#include "common/endpoint_list.hpp"

#include <algorithm>

#include "protocol/result_entry.hpp"
#include "seppo/error.hpp"

namespace seppo::worker {
namespace {

// A results array in which every item carries the same error (protocol/result_entry.hpp).
Bytes all_failed(std::uint32_t count, const std::string& message) {
  return Bytes(wire::all_failed(count, message));
}

std::string milliseconds(std::chrono::steady_clock::duration d) {
  return std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(d).count());
}

}  // namespace

SessionCore::SessionCore(SessionCoreOptions options, wire::Ready ready,
                         std::vector<std::string> functions, TimePoint now, LogSink log)
    : options_(options),
      ready_(std::move(ready)),
      log_(std::move(log)),
      heartbeat_(options.heartbeat),
      liveness_(options.liveness),
      credit_(options.prefetch) {
  for (std::uint32_t i = 0; i < functions.size(); ++i) index_.emplace(functions[i], i);
  ready_.functions = std::move(functions);
  ready_.features = {std::string(wire::kFeatureAdopt)};  // §13.1
  if (options_.batch) ready_.features.emplace_back(wire::kFeatureBatch);
  idle_since_ = now;
  endpoints_ = split_endpoints(options_.endpoint);
  connect(now);
  reconnect_ = false;  // the first connection is the socket loop's own
}

void SessionCore::connect(TimePoint now) {
  outbox_.clear();  // whatever was not sent belongs to the connection being dropped
  result_notes_.clear();
  broker_batches_ = false;  // W32: until an ALIVE of the new connection says
  reconnect_ = true;
  last_heard_ = now;
  announce(now);
}

void SessionCore::announce(TimePoint now) {
  ready_.capacity = credit_.wanted();
  announced_credit_ = ready_.capacity;
  ready_.held = held_listing();  // what we kept from a broker that went away (§9.1)
  send(ready_, now);
}

// Whatever the executor holds belongs to a broker that no longer knows us. A task that carries
// an identity outliving the broker (its TASK had `job`, "adopt") is kept: it runs on, and the
// next broker adopts it when its client resubmits its chunk (§9.1). The others are skipped if
// they have not started, and the results of those that have are dropped.
void SessionCore::forget_tasks() {
  const std::uint64_t lost = epoch_++;
  broker_adopts_ = false;
  std::size_t kept = 0;
  for (Submitted& t : submitted_) {
    if (t.epoch != lost || t.cancelled || t.returned || t.job == 0) continue;
    t.detached = true;
    t.offered = false;  // no broker took it back: it is ours to run
    t.epoch = epoch_;
    ++kept;
  }
  if (kept == 0) {
    skip_through_ = sequence_;
    return;
  }
  for (const Submitted& t : submitted_) {
    if (t.epoch == lost) skips_.push_back(t.sequence);
  }
  log_(log::Level::Info,
       "keeping " + std::to_string(kept) + " tasks running for the next broker to adopt");
}

// The broker does not adopt (it predates it), or we may not keep them: as before "adopt", the
// tasks are forgotten (W24 abandons the running one) and their results dropped.
void SessionCore::drop_detached(const std::string& why) {
  std::size_t dropped = kept_.size();
  for (Submitted& t : submitted_) {
    if (!t.detached) continue;
    t.detached = false;
    t.returned = true;
    skips_.push_back(t.sequence);
    ++dropped;
  }
  kept_.clear();
  kept_bytes_ = 0;
  if (dropped != 0) {
    log_(log::Level::Info,
         "dropped " + std::to_string(dropped) + " kept tasks and results: " + why);
  }
}

// Results finished while no broker that adopts was there go to the one that now is.
void SessionCore::hand_over_kept(TimePoint now) {
  if (kept_.empty()) return;
  log_(log::Level::Info, "handing " + std::to_string(kept_.size()) + " kept results (" +
                             std::to_string(kept_bytes_) + " bytes) to the broker");
  for (Kept& k : kept_) {
    send(wire::Result{k.task.task_id, k.elapsed_us, k.failed}, now, std::move(k.payload));
  }
  kept_.clear();
  kept_bytes_ = 0;
}

std::vector<std::uint64_t> SessionCore::held_listing() const {
  std::vector<std::uint64_t> flat;
  for (const Submitted& t : submitted_) {
    if (t.detached) wire::append_held(flat, wire::HeldTask{t.task_id, t.job, t.first, t.count});
  }
  for (const Kept& k : kept_) wire::append_held(flat, k.task);
  return flat;
}

bool SessionCore::keeps(std::uint64_t sequence) const {
  return std::any_of(submitted_.begin(), submitted_.end(),
                     [&](const Submitted& t) { return t.sequence == sequence && t.detached; });
}

std::size_t SessionCore::detached() const {
  return static_cast<std::size_t>(std::count_if(submitted_.begin(), submitted_.end(),
                                                [](const Submitted& t) { return t.detached; }));
}

void SessionCore::send(wire::Message message, TimePoint now, std::optional<Bytes> payload) {
  // The broker answers only READY and HEARTBEAT (with ALIVE), so only they prove to us later
  // that it is there: a RESULT or CREDIT does not postpone the next HEARTBEAT.
  if (std::holds_alternative<wire::Heartbeat>(message) ||
      std::holds_alternative<wire::Ready>(message)) {
    last_beat_ = now;
  }
  if (const auto* result = std::get_if<wire::Result>(&message)) {
    result_notes_.emplace_back(outbox_.size(), *result);
  }
  outbox_.push_back(wire::Outgoing{{}, wire::encode(message), std::move(payload)});
}

void SessionCore::finish(Ending ending) {
  if (ending_ == Ending::Running) ending_ = ending;
}

void SessionCore::abandon_process(const std::string& why) {
  log_(log::Level::Warning, why);
  finish(Ending::Abandoned);
  outbox_.clear();  // the process ends before sending it: the closed connection says enough
  result_notes_.clear();
}

void SessionCore::on_message(const wire::PeerId&, const void* header, std::size_t header_size,
                             Bytes* payload, TimePoint now) {
  wire::Message message;
  try {
    message = wire::decode(header, header_size);
  } catch (const Error& e) {
    log_(log::Level::Warning,
         std::string("dropped a malformed message from the broker: ") + e.what());
    return;
  }
  on_message(message, payload, now);
}

void SessionCore::on_message(const wire::Message& message, Bytes* payload, TimePoint now) {
  if (ending_ != Ending::Running) return;
  last_heard_ = now;  // only a message we understand shows the broker is there
  reconnect_delay_ = std::chrono::milliseconds(0);
  if (auto* task = std::get_if<wire::Task>(&message)) {
    on_task(*task, payload ? std::optional<Bytes>(std::move(*payload)) : std::nullopt);
  } else if (auto* tasks = std::get_if<wire::Tasks>(&message)) {
    on_tasks(*tasks, payload);
  } else if (auto* alive = std::get_if<wire::Alive>(&message)) {
    if (instance_ != 0 && alive->instance != instance_) {
      log_(log::Level::Info, "broker restarted (new instance); serving it");
    }
    instance_ = alive->instance;
    if (alive->heartbeat_ms > 0) heartbeat_ = std::chrono::milliseconds(alive->heartbeat_ms);
    if (alive->liveness > 0) liveness_ = alive->liveness;
    max_message_bytes_ = alive->max_message_bytes;
    broker_adopts_ = wire::has_feature(alive->features, wire::kFeatureAdopt);
    broker_batches_ = options_.batch && wire::has_feature(alive->features, wire::kFeatureBatch);
    if (broker_adopts_) {
      hand_over_kept(now);
    } else {
      drop_detached("the broker does not adopt running work (it predates it)");
    }
  } else if (auto* error = std::get_if<wire::Error>(&message)) {
    on_error(*error, now);
  } else if (auto* cancel = std::get_if<wire::Cancel>(&message)) {
    on_cancel(*cancel);
  } else if (std::holds_alternative<wire::Bye>(message)) {
    forget_tasks();
    if (options_.exit_on_broker_bye) {
      log_(log::Level::Info, "broker is shutting down; stopping");
      finish(Ending::Stopped);
      return;
    }
    log_(log::Level::Info, "broker is shutting down; waiting for it to come back");
    last_heard_ = now - silence_limit();  // reconnect with backoff from now
  } else {
    log_(log::Level::Warning,
         std::string("ignored unexpected ") + wire::type_name(wire::type_of(message)));
  }
  step(now);
}

void SessionCore::on_task(const wire::Task& task, std::optional<Bytes> payload) {
  if (!payload) {
    log_(log::Level::Warning,
         "dropped a malformed message from the broker: TASK without its "
         "payload frame");
    return;
  }
  auto f = index_.find(task.function);
  if (f == index_.end()) {
    send(wire::Result{task.task_id, 0, task.count}, last_heard_,
         all_failed(task.count, "this worker does not provide " + task.function));
  } else if (!leaving_) {
    // Straight to the executor's queue: tiny tasks then run back to back.
    if (submitted_.empty()) front_since_ = last_heard_;
    Submitted held{++sequence_, task.task_id, task.count, epoch_};
    held.job = task.job;
    held.first = task.first;
    submitted_.push_back(held);
    starts_.push_back(Start{sequence_, f->second, std::move(*payload)});
  }
  // A leaving worker ignores new tasks: its BYE hands them back.
}

// W30: a TASKS is its TASKs, in order, each taken as W2 to W4 take one; one whose sizes do
// not add up to its payload is dropped whole, as a malformed message (the broker finds its
// tasks lost by the heartbeats, B5).
void SessionCore::on_tasks(const wire::Tasks& tasks, Bytes* payload) {
  if (payload == nullptr) {
    log_(log::Level::Warning,
         "dropped a malformed message from the broker: TASKS without its payload frame");
    return;
  }
  std::vector<wire::BatchedTask> parts;
  try {
    parts = wire::split(tasks, *payload);
  } catch (const Error& e) {
    log_(log::Level::Warning,
         std::string("dropped a malformed message from the broker: ") + e.what());
    return;
  }
  for (wire::BatchedTask& part : parts) on_task(part.task, std::move(part.payload));
}

void SessionCore::on_error(const wire::Error& error, TimePoint now) {
  if (error.code == wire::Code::Forbidden) {
    log_(log::Level::Error, "the broker at " + options_.endpoint +
                                " accepts this key, but not as a worker's (" + error.message +
                                "): list it in --authorized-workers instead; "
                                "stopping");
    finish(Ending::Forbidden);
  } else if (error.code == wire::Code::NotReady) {
    // The broker does not know us (it restarted, or presumed us dead): the tasks we hold were
    // re-queued there already, so forget ours and announce again.
    forget_tasks();
    announce(now);
  } else if (error.code == wire::Code::NotActive) {
    on_not_active(now);
  } else {
    log_(log::Level::Warning, "broker refused a message: " +
                                  std::string(wire::code_name(error.code)) + ": " + error.message);
  }
}

void SessionCore::on_cancel(const wire::Cancel& cancel) {
  for (std::uint64_t id : cancel.task_ids) {
    // A kept task or result the new broker will not adopt (its client did not resubmit it, or
    // another worker runs it): no one waits for it, so it ends here without an answer (§9.1).
    kept_.erase(std::remove_if(kept_.begin(), kept_.end(),
                               [&](const Kept& k) {
                                 if (k.task.task_id != id) return false;
                                 kept_bytes_ -=
                                     std::min(kept_bytes_, std::uint64_t{k.payload.size()});
                                 return true;
                               }),
                kept_.end());
    bool was_detached = false;
    for (Submitted& task : submitted_) {
      if (task.task_id != id || !task.detached) continue;
      task.detached = false;
      task.cancelled = task.returned = true;
      abandons_.push_back(task.sequence);
      was_detached = true;
    }
    if (was_detached) continue;
    auto live = [&](const Submitted& t) {
      return t.task_id == id && t.epoch == epoch_ && !t.cancelled && !t.returned;
    };
    // The same id may be held twice: the broker re-sends the tasks a READY re-queued, and
    // sends a task it took back to the worker that offered it when that one has credit. A
    // CANCEL for an id we offered is the broker taking back that copy (W22), not cancelling the
    // other: that one would be abandoned, and its answer "cancelled by the broker" would reach
    // the client once the broker sent the id here again. But the broker puts what it takes back
    // under a new id and forgets this one: no copy of it is wanted any more, and none answers.
    const bool taken_back = std::any_of(submitted_.begin(), submitted_.end(),
                                        [&](const Submitted& t) { return live(t) && t.offered; });
    for (Submitted& task : submitted_) {
      if (!live(task)) continue;
      if (taken_back) {
        // Skip it if it has not started; if it has, it runs on (W24 may abandon it), and runs
        // elsewhere too (at least once, §11). No answer either way.
        task.returned = true;
        skips_.push_back(task.sequence);
      } else {
        task.cancelled = true;
        abandons_.push_back(task.sequence);
      }
    }
  }
  // Ids we do not hold (answered already, or of an earlier connection) need nothing.
}

// W24: the running task is one no broker waits for (taken back after it started, or held from
// before the session started over): its answer would be dropped. Once it has run for
// `return_after` with nothing the broker wants waiting behind it (what waited was offered back
// and taken), it is abandoned as a cancelled one is (W20): the broker sends nothing more here
// while it runs (§4.16), so one that never returns would hold this worker for ever. While work
// the broker wants waits behind it, W21 offers that back first, so that no task sent here is
// lost with the process; one that started only just now is spared, since the broker may still
// be sending work here.
bool SessionCore::orphan_running(TimePoint now) const {
  return orphan_front() && now - front_since_ >= options_.return_after;
}

bool SessionCore::orphan_front() const {
  if (submitted_.empty()) return false;
  const Submitted& front = submitted_.front();
  if (front.cancelled || (!front.returned && front.epoch == epoch_)) return false;
  return std::none_of(submitted_.begin() + 1, submitted_.end(), [&](const Submitted& t) {
    return t.epoch == epoch_ && !t.cancelled && !t.returned;
  });
}

// Tasks of the current connection waiting behind the first one, still ours to run.
bool SessionCore::waiting_behind() const {
  return std::any_of(submitted_.begin() + (submitted_.empty() ? 0 : 1), submitted_.end(),
                     [&](const Submitted& t) {
                       return t.epoch == epoch_ && !t.cancelled && !t.offered && !t.detached;
                     });
}

// The first task runs long: what waits behind it could run at an idle worker meanwhile. Less
// credit first, so that the broker does not send the tasks straight back. They stay ours until
// the broker's CANCEL says it took them: a broker that predates RETURN refuses it, and they
// then run here as before.
void SessionCore::return_waiting(TimePoint now) {
  wire::Return back;
  for (auto t = submitted_.begin() + 1; t != submitted_.end(); ++t) {
    if (t->epoch != epoch_ || t->cancelled || t->offered || t->detached) continue;
    t->offered = true;
    back.task_ids.push_back(t->task_id);
  }
  log_(log::Level::Debug, "task " + std::to_string(submitted_.front().task_id) + " has run " +
                              milliseconds(now - front_since_) + " ms; returning " +
                              std::to_string(back.task_ids.size()) + " waiting tasks");
  if (announced_credit_ != 1) {
    announced_credit_ = 1;
    send(wire::Credit{1}, now);
  }
  send(std::move(back), now);
}

void SessionCore::on_finished(std::uint64_t sequence, Outcome outcome, std::uint64_t elapsed_us,
                              Bytes output, TimePoint now) {
  if (submitted_.empty() || submitted_.front().sequence != sequence) {
    log_(log::Level::Error,
         "the executor finished task " + std::to_string(sequence) + " out of order; ignored");
    return;
  }
  const Submitted task = submitted_.front();
  submitted_.pop_front();
  if (submitted_.empty()) idle_since_ = now;
  front_since_ = now;  // the executor starts the next one at once
  if (ending_ != Ending::Running) return;
  if (task.returned || task.epoch != epoch_) {
    // The broker runs it elsewhere, or no longer knows it.
  } else if (task.cancelled) {
    // The broker forgot it already; the answer only gives it back the credit (W19, W20).
    send(wire::Result{task.task_id, 0, task.count}, now,
         all_failed(task.count, "cancelled by the broker"));
  } else if (outcome != Outcome::Skipped) {
    Bytes payload =
        outcome == Outcome::Ok ? std::move(output) : all_failed(task.count, output.str());
    // RESULT's items_failed (§4.3): the broker counts failed items without reading payloads.
    std::uint32_t failed = outcome == Outcome::Ok
                               ? wire::count_failed(payload.data(), payload.size(), task.count)
                               : task.count;
    if (max_message_bytes_ != 0 && payload.size() > max_message_bytes_) {
      // The broker would drop the connection, and the task would run again and again: each
      // item fails instead, the task is answered and this worker freed.
      const std::string message = "result too large (" + std::to_string(payload.size()) +
                                  " bytes > limit " + std::to_string(max_message_bytes_) +
                                  ", the broker's --max-message-bytes)";
      log_(log::Level::Warning, "task " + std::to_string(task.task_id) + ": " + message);
      payload = all_failed(task.count, message);
      failed = task.count;
    }
    if (task.detached && !broker_adopts_) {
      // No broker to take it now: kept for the next one, within the bound (§9.1).
      if (kept_bytes_ + payload.size() > options_.keep_result_bytes) {
        log_(log::Level::Warning,
             "dropped the result of task " + std::to_string(task.task_id) + " (" +
                 std::to_string(payload.size()) + " bytes): no broker to take it, and " +
                 std::to_string(kept_bytes_) + " bytes of results are kept already (limit " +
                 std::to_string(options_.keep_result_bytes) + "); its items will run again");
      } else {
        kept_bytes_ += payload.size();
        kept_.push_back(Kept{wire::HeldTask{task.task_id, task.job, task.first, task.count},
                             elapsed_us, failed, std::move(payload)});
      }
    } else {
      send(wire::Result{task.task_id, elapsed_us, failed}, now, std::move(payload));
    }
    credit_.observe(elapsed_us);
    const std::uint32_t wanted = credit_.wanted();
    if (CreditPolicy::worth_announcing(announced_credit_, wanted)) {
      announced_credit_ = wanted;
      send(wire::Credit{wanted}, now);
    }
  }
  step(now);
}

void SessionCore::on_stop(TimePoint now) {
  if (ending_ != Ending::Running) return;
  if (!leaving_)
    log_(log::Level::Info, "stopping: finishing the running chunk, returning the rest");
  leaving_ = true;
  if (!stopping_since_) stopping_since_ = now;
  skip_through_ = sequence_;
  step(now);
}

void SessionCore::on_parent_gone(TimePoint now) {
  if (ending_ != Ending::Running) return;
  parent_gone_ = true;
  step(now);
}

void SessionCore::on_tick(TimePoint now) {
  if (ending_ != Ending::Running) return;
  step(now);
}

void SessionCore::step(TimePoint now) {
  if (ending_ != Ending::Running) return;
  if (leaving_ && submitted_.empty()) {
    send(wire::Bye{"worker stopping"}, now);  // the broker re-queues what we did not answer
    finish(Ending::Stopped);
    return;
  }
  // A stopping worker finishes its running task, and its supervisor kills it if that takes too
  // long. With the supervisor gone (it was killed, and the kernel sent this process SIGTERM) no
  // one would: a hung function would keep the process for ever. So an orphan gives its task
  // orphan_grace and then leaves; the broker re-runs what it held.
  if (leaving_ && parent_gone_ && now - *stopping_since_ >= options_.orphan_grace) {
    abandon_process("stopping with no supervisor left: leaving the running task unfinished after " +
                    std::to_string(options_.orphan_grace.count()) + " ms");
    return;
  }
  if (options_.exit_when_idle.count() > 0 && submitted_.empty() && kept_.empty() &&
      now - idle_since_ >= options_.exit_when_idle) {
    log_(log::Level::Info, "idle for " + milliseconds(now - idle_since_) + " ms; leaving");
    send(wire::Bye{"worker idle"}, now);
    finish(Ending::Stopped);
    return;
  }
  // Leaving too (W15): the tasks behind a long one would wait for it, their time limits
  // running at the broker, until the BYE hands them back; offered, they run elsewhere now.
  if (waiting_behind() && now - front_since_ >= options_.return_after) {
    return_waiting(now);
  }
  if (orphan_running(now)) {
    Submitted& front = submitted_.front();
    log_(log::Level::Warning, "task " + std::to_string(front.task_id) + " has run " +
                                  milliseconds(now - front_since_) +
                                  " ms although no broker waits for it; abandoning it");
    front.cancelled = true;
    front.returned = true;  // no answer: no broker knows it
    abandons_.push_back(front.sequence);
  }
  if (now - last_beat_ >= heartbeat_) {
    // The tasks we hold (seen = 1 says `open` lists them), so the broker can tell those it
    // sent that never arrived: a connection that broke and came back lost them (§8).
    // Those kept from a broker that went away go apart, with their identity (`held`, §9.1).
    std::vector<std::uint64_t> held;
    for (const Submitted& t : submitted_) {
      if (t.epoch == epoch_ && !t.detached) held.push_back(t.task_id);
    }
    send(wire::Heartbeat{0, 1, std::move(held), held_listing()}, now);
  }
  if (now - last_heard_ > silence_limit() && now >= next_reconnect_ && endpoints_.size() > 1) {
    fail_over(now);  // W40
  } else if (now - last_heard_ > expiry() && now >= next_reconnect_) {
    // The broker went silent: start over on a fresh socket so nothing stale is queued, with a
    // growing delay so a dead broker is not hammered.
    log_(log::Level::Warning, "no word from broker " + options_.endpoint + " for " +
                                  milliseconds(now - last_heard_) + " ms; reconnecting");
    forget_tasks();
    connect(now);
    reconnect_delay_ =
        std::min(std::max(reconnect_delay_ * 2, heartbeat_), options_.max_reconnect_delay);
    next_reconnect_ = now + reconnect_delay_;
    last_heard_ = now - expiry() + reconnect_delay_;
  }
}

void SessionCore::carry_out(Effects& effects, std::vector<wire::Outgoing>& out) {
  // What the core queued after deciding to start over belongs to the new socket.
  if (std::exchange(reconnect_, false)) effects.reconnect();
  if (skip_through_ != skip_through_told_) {
    skip_through_told_ = skip_through_;
    effects.skip_through(skip_through_);
  }
  for (Start& start : starts_) effects.start(std::move(start));
  starts_.clear();
  for (std::uint64_t sequence : skips_) effects.cancel(sequence, false);
  skips_.clear();
  // Before anything is sent: the process may end here (W20).
  for (std::uint64_t sequence : abandons_) {
    if (effects.cancel(sequence, true)) {
      abandon_process(
          "the broker cancelled the running task, which cannot be interrupted: "
          "replacing this worker process");
      break;
    }
  }
  abandons_.clear();
  take_outbox(out);
}

// W31: consecutive RESULTs leave as one RESULTS, up to wire::kMaxBatch of them and
// kMaxBatchBytes of payload (and the broker's max_message_bytes); only what is queued now is
// merged, nothing waits for more. Nothing else moves: the broker reads them in the same order.
void SessionCore::coalesce_results() {
  // A RESULTS header grows by at most this much per result (task id, elapsed_us, items_failed,
  // size: msgpack integers of at most 9, 9, 5 and 5 bytes): counted in the limit, so that the
  // header frame too stays within a small --max-message-bytes (the broker's ROUTER bounds every
  // frame by it; a frame over it drops the connection).
  constexpr std::size_t kResultHeaderBytes = 32;
  std::uint64_t limit = wire::kMaxBatchBytes;
  if (max_message_bytes_ != 0) limit = std::min(limit, max_message_bytes_);
  std::vector<wire::BatchedResult> run;
  std::vector<bool> merged(outbox_.size(), false);
  std::size_t run_at = 0, run_bytes = 0;
  const auto close = [&] {
    if (run.size() > 1) {
      wire::Batch batch = wire::encode_results(run);
      outbox_[run_at].header = wire::Header(std::move(batch.header));
      outbox_[run_at].payload = Bytes(std::move(batch.payload));
    }
    run.clear();
  };
  std::size_t previous = 0;
  for (auto& [index, result] : result_notes_) {
    Bytes& payload = *outbox_[index].payload;
    if (run.empty() || index != previous + 1 || run.size() >= wire::kMaxBatch ||
        run_bytes + payload.size() + kResultHeaderBytes * (run.size() + 1) > limit) {
      close();
      run_at = index;
      run_bytes = 0;
    } else {
      merged[index] = true;
    }
    run.push_back(wire::BatchedResult{result, payload});
    run_bytes += payload.size();
    previous = index;
  }
  close();
  wire::drop_merged(outbox_, merged);
}

void SessionCore::take_outbox(std::vector<wire::Outgoing>& out) {
  if (broker_batches_ && result_notes_.size() > 1) coalesce_results();
  result_notes_.clear();
  if (out.empty()) {
    out.swap(outbox_);
  } else {
    for (wire::Outgoing& o : outbox_) out.push_back(std::move(o));
    outbox_.clear();
  }
}

SessionCore::TimePoint SessionCore::next_deadline(TimePoint) const {
  if (ending_ != Ending::Running) return TimePoint::min();
  TimePoint deadline = last_beat_ + heartbeat_;
  // "More than the expiry": the first instant after it.
  deadline = std::min(
      deadline, std::max(last_heard_ + silence_limit() + Clock::duration(1), next_reconnect_));
  if (options_.exit_when_idle.count() > 0 && submitted_.empty()) {
    deadline = std::min(deadline, idle_since_ + options_.exit_when_idle);
  }
  if (waiting_behind()) {
    deadline = std::min(deadline, front_since_ + options_.return_after);
  }
  if (orphan_front()) deadline = std::min(deadline, front_since_ + options_.return_after);
  if (leaving_ && parent_gone_) {
    deadline = std::min(deadline, *stopping_since_ + options_.orphan_grace);
  }
  return deadline;
}

}  // namespace seppo::worker
