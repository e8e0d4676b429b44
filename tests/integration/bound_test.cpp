// Issue 26 defect 1, the peers' side: a worker (on its first connection too) and a client take
// from a broker no frame over the broker's message limit plus a header (docs/protocol.md §4.9).
// A fake broker (a plain ROUTER socket) sends one: the peer drops that connection before
// holding the frame, and says so rather than hanging.
#include <doctest/doctest.h>

#include <chrono>
#include <cstdint>
#include <fstream>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <zmq.hpp>
#include <zmq_addon.hpp>

#include <seppo/seppo.hpp>

#include "protocol/wire.hpp"
#include "tests/support/cluster.hpp"

using namespace seppo;
using namespace seppo::test;

namespace {

// One byte over what a peer accepts from a broker that announced no limit.
constexpr std::size_t kOversized = wire::kDefaultMaxMessageBytes + wire::kFrameAllowance + 1;

// A broker that answers every message of a peer with one oversized frame.
struct FakeBroker {
  zmq::context_t context{1};
  zmq::socket_t router{context, zmq::socket_type::router};
  std::string endpoint;

  FakeBroker() {
    router.set(zmq::sockopt::router_mandatory, 1);
    router.set(zmq::sockopt::linger, 0);
    router.bind("tcp://127.0.0.1:*");
    endpoint = router.get(zmq::sockopt::last_endpoint);
  }

  // The routing id of the next peer that sends something, within `timeout`.
  std::optional<std::string> next_sender(std::chrono::milliseconds timeout) {
    std::vector<zmq::pollitem_t> items = {{router.handle(), 0, ZMQ_POLLIN, 0}};
    if (zmq::poll(items, timeout) == 0) return std::nullopt;
    std::vector<zmq::message_t> frames;
    if (!zmq::recv_multipart(router, std::back_inserter(frames))) return std::nullopt;
    return frames.at(0).to_string();
  }

  void send_oversized(const std::string& peer) {
    router.send(zmq::buffer(peer), zmq::send_flags::sndmore);
    router.send(zmq::message_t(kOversized), zmq::send_flags::none);
  }

  // Whether `peer` is still connected: a mandatory ROUTER refuses to send to one that is gone.
  bool connected(const std::string& peer) {
    try {
      router.send(zmq::buffer(peer), zmq::send_flags::sndmore | zmq::send_flags::dontwait);
      router.send(zmq::str_buffer("x"), zmq::send_flags::dontwait);
      return true;
    } catch (const zmq::error_t& e) {
      if (e.num() == EHOSTUNREACH) return false;
      throw;
    }
  }
};

// The peak resident size of a process, in bytes (VmHWM).
std::uint64_t peak_resident(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("VmHWM:", 0) == 0) return std::stoull(line.substr(6)) * 1024;
  }
  return 0;
}

}  // namespace

TEST_CASE("a worker drops the first connection of a broker that sends a frame over the limit") {
  FakeBroker broker;
  TempDir dir;
  Process worker({Paths::worker(), "--broker", broker.endpoint, "--module", Paths::example_module(),
                  "--heartbeat-ms", "5000"},
                 dir.path() / "worker.log");
  // Its READY, on the first connection: no ALIVE has announced any limit.
  const std::optional<std::string> peer = broker.next_sender(10s);
  INFO(worker.output());
  REQUIRE(peer);
  broker.send_oversized(*peer);
  // ZeroMQ closes it at once; the worker reconnecting on silence would take 15 s.
  CHECK(eventually([&] { return !broker.connected(*peer); }, 5s));
  CHECK(worker.running());
  // It never held the frame.
  CHECK(peak_resident(worker.pid()) < wire::kDefaultMaxMessageBytes / 2);
}

TEST_CASE("a client fails with a clear error when its broker sends a frame over the limit") {
  FakeBroker broker;
  std::atomic<bool> stop{false};
  int sent = 0;
  std::thread fake([&] {
    const auto deadline = std::chrono::steady_clock::now() + 30s;
    while (!stop && std::chrono::steady_clock::now() < deadline) {
      if (std::optional<std::string> peer = broker.next_sender(50ms)) {
        if (broker.connected(*peer)) {
          broker.send_oversized(*peer);
          ++sent;
        }
      }
    }
  });
  ClientOptions options;
  options.timeout = 3s;
  options.heartbeat = 100ms;
  options.max_message_bytes = wire::kDefaultMaxMessageBytes;  // a bound is asked for
  Client client(broker.endpoint, options);
  const auto start = std::chrono::steady_clock::now();
  std::string error;
  try {
    client.map_parallel<std::int64_t>("example_module.square", std::vector<int>{1, 2, 3});
  } catch (const ConnectionError& e) {
    error = e.what();
  }
  const auto took = std::chrono::steady_clock::now() - start;
  stop = true;
  fake.join();
  CHECK(sent >= 1);
  INFO(error);
  CHECK(error.find(std::to_string(wire::kDefaultMaxMessageBytes)) != std::string::npos);
  CHECK(took < 10s);
}
