// seppo-maprate ENDPOINT|local FUNCTION N REPEAT: the C++ client's map_parallel over the int64s
// 0..N-1, printing the items/s of the fastest of REPEAT runs (after a warm-up of 1,000 items).
// With `local`, the client is a seppo::LocalCluster of 2 (no broker; SEPPO_MODULE_PATH says where
// the module is), the C++ counterpart of multiprocessing.Pool(2); otherwise a Client of the
// broker at ENDPOINT. bench/python_bench.py runs it next to Pool(2).map of the same square, in
// the same run (issue 28's "C++ client vs Pool(2).map" target). Each result is checked.
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <numeric>
#include <optional>
#include <string>
#include <vector>

#include <seppo/seppo.hpp>

int main(int argc, char** argv) {
  if (argc != 5) {
    std::fprintf(stderr, "usage: seppo-maprate ENDPOINT|local FUNCTION N REPEAT\n");
    return 2;
  }
  const std::string where = argv[1];
  const std::string function = argv[2];
  const auto n = static_cast<std::size_t>(std::atoll(argv[3]));
  const int repeat = std::max(1, std::atoi(argv[4]));
  try {
    std::optional<seppo::LocalCluster> local;
    std::optional<seppo::Client> client;
    if (where == "local") {
      local.emplace(2);
      client.emplace(local->client());
    } else {
      client.emplace(where);
    }
    std::vector<std::int64_t> inputs(n);
    std::iota(inputs.begin(), inputs.end(), std::int64_t{0});
    const std::vector<std::int64_t> warm(inputs.begin(),
                                         inputs.begin() + std::min<std::size_t>(n, 1000));
    (void)client->map_parallel<std::int64_t>(function, warm);
    double best = 0;
    for (int r = 0; r < repeat; ++r) {
      const auto start = std::chrono::steady_clock::now();
      const auto out = client->map_parallel<std::int64_t>(function, inputs);
      const std::chrono::duration<double> took = std::chrono::steady_clock::now() - start;
      for (std::size_t i = 0; i < n; ++i) {
        if (out.at(i) != inputs[i] * inputs[i]) {
          std::fprintf(stderr, "seppo-maprate: wrong result at %zu\n", i);
          return 1;
        }
      }
      best = std::max(best, static_cast<double>(n) / took.count());
    }
    std::printf("%.1f\n", best);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "seppo-maprate: %s\n", e.what());
    return 1;
  }
}
