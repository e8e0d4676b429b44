// The two types of the type-erased engine under Client's templates (Client::run, run_serial,
// detail::Engine): the packer inputs are written with, and one item's outcome. They are seppo's
// own names, so libseppo's exported signatures name no msgpack type (issue 27 §5); a user's
// MSGPACK_DEFINE types are packed by templates in these headers, compiled in the user's program.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "seppo/msgpack.hpp"

#include "seppo/error.hpp"

namespace seppo {

// Packs one input: `packer.pack(value)` for any type msgpack-cxx packs. A msgpack packer over
// the engine's chunk buffer (floats packed as floats, seppo/msgpack.hpp).
class Packer : public msgpack::packer<msgpack::sbuffer> {
 public:
  explicit Packer(msgpack::sbuffer& buffer)
      : msgpack::packer<msgpack::sbuffer>(buffer), buffer_(buffer) {}
  // The buffer packed into: what a detail::Engine::Fill appends many packed inputs to at once
  // and measures.
  msgpack::sbuffer& buffer() const { return buffer_; }

 private:
  msgpack::sbuffer& buffer_;
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

namespace detail {

// Several successive items' answer handed over whole, unread: the msgpack array of `count`
// result entries (docs/protocol.md §5.2) of a DELIVER (or of one part of a DELIVERS) as the
// worker sent it, none of whose items was handed over before. What an engine made with a block
// sink hands it instead of the items one by one (python/module.cpp decodes a map's scalars
// straight into its list); Engine::each_item() reads it item by item, as the sink would have
// received them.
struct Block {
  std::uint64_t first = 0;  // the index of its first item
  std::uint32_t count = 0;
  const char* data = nullptr;  // the entries, valid while `keep` is held
  std::size_t size = 0;
  std::shared_ptr<const void> keep;
  std::string worker;  // "host, process PID", or empty
  std::uint64_t chunk_elapsed_us = 0;
};

}  // namespace detail

// The RemoteError of a failed item (item.error set) of `function`.
inline RemoteError remote_error(const std::string& function, const Item& item) {
  static const std::string kNoWorker;
  return RemoteError(function, item.index, *item.error,
                     item.worker != nullptr ? *item.worker : kNoWorker, std::string(item.code));
}

}  // namespace seppo
