// Dispatch and reservations (split from core.cpp, issue 27 §3): which queued task goes to which
// worker, and the drain a queued suspect waits for (B50). Fair share picks the client
// (fair_share.hpp, accounting.cpp); here the chosen task leaves as a TASK.
#include <algorithm>
#include <stdexcept>

#include "broker/core.hpp"

namespace seppo::broker {

void Core::enqueue(std::uint64_t task_id, Task& task, Job& job, bool front) {
  task.holder.clear();
  const bool was_idle = job.queue.empty();
  if (auto c = clients_.find(task.job.client); c != clients_.end()) ++c->second.queued_tasks;
  if (front) {
    job.queue.push_front(task_id);
  } else {
    job.queue.push_back(task_id);
  }
  if (was_idle) job.service->ready.push_back(task.job);
}

void Core::dispatch(const std::string& function) {
  auto s = services_.find(function);
  if (s != services_.end()) dispatch(s->second, s->first);
}

void Core::dispatch(Service& service, const std::string& function) {
  // A broker shutting down sends no more work: the workers keep what they run for the next one
  // (§9.1), and a task handed out now would run there twice (seppo-sim seed 1473).
  if (shutting_down_) return;
  std::size_t blocked = 0;  // jobs in a row whose next task waits for an idle worker
  while (!service.ready.empty() && blocked < service.ready.size()) {
    // Join the shortest queue: the provider holding the fewest tasks (idle ones first), the most
    // free credit on a tie. By free credit alone, a job of slow items went mostly to the one
    // worker whose credit a job of fast items had raised (bench (k)). The service's indexes
    // keep its providers in that order (issue 28), so no provider is visited to choose.
    release_drained(service);
    index_pending();
    Worker* idle = nullptr;
    Worker* best = nullptr;
    if (service.indexed) {
      const std::vector<Provider>& providers = service.providers;
      const std::uint32_t idle_rank = service.index.first_idle();
      idle = idle_rank == ProviderIndex::npos ? nullptr : providers[idle_rank].worker;
      // A worker kept for a suspect (B50) whose reservation still holds is not chosen: at most
      // one per reservation is skipped.
      const std::uint32_t best_rank = service.index.first_open(
          [&](std::uint32_t rank) { return providers[rank].worker->drained_for == nullptr; });
      best = best_rank == ProviderIndex::npos ? nullptr : providers[best_rank].worker;
      if (self_check_) check_choice(service, best, idle);
    } else {
      scan_choice(service, best, idle);
    }
    const PeerId* best_id = best == nullptr ? nullptr : best->id;
    const PeerId* idle_id = idle == nullptr ? nullptr : idle->id;
    if (best == nullptr && idle == nullptr) return;
    const JobKey key = service.ready.front();
    service.ready.pop_front();
    auto j = jobs_.find(key);
    if (j == jobs_.end() || j->second.queue.empty()) continue;
    Job& job = j->second;
    const std::uint64_t task_id = job.queue.front();
    Task& task = tasks_.at(task_id);
    if (held_back(job) || delivery_backlogged(key.client)) {  // acknowledge() dispatches again
      service.ready.push_back(key);
      ++blocked;
      continue;
    }
    if (task.suspect()) {
      if (idle == nullptr) {  // wait for a worker with nothing else to run, one drains for it
        reserve(service, task_id);
        service.ready.push_back(key);
        ++blocked;
        continue;
      }
      best = idle;
      best_id = idle_id;
      best->isolating = task_id;
      took_suspect(service, task_id);
    } else if (best == nullptr) {  // only a worker kept for a suspect has credit
      service.ready.push_back(key);
      ++blocked;
      continue;
    }
    blocked = 0;
    job.queue.pop_front();
    dequeued(key.client, 1);
    if (!job.queue.empty()) service.ready.push_back(key);  // round robin between jobs
    send_task(*best_id, *best, task_id, task, function);
  }
}

void Core::release_drained(Service& service) {
  for (std::size_t k = 0; k < draining_.size();) {
    Service& other = *draining_[k];
    const Worker* w = other.drain;
    // It holds nothing (tasks handed back, or found lost) and its suspect cannot go now: no
    // RESULT will come from it to end the reservation, so it ends here.
    if (w->isolating == 0 && w->inflight.empty() &&
        std::find(w->services.begin(), w->services.end(), &service) != w->services.end() &&
        !reservation_waits(other)) {
      unreserve(other);  // erases draining_[k]
      continue;
    }
    ++k;
  }
}

void Core::scan_choice(const Service& service, Worker*& best, Worker*& idle) {
  best = idle = nullptr;
  std::uint32_t best_free = 0, best_used = 0;
  for (const Provider& p : service.providers) {
    Worker* w = p.worker;
    if (w == nullptr) continue;  // it left
    // Running what it kept from a broker it lost, not adopted yet (§9.1): it runs that first.
    if (w->isolating != 0 || w->pending != 0) continue;
    const std::uint32_t used = static_cast<std::uint32_t>(w->inflight.size());
    if (used == 0 && w->spoken && idle == nullptr) idle = w;
    if (w->drained_for != nullptr) continue;  // release_drained() ended those it may end
    const std::uint32_t free = w->capacity > used ? w->capacity - used : 0;
    if (free > 0 &&
        (best == nullptr || used < best_used || (used == best_used && free > best_free))) {
      best = w;
      best_free = free;
      best_used = used;
    }
  }
}

void Core::check_choice(const Service& service, const Worker* best, const Worker* idle) const {
  Worker* scan_best = nullptr;
  Worker* scan_idle = nullptr;
  scan_choice(service, scan_best, scan_idle);
  if (scan_best != best || scan_idle != idle) {
    throw std::logic_error("broker: the provider index chose " +
                           (best ? best->name : std::string("none")) + " and idle " +
                           (idle ? idle->name : std::string("none")) + ", the scan " +
                           (scan_best ? scan_best->name : std::string("none")) + " and idle " +
                           (scan_idle ? scan_idle->name : std::string("none")));
  }
}

void Core::index_pending() {
  for (Worker* w : reindex_due_) {
    w->reindex_at = kNotDue;
    index_now(*w);
  }
  reindex_due_.clear();
}

void Core::index_now(Worker& w) {
  const auto used = static_cast<std::uint32_t>(w.inflight.size());
  // One running what it kept from a broker it lost, not adopted yet (§9.1), runs that first.
  const bool free_of_others = w.isolating == 0 && w.pending == 0;
  const bool open = free_of_others && w.capacity > used;
  const bool idle = free_of_others && used == 0 && w.spoken;
  const std::uint32_t free = open ? w.capacity - used : 0;
  if (open == w.indexed_open && idle == w.indexed_idle &&
      (!open || (used == w.indexed_used && free == w.indexed_free))) {
    return;
  }
  const std::uint64_t was = ProviderIndex::key(w.indexed_used, w.indexed_free);
  const std::uint64_t now = ProviderIndex::key(used, free);
  const bool moved = w.indexed_open && open && was != now;
  for (std::size_t n = 0; n < w.services.size(); ++n) {
    if (!w.services[n]->indexed) continue;
    ProviderIndex& index = w.services[n]->index;
    const std::uint32_t rank = w.ranks[n];
    if (w.indexed_open && (moved || !open)) index.remove_open(was, rank);
    if (open && (moved || !w.indexed_open)) index.add_open(now, rank);
    if (idle && !w.indexed_idle) index.add_idle(rank);
    if (!idle && w.indexed_idle) index.remove_idle(rank);
  }
  w.indexed_open = open;
  w.indexed_idle = idle;
  w.indexed_used = used;
  w.indexed_free = free;
}

void Core::index_entries(Service& service, const Worker& w, std::uint32_t rank, bool add) {
  if (!service.indexed) return;
  ProviderIndex& index = service.index;
  if (w.indexed_open) {
    const std::uint64_t key = ProviderIndex::key(w.indexed_used, w.indexed_free);
    add ? index.add_open(key, rank) : index.remove_open(key, rank);
  }
  if (w.indexed_idle) add ? index.add_idle(rank) : index.remove_idle(rank);
}

void Core::unindex(Worker& w) {
  if (w.reindex_at != kNotDue) {  // swap with the last: the order of the pending is no rule
    Worker* last = reindex_due_.back();
    reindex_due_[w.reindex_at] = last;
    last->reindex_at = w.reindex_at;
    reindex_due_.pop_back();
    w.reindex_at = kNotDue;
  }
  for (std::size_t n = 0; n < w.services.size(); ++n) {
    index_entries(*w.services[n], w, w.ranks[n], false);
  }
  w.indexed_open = w.indexed_idle = false;
}

void Core::index_all(Service& s, bool add) {
  for (std::size_t r = 0; r < s.providers.size(); ++r) {
    if (s.providers[r].worker != nullptr) {
      index_entries(s, *s.providers[r].worker, static_cast<std::uint32_t>(r), add);
    }
  }
}

void Core::set_indexed(Service& s, bool on) {
  // By the state each provider is indexed under elsewhere: one due for re-indexing is moved
  // here too when index_pending() reaches it.
  if (on) s.indexed = true;
  index_all(s, on);
  s.indexed = on;
}

void Core::compact(Service& s) {
  // Taken out at their old ranks and put back at the new: the order of joining is kept, so the
  // order of choice is the same.
  index_all(s, false);
  std::size_t k = 0;
  for (const Provider& p : s.providers) {
    if (p.worker == nullptr) continue;
    p.worker->ranks[p.slot] = static_cast<std::uint32_t>(k);
    s.providers[k++] = p;
  }
  s.providers.resize(k);
  index_all(s, true);
}

void Core::send_task(const PeerId& worker_id, Worker& worker, std::uint64_t task_id, Task& task,
                     const std::string& function) {
  task.holder = worker_id;
  if (worker.inflight.empty()) worker.head_since = now_;  // its time limit counts from now
  task.sent = now_;
  worker.inflight.push_back(task_id);
  // A CANCEL of this id sent to it before no longer covers this copy (on_return's refusal).
  worker.cancelled_listed.erase(task_id);
  reindex(worker);
  charge_share(task.job.client);
  // Shares the buffer: the task keeps it for a re-run if the worker dies.
  // Its identity outliving us goes to workers that keep tasks for the next broker (§9.1).
  const std::uint64_t job = worker.adopts ? task.tag : 0;
  if (worker.batches && task.payload.size() <= wire::kMaxBatchBytes) {
    task_notes_.push_back(TaskNote{outbox_.size(), task.count, job, task.first});
  }
  outbox_.push_back(Outgoing{worker_id,
                             wire::encode_task(task_id, function, task.count, job, task.first),
                             task.payload, task_id});
}

namespace {

// The groups of B58 and B59: the noted messages (`notes`, in outbox order, each naming its
// outbox index) that go out as one. A note joins the open group of its peer if nothing else to
// that peer came between and `joins(head, note, size, bytes)` says yes (head: the group's first
// note; size, bytes: the group's so far); otherwise it opens a new group. Only groups of two or
// more are returned, each its notes' indexes in order; `merged` marks the outbox entries they
// take in, the first of each excepted (it becomes the batch).
template <typename Note, typename Joins>
std::vector<std::vector<std::size_t>> group_notes(const std::vector<Outgoing>& outbox,
                                                  const std::vector<Note>& notes,
                                                  std::vector<bool>& merged, Joins joins) {
  struct Group {
    const PeerId* peer;
    std::vector<std::size_t> notes;
    std::size_t bytes;
  };
  std::vector<Group> groups;
  std::vector<std::size_t> open;  // per peer with an open group: its index in `groups`
  std::size_t k = 0;
  for (std::size_t i = 0; i < outbox.size(); ++i) {
    const Outgoing& o = outbox[i];
    auto g = std::find_if(open.begin(), open.end(),
                          [&](std::size_t n) { return *groups[n].peer == o.peer; });
    if (k < notes.size() && notes[k].index == i) {
      const std::size_t bytes = o.payload->size();
      if (g != open.end()) {
        Group& group = groups[*g];
        if (joins(notes[group.notes.front()], notes[k], group.notes.size(), group.bytes + bytes)) {
          group.notes.push_back(k);
          group.bytes += bytes;
          merged[i] = true;
          ++k;
          continue;
        }
        open.erase(g);
      }
      open.push_back(groups.size());
      groups.push_back(Group{&o.peer, {k}, bytes});
      ++k;
    } else if (g != open.end()) {
      open.erase(g);  // something else to this peer: what follows starts a new batch
    }
  }
  std::vector<std::vector<std::size_t>> out;
  for (Group& group : groups) {
    if (group.notes.size() > 1) out.push_back(std::move(group.notes));
  }
  return out;
}

}  // namespace

// B58: the TASKs queued since the last take_outbox() for a worker that named "batch" (the
// messages of one loop turn, a tick, a round of delivery reports) leave as one TASKS, at the
// place of the first, as long as nothing else to that worker comes between them, they name
// the same function, and the batch stays within wire::kMaxBatch tasks and kMaxBatchBytes of
// payload; otherwise a new batch starts. Each worker still receives its tasks in the order
// they were sent (it runs them in that order, §4.2), and nothing waits for a batch to fill:
// only what is queued now is merged.
void Core::coalesce_tasks(std::vector<bool>& merged) {
  const auto groups = group_notes(
      outbox_, task_notes_, merged,
      [&](const TaskNote& head, const TaskNote& note, std::size_t size, std::size_t bytes) {
        return size < wire::kMaxBatch && bytes <= wire::kMaxBatchBytes &&
               wire::task_function(outbox_[head.index].header) ==
                   wire::task_function(outbox_[note.index].header);
      });
  std::vector<wire::TaskPart> parts;
  for (const std::vector<std::size_t>& group : groups) {
    parts.clear();
    std::vector<std::uint64_t> ids;
    ids.reserve(group.size() - 1);
    for (std::size_t n : group) {
      const TaskNote& note = task_notes_[n];
      const Outgoing& o = outbox_[note.index];
      parts.push_back(wire::TaskPart{o.task_id, note.count, note.job, note.first, &*o.payload});
      if (n != group.front()) ids.push_back(o.task_id);
    }
    Outgoing& head = outbox_[task_notes_[group.front()].index];
    wire::Batch batch =
        wire::encode_tasks(wire::task_function(head.header), parts.data(), parts.size());
    head.header = wire::Header(std::move(batch.header));
    head.payload = Bytes(std::move(batch.payload));
    head.batched_tasks = std::move(ids);
  }
}

// B59: the DELIVERs queued since the last take_outbox() for a client whose SUBMIT named "batch"
// leave as one DELIVERS, at the place of the first, as long as nothing else to that client
// comes between them, they are of the same job, and the batch stays within wire::kMaxBatch
// chunks and kMaxBatchBytes of payload (and the --max-message-bytes announced: a client bounds
// its frames by that plus 64 KiB, §4.9, so any limit it may set holds too). The client reads
// its answers in the order they were queued, each with its own seq; nothing waits for a batch.
// A DELIVER is noted when queued if its client then took DELIVERS, and merged only if the
// client still does now: a SUBMIT without "batch" read later in the same turn is its last.
void Core::coalesce_delivers(std::vector<bool>& merged) {
  const std::uint64_t limit =
      config_.max_message_bytes != 0
          ? std::min<std::uint64_t>(wire::kMaxBatchBytes, config_.max_message_bytes)
          : wire::kMaxBatchBytes;
  const auto groups =
      group_notes(outbox_, deliver_notes_, merged,
                  [&, head_seen = std::size_t(-1), batches = false](
                      const DeliverNote& head, const DeliverNote& note, std::size_t size,
                      std::size_t bytes) mutable {
                    if (size >= wire::kMaxBatch || bytes > limit || head.job_id != note.job_id)
                      return false;
                    // The client looked up once per group, not once per answer joining it.
                    if (head.index != head_seen) {
                      head_seen = head.index;
                      auto c = clients_.find(outbox_[head.index].peer);
                      batches = c != clients_.end() && c->second.batches;
                    }
                    return batches;
                  });
  std::vector<wire::DeliverPart> parts;
  for (const std::vector<std::size_t>& group : groups) {
    parts.clear();
    for (std::size_t n : group) {
      const DeliverNote& note = deliver_notes_[n];
      const Outgoing& o = outbox_[note.index];
      parts.push_back(wire::DeliverPart{note.first, note.count, wire::deliver_worker(o.header),
                                        note.elapsed_us, note.seq, &*o.payload});
    }
    Outgoing& head = outbox_[deliver_notes_[group.front()].index];
    wire::Batch batch =
        wire::encode_delivers(deliver_notes_[group.front()].job_id, parts.data(), parts.size());
    head.header = wire::Header(std::move(batch.header));
    head.payload = Bytes(std::move(batch.payload));
  }
}

void Core::coalesce() {
  std::vector<bool> merged(outbox_.size(), false);
  if (task_notes_.size() > 1) coalesce_tasks(merged);
  if (deliver_notes_.size() > 1) coalesce_delivers(merged);
  if (std::find(merged.begin(), merged.end(), true) != merged.end()) {
    wire::drop_merged(outbox_, merged);
  }
}

// Fills one worker's free credit, fairly between clients (fair_share.hpp): the next task of
// each function it serves is a candidate, and the client served least goes first. Called when
// this worker's credit frees, which is when jobs compete for it; dispatch() places new work.
void Core::dispatch_worker(const PeerId& id) {
  auto w = workers_.find(id);
  if (w == workers_.end() || shutting_down_) return;
  Worker& worker = w->second;
  // Reserved for a suspect (B50): nothing new while it drains; once it holds nothing, only a
  // suspect, unless none is there to take (then the reservation is over).
  bool only_suspects = false;
  if (worker.drained_for != nullptr) {
    if (!reservation_live(*worker.drained_for)) {
      unreserve(*worker.drained_for);
    } else if (!worker.inflight.empty()) {
      return;
    } else {
      only_suspects = true;
    }
  }
  while (worker.isolating == 0 && worker.pending == 0 && worker.inflight.size() < worker.capacity) {
    Service* best = nullptr;
    const std::string* best_function = nullptr;
    const Client* best_client = nullptr;
    Job* best_job = nullptr;  // what was looked up for the candidate, not looked up again
    for (std::size_t n = 0; n < worker.functions.size(); ++n) {
      const std::string& f = worker.functions[n];
      Service& service = *worker.services[n];
      // Forget finished jobs at the front; skip those whose turn cannot come here now.
      while (!service.ready.empty()) {
        auto j = jobs_.find(service.ready.front());
        if (j != jobs_.end() && !j->second.queue.empty()) break;
        service.ready.pop_front();
      }
      for (std::size_t i = 0; i < service.ready.size(); ++i) {
        const JobKey& key = service.ready[i];
        auto j = jobs_.find(key);
        if (j == jobs_.end() || j->second.queue.empty() || held_back(j->second)) continue;
        const Task& task = tasks_.at(j->second.queue.front());
        if (only_suspects && !task.suspect()) continue;
        auto c = clients_.find(key.client);
        // delivery_backlogged(), with the lookup done once
        if (c != clients_.end() && c->second.unread_bytes >= config_.max_client_bytes) continue;
        // A suspect runs alone, on a worker known to receive what it is sent.
        if (task.suspect() && (!worker.inflight.empty() || !worker.spoken)) {
          reserve(service, j->second.queue.front());
          if (worker.drained_for != nullptr) return;  // this one drains for it
          continue;
        }
        static const Client kNobody{};
        const Client& client = c == clients_.end() ? kNobody : c->second;
        if (best == nullptr || fair_.before(client.share, best_client->share)) {
          best = &service;
          best_function = &f;
          best_client = &client;
          best_job = &j->second;
          // Rotate so the chosen job is at the front: within a function, round robin.
          if (i != 0) {
            const JobKey chosen = service.ready[i];
            service.ready.erase(service.ready.begin() + static_cast<std::ptrdiff_t>(i));
            service.ready.push_front(chosen);
          }
        }
        break;  // the first eligible job of a function is its candidate
      }
    }
    if (best == nullptr) {
      if (!only_suspects) return;
      // Its suspect is not first in its job's queue (tasks handed back went before it): the
      // worker works meanwhile, and is reserved again when the suspect is first and waits.
      unreserve(*worker.drained_for);
      only_suspects = false;
      continue;
    }
    const JobKey key = best->ready.front();
    best->ready.pop_front();
    Job& job = *best_job;
    const std::uint64_t task_id = job.queue.front();
    Task& task = tasks_.at(task_id);
    job.queue.pop_front();
    dequeued(key.client, 1);
    if (!job.queue.empty()) best->ready.push_back(key);
    if (task.suspect()) {
      worker.isolating = task_id;
      took_suspect(*best, task_id);
    }
    send_task(id, worker, task_id, task, *best_function);
  }
}

// A suspect runs only on a worker holding nothing, and workers that keep their credit filled
// never hold nothing while other jobs have work: without a reservation it would wait for all
// other work of its function to drain (B50). One provider therefore stops getting new tasks and
// runs the suspect when it has finished those it holds: a wait bounded by one worker's queue.
void Core::reserve(Service& service, std::uint64_t suspect) {
  if (service.drain != nullptr) {
    if (reservation_live(service)) return;
    unreserve(service);
  }
  Worker* pick = nullptr;
  for (const Provider& p : service.providers) {
    Worker* w = p.worker;
    if (w == nullptr) continue;  // it left
    if (!w->spoken || w->drained_for != nullptr || w->pending != 0) continue;
    // Holding nothing yet blocked (it runs a task we do not count, §4.16) is not draining.
    if (w->isolating != 0 && w->inflight.empty()) continue;
    // The fewest tasks held drains first; on a tie, one not abandoning or isolating a task.
    if (pick == nullptr || w->inflight.size() < pick->inflight.size() ||
        (w->inflight.size() == pick->inflight.size() && pick->isolating != 0 &&
         w->isolating == 0)) {
      pick = w;
    }
  }
  if (pick == nullptr) return;  // every provider is kept for another function's suspect
  service.drain = pick;
  service.drain_for = suspect;
  pick->drained_for = &service;
  draining_.push_back(&service);
  log(log::Level::Debug, "worker " + pick->name + " drains its " +
                             std::to_string(pick->inflight.size()) + " tasks to run suspect task " +
                             std::to_string(suspect) + " alone");
}

void Core::unreserve(Service& service) {
  if (service.drain != nullptr) {
    service.drain->drained_for = nullptr;
    draining_.erase(std::find(draining_.begin(), draining_.end(), &service));
  }
  service.drain = nullptr;
  service.drain_for = 0;
}

bool Core::reservation_live(const Service& service) const {
  auto t = tasks_.find(service.drain_for);
  if (t == tasks_.end() || !t->second.holder.empty()) return false;
  // A reserved worker that became blocked behind uncounted work would keep the suspect waiting.
  const Worker* w = service.drain;
  return w == nullptr || w->isolating == 0 || !w->inflight.empty();
}

bool Core::reservation_waits(const Service& service) const {
  auto t = tasks_.find(service.drain_for);
  if (t == tasks_.end() || !t->second.holder.empty()) return false;
  auto j = jobs_.find(t->second.job);
  return j != jobs_.end() && !j->second.queue.empty() &&
         j->second.queue.front() == service.drain_for && !delivery_backlogged(t->second.job.client);
}

// A client whose results wait unread in the broker's send queue beyond its byte limit gets
// no more tasks run until it reads them (its HEARTBEAT's `seen` acknowledges them).
bool Core::delivery_backlogged(const PeerId& client) const {
  auto c = clients_.find(client);
  return c != clients_.end() && c->second.unread_bytes >= config_.max_client_bytes;
}

}  // namespace seppo::broker
