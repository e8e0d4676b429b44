// Issue 26 item 11 / issue 22: a child forked after the program used seppo::Client must be able
// to exit (it used to spin at 100% CPU in zmq_ctx_term from ~Client), and must be able to use
// seppo with a Client of its own.
#include <doctest/doctest.h>

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include <seppo/seppo.hpp>

#include "tests/support/cluster.hpp"

using namespace seppo;
using namespace seppo::test;

namespace {

// The child's exit status, or -1 when it is still running after `limit` (it is then killed).
int exit_status_within(pid_t child, std::chrono::milliseconds limit) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < deadline) {
    int status = 0;
    const pid_t got = ::waitpid(child, &status, WNOHANG);
    if (got == child) return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  ::kill(child, SIGKILL);
  ::waitpid(child, nullptr, 0);
  return -1;
}

}  // namespace

TEST_CASE("a child forked after a Client was used exits at once, destroying its copy") {
  Cluster cluster;
  cluster.add_worker(1);
  Client client = cluster.client();
  REQUIRE(client.map_parallel<std::int64_t>("example_module.square", std::vector<int>{3}) ==
          std::vector<std::int64_t>{9});
  auto job = client.submit<std::int64_t>("example_module.square", std::vector<int>{1, 2});
  REQUIRE(job.get() == std::vector<std::int64_t>{1, 4});
  std::fflush(nullptr);
  const pid_t child = ::fork();
  REQUIRE(child >= 0);
  if (child == 0) {
    {
      Client moved = std::move(client);  // ~Client of the parent's connection, in the child
      Client other = cluster.client();
      other = std::move(moved);  // move-assignment drops the child's own connection
    }
    std::exit(0);  // static destructors too
  }
  CHECK(exit_status_within(child, std::chrono::seconds(5)) == 0);
  // The parent's connection is unharmed.
  CHECK(client.map_parallel<std::int64_t>("example_module.square", std::vector<int>{4}) ==
        std::vector<std::int64_t>{16});
}

TEST_CASE("a child forked after a Client was used can map with a Client of its own") {
  Cluster cluster;
  cluster.add_worker(1);
  Client client = cluster.client();
  REQUIRE(client.map_parallel<std::int64_t>("example_module.square", std::vector<int>{3}) ==
          std::vector<std::int64_t>{9});
  std::fflush(nullptr);
  const pid_t child = ::fork();
  REQUIRE(child >= 0);
  if (child == 0) {
    int status = 1;
    try {
      Client fresh = cluster.client();
      const auto out =
          fresh.map_parallel<std::int64_t>("example_module.square", std::vector<int>{5, 6});
      status = out == std::vector<std::int64_t>{25, 36} ? 0 : 2;
    } catch (...) {
      status = 3;
    }
    std::exit(status);
  }
  CHECK(exit_status_within(child, std::chrono::seconds(20)) == 0);
}

TEST_CASE("a Client made before fork() refuses calls in the child instead of hanging") {
  Cluster cluster;
  cluster.add_worker(1);
  Client client = cluster.client();
  REQUIRE(client.map_parallel<std::int64_t>("example_module.square", std::vector<int>{3}) ==
          std::vector<std::int64_t>{9});
  std::fflush(nullptr);
  const pid_t child = ::fork();
  REQUIRE(child >= 0);
  if (child == 0) {
    int status = 1;
    try {
      client.map_parallel<std::int64_t>("example_module.square", std::vector<int>{5});
    } catch (const seppo::Error& e) {
      status = std::string(e.what()).find("fork()") != std::string::npos ? 0 : 2;
    }
    std::exit(status);
  }
  CHECK(exit_status_within(child, std::chrono::seconds(5)) == 0);
}
