// The programs as a user runs them: flags, exit codes, one-line errors, `seppo map`.
#include <doctest/doctest.h>

#include <signal.h>

#include "tests/support/cluster.hpp"

using namespace seppo::test;

namespace {

int lines(const std::string& text) { return static_cast<int>(std::count(text.begin(), text.end(), '\n')); }

}  // namespace

TEST_CASE("seq 1 5 | seppo map example_module.hello_world prints five results in input order") {
  Cluster cluster;
  cluster.add_worker(2);
  REQUIRE(cluster.wait_for_workers(2));
  const Completed r = run({Paths::cli(), "--broker", cluster.endpoint(), "map",
                           "example_module.hello_world"},
                          "1\n2\n3\n4\n5\n");
  REQUIRE(r.status == 0);
  CHECK(lines(r.out) == 5);
  CHECK(r.out.find("(input=1.000000, value*value=1.000000)\n") < r.out.find("(input=5.000000"));
}

TEST_CASE("seppo map reads JSON lines as values and other lines as strings, and prints JSON") {
  Cluster cluster;
  cluster.add_worker(1, {"--module", SEPPO_TEST_MODULE});
  REQUIRE(cluster.wait_for_workers(1));
  const Completed r = run({Paths::cli(), "--broker", cluster.endpoint(), "map",
                           "test_module.mirror"},
                          "{\"x\": 1.5, \"y\": 2.5, \"label\": \"p\"}\n");
  REQUIRE(r.status == 0);
  CHECK(r.out == "{\"label\":\"p'\",\"x\":2.5,\"y\":1.5}\n");
}

TEST_CASE("seppo map reports failed items on stderr and counts them in its exit status") {
  Cluster cluster;
  cluster.add_worker(1);
  REQUIRE(cluster.wait_for_workers(1));
  const Completed r = run({Paths::cli(), "--broker", cluster.endpoint(), "map",
                           "example_module.square"},
                          "1\nx\n3\ny\n");
  CHECK(r.status == 2);
  CHECK(r.out == "1\n9\n");
  CHECK(r.err.find("line 2: example_module.square: argument: expected integer, got string") !=
        std::string::npos);
}

TEST_CASE("seppo map with an unknown function fails with one line and status 255") {
  Cluster cluster;
  const Completed r = run({Paths::cli(), "--broker", cluster.endpoint(), "map", "--worker-wait",
                           "0.2", "nope.nothing"},
                          "1\n");
  CHECK(r.status == 255);
  CHECK(lines(r.err) == 1);
  CHECK(r.err.find("no worker provides nope.nothing") != std::string::npos);
}

TEST_CASE("seppo ping tells whether a broker answers") {
  Cluster cluster;
  CHECK(run({Paths::cli(), "--broker", cluster.endpoint(), "ping"}).status == 0);
  const Completed dead = run({Paths::cli(), "--broker", "tcp://127.0.0.1:1", "--timeout", "0.3", "ping"});
  CHECK(dead.status == 1);
  CHECK(dead.err.find("no reply from the broker") != std::string::npos);
}

TEST_CASE("seppo status --json lists the workers and their functions") {
  Cluster cluster;
  cluster.add_worker(1);
  REQUIRE(cluster.wait_for_workers(1));
  const Completed r = run({Paths::cli(), "--broker", cluster.endpoint(), "status", "--json"});
  REQUIRE(r.status == 0);
  CHECK(r.out.find("\"example_module.square\"") != std::string::npos);
  CHECK(r.out.find("\"workers\":[{") != std::string::npos);
}

TEST_CASE("unknown flags give a one-line error and a non-zero exit") {
  const std::vector<std::vector<std::string>> commands = {
      {Paths::broker(), "--no-such-flag"},
      {Paths::worker(), "--module", Paths::example_module(), "--no-such-flag"},
      {Paths::cli(), "ping", "--no-such-flag"}};
  for (const auto& command : commands) {
    const Completed r = run(command);
    CHECK_MESSAGE(r.status != 0, command[0]);
    CHECK_MESSAGE(r.err.find("no-such-flag") != std::string::npos, command[0]);
  }
}

TEST_CASE("a missing module file is a one-line error") {
  const Completed r = run({Paths::worker(), "--module", "/nonexistent/libnothing.so"});
  CHECK(r.status == 1);
  CHECK(lines(r.err) == 1);
  CHECK(r.err.find("cannot load module /nonexistent/libnothing.so") != std::string::npos);
}

TEST_CASE("a shared object without seppo functions is refused by name") {
  const Completed r = run({Paths::worker(), "--module", SEPPO_TEST_LIBSEPPO});
  CHECK(r.status == 1);
  CHECK(lines(r.err) == 1);
  CHECK(r.err.find("is not a seppo module") != std::string::npos);
}

TEST_CASE("every program answers --help and --version") {
  for (const std::string& program : {Paths::broker(), Paths::worker(), Paths::cli()}) {
    const Completed help = run({program, "--help"});
    CHECK_MESSAGE(help.status == 0, program);
    CHECK_MESSAGE(help.out.find("Examples:") != std::string::npos, program);
    const Completed version = run({program, "--version"});
    CHECK_MESSAGE(version.status == 0, program);
    CHECK_MESSAGE(version.out.find("0.") != std::string::npos, program);
  }
}

TEST_CASE("the broker stops cleanly on SIGTERM and SIGINT") {
  for (int signal : {SIGTERM, SIGINT}) {
    Cluster cluster;
    cluster.broker().kill(signal);
    CHECK(cluster.broker().wait(5s) == 0);
    CHECK(cluster.broker().output().find("stopped") != std::string::npos);
  }
}

TEST_CASE("a broker that cannot bind its endpoint exits with one line") {
  Cluster cluster;
  const Completed r = run({Paths::broker(), "--bind", cluster.endpoint()});
  CHECK(r.status == 1);
  CHECK(r.err.find("cannot bind " + cluster.endpoint()) != std::string::npos);
}
