// seppo-roundtrip ENDPOINT FUNCTION SAMPLES: one-item map_parallel round trips from the C++
// client, printing the median in microseconds. bench/python_bench.py runs it against the same
// broker and workers as the Python client, so the two medians compare like for like.
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include <seppo/seppo.hpp>

int main(int argc, char** argv) {
  if (argc != 4) {
    std::fprintf(stderr, "usage: seppo-roundtrip ENDPOINT FUNCTION SAMPLES\n");
    return 2;
  }
  seppo::Client client{argv[1]};
  const int samples = std::atoi(argv[3]);
  std::vector<double> us;
  for (int i = 0; i < samples + 20; ++i) {
    const auto start = std::chrono::steady_clock::now();
    const std::vector<std::int64_t> one{i};
    (void)client.map_parallel<std::int64_t>(argv[2], one);
    const std::chrono::duration<double, std::micro> took = std::chrono::steady_clock::now() - start;
    if (i >= 20) us.push_back(took.count());  // the first calls warm up the connection
  }
  std::sort(us.begin(), us.end());
  std::printf("%.1f\n", us[us.size() / 2]);
}
