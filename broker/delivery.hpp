// How the core's outbox leaves: the one flush that broker/server.cpp's socket loop and the
// simulator's network (sim/network.cpp) both run, so that what follows a send that failed or a
// connection that closed is the core's rule, not each loop's (issue 27). Sans-I/O: the
// transport is a Link, the ROUTER in one, in-memory pipes in the other (as TigerBeetle's
// replica is generic over its I/O).
#pragma once

#include <vector>

#include "broker/core.hpp"
#include "protocol/core_io.hpp"

namespace seppo::broker {

// What flush() asks of a transport.
class Link {
 public:
  virtual ~Link() = default;
  // The peers whose connection closed since the last call (the ROUTER's monitor): nothing is
  // sent to them, and their TASKs count as never received, since the close was known before
  // the send. (A send into a closing connection can still succeed and be lost; the order of the
  // monitor's event and the send is all that tells "never received" apart.)
  virtual std::vector<PeerId> take_lost() { return {}; }
  // Sends one message, or says it could not (ROUTER_MANDATORY: the peer is gone or at its
  // high-water mark; a routing id nothing may go to, §14.6).
  virtual bool send(Outgoing& message) = 0;
  // For traces: a message held back because its peer's connection closed, and each report just
  // before the core reads it.
  virtual void held_back(const Outgoing& /*message*/) {}
  virtual void reporting(const wire::DeliveryReport& /*report*/) {}
};

// Sends the core's outbox through `link`, then reports to the core (Core::on_delivery) per peer
// what did not leave: first each closed connection, with the TASKs held back (and, when
// anything to it was held back, a failed send too: a client's closed connection changes
// nothing, but what it was not sent must be resent, RESYNC), then each peer a send failed to.
// What the core queues in answer is sent the same way, for at most kMaxRounds rounds; returns
// false if something is still queued then (flush again soon), true when the outbox is empty.
inline constexpr int kMaxFlushRounds = 16;
bool flush(Core& core, Link& link, TimePoint now);

}  // namespace seppo::broker
