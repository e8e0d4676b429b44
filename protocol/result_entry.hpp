// Result entries for the programs (broker, worker, client library): the shape itself is defined
// once, header-only, in seppo/result_entry.hpp, which modules share; this adds whole payloads.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "seppo/result_entry.hpp"

namespace seppo::wire {

// A RESULT payload in which every one of `count` items failed with the same message: what a
// worker answers for a chunk it could not run at all (§5.2).
std::string all_failed(std::uint32_t count, const std::string& message);

// How many of a RESULT payload's `count` entries are not successes (`[0, value]`): what a worker
// sends in RESULT's `items_failed` (§4.3), so the broker counts failed items without reading
// payloads. An entry of another shape counts as failed, as a client reads it; a payload that is
// not an array of `count` entries fails all `count`. One pass, no allocation per entry.
std::uint32_t count_failed(const char* data, std::size_t size, std::uint32_t count);

}  // namespace seppo::wire
