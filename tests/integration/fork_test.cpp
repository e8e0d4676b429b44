// Issue 26 item 11 / issue 22: a child forked after the program used seppo::Client must be able
// to exit (it used to spin at 100% CPU in zmq_ctx_term from ~Client), and must be able to use
// seppo with a Client of its own.
#include <doctest/doctest.h>

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include <seppo/seppo.hpp>

#include "tests/support/cluster.hpp"

using namespace seppo;
using namespace seppo::test;

namespace {

// "state S, in futex_wait_queue": the process's state letter (proc(5)) and its kernel wait channel.
std::string child_state(pid_t child) {
  const std::string proc = "/proc/" + std::to_string(child);
  std::string stat;
  std::string wchan;
  std::ifstream stat_file(proc + "/stat");
  std::getline(stat_file, stat);
  std::ifstream wchan_file(proc + "/wchan");
  std::getline(wchan_file, wchan);
  const auto close = stat.rfind(')');  // the command name may hold spaces
  const std::string letter = close != std::string::npos && close + 2 < stat.size()
                                 ? stat.substr(close + 2, 1)
                                 : std::string("?");
  return "state " + letter + ", in " + (wchan.empty() ? std::string("?") : wchan);
}

// The child's exit status, or -1 when it is still running after `limit` (it is then killed).
int exit_status_within(pid_t child, std::chrono::milliseconds limit) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < deadline) {
    int status = 0;
    const pid_t got = ::waitpid(child, &status, WNOHANG);
    if (got == child) return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  // What the child was doing, for the log: spinning ("R", as the old zmq_ctx_term bug) or asleep
  // on a lock ("S" in futex_wait_queue, as a lock taken by a thread fork() left behind).
  MESSAGE("the forked child " << child << " is still running: " << child_state(child));
  ::kill(child, SIGKILL);
  ::waitpid(child, nullptr, 0);
  return -1;
}

// A cluster with one worker, and a Client that has run a map on it (its context is running).
struct UsedClient {
  Cluster cluster;
  Client client = used();

  Client used() {
    cluster.add_worker(1);
    Client c = cluster.client();
    REQUIRE(c.map_parallel<std::int64_t>("example_module.square", std::vector<int>{3}) ==
            std::vector<std::int64_t>{9});
    return c;
  }
};

// GCC 12's AddressSanitizer takes no lock of its allocator around fork() (LLVM added that in
// release 17; google/sanitizers#1814): a child forked while one of the parent's ZeroMQ I/O
// threads is inside malloc waits for ever on that thread's lock, whatever the child runs. So
// under ASan a child that does not end is forked again, up to three times; a hang of seppo's
// own would hang every time. The uninstrumented build (CI runs this file there too, as the test
// integration-fork) allows no second try.
#if defined(__SANITIZE_ADDRESS__)
constexpr int kForkTries = 3;
#else
constexpr int kForkTries = 1;
#endif

// Forks; the child runs `body` and exits with what it returns (static destructors run too). The
// child's exit status, or -1 when it did not end within `limit` (on every try, as above).
int in_child(const std::function<int()>& body, std::chrono::milliseconds limit) {
  int status = -1;
  for (int attempt = 0; attempt < kForkTries && status == -1; ++attempt) {
    std::fflush(nullptr);
    const pid_t child = ::fork();
    REQUIRE(child >= 0);
    if (child == 0) {
      int code = 99;
      try {
        code = body();
      } catch (...) {
      }
      std::exit(code);
    }
    status = exit_status_within(child, limit);
    if (status == -1 && attempt + 1 < kForkTries) {
      MESSAGE("the forked child did not end within the limit; forking again (AddressSanitizer)");
    }
  }
  return status;
}

}  // namespace

TEST_CASE("a child forked after a Client was used exits at once, destroying its copy") {
  UsedClient used;
  auto job = used.client.submit<std::int64_t>("example_module.square", std::vector<int>{1, 2});
  REQUIRE(job.get() == std::vector<std::int64_t>{1, 4});
  CHECK(in_child(
            [&] {
              Client moved = std::move(used.client);  // ~Client of the parent's connection
              Client other = used.cluster.client();
              other = std::move(moved);  // move-assignment drops the child's own connection
              return 0;
            },
            std::chrono::seconds(5)) == 0);
  // The parent's connection is unharmed.
  CHECK(used.client.map_parallel<std::int64_t>("example_module.square", std::vector<int>{4}) ==
        std::vector<std::int64_t>{16});
}

TEST_CASE("a child forked after a Client was used can map with a Client of its own") {
  UsedClient used;
  CHECK(in_child(
            [&] {
              Client fresh = used.cluster.client();
              const auto out =
                  fresh.map_parallel<std::int64_t>("example_module.square", std::vector<int>{5, 6});
              return out == std::vector<std::int64_t>{25, 36} ? 0 : 2;
            },
            std::chrono::seconds(20)) == 0);
}

TEST_CASE("a Client made before fork() refuses calls in the child instead of hanging") {
  UsedClient used;
  CHECK(in_child(
            [&] {
              try {
                used.client.map_parallel<std::int64_t>("example_module.square",
                                                       std::vector<int>{5});
              } catch (const seppo::Error& e) {
                return std::string(e.what()).find("fork()") != std::string::npos ? 0 : 2;
              }
              return 1;
            },
            std::chrono::seconds(5)) == 0);
}
