// Hostile and accidental input at the broker's edge (issue 26): peers that speak ZMTP by hand,
// hold descriptors, or plant links; the broker must stay bounded and keep serving.
#include <doctest/doctest.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <zmq.hpp>
#include <zmq_addon.hpp>

#include <cstring>
#include <optional>
#include <variant>

#include "protocol/wire.hpp"
#include "tests/support/cluster.hpp"
#include "tests/support/raw_peer.hpp"

using namespace seppo::test;

namespace {

// ZMTP 3.0 by hand: the greeting of a NULL-mechanism client, and its READY as a DEALER.
std::string zmtp_hello() {
  const std::string greeting = null_greeting();
  const std::string body =
      std::string("\x05READY") + "\x0bSocket-Type" + std::string("\x00\x00\x00\x06", 4) + "DEALER";
  return greeting + '\x04' + static_cast<char>(body.size()) + body;
}

// A long frame of `size` bytes with the MORE flag: a message that goes on.
std::string more_frame(std::uint64_t size) {
  std::string frame(1, '\x03');  // MORE | LONG
  for (int shift = 56; shift >= 0; shift -= 8) {
    frame += static_cast<char>((size >> shift) & 0xff);
  }
  return frame + std::string(size, 'x');
}

// A field of /proc/PID/status, in kB (VmRSS), or -1.
long status_kib(pid_t pid, const std::string& field) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind(field + ":", 0) == 0) return std::stol(line.substr(field.size() + 1));
  }
  return -1;
}

// User plus system CPU time of a process, in clock ticks (/proc/PID/stat fields 14 and 15).
long cpu_ticks(pid_t pid) {
  const std::string stat = read_file("/proc/" + std::to_string(pid) + "/stat");
  std::istringstream rest(stat.substr(stat.rfind(')') + 2));
  std::string field;
  long utime = 0, stime = 0;
  for (int i = 3; i <= 15 && rest >> field; ++i) {
    if (i == 14) utime = std::stol(field);
    if (i == 15) stime = std::stol(field);
  }
  return utime + stime;
}

bool squares_served(Cluster& cluster) {
  seppo::Client client = cluster.client();
  return client.map_parallel<std::int64_t>("example_module.square", std::vector<int>{1, 2, 3}) ==
         std::vector<std::int64_t>{1, 4, 9};
}

}  // namespace

TEST_CASE("a peer that never finishes a multipart message is cut off; the broker stays bounded") {
  std::vector<std::string> args = kFastHeartbeat;
  for (const char* a : {"--max-message-bytes", "1048576", "--max-client-bytes", "8388608"}) {
    args.push_back(a);
  }
  Cluster cluster(args);
  cluster.add_worker(1);
  REQUIRE(cluster.wait_for_workers(1));
  const pid_t broker = cluster.broker().pid();
  const long before = status_kib(broker, "VmRSS");
  REQUIRE(before > 0);

  // 1 MiB frames (each under --max-message-bytes, so libzmq's per-frame limit lets them
  // through), all marked MORE: libzmq would hold them until a last frame that never comes.
  const int fd = connect_tcp(port_of(cluster.endpoint()));
  REQUIRE(fd >= 0);
  REQUIRE(send_all(fd, zmtp_hello()));
  const std::string frame = more_frame((1u << 20) - 64);
  long peak = before;
  bool cut = false;
  int sent = 0;
  for (; sent < 400 && !cut; ++sent) {
    cut = !send_all(fd, frame);
    if (sent % 4 == 0) peak = std::max(peak, status_kib(broker, "VmRSS"));
  }
  ::close(fd);
  MESSAGE("sent " << sent << " MiB; broker VmRSS " << before << " kB before, peak " << peak
                  << " kB");
  CHECK(cut);
  CHECK(peak - before < 128 * 1024);
  CHECK(eventually([&] { return status_kib(broker, "VmRSS") - before < 48 * 1024; }));
  CHECK(cluster.broker().running());
  CHECK(squares_served(cluster));
  CHECK(eventually([&] {
    return cluster.broker().output().find("without completing a message") != std::string::npos;
  }));
}

TEST_CASE("at the descriptor limit, idle connections neither spin the broker nor stop it") {
  TempDir dir;
  const auto file = dir.path() / "endpoint";
  // prlimit execs the broker: the same process, with at most 256 descriptors.
  Process broker({"/usr/bin/prlimit", "--nofile=256:256", "--", Paths::broker(), "--bind",
                  "tcp://127.0.0.1:0", "--endpoint-file", file.string(), "--heartbeat-ms", "100"},
                 dir.path() / "broker.log");
  REQUIRE(eventually([&] { return std::filesystem::exists(file); }));
  std::string endpoint = read_file(file);
  endpoint = endpoint.substr(0, endpoint.find('\n'));
  const int port = port_of(endpoint);

  std::vector<int> idle;
  for (int i = 0; i < 300; ++i) {
    const int fd = connect_tcp(port);
    if (fd >= 0) idle.push_back(fd);
  }
  CHECK(idle.size() == 300);  // the kernel's backlog takes what the broker does not accept
  // Over two seconds with them all open, the broker mostly sleeps.
  const long ticks_per_second = ::sysconf(_SC_CLK_TCK);
  const long start = cpu_ticks(broker.pid());
  const auto window_end = std::chrono::steady_clock::now() + 2s;
  eventually([&] { return std::chrono::steady_clock::now() >= window_end; }, 3s);
  const long used = cpu_ticks(broker.pid()) - start;
  MESSAGE("broker CPU over 2 s with 300 idle connections: " << used << " ticks of "
                                                            << ticks_per_second << "/s");
  CHECK(used < ticks_per_second / 2);
  CHECK(eventually([&] {
    return broker.output().find("at the connection cap (--max-connections 192)") !=
           std::string::npos;
  }));
  CHECK(broker.output().find("--max-connections lowered to 192") != std::string::npos);

  for (int fd : idle) ::close(fd);
  Process worker(
      {Paths::worker(), "--broker", endpoint, "--module", Paths::example_module(), "-j", "1"},
      dir.path() / "worker.log");
  seppo::ClientOptions options;
  options.timeout = 20s;
  options.worker_wait = 15s;  // the worker is starting
  seppo::Client client(endpoint, options);
  CHECK(client.map_parallel<std::int64_t>("example_module.square", std::vector<int>{1, 2, 3}) ==
        std::vector<std::int64_t>{1, 4, 9});
  CHECK(broker.running());
}

TEST_CASE("--endpoint-file never writes through a link planted at a temporary name") {
  TempDir dir;
  const auto file = dir.path() / "endpoint";
  const auto victim = dir.path() / "victim";
  std::ofstream(victim) << "precious\n";
  // The shell's process id is the broker's once it execs: the old temporary name, planted.
  Process broker({"/bin/sh", "-c",
                  "ln -s \"$1\" \"$2.tmp.$$\" && exec \"$3\" --bind tcp://127.0.0.1:0 "
                  "--endpoint-file \"$2\"",
                  "sh", victim.string(), file.string(), Paths::broker()},
                 dir.path() / "broker.log");
  REQUIRE(eventually([&] { return std::filesystem::exists(file); }));
  CHECK(read_file(victim) == "precious\n");
  CHECK(!std::filesystem::is_symlink(file));
  CHECK(read_file(file).rfind("tcp://127.0.0.1:", 0) == 0);
  broker.kill(SIGTERM);
  CHECK(broker.wait() == 0);
  CHECK(!std::filesystem::exists(file));
  CHECK(read_file(victim) == "precious\n");
}

namespace {

// A message from the worker at a fake broker's ROUTER: (routing id, decoded header), or none
// within `timeout`.
std::optional<std::pair<std::string, seppo::wire::Message>> receive(
    zmq::socket_t& router, std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    std::vector<zmq::pollitem_t> items = {{router.handle(), 0, ZMQ_POLLIN, 0}};
    zmq::poll(items, std::chrono::milliseconds(100));
    if (!(items[0].revents & ZMQ_POLLIN)) continue;
    std::vector<zmq::message_t> frames;
    if (!zmq::recv_multipart(router, std::back_inserter(frames), zmq::recv_flags::dontwait) ||
        frames.size() < 2) {
      continue;
    }
    return std::make_pair(frames[0].to_string(),
                          seppo::wire::decode(frames[1].data(), frames[1].size()));
  }
  return std::nullopt;
}

// The next READY the worker sends (its HEARTBEATs skipped): its routing id, or empty.
std::string next_ready(zmq::socket_t& router) {
  for (int i = 0; i < 100; ++i) {
    const auto m = receive(router, 20s);
    if (!m) return "";
    if (std::holds_alternative<seppo::wire::Ready>(m->second)) return m->first;
  }
  return "";
}

// Whether the monitor reports `event` within `timeout`.
bool monitor_sees(zmq::socket_t& monitor, std::uint16_t wanted, std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    std::vector<zmq::pollitem_t> items = {{monitor.handle(), 0, ZMQ_POLLIN, 0}};
    zmq::poll(items, std::chrono::milliseconds(100));
    std::vector<zmq::message_t> frames;
    while (zmq::recv_multipart(monitor, std::back_inserter(frames), zmq::recv_flags::dontwait)) {
      std::uint16_t event = 0;
      if (!frames.empty() && frames[0].size() >= 2) std::memcpy(&event, frames[0].data(), 2);
      if (event == wanted) return true;
      frames.clear();
    }
  }
  return false;
}

}  // namespace

TEST_CASE("a worker drops a broker's connection whose frame exceeds the limit it announced") {
  // Issue 26 defect 1, the worker's side: a broker (or whoever answers at its endpoint) that
  // announced --max-message-bytes 1024 and then sends a 4 MiB frame is disconnected by ZeroMQ,
  // instead of the worker holding whatever it is sent.
  zmq::context_t context;
  zmq::socket_t router(context, zmq::socket_type::router);
  router.set(zmq::sockopt::linger, 0);
  router.set(zmq::sockopt::router_handover, 1);  // the worker's next connection takes its id
  REQUIRE(zmq_socket_monitor(router.handle(), "inproc://fake-broker",
                             ZMQ_EVENT_ACCEPTED | ZMQ_EVENT_DISCONNECTED) == 0);
  zmq::socket_t monitor(context, zmq::socket_type::pair);
  monitor.set(zmq::sockopt::linger, 0);
  monitor.connect("inproc://fake-broker");
  router.bind("tcp://127.0.0.1:*");
  const std::string endpoint = router.get(zmq::sockopt::last_endpoint);
  TempDir dir;
  Process worker(
      {Paths::worker(), "--broker", endpoint, "--module", Paths::example_module(), "-j", "1"},
      dir.path() / "worker.log");
  const auto send = [&](const std::string& id, const std::string& header,
                        const std::string* payload = nullptr) {
    router.send(zmq::buffer(id), zmq::send_flags::sndmore);
    if (payload == nullptr) {
      router.send(zmq::buffer(header));
    } else {
      router.send(zmq::buffer(header), zmq::send_flags::sndmore);
      router.send(zmq::buffer(*payload));
    }
  };
  std::string id = next_ready(router);
  REQUIRE(!id.empty());
  // The limit, then a BYE: the worker reconnects at once (W13), on a socket that knows it.
  send(id, seppo::wire::encode(seppo::wire::Alive{42, 60000, 3, 1024}));
  send(id, seppo::wire::encode(seppo::wire::Bye{"restarting"}));
  REQUIRE(monitor_sees(monitor, ZMQ_EVENT_DISCONNECTED, 20s));
  id = next_ready(router);
  REQUIRE(!id.empty());
  send(id, seppo::wire::encode(seppo::wire::Alive{42, 60000, 3, 1024}));
  // Until the worker is quiet (it may announce itself once more as the old connection's close
  // settles), each READY answered; then the events of the old connection are read.
  for (int i = 0; i < 10; ++i) {
    const auto m = receive(router, 500ms);
    if (!m) break;
    if (!std::holds_alternative<seppo::wire::Ready>(m->second)) continue;
    id = m->first;
    send(id, seppo::wire::encode(seppo::wire::Alive{42, 60000, 3, 1024}));
  }
  monitor_sees(monitor, ZMQ_EVENT_DISCONNECTED, 300ms);
  const std::string big(4u << 20, 'x');
  send(id, seppo::wire::encode(seppo::wire::Task{7, "example_module.square", 1}), &big);
  CHECK(monitor_sees(monitor, ZMQ_EVENT_DISCONNECTED, 10s));
  CHECK(worker.running());
  zmq_socket_monitor(router.handle(), nullptr, 0);
}
