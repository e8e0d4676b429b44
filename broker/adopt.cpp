// Adopting running work after the broker changed (docs/protocol.md §9.1, issue 25): a worker
// that lost its broker keeps running the tasks whose TASK carried an identity that outlives the
// broker (the job's tag and the task's first item), lists them to the next broker (`held` in
// READY and HEARTBEAT), and hands over the results it kept. That broker binds each to the chunk
// its client resubmits (RESYNC -> SUBMIT) instead of running it again. A broker that has just
// started holds back the resubmitted chunks of such jobs for one adoption window, so that a
// chunk a worker still runs is not sent to another worker before that worker has spoken.
//
// The same mechanism serves a hot standby taking over (section 2 of the issue): what matters is
// only that the tasks' identity and the workers' listings reach whichever broker is active.
#include <algorithm>

#include "broker/core.hpp"

namespace seppo::broker {

void Core::begin(TimePoint now) {
  if (started_) return;
  started_ = true;
  // Workers find a restarted broker within a heartbeat (a worker's next HEARTBEAT is answered
  // not_ready and it announces itself, with what it kept; after a BYE its READY waits in its
  // socket for the broker): the window is two heartbeats, at least a second. Longer would
  // delay the resubmitted work no worker kept.
  adopt_until_ = now + std::max<Duration>(2 * config_.heartbeat, std::chrono::seconds(1));
}

void Core::reopen_adoption(TimePoint now) {
  started_ = true;
  window_open_ = true;
  adopt_until_ = now + std::max<Duration>(2 * config_.heartbeat, std::chrono::seconds(1));
  log(log::Level::Info,
      "adoption window opened: this broker became active, or heard its peer active too (§15)");
}

// A worker listed the tasks it kept (READY: all of them; a HEARTBEAT: all it still holds, so
// `complete`: pending ones it no longer lists are gone). For each: already adopted here, adopt
// it now (its chunk is queued), wait for its client's resubmission (the window is open), or
// tell the worker to drop it (CANCEL: no one will wait for it, or another worker runs it).
void Core::take_listing(const PeerId& id, Worker& worker, const std::vector<std::uint64_t>& flat,
                        bool complete) {
  const std::vector<wire::HeldTask> held = wire::held_tasks(flat);
  if (held.empty() && worker.pending == 0) return;
  worker.listed.clear();
  for (const wire::HeldTask& h : held) worker.listed.push_back(h.task_id);
  std::vector<std::uint64_t> cancel;
  std::vector<ItemKey> listed_keys;
  for (const wire::HeldTask& h : held) {
    const ItemKey key{h.job, h.first};
    listed_keys.push_back(key);
    // Ours already, under its id (adopted, or the same broker re-queued it after a silence).
    auto t = tasks_.find(h.task_id);
    if (t != tasks_.end() && t->second.tag == h.job && t->second.first == h.first &&
        t->second.count == h.count) {
      if (t->second.holder == id) continue;
      if (t->second.holder.empty() && workers_.count(id)) {
        adopt(id, worker, h.task_id);
      } else {
        cancel.push_back(h.task_id);
      }
      continue;
    }
    if (auto p = pending_.find(key); p != pending_.end()) {
      if (p->second.worker != id || p->second.task.task_id != h.task_id) {
        cancel.push_back(h.task_id);  // another worker keeps it too
      }
      continue;
    }
    // Its chunk resubmitted already under a new id: adopt it if no one runs it yet.
    std::uint64_t match = 0;
    if (auto g = tags_.find(h.job); g != tags_.end()) {
      if (auto j = jobs_.find(g->second); j != jobs_.end()) {
        for (std::uint64_t tid : j->second.tasks) {
          auto found = tasks_.find(tid);
          if (found == tasks_.end()) continue;
          const Task& task = found->second;
          if (task.first == h.first && task.count == h.count) {
            match = tid;
            break;
          }
        }
      }
    }
    if (match != 0 && tasks_.at(match).holder.empty() && !tasks_.count(h.task_id) &&
        !stashed_.count(key)) {
      adopt(id, worker, rekey(match, h.task_id));
    } else if (match == 0 && window_open_ && !stashed_.count(key) && !tasks_.count(h.task_id)) {
      pending_.emplace(key, Pending{h, id});
      ++worker.pending;
      reindex(worker);  // dispatch passes it by until its kept tasks are settled
    } else {
      cancel.push_back(h.task_id);
    }
  }
  if (complete && worker.pending != 0) {
    // Pending ones it no longer lists: it dropped them (its bound on kept results) or answered.
    std::sort(listed_keys.begin(), listed_keys.end());
    for (auto p = pending_.begin(); p != pending_.end();) {
      if (p->second.worker == id &&
          !std::binary_search(listed_keys.begin(), listed_keys.end(), p->first)) {
        --worker.pending;
        reindex(worker);
        p = pending_.erase(p);
      } else {
        ++p;
      }
    }
  }
  // Once per liveness per id, as B5's CANCEL (the worker lists one it is abandoning until then).
  std::unordered_map<std::uint64_t, TimePoint> told;
  // A worker that was sent a task twice (a TASK repeated after a READY, §4.2) lists each copy:
  // the CANCEL names it once.
  cancel.erase(std::remove_if(cancel.begin(), cancel.end(),
                              [&](std::uint64_t tid) {
                                if (told.count(tid)) return true;
                                auto c = worker.cancelled_kept.find(tid);
                                const bool recent = c != worker.cancelled_kept.end() &&
                                                    now_ - c->second <= expiry();
                                told.emplace(tid, recent ? c->second : now_);
                                return recent;
                              }),
               cancel.end());
  if (complete)
    worker.cancelled_kept = std::move(told);
  else
    worker.cancelled_kept.insert(told.begin(), told.end());
  if (!cancel.empty()) {
    log(log::Level::Info, "worker " + worker.name + " keeps " + std::to_string(cancel.size()) +
                              " tasks no one waits for here; cancelled them");
    send(id, wire::Cancel{std::move(cancel)});
  }
}

// `task_id` is queued or has just been created: from now on `id` runs it. Adopted tasks go into
// the worker's inflight in the order it listed them, ahead of anything sent to it since.
void Core::adopt(const PeerId& id, Worker& worker, std::uint64_t task_id) {
  Task& task = tasks_.at(task_id);
  auto j = jobs_.find(task.job);
  if (j != jobs_.end()) {
    auto& queue = j->second.queue;
    if (auto q = std::find(queue.begin(), queue.end(), task_id); q != queue.end()) {
      queue.erase(q);
      dequeued(task.job.client, 1);
    }
  }
  task.holder = id;
  task.sent = now_;
  const auto rank = [&](std::uint64_t tid) {
    const auto at = std::find(worker.listed.begin(), worker.listed.end(), tid);
    return at == worker.listed.end() ? worker.listed.size()
                                     : std::size_t(at - worker.listed.begin());
  };
  const std::size_t mine = rank(task_id);
  auto at = std::find_if(worker.inflight.begin(), worker.inflight.end(),
                         [&](std::uint64_t other) { return rank(other) > mine; });
  if (at == worker.inflight.begin()) worker.head_since = now_;
  worker.inflight.insert(at, task_id);
  reindex(worker);
  charge_share(task.job.client);
  ++adopted_;
  log(log::Level::Info, "adopted task " + std::to_string(task_id) + " (items " +
                            std::to_string(task.first) + ".." +
                            std::to_string(task.first + task.count - 1) + " of job " +
                            std::to_string(task.job.id) + ") running at worker " + worker.name);
}

// Gives a task another id (the one a worker kept it under), wherever the old one is recorded.
std::uint64_t Core::rekey(std::uint64_t task_id, std::uint64_t new_id) {
  if (!tasks_.rekey(task_id, new_id)) return task_id;  // the callers check: it never happens
  Task& task = tasks_.at(new_id);
  if (auto j = jobs_.find(task.job); j != jobs_.end()) {
    j->second.tasks.erase(task_id);
    j->second.tasks.insert(new_id);
    std::replace(j->second.queue.begin(), j->second.queue.end(), task_id, new_id);
    if (j->second.service != nullptr && j->second.service->drain_for == task_id) {
      j->second.service->drain_for = new_id;
    }
  }
  return new_id;
}

// A chunk was accepted and queued as `task_id`: a worker may keep it running, or have kept its
// result. A chunk split before the restart is kept item by item: it is split here too, and
// each item a worker keeps is bound to it, the others queued.
void Core::adopt_chunk(Job& job, std::uint64_t task_id) {
  if (pending_.empty() && stashed_.empty()) return;
  const Task& task = tasks_.at(task_id);
  const std::uint64_t chunk = task.chunk_first, count = task.count;  // task goes if split
  const ItemKey from{task.tag, task.first}, to{task.tag, task.first + task.count};
  const auto p = pending_.lower_bound(from);
  const auto s = stashed_.lower_bound(from);
  const bool pending = p != pending_.end() && p->first < to;
  const bool stashed = s != stashed_.end() && s->first < to;
  if (!pending && !stashed) return;
  std::vector<std::uint64_t> parts{task_id};
  const bool whole = (pending && p->first == from && p->second.task.count == count) ||
                     (stashed && s->first == from && s->second.task.count == count);
  if (!whole) {
    if (count == 1) return;  // kept as a range that is not this chunk: it runs again
    // split() queues the parts at the front: the chunk leaves the queue first.
    if (auto q = std::find(job.queue.begin(), job.queue.end(), task_id); q != job.queue.end()) {
      job.queue.erase(q);
      dequeued(tasks_.at(task_id).job.client, 1);
    }
    const std::size_t before = job.tasks.size();
    split(task_id, job);
    if (job.tasks.size() == before - 1) return;  // it could not be split (and failed)
    parts.clear();
    for (std::uint64_t tid : job.queue) {
      const Task& part = tasks_.at(tid);
      if (part.chunk_first == chunk) parts.push_back(tid);
    }
  }
  for (std::uint64_t tid : parts) {
    auto t = tasks_.find(tid);
    if (t == tasks_.end()) continue;
    const ItemKey key{t->second.tag, t->second.first};
    if (auto st = stashed_.find(key);
        st != stashed_.end() && st->second.task.count == t->second.count) {
      Stashed kept = std::move(st->second);
      stashed_.erase(st);
      stashed_bytes_ -= std::min<std::uint64_t>(stashed_bytes_, kept.payload.size());
      auto q = std::find(job.queue.begin(), job.queue.end(), tid);
      if (q != job.queue.end()) {
        job.queue.erase(q);
        dequeued(t->second.job.client, 1);
      }
      ++adopted_;
      log(log::Level::Info, "delivered the result of items " + std::to_string(t->second.first) +
                                ".." + std::to_string(t->second.first + t->second.count - 1) +
                                " of job " + std::to_string(t->second.job.id) + " that worker " +
                                kept.worker + " kept");
      deliver(job, t->second, kept.worker, kept.elapsed_us, kept.items_failed,
              std::move(kept.payload));
      release(t->second);
      erase_task(tid);
      continue;
    }
    auto pe = pending_.find(key);
    if (pe == pending_.end() || pe->second.task.count != t->second.count) continue;
    const Pending kept = pe->second;
    pending_.erase(pe);
    auto w = workers_.find(kept.worker);
    if (w == workers_.end()) continue;
    --w->second.pending;
    reindex(w->second);
    if (tasks_.count(kept.task.task_id)) {  // the id is taken here: it runs again
      send(kept.worker, wire::Cancel{{kept.task.task_id}});
    } else {
      adopt(kept.worker, w->second, rekey(tid, kept.task.task_id));
    }
    if (w->second.pending == 0) dispatch_worker(kept.worker);
  }
}

// A RESULT for a task this worker listed as kept, before its client resubmitted it: kept here
// until it does (within the window), up to --max-client-bytes in all.
bool Core::stash_result(const PeerId& from, Worker& worker, const wire::Result& m, Bytes* payload) {
  for (auto p = pending_.begin(); p != pending_.end(); ++p) {
    if (p->second.worker != from || p->second.task.task_id != m.task_id) continue;
    const Pending kept = p->second;
    pending_.erase(p);
    --worker.pending;
    reindex(worker);
    if (stashed_bytes_ + payload->size() > config_.max_client_bytes) {
      log(log::Level::Warning, "dropped a kept result of " + std::to_string(payload->size()) +
                                   " bytes from worker " + worker.name +
                                   ": over --max-client-bytes kept; its items run again");
      return true;
    }
    stashed_bytes_ += payload->size();
    stashed_.emplace(
        ItemKey{kept.task.job, kept.task.first},
        Stashed{kept.task, worker.name, m.elapsed_us, m.items_failed, std::move(*payload)});
    return true;
  }
  return false;
}

// The window closes: what was not adopted is no one's (its client did not come back, or chose
// another chunking): the workers drop it, and held-back chunks are dispatched.
void Core::close_window() {
  window_open_ = false;
  std::map<PeerId, std::vector<std::uint64_t>> cancel;
  for (const auto& [key, p] : pending_) cancel[p.worker].push_back(p.task.task_id);
  pending_.clear();
  stashed_.clear();
  stashed_bytes_ = 0;
  resynced_.clear();
  std::size_t dropped = 0;
  for (auto& [id, ids] : cancel) {
    dropped += ids.size();
    if (auto w = workers_.find(id); w != workers_.end()) {
      w->second.pending = 0;
      reindex(w->second);
      for (std::uint64_t tid : ids) w->second.cancelled_kept[tid] = now_;
    }
    send(id, wire::Cancel{std::move(ids)});
  }
  if (adopted_ != 0 || dropped != 0) {
    log(log::Level::Info, "adoption window closed: adopted " + std::to_string(adopted_) +
                              " tasks workers kept, cancelled " + std::to_string(dropped));
  }
  for (const auto& [id, ids] : cancel) dispatch_worker(id);
  std::vector<std::string> functions;
  for (const auto& [name, s] : services_) functions.push_back(name);
  for (const std::string& f : functions) dispatch(f);
}

void Core::forget_pending(const PeerId& worker) {
  for (auto p = pending_.begin(); p != pending_.end();) {
    p = p->second.worker == worker ? pending_.erase(p) : std::next(p);
  }
}

}  // namespace seppo::broker
