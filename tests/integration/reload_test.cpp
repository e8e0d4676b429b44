// seppo-worker reloads its modules on SIGHUP: new functions are announced, nothing running is lost.
#include <doctest/doctest.h>

#include <signal.h>

#include <filesystem>
#include <fstream>
#include <future>
#include <sstream>

#include "tests/support/cluster.hpp"

using namespace seppo::test;

namespace {

std::string status_json(Cluster& cluster) {
  return run({Paths::cli(), "--broker", cluster.endpoint(), "status", "--json"}, "", 10s).out;
}

}  // namespace

TEST_CASE("SIGHUP makes seppo-worker serve a replaced module while a running job completes") {
  Cluster cluster;
  const auto module = cluster.dir().path() / "libswap.so";
  std::filesystem::copy_file(Paths::example_module(), module);
  Process& worker = cluster.add_worker(2, {"--module", module.string()});
  REQUIRE(cluster.wait_for_workers(2));
  REQUIRE(status_json(cluster).find("swap.square") != std::string::npos);

  // A job on the module that stays, long enough to be running while the processes are replaced.
  std::ostringstream input;
  for (int i = 1; i <= 60; ++i) input << 20 + i % 3 << "\n";
  auto job = std::async(std::launch::async, [&] {
    return run({Paths::cli(), "--broker", cluster.endpoint(), "map", "example_module.sleep_ms"},
               input.str(), 60s);
  });
  REQUIRE(eventually([&] { return cluster.busy_count().value_or(0) > 0; }));

  // Swapped as a package manager would: a new file renamed over the old one.
  const auto fresh = cluster.dir().path() / "libswap.so.new";
  std::filesystem::copy_file(SEPPO_TEST_MODULE, fresh);
  std::filesystem::rename(fresh, module);
  worker.kill(SIGHUP);

  CHECK(eventually(
      [&] {
        const std::string json = status_json(cluster);
        return json.find("swap.mirror") != std::string::npos &&
               json.find("swap.square") == std::string::npos;
      },
      30s));
  const Completed done = job.get();
  CHECK(done.status == 0);
  CHECK(done.out == input.str());  // sleep_ms returns its input: all 60, in order, once each
  CHECK(worker.running());         // SIGHUP no longer kills it (exit 129)
  CHECK(cluster.wait_for_workers(2));
  const std::string log = worker.output();
  CHECK(log.find("modules reloaded: added swap.exit_now, swap.histogram, swap.mirror") !=
        std::string::npos);
  CHECK(log.find("removed ") != std::string::npos);
}

TEST_CASE("SIGHUP with a module that no longer loads keeps the running worker processes") {
  Cluster cluster;
  const auto module = cluster.dir().path() / "libswap.so";
  std::filesystem::copy_file(Paths::example_module(), module);
  Process& worker = cluster.add_worker(1, {"--module", module.string()});
  REQUIRE(cluster.wait_for_workers(1));
  std::filesystem::remove(module);
  worker.kill(SIGHUP);
  CHECK(
      eventually([&] { return worker.output().find("keeping the running") != std::string::npos; }));
  CHECK(worker.running());
  CHECK(status_json(cluster).find("swap.square") != std::string::npos);
}

TEST_CASE("SIGHUP reloads --python modules: added functions are announced, a broken one is kept") {
  // Issue 26, defect 4: an added function was never announced, and a module with a syntax error
  // replaced every process, whose items then all failed with "cannot import".
  if (run({Paths::worker(), "--help"}, "", 10s).out.find("--python") == std::string::npos) return;
  Cluster cluster;
  const auto module = cluster.dir().path() / "reloaded.py";
  const auto write_module = [&](const std::string& text) {
    const auto fresh = cluster.dir().path() / "reloaded.py.new";
    std::ofstream(fresh) << text;
    std::filesystem::rename(fresh, module);
    // A stale bytecode cache must not stand for the new file.
    std::filesystem::remove_all(cluster.dir().path() / "__pycache__");
  };
  write_module("def double(x):\n    return 2 * x\n");
  Process worker({Paths::worker(), "--broker", cluster.endpoint(), "-j", "2", "--heartbeat-ms",
                  "100", "--python", "reloaded"},
                 cluster.dir().path() / "python-worker.log",
                 {"SEPPO_MODULE_PATH=" + cluster.dir().path().string()});
  REQUIRE(cluster.wait_for_workers(2));
  seppo::Client client = cluster.client();
  CHECK(client.map_parallel<int>("reloaded.double", std::vector<int>{1, 2}) ==
        std::vector<int>{2, 4});

  write_module("def double(x):\n    return 2 * x\ndef triple(x):\n    return 3 * x\n");
  worker.kill(SIGHUP);
  CHECK(eventually([&] {
    return worker.output().find("modules reloaded: added reloaded.triple") != std::string::npos;
  }));
  CHECK(eventually(
      [&] { return status_json(cluster).find("reloaded.triple") != std::string::npos; }, 30s));
  CHECK(client.map_parallel<int>("reloaded.triple", std::vector<int>{1, 2}) ==
        std::vector<int>{3, 6});

  write_module("def double(x):\n    return 2 *\n");  // a syntax error
  worker.kill(SIGHUP);
  CHECK(eventually([&] {
    return worker.output().find(
               "keeping the running processes: cannot import Python module "
               "reloaded") != std::string::npos;
  }));
  CHECK(worker.running());
  CHECK(cluster.wait_for_workers(2));
  std::vector<int> many(8, 5);
  CHECK(client.map_parallel<int>("reloaded.triple", many) == std::vector<int>(8, 15));
  CHECK(worker.output().find("replacing worker process") != std::string::npos);  // once, above

  // A module whose import hangs froze the supervisor in discover(): no restarts, no SIGTERM.
  // Now the reading child is killed at its deadline (30 s) and the reload refused.
  write_module("import time\ntime.sleep(600)\ndef double(x):\n    return 2 * x\n");
  worker.kill(SIGHUP);
  CHECK(eventually(
      [&] {
        return worker.output().find(
                   "keeping the running processes: --python reloaded: importing "
                   "it took longer than 30 s") != std::string::npos;
      },
      60s));
  CHECK(worker.running());
  CHECK(client.map_parallel<int>("reloaded.triple", many) == std::vector<int>(8, 15));
}
