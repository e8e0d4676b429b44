// Functions the integration tests need beyond the example module: structured values, and an
// item that kills its worker while its neighbours succeed.
#include <chrono>
#include <cstdlib>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include <unistd.h>

#include <seppo/module.hpp>

#include "tests/modules/point.hpp"

Point mirror(Point p) {
  return Point{p.y, p.x, p.label + "'"};
}

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

// Squares its input after a millisecond: items long enough for a kill to land mid-task, with
// results that tell one item from another.
std::int64_t slow_square(std::int64_t x) {
  std::this_thread::sleep_for(std::chrono::milliseconds(1));
  return x * x;
}

// Ends the worker process with the given status, as a function calling exit would: a crash,
// whichever status it picks (issue 26, defect 2).
std::int64_t exit_now(std::int64_t status) {
  ::_exit(static_cast<int>(status));
}

// Issue 22: any value back unchanged (type and value cross C++ exactly), and a float result
// that is a whole number for even inputs (4.0 / 2 must arrive as the float 2.0, not the int 2).
// Named to sort after mirror: reload_test expects "added swap.exit_now, swap.histogram,
// swap.mirror" at the start of its list.
msgpack::object same(msgpack::object value) {
  return value;
}

double over_two(double x) {
  return x / 2;
}

// Issue 22: a numpy float64 array (msgpack ext 3) arrives as the std::vector<double> it holds.
double total(std::vector<double> xs) {
  double sum = 0;
  for (double x : xs) sum += x;
  return sum;
}

SEPPO_MODULE(SEPPO_FUNCTION(mirror), SEPPO_FUNCTION(histogram), SEPPO_FUNCTION(poison),
             SEPPO_FUNCTION(slow_square), SEPPO_FUNCTION(same), SEPPO_FUNCTION(over_two),
             SEPPO_FUNCTION(exit_now), SEPPO_FUNCTION(total))
