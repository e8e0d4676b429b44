// IdMap: a hash map from 64-bit ids (task ids, chunk firsts) to small values, stored flat.
// A broker keeps several records per task in flight (its job's set of tasks, its chunk's items
// left, its answer's record); as std::unordered_map nodes they cost an allocation, a free and a
// hash-chain walk each, per task, most of it in malloc's slow path while thousands are live
// (issue 28, bench/PROFILE.md "Fourth round"). Here a record is a slot in one array: open
// addressing with linear probing and backward-shift deletion, so there are no tombstones and a
// lookup stops at the first empty slot.
// (A slot is "first" and "second", as std::unordered_map's value_type, so that structured
// bindings read the same.)
//
// The interface is the subset of std::unordered_map the broker uses (find/end, count, emplace,
// operator[], erase by key or iterator, size, empty, iteration), with the same meaning, except:
// any insertion may move every value (no references kept across one), and erase(it) moves
// others, so a loop must not erase while it iterates. Iteration order is unspecified.
#pragma once

#include <cstddef>
#include <cstdint>
#include <utility>
#include <vector>

namespace seppo::broker {

// Keys a peer chooses (a client's chunk firsts) get a keyed hash: a fixed multiplier can be
// inverted, and keys that all land in one slot would make every operation walk all of them
// (a client stalling the broker). Ids the broker makes (task ids) keep the cheaper fixed hash,
// and with it an order of iteration the simulator replays exactly.
enum class Keys { Ours, Theirs };

std::uint64_t id_map_secret();  // random, drawn once per process (id_map.cpp)

template <typename V, Keys kKeys = Keys::Ours>
class IdMap {
 public:
  struct Slot {
    std::uint64_t first = 0;
    V second{};
  };

  template <typename S>
  class Iter {
   public:
    Iter(S* slots, const std::uint8_t* used, std::size_t at, std::size_t end)
        : slots_(slots), used_(used), at_(at), end_(end) {
      skip();
    }
    S& operator*() const { return slots_[at_]; }
    S* operator->() const { return &slots_[at_]; }
    Iter& operator++() {
      ++at_;
      skip();
      return *this;
    }
    bool operator==(const Iter& o) const { return at_ == o.at_; }
    bool operator!=(const Iter& o) const { return at_ != o.at_; }
    std::size_t index() const { return at_; }

   private:
    void skip() {
      while (at_ != end_ && !used_[at_]) ++at_;
    }
    S* slots_;
    const std::uint8_t* used_;
    std::size_t at_, end_;
  };
  using iterator = Iter<Slot>;
  using const_iterator = Iter<const Slot>;

  iterator begin() { return at(0); }
  iterator end() { return at(slots_.size()); }
  const_iterator begin() const { return at(0); }
  const_iterator end() const { return at(slots_.size()); }

  std::size_t size() const { return size_; }
  std::size_t capacity() const { return slots_.size(); }  // slots, used or not
  bool empty() const { return size_ == 0; }
  void clear() {
    slots_.clear();
    used_.clear();
    size_ = 0;
  }

  iterator find(std::uint64_t key) { return at(lookup(key)); }
  const_iterator find(std::uint64_t key) const { return at(lookup(key)); }
  std::size_t count(std::uint64_t key) const { return find(key) != end() ? 1 : 0; }

  // Inserts key -> value unless key is there; as std::unordered_map::emplace.
  std::pair<iterator, bool> emplace(std::uint64_t key, V value) {
    if (std::size_t i = lookup(key); i != kNone) return {at(i), false};
    const std::size_t i = insert_new(key);
    slots_[i].second = std::move(value);
    return {at(i), true};
  }
  V& operator[](std::uint64_t key) {
    std::size_t i = lookup(key);
    if (i == kNone) i = insert_new(key);
    return slots_[i].second;
  }

  std::size_t erase(std::uint64_t key) {
    const std::size_t i = lookup(key);
    if (i == kNone) return 0;
    remove(i);
    return 1;
  }
  void erase(iterator it) { remove(it.index()); }

 private:
  static constexpr std::size_t kNone = ~std::size_t{0};
  iterator at(std::size_t i) {
    if (i == kNone) i = slots_.size();
    return iterator(slots_.data(), used_.data(), i, slots_.size());
  }
  const_iterator at(std::size_t i) const {
    if (i == kNone) i = slots_.size();
    return const_iterator(slots_.data(), used_.data(), i, slots_.size());
  }
  std::size_t home(std::uint64_t key) const {
    if constexpr (kKeys == Keys::Theirs) {
      // A secret mixed in, then a full avalanche (SplitMix64's finaliser), so that which keys
      // collide cannot be known from outside the process.
      key ^= secret_;
      key = (key ^ (key >> 30)) * 0xbf58476d1ce4e5b9ull;
      key = (key ^ (key >> 27)) * 0x94d049bb133111ebull;
      key ^= key >> 31;
    }
    // Fibonacci hashing: ids are mostly sequential, and the product's high bits spread them.
    return static_cast<std::size_t>((key * 0x9e3779b97f4a7c15ull) >> shift_);
  }
  std::size_t lookup(std::uint64_t key) const {
    if (size_ == 0) return kNone;
    const std::size_t mask = slots_.size() - 1;
    for (std::size_t i = home(key);; i = (i + 1) & mask) {
      if (!used_[i]) return kNone;
      if (slots_[i].first == key) return i;
    }
  }
  std::size_t insert_new(std::uint64_t key) {
    // At most half full: probes stay short however the ids fall.
    if ((size_ + 1) * 2 > slots_.size()) grow();
    const std::size_t mask = slots_.size() - 1;
    std::size_t i = home(key);
    while (used_[i]) i = (i + 1) & mask;
    slots_[i].first = key;
    used_[i] = 1;
    ++size_;
    return i;
  }
  void grow() {
    std::vector<Slot> old;
    std::vector<std::uint8_t> old_used;
    old.swap(slots_);
    old_used.swap(used_);
    const std::size_t capacity = old.empty() ? 8 : old.size() * 2;
    slots_.resize(capacity);
    used_.assign(capacity, 0);
    shift_ = 64;
    for (std::size_t c = capacity; c > 1; c >>= 1) --shift_;
    size_ = 0;
    for (std::size_t i = 0; i < old.size(); ++i) {
      if (old_used[i]) slots_[insert_new(old[i].first)].second = std::move(old[i].second);
    }
  }
  // Backward-shift deletion: each later slot of the probe run moves into the hole if its home
  // does not lie cyclically between the hole and itself, so lookups never see a gap.
  void remove(std::size_t hole) {
    const std::size_t mask = slots_.size() - 1;
    for (std::size_t i = (hole + 1) & mask; used_[i]; i = (i + 1) & mask) {
      const std::size_t h = home(slots_[i].first);
      const bool stays = hole <= i ? (hole < h && h <= i) : (hole < h || h <= i);
      if (stays) continue;
      slots_[hole].first = slots_[i].first;
      slots_[hole].second = std::move(slots_[i].second);
      hole = i;
    }
    used_[hole] = 0;
    slots_[hole].second = V{};
    --size_;
  }

  std::vector<Slot> slots_;
  std::vector<std::uint8_t> used_;  // per slot: 1 when it holds a key
  std::uint64_t secret_ = kKeys == Keys::Theirs ? id_map_secret() : 0;
  std::size_t size_ = 0;
  unsigned shift_ = 64;
};

// A set of ids: IdMap's slots without a value worth the name.
class IdSet {
 public:
  class iterator {
   public:
    explicit iterator(IdMap<bool>::const_iterator it) : it_(it) {}
    std::uint64_t operator*() const { return it_->first; }
    iterator& operator++() {
      ++it_;
      return *this;
    }
    bool operator!=(const iterator& o) const { return it_ != o.it_; }
    bool operator==(const iterator& o) const { return it_ == o.it_; }

   private:
    IdMap<bool>::const_iterator it_;
  };
  iterator begin() const { return iterator(map_.begin()); }
  iterator end() const { return iterator(map_.end()); }
  std::size_t size() const { return map_.size(); }
  bool empty() const { return map_.empty(); }
  std::size_t count(std::uint64_t id) const { return map_.count(id); }
  bool insert(std::uint64_t id) { return map_.emplace(id, true).second; }
  std::size_t erase(std::uint64_t id) { return map_.erase(id); }
  void clear() { map_.clear(); }

 private:
  IdMap<bool> map_;
};

}  // namespace seppo::broker
