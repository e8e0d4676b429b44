// The one contract of the three sans-I/O cores: the broker's broker::Core, the worker's
// SessionCore and the client's JobCore (issue 27, after python-trio/h11: bytes in, messages
// out, time given, nothing else). A socket loop, a test and the simulator drive each the same
// way:
//
//   core.on_message(from, header, header_size, payload, now)  // frames as received; the core
//                                                             // decodes, and refuses bad ones
//   core.on_tick(now)                                         // by core.next_deadline(now)
//   core.take_outbox(out)                                     // what to send, in order
//   core.on_delivery(report, now)                             // what could not be sent
//
// A client or worker has one peer, its broker: `from` and Outgoing::peer are then empty.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "protocol/bytes.hpp"
#include "protocol/wire.hpp"

namespace seppo::wire {

// ZeroMQ routing id of a peer, as bytes; empty for "the broker" in a client or a worker.
using PeerId = std::string;

// One message a core wants sent: the header frame, encoded, and the payload frame for the types
// that carry one (has_payload(type)).
struct Outgoing {
  PeerId peer;
  Header header;
  std::optional<Bytes> payload;
  std::uint64_t task_id = 0;  // a broker's TASK: named in the delivery report if it failed
  // A broker's TASKS (§4.17): its tasks after `task_id`, named in the report too.
  std::vector<std::uint64_t> batched_tasks{};
};

// Removes the messages a batch took in (TASKS, RESULTS: `merged[i]` for out[i]), keeping the
// order of the others.
inline void drop_merged(std::vector<Outgoing>& out, const std::vector<bool>& merged) {
  std::size_t kept = 0;
  for (std::size_t i = 0; i < out.size(); ++i) {
    if (merged[i]) continue;
    if (kept != i) out[kept] = std::move(out[i]);
    ++kept;
  }
  out.resize(kept);
}

// What the socket loop could not deliver (ROUTER_MANDATORY: the peer is gone or at its high-water
// mark; a closed connection it already knew of), reported back so the core's rules, not the
// loop's, decide what follows.
struct DeliveryReport {
  PeerId peer;
  bool disconnected = false;                // the connection closed, not only a failed send
  std::vector<std::uint64_t> unsent_tasks;  // TASKs to it that never left
};

}  // namespace seppo::wire
