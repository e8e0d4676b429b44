// Issue 24: what an operator sees. seppo-broker --http (/metrics, /api/status, /) and
// seppo status's running items, owners and --watch, against real broker and worker processes.
#include <doctest/doctest.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <fstream>
#include <map>
#include <regex>
#include <sstream>
#include <thread>

#include "tests/support/cluster.hpp"
#include "tests/support/http.hpp"
#include "tests/support/raw_peer.hpp"

using namespace seppo::test;

namespace {

// The port of "serving HTTP on http://127.0.0.1:PORT/" in the broker's log.
int http_port(Cluster& cluster) {
  const std::regex serving("serving HTTP on http://127\\.0\\.0\\.1:([0-9]+)/");
  std::smatch match;
  std::string text;
  REQUIRE(eventually([&] {
    text = cluster.broker().output();
    return std::regex_search(text, match, serving);
  }));
  return std::stoi(match[1]);
}

// A strict reading of the text format 0.0.4: every line a HELP, a TYPE or a sample of the
// family last typed (a histogram's _bucket, _sum and _count), label values escaped, values
// numbers. Returns the samples by "name{labels}"; fails the test on a line that is none of these.
std::map<std::string, double> parse_metrics(const std::string& text) {
  static const std::regex help("# HELP ([a-zA-Z_:][a-zA-Z0-9_:]*) .*");
  static const std::regex type("# TYPE ([a-zA-Z_:][a-zA-Z0-9_:]*) (counter|gauge|histogram)");
  static const std::regex sample(
      "([a-zA-Z_:][a-zA-Z0-9_:]*)(\\{[a-zA-Z_][a-zA-Z0-9_]*=\"(?:\\\\.|[^\"\\\\])*\""
      "(?:,[a-zA-Z_][a-zA-Z0-9_]*=\"(?:\\\\.|[^\"\\\\])*\")*\\})? "
      "([-+]?(?:[0-9]+(?:\\.[0-9]*)?(?:[eE][-+]?[0-9]+)?|Inf|NaN))");
  std::map<std::string, double> samples;
  std::string family, family_type;
  std::istringstream lines(text);
  std::string line;
  std::smatch m;
  while (std::getline(lines, line)) {
    if (std::regex_match(line, m, help)) continue;
    if (std::regex_match(line, m, type)) {
      family = m[1];
      family_type = m[2];
      continue;
    }
    REQUIRE_MESSAGE(std::regex_match(line, m, sample),
                    (std::string("not a metrics line: ") + line));
    const std::string name = m[1];
    const bool ours =
        name == family ||
        (family_type == "histogram" &&
         (name == family + "_bucket" || name == family + "_sum" || name == family + "_count"));
    CHECK_MESSAGE(ours, (std::string("sample outside its family: ") + line));
    CHECK_MESSAGE(name.rfind("seppo_", 0) == 0, line);
    samples[name + std::string(m[2])] = std::stod(m[3]);
  }
  return samples;
}

// The value of the one sample whose key starts with `prefix`; -1 when there is none.
double sample(const std::map<std::string, double>& samples, const std::string& prefix) {
  double value = -1;
  int found = 0;
  for (const auto& [key, v] : samples) {
    if (key.rfind(prefix, 0) == 0) {
      value = v;
      ++found;
    }
  }
  CHECK_MESSAGE(found <= 1, prefix);
  return value;
}

std::vector<std::string> with_http(std::vector<std::string> extra = {}) {
  std::vector<std::string> args = kFastHeartbeat;
  args.insert(args.end(), {"--http", "127.0.0.1:0"});
  args.insert(args.end(), extra.begin(), extra.end());
  return args;
}

}  // namespace

TEST_CASE("seppo-broker --http: /metrics is valid text format and counts the jobs just run") {
  Cluster cluster(with_http());
  const int port = http_port(cluster);
  cluster.add_worker(2);
  REQUIRE(cluster.wait_for_workers(2));

  std::string input;
  for (int i = 1; i <= 40; ++i) input += std::to_string(i) + "\n";
  const Completed squares = run({Paths::cli(), "--broker", cluster.endpoint(), "map",
                                 "--chunk-size", "4", "example_module.square"},
                                input);
  REQUIRE(squares.status == 0);
  // An item over its time limit: abandoned, counted as timed out and failed with `timeout`.
  const Completed late = run({Paths::cli(), "--broker", cluster.endpoint(), "map", "--timeout",
                              "0.3", "example_module.sleep_ms"},
                             "20000\n");
  CHECK(late.status == 1);

  HttpReply reply;
  std::map<std::string, double> m;
  // The snapshot is at most half a second old: wait for one taken after the second job.
  REQUIRE(eventually([&] {
    reply = http(port, "GET /metrics HTTP/1.1");
    if (reply.code != 200) return false;
    m = parse_metrics(reply.body);
    return sample(m, "seppo_items_timed_out_total{function=\"example_module.sleep_ms\"}") == 1;
  }));
  CHECK(reply.head.find("Content-Type: text/plain; version=0.0.4") != std::string::npos);
  const std::string sq = "{function=\"example_module.square\"}";
  CHECK(sample(m, "seppo_items_finished_total" + sq) == 40);
  CHECK(sample(m, "seppo_task_run_seconds_count" + sq) == 10);  // 40 items, 4 per task
  CHECK(
      sample(m, "seppo_task_run_seconds_bucket{function=\"example_module.square\",le=\"+Inf\"}") ==
      10);
  CHECK(sample(m, "seppo_task_run_seconds_sum" + sq) >= 0);
  CHECK(sample(m, "seppo_items_retried_total" + sq) == 0);
  CHECK(
      sample(m,
             "seppo_items_failed_total{function=\"example_module.sleep_ms\",reason=\"timeout\"}") ==
      1);
  // Two worker processes, though the one whose item overran may be being replaced just now.
  const double workers = sample(m, "seppo_workers{function=\"example_module.square\",host=");
  CHECK(workers >= 1);
  CHECK(workers <= 2);
  double slots = 0;
  for (const auto& [key, v] : m) {
    if (key.rfind("seppo_slots{host=", 0) == 0) slots += v;  // busy and free
  }
  CHECK(slots == workers);
  CHECK(sample(m, "seppo_build_info{version=\"") == 1);
  // The build version: the project version, then git describe's suffix when built from git.
  bool build_info = false;
  for (const auto& [key, v] : m) {
    build_info |= key.rfind("seppo_build_info{version=\"" SEPPO_VERSION, 0) == 0 &&
                  key.ends_with("\",protocol=\"1\"}") && v == 1;
  }
  CHECK(build_info);
  CHECK(sample(m, "seppo_uptime_seconds") > 0);
  CHECK(sample(m, "seppo_jobs") >= 0);
  CHECK(sample(m, "seppo_queued_tasks" + sq) == 0);
  CHECK(sample(m, "seppo_held_bytes") >= 0);

  // Prometheus' own checker, where it is installed (Debian's prometheus package ships it).
  if (::access("/usr/bin/promtool", X_OK) == 0) {
    const Completed promtool = run({"/usr/bin/promtool", "check", "metrics"}, reply.body);
    CHECK_MESSAGE(promtool.status == 0, (promtool.out + promtool.err));
    CHECK_MESSAGE(promtool.out.empty(), promtool.out);  // no lint complaints either
  } else {
    MESSAGE("promtool not installed: only the strict parser checked /metrics");
  }
  CHECK(reply.body.find("# TYPE seppo_messages_refused_total counter") != std::string::npos);
}

TEST_CASE("items a function failed count in /metrics and the finished line; worker versions") {
  Cluster cluster(with_http());
  const int port = http_port(cluster);
  cluster.add_worker(1);
  REQUIRE(cluster.wait_for_workers(1));
  // 10 items, 3 whose square overflows int64: the function throws for those, item by item.
  std::string input;
  for (int i = 1; i <= 10; ++i) input += (i % 3 == 0 ? "3037000500" : std::to_string(i)) + "\n";
  const Completed squares = run({Paths::cli(), "--broker", cluster.endpoint(), "map",
                                 "--chunk-size", "4", "example_module.square"},
                                input);
  CHECK(squares.status != 0);
  CHECK(squares.err.find("overflows int64") != std::string::npos);

  HttpReply reply;
  std::map<std::string, double> m;
  const std::string sq = "function=\"example_module.square\"";
  const bool counted = eventually([&] {
    reply = http(port, "GET /metrics HTTP/1.1");
    if (reply.code != 200) return false;
    m = parse_metrics(reply.body);
    return sample(m, "seppo_items_finished_total{" + sq + "}") == 10;
  });
  INFO(reply.body);
  REQUIRE(counted);
  CHECK(sample(m, "seppo_items_failed_total{" + sq + ",reason=\"error\"}") == 3);
  // The worker's build version, as READY carried it: the same build as the broker's.
  CHECK(sample(m, "seppo_worker_versions{version=\"" SEPPO_VERSION) == 1);
  CHECK(sample(m, "seppo_worker_versions{version=\"unknown\"}") == -1);
  const HttpReply status = http(port, "GET /api/status HTTP/1.1");
  CHECK(std::regex_search(status.body,
                          std::regex("\"workers\":\\[\\{\"name\":\"[^\"]*\",\"host\":\"[^\"]*\","
                                     "\"version\":\"" SEPPO_VERSION)));
  const std::string shown = run({Paths::cli(), "--broker", cluster.endpoint(), "status"}).out;
  CHECK(shown.find(" v" SEPPO_VERSION) != std::string::npos);
  // The job's end in the broker's log, with the items that failed.
  CHECK(eventually([&] {
    return cluster.broker().output().find(
               "(example_module.square) finished: 10 items (3 failed)") != std::string::npos;
  }));
}

TEST_CASE("seppo-broker --http: /api/status, the dashboard page, and what it refuses") {
  Cluster cluster(with_http());
  const int port = http_port(cluster);
  cluster.add_worker(1);
  REQUIRE(cluster.wait_for_workers(1));
  // A long item, so that the snapshot shows it running.
  const auto items = cluster.dir().path() / "items";
  { std::ofstream(items) << "30000\n"; }
  Process job({Paths::cli(), "--broker", cluster.endpoint(), "map", "example_module.sleep_ms"},
              cluster.dir().path() / "job.log", {}, items.string());
  HttpReply status;
  REQUIRE(eventually(
      [&] {
        status = http(port, "GET /api/status HTTP/1.1");
        return status.code == 200 && status.body.find("\"running\":[{") != std::string::npos;
      },
      20s));
  CHECK(status.head.find("Content-Type: application/json") != std::string::npos);
  for (const char* field :
       {"\"version\":\"", "\"uptime_ms\":", "\"clients\":", "\"bytes_held\":", "\"counters\":",
        "\"refused\":", "\"recent\":", "\"owner\":", "\"items_open\":", "\"elapsed_ms\":",
        "\"function\":\"example_module.sleep_ms\""}) {
    CHECK_MESSAGE(status.body.find(field) != std::string::npos, field);
  }

  const HttpReply page = http(port, "GET / HTTP/1.1");
  CHECK(page.code == 200);
  CHECK(page.head.find("text/html") != std::string::npos);
  CHECK(page.body.find("/api/status") != std::string::npos);
  // Self-contained: nothing fetched from elsewhere.
  CHECK(page.body.find("http://") == page.body.find("http://www.w3.org/2000/svg"));
  CHECK(page.body.find("https://") == std::string::npos);

  CHECK(http(port, "POST /api/status HTTP/1.1").code == 405);
  CHECK(http(port, "GET /nothing HTTP/1.1").code == 404);
  // DNS rebinding: a page of another site whose name resolves to 127.0.0.1 cannot read it.
  CHECK(http(port, "GET /api/status HTTP/1.1", "evil.example:80").code == 403);
  CHECK(http(port, "GET /api/status HTTP/1.1", "localhost:" + std::to_string(port)).code == 200);
}

TEST_CASE("seppo-broker --http: a client trickling its request holds the server 2 s at most") {
  Cluster cluster(with_http());
  const int port = http_port(cluster);
  REQUIRE(http(port, "GET /metrics HTTP/1.1").code == 200);
  // One byte every 300 ms for 6 s: each byte within any per-read timeout, the whole far past
  // the connection's 2 s.
  const int slow = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  REQUIRE(slow >= 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(static_cast<std::uint16_t>(port));
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  REQUIRE(::connect(slow, reinterpret_cast<sockaddr*>(&address), sizeof address) == 0);
  std::thread trickle([slow] {
    const std::string request = "GET /api/status HTTP/1.1\r\nHost: 127.0.0.1\r\nX: ";
    for (std::size_t i = 0; i < 20; ++i) {
      if (::send(slow, request.data() + i % request.size(), 1, MSG_NOSIGNAL) != 1) break;
      std::this_thread::sleep_for(300ms);
    }
  });
  // Connected first, the trickler is accepted first: the request below waits behind it.
  const auto asked = std::chrono::steady_clock::now();
  const HttpReply reply = http(port, "GET /metrics HTTP/1.1");
  const auto waited = std::chrono::steady_clock::now() - asked;
  trickle.join();
  ::close(slow);
  CHECK(reply.code == 200);
  CHECK(waited < 4500ms);  // served once the trickler's 2 s ran out, not after its 6 s
}

TEST_CASE("seppo-broker --http: a non-loopback address needs --http-public; a bad one is usage") {
  const Completed wide =
      run({Paths::broker(), "--bind", "tcp://127.0.0.1:0", "--http", "0.0.0.0:0"});
  CHECK(wide.status == 2);
  CHECK(wide.err.find("--http-public") != std::string::npos);
  const Completed bad = run({Paths::broker(), "--bind", "tcp://127.0.0.1:0", "--http", "nowhere"});
  CHECK(bad.status == 1);
  CHECK(bad.err.find("HOST:PORT") != std::string::npos);
}

TEST_CASE("seppo status shows the running items, the job's owner, versions and uptime") {
  // Over ipc://, where the kernel tells the broker each client's uid.
  TempDir dir;
  const std::string endpoint = "ipc://" + (dir.path() / "broker").string();
  Process broker({Paths::broker(), "--bind", endpoint, "--heartbeat-ms", "100"},
                 dir.path() / "broker.log");
  REQUIRE(eventually([&] { return broker.output().find("listening on") != std::string::npos; }));
  Process worker({Paths::worker(), "--broker", endpoint, "--module", Paths::example_module(), "-j",
                  "2", "--heartbeat-ms", "100"},
                 dir.path() / "worker.log");
  std::string out;
  REQUIRE(eventually([&] {
    return run({Paths::cli(), "--broker", endpoint, "status"}).out.find("workers: 2") !=
           std::string::npos;
  }));
  const std::string uid = "uid " + std::to_string(::geteuid());
  // Two items that stay running while we look.
  const auto items = dir.path() / "items";
  { std::ofstream(items) << "30000\n30000\n"; }
  Process busy(
      {Paths::cli(), "--broker", endpoint, "map", "--chunk-size", "1", "example_module.sleep_ms"},
      dir.path() / "busy.log", {}, items.string());
  const bool shown = eventually(
      [&] {
        out = run({Paths::cli(), "--broker", endpoint, "status"}).out;
        return out.find("running: 2") != std::string::npos;
      },
      20s);
  INFO(out, broker.output(), worker.output(), busy.output());
  REQUIRE(shown);
  CHECK(out.find("version " SEPPO_VERSION) != std::string::npos);
  CHECK(out.find(", up ") != std::string::npos);
  CHECK(out.find(uid) != std::string::npos);  // the owner
  CHECK(std::regex_search(
      out, std::regex("items 0 +.*process [0-9]+ +[0-9.]+ s  example_module.sleep_ms")));
  CHECK(std::regex_search(
      out, std::regex("items 1 +.*process [0-9]+ +[0-9.]+ s  example_module.sleep_ms")));
  CHECK(out.find("done 0/2") != std::string::npos);

  // --watch redraws: bounded by --count here, by q or Ctrl-C for a person.
  const Completed watch = run({Paths::cli(), "--broker", endpoint, "status", "--watch", "--count",
                               "3", "--interval", "0.1"});
  CHECK(watch.status == 0);
  std::size_t redraws = 0;
  for (std::size_t at = 0; (at = watch.out.find("running: 2", at)) != std::string::npos; ++at) {
    ++redraws;
  }
  CHECK(redraws == 3);
}

TEST_CASE("with CurveZMQ a job's owner is its client key's name in the authorised list") {
  TempDir keys;
  for (const char* name : {"broker", "node1", "alice"}) {
    REQUIRE(run({Paths::cli(), "keygen", (keys.path() / name).string()}).status == 0);
  }
  std::filesystem::create_directory(keys.path() / "workers");
  std::filesystem::create_directory(keys.path() / "clients");
  std::filesystem::copy_file(keys.path() / "node1.key", keys.path() / "workers" / "node1.key");
  std::filesystem::copy_file(keys.path() / "alice.key", keys.path() / "clients" / "alice.key");
  seppo::ClientOptions alice;
  alice.curve_secret_key_file = (keys.path() / "alice.key_secret").string();
  alice.curve_server_key_file = (keys.path() / "broker.key").string();
  std::vector<std::string> broker_args =
      with_http({"--curve-secret-key", (keys.path() / "broker.key_secret").string(),
                 "--authorized-workers", (keys.path() / "workers").string(), "--authorized-clients",
                 (keys.path() / "clients").string()});
  Cluster cluster(broker_args, alice,
                  {"--curve-secret-key", (keys.path() / "node1.key_secret").string(),
                   "--curve-server-key", (keys.path() / "broker.key").string()});
  const int port = http_port(cluster);
  cluster.add_worker(1);
  REQUIRE(cluster.wait_for_workers(1));
  const auto items = cluster.dir().path() / "items";
  { std::ofstream(items) << "30000\n"; }
  const std::vector<std::string> as_alice = {Paths::cli(),
                                             "--broker",
                                             cluster.endpoint(),
                                             "--curve-secret-key",
                                             alice.curve_secret_key_file,
                                             "--curve-server-key",
                                             alice.curve_server_key_file};
  std::vector<std::string> map = as_alice;
  map.insert(map.end(), {"map", "example_module.sleep_ms"});
  Process job(map, cluster.dir().path() / "job.log", {}, items.string());
  std::vector<std::string> status = as_alice;
  status.push_back("status");
  std::string out;
  const bool shown = eventually(
      [&] {
        out = run(status).out;
        return out.find("running: 1") != std::string::npos;
      },
      20s);
  INFO(out, job.output());
  REQUIRE(shown);
  CHECK(std::regex_search(out, std::regex("[0-9a-f]{8}/[0-9]+ +alice +example_module.sleep_ms")));
  CHECK(http(port, "GET /api/status HTTP/1.1").body.find("\"owner\":\"alice\"") !=
        std::string::npos);
}
