// Functions the integration tests need beyond the example module: structured values, and an
// item that kills its worker while its neighbours succeed.
#include <cstdlib>
#include <map>
#include <string>
#include <vector>

#include <seppo/module.hpp>

#include "tests/modules/point.hpp"


Point mirror(Point p) { return Point{p.y, p.x, p.label + "'"}; }

std::map<std::string, std::int64_t> histogram(std::vector<std::string> words) {
  std::map<std::string, std::int64_t> counts;
  for (const auto& w : words) ++counts[w];
  return counts;
}

// Squares its input, except that a negative input kills the worker, every time.
std::int64_t poison(std::int64_t x) {
  if (x < 0) std::abort();
  return x * x;
}

SEPPO_MODULE(SEPPO_FUNCTION(mirror), SEPPO_FUNCTION(histogram), SEPPO_FUNCTION(poison))
