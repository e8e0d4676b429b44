// The broker's flat record maps (broker/id_map.hpp, broker/stable_id_map.hpp) against
// std::unordered_map under the same random operations: any difference is a lost or invented
// task record.
#include <doctest/doctest.h>

#include <algorithm>
#include <cstdint>
#include <random>
#include <string>
#include <unordered_map>
#include <vector>

#include "broker/id_map.hpp"
#include "broker/stable_id_map.hpp"

using seppo::broker::IdMap;
using seppo::broker::IdSet;
using seppo::broker::StableIdMap;

namespace {

// Keys from a narrow range (collisions and long probe runs, deletions that wrap around the
// table's end) or spread over all 64 bits, including 0 and the largest.
std::uint64_t pick_key(std::mt19937_64& random, bool narrow) {
  if (narrow) return random() % 64;
  switch (random() % 4) {
    case 0:
      return 0;
    case 1:
      return ~std::uint64_t{0};
    default:
      return random();
  }
}

}  // namespace

template <typename Map>
void check_against_unordered_map() {
  for (int seed = 1; seed <= 40; ++seed) {
    std::mt19937_64 random(seed);
    const bool narrow = seed % 2 == 0;
    Map map;
    std::unordered_map<std::uint64_t, std::uint64_t> model;
    for (int step = 0; step < 4000; ++step) {
      const std::uint64_t key = pick_key(random, narrow);
      switch (random() % 5) {
        case 0:
        case 1: {
          const auto [it, inserted] = map.emplace(key, step);
          const bool model_inserted = model.emplace(key, step).second;
          REQUIRE(inserted == model_inserted);
          REQUIRE(it->first == key);
          REQUIRE(it->second == model.at(key));
          break;
        }
        case 2:
          map[key] += 1, model[key] += 1;
          break;
        case 3:
          REQUIRE(map.erase(key) == model.erase(key));
          break;
        default: {
          auto it = map.find(key);
          if (it != map.end()) {
            map.erase(it);
            model.erase(key);
          } else {
            REQUIRE(model.count(key) == 0);
          }
        }
      }
      REQUIRE(map.size() == model.size());
    }
    std::unordered_map<std::uint64_t, std::uint64_t> walked;
    for (const auto& [key, value] : map) REQUIRE(walked.emplace(key, value).second);
    CHECK(walked == model);
    for (const auto& [key, value] : model) CHECK(map.find(key)->second == value);
  }
}

TEST_CASE("an IdMap holds what an unordered_map holds after any mix of inserts and erases") {
  check_against_unordered_map<IdMap<std::uint64_t>>();
  // The keyed hash for keys a client chooses: the same map, other homes.
  check_against_unordered_map<IdMap<std::uint64_t, seppo::broker::Keys::Theirs>>();
}

TEST_CASE("keys chosen to collide under the fixed hash are still found, and erased") {
  // k * inverse(multiplier) all share one home under the fixed hash; a client could send such
  // chunk firsts. The keyed map must hold them as any others.
  std::uint64_t inverse = 1;
  for (int i = 0; i < 6; ++i) inverse *= 2 - 0x9e3779b97f4a7c15ull * inverse;  // Newton, mod 2^64
  REQUIRE(inverse * 0x9e3779b97f4a7c15ull == 1);
  IdMap<std::uint32_t, seppo::broker::Keys::Theirs> map;
  for (std::uint32_t k = 0; k < 2000; ++k) map.emplace(k * inverse, k);
  CHECK(map.size() == 2000);
  // Spread, not one run of 2,000 slots that every operation walks: the longest run of
  // occupied slots, which under the fixed hash (checked beside) is all of them.
  const auto longest_run = [](const auto& m) {
    std::size_t longest = 0, run = 0, last = 0;
    bool any = false;
    for (auto i = m.begin(); i != m.end(); ++i) {
      run = any && i.index() == last + 1 ? run + 1 : 1;
      longest = std::max(longest, run);
      last = i.index();
      any = true;
    }
    return longest;
  };
  IdMap<std::uint32_t> fixed;
  for (std::uint32_t k = 0; k < 2000; ++k) fixed.emplace(k * inverse, k);
  CHECK(longest_run(fixed) == 2000);
  CHECK(longest_run(map) < 100);
  for (std::uint32_t k = 0; k < 2000; k += 2) CHECK(map.erase(k * inverse) == 1);
  for (std::uint32_t k = 1; k < 2000; k += 2) CHECK(map.find(k * inverse)->second == k);
}

TEST_CASE("an IdSet counts each id once and forgets erased ones") {
  IdSet set;
  CHECK(set.insert(7));
  CHECK_FALSE(set.insert(7));
  CHECK(set.insert(0));
  CHECK(set.size() == 2);
  CHECK(set.erase(7) == 1);
  CHECK(set.erase(7) == 0);
  std::vector<std::uint64_t> ids;
  for (std::uint64_t id : set) ids.push_back(id);
  CHECK(ids == std::vector<std::uint64_t>{0});
}

TEST_CASE("a StableIdMap keeps each record in place while others come and go, and rekeys") {
  StableIdMap<std::string> map;
  std::string& first = map[1];
  first = "one";
  for (std::uint64_t id = 2; id < 2000; ++id) map[id] = std::to_string(id);
  for (std::uint64_t id = 2; id < 2000; id += 2) CHECK(map.erase(id) == 1);
  for (std::uint64_t id = 5000; id < 6000; ++id) map[id] = "again";
  CHECK(&map.at(1) == &first);  // references held across inserts stay valid
  CHECK(first == "one");
  CHECK(map.size() == 1 + 999 + 1000);
  CHECK(map.find(2) == map.end());
  CHECK(map.find(3)->second == "3");
  CHECK(map.rekey(3, 9000));
  CHECK_FALSE(map.rekey(3, 9001));     // no record under 3 any more
  CHECK_FALSE(map.rekey(9000, 5000));  // 5000 is taken: nothing moves
  CHECK(map.at(9000) == "3");
  CHECK(map.count(3) == 0);
  CHECK_THROWS_AS(map.at(3), std::out_of_range);
  // An erased record's buffers go at once; a place taken again starts from a fresh record.
  map.erase(map.find(9000));
  CHECK(map[9002].empty());
}

TEST_CASE("a StableIdMap emptied gives its blocks back and starts again") {
  StableIdMap<std::string> map;
  for (std::uint64_t id = 0; id < 1000; ++id) map[id] = "x";
  for (std::uint64_t id = 0; id < 1000; ++id) map.erase(id);
  CHECK(map.empty());
  map[42] = "y";
  CHECK(map.size() == 1);
  CHECK(map.at(42) == "y");
}
