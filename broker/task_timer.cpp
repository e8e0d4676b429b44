// The broker's rules for work that must not be held: time limits on running tasks, CANCEL for
// tasks nobody wants any more, and tasks a worker hands back with RETURN (docs/protocol.md
// §4.15, §4.16, §10.1). Kept apart from core.cpp, which holds dispatch and delivery.
#include <algorithm>
#include <cstdio>
#include <map>
#include <unordered_set>

#include "broker/core.hpp"
#include "protocol/payload.hpp"
#include "seppo/error.hpp"

namespace seppo::broker {
namespace {

std::string limit_text(Duration d) {
  char text[32];
  std::snprintf(text, sizeof text, "%.3g s", std::chrono::duration<double>(d).count());
  return text;
}

// A chunk gets the limit once per item: the client sized it, not the item's author. Saturates,
// since a limit of weeks times a large chunk overflows the nanosecond count.
Duration chunk_limit(Duration limit, std::uint32_t count) {
  if (count > 1 && limit.count() > Duration::max().count() / count) return Duration::max();
  return limit * count;
}

}  // namespace

Duration Core::time_limit(const Job& job) const {
  const std::chrono::milliseconds asked(job.item_timeout_ms);
  const std::chrono::milliseconds cap = config_.task_timeout;
  if (asked.count() == 0) return cap;
  if (cap.count() == 0) return asked;
  return std::min(asked, cap);
}

void Core::check_timeouts(TimePoint now) {
  std::vector<std::pair<PeerId, std::uint64_t>> late;
  for (const auto& [id, w] : workers_) {
    if (w.inflight.empty()) continue;
    // A worker that missed a heartbeat (a partition, a stopped or vanished process, a peer that
    // never spoke after READY) may not be running the task at all: its expiry decides, not the
    // limit, which would fail an item whose result was merely lost on the way.
    if (now - w.last_heard > config_.heartbeat * 3 / 2) continue;
    auto t = tasks_.find(w.inflight.front());
    // Not ours any more (cancelled, its job gone): the worker is abandoning it already.
    if (t == tasks_.end() || t->second.holder != id) continue;
    auto j = jobs_.find(t->second.job);
    if (j == jobs_.end()) continue;
    const Duration limit = time_limit(j->second);
    if (limit.count() == 0) continue;
    if (now - w.head_since >= chunk_limit(limit, t->second.count)) {
      late.emplace_back(id, w.inflight.front());
    }
  }
  for (const auto& [id, task_id] : late) time_out(id, workers_.at(id), task_id);
}

void Core::time_out(const PeerId& worker_id, Worker& worker, std::uint64_t task_id) {
  Task& task = tasks_.at(task_id);
  Job& job = jobs_.at(task.job);
  const Duration limit = time_limit(job);
  stats_.timed_out(job.function, task.count);
  // The worker abandons the task (a module function: its process is replaced). Its id stays
  // first in `inflight` until the worker answers or leaves, and nothing else is sent there
  // meanwhile: the worker's loss then charges no innocent task behind it.
  send(worker_id, wire::Cancel{{task_id}});
  worker.isolating = task_id;
  reindex(worker);
  task.holder.clear();
  if (task.count > 1) {
    // Which item overran is unknown: each runs again alone, with its own limit.
    log(log::Level::Info, "task of " + std::to_string(task.count) + " items of " + job.function +
                              " at worker " + worker.name + " over its time limit of " +
                              limit_text(chunk_limit(limit, task.count)) +
                              "; running its items one by one");
    split(task_id, job);
    dispatch(job.function);
    return;
  }
  // Not retried: a function that overran its limit once would most likely do so again.
  if (stats_.recording()) {  // the task stream's red bar, in this worker's lane
    const auto ran =
        std::chrono::duration_cast<std::chrono::microseconds>(now_ - worker.head_since);
    stats_.recent({now_, static_cast<std::uint64_t>(std::max<std::int64_t>(ran.count(), 0)),
                   worker.name, job.function, client_label(task.job.client), task.job.id,
                   task.first, task.count, false});
  }
  fail_task(task_id, wire::Code::Timeout,
            job.function + " on item " + std::to_string(task.first) + " ran longer than " +
                limit_text(limit) + " at worker " + worker.name + "; abandoned");
}

void Core::split(std::uint64_t task_id, Job& job) {
  Task& task = tasks_.at(task_id);
  std::vector<wire::Span> spans;
  try {
    spans = wire::item_spans(task.payload.data(), task.payload.size(), task.count);
  } catch (const Error& e) {
    fail_task(task_id, wire::Code::BadRequest, std::string("chunk cannot be split: ") + e.what());
    return;
  }
  const char* base = task.payload.data();
  // The items were admitted as one chunk: their parts share its charge, so splitting never
  // takes a client over its limit (each part pays for its own bytes first).
  std::uint64_t budget = task.charged;
  task.charged = 0;
  for (std::size_t i = spans.size(); i-- > 0;) {
    const std::uint64_t id = new_task(job);
    Task& single = tasks_[id];
    single.job = task.job;
    single.tag = task.tag;
    single.chunk_first = task.chunk_first;
    single.first = task.first + i;
    single.count = 1;
    single.payload = Bytes(wire::single_item_array(base + spans[i].offset, spans[i].size));
    single.attempts = task.attempts;
    const std::uint64_t share =
        i == 0 ? budget : std::min(budget, single.payload.size() + kChunkOverhead);
    budget -= share;
    single.charged = share;  // already counted in the client's queued bytes
    enqueue(id, single, job, true);
  }
  release(task);  // references into an unordered_map survive insertions
  erase_task(task_id);
}

void Core::cancel_held(const JobKey& key) {
  // A job nobody waits for any more: its running tasks stop now, not when they finish.
  auto j = jobs_.find(key);
  if (j == jobs_.end()) return;
  std::map<PeerId, std::vector<std::uint64_t>> held;
  for (std::uint64_t id : j->second.tasks) {
    auto t = tasks_.find(id);
    if (t != tasks_.end() && !t->second.holder.empty()) held[t->second.holder].push_back(id);
  }
  for (auto& [worker, ids] : held) {
    std::sort(ids.begin(), ids.end());
    send(worker, wire::Cancel{std::move(ids)});
  }
}

void Core::on_return(const PeerId& from, const wire::Return& m, TimePoint now) {
  auto w = workers_.find(from);
  if (w == workers_.end()) {
    send(from, wire::Error{wire::Code::NotReady, "unknown worker: send READY first"});
    return;
  }
  Worker& worker = w->second;
  worker.heard(now);
  const std::uint64_t head = worker.inflight.empty() ? 0 : worker.inflight.front();
  std::deque<std::uint64_t> kept, back;
  // A set: a RETURN's list is as long as the peer likes, and is checked against every held id.
  const std::unordered_set<std::uint64_t> listed(m.task_ids.begin(), m.task_ids.end());
  for (std::uint64_t id : worker.inflight) (listed.count(id) ? back : kept).push_back(id);
  worker.inflight = std::move(kept);
  // Back to the front of their queues, last sent first, so they keep their order; no attempt:
  // they never started. Each under a new id: the CANCEL below accepts the offered copy, and a
  // copy sent again before it arrives (maybe to this same worker, which still looks idle if what
  // it runs is a task of an earlier broker run) must not be taken for it (seppo-sim seed 7165).
  std::vector<std::uint64_t> taken;
  for (auto it = back.rbegin(); it != back.rend(); ++it) {
    auto t = tasks_.find(*it);
    if (t == tasks_.end() || t->second.holder != from) continue;
    auto j = jobs_.find(t->second.job);
    if (j == jobs_.end()) continue;
    Task moved = std::move(t->second);
    // Not erase_task(): it finds the job by the task's key, moved from just now, and left the
    // old id in the job's set of tasks.
    j->second.tasks.erase(*it);
    tasks_.erase(t);
    const std::uint64_t fresh = new_task(j->second);
    Task& task = tasks_[fresh] = std::move(moved);
    enqueue(fresh, task, j->second, true);
    taken.push_back(*it);
  }
  const std::size_t returned = taken.size();
  // Tells the worker which it may drop: until then it keeps them, and runs them if it must.
  std::reverse(taken.begin(), taken.end());
  // Listed ids not held here are refused too (a copy answered already, or sent again after a
  // READY re-queued it): the worker keeps an offered task until CANCEL names it, and while it
  // keeps one W24 never abandons what it runs, so a copy left unanswered behind a task that
  // never returns held the worker, and the tasks kept from it, for ever (seppo-sim 34125).
  const std::unordered_set<std::uint64_t> took(taken.begin(), taken.end());
  std::unordered_set<std::uint64_t> refused;
  // Not one cancelled here since its last TASK to this worker, within a liveness: that CANCEL
  // reaches it after every copy it holds, so it drops them all; a worker that announced itself
  // again RETURNs each copy sent to it, and would otherwise draw a CANCEL for each.
  for (std::uint64_t id : m.task_ids) {
    if (took.count(id) || !refused.insert(id).second) continue;
    auto c = worker.cancelled_listed.find(id);
    if (c != worker.cancelled_listed.end() && now - c->second <= expiry()) continue;
    taken.push_back(id);
  }
  // A task that started before this CANCEL arrives runs on and is listed: its HEARTBEATs need
  // not draw the same CANCEL again within a liveness (§4.16).
  for (std::uint64_t id : taken) worker.cancelled_listed[id] = now;
  if (!taken.empty()) send(from, wire::Cancel{std::move(taken)});
  // A worker offers back only tasks waiting behind the one it runs: offering the first one we
  // held there, it runs something we do not count (a task taken back after it started, or one
  // of an earlier broker run), with no time limit. More sent there would only come back, round
  // and round: nothing more goes there until it holds nothing (its HEARTBEAT lists no task),
  // or abandons what it runs and goes (W24).
  const bool runs_uncounted = head != 0 && listed.count(head) > 0;
  if (worker.inflight.empty()) worker.isolating = runs_uncounted ? head : 0;
  if (!worker.inflight.empty() && worker.inflight.front() != head) worker.head_since = now;
  reindex(worker);
  if (returned > 0) {
    log(log::Level::Debug, "worker " + worker.name + " returned " + std::to_string(returned) +
                               " tasks it had not started");
  }
  for (const std::string& f : worker.functions) dispatch(f);
}

void Core::on_disconnected(const PeerId& peer, TimePoint now,
                           const std::vector<std::uint64_t>& unsent_tasks) {
  now_ = now;
  if (auto w = workers_.find(peer); w != workers_.end()) {
    remove_worker(peer, received_running(w->second, unsent_tasks), "lost: its connection closed",
                  now);
  }
}

bool Core::on_revoked(const PeerId& peer, TimePoint now) {
  now_ = now;
  if (workers_.count(peer) == 0) return false;
  remove_worker(peer, false, "dropped: its key is no longer authorised (the lists were reloaded)",
                now);
  return true;
}

}  // namespace seppo::broker
