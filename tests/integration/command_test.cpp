// Named shell commands end to end: seppo-worker --command, a real broker, `seppo map` and the C++
// client, with file names a shell would misread.
#include <doctest/doctest.h>

#include <signal.h>

#include <algorithm>
#include <filesystem>
#include <fstream>

#include <seppo/seppo.hpp>
#include "seppo/msgpack.hpp"

#include "tests/support/cluster.hpp"

using namespace seppo;
using namespace seppo::test;

namespace {

// A worker serving only the given commands: no module at all.
std::unique_ptr<Process> command_worker(Cluster& cluster, const std::vector<std::string>& commands,
                                        const std::string& log_name = "command-worker.log",
                                        const std::vector<std::string>& options = {}) {
  std::vector<std::string> argv = {Paths::worker(),  "--broker", cluster.endpoint(), "-j",   "1",
                                   "--heartbeat-ms", "100",      "--log-level",      "debug"};
  argv.insert(argv.end(), options.begin(), options.end());
  for (const std::string& c : commands) {
    argv.push_back("--command");
    argv.push_back(c);
  }
  return std::make_unique<Process>(argv, cluster.dir().path() / log_name);
}

void write_file(const std::filesystem::path& path, const std::string& text) {
  std::ofstream(path, std::ios::binary) << text;
}

}  // namespace

TEST_CASE("a named command maps file names with spaces and quotes, results in input order") {
  Cluster cluster;
  const auto dir = cluster.dir().path() / "photos";
  std::filesystem::create_directories(dir);
  // Every name here would run something, or split in two, if it reached the shell unquoted.
  const std::vector<std::string> names = {
      "plain.jpg",          "with space.jpg",         "it's \"x\".jpg",
      "$(touch pwned).jpg", "`touch pwned2`; ls.jpg", "tab\there.jpg"};
  std::string input;
  for (const std::string& name : names) {
    write_file(dir / name, "pixels of " + name);
    input += (dir / name).string() + "\n";
  }
  auto worker = command_worker(cluster, {"copy=cp -- {} {.}.bak && printf %s {/.}"});
  REQUIRE(cluster.wait_for_workers(1));

  const Completed r = run({Paths::cli(), "--broker", cluster.endpoint(), "map", "copy"}, input);
  CHECK_MESSAGE(r.status == 0, r.err);
  std::string expected;
  for (const std::string& name : names) {
    const std::string stem = name.substr(0, name.size() - 4);
    expected += stem + "\n";
    CHECK(read_file(dir / (stem + ".bak")) == "pixels of " + name);
  }
  CHECK(r.out == expected);
  CHECK_FALSE(std::filesystem::exists(cluster.dir().path() / "pwned"));
  CHECK_FALSE(std::filesystem::exists("pwned"));
  CHECK_FALSE(std::filesystem::exists("pwned2"));
}

TEST_CASE("a named command's non-zero exit is an error for that item, with status and stderr") {
  Cluster cluster;
  const auto dir = cluster.dir().path();
  write_file(dir / "full.txt", "data");
  write_file(dir / "empty.txt", "");
  auto worker = command_worker(
      cluster, {"check=test -s {} || { echo {/} is empty >&2; exit 3; }; printf 'ok %s' {/}"});
  REQUIRE(cluster.wait_for_workers(1));

  const std::string input = (dir / "full.txt").string() + "\n" + (dir / "empty.txt").string() +
                            "\n" + (dir / "full.txt").string() + "\n";
  const Completed r = run({Paths::cli(), "--broker", cluster.endpoint(), "map", "check"}, input);
  CHECK(r.status == 1);  // one failed item
  CHECK(r.out == "ok full.txt\nok full.txt\n");
  CHECK_MESSAGE(r.err.find("line 2: check: command check exited with status 3: empty.txt is "
                           "empty (on ") != std::string::npos,
                r.err);

  // From C++ the same item is a RemoteError naming the status; the others are values.
  Client client = cluster.client();
  const auto results = client.map_results<std::string>(
      "check", std::vector<std::string>{(dir / "empty.txt").string(), (dir / "full.txt").string()});
  REQUIRE(results.size() == 2);
  REQUIRE_FALSE(results[0].ok());
  CHECK(std::string(results[0].error().what()).find("exited with status 3: empty.txt is empty") !=
        std::string::npos);
  CHECK(results[1].value() == "ok full.txt");
}

TEST_CASE("a named command killed by a signal fails its item; numbers arrive as text") {
  Cluster cluster;
  auto worker = command_worker(cluster, {"half=test {} -lt 0 && kill -9 $$; expr {} / 2"});
  REQUIRE(cluster.wait_for_workers(1));
  Client client = cluster.client();
  const auto results = client.map_results<std::string>("half", std::vector<int>{10, -4, 7});
  REQUIRE(results.size() == 3);
  CHECK(results[0].value() == "5");
  REQUIRE_FALSE(results[1].ok());
  CHECK(std::string(results[1].error().what()).find("command half killed by signal 9 (SIGKILL)") !=
        std::string::npos);
  CHECK(results[2].value() == "3");
  // The worker survived its command's death and still serves.
  CHECK(client.map_parallel<std::string>("half", std::vector<int>{8}) ==
        std::vector<std::string>{"4"});
}

TEST_CASE("a client can run only the commands a worker's operator named") {
  Cluster cluster;
  auto worker = command_worker(cluster, {"upper=printf %s {} | tr a-z A-Z"});
  REQUIRE(cluster.wait_for_workers(1));
  for (const char* name : {"sh", "/bin/sh", "upper; id", "printf %s {}"}) {
    CAPTURE(name);
    const Completed r = run(
        {Paths::cli(), "--broker", cluster.endpoint(), "map", "--worker-wait", "0.2", name}, "x\n");
    CHECK(r.status == 255);
    CHECK(r.err.find("no worker provides") != std::string::npos);
  }
  const Completed ok =
      run({Paths::cli(), "--broker", cluster.endpoint(), "map", "upper"}, "abc; id\n");
  CHECK(ok.status == 0);
  CHECK(ok.out == "ABC; ID\n");

  const Completed status = run({Paths::cli(), "--broker", cluster.endpoint(), "status", "--json"});
  CHECK(status.out.find("\"upper\"") != std::string::npos);
}

TEST_CASE("a worker serves modules and commands together; bad --command options stop it") {
  Cluster cluster;
  cluster.add_worker(1, {"--command", "twice=echo {} {}"});
  REQUIRE(cluster.wait_for_workers(1));
  Client client = cluster.client();
  CHECK(client.map_parallel<std::string>("twice", std::vector<std::string>{"a"}) ==
        std::vector<std::string>{"a a"});
  CHECK(client.map_parallel<std::int64_t>("example_module.square", std::vector<int>{3}) ==
        std::vector<std::int64_t>{9});

  const auto refused = [&](std::vector<std::string> args) {
    args.insert(args.begin(), {Paths::worker(), "--broker", cluster.endpoint()});
    return run(args, "", 10s);
  };
  const Completed clash =
      refused({"--module", Paths::example_module(), "--command", "example_module.square=echo"});
  CHECK(clash.status == 2);
  CHECK(clash.err.find("--command example_module.square: that name is already served") !=
        std::string::npos);
  const Completed twice = refused({"--command", "a=echo", "--command", "a=true"});
  CHECK(twice.status == 2);
  const Completed bad_name = refused({"--command", "two words=echo"});
  CHECK(bad_name.status == 2);
  CHECK(bad_name.err.find("the name must be") != std::string::npos);
  const Completed perl = refused({"--command", "n=echo {= 1 =}"});
  CHECK(perl.status == 2);
  CHECK(perl.err.find("{= =} is not supported") != std::string::npos);
  // Issue 15: a template that runs its input as code is refused with one line saying why.
  const Completed shell = refused({"--command", "run=sh -c {}"});
  CHECK(shell.status == 2);
  CHECK(shell.err.find("sh -c {} runs the input as code") != std::string::npos);
  CHECK(shell.err.find("--allow-any-command") != std::string::npos);
  CHECK(std::count(shell.err.begin(), shell.err.end(), '\n') == 1);
  const Completed nothing = refused({});
  CHECK(nothing.status == 2);
  CHECK(nothing.err.find("give at least one --module, --python or --command") != std::string::npos);
}

TEST_CASE("a worker stopped with SIGTERM finishes its running command and returns the result") {
  // The broker's default heartbeat: with the fast one, `seppo map` currently loses a job whose
  // item runs longer than 300 ms (its job is dropped as silent), which is not this test's subject.
  Cluster cluster(std::vector<std::string>{});
  const auto marker = cluster.dir().path() / "started";
  auto worker = command_worker(cluster, {"slow=touch {}; sleep 1; echo finished"});
  REQUIRE(cluster.wait_for_workers(1));
  const auto input = cluster.dir().path() / "input.txt";
  write_file(input, marker.string() + "\n");
  Process map({Paths::cli(), "--broker", cluster.endpoint(), "map", "slow"},
              cluster.dir().path() / "map.log", {}, input.string());
  REQUIRE(eventually([&] { return std::filesystem::exists(marker); }));
  worker->kill(SIGTERM);
  CHECK(worker->wait(20s) == 0);
  CHECK(map.wait(20s) == 0);
  CHECK(map.output().find("finished\n") != std::string::npos);
}

TEST_CASE("inputs reach here-documents and quoted templates as data, never as shell code") {
  // Issue 26, defect 3: these templates passed the old start-up check and ran `$(touch F)`.
  Cluster cluster;
  const std::string f = (cluster.dir().path() / "F").string();
  auto worker = command_worker(cluster, {"note=cat <<EOF\nnote: {}\nEOF",
                                         "dq=printf '%s\\n' \"[{}]\"", "sq=printf '<%s>' '{}'"});
  REQUIRE(cluster.wait_for_workers(1));
  const std::vector<std::string> inputs = {"$(touch " + f + ")", "`touch " + f + "`",
                                           "; touch " + f, "'; touch " + f + " #",
                                           "\"; touch " + f + " #"};
  std::string lines;
  for (const std::string& input : inputs) lines += input + "\n";
  for (const auto& [name, shape] : std::vector<std::pair<std::string, std::string>>{
           {"note", "note: %"}, {"dq", "[%]"}, {"sq", "<%>"}}) {
    CAPTURE(name);
    const Completed r =
        run({Paths::cli(), "--broker", cluster.endpoint(), "map", name}, lines, 30s);
    CHECK_MESSAGE(r.status == 0, r.err);
    std::string expected;
    for (const std::string& input : inputs) {
      const auto at = shape.find('%');
      expected += shape.substr(0, at) + input + shape.substr(at + 1) + "\n";
    }
    CHECK(r.out == expected);
  }
  CHECK_FALSE(std::filesystem::exists(f));
  // trap runs its argument as code: the lint names it, as it does eval.
  const Completed trap = run(
      {Paths::worker(), "--broker", cluster.endpoint(), "--command", "t=trap {} EXIT"}, "", 10s);
  CHECK(trap.status == 2);
  CHECK(trap.err.find("trap runs the input as shell code") != std::string::npos);
}

namespace {

// A request item (docs/protocol.md §5.2) with a folder of the client's choosing.
struct FolderRequest {
  std::vector<std::string> args;
  std::string cwd;
  MSGPACK_DEFINE_MAP(args, cwd);
};

}  // namespace

TEST_CASE("--client-folders refuses a relative folder or one with a NUL as the item's error") {
  // Issue 26, defect 9: "tmp" and "/tmp\0/etc" both ran the command in /tmp.
  Cluster cluster;
  auto worker = command_worker(cluster, {"where=pwd; : {}"}, "folders.log", {"--client-folders"});
  REQUIRE(cluster.wait_for_workers(1));
  Client client = cluster.client();
  const std::vector<FolderRequest> requests = {
      {{"x"}, "/tmp"}, {{"x"}, "tmp"}, {{"x"}, std::string("/tmp\0/etc", 9)}, {{"x"}, "./"}};
  const auto results = client.map_results<std::string>("where", requests);
  REQUIRE(results.size() == 4);
  CHECK(results[0].value() == "/tmp");
  REQUIRE_FALSE(results[1].ok());
  CHECK(results[1].error().remote_message().find("\"tmp\" is relative") != std::string::npos);
  REQUIRE_FALSE(results[2].ok());
  CHECK(results[2].error().remote_message().find("holds a NUL byte") != std::string::npos);
  REQUIRE_FALSE(results[3].ok());
  CHECK(results[3].error().remote_message().find("must be an absolute path") != std::string::npos);
}

TEST_CASE("an item ends with its shell, even when it left a process in a session of its own") {
  // Issue 26, defect 10: `setsid sleep 25 &` held the item until the sleep ended.
  Cluster cluster;
  const auto pid_file = cluster.dir().path() / "escaped.pid";
  auto worker = command_worker(cluster, {"bg=setsid sh -c 'echo $$ > " + pid_file.string() +
                                         "; exec sleep 300' & "
                                         "while [ ! -s " +
                                         pid_file.string() + " ]; do sleep 0.01; done; echo {}"});
  REQUIRE(cluster.wait_for_workers(1));
  // Bounded well below the sleep: with the old code this run timed out.
  const Completed r = run({Paths::cli(), "--broker", cluster.endpoint(), "map", "bg"}, "x\n", 60s);
  CHECK_MESSAGE(r.status == 0, r.err);
  CHECK(r.out == "x\n");
  // And the escaped process is gone with the item.
  const pid_t escaped = std::stoi(read_file(pid_file));
  CHECK(eventually([&] { return ::kill(escaped, 0) != 0; }));
}

TEST_CASE("the shell that runs templates: --shell for a worker, parallel's rule for --local") {
  // Issue 23, item 3.
  Cluster cluster;
  auto worker = command_worker(cluster,
                               {"glob=[[ {} == a* ]] && echo yes || echo no", "brace=echo {1,2} {}",
                                "esc=echo -e 'a\\tb' {}"},
                               "shell.log", {"--shell", "/bin/bash"});
  REQUIRE(cluster.wait_for_workers(1));
  const auto broker_map = [&](const std::string& name, const std::string& input) {
    return run({Paths::cli(), "--broker", cluster.endpoint(), "map", name}, input, 30s).out;
  };
  CHECK(broker_map("glob", "ab\nba\na*\n") == "yes\nno\nyes\n");
  CHECK(broker_map("brace", "x\n") == "1 2 x\n");
  CHECK(broker_map("esc", "x\n") == "a\tb x\n");

  const auto local = [&](const std::string& shell, const std::string& tmpl) {
    return run({Paths::cli(), "map", "--local", "--command", "t=" + tmpl, "t", ":::", "ab", "ba"},
               "", 30s, {"PARALLEL_SHELL=" + shell});
  };
  CHECK(local("/bin/bash", "[[ {} == a* ]] && echo yes || echo no").out == "yes\nno\n");
  CHECK(local("/bin/bash", "echo {1,2} {}").out == "1 2 ab\n1 2 ba\n");
  CHECK(local("/bin/sh", "echo {1,2} {}").out == "{1,2} ab\n{1,2} ba\n");
  // Byte for byte with GNU parallel under the same shell, where it is installed.
  if (::access("/usr/bin/parallel", X_OK) == 0) {
    for (const std::string tmpl :
         {"[[ {} == a* ]] && echo yes || echo no", "echo {1,2} {}", "echo -e 'a\\tb' {}"}) {
      CAPTURE(tmpl);
      const Completed parallel =
          run({"/usr/bin/parallel", "--will-cite", "-k", tmpl, ":::", "ab", "ba"}, "", 60s,
              {"PARALLEL_SHELL=/bin/bash"});
      CHECK(local("/bin/bash", tmpl).out == parallel.out);
    }
  }
}
