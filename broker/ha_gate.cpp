// The glue between a pair's HaCore and broker::Core (broker/ha_gate.hpp, docs/protocol.md §15).
#include "broker/ha_gate.hpp"

#include "protocol/wire.hpp"

namespace seppo::broker::ha {

std::optional<std::string> gate(HaCore& ha, Core& core, const void* header, std::size_t size,
                                TimePoint now) {
  // [1, type, ...]: a STATUS_REQUEST is answered in every state; anything else is a request. A
  // header that does not decode is a request too: the active broker answers it bad_message.
  const auto* b = static_cast<const unsigned char*>(header);
  if (size >= 3 && (b[0] & 0xf0) == 0x90 && b[1] == 1 &&
      b[2] == static_cast<unsigned char>(wire::Type::StatusRequest)) {
    return std::nullopt;
  }
  if (!ha.on_request(now)) {
    core.stats().refused("not_active");
    return refusal(ha);
  }
  if (ha.take_activated()) core.reopen_adoption(now);
  return std::nullopt;
}

void sync(HaCore& ha, Core& core, TimePoint now) {
  if (ha.take_activated()) core.reopen_adoption(now);
  const auto peer = ha.peer(now);
  core.set_pair_state(name(ha.role()), name(ha.state()), peer ? name(*peer) : "silent");
}

std::string refusal(const HaCore& ha) {
  return wire::encode(wire::Error{
      wire::Code::NotActive, std::string("this broker (") + name(ha.role()) + ", " +
                                 name(ha.state()) +
                                 ") is not the active one of its pair: try the other endpoint"});
}

}  // namespace seppo::broker::ha
