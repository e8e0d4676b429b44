// Status rendering (split from core.cpp, issue 27 §3): the STATUS snapshot (docs/protocol.md
// §4.13) that seppo status and seppo-broker --http show, and the counts tests read.
#include "broker/core.hpp"

#include "seppo/msgpack.hpp"

namespace seppo::broker {

std::size_t Core::queued_count() const {
  std::size_t n = 0;
  for (const auto& [key, job] : jobs_) n += job.queue.size();
  return n;
}

std::size_t Core::inflight_count(const PeerId& worker) const {
  auto w = workers_.find(worker);
  return w == workers_.end() ? 0 : w->second.inflight.size();
}

// The snapshot STATUS answers with, and seppo-broker --http serves (docs/protocol.md §4.13).
// One pass over workers, functions and jobs: linear in the broker's state.
std::string Core::status_payload(TimePoint now) const {
  return snapshot(now, true);
}

std::string Core::metrics_payload(TimePoint now) const {
  return snapshot(now, false);
}

// `full`: the STATUS map; otherwise what /metrics reads of it (broker/exposition.cpp), in the
// same shape: per worker its host, version, functions and busy count; jobs as an array of nil,
// one per job; no task stream. At 10,000 workers and 100 clients it is about a quarter of the
// full map, with no task stream to pack or to decode (bench/scale.sh).
std::string Core::snapshot(TimePoint now, bool full) const {
  msgpack::sbuffer buffer;
  msgpack::packer<msgpack::sbuffer> p(buffer);
  auto ms_since = [&](TimePoint t) {
    return static_cast<std::int64_t>(
        std::chrono::duration_cast<std::chrono::milliseconds>(now - t).count());
  };
  std::uint64_t bytes_held = 0;
  for (const auto& [id, c] : clients_) bytes_held += c.queued_bytes;
  p.pack_map(9 + stats_.entries(full) + (pair_state_ ? 1 : 0));
  if (pair_state_) {  // a broker of a pair (§15.3)
    p.pack("ha").pack_map(3);
    p.pack("role").pack((*pair_state_)[0]);
    p.pack("state").pack((*pair_state_)[1]);
    p.pack("peer").pack((*pair_state_)[2]);
  }
  p.pack("protocol").pack(wire::kVersion);
  p.pack("instance").pack(instance_);
  // Set by seppo-broker from seppo::build_version(); the project version in tests.
  p.pack("version").pack(config_.version.empty() ? std::string(SEPPO_VERSION) : config_.version);
  p.pack("uptime_ms").pack(stats_.started() == TimePoint{} ? 0 : ms_since(stats_.started()));
  p.pack("clients").pack(static_cast<std::uint64_t>(clients_.size()));
  p.pack("bytes_held").pack(bytes_held);
  p.pack("workers").pack_array(static_cast<std::uint32_t>(workers_.size()));
  for (const auto& [id, w] : workers_) {
    if (!full) {
      p.pack_map(4);
      p.pack("host").pack(w.host);
      p.pack("version").pack(w.version);
      p.pack("functions").pack(w.functions);
      p.pack("busy").pack(static_cast<std::uint32_t>(w.inflight.size()));
      continue;
    }
    p.pack_map(11);
    p.pack("name").pack(w.name);
    p.pack("host").pack(w.host);
    p.pack("version").pack(w.version);
    p.pack("pid").pack(w.pid);
    p.pack("functions").pack(w.functions);
    p.pack("capacity").pack(w.capacity);
    p.pack("busy").pack(static_cast<std::uint32_t>(w.inflight.size()));
    p.pack("tasks_done").pack(w.tasks_done);
    p.pack("last_heard_ms").pack(ms_since(w.last_heard));
    p.pack("uptime_ms").pack(ms_since(w.joined));
    // The tasks it holds, in the order sent: it runs the first; the others wait there.
    p.pack("running").pack_array(static_cast<std::uint32_t>(w.inflight.size()));
    bool head = true;
    for (const std::uint64_t task_id : w.inflight) {
      const auto t = tasks_.find(task_id);
      p.pack_map(6);
      if (t == tasks_.end()) {
        p.pack("client").pack("").pack("job").pack(0).pack("function").pack("");
        p.pack("first").pack(0).pack("count").pack(0).pack("elapsed_ms").pack(0);
      } else {
        const Task& task = t->second;
        const auto j = jobs_.find(task.job);
        p.pack("client").pack(client_label(task.job.client));
        p.pack("job").pack(task.job.id);
        p.pack("function").pack(j == jobs_.end() ? std::string() : j->second.function);
        p.pack("first").pack(task.first);
        p.pack("count").pack(task.count);
        p.pack("elapsed_ms").pack(ms_since(head ? std::max(w.head_since, task.sent) : task.sent));
      }
      head = false;
    }
  }
  std::unordered_map<std::string_view, std::size_t> queued_by_function;
  for (const auto& [key, job] : jobs_) queued_by_function[job.function] += job.queue.size();
  p.pack("functions").pack_map(static_cast<std::uint32_t>(services_.size()));
  for (const auto& [name, s] : services_) {
    auto q = queued_by_function.find(name);
    const std::size_t queued = q == queued_by_function.end() ? 0 : q->second;
    p.pack(name).pack_map(2);
    p.pack("workers").pack(static_cast<std::uint32_t>(s.provider_count));
    p.pack("queued").pack(static_cast<std::uint64_t>(queued));
  }
  p.pack("jobs").pack_array(static_cast<std::uint32_t>(jobs_.size()));
  for (const auto& [key, job] : jobs_) {
    if (!full) {
      p.pack_nil();
      continue;
    }
    std::uint64_t open_items = 0;
    for (const auto& [first, left] : job.chunks) open_items += left;
    const auto c = clients_.find(key.client);
    p.pack_map(10);
    p.pack("client").pack(client_label(key.client));
    p.pack("job").pack(key.id);
    p.pack("function").pack(job.function);
    p.pack("queued").pack(static_cast<std::uint64_t>(job.queue.size()));
    p.pack("chunks_open").pack(static_cast<std::uint64_t>(job.chunks.size()));
    p.pack("items_done").pack(job.items_delivered);
    p.pack("items_failed").pack(job.items_failed);
    p.pack("items_open").pack(open_items);
    p.pack("age_ms").pack(ms_since(job.started));
    p.pack("owner").pack(c == clients_.end() ? std::string() : c->second.owner);
  }
  stats_.pack(p, now, full);
  return std::string(buffer.data(), buffer.size());
}

}  // namespace seppo::broker
