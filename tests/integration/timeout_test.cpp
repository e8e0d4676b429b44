// Nothing held for ever (issue 12, cases 1, 2 and 13): an item past its time limit, items
// queued behind a hung one, a crashed worker, a cancelled job. Real broker and worker processes
// on loopback; each wait is bounded, and the bounds are far below what the old rules needed.
#include <doctest/doctest.h>

#include <future>

#include "tests/support/cluster.hpp"

using namespace seppo;
using namespace seppo::test;

namespace {

constexpr std::int64_t kForever = 100000000;  // ms: 28 hours

ClientOptions with_item_timeout(const Cluster& cluster, std::chrono::milliseconds limit) {
  ClientOptions options = cluster.client_options();
  options.item_timeout = limit;
  return options;
}

}  // namespace

TEST_CASE(
    "an item over its time limit fails with timeout, the others complete, the worker is replaced") {
  Cluster cluster;
  cluster.add_worker(2);
  REQUIRE(cluster.wait_for_workers(2));
  Client client(cluster.endpoint(), with_item_timeout(cluster, 500ms));
  auto job = client.submit<std::int64_t>("example_module.sleep_ms",
                                         std::vector<std::int64_t>{10, kForever, 20, 30});
  REQUIRE(job.wait_for(20s));
  const auto results = job.results();
  REQUIRE(results.size() == 4);
  CHECK(results[0].value() == 10);
  REQUIRE_FALSE(results[1].ok());
  CHECK(results[1].error().remote_message().find("ran longer than 0.5 s") != std::string::npos);
  CHECK(results[1].error().code() == "timeout");
  CHECK(results[2].value() == 20);
  CHECK(results[3].value() == 30);
  // The process that ran it was replaced; the next job is served by both.
  REQUIRE(cluster.wait_for_workers(2));
  Client next = cluster.client();
  CHECK(next.map_parallel<std::int64_t>("example_module.square", std::vector<std::int64_t>{3}) ==
        std::vector<std::int64_t>{9});
}

TEST_CASE("a command over the broker's --task-timeout is killed, and its worker keeps serving") {
  std::vector<std::string> broker = kFastHeartbeat;
  broker.insert(broker.end(), {"--task-timeout", "500ms"});
  Cluster cluster(broker);
  cluster.add_worker(1, {"--command", "nap=sleep {}"});
  REQUIRE(cluster.wait_for_workers(1));
  Client client = cluster.client();
  auto job = client.submit<std::string>("nap", std::vector<std::string>{"100000", "0.01"});
  REQUIRE(job.wait_for(20s));
  const auto results = job.results();
  REQUIRE(results.size() == 2);
  REQUIRE_FALSE(results[0].ok());
  CHECK(results[0].error().remote_message().find("ran longer than 0.5 s") != std::string::npos);
  CHECK(results[0].error().code() == "timeout");
  CHECK(results[1].value() == "");
  CHECK(cluster.worker_count() == 1u);
}

TEST_CASE("items waiting behind a hung item at one worker are taken back and run by another") {
  std::future<std::size_t> finished;  // outlives the cluster: if it hangs, the client times out
  Cluster cluster;
  cluster.add_worker(1, {"--prefetch", "4"});
  cluster.add_worker(1, {"--prefetch", "4"});
  REQUIRE(cluster.wait_for_workers(2));
  std::vector<std::int64_t> inputs(21, 100);
  inputs[0] = kForever;
  finished = std::async(std::launch::async, [endpoint = cluster.endpoint(),
                                             options = cluster.client_options(), inputs] {
    Client client(endpoint, options);
    std::size_t short_ones = 0;
    for (const auto& item :
         client.imap_unordered<std::int64_t>("example_module.sleep_ms", inputs)) {
      if (item.index != 0 && item.value == 100 && ++short_ones == 20) break;
    }
    return short_ones;
  });
  REQUIRE(finished.wait_for(15s) == std::future_status::ready);
  CHECK(finished.get() == 20);
}

TEST_CASE("a worker that crashes is noticed when its connection closes, not at heartbeat expiry") {
  // Heartbeats of 5 s: expiry alone would need 15 s per crash, 135 s for these 9 crashes.
  Cluster cluster({"--heartbeat-ms", "5000", "--liveness", "3"});
  cluster.add_worker(2);
  REQUIRE(cluster.wait_for_workers(2));
  Client client = cluster.client();
  auto job =
      client.submit<std::int64_t>("example_module.crash", std::vector<std::int64_t>{1, 2, 3});
  REQUIRE(job.wait_for(30s));
  const auto results = job.results();
  REQUIRE(results.size() == 3);
  for (std::size_t i = 0; i < 3; ++i) {
    REQUIRE_FALSE(results[i].ok());
    CHECK(results[i].error().remote_message() ==
          "worker lost while running example_module.crash on item " + std::to_string(i) +
              ", 3 attempts");
    CHECK(results[i].error().code() == "worker_lost");
  }
}

TEST_CASE("a cancelled job's running item is abandoned: its worker is free again at once") {
  Cluster cluster;
  cluster.add_worker(1);
  REQUIRE(cluster.wait_for_workers(1));
  Client client = cluster.client();
  auto job =
      client.submit<std::int64_t>("example_module.sleep_ms", std::vector<std::int64_t>{kForever});
  REQUIRE(eventually([&] { return cluster.busy_count() == 1u; }));
  job.cancel();
  REQUIRE(job.wait_for(5s));
  // The process running it is replaced; the new one holds nothing.
  CHECK(eventually([&] { return cluster.worker_count() == 1u && cluster.busy_count() == 0u; }, 5s));
  Client next = cluster.client();
  CHECK(next.map_parallel<std::int64_t>("example_module.square", std::vector<std::int64_t>{4}) ==
        std::vector<std::int64_t>{16});
}
