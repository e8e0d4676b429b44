// A client given a pair of brokers (docs/protocol.md §15.4, rows C30 and C31): it talks to one
// endpoint at a time (its DEALER keeps its routing id) and moves to the next when its broker
// falls silent for `failover_after` or answers `ERROR not_active`. The next broker does not know
// the job: it answers the HEARTBEAT sent right after the move with RESYNC, and the open chunks
// are resubmitted (C13), where workers' kept tasks are adopted (§9.1).
#include "libclient/job_core.hpp"

namespace seppo::client {

// C30: nothing heard for heartbeat × 3/2 (the broker answers every HEARTBEAT, sent each
// heartbeat), or C31's probe ran out: the next endpoint, `probe` (heartbeat / 2) to answer.
void JobCore::fail_over(TimePoint now) {
  switch_ = true;
  broker_submits_ = false;  // C25: the next broker's ALIVE says whether it takes SUBMITS
  next_switch_ = now + probe();
  send_heartbeat(now);
}

// C31: a broker of a pair that is not the active one. With several endpoints the next is tried
// `probe` from now (not at once: two refusing brokers are not asked in a tight loop); with one
// there is nowhere else to go, and the call fails.
void JobCore::on_not_active(const std::string& message, TimePoint now) {
  if (endpoints_ > 1) {
    next_switch_ = now + probe();
    return;
  }
  fail(Failure::Kind::Protocol, std::string(wire::to_wire(wire::Code::NotActive)),
       "the broker at " + options_.endpoint + " is not the active one of its pair (" + message +
           "): give both brokers' endpoints, comma-separated");
}

}  // namespace seppo::client
