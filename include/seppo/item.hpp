// The two types of the type-erased engine under Client's templates (Client::run, run_serial,
// detail::Engine): the packer inputs are written with, and one item's outcome. They are seppo's
// own names, so libseppo's exported signatures name no msgpack type (issue 27 §5); a user's
// MSGPACK_DEFINE types are packed by templates in these headers, compiled in the user's program.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "seppo/msgpack.hpp"

#include "seppo/error.hpp"

namespace seppo {

// Packs one input: `packer.pack(value)` for any type msgpack-cxx packs. A msgpack packer over
// the engine's chunk buffer (floats packed as floats, seppo/msgpack.hpp).
class Packer : public msgpack::packer<msgpack::sbuffer> {
 public:
  explicit Packer(msgpack::sbuffer& buffer) : msgpack::packer<msgpack::sbuffer>(buffer) {}
};

// One item's outcome, handed to the engine's sink exactly once, in completion order. The
// pointers stay valid for the sink's call only.
struct Item {
  std::uint64_t index = 0;
  const msgpack::object* value = nullptr;  // set on success
  const std::string* error = nullptr;      // set on failure
  const std::string* worker = nullptr;     // "host, process PID", or empty
  // On failure: empty when the function raised the error, else why seppo failed the item,
  // a code of docs/protocol.md §6.1 ("timeout", "worker_lost", ...): RemoteError::code().
  std::string_view code;
  // The last item of a chunk's answer (a DELIVER or FAILED, or one chunk's part of a DELIVERS,
  // which carries several; in local mode, each item): a good moment to flush streamed output.
  bool last_in_message = false;
  // Microseconds the worker spent on the chunk this item came in (0 for failures).
  std::uint64_t chunk_elapsed_us = 0;
};

// The RemoteError of a failed item (item.error set) of `function`.
inline RemoteError remote_error(const std::string& function, const Item& item) {
  static const std::string kNoWorker;
  return RemoteError(function, item.index, *item.error,
                     item.worker != nullptr ? *item.worker : kNoWorker, std::string(item.code));
}

}  // namespace seppo
