// The simulator's one source of randomness. std::uniform_int_distribution and friends are not
// specified bit for bit (libstdc++ and libc++ differ, and may change), so a seed would not
// replay the same run everywhere: these tiny distributions over std::mt19937_64, whose output
// the standard does fix, do.
#pragma once

#include <cstdint>
#include <random>

namespace seppo::sim {

class Random {
 public:
  explicit Random(std::uint64_t seed) : engine_(seed) {}

  std::uint64_t next() { return engine_(); }
  // Uniform in [0, n): the modulo bias is below 2^-40 for the small n used here.
  std::uint64_t below(std::uint64_t n) { return n == 0 ? 0 : engine_() % n; }
  // Uniform in [low, high].
  std::int64_t between(std::int64_t low, std::int64_t high) {
    return high <= low
               ? low
               : low + static_cast<std::int64_t>(below(static_cast<std::uint64_t>(high - low) + 1));
  }
  // True with probability per_mille / 1000.
  bool chance(std::uint32_t per_mille) { return below(1000) < per_mille; }

 private:
  std::mt19937_64 engine_;
};

}  // namespace seppo::sim
