// What a broker of a pair does between its HaCore and its broker::Core (docs/protocol.md §15.1,
// §15.3), with no socket: broker/server.cpp calls these around its loop, and any other driver of
// the same two cores (a simulation of a pair) calls the same functions instead of copying them.
#pragma once

#include <cstddef>
#include <optional>
#include <string>

#include "broker/core.hpp"
#include "broker/ha_core.hpp"

namespace seppo::broker::ha {

// A client's or worker's message, by its header frame, before broker::Core reads it: nothing to
// pass it to the core, or the ERROR not_active header to answer it with (H6..H8, H10, H14, H15).
// STATUS_REQUEST is answered in every state. When the broker takes over on this very message
// (H6, H14) the core's adoption window opens first, so that a worker's kept tasks listed in it
// are adopted (§9.1).
std::optional<std::string> gate(HaCore& ha, Core& core, const void* header, std::size_t size,
                                TimePoint now);

// After the peer's state or HaCore's timers were taken in: a new adoption window when HaCore
// says so (it became active, or H11 on a primary), and STATUS's `ha` map (§15.3).
void sync(HaCore& ha, Core& core, TimePoint now);

// The ERROR not_active header this broker answers with, naming its role and state.
std::string refusal(const HaCore& ha);

}  // namespace seppo::broker::ha
