// Payload bytes shared without copying: a TASK's arguments travel from the socket to the
// executor, a RESULT's entries from the executor to the socket, and the sans-I/O cores in
// between hold them without knowing about ZeroMQ (protocol/bytes_zmq.hpp converts at the
// socket loops).
#pragma once

#include <cstddef>
#include <memory>
#include <string>
#include <string_view>
#include <utility>

namespace seppo {

// Immutable bytes with shared ownership: copies share one buffer, which lives as long as the
// last copy (or the last ZeroMQ message made from one).
class Bytes {
 public:
  Bytes() = default;
  explicit Bytes(std::string text) {
    auto owned = std::make_shared<const std::string>(std::move(text));
    data_ = owned->data();
    size_ = owned->size();
    owner_ = std::move(owned);
  }
  // Bytes that `owner` keeps alive, whatever it is (a ZeroMQ message, a buffer).
  Bytes(std::shared_ptr<const void> owner, const char* data, std::size_t size)
      : owner_(std::move(owner)), data_(data), size_(size) {}

  static Bytes copy(const void* data, std::size_t size) {
    return Bytes(std::string(static_cast<const char*>(data), size));
  }

  const char* data() const { return size_ == 0 ? "" : data_; }
  std::size_t size() const { return size_; }
  bool empty() const { return size_ == 0; }
  std::string_view view() const { return {data(), size_}; }
  std::string str() const { return std::string(view()); }
  const std::shared_ptr<const void>& owner() const { return owner_; }

 private:
  std::shared_ptr<const void> owner_;
  const char* data_ = nullptr;
  std::size_t size_ = 0;
};

}  // namespace seppo
