// Secure by default (issue 4): CurveZMQ keys and roles, what a refused peer sees, exposure
// rules, reloading the key lists, and the per-client limit, with real processes.
#include <doctest/doctest.h>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <future>
#include <mutex>
#include <thread>

#include "tests/modules/point.hpp"
#include "tests/support/cluster.hpp"

using namespace seppo;
using namespace seppo::test;
namespace fs = std::filesystem;

namespace {

int lines(const std::string& text) {
  return static_cast<int>(std::count(text.begin(), text.end(), '\n'));
}

void write(const fs::path& path, const std::string& text) { std::ofstream(path) << text; }

// Key pairs made with `seppo keygen`: the broker's, a worker host's, three users' (admin is
// what the cluster's own status probes use), and a stranger's. node1 is authorised as a
// worker (a folder of .key files), alice, bob and admin as clients (a list file).
struct Keys {
  TempDir dir;
  Keys() {
    for (const char* name : {"broker", "node1", "alice", "bob", "admin", "eve"}) {
      const Completed made = run({Paths::cli(), "keygen", (dir.path() / name).string()});
      REQUIRE_MESSAGE(made.status == 0, made.err);
    }
    fs::create_directory(workers());
    fs::copy_file(key("node1"), workers() / "node1.key");
    authorize_clients({"alice", "bob", "admin"});
  }
  fs::path key(const std::string& name) const { return dir.path() / (name + ".key"); }
  fs::path secret(const std::string& name) const { return dir.path() / (name + ".key_secret"); }
  fs::path workers() const { return dir.path() / "workers"; }
  fs::path clients() const { return dir.path() / "clients"; }
  void authorize_clients(const std::vector<std::string>& names) const {
    std::string list = "# users of the test cluster\n";
    for (const std::string& name : names) list += read_file(key(name));
    write(clients(), list);
  }
  std::string public_key(const std::string& name) const {
    const std::string text = read_file(key(name));
    return text.substr(text.rfind("\n", text.size() - 2) + 1, 40);
  }
  std::string fingerprint(const std::string& name) const { return public_key(name).substr(0, 8); }

  std::vector<std::string> broker_args() const {
    std::vector<std::string> args = kFastHeartbeat;
    args.insert(args.end(), {"--curve-secret-key", secret("broker").string(),
                             "--authorized-workers", workers().string(),
                             "--authorized-clients", clients().string()});
    return args;
  }
  std::vector<std::string> worker_args(const std::string& name) const {
    return {"--curve-secret-key", secret(name).string(), "--curve-server-key",
            key("broker").string()};
  }
  ClientOptions client(const std::string& name) const {
    ClientOptions options;
    options.curve_secret_key_file = secret(name).string();
    options.curve_server_key_file = key("broker").string();
    return options;
  }
  std::unique_ptr<Cluster> cluster() const {
    return std::make_unique<Cluster>(broker_args(), client("admin"), worker_args("node1"));
  }
};

// The cluster's client options (test timeouts) with another user's keys, or none.
ClientOptions as(Cluster& cluster, const ClientOptions& keys) {
  ClientOptions options = cluster.client_options();
  options.curve_secret_key_file = keys.curve_secret_key_file;
  options.curve_server_key_file = keys.curve_server_key_file;
  return options;
}

std::vector<Point> points(const std::string& label, int n) {
  std::vector<Point> out;
  for (int i = 0; i < n; ++i) out.push_back(Point{double(i), double(-i), label});
  return out;
}

// A TCP relay on an ephemeral loopback port that forwards every connection to `port` and
// records the bytes both ways: what anyone on the path would see.
class Relay {
 public:
  explicit Relay(int port) : port_(port) {
    listener_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in address = loopback(0);
    REQUIRE(::bind(listener_, reinterpret_cast<sockaddr*>(&address), sizeof address) == 0);
    REQUIRE(::listen(listener_, 16) == 0);
    socklen_t size = sizeof address;
    ::getsockname(listener_, reinterpret_cast<sockaddr*>(&address), &size);
    endpoint_ = "tcp://127.0.0.1:" + std::to_string(ntohs(address.sin_port));
    REQUIRE(::pipe2(stop_, O_CLOEXEC) == 0);
    thread_ = std::thread([this] { run(); });
  }
  ~Relay() {
    [[maybe_unused]] ssize_t n = ::write(stop_[1], "x", 1);
    thread_.join();
    for (int fd : {listener_, stop_[0], stop_[1]}) ::close(fd);
  }
  const std::string& endpoint() const { return endpoint_; }
  std::string recorded() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return bytes_;
  }

 private:
  static sockaddr_in loopback(int port) {
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(static_cast<std::uint16_t>(port));
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    return a;
  }

  void run() {
    std::vector<std::pair<int, int>> pairs;  // (accepted, to the broker)
    while (true) {
      std::vector<pollfd> fds = {{stop_[0], POLLIN, 0}, {listener_, POLLIN, 0}};
      for (const auto& [a, b] : pairs) {
        fds.push_back({a, POLLIN, 0});
        fds.push_back({b, POLLIN, 0});
      }
      const std::size_t polled = pairs.size();  // a pair accepted below waits for the next poll
      if (::poll(fds.data(), fds.size(), -1) < 0) continue;
      if (fds[0].revents) break;
      if (fds[1].revents & POLLIN) {
        const int in = ::accept4(listener_, nullptr, nullptr, SOCK_CLOEXEC);
        const int out = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        sockaddr_in target = loopback(port_);
        if (in >= 0 && ::connect(out, reinterpret_cast<sockaddr*>(&target), sizeof target) == 0) {
          pairs.emplace_back(in, out);
        } else {
          ::close(in);
          ::close(out);
        }
      }
      std::vector<std::pair<int, int>> closed;
      for (std::size_t i = 0; i < polled; ++i) {
        for (int side = 0; side < 2; ++side) {
          if (!(fds[2 + 2 * i + side].revents & (POLLIN | POLLHUP | POLLERR))) continue;
          const int from = side == 0 ? pairs[i].first : pairs[i].second;
          const int to = side == 0 ? pairs[i].second : pairs[i].first;
          char buffer[65536];
          const ssize_t n = ::read(from, buffer, sizeof buffer);
          if (n <= 0 || !write_all(to, buffer, static_cast<std::size_t>(n))) {
            closed.push_back(pairs[i]);
            break;
          }
          std::lock_guard<std::mutex> lock(mutex_);
          bytes_.append(buffer, static_cast<std::size_t>(n));
        }
      }
      for (const auto& pair : closed) {
        ::close(pair.first);
        ::close(pair.second);
        pairs.erase(std::find(pairs.begin(), pairs.end(), pair));
      }
    }
    for (const auto& [a, b] : pairs) {
      ::close(a);
      ::close(b);
    }
  }

  static bool write_all(int fd, const char* data, std::size_t size) {
    while (size > 0) {
      const ssize_t n = ::write(fd, data, size);
      if (n <= 0) return false;
      data += n;
      size -= static_cast<std::size_t>(n);
    }
    return true;
  }

  int port_;
  int listener_ = -1;
  int stop_[2] = {-1, -1};
  std::string endpoint_;
  std::thread thread_;
  mutable std::mutex mutex_;
  std::string bytes_;
};

int port_of(const std::string& endpoint) { return std::stoi(endpoint.substr(endpoint.rfind(':') + 1)); }

std::string broker_log(Cluster& cluster) { return cluster.broker().output(); }

}  // namespace

TEST_CASE("with CurveZMQ an authorised client and worker complete a job; others are refused") {
  Keys keys;
  auto cluster = keys.cluster();
  cluster->add_worker(1);
  REQUIRE(cluster->wait_for_workers(1));

  // The authorised client's job runs while the others knock.
  std::vector<std::int64_t> inputs;
  for (int i = 0; i < 60; ++i) inputs.push_back(10);
  const std::string endpoint = cluster->endpoint();
  const ClientOptions alice = as(*cluster, keys.client("alice"));
  auto job = std::async(std::launch::async, [&] {
    Client client(endpoint, alice);
    return client.map_parallel<std::int64_t>("example_module.sleep_ms", inputs);
  });

  {
    INFO("a client with an unknown key is told at once, not after its timeout");
    Client eve(endpoint, as(*cluster, keys.client("eve")));
    const auto start = std::chrono::steady_clock::now();
    CHECK_THROWS_WITH_AS(eve.map_parallel<std::int64_t>("example_module.square", std::vector<int>{1}),
                         doctest::Contains(("refused this client's key " + keys.fingerprint("eve")).c_str()),
                         ConnectionError);
    CHECK(std::chrono::steady_clock::now() - start < 10s);
  }
  {
    INFO("a client without keys learns that the broker requires them");
    Client anonymous(endpoint, as(*cluster, ClientOptions{}));
    CHECK_THROWS_WITH_AS(anonymous.status(10s), doctest::Contains("requires CurveZMQ"),
                         ConnectionError);
  }
  {
    INFO("a worker's key cannot submit work");
    Client node1(endpoint, as(*cluster, keys.client("node1")));
    try {
      node1.map_parallel<std::int64_t>("example_module.square", std::vector<int>{1});
      FAIL("a worker's key submitted a job");
    } catch (const RefusedError& e) {
      CHECK(e.code() == "forbidden");
      CHECK(std::string(e.what()).find("SUBMIT needs a client key") != std::string::npos);
    }
  }
  {
    INFO("a client's key cannot serve as a worker: the worker stops and is not restarted");
    Process& impostor = cluster->add_worker_at(
        endpoint, {"-j", "2", "--heartbeat-ms", "100", "--curve-secret-key", keys.secret("alice").string(),
                   "--curve-server-key", keys.key("broker").string()});
    CHECK(impostor.wait(20s) == 1);
    CHECK(impostor.output().find("accepts this key, but not as a worker's") != std::string::npos);
    CHECK(cluster->worker_count() == 1u);
  }

  CHECK(job.get() == inputs);
  const std::string log = broker_log(*cluster);
  CHECK(log.find("refused a connection from 127.0.0.1: key " + keys.fingerprint("eve") +
                 " is not authorised") != std::string::npos);
  CHECK(log.find("refused SUBMIT from") != std::string::npos);
  CHECK(log.find("refused READY from") != std::string::npos);
  CHECK(log.find("admitted worker key " + keys.fingerprint("node1") + " (node1)") !=
        std::string::npos);
}

TEST_CASE("on the wire, CurveZMQ traffic holds no plaintext of the inputs; plain traffic does") {
  const std::string canary = "seppo-canary-4f1d9a: this text must never cross the wire";
  const std::vector<Point> inputs = points(canary, 20);
  for (const bool curve : {true, false}) {
    CAPTURE(curve);
    Keys keys;
    auto cluster = curve ? keys.cluster() : std::make_unique<Cluster>();
    cluster->add_worker(1, {"--module", SEPPO_TEST_MODULE});
    REQUIRE(cluster->wait_for_workers(1));
    Relay relay(port_of(cluster->endpoint()));
    Client client(relay.endpoint(), curve ? as(*cluster, keys.client("alice"))
                                          : cluster->client_options());
    const auto out = client.map_parallel<Point>("test_module.mirror", inputs);
    REQUIRE(out.size() == inputs.size());
    CHECK(out[7].label == canary + "'");
    const std::string wire = relay.recorded();
    CHECK(wire.size() > 20 * canary.size());
    if (curve) {
      CHECK(wire.find("CURVE") != std::string::npos);  // the greeting names the mechanism
      CHECK(wire.find(canary) == std::string::npos);
      CHECK(wire.find("test_module.mirror") == std::string::npos);
    } else {
      CHECK(wire.find(canary) != std::string::npos);
    }
  }
}

TEST_CASE("without keys the broker listens only on this machine, unless --insecure") {
  const Completed refused = run({Paths::broker(), "--bind", "tcp://0.0.0.0:*"});
  CHECK(refused.status == 2);
  CHECK(lines(refused.err) == 1);
  CHECK(refused.err.find("seppo-broker: refusing to listen on tcp://0.0.0.0:* without CurveZMQ "
                         "keys") != std::string::npos);

  TempDir dir;
  Process insecure({Paths::broker(), "--bind", "tcp://0.0.0.0:*", "--insecure"},
                   dir.path() / "broker.log");
  CHECK(eventually([&] { return insecure.output().find("info: listening on tcp://0.0.0.0:") !=
                                std::string::npos; }));
  CHECK(insecure.output().find("warning: listening on tcp://0.0.0.0:* without authentication or "
                               "encryption (--insecure)") != std::string::npos);
  insecure.kill(SIGTERM);
  CHECK(insecure.wait() == 0);

  const Completed no_lists = run({Paths::broker(), "--curve-secret-key", "/nonexistent"});
  CHECK(no_lists.status == 2);
  CHECK(no_lists.err.find("--curve-secret-key (or $SEPPO_CURVE_SECRET_KEY) needs "
                          "--authorized-workers and --authorized-clients") != std::string::npos);
}

TEST_CASE("without keys a worker and the seppo command refuse a broker on another host") {
  const std::string remote = "tcp://192.0.2.1:5555";  // TEST-NET-1: never answers
  const Completed worker = run({Paths::worker(), "--broker", remote, "--module",
                                Paths::example_module()});
  CHECK(worker.status == 2);
  CHECK(lines(worker.err) == 1);
  CHECK(worker.err.find("refusing to connect to " + remote + " without CurveZMQ keys") !=
        std::string::npos);

  const Completed ping = run({Paths::cli(), "--broker", remote, "ping"});
  CHECK(ping.status == 255);
  CHECK(ping.err.find("refusing to connect to " + remote + " without CurveZMQ keys") !=
        std::string::npos);
  const Completed insecure =
      run({Paths::cli(), "--broker", remote, "--insecure", "--broker-timeout", "0.3", "ping"});
  CHECK(insecure.status == 1);
  CHECK(insecure.err.find("no reply from the broker") != std::string::npos);

  CHECK_THROWS_WITH_AS(Client(remote, ClientOptions{}), doctest::Contains("refusing to connect"),
                       Error);
}

TEST_CASE("SIGHUP reloads the lists: a removed key can no longer connect, nor keep talking") {
  Keys keys;
  auto cluster = keys.cluster();
  cluster->add_worker(1);
  REQUIRE(cluster->wait_for_workers(1));
  const std::string endpoint = cluster->endpoint();
  ClientOptions quick = as(*cluster, keys.client("alice"));
  quick.timeout = 1s;
  Client connected(endpoint, quick);
  REQUIRE_NOTHROW(connected.status(10s));

  keys.authorize_clients({"bob", "admin"});
  fs::remove(keys.workers() / "node1.key");
  cluster->broker().kill(SIGHUP);
  REQUIRE(eventually([&] {
    return broker_log(*cluster).find("reloaded the key lists; authorised: 0 worker keys, 2 client "
                                     "keys") != std::string::npos;
  }));

  Client fresh(endpoint, quick);
  CHECK_THROWS_WITH_AS(fresh.status(10s),
                       doctest::Contains(("refused this client's key " + keys.fingerprint("alice")).c_str()),
                       ConnectionError);
  // The connection alice opened before the reload is not answered any more.
  CHECK_THROWS_WITH_AS(connected.status(1s), doctest::Contains("no reply"), ConnectionError);
  Client bob(endpoint, as(*cluster, keys.client("bob")));
  CHECK_NOTHROW(bob.status(10s));

  // The worker's key went too: its messages are dropped, the broker presumes it dead, and its
  // attempts to reconnect are refused.
  CHECK(cluster->wait_for_workers(0));
  CHECK(eventually([&] {
    return cluster->worker(0).output().find("refused this worker's key " +
                                            keys.fingerprint("node1")) != std::string::npos;
  }));
  CHECK(broker_log(*cluster).find("dropped messages from key " + keys.fingerprint("node1")) !=
        std::string::npos);

  // A list that does not parse is reported and changes nothing.
  write(keys.clients(), "not a key\n");
  cluster->broker().kill(SIGHUP);
  CHECK(eventually([&] {
    return broker_log(*cluster).find("kept the previous key lists: " + keys.clients().string() +
                                     ":1: expected a 40-character Z85 key") != std::string::npos;
  }));
  CHECK_NOTHROW(bob.status(10s));
}

TEST_CASE("a client over the broker's per-client limit backs off; a chunk that can never fit fails") {
  Cluster cluster({"--heartbeat-ms", "100", "--liveness", "3", "--max-client-bytes", "200000"});
  cluster.add_worker(2, {"--module", SEPPO_TEST_MODULE});
  REQUIRE(cluster.wait_for_workers(2));
  Client client = cluster.client();
  // 2 MB of inputs, ten times what the broker holds for one client at once.
  const std::vector<Point> inputs = points(std::string(10000, 'p'), 200);
  const auto out = client.map_parallel<Point>("test_module.mirror", inputs);
  REQUIRE(out.size() == inputs.size());
  for (std::size_t i = 0; i < out.size(); ++i) {
    if (out[i].x != inputs[i].y || out[i].label != inputs[i].label + "'") FAIL("item " << i);
  }
  CHECK(broker_log(cluster).find("over its limit") != std::string::npos);  // it did back off
  try {
    client.map_parallel<Point>("test_module.mirror", points(std::string(300000, 'q'), 1));
    FAIL("a chunk larger than the limit was accepted");
  } catch (const RemoteError& e) {  // FAILED too_large: its item fails, naming the limit
    CHECK(std::string(e.what()).find("item too large") != std::string::npos);
    CHECK(std::string(e.what()).find("--max-client-bytes of 200000") != std::string::npos);
  }
}
