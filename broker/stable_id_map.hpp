// StableIdMap: the broker's task records by task id, without an allocation per task.
// std::unordered_map gave each task a node, allocated when the task was queued and freed when it
// was answered: with thousands queued, malloc's slow path each time (issue 28, bench/PROFILE.md
// "Fourth round"). Here records live in blocks that never move (a reference to one stays valid
// until it is erased, as with std::unordered_map, which the broker relies on while it queues
// others), freed records are reused, and an IdMap finds a record's place from its id.
//
// The interface is the subset of std::unordered_map the broker uses; an iterator is a (first,
// second) view of one record, not a slot of a sequence (no ++: the broker never walks the map).
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "id_map.hpp"

namespace seppo::broker {

template <typename T>
class StableIdMap {
 public:
  struct Entry {
    std::uint64_t first;
    T& second;
  };
  class iterator {
   public:
    iterator() = default;
    iterator(std::uint64_t id, T* value) : id_(id), value_(value) {}
    struct Arrow {
      Entry entry;
      Entry* operator->() { return &entry; }
    };
    Arrow operator->() const { return Arrow{Entry{id_, *value_}}; }
    Entry operator*() const { return Entry{id_, *value_}; }
    bool operator==(const iterator& o) const { return value_ == o.value_; }
    bool operator!=(const iterator& o) const { return value_ != o.value_; }

   private:
    friend class StableIdMap;
    std::uint64_t id_ = 0;
    T* value_ = nullptr;
  };

  iterator end() const { return iterator(); }
  iterator find(std::uint64_t id) const {
    auto at = index_.find(id);
    return at == index_.end() ? end() : iterator(id, &record(at->second));
  }
  std::size_t count(std::uint64_t id) const { return index_.count(id); }
  std::size_t size() const { return index_.size(); }
  bool empty() const { return index_.empty(); }

  T& at(std::uint64_t id) const {
    auto at = index_.find(id);
    if (at == index_.end()) throw std::out_of_range("no task " + std::to_string(id));
    return record(at->second);
  }
  // The record of `id`, a fresh one if there is none.
  T& operator[](std::uint64_t id) {
    if (auto at = index_.find(id); at != index_.end()) return record(at->second);
    const std::uint32_t place = take_place();
    index_.emplace(id, place);
    return record(place);
  }

  void erase(iterator it) {
    if (it.value_ != nullptr) erase(it.id_);  // end() erases nothing (not id 0)
  }
  std::size_t erase(std::uint64_t id) {
    auto at = index_.find(id);
    if (at == index_.end()) return 0;
    const std::uint32_t place = at->second;
    index_.erase(at);
    record(place) = T{};  // its buffers go now, not when the place is taken again
    if (index_.empty()) {
      // Idle: what a burst of work grew goes back, so it leaves no standing memory behind; the
      // first block and a small index stay, or one task at a time would make and unmake them
      // for every task ((o) in bench/README.md: 256 records constructed per task).
      if (index_.capacity() > 4 * kBlock) index_.clear();
      blocks_.resize(std::min<std::size_t>(blocks_.size(), 1));
      free_.clear();
      if (free_.capacity() > kBlock) free_.shrink_to_fit();
      used_ = 0;
    } else {
      free_.push_back(place);
    }
    return 1;
  }

  // Files the record of `id` under `new_id`, which must be free (as extract() + insert() would,
  // the record does not move). False, and nothing changed, when `id` has no record or `new_id`
  // has one.
  bool rekey(std::uint64_t id, std::uint64_t new_id) {
    auto at = index_.find(id);
    if (at == index_.end() || index_.count(new_id) != 0) return false;
    const std::uint32_t place = at->second;
    index_.erase(at);
    index_.emplace(new_id, place);
    return true;
  }

 private:
  static constexpr std::size_t kBlock = 256;  // records per block
  T& record(std::uint32_t place) const { return blocks_[place / kBlock][place % kBlock]; }
  std::uint32_t take_place() {
    if (!free_.empty()) {
      const std::uint32_t place = free_.back();
      free_.pop_back();
      return place;
    }
    if (used_ == blocks_.size() * kBlock) blocks_.push_back(std::make_unique<T[]>(kBlock));
    return static_cast<std::uint32_t>(used_++);
  }

  IdMap<std::uint32_t> index_;
  std::vector<std::unique_ptr<T[]>> blocks_;
  std::size_t used_ = 0;             // places ever handed out
  std::vector<std::uint32_t> free_;  // places handed out and erased since: reused first
};

}  // namespace seppo::broker
