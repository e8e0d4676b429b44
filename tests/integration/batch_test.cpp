// What batch jobs rely on: the broker says where it listens, workers size themselves to their
// allocation and leave when the work is done.
#include <doctest/doctest.h>

#include <signal.h>

#include <filesystem>

#include "tests/support/cluster.hpp"

using namespace seppo::test;

TEST_CASE("seppo-broker --endpoint-file holds the port it chose, and is removed when it stops") {
  TempDir dir;
  const auto file = dir.path() / "endpoint";
  Process broker({Paths::broker(), "--bind", "tcp://127.0.0.1:0", "--endpoint-file", file.string()},
                 dir.path() / "broker.log");
  REQUIRE(eventually([&] { return std::filesystem::exists(file); }));
  const std::string endpoint = read_file(file);
  CHECK(endpoint.rfind("tcp://127.0.0.1:", 0) == 0);
  CHECK(endpoint.find("tcp://127.0.0.1:0\n") == std::string::npos);
  CHECK(run({Paths::cli(), "--broker", endpoint.substr(0, endpoint.find('\n')), "ping"}).status ==
        0);
  broker.kill(SIGTERM);
  CHECK(broker.wait() == 0);
  CHECK(!std::filesystem::exists(file));
}

TEST_CASE("seppo-worker under taskset -c 0 starts one process, which leaves when idle (exit 0)") {
  Cluster cluster;
  Process worker({"/usr/bin/taskset", "-c", "0", Paths::worker(), "--broker", cluster.endpoint(),
                  "--module", Paths::example_module(), "--exit-when-idle", "500ms"},
                 cluster.dir().path() / "idle-worker.log");
  CHECK(worker.wait(20s) == 0);
  CHECK(worker.output().find("started 1 worker processes") != std::string::npos);
  CHECK(worker.output().find("ms; leaving") != std::string::npos);
}

TEST_CASE("seppo-worker takes no more processes than SLURM_CPUS_ON_NODE allows") {
  Cluster cluster;
  Process worker({Paths::worker(), "--broker", cluster.endpoint(), "--module",
                  Paths::example_module(), "--exit-when-idle", "300ms"},
                 cluster.dir().path() / "slurm-worker.log", {"SLURM_CPUS_ON_NODE=1"});
  CHECK(worker.wait(20s) == 0);
  CHECK(worker.output().find("started 1 worker processes") != std::string::npos);
}

TEST_CASE("workers with --exit-when-idle leave when the broker says BYE") {
  Cluster cluster;
  Process& worker = cluster.add_worker(2, {"--exit-when-idle", "60s"});
  REQUIRE(cluster.wait_for_workers(2));
  cluster.broker().kill(SIGTERM);
  CHECK(worker.wait(20s) == 0);
  CHECK(worker.output().find("broker is shutting down; stopping") != std::string::npos);
}

TEST_CASE("seppo-worker --exit-when-idle refuses what is not a duration") {
  const Completed r =
      run({Paths::worker(), "--module", Paths::example_module(), "--exit-when-idle", "soon"});
  CHECK(r.status == 2);
  CHECK(r.err.find("not a duration") != std::string::npos);
}
