// Issue 25, section 2: a pair of brokers (docs/protocol.md §15). Real broker, worker and client
// processes on loopback (the HA link over ipc:// in the test's folder), default timers. The
// primary is SIGKILLed while items run: the job completes on the backup with every result
// exact, each item started once (the running work is adopted, §9.1); the primary started again
// stands by, and a second failure moves the pair back to it. With both up, one is active.
#include <doctest/doctest.h>

#include <signal.h>

#include <chrono>
#include <fstream>
#include <future>
#include <map>
#include <regex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <zmq.hpp>

#include "tests/integration/string_job.hpp"
#include "tests/support/cluster.hpp"
#include "tests/support/http.hpp"

using namespace seppo;
using namespace seppo::test;
using namespace std::chrono_literals;

namespace {

// The lines of a command's output.
std::vector<std::string> lines_of_text(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

std::string text_field(const msgpack::object& map, const std::string& name) {
  if (map.type != msgpack::type::MAP) return "";
  for (std::uint32_t i = 0; i < map.via.map.size; ++i) {
    const auto& kv = map.via.map.ptr[i];
    if (kv.key.type == msgpack::type::STR &&
        std::string(kv.key.via.str.ptr, kv.key.via.str.size) == name) {
      if (kv.val.type == msgpack::type::STR) return kv.val.as<std::string>();
      if (kv.val.type == msgpack::type::MAP) return "map";
    }
  }
  return "";
}

// A job's time with a broker killed in it (ideal 6 s) stays under this. CI runs these tests
// under AddressSanitizer on a loaded 2-core machine, where every process is several times
// slower: the figure itself is the MESSAGE, for the closing note.
#if defined(__SANITIZE_ADDRESS__)
constexpr double kJobLimit = 20.0;
#else
constexpr double kJobLimit = 10.0;
#endif

// STATUS's ha.state of the broker at `endpoint` ("active", "passive", ...), "none" without
// one, or "" when it does not answer: asked three times, each allowed 3 s, since one slow
// reply on a loaded machine is not a broker's state.
std::string ha_state(const std::string& endpoint, const ClientOptions& base) {
  for (int attempt = 0; attempt < 3; ++attempt) {
    try {
      ClientOptions options = base;
      options.timeout = 5s;
      Client client(endpoint, options);
      auto status = client.status(3s);
      const msgpack::object& map = status.get();
      for (std::uint32_t k = 0; k < map.via.map.size; ++k) {
        const auto& kv = map.via.map.ptr[k];
        if (kv.key.as<std::string>() == "ha") return text_field(kv.val, "state");
      }
      return "none";
    } catch (const Error&) {
    }
  }
  return "";
}

// Two brokers, primary and backup, with their HA link; each can be killed and started again
// on the same endpoints.
class Pair {
 public:
  // `extra`: more arguments for both brokers; `client`: how the test's own clients connect.
  explicit Pair(std::vector<std::string> extra = {}, ClientOptions client = {})
      : extra_(std::move(extra)), client_(std::move(client)) {
    ha_[0] = "ipc://" + (dir_.path() / "ha-primary").string();
    ha_[1] = "ipc://" + (dir_.path() / "ha-backup").string();
    start(0, "tcp://127.0.0.1:*");
    start(1, "tcp://127.0.0.1:*");
  }
  ~Pair() {
    workers_.clear();
    for (auto& b : brokers_) b.reset();
  }

  // "primary,backup" as clients and workers are given it.
  std::string endpoints() const { return endpoint_[0] + "," + endpoint_[1]; }
  const std::string& endpoint(int i) const { return endpoint_[i]; }
  Process& broker(int i) { return *brokers_[i]; }
  const TempDir& dir() const { return dir_; }

  void start(int i, const std::string& bind) {
    const auto log =
        dir_.path() / ("broker-" + std::to_string(i) + "-" + std::to_string(++starts_[i]) + ".log");
    std::vector<std::string> argv = {Paths::broker(),
                                     "--bind",
                                     bind,
                                     "--log-level",
                                     "debug",
                                     "--ha-role",
                                     i == 0 ? "primary" : "backup",
                                     "--ha-bind",
                                     ha_[i],
                                     "--ha-peer",
                                     ha_[1 - i]};
    argv.insert(argv.end(), extra_.begin(), extra_.end());
    brokers_[i] = std::make_unique<Process>(argv, log);
    const std::regex listening("listening on (tcp://[0-9.]+:[0-9]+)");
    std::smatch match;
    std::string text;
    REQUIRE(eventually([&] {
      text = read_file(log);
      return std::regex_search(text, match, listening) || !brokers_[i]->running();
    }));
    REQUIRE_MESSAGE(brokers_[i]->running(), text);
    endpoint_[i] = match[1];
  }
  void restart(int i) { start(i, endpoint_[i]); }
  const std::string& ha(int i) const { return ha_[i]; }
  const ClientOptions& client_options() const { return client_; }
  // The port of broker i's --http server (from its log), 0 when it has none.
  int http_port(int i) {
    const std::regex serving("serving HTTP on http://127\\.0\\.0\\.1:([0-9]+)/");
    std::smatch match;
    std::string text;
    if (!eventually([&] {
          text = brokers_[i]->output();
          return std::regex_search(text, match, serving);
        })) {
      return 0;
    }
    return std::stoi(match[1]);
  }

  // STATUS's ha.state of broker i ("active", "passive", ...), or "" when it does not answer.
  std::string state(int i) { return ha_state(endpoint_[i], client_); }

  Process& add_worker(std::vector<std::string> args) {
    const auto log = dir_.path() / ("worker-" + std::to_string(workers_.size()) + ".log");
    std::vector<std::string> argv = {Paths::worker(), "--broker", endpoints()};
    argv.insert(argv.end(), args.begin(), args.end());
    workers_.push_back(std::make_unique<Process>(argv, log));
    return *workers_.back();
  }

 private:
  std::vector<std::string> extra_;
  ClientOptions client_;
  TempDir dir_;
  std::string ha_[2], endpoint_[2];
  std::unique_ptr<Process> brokers_[2];
  int starts_[2] = {0, 0};
  std::vector<std::unique_ptr<Process>> workers_;
};

// Runs `inputs` through "item" with a client given both endpoints (in `order`).
std::vector<std::string> run_job(const std::string& endpoints,
                                 const std::vector<std::string>& inputs) {
  ClientOptions options;
  options.timeout = 30s;
  options.worker_wait = 10s;
  options.chunk_size = 1;
  Client client(endpoints, options);
  return run_string_job(client, "item", inputs);
}

// 4 items of 3 s on 2 worker processes; broker `victim` (the active one) SIGKILLed at 1.5 s.
// Returns how long the job took.
double kill_mid_job(Pair& pair, int victim, const std::filesystem::path& starts,
                    const std::vector<std::string>& inputs) {
  const auto began = std::chrono::steady_clock::now();
  auto job = std::async(std::launch::async, [&] { return run_job(pair.endpoints(), inputs); });
  REQUIRE(eventually([&] { return lines_of(starts).size() >= 2; }, 20s));
  std::this_thread::sleep_until(began + 1500ms);  // the fault's moment, not a readiness wait
  pair.broker(victim).kill(SIGKILL);
  REQUIRE(pair.broker(victim).wait(5s) == 128 + SIGKILL);
  REQUIRE(job.wait_for(40s) == std::future_status::ready);
  CHECK(job.get() == inputs);
  const double took =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - began).count();
  std::map<std::string, int> started;
  for (const std::string& line : lines_of(starts)) ++started[line];
  for (const std::string& input : inputs)
    CHECK_MESSAGE(started[input] == 1, input << " started " << started[input] << " times");
  return took;
}

}  // namespace

TEST_CASE("broker pair: with both up exactly one is active, and peers find it from either end") {
  Pair pair;
  REQUIRE(eventually([&] { return pair.state(0) == "active" && pair.state(1) == "passive"; }));
  pair.add_worker({"-j", "2", "--command", "item=echo {}"});
  // A client given the backup first is told not_active there and moves to the primary.
  const std::vector<std::string> inputs = {"a", "b", "c"};
  CHECK(run_job(pair.endpoint(1) + "," + pair.endpoint(0), inputs) == inputs);
  CHECK(run_job(pair.endpoints(), inputs) == inputs);
  // Still one active: turning to the passive one while the primary is heard changes nothing.
  CHECK(pair.state(0) == "active");
  CHECK(pair.state(1) == "passive");
  // seppo status given both shows each broker's role and state; seppo map works given both.
  const Completed status = run({Paths::cli(), "--broker", pair.endpoints(), "status"});
  CHECK(status.status == 0);
  CHECK(status.out.find("pair: primary, active; peer passive") != std::string::npos);
  CHECK(status.out.find("pair: backup, passive; peer active") != std::string::npos);
  const Completed map =
      run({Paths::cli(), "--broker", pair.endpoint(1) + "," + pair.endpoint(0), "map", "item"},
          "x\ny\n");
  CHECK(map.status == 0);
  CHECK(map.out == "x\ny\n");
}

TEST_CASE(
    "broker pair: primary SIGKILLed mid-job, the backup finishes it; back again on a second "
    "failure") {
  Pair pair;
  REQUIRE(eventually([&] { return pair.state(0) == "active" && pair.state(1) == "passive"; }));
  const auto starts = pair.dir().path() / "starts";
  pair.add_worker(
      {"-j", "2", "--command", "item=echo {} >> '" + starts.string() + "'; sleep 3; echo {}"});
  // Both worker processes registered at the primary before the job starts.
  REQUIRE(eventually([&] {
    try {
      ClientOptions options;
      Client client(pair.endpoint(0), options);
      auto status = client.status(1s);
      const msgpack::object& map = status.get();
      for (std::uint32_t k = 0; k < map.via.map.size; ++k) {
        const auto& kv = map.via.map.ptr[k];
        if (kv.key.as<std::string>() == "workers") return kv.val.via.array.size == 2;
      }
    } catch (const Error&) {
    }
    return false;
  }));
  const double first = kill_mid_job(pair, 0, starts, {"a", "b", "c", "d"});
  MESSAGE("job with the primary killed at 1.5 s took " << first << " s (ideal 6 s)");
  CHECK(first < kJobLimit);
  CHECK(pair.state(1) == "active");
  // The primary returns and stands by: no flapping back.
  pair.restart(0);
  REQUIRE(eventually([&] { return pair.state(0) == "passive"; }));
  CHECK(pair.state(1) == "active");
  // A second failure moves the pair back to the primary.
  std::filesystem::remove(starts);
  const double second = kill_mid_job(pair, 1, starts, {"e", "f", "g", "h"});
  MESSAGE("job with the backup killed at 1.5 s took " << second << " s (ideal 6 s)");
  CHECK(second < kJobLimit);
  CHECK(pair.state(0) == "active");
}

TEST_CASE(
    "broker pair: seppo ping and seppo status --json report each broker; a dead one on "
    "stderr") {
  Pair pair;
  REQUIRE(eventually([&] { return pair.state(0) == "active" && pair.state(1) == "passive"; }));
  const Completed ping = run({Paths::cli(), "--broker", pair.endpoints(), "ping"});
  CHECK(ping.status == 0);
  CHECK(ping.out.find("broker at " + pair.endpoint(0) + " is alive (primary, active)") !=
        std::string::npos);
  CHECK(ping.out.find("broker at " + pair.endpoint(1) + " is alive (backup, passive)") !=
        std::string::npos);
  pair.broker(1).kill(SIGKILL);
  REQUIRE(pair.broker(1).wait(5s) == 128 + SIGKILL);
  const Completed half =
      run({Paths::cli(), "--broker", pair.endpoints(), "--broker-timeout", "5", "ping"});
  INFO(half.out, half.err);
  CHECK(half.status == 1);
  CHECK(half.out.find("broker at " + pair.endpoint(0) + " is alive") != std::string::npos);
  CHECK(half.out.find(pair.endpoint(1)) == std::string::npos);
  CHECK(half.err.find("seppo: broker at " + pair.endpoint(1)) != std::string::npos);
  // --json: stdout stays one JSON object per line; the dead broker's error goes to stderr.
  const Completed json = run(
      {Paths::cli(), "--broker", pair.endpoints(), "--broker-timeout", "5", "status", "--json"});
  INFO(json.out, json.err);
  CHECK(json.status == 1);
  const std::vector<std::string> lines = lines_of_text(json.out);
  REQUIRE(lines.size() == 1);
  CHECK(lines[0].rfind("{", 0) == 0);
  CHECK(lines[0].back() == '}');
  CHECK(lines[0].find("\"state\":\"active\"") != std::string::npos);
  CHECK(json.err.rfind("seppo: ", 0) == 0);
}

TEST_CASE("broker pair: /metrics shows each broker's role and state (seppo_ha_state)") {
  Pair pair({"--http", "127.0.0.1:0"});
  REQUIRE(eventually([&] { return pair.state(0) == "active" && pair.state(1) == "passive"; }));
  const char* expected[2] = {"seppo_ha_state{role=\"primary\",state=\"active\",peer=\"passive\"} 1",
                             "seppo_ha_state{role=\"backup\",state=\"passive\",peer=\"active\"} 1"};
  for (int i = 0; i < 2; ++i) {
    const int port = pair.http_port(i);
    REQUIRE(port > 0);
    std::string body;
    CHECK_MESSAGE(eventually([&] {
                    const HttpReply reply = http(port, "GET /metrics HTTP/1.1");
                    body = reply.body;
                    return reply.code == 200 && body.find(expected[i]) != std::string::npos;
                  }),
                  body);
  }
}

TEST_CASE("seppo-broker refuses part of --ha-role, --ha-bind, --ha-peer, naming what is missing") {
  const std::vector<std::pair<std::vector<std::string>, std::string>> cases = {
      {{"--ha-role", "primary"}, "missing --ha-bind --ha-peer"},
      {{"--ha-bind", "ipc:///tmp/x"}, "missing --ha-role --ha-peer"},
      {{"--ha-role", "backup", "--ha-peer", "ipc:///tmp/y"}, "missing --ha-bind"},
  };
  for (const auto& [flags, missing] : cases) {
    std::vector<std::string> argv = {Paths::broker(), "--bind", "tcp://127.0.0.1:*"};
    argv.insert(argv.end(), flags.begin(), flags.end());
    const Completed broker = run(argv, "", 10s);
    INFO(broker.err);
    CHECK(broker.status == 2);  // seppo-broker(8): 2, a usage error
    CHECK(lines_of_text(broker.err).size() == 1);
    CHECK(broker.err.find(missing) != std::string::npos);
  }
}

TEST_CASE(
    "broker pair with CurveZMQ: the keyed HA link works, and state from a wrong key is "
    "ignored") {
  TempDir keys;
  for (const char* name : {"broker", "node1", "alice", "rogue"}) {
    REQUIRE(run({Paths::cli(), "keygen", (keys.path() / name).string()}).status == 0);
  }
  std::filesystem::create_directory(keys.path() / "workers");
  std::filesystem::create_directory(keys.path() / "clients");
  std::filesystem::copy_file(keys.path() / "node1.key", keys.path() / "workers" / "node1.key");
  std::filesystem::copy_file(keys.path() / "alice.key", keys.path() / "clients" / "alice.key");
  ClientOptions alice;
  alice.curve_secret_key_file = (keys.path() / "alice.key_secret").string();
  alice.curve_server_key_file = (keys.path() / "broker.key").string();
  const std::vector<std::string> keyed = {
      "--curve-secret-key",   (keys.path() / "broker.key_secret").string(),
      "--authorized-workers", (keys.path() / "workers").string(),
      "--authorized-clients", (keys.path() / "clients").string()};
  {
    // Both brokers with the pair's key: they hear each other over the keyed link.
    Pair pair(keyed, alice);
    REQUIRE(eventually([&] { return pair.state(0) == "active" && pair.state(1) == "passive"; }));
    pair.add_worker({"-j", "1", "--command", "item=echo {}", "--curve-secret-key",
                     (keys.path() / "node1.key_secret").string(), "--curve-server-key",
                     (keys.path() / "broker.key").string()});
    ClientOptions options = alice;
    options.timeout = 30s;
    options.worker_wait = 10s;
    Client client(pair.endpoints(), options);
    const std::vector<std::string> inputs = {"a", "b"};
    CHECK(run_string_job(client, "item", inputs) == inputs);
  }
  // A broker alone (its peer's HA endpoint is the test's), fed "active" by a PUB socket: under
  // another key it is never heard (the primary stays "primary": nobody turned to it); under the
  // pair's key the same message makes it passive (H5), which shows the feed itself works.
  TempDir dir;
  const std::string peer = "ipc://" + (dir.path() / "ha-peer").string();
  // A key file's key (its last line not a comment: the key, then a name in a public key's
  // file), Z85 as libzmq takes it.
  const auto key_line = [&](const std::string& file) {
    std::string key;
    for (const std::string& line : lines_of_text(read_file(keys.path() / file))) {
      if (!line.empty() && line[0] != '#') key = line.substr(0, line.find(' '));
    }
    REQUIRE(key.size() == 40);
    return key;
  };
  const auto feed = [&](const char* key_name) {
    auto context = std::make_unique<zmq::context_t>(1);
    auto pub = std::make_unique<zmq::socket_t>(*context, zmq::socket_type::pub);
    const std::string secret = key_line(std::string(key_name) + ".key_secret");
    pub->set(zmq::sockopt::curve_server, 1);
    REQUIRE(zmq_setsockopt(pub->handle(), ZMQ_CURVE_SECRETKEY, secret.c_str(), 41) == 0);
    pub->set(zmq::sockopt::linger, 0);
    pub->bind(peer);
    return std::make_pair(std::move(context), std::move(pub));
  };
  const std::string self = "ipc://" + (dir.path() / "ha-self").string();
  std::vector<std::string> argv = {
      Paths::broker(), "--bind", "tcp://127.0.0.1:*", "--ha-role", "primary",
      "--ha-bind",     self,     "--ha-peer",         peer};
  argv.insert(argv.end(), keyed.begin(), keyed.end());
  const auto log = dir.path() / "broker.log";
  Process broker(argv, log);
  const std::regex listening("listening on (tcp://[0-9.]+:[0-9]+)");
  std::smatch match;
  std::string text;
  REQUIRE(eventually([&] {
    text = read_file(log);
    return std::regex_search(text, match, listening) || !broker.running();
  }));
  const std::string endpoint = match[1];
  const auto state = [&] { return ha_state(endpoint, alice); };
  // The HA endpoint admits the pair's key only: a client's key (every client and worker holds
  // the broker's public key) is refused at the handshake and hears nothing; the pair's hears
  // the state published every 250 ms.
  const auto hears_state = [&](const char* key_name, std::chrono::milliseconds within) {
    zmq::context_t context(1);
    zmq::socket_t sub(context, zmq::socket_type::sub);
    const std::string secret = key_line(std::string(key_name) + ".key_secret");
    char public_key[41] = {};
    REQUIRE(zmq_curve_public(public_key, secret.c_str()) == 0);
    const std::string server = key_line("broker.key");
    REQUIRE(zmq_setsockopt(sub.handle(), ZMQ_CURVE_SERVERKEY, server.c_str(), 41) == 0);
    REQUIRE(zmq_setsockopt(sub.handle(), ZMQ_CURVE_PUBLICKEY, public_key, 41) == 0);
    REQUIRE(zmq_setsockopt(sub.handle(), ZMQ_CURVE_SECRETKEY, secret.c_str(), 41) == 0);
    sub.set(zmq::sockopt::linger, 0);
    sub.set(zmq::sockopt::subscribe, "");
    sub.connect(self);
    std::vector<zmq::pollitem_t> items = {{sub.handle(), 0, ZMQ_POLLIN, 0}};
    zmq::poll(items, within);
    return (items[0].revents & ZMQ_POLLIN) != 0;
  };
  CHECK(hears_state("broker", 10000ms));
  CHECK_FALSE(hears_state("alice", 3000ms));
  // The state message "active" as docs/protocol.md §15.2 writes it: the msgpack array [1, 3].
  const std::string active = "\x92\x01\x03";
  const auto publish_for = [&](zmq::socket_t& pub, std::chrono::milliseconds span,
                               const std::function<bool()>& done) {
    const auto end = std::chrono::steady_clock::now() + span;
    while (std::chrono::steady_clock::now() < end) {
      pub.send(zmq::buffer(active), zmq::send_flags::dontwait);
      if (done()) return true;
      std::this_thread::sleep_for(50ms);  // the peer's publishing interval, not a readiness wait
    }
    return false;
  };
  {
    auto [context, pub] = feed("rogue");
    // 3 s of "active" under the wrong key (three expiries): never taken in.
    CHECK_FALSE(publish_for(*pub, 3000ms, [&] { return state() == "passive"; }));
    CHECK(state() == "primary");
    CHECK(read_file(log).find("primary -> passive") == std::string::npos);
  }
  {
    auto [context, pub] = feed("broker");
    CHECK(publish_for(*pub, 10000ms, [&] { return state() == "passive"; }));
  }
}
