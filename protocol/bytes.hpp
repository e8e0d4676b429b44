// Payload bytes shared without copying: a TASK's arguments travel from the socket to the
// executor, a RESULT's entries from the executor to the socket, and the sans-I/O cores in
// between hold them without knowing about ZeroMQ (protocol/bytes_zmq.hpp converts at the
// socket loops).
#pragma once

#include <cstddef>
#include <cstring>
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

  // One allocation, the buffer and its count together (issue 28).
  static Bytes copy(const void* data, std::size_t size) {
    if (size == 0) return Bytes();
    std::shared_ptr<char[]> owned = std::make_shared_for_overwrite<char[]>(size);
    std::memcpy(owned.get(), data, size);
    const char* at = owned.get();
    return Bytes(std::move(owned), at, size);
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
