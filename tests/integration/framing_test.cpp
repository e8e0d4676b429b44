// Several tasks per message (issue 28, feature "batch", docs/protocol.md §4.17, §4.18) against
// workers that keep version 1's single-task framing: a seppo-worker started with --no-batch,
// and a raw peer that speaks only TASK and RESULT (no features in its READY).
#include <doctest/doctest.h>

#include <atomic>
#include <numeric>
#include <thread>

#include <zmq.hpp>
#include <zmq_addon.hpp>

#include <seppo/seppo.hpp>

#include "protocol/wire.hpp"
#include "seppo/msgpack.hpp"
#include "tests/support/cluster.hpp"

using namespace seppo;
using namespace seppo::test;
using namespace std::chrono_literals;

namespace {

std::vector<std::int64_t> squares_of(Client& client, std::size_t n) {
  std::vector<std::int64_t> inputs(n);
  std::iota(inputs.begin(), inputs.end(), 1);
  const auto out = client.map_parallel<std::int64_t>("example_module.square", inputs);
  REQUIRE(out.size() == n);
  for (std::size_t i = 0; i < n; ++i) {
    if (out[i] != inputs[i] * inputs[i]) FAIL("item " << i << " is " << out[i]);
  }
  return out;
}

}  // namespace

TEST_CASE("a --no-batch worker and a batching one serve one job of single-item chunks") {
  Cluster cluster;
  cluster.add_worker(1, {"--no-batch", "--prefetch", "16"});
  cluster.add_worker(1, {"--prefetch", "16"});
  REQUIRE(cluster.wait_for_workers(2));
  ClientOptions options = cluster.client_options();
  options.chunk_size = 1;
  Client client(cluster.endpoint(), options);
  squares_of(client, 5000);
}

TEST_CASE("a peer speaking only version-1 framing gets TASKs, never TASKS, and its RESULTs count") {
  Cluster cluster;
  std::atomic<bool> stop{false};
  std::atomic<int> tasks{0}, batched{0}, other{0};
  zmq::context_t context;
  zmq::socket_t dealer(context, zmq::socket_type::dealer);
  dealer.set(zmq::sockopt::linger, 0);
  dealer.set(zmq::sockopt::routing_id, zmq::str_buffer("Wraw-v1-peer"));
  dealer.connect(cluster.endpoint());
  // READY as a worker predating every optional field: name, host, pid, capacity, functions.
  const std::string ready =
      wire::encode(wire::Ready{"raw peer", "localhost", 1, 16, {"example_module.square"}});
  dealer.send(zmq::buffer(ready));
  std::thread peer([&] {
    auto last_beat = std::chrono::steady_clock::now();
    const auto deadline = last_beat + 120s;
    while (!stop && std::chrono::steady_clock::now() < deadline) {
      if (std::chrono::steady_clock::now() - last_beat > 50ms) {
        dealer.send(zmq::buffer(wire::encode(wire::Heartbeat{0, 0, {}})));
        last_beat = std::chrono::steady_clock::now();
      }
      std::vector<zmq::pollitem_t> items = {{dealer.handle(), 0, ZMQ_POLLIN, 0}};
      zmq::poll(items, 20ms);
      std::vector<zmq::message_t> frames;
      while (zmq::recv_multipart(dealer, std::back_inserter(frames), zmq::recv_flags::dontwait)) {
        const wire::Message m = wire::decode(frames[0].data(), frames[0].size());
        if (const auto* task = std::get_if<wire::Task>(&m); task && frames.size() == 2) {
          ++tasks;
          msgpack::object_handle h = msgpack::unpack(frames[1].data<char>(), frames[1].size());
          msgpack::sbuffer out;
          msgpack::packer<msgpack::sbuffer> p(out);
          const auto args = h.get().as<std::vector<std::int64_t>>();
          p.pack_array(static_cast<std::uint32_t>(args.size()));
          for (std::int64_t x : args) p.pack_array(2).pack(0).pack(x * x);
          dealer.send(zmq::buffer(wire::encode(wire::Result{task->task_id, 1})),
                      zmq::send_flags::sndmore);
          dealer.send(zmq::buffer(out.data(), out.size()));
        } else if (std::holds_alternative<wire::Tasks>(m)) {
          ++batched;
        } else if (!std::holds_alternative<wire::Alive>(m)) {
          ++other;
        }
        frames.clear();
      }
    }
  });
  REQUIRE(cluster.wait_for_workers(1));
  ClientOptions options = cluster.client_options();
  options.chunk_size = 1;
  Client client(cluster.endpoint(), options);
  squares_of(client, 2000);
  stop = true;
  peer.join();
  CHECK(tasks >= 2000);
  CHECK(batched == 0);
  CHECK(other == 0);
}
