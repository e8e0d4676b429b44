// Byte and share accounting (split from core.cpp, issue 27 §3): the payload bytes each client
// has queued (--max-client-bytes), its queued tasks, and its fair-share tag.
#include <algorithm>

#include "broker/core.hpp"

namespace seppo::broker {

void Core::dequeued(const PeerId& client_id, std::uint64_t tasks) {
  auto c = clients_.find(client_id);
  if (c != clients_.end()) c->second.queued_tasks -= std::min(c->second.queued_tasks, tasks);
}

// A task of this client was sent. Whether chosen by fair share or placed as new work, the
// client's tag moves on; the virtual time moves only as far as the clients still waiting allow
// (fair_share.hpp), so a heavy client's debt persists however its tasks were sent.
void Core::charge_share(const PeerId& client_id) {
  auto c = clients_.find(client_id);
  if (c == clients_.end()) return;
  std::uint64_t floor = ~std::uint64_t{0};
  // Only a task starting ahead of the virtual time can move it past someone: look then only.
  if (fair_.start(c->second.share) > fair_.virtual_time()) {
    // Per task, over every client (issue 28: 100 clients cost more than the rest of a task):
    // the cheap tests first, the client's own records rather than look-ups by id
    // (delivery_backlogged, its jobs) and the job's service rather than one by function name.
    for (const auto& entry : clients_) {
      const Client& other = entry.second;
      if (other.queued_tasks == 0 || other.unread_bytes >= config_.max_client_bytes) continue;
      if (&other == &c->second) continue;  // the client charged: its own entry, not its id
      // One waiting for a function nobody serves now cannot hold the virtual time back: a
      // client arriving later would otherwise start far behind those served meanwhile.
      const bool servable =
          std::any_of(other.job_records.begin(), other.job_records.end(), [](const Job* job) {
            // A job counts in its service's `jobs`, which keeps the entry while the job lives.
            return !job->queue.empty() && job->service->provider_count != 0;
          });
      if (servable) floor = std::min(floor, fair_.start(other.share));
    }
  }
  fair_.charge(c->second.share, floor);
}

void Core::charge(Task& task, std::uint64_t bytes) {
  task.charged = bytes;
  auto c = clients_.find(task.job.client);
  if (c != clients_.end()) c->second.queued_bytes += bytes;
}

void Core::release(Task& task) {
  auto c = clients_.find(task.job.client);
  if (c != clients_.end()) {
    c->second.queued_bytes -= std::min<std::uint64_t>(c->second.queued_bytes, task.charged);
  }
  task.charged = 0;
}

}  // namespace seppo::broker
