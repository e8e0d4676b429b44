// The common DELIVER payload read without msgpack's object tree: every item succeeded with a
// scalar value (a number, a string...). msgpack::unpack would allocate a zone holding an array
// object per entry and copy every string, for each of the thousands of tiny items of a chunk.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "seppo/msgpack.hpp"

namespace seppo::client {

// Decodes `data` as a msgpack array of exactly `count` result entries [0, value] (docs/protocol.md
// §5.2) whose values are nil, booleans, integers, floats, strings or binaries, into `values` (one
// object per entry, as msgpack::unpack would make it; strings and binaries point into `data`).
// Returns false for anything else: an error entry, a nested or extension value, a non-canonical
// header, malformed or trailing bytes. The caller then decodes with unpack_untrusted, which
// validates and explains; so this never has to be complete, only right when it says true.
bool decode_scalar_entries(const char* data, std::size_t size, std::uint32_t count,
                           std::vector<msgpack::object>& values);

}  // namespace seppo::client
