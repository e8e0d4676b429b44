// A function that ends its worker process is a crash, whatever exit status it chooses: the
// process is restarted and the item fails as worker_lost after its attempts. Only the worker
// process itself can tell its supervisor "forbidden", "done" or "replace me" (issue 26, defect 2).
#include <doctest/doctest.h>

#include <filesystem>
#include <fstream>

#include <seppo/seppo.hpp>

#include "tests/support/cluster.hpp"

using namespace seppo;
using namespace seppo::test;

namespace {

bool worker_has_python() {
  return run({Paths::worker(), "--help"}, "", 10s).out.find("--python") != std::string::npos;
}

// A worker of four processes serving the Python module `exits` from the cluster's folder.
std::unique_ptr<Process> python_worker(Cluster& cluster, std::vector<std::string> options = {}) {
  std::ofstream(cluster.dir().path() / "exits.py") << "import os\n"
                                                      "def leave(status):\n"
                                                      "    os._exit(status)\n"
                                                      "def same(x):\n"
                                                      "    return x\n";
  std::vector<std::string> argv = {Paths::worker(),  "--broker", cluster.endpoint(), "-j",   "4",
                                   "--heartbeat-ms", "100",      "--python",         "exits"};
  argv.insert(argv.end(), options.begin(), options.end());
  return std::make_unique<Process>(
      argv, cluster.dir().path() / "python-worker.log",
      std::vector<std::string>{"SEPPO_MODULE_PATH=" + cluster.dir().path().string()});
}

// The item fails as worker_lost, and the worker keeps all its processes.
void check_crash_only(Cluster& cluster, Process& worker, const std::string& function, int status,
                      const std::string& healthy, const std::vector<int>& healthy_results) {
  Client client = cluster.client();
  const auto results = client.map_results<int>(function, std::vector<int>{status});
  REQUIRE(results.size() == 1);
  REQUIRE_FALSE(results[0].ok());
  CHECK(results[0].error().code() == "worker_lost");
  CHECK(cluster.wait_for_workers(4));
  CHECK(worker.running());
  CHECK(client.map_parallel<int>(healthy, std::vector<int>{1, 2, 3}) == healthy_results);
  const std::string log = worker.output();
  CHECK(log.find("cannot serve this broker") == std::string::npos);
  CHECK(log.find("is done") == std::string::npos);
  CHECK(log.find("a function ended the process") != std::string::npos);
}

}  // namespace

TEST_CASE("a Python function calling os._exit(78) is a crash, not the worker's 'forbidden'") {
  if (!worker_has_python()) return;
  Cluster cluster;
  auto worker = python_worker(cluster);
  REQUIRE(cluster.wait_for_workers(4));
  check_crash_only(cluster, *worker, "exits.leave", 78, "exits.same", {1, 2, 3});
}

TEST_CASE("a Python function calling os._exit(0) under --exit-when-idle is a crash, not 'done'") {
  if (!worker_has_python()) return;
  Cluster cluster;
  auto worker = python_worker(cluster, {"--exit-when-idle", "60s"});
  REQUIRE(cluster.wait_for_workers(4));
  check_crash_only(cluster, *worker, "exits.leave", 0, "exits.same", {1, 2, 3});
}

TEST_CASE("a C++ module function that exits the process is a crash, whatever its status") {
  for (const int status : {78, 75, 0}) {
    CAPTURE(status);
    Cluster cluster;
    Process& worker =
        cluster.add_worker(4, {"--module", SEPPO_TEST_MODULE, "--exit-when-idle", "60s"});
    REQUIRE(cluster.wait_for_workers(4));
    check_crash_only(cluster, worker, "test_module.exit_now", status, "test_module.poison",
                     {1, 4, 9});
  }
}
