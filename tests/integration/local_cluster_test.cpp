// Local clusters: worker processes started and stopped by the program itself, modules found on
// SEPPO_MODULE_PATH or compiled in, no process left behind however the program ends.
#include <doctest/doctest.h>

#include <signal.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <numeric>
#include <set>
#include <sstream>
#include <thread>

#include <seppo/seppo.hpp>

#include "tests/support/cluster.hpp"

using namespace seppo;
using namespace seppo::test;
namespace fs = std::filesystem;

namespace {

std::int64_t triple(std::int64_t x) {
  return 3 * x;
}
std::int64_t whoami(std::int64_t) {
  return ::getpid();
}
std::int64_t slow_triple(std::int64_t x) {
  std::this_thread::sleep_for(std::chrono::milliseconds(2));
  return 3 * x;
}

std::string example_folder() {
  return fs::path(Paths::example_module()).parent_path().string();
}

LocalClusterOptions with_examples() {
  LocalClusterOptions options = LocalClusterOptions::from_env();
  options.module_path = example_folder();
  return options;
}

// Gone: no such process, or a zombie its (dead) parent's heir has not reaped yet.
bool gone(pid_t pid) {
  if (::kill(pid, 0) != 0) return errno == ESRCH;
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  std::string text;
  std::getline(stat, text);
  const std::size_t close = text.rfind(')');
  return close != std::string::npos && close + 2 < text.size() && text[close + 2] == 'Z';
}

bool all_gone(const std::vector<pid_t>& pids) {
  for (pid_t pid : pids) {
    if (!gone(pid)) return false;
  }
  return true;
}

// Processes running `program` (forks of it included: they share its executable).
std::vector<pid_t> processes_of(const std::string& program) {
  std::vector<pid_t> pids;
  const fs::path target = fs::canonical(program);
  for (const auto& entry : fs::directory_iterator("/proc")) {
    const std::string name = entry.path().filename().string();
    if (name.find_first_not_of("0123456789") != std::string::npos) continue;
    std::error_code error;
    const fs::path exe = fs::read_symlink(entry.path() / "exe", error);
    if (!error && exe == target && !gone(std::stoi(name))) pids.push_back(std::stoi(name));
  }
  return pids;
}

// Every process the cluster runs now: its worker manager and its workers.
std::vector<pid_t> processes_of(const LocalCluster& cluster) {
  std::vector<pid_t> pids = cluster.worker_pids();
  pids.push_back(cluster.manager_pid());
  return pids;
}

}  // namespace

SEPPO_LOCAL_MODULE(local_test, SEPPO_FUNCTION(triple), SEPPO_FUNCTION(whoami),
                   SEPPO_FUNCTION(slow_triple))

TEST_CASE("a local cluster maps over 100,000 items with a module found on SEPPO_MODULE_PATH") {
  LocalCluster cluster{2, with_examples()};
  std::vector<std::int64_t> inputs(100000);
  std::iota(inputs.begin(), inputs.end(), -50000);
  const auto out = cluster.client().map_parallel<std::int64_t>("example_module.square", inputs);
  REQUIRE(out.size() == inputs.size());
  for (std::size_t i = 0; i < inputs.size(); ++i) {
    if (out[i] != inputs[i] * inputs[i]) FAIL("item " << i << " is " << out[i]);
  }
  CHECK(cluster.worker_pids().size() == 2);
}

TEST_CASE("functions registered in the program are served by worker processes as module.function") {
  LocalCluster cluster{2};
  CHECK(cluster.worker_pids().size() == 2);  // started at once: there is something to serve
  std::vector<std::int64_t> inputs(1000);
  std::iota(inputs.begin(), inputs.end(), 0);
  const auto tripled = cluster.map_parallel<std::int64_t>("local_test.triple", inputs);
  for (std::size_t i = 0; i < inputs.size(); ++i) REQUIRE(tripled[i] == 3 * inputs[i]);
  const auto pids = cluster.map_parallel<std::int64_t>("local_test.whoami", inputs);
  const std::vector<pid_t> workers = cluster.worker_pids();
  for (std::int64_t pid : pids) {
    CHECK(pid != ::getpid());
    CHECK(std::find(workers.begin(), workers.end(), pid) != workers.end());
  }
}

TEST_CASE("a module first used while a job runs is added without losing that job's items") {
  LocalCluster cluster{2, with_examples()};
  const std::vector<pid_t> before = cluster.worker_pids();
  std::vector<std::int64_t> inputs(600);
  std::iota(inputs.begin(), inputs.end(), 0);
  std::vector<std::int64_t> slow;
  std::string slow_error;
  // About 0.6 s of work on two workers: under way when the other module is first used.
  std::thread job([&] {
    try {
      slow = cluster.map_parallel<std::int64_t>("local_test.slow_triple", inputs);
    } catch (const std::exception& e) {
      slow_error = e.what();
    }
  });
  REQUIRE(eventually([&] {
    const auto status = cluster.client().status(std::chrono::seconds(5));
    std::ostringstream text;
    text << status.get();
    return text.str().find("slow_triple") != std::string::npos;
  }));
  const auto squares =
      cluster.map_parallel<std::int64_t>("example_module.square", std::vector<int>{1, 2, 3});
  job.join();
  CHECK(squares == std::vector<std::int64_t>{1, 4, 9});
  REQUIRE(slow_error.empty());
  REQUIRE(slow.size() == inputs.size());
  for (std::size_t i = 0; i < inputs.size(); ++i) REQUIRE(slow[i] == 3 * inputs[i]);
  // The workers were replaced by ones serving both modules; the old ones have left.
  const std::vector<pid_t> after = cluster.worker_pids();
  CHECK(after.size() == 2);
  for (pid_t pid : before) CHECK(std::find(after.begin(), after.end(), pid) == after.end());
  CHECK(eventually([&] { return all_gone(before); }));
}

TEST_CASE("a module found nowhere is an UnknownFunctionError naming the folders searched") {
  LocalCluster cluster{1, with_examples()};
  const auto started = std::chrono::steady_clock::now();
  try {
    cluster.map_parallel<std::int64_t>("no_such_module.f", std::vector<int>{1});
    FAIL("no error");
  } catch (const UnknownFunctionError& e) {
    CHECK(e.function() == "no_such_module.f");
    CHECK(std::string(e.what()).find("libno_such_module.so") != std::string::npos);
    CHECK(std::string(e.what()).find(example_folder()) != std::string::npos);
  }
  // At once, not after the broker's wait for a worker.
  CHECK(std::chrono::steady_clock::now() - started < std::chrono::seconds(5));
}

TEST_CASE("a function its module lacks is an UnknownFunctionError listing the module's functions") {
  LocalCluster cluster{1, with_examples()};
  CHECK_THROWS_WITH_AS(cluster.require("example_module.cube"),
                       doctest::Contains("example_module.square"), UnknownFunctionError);
  CHECK_THROWS_WITH_AS(cluster.require("local_test.cube"), doctest::Contains("local_test.triple"),
                       UnknownFunctionError);
  // The module itself was loaded and is served.
  CHECK(cluster.map_parallel<std::int64_t>("example_module.square", std::vector<int>{4}) ==
        std::vector<std::int64_t>{16});
}

TEST_CASE("a worker that dies is replaced, and its item is reported") {
  LocalClusterOptions options = with_examples();
  options.heartbeat = std::chrono::milliseconds(100);  // deaths noticed in 0.3 s, not 3
  LocalCluster cluster{2, options};
  const auto results =
      cluster.map_results<std::int64_t>("example_module.crash", std::vector<int>{1});
  REQUIRE(results.size() == 1);
  CHECK_FALSE(results[0].ok());
  CHECK(eventually([&] { return cluster.worker_pids().size() == 2; }));
  CHECK(cluster.map_parallel<std::int64_t>("example_module.square", std::vector<int>{5}) ==
        std::vector<std::int64_t>{25});
}

TEST_CASE("leaving the scope leaves no worker process behind") {
  std::vector<pid_t> pids;
  {
    LocalCluster cluster{2, with_examples()};
    cluster.map_parallel<std::int64_t>("example_module.square", std::vector<int>{1, 2});
    pids = processes_of(cluster);
    REQUIRE(pids.size() == 3);
    for (pid_t pid : pids) REQUIRE_FALSE(gone(pid));
  }
  for (pid_t pid : pids) CHECK(gone(pid));
}

TEST_CASE("an exception leaves no worker process behind, even with tasks still running") {
  std::vector<pid_t> pids;
  LocalClusterOptions options = with_examples();
  options.stop_grace = std::chrono::milliseconds(500);
  const auto started = std::chrono::steady_clock::now();
  try {
    LocalCluster cluster{2, options};
    ClientOptions one_per_chunk;
    one_per_chunk.chunk_size = 1;
    Client client = cluster.client(one_per_chunk);
    pids = processes_of(cluster);
    // The first item fails at once; the others sleep for a minute on the workers.
    msgpack::zone zone;
    const std::vector<msgpack::object> inputs = {msgpack::object("x", zone), msgpack::object(60000),
                                                 msgpack::object(60000)};
    client.map_parallel<std::int64_t>("example_module.sleep_ms", inputs);
    FAIL("no error");
  } catch (const RemoteError& e) {
    CHECK(e.index() == 0);
  }
  for (pid_t pid : pids) CHECK(gone(pid));
  // The grace, not the sleeping tasks, bounds how long stopping takes.
  CHECK(std::chrono::steady_clock::now() - started < std::chrono::seconds(20));
}

TEST_CASE("killing the program leaves no worker process behind") {
  TempDir dir;
  Process program({SEPPO_TEST_LOCAL_PROGRAM, "hold", Paths::example_module()},
                  dir.path() / "program.log");
  std::vector<pid_t> pids;
  REQUIRE(eventually(
      [&] {
        std::istringstream lines(program.output());
        std::string line;
        while (std::getline(lines, line)) {
          if (line.rfind("pids ", 0) != 0) continue;
          std::istringstream words(line.substr(5));
          pid_t pid;
          while (words >> pid) pids.push_back(pid);
          return true;
        }
        return false;
      },
      30s));
  REQUIRE(pids.size() == 3);  // the manager and two workers
  for (pid_t pid : pids) REQUIRE_FALSE(gone(pid));
  const std::string folder = read_file(dir.path() / "program.log");
  program.kill(SIGKILL);
  program.wait();
  CHECK(eventually([&] { return all_gone(pids); }, 10s));
  // Its private folder went with them.
  const std::size_t at = folder.find("ipc://");
  REQUIRE(at != std::string::npos);
  const fs::path socket = folder.substr(at + 6, folder.find('\n', at) - at - 6);
  CHECK(eventually([&] { return !fs::exists(socket.parent_path()); }, 10s));
}

// Issue 26's status pipe, which the local cluster's keeper now reads too (issue 27): only the
// worker process itself can say "I abandoned a task, replace me"; a function's exit(75) is a
// crash, logged and counted towards the crash-loop backoff.
TEST_CASE("a function's exit(75) in a local cluster is a crash, not the worker abandoning a task") {
  const Completed r = run({SEPPO_TEST_LOCAL_PROGRAM, "exit", SEPPO_TEST_MODULE}, "", 120s);
  CHECK(r.status == 0);
  CHECK(r.out.find("failed: ") == 0);
  CHECK(r.err.find("exited with status 75; restarting it") != std::string::npos);
}

TEST_CASE("without SEPPO_BROKER the free map_parallel runs on a local cluster and says so once") {
  const Completed r = run({SEPPO_TEST_LOCAL_PROGRAM, "default"}, "", 60s,
                          {"SEPPO_MODULE_PATH=" + example_folder()});
  CHECK(r.status == 0);
  CHECK(r.out == "1 4 9 \n1 4 9 \n");
  const std::string notice =
      "seppo: no broker configured (SEPPO_BROKER is unset): running on a "
      "local cluster of ";
  const std::size_t first = r.err.find(notice);
  CHECK(first != std::string::npos);
  CHECK(r.err.find(notice, first + 1) == std::string::npos);
  // Its workers ended with it.
  CHECK(eventually([&] { return processes_of(SEPPO_TEST_LOCAL_PROGRAM).empty(); }, 10s));
}

TEST_CASE("map_parallel_serial runs the function in the calling process, results in order") {
  ::setenv("SEPPO_MODULE_PATH", example_folder().c_str(), 1);
  const auto lines =
      map_parallel_serial<std::string>("example_module.hello_world", std::vector<double>{1, 2});
  const auto pids = map_parallel_serial<std::int64_t>("local_test.whoami", std::vector<int>{0, 0});
  const auto tripled =
      map_parallel_serial<std::int64_t>("local_test.triple", std::vector<int>{1, 2, 3});
  ::unsetenv("SEPPO_MODULE_PATH");
  REQUIRE(lines.size() == 2);
  CHECK(lines[0].find("process " + std::to_string(::getpid()) + " (input=1.0") !=
        std::string::npos);
  CHECK(lines[1].find("(input=2.0") != std::string::npos);
  CHECK(pids == std::vector<std::int64_t>{::getpid(), ::getpid()});
  CHECK(tripled == std::vector<std::int64_t>{3, 6, 9});
}

TEST_CASE(
    "map_parallel_serial reports a failed item as RemoteError; map_results_serial every item") {
  ::setenv("SEPPO_MODULE_PATH", example_folder().c_str(), 1);
  const std::vector<std::int64_t> inputs = {2, 4000000000, 3};
  CHECK_THROWS_AS(map_parallel_serial<std::int64_t>("example_module.square", inputs), RemoteError);
  const auto results = map_results_serial<std::int64_t>("example_module.square", inputs);
  CHECK_THROWS_AS(map_parallel_serial<std::int64_t>("example_module.nothing", inputs),
                  UnknownFunctionError);
  ::unsetenv("SEPPO_MODULE_PATH");
  REQUIRE(results.size() == 3);
  CHECK(results[0].value() == 4);
  CHECK_FALSE(results[1].ok());
  CHECK(results[1].error().index() == 1);
  CHECK(results[1].error().remote_message().find("overflows") != std::string::npos);
  CHECK(results[2].value() == 9);
}

TEST_CASE("a client whose local cluster has stopped throws ConnectionError") {
  std::optional<Client> client;
  {
    LocalCluster cluster{1};
    client.emplace(cluster.client());
  }
  CHECK_THROWS_AS(client->map_parallel<std::int64_t>("local_test.triple", std::vector<int>{1}),
                  ConnectionError);
}

TEST_CASE("LocalClusterOptions reads SEPPO_MODULE_PATH only through from_env()") {
  // Issue 27 §5: no default member initialiser reads the environment (as ClientOptions).
  const char* old = std::getenv("SEPPO_MODULE_PATH");
  const std::string saved = old != nullptr ? old : "";
  ::setenv("SEPPO_MODULE_PATH", "/nonexistent/seppo-modules", 1);
  CHECK(LocalClusterOptions{}.module_path.empty());
  CHECK(LocalClusterOptions::from_env().module_path == "/nonexistent/seppo-modules");
  if (old != nullptr) {
    ::setenv("SEPPO_MODULE_PATH", saved.c_str(), 1);
  } else {
    ::unsetenv("SEPPO_MODULE_PATH");
  }
}
