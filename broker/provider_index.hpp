// The providers of one function in dispatch's order of choice (issue 28: 10,000 workers), with
// updates and choice in a few bit scans whatever the number of providers.
//
// dispatch() chooses the provider holding the fewest tasks, on a tie the one with the most free
// credit, on a tie the first to join; a suspect goes to the first to join of those holding
// nothing. A provider is named by its rank, its place in the service's joining order (the
// service's provider list, broker/core.hpp), so "first to join" is "least rank". Providers of
// the same tasks held and free credit form a class; the classes are kept in order of choice
// (their number depends on the capacities and loads, a few dozen under adaptive credit, not on
// the number of workers), and each class's ranks in a RankSet, where the least is found in
// three bit scans. A task sent or answered moves one rank from one class to another: no tree of
// providers to rebalance, as the std::set of every provider this replaces did (three
// operations of 14 levels at 10,000). The order of joining within a count is why this is not
// a list per count: a provider coming back to a count goes back to its place, not to the end.
#pragma once

#include <array>
#include <bit>
#include <cstdint>
#include <map>
#include <vector>

namespace seppo::broker {

// Blocks of 4,096 ranks' bits, shared by the RankSets of one index: a block is taken when a set
// first holds a rank in it and given back, all zero, when it holds none there again.
struct RankPages {
  using Page = std::array<std::uint64_t, 64>;
  std::vector<Page> pages;
  std::vector<std::uint32_t> spare;
  std::uint32_t take() {
    if (!spare.empty()) {
      const std::uint32_t p = spare.back();
      spare.pop_back();
      return p;
    }
    pages.push_back(Page{});
    return static_cast<std::uint32_t>(pages.size() - 1);
  }
  void give(std::uint32_t p) { spare.push_back(p); }
};

// A set of ranks: a bit per rank in pages of 4,096, a word per page telling its non-zero words,
// and a bit per page telling the pages in use. Insert and erase touch a word or three; the
// least rank from a point is three bit scans (and a scan of one word per 262,144 ranks).
class RankSet {
 public:
  static constexpr std::uint32_t npos = ~std::uint32_t{0};

  bool empty() const { return size_ == 0; }
  std::size_t size() const { return size_; }

  void insert(std::uint32_t rank, RankPages& pool) {
    const std::uint32_t b = rank >> 12;
    if (b >= page_.size() || page_[b] == npos) [[unlikely]] {
      open_page(b, pool);
    }
    std::uint64_t& word = pool.pages[page_[b]][(rank >> 6) & 63];
    const std::uint64_t bit = std::uint64_t{1} << (rank & 63);
    if (word & bit) return;
    if (word == 0) {
      if (words_[b] == 0) blocks_[b >> 6] |= std::uint64_t{1} << (b & 63);
      words_[b] |= std::uint64_t{1} << ((rank >> 6) & 63);
    }
    word |= bit;
    ++size_;
  }

  void erase(std::uint32_t rank, RankPages& pool) {
    const std::uint32_t b = rank >> 12;
    if (b >= page_.size() || page_[b] == npos) return;
    std::uint64_t& word = pool.pages[page_[b]][(rank >> 6) & 63];
    const std::uint64_t bit = std::uint64_t{1} << (rank & 63);
    if (!(word & bit)) return;
    word &= ~bit;
    --size_;
    if (word != 0) return;
    words_[b] &= ~(std::uint64_t{1} << ((rank >> 6) & 63));
    if (words_[b] != 0) return;
    blocks_[b >> 6] &= ~(std::uint64_t{1} << (b & 63));
    pool.give(page_[b]);
    page_[b] = npos;
  }

  // The least rank in the set not below `from`, or npos.
  std::uint32_t first(const RankPages& pool, std::uint32_t from = 0) const {
    if (size_ == 0) return npos;
    std::uint32_t b = from >> 12;
    if (b >= page_.size()) return npos;
    if (words_[b] != 0) {
      const RankPages::Page& page = pool.pages[page_[b]];
      const std::uint32_t w = (from >> 6) & 63;
      if (const std::uint64_t bits = page[w] & (~std::uint64_t{0} << (from & 63)); bits != 0) {
        return (from & ~std::uint32_t{63}) | static_cast<std::uint32_t>(std::countr_zero(bits));
      }
      if (w < 63) {
        if (const std::uint64_t ws = words_[b] & (~std::uint64_t{0} << (w + 1)); ws != 0) {
          const auto w2 = static_cast<std::uint32_t>(std::countr_zero(ws));
          return (b << 12) | (w2 << 6) | static_cast<std::uint32_t>(std::countr_zero(page[w2]));
        }
      }
    }
    ++b;
    for (std::size_t i = b >> 6; i < blocks_.size(); ++i) {
      std::uint64_t bs = blocks_[i];
      if (i == (b >> 6)) bs &= ~std::uint64_t{0} << (b & 63);
      if (bs == 0) continue;
      const auto b2 = static_cast<std::uint32_t>((i << 6) | std::countr_zero(bs));
      const auto w2 = static_cast<std::uint32_t>(std::countr_zero(words_[b2]));
      return (b2 << 12) | (w2 << 6) |
             static_cast<std::uint32_t>(std::countr_zero(pool.pages[page_[b2]][w2]));
    }
    return npos;
  }

 private:
  // Out of line, so that the common insert (its page in use) is inlined where it is called.
  [[gnu::noinline]] void open_page(std::uint32_t b, RankPages& pool) {
    if (b >= page_.size()) {
      page_.resize(b + 1, npos);
      words_.resize(b + 1, 0);
      blocks_.resize((b >> 6) + 1, 0);
    }
    page_[b] = pool.take();
  }

  std::vector<std::uint32_t> page_;    // per 4,096 ranks: its page in the pool, or npos
  std::vector<std::uint64_t> words_;   // per 4,096 ranks: bit w, word w of its page is not 0
  std::vector<std::uint64_t> blocks_;  // bit b of blocks_[i]: ranks 4,096 x (64i + b) on in use
  std::size_t size_ = 0;
};

class ProviderIndex {
 public:
  static constexpr std::uint32_t npos = RankSet::npos;

  ProviderIndex() = default;
  // Not copied: its cache points into its own tree (a move keeps the tree's nodes).
  ProviderIndex(const ProviderIndex&) = delete;
  ProviderIndex& operator=(const ProviderIndex&) = delete;
  ProviderIndex(ProviderIndex&&) = default;
  ProviderIndex& operator=(ProviderIndex&&) = default;

  // A class's place in the order of choice: fewer tasks held first, then more free credit.
  static std::uint64_t key(std::uint32_t used, std::uint32_t free) {
    return (std::uint64_t{used} << 32) | static_cast<std::uint32_t>(~free);
  }

  void add_open(std::uint64_t key, std::uint32_t rank) {
    Class* c = find(key);
    if (c == nullptr) {
      Classes::iterator i;
      if (spare_.empty()) {
        i = open_.try_emplace(key).first;
      } else {  // an emptied class's node, its vectors' room kept: no allocation per change
        auto node = std::move(spare_.back());
        spare_.pop_back();
        node.key() = key;
        i = open_.insert(std::move(node)).position;
      }
      c = &*i;
      hot(key) = c;
    }
    c->second.insert(rank, pages_);
  }

  void remove_open(std::uint64_t key, std::uint32_t rank) {
    Class* c = find(key);
    if (c == nullptr) return;
    c->second.erase(rank, pages_);
    if (!c->second.empty()) return;
    hot(key) = nullptr;
    // Kept for reuse, a few: a class that empties and fills again as a task is answered and
    // the next sent costs no allocation.
    auto i = open_.find(key);
    if (spare_.size() < kSpareClasses) {
      spare_.push_back(open_.extract(i));
    } else {
      open_.erase(i);
    }
  }

  void add_idle(std::uint32_t rank) { idle_.insert(rank, pages_); }
  void remove_idle(std::uint32_t rank) { idle_.erase(rank, pages_); }
  // The least rank of those holding nothing, or npos.
  std::uint32_t first_idle() const { return idle_.first(pages_); }

  // The first rank in order of choice that `accept` takes, or npos.
  template <typename Accept>
  std::uint32_t first_open(Accept accept) const {
    for (const auto& [key, ranks] : open_) {
      for (std::uint32_t r = ranks.first(pages_); r != npos; r = ranks.first(pages_, r + 1)) {
        if (accept(r)) return r;
      }
    }
    return npos;
  }

 private:
  using Classes = std::map<std::uint64_t, RankSet>;
  using Class = Classes::value_type;
  static constexpr std::size_t kSpareClasses = 8;
  static constexpr std::size_t kHot = 32;

  // The classes a task sent or answered moves providers between are few at a time, though the
  // classes may be many (every load of every capacity): those found lately are remembered by
  // their key's low bits, so that a move does not search the tree of classes.
  Class*& hot(std::uint64_t key) { return hot_[(key ^ (key >> 32)) % kHot]; }
  Class* find(std::uint64_t key) {
    Class*& h = hot(key);
    if (h != nullptr && h->first == key) return h;
    auto i = open_.find(key);
    if (i == open_.end()) return nullptr;
    h = &*i;
    return h;
  }

  RankPages pages_;
  Classes open_;  // only classes with ranks in them
  std::vector<Classes::node_type> spare_;
  std::array<Class*, kHot> hot_{};  // of open_'s entries (a node's address outlives moves)
  RankSet idle_;
};

}  // namespace seppo::broker
