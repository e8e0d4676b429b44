// Converts seppo::Bytes to and from zmq::message_t without copying the bytes. Only the socket
// loops include this; the cores see Bytes alone.
#pragma once

#include <cstddef>
#include <memory>
#include <utility>

#include <zmq.hpp>

#include "protocol/bytes.hpp"

namespace seppo {

// Takes over a received frame: the Bytes point into it and keep it alive.
inline Bytes from_zmq(zmq::message_t&& message) {
  auto owned = std::make_shared<zmq::message_t>(std::move(message));
  const char* data = owned->data<char>();
  const std::size_t size = owned->size();
  return Bytes(std::shared_ptr<const void>(std::move(owned)), data, size);
}

// Payloads up to this size are copied into their frame: sharing costs two allocations (the
// owner's copy below and ZeroMQ's record of it) and atomic counts, more than copying a few
// hundred bytes (issue 16: single-item tasks are a few bytes each).
inline constexpr std::size_t kCopyBelow = 512;

// A frame that shares the bytes: ZeroMQ holds a heap copy of the owner (not of the bytes) and
// releases it once the frame is sent, possibly on its I/O thread (shared_ptr counts atomically).
// Small payloads are copied instead (kCopyBelow).
inline zmq::message_t to_zmq(const Bytes& bytes) {
  if (bytes.empty()) return zmq::message_t();
  if (bytes.size() <= kCopyBelow) return zmq::message_t(bytes.data(), bytes.size());
  auto* hold = new std::shared_ptr<const void>(bytes.owner());
  return zmq::message_t(
      const_cast<char*>(bytes.data()), bytes.size(),
      [](void*, void* hint) { delete static_cast<std::shared_ptr<const void>*>(hint); }, hold);
}

}  // namespace seppo
