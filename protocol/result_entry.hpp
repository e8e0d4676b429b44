// Result entries for the programs (broker, worker, client library): the shape itself is defined
// once, header-only, in seppo/result_entry.hpp, which modules share; this adds whole payloads.
#pragma once

#include <cstdint>
#include <string>

#include "seppo/result_entry.hpp"

namespace seppo::wire {

// A RESULT payload in which every one of `count` items failed with the same message: what a
// worker answers for a chunk it could not run at all (§5.2).
std::string all_failed(std::uint32_t count, const std::string& message);

}  // namespace seppo::wire
