// The programs as a user runs them: flags, exit codes, one-line errors, `seppo map`.
#include <doctest/doctest.h>

#include <fcntl.h>
#include <poll.h>
#include <pty.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <fstream>

#include "tests/support/cluster.hpp"

using namespace seppo::test;

namespace {

int lines(const std::string& text) {
  return static_cast<int>(std::count(text.begin(), text.end(), '\n'));
}

}  // namespace

TEST_CASE("seq 1 5 | seppo map example_module.hello_world prints five results in input order") {
  Cluster cluster;
  cluster.add_worker(2);
  REQUIRE(cluster.wait_for_workers(2));
  const Completed r =
      run({Paths::cli(), "--broker", cluster.endpoint(), "map", "example_module.hello_world"},
          "1\n2\n3\n4\n5\n");
  REQUIRE(r.status == 0);
  CHECK(lines(r.out) == 5);
  CHECK(r.out.find("(input=1.000000, value*value=1.000000)\n") < r.out.find("(input=5.000000"));
}

TEST_CASE("seppo map reads JSON lines as values and other lines as strings, and prints JSON") {
  Cluster cluster;
  cluster.add_worker(1, {"--module", SEPPO_TEST_MODULE});
  REQUIRE(cluster.wait_for_workers(1));
  const Completed r =
      run({Paths::cli(), "--broker", cluster.endpoint(), "map", "test_module.mirror"},
          "{\"x\": 1.5, \"y\": 2.5, \"label\": \"p\"}\n");
  REQUIRE(r.status == 0);
  CHECK(r.out == "{\"label\":\"p'\",\"x\":2.5,\"y\":1.5}\n");
}

TEST_CASE("seppo map reports failed items on stderr and counts them in its exit status") {
  Cluster cluster;
  cluster.add_worker(1);
  REQUIRE(cluster.wait_for_workers(1));
  const Completed r =
      run({Paths::cli(), "--broker", cluster.endpoint(), "map", "example_module.square"},
          "1\nx\n3\ny\n");
  CHECK(r.status == 2);
  CHECK(r.out == "1\n9\n");
  CHECK(r.err.find("line 2: example_module.square: argument: expected integer, got string") !=
        std::string::npos);
}

TEST_CASE("seppo map with an unknown function fails with one line and status 255") {
  Cluster cluster;
  const Completed r = run(
      {Paths::cli(), "--broker", cluster.endpoint(), "map", "--worker-wait", "0.2", "nope.nothing"},
      "1\n");
  CHECK(r.status == 255);
  CHECK(lines(r.err) == 1);
  CHECK(r.err.find("no worker provides nope.nothing") != std::string::npos);
}

TEST_CASE("seppo ping tells whether a broker answers") {
  Cluster cluster;
  CHECK(run({Paths::cli(), "--broker", cluster.endpoint(), "ping"}).status == 0);
  const Completed dead =
      run({Paths::cli(), "--broker", "tcp://127.0.0.1:1", "--broker-timeout", "0.3", "ping"});
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
  // What an operator's script reads of each worker, and of each function and job.
  for (const char* field :
       {"\"host\":", "\"pid\":", "\"functions\":[", "\"busy\":", "\"tasks_done\":",
        "\"last_heard_ms\":", "\"queued\":", "\"jobs\":[", "\"protocol\":1"}) {
    CHECK_MESSAGE(r.out.find(field) != std::string::npos, field);
  }
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

namespace {

// Runs a command with stdin from `input_file`, stdout to /dev/null and stderr on a fresh
// pseudo-terminal, as a user at a terminal would see it; returns what the terminal showed.
std::string run_with_terminal_stderr(const std::vector<std::string>& argv,
                                     const std::string& input_file,
                                     std::chrono::milliseconds timeout = 30s,
                                     bool stdout_too = false) {
  int master = -1, slave = -1;
  REQUIRE(::openpty(&master, &slave, nullptr, nullptr, nullptr) == 0);
  const pid_t pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    const int in = ::open(input_file.c_str(), O_RDONLY);
    const int null = ::open("/dev/null", O_WRONLY);
    ::dup2(in, 0);
    ::dup2(stdout_too ? slave : null, 1);
    ::dup2(slave, 2);
    ::close(master);
    std::vector<char*> args;
    for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    ::execv(args[0], args.data());
    ::_exit(127);
  }
  ::close(slave);
  std::string shown;
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    pollfd p{master, POLLIN, 0};
    if (::poll(&p, 1, 100) <= 0) continue;
    char buffer[4096];
    const ssize_t n = ::read(master, buffer, sizeof buffer);
    if (n <= 0) break;  // EIO: the last holder of the terminal exited
    shown.append(buffer, static_cast<std::size_t>(n));
  }
  ::kill(pid, SIGKILL);  // a no-op when it has exited; bounded either way
  int status = 0;
  ::waitpid(pid, &status, 0);
  ::close(master);
  return shown;
}

std::string numbers(int from, int to) {
  std::string text;
  for (int i = from; i <= to; ++i) text += std::to_string(i) + "\n";
  return text;
}

std::vector<std::string> sorted_lines(const std::string& text) {
  std::vector<std::string> out;
  std::size_t start = 0;
  for (std::size_t end; (end = text.find('\n', start)) != std::string::npos; start = end + 1) {
    out.push_back(text.substr(start, end - start));
  }
  std::sort(out.begin(), out.end());
  return out;
}

}  // namespace

TEST_CASE("seppo map --unordered prints every result once, as they complete") {
  Cluster cluster;
  cluster.add_worker(2);
  REQUIRE(cluster.wait_for_workers(2));
  const Completed ordered =
      run({Paths::cli(), "--broker", cluster.endpoint(), "map", "example_module.square"},
          numbers(1, 2000));
  const Completed unordered = run(
      {Paths::cli(), "--broker", cluster.endpoint(), "map", "--unordered", "example_module.square"},
      numbers(1, 2000));
  REQUIRE(ordered.status == 0);
  REQUIRE(unordered.status == 0);
  CHECK(lines(unordered.out) == 2000);
  CHECK(sorted_lines(unordered.out) == sorted_lines(ordered.out));
}

TEST_CASE("seppo map --index prefixes each result with its line number") {
  Cluster cluster;
  cluster.add_worker(1);
  REQUIRE(cluster.wait_for_workers(1));
  // The broker option may also follow the subcommand.
  const Completed r = run({Paths::cli(), "map", "--index", "--broker", cluster.endpoint(),
                           "--unordered", "example_module.square"},
                          "3\nx\n5\n");
  CHECK(r.status == 1);
  CHECK(sorted_lines(r.out) == std::vector<std::string>{"1\t9", "3\t25"});
  CHECK(r.err.find("seppo: line 2: example_module.square:") != std::string::npos);
}

TEST_CASE("seppo map --json reads and writes JSON Lines, and a line that is not JSON fails") {
  Cluster cluster;
  cluster.add_worker(1, {"--module", SEPPO_TEST_MODULE});
  REQUIRE(cluster.wait_for_workers(1));
  const Completed r = run({Paths::cli(), "--broker", cluster.endpoint(), "map", "--json", "--index",
                           "test_module.mirror"},
                          "{\"x\": 1, \"y\": 2.5, \"label\": \"a\"}\nnot json\n"
                          "{\"x\": 3, \"y\": 4.5, \"label\": \"b\"}\n");
  CHECK(r.status == 1);
  CHECK(r.out ==
        "{\"line\":1,\"result\":{\"label\":\"a'\",\"x\":2.5,\"y\":1.0}}\n"  // Point's y is a double
        "{\"line\":3,\"result\":{\"label\":\"b'\",\"x\":4.5,\"y\":3.0}}\n");
  CHECK(r.err == "seppo: line 2: not a JSON value (--json): not json\n");
}

TEST_CASE("seppo map --raw keeps lines that look like JSON as strings; the default reads them") {
  Cluster cluster;
  cluster.add_worker(1);
  REQUIRE(cluster.wait_for_workers(1));
  const Completed typed =
      run({Paths::cli(), "--broker", cluster.endpoint(), "map", "example_module.square"}, "7\n");
  CHECK(typed.out == "49\n");
  const Completed raw =
      run({Paths::cli(), "--broker", cluster.endpoint(), "map", "--raw", "example_module.square"},
          "7\n");
  CHECK(raw.status == 1);
  CHECK(raw.err.find("line 1: example_module.square: argument: expected integer, got string") !=
        std::string::npos);
}

TEST_CASE("seppo map --input reads a file, and a missing one is a usage error") {
  Cluster cluster;
  cluster.add_worker(1);
  REQUIRE(cluster.wait_for_workers(1));
  const auto file = cluster.dir().path() / "inputs.txt";
  std::ofstream(file) << "2\n3\n";
  const Completed r = run({Paths::cli(), "--broker", cluster.endpoint(), "map", "--input",
                           file.string(), "example_module.square"});
  CHECK(r.status == 0);
  CHECK(r.out == "4\n9\n");
  const Completed missing = run({Paths::cli(), "--broker", cluster.endpoint(), "map", "--input",
                                 "/nonexistent/inputs.txt", "example_module.square"});
  CHECK(missing.status == 255);
  CHECK(missing.err.find("/nonexistent/inputs.txt") != std::string::npos);
}

TEST_CASE("seppo map | head -n 3 on a long input exits promptly and frees the broker's queue") {
  Cluster cluster;
  cluster.add_worker(2);
  REQUIRE(cluster.wait_for_workers(2));
  const std::string pipeline = "seq 1 10000000 | '" + Paths::cli() + "' --broker " +
                               cluster.endpoint() + " map example_module.square | head -n 3";
  const auto start = std::chrono::steady_clock::now();
  const Completed r = run({"/bin/sh", "-c", pipeline}, "", 60s);
  CHECK(r.status == 0);
  CHECK(r.out == "1\n4\n9\n");
  CHECK(r.err == "");  // dying of SIGPIPE is silent, as for any filter
  CHECK(std::chrono::steady_clock::now() - start < 30s);
  CHECK(eventually([&] { return cluster.queued_count() == std::optional<std::size_t>(0); }));
}

TEST_CASE("seppo map shows a progress line when stderr is a terminal, and not with --no-progress") {
  Cluster cluster;
  cluster.add_worker(2);
  REQUIRE(cluster.wait_for_workers(2));
  const auto file = cluster.dir().path() / "inputs.txt";
  std::ofstream(file) << numbers(1, 40);
  const std::vector<std::string> command = {Paths::cli(), "--broker", cluster.endpoint(), "map",
                                            "example_module.sleep_ms"};
  const std::string shown = run_with_terminal_stderr(command, file.string());
  // The final line: every item done of the 40 counted in the file, redrawn in place.
  CHECK(shown.find("\r\x1b[K40/40 100% | ") != std::string::npos);
  CHECK(shown.find("| 0 failed | 2 workers | example_module.sleep_ms") != std::string::npos);

  std::vector<std::string> quiet = command;
  quiet.insert(quiet.begin() + 4, "--no-progress");
  CHECK(run_with_terminal_stderr(quiet, file.string()) == "");
}

TEST_CASE(
    "seppo map --local runs on worker processes of its own, with modules from SEPPO_MODULE_PATH") {
  const std::string folder = std::filesystem::path(Paths::example_module()).parent_path().string();
  const std::vector<std::string> env = {"SEPPO_MODULE_PATH=" + folder, "SEPPO_BROKER="};
  const Completed r =
      run({Paths::cli(), "map", "--local=2", "example_module.square"}, numbers(1, 1000), 60s, env);
  CHECK(r.status == 0);
  CHECK(lines(r.out) == 1000);
  CHECK(r.out.substr(0, 9) == "1\n4\n9\n16\n");
  const Completed unknown = run({Paths::cli(), "map", "--local", "nomodule.fn"}, "1\n", 60s, env);
  CHECK(unknown.status == 255);
  CHECK(unknown.err.find("no folder holds libnomodule.so") != std::string::npos);
  CHECK(unknown.err.find(folder) != std::string::npos);
}

TEST_CASE(
    "seppo map --timeout through a broker fails the item that runs too long, not the others") {
  Cluster cluster;
  cluster.add_worker(2);
  REQUIRE(cluster.wait_for_workers(2));
  const Completed r = run({Paths::cli(), "--broker", cluster.endpoint(), "map", "--timeout", "0.5",
                           "example_module.sleep_ms"},
                          "5\n600000\n7\n", 30s);
  CHECK(r.status == 1);
  CHECK(r.out == "5\n7\n");
  CHECK(r.err.find("seppo: line 2: example_module.sleep_ms stopped: it ran longer than its time "
                   "limit of 0.5 s (on ") != std::string::npos);
  // The worker process that could not be interrupted was replaced: both serve again.
  CHECK(cluster.wait_for_workers(2));
}

TEST_CASE("seppo map --halt now,fail=1 through a broker cancels the item still running") {
  Cluster cluster;
  cluster.add_worker(2);
  REQUIRE(cluster.wait_for_workers(2));
  // Without the cancel the second item would run for ten minutes: run() gives up after 30 s.
  const Completed r = run({Paths::cli(), "--broker", cluster.endpoint(), "map", "--halt",
                           "now,fail=1", "example_module.sleep_ms", ":::", "600000", "x"},
                          "", 30s);
  CHECK(r.status == 1);
  CHECK(r.out.empty());
  CHECK(r.err.find("seppo: job 2: example_module.sleep_ms: argument") != std::string::npos);
}

// Issue 23: every GNU parallel option seppo map does not take is refused by its own name, with
// a pointer to docs/parallel.md: never the option parser's generic text, never run silently.
#include "cli/parallel_options.cpp"  // NOLINT: the table itself, so no row is forgotten

TEST_CASE("every refused parallel option is refused by name, pointing at docs/parallel.md") {
  int checked = 0;
  for (const seppo::cli::RefusedOption& option : seppo::cli::refused_parallel_options()) {
    std::string_view names = option.names;
    while (!names.empty()) {
      const auto bar = names.find('|');
      const std::string name(names.substr(0, bar));
      names = bar == std::string_view::npos ? std::string_view() : names.substr(bar + 1);
      // With a value after it, as most take one: the refusal comes first either way.
      const Completed r =
          run({Paths::cli(), "map", "--local", "--command", "e=echo", name, "1", "e", ":::", "a"});
      CAPTURE(name);
      CHECK(r.status == 255);
      CHECK(r.out.empty());
      CHECK(lines(r.err) == 1);
      CHECK(r.err.find("seppo map does not support " + name + ": ") != std::string::npos);
      CHECK(r.err.find("docs/parallel.md") != std::string::npos);
      ++checked;
    }
  }
  CHECK(checked > 100);
  // An option neither seppo nor parallel knows is named too.
  const Completed unknown = run({Paths::cli(), "map", "--frobnicate", "x.y"});
  CHECK(unknown.status == 255);
  CHECK(unknown.err ==
        "seppo: seppo map: no option --frobnicate (seppo map --help lists its options; GNU "
        "parallel's are in docs/parallel.md)\n");
}

TEST_CASE("--pipe, -X and -m are refused by name with what they cannot go with") {
  const std::vector<std::vector<std::string>> refused = {
      {"--pipe", "e", ":::", "a"},
      {"--pipe", "--colsep", ",", "e"},
      {"--pipe", "-0", "e"},
      {"--pipe", "--tag", "e"},
      {"--pipe", "--results", "r", "e"},
      {"--pipe", "--shuf", "e"},
      {"--block", "1k", "e"},
      {"--recend", ";", "e"},
      {"--pipe", "--block", "-1", "e"},
      {"--pipe", "--block", "1x", "e"},
      {"-X", "-N2", "e"},
      {"-m", "--colsep", ",", "e"},
      {"-X", "-m", "e"},
      {"-m", "e", ":::", "a", ":::", "b"},
  };
  for (const std::vector<std::string>& options : refused) {
    std::vector<std::string> argv = {Paths::cli(), "map", "--local", "--command", "e=cat"};
    argv.insert(argv.end(), options.begin(), options.end());
    const Completed r = run(argv, "a\n");
    CAPTURE(options);
    CHECK(r.status == 255);
    CHECK(r.out.empty());
    CHECK(lines(r.err) == 1);
  }
  const Completed function =
      run({Paths::cli(), "map", "--local", "1", "--pipe", "example_module.square"}, "1\n");
  CHECK(function.status == 255);
  CHECK(function.err.find("--pipe with a module function") != std::string::npos);
}

TEST_CASE("no template or input aborts seppo map --local: hostile ones are refused or run") {
  // Quotes of every kind, {= =}, unbalanced braces, newlines: each either runs or is refused
  // with one line (status 255), never an uncaught exception (SIGABRT, 134).
  const std::vector<std::string> templates = {"echo {= s/a/A/ =}",
                                              "echo \"{}\"",
                                              "echo '{}'",
                                              "echo {",
                                              "echo }",
                                              "echo {{}",
                                              "echo {}}",
                                              "echo {1",
                                              "echo {=",
                                              "echo =}",
                                              "echo \"",
                                              "echo '",
                                              "echo `{}`",
                                              "echo $({})",
                                              "echo ${}",
                                              "echo \\{}",
                                              "echo {}\necho {}",
                                              "echo '\n{}'",
                                              "{}",
                                              "echo {0}",
                                              "echo {-1}",
                                              "echo {99999999999999999999}",
                                              "echo {#}{%}{}",
                                              "",
                                              "echo {//}{/.}{.}{/}",
                                              "echo \"a\"{}'b'",
                                              "echo {} #{}",
                                              "echo $'{}'"};
  const std::vector<std::string> inputs = {"a", "'", "\"", "$(touch x)", "{}", "a\nb", "-n", ""};
  for (const std::string& t : templates) {
    for (const bool dry_run : {false, true}) {
      std::vector<std::string> argv = {Paths::cli(), "map", "--local", "--command", "t=" + t, "t"};
      if (dry_run) argv.insert(argv.begin() + 3, "--dry-run");
      argv.emplace_back(":::");
      argv.insert(argv.end(), inputs.begin(), inputs.end());
      const Completed r = run(argv);
      CAPTURE(t);
      CAPTURE(dry_run);
      CHECK(r.err.find("terminate called") == std::string::npos);
      CHECK(((r.status >= 0 && r.status <= 101) || r.status == 255));
    }
  }
  // A NUL byte in an input (lines on stdin): that job fails with a message, the others run.
  const Completed nul = run({Paths::cli(), "map", "--local", "--command", "e=echo {}", "e"},
                            std::string("a\nb\0c\nd\n", 8));
  CHECK(nul.status == 1);
  CHECK(nul.out == "a\nd\n");
  CHECK(nul.err.find("NUL") != std::string::npos);
  const Completed nul_dry =
      run({Paths::cli(), "map", "--local", "--dry-run", "--command", "e=echo {}", "e"},
          std::string("a\nb\0c\n", 6));
  CHECK(nul_dry.status == 1);
  CHECK(nul_dry.out == "echo a\n");
  // {= =} is refused clearly, by what it is.
  const Completed perl =
      run({Paths::cli(), "map", "--local", "--command", "e=echo {= s/a/A/ =}", "e", ":::", "a"});
  CHECK(perl.status == 255);
  CHECK(perl.err.find("{= =} is not supported") != std::string::npos);
}

TEST_CASE("--results -.csv and x.json are refused, not written under that name") {
  TempDir dir;
  for (const std::string name : {"-.csv", "-.tsv", "out.json", "OUT.JSON"}) {
    const Completed r = run({"/bin/sh", "-c",
                             "cd '" + dir.path().string() + "' && '" + Paths::cli() +
                                 "' map --local --results " + name + " --command e=echo e ::: a"});
    CAPTURE(name);
    CHECK(r.status == 255);
    CHECK(r.err.find("--results " + name + ": not supported") != std::string::npos);
    CHECK_FALSE(std::filesystem::exists(dir.path() / name));
  }
}

TEST_CASE("seppo map --local with a name that is not a module function suggests --command") {
  const Completed r = run({Paths::cli(), "map", "--local", "echo", ":::", "a"});
  CHECK(r.status == 255);
  CHECK(lines(r.err) == 1);
  CHECK(r.err.find("--local --command echo='echo {}' echo") != std::string::npos);
}

TEST_CASE("durations: seppo map --timeout takes the common grammar and never rounds to none") {
  // 0.0004 s is 1 ms, not 0 ("none"): the sleep is killed.
  const Completed tiny = run({Paths::cli(), "map", "--local", "--timeout", "0.0004", "--command",
                              "s=sleep 5; echo {}", "s", ":::", "a"},
                             "", 30s);
  CHECK(tiny.status == 1);
  CHECK(tiny.out.empty());
  const Completed ms = run({Paths::cli(), "map", "--local", "--timeout", "500ms", "--command",
                            "e=echo {}", "e", ":::", "a"});
  CHECK(ms.status == 0);
  CHECK(ms.out == "a\n");
  for (const char* bad : {"0x10", "1e3", "-1", "inf", "0", "2d"}) {
    const Completed r = run({Paths::cli(), "map", "--local", "--timeout", bad, "--command",
                             "e=echo {}", "e", ":::", "a"});
    CAPTURE(bad);
    CHECK(r.status == 255);
    CHECK(r.err.find("not a positive duration") != std::string::npos);
  }
  // The broker and the worker take the same grammar.
  const Completed broker = run({Paths::broker(), "--task-timeout", "0x10"});
  CHECK(broker.status == 2);
  CHECK(broker.err.find("not a positive duration") != std::string::npos);
  const Completed worker =
      run({Paths::worker(), "--module", Paths::example_module(), "--exit-when-idle", "0x10"});
  CHECK(worker.status == 2);
  CHECK(worker.err.find("not a duration") != std::string::npos);
}

namespace {

bool alive(pid_t pid) {
  return ::kill(pid, 0) == 0;
}

pid_t pid_in(const std::filesystem::path& file) {
  try {
    return static_cast<pid_t>(std::stol(read_file(file)));
  } catch (const std::exception&) {
    return -1;
  }
}

}  // namespace

TEST_CASE(
    "SIGTERM or Ctrl-C to seppo map through a broker cancels the job at its workers at once") {
  // The broker's default heartbeat: without the cancel it would notice the client gone only
  // after several seconds, and the command would run on until then.
  Cluster cluster(std::vector<std::string>{});
  const auto pid_file = cluster.dir().path() / "pid";
  cluster.add_worker(1, {"--command", "s=echo $$ > {}; exec sleep 60"});
  REQUIRE(cluster.wait_for_workers(1));
  for (const int signal : {SIGTERM, SIGINT}) {
    std::filesystem::remove(pid_file);
    Process map(
        {Paths::cli(), "--broker", cluster.endpoint(), "map", "s", ":::", pid_file.string()},
        cluster.dir().path() / "map.log");
    REQUIRE(eventually([&] { return pid_in(pid_file) > 0; }, 20s));
    const pid_t command = pid_in(pid_file);
    REQUIRE(alive(command));
    map.kill(signal);
    CHECK(map.wait(5s) == 128 + signal);  // it dies of the signal, as any program
    // The DONE reached the broker, which cancelled the task at the worker: the sleep is gone
    // well before the broker's presumption of a dead client (heartbeat x liveness).
    CHECK(eventually([&] { return !alive(command); }, 2s));
  }
}

TEST_CASE("SIGTERM to seppo map --local kills its commands and dies of the signal") {
  TempDir dir;
  const auto pid_file = dir.path() / "pid";
  Process map({Paths::cli(), "map", "--local", "--command", "s=echo $$ > {}; exec sleep 60", "s",
               ":::", pid_file.string()},
              dir.path() / "map.log");
  REQUIRE(eventually([&] { return pid_in(pid_file) > 0; }, 20s));
  const pid_t command = pid_in(pid_file);
  map.kill(SIGTERM);
  CHECK(map.wait(5s) == 128 + SIGTERM);
  CHECK(eventually([&] { return !alive(command); }, 2s));
}

TEST_CASE("Ctrl-C to seppo map --local --delay does not wait for the delay") {
  // Issue 23: the second job waited out its 60 s --delay before the signal took effect.
  TempDir dir;
  const auto pid_file = dir.path() / "pid";
  Process map({Paths::cli(), "map", "--local", "-j", "2", "--delay", "60s", "--command",
               "s=echo $$ > {}; exec sleep 60", "s", ":::", pid_file.string(), "second"},
              dir.path() / "map.log");
  REQUIRE(eventually([&] { return pid_in(pid_file) > 0; }, 20s));
  map.kill(SIGINT);
  CHECK(map.wait(5s) == 128 + SIGINT);
}

TEST_CASE("--delay starts --local jobs in input order, the first at once") {
  // Each job booked its start only when it reached the pacing lock, so with -j N a later input
  // could take the first turn and the first wait out the delay (CI: the pid file of the Ctrl-C
  // case above never came). Eight jobs 0.2 s apart: their starts must follow the inputs.
  TempDir dir;
  const auto log = dir.path() / "starts";
  const Completed r = run({Paths::cli(), "map", "--local", "-j", "8", "--delay", "0.2s",
                           "--command", "s=echo {} >> '" + log.string() + "'", "s", ":::", "1",
                           "2", "3", "4", "5", "6", "7", "8"},
                          "", 60s);
  REQUIRE(r.status == 0);
  CHECK(read_file(log) == "1\n2\n3\n4\n5\n6\n7\n8\n");
}

TEST_CASE("-j through a broker runs at most N items of the job at once") {
  Cluster cluster;
  const auto folder = cluster.dir().path();
  // Each item notes how many run beside it (files present while it runs).
  cluster.add_worker(
      4, {"--command", "c=touch " + folder.string() + "/run.{}; sleep 0.3; ls " + folder.string() +
                           " | grep -c '^run\\.'; rm " + folder.string() + "/run.{}"});
  REQUIRE(cluster.wait_for_workers(4));
  const Completed r = run({Paths::cli(), "--broker", cluster.endpoint(), "map", "-j", "2", "c",
                           ":::", "1", "2", "3", "4", "5", "6"},
                          "", 60s);
  CHECK(r.status == 0);
  for (const std::string& line : sorted_lines(r.out)) CHECK((line == "1" || line == "2"));
}

TEST_CASE("--bar on the terminal results print to: the progress line is cleared before a result") {
  // One item at a time, each taking longer than a redraw: the line is drawn before each result.
  const std::string shown =
      run_with_terminal_stderr({Paths::cli(), "map", "--local", "-j", "1", "--bar", "--command",
                                "s=sleep 0.4; echo {}", "s", ":::", "r1", "r2", "r3"},
                               "/dev/null", 30s, true);
  for (const std::string result : {"r1", "r2", "r3"}) {
    const auto at = shown.find(result + "\r\n");
    REQUIRE(at != std::string::npos);
    CAPTURE(shown.substr(at < 40 ? 0 : at - 40, 50));
    // Right after a clear (or at the start of a line): never after the progress line's text.
    const bool cleared = at >= 4 && shown.compare(at - 4, 4, "\r\x1b[K") == 0;
    const bool line_start = at == 0 || shown[at - 1] == '\n';
    CHECK((cleared || line_start));
  }
}
