// map_parallel end to end: a real broker, real worker processes, loopback TCP.
#include <doctest/doctest.h>

#include <filesystem>
#include <numeric>
#include <regex>
#include <set>

#include <seppo/seppo.hpp>

#include "tests/modules/point.hpp"
#include "tests/support/cluster.hpp"

using namespace seppo;
using namespace seppo::test;

namespace {

// Checks hello_world's five lines and returns the worker processes that wrote them.
std::set<std::string> check_hello_world_lines(const std::string& out) {
  const std::regex line(
      R"(hello world from (\S+), process (\d+) \(input=(\d)\.000000, value\*value=(\d+)\.000000\))");
  std::istringstream lines(out);
  std::string text;
  std::set<std::string> pids;
  int expected = 1;
  while (std::getline(lines, text)) {
    std::smatch m;
    REQUIRE_MESSAGE(std::regex_match(text, m, line), text);
    CHECK(std::stoi(m[3]) == expected);
    CHECK(std::stoi(m[4]) == expected * expected);
    pids.insert(m[2]);
    ++expected;
  }
  CHECK(expected == 6);
  return pids;
}

}  // namespace

TEST_CASE("hello_world prints five lines in input order, from at least two worker processes") {
  Cluster cluster;
  cluster.add_worker(2);
  REQUIRE(cluster.wait_for_workers(2));
  const Completed run =
      test::run({Paths::hello_world()}, "", 60s, {"SEPPO_BROKER=" + cluster.endpoint()});
  REQUIRE(run.status == 0);
  CHECK(check_hello_world_lines(run.out).size() >= 2);
}

TEST_CASE("hello_world with no broker configured runs on local workers and says so once") {
  const std::string folder = std::filesystem::path(Paths::example_module()).parent_path().string();
  const Completed run =
      test::run({Paths::hello_world()}, "", 60s, {"SEPPO_BROKER=", "SEPPO_MODULE_PATH=" + folder});
  REQUIRE(run.status == 0);
  check_hello_world_lines(run.out);
  CHECK(std::count(run.err.begin(), run.err.end(), '\n') == 1);
  CHECK(run.err.find("no broker configured") != std::string::npos);
}

TEST_CASE("map_parallel over 100,000 inputs returns exactly the squares, in order") {
  Cluster cluster;
  cluster.add_worker(2);
  REQUIRE(cluster.wait_for_workers(2));
  std::vector<std::int64_t> inputs(100000);
  std::iota(inputs.begin(), inputs.end(), -50000);
  Client client = cluster.client();
  const auto out = client.map_parallel<std::int64_t>("example_module.square", inputs);
  REQUIRE(out.size() == inputs.size());
  for (std::size_t i = 0; i < inputs.size(); ++i) {
    if (out[i] != inputs[i] * inputs[i]) FAIL("item " << i << " is " << out[i]);
  }
}

TEST_CASE("the free map_parallel uses SEPPO_BROKER") {
  Cluster cluster;
  cluster.add_worker(1);
  REQUIRE(cluster.wait_for_workers(1));
  ::setenv("SEPPO_BROKER", cluster.endpoint().c_str(), 1);
  const auto out = seppo::map_parallel<std::int64_t>("example_module.square", std::vector<int>{1, 2, 3});
  ::unsetenv("SEPPO_BROKER");
  CHECK(out == std::vector<std::int64_t>{1, 4, 9});
}

TEST_CASE("structs, maps, vectors and strings travel both ways") {
  Cluster cluster;
  cluster.add_worker(1, {"--module", SEPPO_TEST_MODULE});
  REQUIRE(cluster.wait_for_workers(1));
  Client client = cluster.client();
  const auto points =
      client.map_parallel<Point>("test_module.mirror", std::vector<Point>{{1, 2, "a"}, {3, 4, "b"}});
  REQUIRE(points.size() == 2);
  CHECK(points[1].x == 4);
  CHECK(points[1].y == 3);
  CHECK(points[1].label == "b'");
  using Words = std::vector<std::string>;
  const auto counts = client.map_parallel<std::map<std::string, std::int64_t>>(
      "test_module.histogram", std::vector<Words>{{"a", "b", "a"}, {}});
  CHECK(counts[0].at("a") == 2);
  CHECK(counts[1].empty());
}

TEST_CASE("a function's exception reaches the caller as RemoteError with its context") {
  Cluster cluster;
  cluster.add_worker(1);
  REQUIRE(cluster.wait_for_workers(1));
  Client client = cluster.client();
  try {
    client.map_parallel<std::string>("example_module.fail", std::vector<int>{41});
    FAIL("no exception");
  } catch (const RemoteError& e) {
    CHECK(e.function() == "example_module.fail");
    CHECK(e.index() == 0);
    CHECK(e.remote_message().find("41") != std::string::npos);
    CHECK(e.code().empty());  // the function's own error: seppo did not fail the item
    CHECK(std::regex_search(e.worker(), std::regex(R"(^\S+, process \d+$)")));
    CHECK(std::string(e.what()).find("example_module.fail: fail was called with 41") == 0);
  }
}

TEST_CASE("map_results gives every item's value or error, so one failure loses nothing") {
  Cluster cluster;
  cluster.add_worker(1);
  REQUIRE(cluster.wait_for_workers(1));
  Client client = cluster.client();
  msgpack::zone zone;
  std::vector<msgpack::object> inputs = {msgpack::object(1), msgpack::object("x", zone),
                                         msgpack::object(3)};
  const auto results = client.map_results<std::int64_t>("example_module.square", inputs);
  REQUIRE(results.size() == 3);
  CHECK(results[0].value() == 1);
  REQUIRE_FALSE(results[1].ok());
  CHECK(results[1].error().index() == 1);
  CHECK(std::string(results[1].error().what())
            .find("example_module.square: argument: expected integer, got string") == 0);
  CHECK(results[2].value() == 9);
}

TEST_CASE("a type mismatch names the expected and the received type") {
  Cluster cluster;
  cluster.add_worker(1);
  REQUIRE(cluster.wait_for_workers(1));
  Client client = cluster.client();
  REQUIRE_THROWS_WITH_AS(
      client.map_parallel<std::int64_t>("example_module.square", std::vector<std::string>{"x"}),
      doctest::Contains("example_module.square: argument: expected integer, got string"),
      RemoteError);
  // A result of the wrong type for the caller is the caller's TypeError.
  REQUIRE_THROWS_WITH_AS(
      client.map_parallel<std::string>("example_module.square", std::vector<int>{2}),
      "example_module.square: result of item 0: expected string, got integer", TypeError);
}

TEST_CASE("an unknown function is reported by name instead of waiting forever") {
  Cluster cluster;
  cluster.add_worker(1);
  REQUIRE(cluster.wait_for_workers(1));
  ClientOptions options = cluster.client_options();
  options.worker_wait = std::chrono::milliseconds(300);
  Client client(cluster.endpoint(), options);
  REQUIRE_THROWS_WITH_AS(client.map_parallel<int>("example_module.nope", std::vector<int>{1}),
                         doctest::Contains("no worker provides example_module.nope"),
                         UnknownFunctionError);
}

TEST_CASE("an unreachable broker gives ConnectionError after the timeout") {
  ClientOptions options;
  options.timeout = std::chrono::milliseconds(500);
  Client client("tcp://127.0.0.1:1", options);
  const auto started = std::chrono::steady_clock::now();
  REQUIRE_THROWS_WITH_AS(client.map_parallel<int>("example_module.square", std::vector<int>{1}),
                         doctest::Contains("no reply from the broker at tcp://127.0.0.1:1"),
                         ConnectionError);
  CHECK(std::chrono::steady_clock::now() - started < 10s);
}

TEST_CASE("an empty input gives an empty result without contacting anyone") {
  ClientOptions options;
  options.timeout = std::chrono::milliseconds(200);
  Client client("tcp://127.0.0.1:1", options);
  CHECK(client.map_parallel<int>("example_module.square", std::vector<int>{}).empty());
}

TEST_CASE("one client runs several jobs one after another") {
  Cluster cluster;
  cluster.add_worker(2);
  REQUIRE(cluster.wait_for_workers(2));
  Client client = cluster.client();
  for (int round = 1; round <= 3; ++round) {
    const auto out = client.map_parallel<std::int64_t>("example_module.square",
                                                       std::vector<int>(1000, round));
    CHECK(out == std::vector<std::int64_t>(1000, round * round));
  }
}

TEST_CASE("a client with the default heartbeat keeps its job on a broker with a faster one") {
  // Heartbeat 250 ms: a client silent for 750 ms is presumed dead, well before the default
  // client's first heartbeat at 1000 ms, yet far from the 250 ms a loaded sanitizer build can
  // take between two of its heartbeats (300 ms, with 100 ms, was not: a loaded run of the suite saw it vanish).
  Cluster cluster({"--heartbeat-ms", "250", "--liveness", "3"});
  cluster.add_worker(1);
  REQUIRE(cluster.wait_for_workers(1));
  Client client(cluster.endpoint());  // 1000 ms until the broker says otherwise
  const auto out = client.map_parallel<std::int64_t>("example_module.sleep_ms",
                                                      std::vector<std::int64_t>{1600});
  CHECK(out == std::vector<std::int64_t>{1600});
  CHECK(cluster.broker().output().find("client vanished") == std::string::npos);
}
