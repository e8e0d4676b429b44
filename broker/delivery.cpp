#include "broker/delivery.hpp"

#include <algorithm>
#include <utility>

namespace seppo::broker {
namespace {

// A peer something did not reach, with the TASKs to it that never left.
struct Unreached {
  PeerId peer;
  std::vector<std::uint64_t> tasks;
  bool messages = false;  // a message to it was in the batch
};

void note(std::vector<Unreached>& list, const Outgoing& m) {
  auto f =
      std::find_if(list.begin(), list.end(), [&](const Unreached& u) { return u.peer == m.peer; });
  if (f == list.end()) f = list.insert(list.end(), Unreached{m.peer, {}, false});
  f->messages = true;
  if (m.task_id != 0) f->tasks.push_back(m.task_id);
  f->tasks.insert(f->tasks.end(), m.batched_tasks.begin(), m.batched_tasks.end());
}

void report(Core& core, Link& link, wire::DeliveryReport report, TimePoint now) {
  link.reporting(report);
  core.on_delivery(report, now);
}

}  // namespace

bool flush(Core& core, Link& link, TimePoint now) {
  std::vector<Outgoing> out;
  for (int round = 0; round < kMaxFlushRounds; ++round) {
    core.take_outbox(out);
    // A later round sends only what the reports queued: with nothing queued, the closes are
    // not read again (one that came meanwhile is read at the next turn, as if it came a moment
    // later; reading costs libzmq two syscalls).
    if (round > 0 && out.empty()) break;
    const std::vector<PeerId> lost = link.take_lost();
    if (out.empty() && lost.empty()) break;
    std::vector<Unreached> failed, held_back;
    for (const PeerId& peer : lost) held_back.push_back(Unreached{peer, {}, false});
    for (Outgoing& m : out) {
      if (!lost.empty() && std::find(lost.begin(), lost.end(), m.peer) != lost.end()) {
        link.held_back(m);
        note(held_back, m);
      } else if (!link.send(m)) {
        note(failed, m);
      }
    }
    for (Unreached& u : held_back) {
      if (u.messages) {
        report(core, link, wire::DeliveryReport{u.peer, true, u.tasks}, now);
        report(core, link, wire::DeliveryReport{std::move(u.peer), false, std::move(u.tasks)}, now);
      } else {
        report(core, link, wire::DeliveryReport{std::move(u.peer), true, std::move(u.tasks)}, now);
      }
    }
    for (Unreached& u : failed) {
      report(core, link, wire::DeliveryReport{std::move(u.peer), false, std::move(u.tasks)}, now);
    }
  }
  // The emptied vector goes back with its capacity if the core's is smaller: the next batch's
  // outbox grows without reallocating (large reallocations also made malloc consolidate its
  // free lists). Whatever the last round's reports queued stays queued.
  if (!core.outbox_empty()) return false;
  if (out.capacity() > core.queued().capacity()) core.take_outbox(out);
  return true;
}

}  // namespace seppo::broker
