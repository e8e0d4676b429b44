// Several tasks per message (issue 28, feature "batch", docs/protocol.md §4.17-§4.19) against
// peers that keep version 1's single-task framing: a seppo-worker started with --no-batch, a
// raw peer that speaks only TASK and RESULT (no features in its READY), and raw clients whose
// SUBMITs name the feature or not (DELIVERS or one DELIVER per answer), or that send SUBMITS
// (feature "submits", §4.20).
#include <doctest/doctest.h>

#include <atomic>
#include <map>
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

// Drives a raw peer's DEALER until `done()` or `limit`: the header `heartbeat()` makes every
// `every`, and each message received, decoded, to `on_message(message, frames)`.
template <typename Heartbeat, typename Done, typename OnMessage>
void raw_loop(zmq::socket_t& dealer, Heartbeat heartbeat, std::chrono::milliseconds every,
              std::chrono::seconds limit, Done done, OnMessage on_message) {
  auto last_beat = std::chrono::steady_clock::now();
  const auto deadline = last_beat + limit;
  while (!done() && std::chrono::steady_clock::now() < deadline) {
    if (std::chrono::steady_clock::now() - last_beat > every) {
      dealer.send(zmq::buffer(heartbeat()));
      last_beat = std::chrono::steady_clock::now();
    }
    std::vector<zmq::pollitem_t> items = {{dealer.handle(), 0, ZMQ_POLLIN, 0}};
    zmq::poll(items, 20ms);
    std::vector<zmq::message_t> frames;
    while (zmq::recv_multipart(dealer, std::back_inserter(frames), zmq::recv_flags::dontwait)) {
      on_message(wire::decode(frames[0].data(), frames[0].size()), frames);
      frames.clear();
    }
  }
}

// A client written from docs/protocol.md on a raw DEALER: submits `n` one-item chunks of
// example_module.square (items 1..n) naming `features` in each SUBMIT, heartbeats, and reads
// every answer, checking each item once, each value exact and the seqs 1, 2, 3... in order.
struct RawClient {
  int delivers = 0;  // DELIVER messages
  int batched = 0;   // DELIVERS messages
  std::size_t parts = 0;
};

RawClient raw_client(const std::string& endpoint, const std::vector<std::string>& features,
                     std::uint64_t n, bool as_submits = false) {
  RawClient seen;
  zmq::context_t context;
  zmq::socket_t dealer(context, zmq::socket_type::dealer);
  dealer.set(zmq::sockopt::linger, 0);
  dealer.set(zmq::sockopt::routing_id, zmq::buffer(std::string(as_submits         ? "Csub"
                                                               : features.empty() ? "Cold"
                                                                                  : "Cnew")));
  dealer.connect(endpoint);
  // SUBMITS (§4.20): the chunks 64 at a time, sizes in the header, payloads back to back.
  for (std::uint64_t i = 0; as_submits && i < n;) {
    wire::Submits m{1, "example_module.square", 10000, 0, features, {}};
    std::string payload;
    for (; i < n && m.chunks.size() < 64 * wire::kSubmitFields; ++i) {
      msgpack::sbuffer args;
      msgpack::packer<msgpack::sbuffer> p(args);
      p.pack_array(1).pack(static_cast<std::int64_t>(i + 1));
      m.chunks.insert(m.chunks.end(), {i, 1, args.size()});
      payload.append(args.data(), args.size());
    }
    dealer.send(zmq::buffer(wire::encode(m)), zmq::send_flags::sndmore);
    dealer.send(zmq::buffer(payload));
  }
  for (std::uint64_t i = 0; !as_submits && i < n; ++i) {
    msgpack::sbuffer args;
    msgpack::packer<msgpack::sbuffer> p(args);
    p.pack_array(1).pack(static_cast<std::int64_t>(i + 1));
    dealer.send(zmq::buffer(wire::encode(
                    wire::Submit{1, "example_module.square", i, 1, 10000, 0, features})),
                zmq::send_flags::sndmore);
    dealer.send(zmq::buffer(args.data(), args.size()));
  }
  std::vector<bool> got(n, false);
  std::uint64_t received = 0, last_seq = 0;
  auto answer = [&](const wire::Deliver& d, const char* data, std::size_t size) {
    REQUIRE(d.job_id == 1);
    REQUIRE(d.count == 1);
    REQUIRE(d.first < n);
    CHECK_FALSE(got[d.first]);
    got[d.first] = true;
    ++received;
    CHECK(d.seq == last_seq + 1);
    last_seq = d.seq;
    msgpack::object_handle h = msgpack::unpack(data, size);
    const auto entries = h.get().as<std::vector<std::vector<std::int64_t>>>();
    REQUIRE(entries.size() == 1);
    CHECK(entries[0][0] == 0);
    const auto x = static_cast<std::int64_t>(d.first + 1);
    CHECK(entries[0][1] == x * x);
  };
  raw_loop(
      dealer,
      [&] {
        return wire::encode(wire::Heartbeat{1, last_seq, {}});
      },
      50ms, 60s, [&] { return received >= n; },  // §8: a message at least every heartbeat_ms
      [&](const wire::Message& m, std::vector<zmq::message_t>& frames) {
        if (const auto* d = std::get_if<wire::Deliver>(&m)) {
          REQUIRE(frames.size() == 2);
          ++seen.delivers;
          answer(*d, frames[1].data<char>(), frames[1].size());
        } else if (const auto* ds = std::get_if<wire::Delivers>(&m)) {
          REQUIRE(frames.size() == 2);
          ++seen.batched;
          const Bytes payload = Bytes::copy(frames[1].data(), frames[1].size());
          for (const wire::BatchedDeliver& part : wire::split(*ds, payload)) {
            ++seen.parts;
            answer(part.deliver, part.payload.data(), part.payload.size());
          }
        } else {
          CHECK_MESSAGE((std::holds_alternative<wire::Alive>(m)), "unexpected ",
                        wire::type_name(wire::type_of(m)));
        }
      });
  CHECK(received == n);
  dealer.send(zmq::buffer(wire::encode(wire::Done{1})));
  return seen;
}

}  // namespace

TEST_CASE("a client naming batch in SUBMIT gets DELIVERS; one naming nothing, DELIVERs only") {
  // The raw clients do not resubmit (no RESYNC handling): a liveness of 1 s, so that a stall of
  // this process under AddressSanitizer on a loaded machine does not get them dropped for dead
  // (with 0.3 s, and heartbeats 0.2 s apart, CI's sanitizer run lost a job that way).
  Cluster cluster({"--heartbeat-ms", "100", "--liveness", "10"});
  cluster.add_worker(2, {"--prefetch", "32"});
  REQUIRE(cluster.wait_for_workers(2));
  // Two thousand answers in bursts (RESULTS of a worker's finished tasks): some go together.
  const RawClient batched = raw_client(cluster.endpoint(), {"batch"}, 2000);
  CHECK(batched.batched > 0);
  CHECK(batched.parts > static_cast<std::size_t>(batched.batched));
  MESSAGE("DELIVERS: " << batched.batched << " for " << batched.parts
                       << " answers, DELIVER: " << batched.delivers);
  // SUBMIT as a client predating the feature sends it (no features, no item_timeout_ms): one
  // DELIVER per answer, the same results.
  const RawClient old = raw_client(cluster.endpoint(), {}, 2000);
  CHECK(old.batched == 0);
  CHECK(old.delivers == 2000);
  // And the C++ client, which names batch, at chunk size 1: every item exact, in order.
  ClientOptions options = cluster.client_options();
  options.chunk_size = 1;
  Client client(cluster.endpoint(), options);
  squares_of(client, 5000);
  options.batch = false;
  Client plain(cluster.endpoint(), options);
  squares_of(plain, 2000);
}

// STATUS's "messages": how many SUBMITs and SUBMITS the broker has read.
std::pair<std::uint64_t, std::uint64_t> submit_messages(const Cluster& cluster) {
  Client probe = cluster.client();
  const msgpack::object_handle status = probe.status(10s);
  std::pair<std::uint64_t, std::uint64_t> counts{0, 0};
  const auto map = status.get().as<std::map<std::string, msgpack::object>>();
  const auto m = map.find("messages");
  REQUIRE(m != map.end());
  const auto by_type = m->second.as<std::map<std::string, std::uint64_t>>();
  if (auto one = by_type.find("SUBMIT"); one != by_type.end()) counts.first = one->second;
  if (auto many = by_type.find("SUBMITS"); many != by_type.end()) counts.second = many->second;
  return counts;
}

TEST_CASE(
    "SUBMITS: a raw client's chunks are answered once each; the C++ client sends fewer "
    "messages than chunks, and one SUBMIT per chunk with batch off") {
  Cluster cluster({"--heartbeat-ms", "100", "--liveness", "10"});
  cluster.add_worker(2, {"--prefetch", "32"});
  REQUIRE(cluster.wait_for_workers(2));
  // 2000 one-item chunks in 32 SUBMITS (raw_client checks each item once and exact).
  const RawClient raw = raw_client(cluster.endpoint(), {"batch"}, 2000, true);
  CHECK(raw.delivers + raw.parts == 2000);
  auto before = submit_messages(cluster);
  CHECK(before.first == 0);
  CHECK(before.second == 32);
  // The C++ client at chunk size 1: after the broker's first ALIVE (which names submits), the
  // chunks each refill sends leave together.
  ClientOptions options = cluster.client_options();
  options.chunk_size = 1;
  Client client(cluster.endpoint(), options);
  squares_of(client, 5000);
  squares_of(client, 5000);  // a second job: it knows the broker's features from the start
  auto after = submit_messages(cluster);
  const std::uint64_t messages = (after.first - before.first) + (after.second - before.second);
  MESSAGE("10000 chunks in " << after.first - before.first << " SUBMIT and "
                             << after.second - before.second << " SUBMITS");
  CHECK(after.second > before.second);
  CHECK(messages < 10000);
  // ClientOptions::batch false: one SUBMIT per chunk, as before the feature.
  before = after;
  options.batch = false;
  Client plain(cluster.endpoint(), options);
  squares_of(plain, 2000);
  after = submit_messages(cluster);
  CHECK(after.first - before.first == 2000);
  CHECK(after.second == before.second);
}

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
    raw_loop(
        dealer,
        [] {
          return wire::encode(wire::Heartbeat{0, 0, {}});
        },
        50ms, 120s, [&] { return stop.load(); },
        [&](const wire::Message& m, std::vector<zmq::message_t>& frames) {
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
        });
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
