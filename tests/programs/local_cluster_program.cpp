// A program using libseppo with no broker, for tests that must watch it from outside:
//   local-cluster-program hold MODULE_FILE   starts a LocalCluster, maps once, prints its
//                                            endpoint and "pids MANAGER WORKER...", then
//                                            waits to be killed
//   local-cluster-program default            maps twice with the free seppo::map_parallel
//   local-cluster-program exit MODULE_FILE   maps MODULE.exit_now over {75} on one worker and
//                                            prints how the item ended (the manager logs)
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <iostream>
#include <thread>

#include <seppo/seppo.hpp>

int main(int argc, char** argv) {
  if (argc == 3 && std::strcmp(argv[1], "hold") == 0) {
    seppo::LocalClusterOptions options = seppo::LocalClusterOptions::from_env();
    options.modules = {argv[2]};
    seppo::LocalCluster cluster{2, options};
    const auto out =
        cluster.map_parallel<std::int64_t>("example_module.square", std::vector<int>{1, 2, 3});
    if (out != std::vector<std::int64_t>{1, 4, 9}) return 1;
    std::cout << cluster.endpoint() << "\n";
    std::cout << "pids " << cluster.manager_pid();
    for (pid_t pid : cluster.worker_pids()) std::cout << " " << pid;
    std::cout << std::endl;
    // Not waiting for anything: the test kills this process.
    std::this_thread::sleep_for(std::chrono::seconds(60));
    return 2;
  }
  if (argc == 2 && std::strcmp(argv[1], "default") == 0) {
    for (int i = 0; i < 2; ++i) {
      const auto out =
          seppo::map_parallel<std::int64_t>("example_module.square", std::vector<int>{1, 2, 3});
      for (std::int64_t y : out) std::cout << y << " ";
      std::cout << "\n";
    }
    return 0;
  }
  if (argc == 3 && std::strcmp(argv[1], "exit") == 0) {
    seppo::LocalClusterOptions options = seppo::LocalClusterOptions::from_env();
    options.modules = {argv[2]};
    seppo::LocalCluster cluster{1, options};
    try {
      cluster.map_parallel<std::int64_t>("test_module.exit_now", std::vector<int>{75});
      std::cout << "returned\n";
    } catch (const std::exception& e) {
      std::cout << "failed: " << e.what() << "\n";
    }
    return 0;
  }
  std::cerr << "usage: local-cluster-program hold MODULE_FILE | default | exit MODULE_FILE\n";
  return 2;
}
