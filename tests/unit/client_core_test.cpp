// The client's job rules (docs/protocol.md §9, rows C1..C20), driven with a fake clock: no
// socket, no broker, no sleeps. Each test is named after the row it checks.
#include <doctest/doctest.h>

#include "seppo/msgpack.hpp"

#include "libclient/job_core.hpp"
#include "seppo/result_entry.hpp"

using namespace seppo;
using namespace seppo::client;
using namespace std::chrono_literals;
using TimePoint = JobCore::TimePoint;

namespace {

const TimePoint t0 = TimePoint{} + 1h;
constexpr std::uint64_t kJob = 77;

JobCoreOptions options() {
  JobCoreOptions o;
  o.endpoint = "tcp://127.0.0.1:5555";
  o.client.chunk_size = 2;
  o.client.worker_wait = 10s;
  o.broker_heartbeat = 1000ms;  // as if an earlier job heard ALIVE: no extra HEARTBEAT (C3)
  return o;
}

// A DELIVER payload whose entries are values first*10, (first+1)*10, ...
Bytes values(std::uint64_t first, std::uint32_t count) {
  msgpack::sbuffer buffer;
  msgpack::packer<msgpack::sbuffer> p(buffer);
  p.pack_array(count);
  for (std::uint32_t i = 0; i < count; ++i) {
    entry::begin_value(p);
    p.pack(static_cast<std::int64_t>((first + i) * 10));
  }
  return Bytes::copy(buffer.data(), buffer.size());
}

// What the core sent, decoded back.
struct Sent {
  wire::Message message;
  std::optional<Bytes> payload;
};

struct Harness {
  JobCore core;

  explicit Harness(JobCoreOptions o = options(), TimePoint now = t0)
      : core(kJob, "m.square", std::move(o), now) {}

  std::vector<Sent> take() {
    std::vector<wire::Outgoing> out;
    core.take_outbox(out);
    std::vector<Sent> sent;
    for (wire::Outgoing& o : out) {
      CHECK(o.peer.empty());
      sent.push_back(Sent{wire::decode(o.header.data(), o.header.size()), std::move(o.payload)});
    }
    return sent;
  }
  // A message from the broker, as its frames arrive.
  void feed(const wire::Message& message, std::optional<Bytes> payload, TimePoint now) {
    const std::string header = wire::encode(message);
    core.on_message({}, header.data(), header.size(), payload ? &*payload : nullptr, now);
  }
  std::vector<JobCore::ItemResult> results() { return core.take_results(); }

  // Adds chunks while the core wants them, up to `chunks`, each of the items it asks for: by
  // the client's own packing rule (JobCore::fill), over an endless input 0, 1, 2, ...
  std::size_t fill(TimePoint now, std::size_t chunks = 1000) {
    std::size_t added = 0;
    while (added < chunks) {
      const std::uint32_t want = core.wanted();
      if (want == 0) break;
      std::int64_t next = static_cast<std::int64_t>(core.submitted_items());
      core.fill(
          [&](msgpack::sbuffer& buffer) {
            msgpack::pack(buffer, next++);
            return true;
          },
          now, want);
      ++added;
    }
    return added;
  }
  void deliver(std::uint64_t first, std::uint32_t count, std::uint64_t seq, TimePoint now,
               std::uint64_t job = kJob) {
    feed(wire::Deliver{job, first, count, "w1", 500, seq}, values(first, count), now);
  }
  void failed(std::uint64_t first, std::uint32_t count, std::optional<wire::Code> code,
              std::uint64_t seq, TimePoint now, std::string message = "why") {
    feed(wire::Failed{kJob, first, count, code, std::move(message), seq}, std::nullopt, now);
  }
};

template <class T>
std::vector<T> sent(const std::vector<Sent>& out) {
  std::vector<T> found;
  for (const auto& o : out) {
    if (const auto* m = std::get_if<T>(&o.message)) found.push_back(*m);
  }
  return found;
}

std::vector<std::uint64_t> firsts(const std::vector<Sent>& out) {
  std::vector<std::uint64_t> found;
  for (const auto& s : sent<wire::Submit>(out)) found.push_back(s.first);
  return found;
}

std::vector<std::uint64_t> indexes(const std::vector<JobCore::ItemResult>& results) {
  std::vector<std::uint64_t> found;
  for (const auto& r : results) found.push_back(r.index);
  return found;
}

}  // namespace

TEST_CASE("C1 start: chunks are submitted while the window has room, and no more") {
  JobCoreOptions o = options();
  o.client.window = 3;
  Harness h(o);
  CHECK(h.core.wanted() == 2);
  CHECK(h.fill(t0) == 3);
  CHECK(h.core.wanted() == 0);
  CHECK(h.core.open_chunks() == 3);
  h.deliver(0, 2, 1, t0 + 1ms);
  CHECK(h.core.wanted() == 2);  // a closed chunk frees its slot

  // The window's bytes bound it too: one chunk of a few bytes fills a 1-byte window.
  JobCoreOptions small = options();
  small.client.max_inflight_bytes = 1;
  Harness b(small);
  CHECK(b.fill(t0) == 1);
  CHECK(b.core.inflight_bytes() > 0);
}

TEST_CASE("C1 with hold, a chunk keeps its window slot until the caller took all its items") {
  JobCoreOptions o = options();
  o.client.window = 1;
  o.hold = true;
  Harness h(o);
  CHECK(h.fill(t0) == 1);
  h.deliver(0, 2, 1, t0 + 1ms);
  CHECK(h.results().size() == 2);
  CHECK(h.core.wanted() == 0);  // answered, but not consumed
  h.core.consumed(0, t0 + 2ms);
  CHECK(h.core.wanted() == 0);
  h.core.consumed(1, t0 + 2ms);
  CHECK(h.core.wanted() == 2);
}

TEST_CASE("C2 a chunk built is one SUBMIT with the next first, the function and the wait") {
  Harness h;
  CHECK(h.fill(t0, 2) == 2);
  auto out = h.take();
  REQUIRE(out.size() == 2);
  const auto submits = sent<wire::Submit>(out);
  CHECK(submits[0].job_id == kJob);
  CHECK(submits[0].function == "m.square");
  CHECK(submits[0].first == 0);
  CHECK(submits[1].first == 2);
  CHECK(submits[1].count == 2);
  CHECK(submits[1].wait_ms == 10000);
  REQUIRE(out[1].payload);
  const msgpack::object_handle args =
      msgpack::unpack(out[1].payload->data(), out[1].payload->size());
  CHECK(args.get().as<std::vector<int>>() == std::vector<int>{2, 3});
}

TEST_CASE("C2 a filler packing many arguments a call makes the chunks fill makes") {
  // The same rule as fill's: up to wanted() arguments a chunk, a chunk closed once it holds
  // kMaxChunkBytes, the input ended by the filler; only the calls differ.
  JobCoreOptions o = options();
  o.client.chunk_size = 1000;
  o.heard_alive = true;  // chunks over 1,024 bytes go at once (C21)
  Harness h(o);
  std::int64_t next = 0;
  std::vector<std::uint32_t> asked;
  auto ints = [&](msgpack::sbuffer& buffer, std::uint32_t max_items, std::size_t max_bytes,
                  bool& ended) {
    asked.push_back(max_items);
    std::uint32_t count = 0;
    while (count < max_items && buffer.size() < max_bytes) {
      if (next == 2500) {
        ended = true;
        break;
      }
      msgpack::pack(buffer, next++);
      ++count;
    }
    return count;
  };
  h.core.fill_many(ints, t0);
  auto out = h.take();
  auto submits = sent<wire::Submit>(out);
  REQUIRE(submits.size() == 3);
  CHECK(submits[0].count == 1000);
  CHECK(submits[1].first == 1000);
  CHECK(submits[2].first == 2000);
  CHECK(submits[2].count == 500);
  CHECK(asked == std::vector<std::uint32_t>{1000, 1000, 1000});
  REQUIRE(out[2].payload);
  const msgpack::object_handle args =
      msgpack::unpack(out[2].payload->data(), out[2].payload->size());
  CHECK(args.get().via.array.size == 500);
  CHECK(args.get().via.array.ptr[499].as<int>() == 2499);
  CHECK(h.core.wanted() == 0);  // the input ended
  h.deliver(0, 1000, 1, t0 + 1ms);
  h.deliver(1000, 1000, 2, t0 + 1ms);
  h.deliver(2000, 500, 3, t0 + 1ms);
  CHECK(h.core.done());

  // A chunk closes at kMaxChunkBytes: 10,000-byte strings go five a chunk (the fifth crosses).
  Harness big(o);
  const std::string text(10000, 'x');
  int strings = 0;
  big.core.fill_many(
      [&](msgpack::sbuffer& buffer, std::uint32_t max_items, std::size_t max_bytes, bool& ended) {
        std::uint32_t count = 0;
        while (count < max_items && buffer.size() < max_bytes) {
          if (strings == 12) {
            ended = true;
            break;
          }
          msgpack::pack(buffer, text);
          ++strings;
          ++count;
        }
        return count;
      },
      t0);
  submits = sent<wire::Submit>(big.take());
  REQUIRE(submits.size() == 3);
  CHECK(submits[0].count == 5);
  CHECK(submits[1].count == 5);
  CHECK(submits[2].count == 2);
}

TEST_CASE("results taken stay readable until the next take, while later answers arrive") {
  // The items point into their answers, which the core keeps for the batch last taken: no
  // reference count per item (and the answers' room is reused once nothing points into it).
  JobCoreOptions o = options();
  o.client.window = 20;
  Harness h(o);
  CHECK(h.fill(t0, 6) == 6);
  h.take();
  const Bytes a = values(0, 2), b = values(2, 2), c = values(4, 2);
  const wire::DeliverPart parts[] = {
      {0, 2, "w1", 5, 1, &a}, {2, 2, "w2", 6, 2, &b}, {4, 2, "w3", 7, 3, &c}};
  wire::Batch batch = wire::encode_delivers(kJob, parts, 3);
  Bytes payload(batch.payload);
  h.core.on_message({}, batch.header.data(), batch.header.size(), &payload, t0 + 1ms);
  const auto first = h.results();
  REQUIRE(first.size() == 6);
  // Two more answers arrive (reusing what they can) before the first batch is read.
  h.deliver(6, 2, 4, t0 + 2ms);
  h.deliver(8, 2, 5, t0 + 3ms);
  for (std::size_t i = 0; i < first.size(); ++i) {
    CHECK(first[i].value->as<int>() == static_cast<int>(i * 10));
    CHECK(*first[i].worker == std::string("w") + std::to_string(i / 2 + 1));
  }
  const auto second = h.results();
  REQUIRE(second.size() == 4);
  h.deliver(10, 2, 6, t0 + 4ms);
  for (std::size_t i = 0; i < second.size(); ++i) {
    CHECK(second[i].value->as<int>() == static_cast<int>((i + 6) * 10));
    CHECK(*second[i].worker == "w1");
  }
  CHECK(indexes(h.results()) == std::vector<std::uint64_t>{10, 11});
}

TEST_CASE("C24 SUBMIT names batch, and a DELIVERS is read as its DELIVERs in order") {
  Harness h;
  CHECK(h.fill(t0, 3) == 3);
  const auto submits = sent<wire::Submit>(h.take());
  REQUIRE(submits.size() == 3);
  CHECK(submits[0].features == std::vector<std::string>{"batch"});
  // Chunks [2, 4) and [0, 2) in one message, seqs 1 and 2, from two workers.
  const Bytes a = values(2, 2), b = values(0, 2);
  const wire::DeliverPart parts[] = {{2, 2, "w1", 5, 1, &a}, {0, 2, "w2", 6, 2, &b}};
  wire::Batch batch = wire::encode_delivers(kJob, parts, 2);
  h.core.on_message({}, batch.header.data(), batch.header.size(), nullptr, t0);  // no payload
  CHECK(h.results().empty());
  Bytes payload(batch.payload);
  h.core.on_message({}, batch.header.data(), batch.header.size(), &payload, t0 + 1ms);
  auto results = h.results();
  CHECK(indexes(results) == std::vector<std::uint64_t>{2, 3, 0, 1});
  CHECK(results[0].value->as<int>() == 20);
  CHECK(results[2].value->as<int>() == 0);
  CHECK(results[0].answer->worker == "w1");
  CHECK(results[2].answer->worker == "w2");
  CHECK(results[3].answer->elapsed_us == 6);
  CHECK(h.core.seen() == 2);
  CHECK(h.core.open_chunks() == 1);
  // The same again (a resent copy): C6 drops its items.
  h.core.on_message({}, batch.header.data(), batch.header.size(), &payload, t0 + 2ms);
  CHECK(h.results().empty());
  // Sizes that do not add up: none of its parts is read.
  const Bytes c = values(4, 2);
  const wire::DeliverPart bad[] = {{4, 2, "w1", 5, 3, &c}};
  wire::Batch short_batch = wire::encode_delivers(kJob, bad, 1);
  Bytes cut(short_batch.payload.substr(0, short_batch.payload.size() - 1));
  h.core.on_message({}, short_batch.header.data(), short_batch.header.size(), &cut, t0 + 3ms);
  CHECK(h.results().empty());
  CHECK(h.core.seen() == 2);
  // Another job's (C20): ignored.
  wire::Batch other = wire::encode_delivers(kJob + 1, bad, 1);
  Bytes other_payload(other.payload);
  h.core.on_message({}, other.header.data(), other.header.size(), &other_payload, t0 + 4ms);
  CHECK(h.results().empty());
  Bytes whole(short_batch.payload);
  h.core.on_message({}, short_batch.header.data(), short_batch.header.size(), &whole, t0 + 5ms);
  CHECK(indexes(h.results()) == std::vector<std::uint64_t>{4, 5});
  CHECK(h.core.seen() == 3);

  // A client told not to (ClientOptions::batch false) names no features: one DELIVER each.
  JobCoreOptions o = options();
  o.client.batch = false;
  Harness plain(o);
  plain.fill(t0, 1);
  const auto plain_submits = sent<wire::Submit>(plain.take());
  REQUIRE(plain_submits.size() == 1);
  CHECK(plain_submits[0].features.empty());
}

TEST_CASE("C3 the first SUBMIT of a client that never heard ALIVE is followed by a HEARTBEAT") {
  JobCoreOptions o = options();
  o.broker_heartbeat = 0ms;
  Harness h(o);
  h.fill(t0, 2);
  auto out = h.take();
  REQUIRE(out.size() == 3);
  CHECK(std::holds_alternative<wire::Submit>(out[0].message));
  const auto& beat = std::get<wire::Heartbeat>(out[1].message);
  CHECK(beat.job_id == kJob);
  CHECK(beat.open == std::vector<std::uint64_t>{0});
  CHECK(std::holds_alternative<wire::Submit>(out[2].message));
  CHECK(h.core.broker_heartbeat() == 0ms);
  h.feed(wire::Alive{9, 100, 3}, std::nullopt, t0 + 1ms);
  CHECK(h.core.broker_heartbeat() == 100ms);  // the driver keeps it for the next job

  Harness known;  // a client that heard ALIVE before: no extra HEARTBEAT
  known.fill(t0, 2);
  CHECK(sent<wire::Heartbeat>(known.take()).empty());
}

TEST_CASE("C4 any message from the broker that decodes restarts the silence clock") {
  Harness h;
  h.fill(t0, 1);
  h.feed(wire::Bye{"broker shutting down"}, std::nullopt, t0 + 20s);
  h.core.on_tick(t0 + 35s);
  CHECK_FALSE(h.core.failed());
  h.feed(wire::Deliver{kJob + 1, 0, 1, "w", 1, 1}, values(0, 1), t0 + 40s);  // other job
  h.core.on_tick(t0 + 60s);
  CHECK_FALSE(h.core.failed());
  h.core.on_tick(t0 + 70s);
  CHECK(h.core.failed());
}

TEST_CASE("C5 a DELIVER hands each entry over as its item and closes a complete chunk") {
  Harness h;
  h.fill(t0, 2);
  h.deliver(2, 2, 1, t0 + 1ms);
  auto results = h.results();
  REQUIRE(results.size() == 2);
  CHECK(results[0].index == 2);
  REQUIRE(results[0].value != nullptr);
  CHECK(results[0].value->as<int>() == 20);
  CHECK(results[1].value->as<int>() == 30);
  CHECK(results[0].answer->worker == "w1");
  CHECK(results[0].answer->elapsed_us == 500);
  CHECK_FALSE(results[0].last_in_message);
  CHECK(results[1].last_in_message);
  CHECK(h.core.seen() == 1);
  CHECK(h.core.open_chunks() == 1);
  CHECK(h.core.delivered_items() == 2);

  // An entry [1, message] is that item's error.
  msgpack::sbuffer buffer;
  msgpack::packer<msgpack::sbuffer> p(buffer);
  p.pack_array(2);
  entry::pack_error(p, "boom");
  entry::pack_nil(p);
  h.feed(wire::Deliver{kJob, 0, 2, "w2", 7, 2}, Bytes::copy(buffer.data(), buffer.size()),
         t0 + 2ms);
  results = h.results();
  REQUIRE(results.size() == 2);
  CHECK(results[0].value == nullptr);
  CHECK(*results[0].error == "boom");
  CHECK(results[1].value != nullptr);
  CHECK(h.core.open_chunks() == 0);

  h.core.end_input(t0 + 3ms);
  CHECK(h.core.done());
}

TEST_CASE("C6 a late RESULT for an item already delivered is dropped") {
  Harness h;
  h.fill(t0, 2);
  // A split re-run delivers part of chunk 0, then the whole chunk arrives again.
  h.deliver(1, 1, 1, t0 + 1ms);
  CHECK(indexes(h.results()) == std::vector<std::uint64_t>{1});
  h.deliver(0, 2, 2, t0 + 2ms);
  CHECK(indexes(h.results()) == std::vector<std::uint64_t>{0});
  h.deliver(0, 2, 3, t0 + 3ms);  // the chunk is closed: nothing
  CHECK(h.results().empty());
  h.failed(0, 2, wire::Code::WorkerLost, 4, t0 + 4ms);  // neither as a failure
  CHECK(h.results().empty());
  CHECK(h.core.delivered_items() == 2);
  CHECK(h.core.seen() == 4);

  h.failed(2, 1, wire::Code::WorkerLost, 5, t0 + 5ms);  // the first answer wins
  h.deliver(2, 2, 6, t0 + 6ms);
  const auto results = h.results();
  CHECK(indexes(results) == std::vector<std::uint64_t>{2, 3});
  CHECK(results[0].value == nullptr);
  CHECK(results[1].value != nullptr);
}

TEST_CASE("C7 a DELIVER whose payload is not an array of count entries fails every item") {
  Harness h;
  h.fill(t0, 2);
  h.feed(wire::Deliver{kJob, 0, 2, "w1", 1, 1}, values(0, 1), t0 + 1ms);
  auto results = h.results();
  REQUIRE(results.size() == 2);
  CHECK(results[0].value == nullptr);
  CHECK(*results[0].error == "result does not hold 2 entries");
  CHECK(results[0].answer->worker == "w1");
  h.feed(wire::Deliver{kJob, 2, 2, "w1", 1, 2}, Bytes(std::string("\xc1")), t0 + 2ms);
  results = h.results();
  REQUIRE(results.size() == 2);
  CHECK(results[1].error->rfind("unreadable result", 0) == 0);
}

TEST_CASE("C8 a FAILED fails the items of its range with its message, or its code's name") {
  Harness h;
  h.fill(t0, 2);
  h.failed(0, 2, wire::Code::WorkerLost, 3, t0 + 1ms, "lost 3 times");
  auto results = h.results();
  REQUIRE(results.size() == 2);
  CHECK(results[0].value == nullptr);
  CHECK(*results[0].error == "lost 3 times");
  CHECK(results[1].answer->worker.empty());
  CHECK(h.core.seen() == 3);
  h.failed(2, 2, std::nullopt, 0, t0 + 2ms, "");  // a code from a later peer, no message
  results = h.results();
  REQUIRE(results.size() == 2);
  CHECK(*results[0].error == "unknown");
  CHECK(h.core.seen() == 3);  // seq 0 leaves seen alone
  CHECK_FALSE(h.core.failed());
}

TEST_CASE("C8 a failed item carries its FAILED's code; a function's own error carries none") {
  JobCoreOptions o = options();
  o.client.chunk_size = 1;
  Harness h(o);
  h.fill(t0, 3);
  h.failed(0, 1, wire::Code::Timeout, 1, t0 + 1ms, "ran longer than 2 s");
  h.failed(1, 1, wire::Code::WorkerLost, 2, t0 + 2ms, "worker lost 3 times");
  msgpack::sbuffer buffer;
  msgpack::packer<msgpack::sbuffer> p(buffer);
  p.pack_array(1);
  entry::pack_error(p, "boom");
  h.feed(wire::Deliver{kJob, 2, 1, "w1", 500, 3}, Bytes::copy(buffer.data(), buffer.size()),
         t0 + 3ms);
  const auto results = h.results();
  REQUIRE(results.size() == 3);
  CHECK(results[0].answer->code == "timeout");
  CHECK(results[1].answer->code == "worker_lost");
  CHECK(results[2].value == nullptr);
  CHECK(*results[2].error == "boom");
  CHECK(results[2].answer->code.empty());
}

TEST_CASE("C21 a chunk over 1,024 bytes waits for the first ALIVE, or a RESYNC, to be sent") {
  for (const bool by_alive : {true, false}) {
    CAPTURE(by_alive);
    Harness h;  // has never heard ALIVE
    const std::string big(600, 'x');
    h.core.fill(
        [&](msgpack::sbuffer& buffer) {
          msgpack::pack(buffer, big);
          return true;
        },
        t0, 2);
    CHECK(h.core.submitted_items() == 2);
    CHECK(sent<wire::Submit>(h.take()).empty());  // held back
    CHECK(h.core.wanted() == 0);                  // and no further input meanwhile
    h.core.on_tick(t0 + 1s);
    const auto beats = sent<wire::Heartbeat>(h.take());
    REQUIRE(beats.size() == 1);
    CHECK(beats[0].open.empty());  // not in HEARTBEAT's open
    if (by_alive) {
      h.feed(wire::Alive{9, 1000, 3, 1 << 20}, std::nullopt, t0 + 1s + 1ms);
    } else {
      h.feed(wire::Resync{kJob, 9}, std::nullopt, t0 + 1s + 1ms);  // an older broker
    }
    const auto out = h.take();
    CHECK(firsts(out) == std::vector<std::uint64_t>{0});
    CHECK(h.core.wanted() > 0);
  }
}

TEST_CASE("C22 items of a chunk over the broker's message limit fail with code too_large") {
  JobCoreOptions o = options();
  o.heard_alive = true;
  o.broker_max_message = 4;  // less than any chunk: the array header alone takes 5 bytes
  Harness h(o);
  h.fill(t0, 1);
  const auto results = h.results();
  REQUIRE(results.size() == 2);
  CHECK(results[0].error->find("exceeds the broker's --max-message-bytes") != std::string::npos);
  CHECK(results[0].answer->code == "too_large");
  CHECK(results[1].answer->code == "too_large");
  CHECK(sent<wire::Submit>(h.take()).empty());
}

TEST_CASE("C9 FAILED unknown_function fails the job") {
  Harness h;
  h.fill(t0, 1);
  h.failed(0, 0, wire::Code::UnknownFunction, 0, t0 + 1ms, "no worker provides m.square");
  REQUIRE(h.core.failed());
  CHECK(h.core.failure()->kind == JobCore::Failure::Kind::UnknownFunction);
  CHECK(h.core.failure()->message == "no worker provides m.square");
  CHECK(h.core.wanted() == 0);
  CHECK(h.core.next_deadline(t0) == TimePoint::max());
}

TEST_CASE("C10 an over_limit chunk waits: out of HEARTBEAT's open, not resent by RESYNC") {
  Harness h;
  h.fill(t0, 3);
  const std::size_t held = h.core.inflight_bytes() * 2 / 3;
  h.take();
  h.failed(4, 2, wire::Code::OverLimit, 0, t0 + 1ms, "over 1 MiB");
  CHECK_FALSE(h.core.failed());
  CHECK(h.results().empty());
  CHECK(h.core.wanted() == 0);  // no new chunk while one waits
  h.core.on_tick(t0 + 1s);
  auto out = h.take();
  const auto beats = sent<wire::Heartbeat>(out);
  REQUIRE(beats.size() == 1);
  CHECK(beats[0].open == std::vector<std::uint64_t>{0, 2});
  h.feed(wire::Resync{kJob}, std::nullopt, t0 + 1s);
  CHECK(firsts(h.take()) == std::vector<std::uint64_t>{0, 2});
  // The window's bytes drop to what the broker held: after the refused chunk is resent and
  // two chunks close, only as many bytes as it held go out again.
  h.deliver(0, 2, 1, t0 + 2s);
  CHECK(firsts(h.take()) == std::vector<std::uint64_t>{4});
  h.deliver(2, 2, 2, t0 + 2s);
  CHECK(h.core.inflight_bytes() < held);
  CHECK(h.fill(t0 + 2s) == 1);  // not the window's 255: its bytes are down to `held`
}

TEST_CASE("C11 an over_limit chunk is resent at once when answers crossed the refusal") {
  Harness h;
  h.fill(t0, 2);
  h.take();
  h.deliver(0, 2, 1, t0 + 1ms);  // chunk 0 answered after chunk 2 was sent
  h.failed(2, 2, wire::Code::OverLimit, 0, t0 + 2ms);
  CHECK_FALSE(h.core.failed());
  CHECK(firsts(h.take()) == std::vector<std::uint64_t>{2});
}

TEST_CASE("C11 a chunk refused while the broker holds nothing else fails the job") {
  Harness h;
  h.fill(t0, 1);
  h.failed(0, 2, wire::Code::OverLimit, 0, t0 + 1ms, "more than 10 bytes");
  REQUIRE(h.core.failed());
  CHECK(h.core.failure()->kind == JobCore::Failure::Kind::Refused);
  CHECK(h.core.failure()->code == "over_limit");
  CHECK(h.core.failure()->message.find("refused a chunk of") != std::string::npos);
  CHECK(h.core.failure()->message.find("more than 10 bytes") != std::string::npos);
}

TEST_CASE("C12 an over_limit chunk is resent after answers arrive, one per closed chunk") {
  Harness h;
  h.fill(t0, 4);
  h.take();
  h.failed(4, 2, wire::Code::OverLimit, 0, t0 + 1ms);
  h.failed(6, 2, wire::Code::OverLimit, 0, t0 + 1ms);
  h.deliver(0, 1, 1, t0 + 2ms);  // part of a chunk: nothing freed yet
  CHECK(h.take().empty());
  h.deliver(1, 1, 2, t0 + 3ms);
  CHECK(firsts(h.take()) == std::vector<std::uint64_t>{4});
  h.deliver(2, 2, 3, t0 + 4ms);
  CHECK(firsts(h.take()) == std::vector<std::uint64_t>{6});
}

TEST_CASE("C13 RESYNC resends every chunk not fully answered, unchanged") {
  Harness h;
  h.fill(t0, 3);
  const auto original = h.take();
  h.deliver(0, 2, 1, t0 + 1ms);
  h.deliver(2, 1, 2, t0 + 1ms);                            // chunk 2 half answered: still open
  h.feed(wire::Resync{kJob + 1}, std::nullopt, t0 + 2ms);  // another job's
  CHECK(h.take().empty());
  h.feed(wire::Resync{kJob}, std::nullopt, t0 + 2ms);
  const auto out = h.take();
  CHECK(firsts(out) == std::vector<std::uint64_t>{2, 4});
  CHECK(out[1].payload->view() == original[2].payload->view());
  CHECK(sent<wire::Submit>(out)[1].count == 2);
}

TEST_CASE("C13 a burst of RESYNCs answering queued heartbeats resends once, a later one again") {
  Harness h;
  h.fill(t0, 2);
  h.take();
  h.feed(wire::Resync{kJob}, std::nullopt, t0 + 1ms);
  CHECK(firsts(h.take()) == std::vector<std::uint64_t>{0, 2});
  for (int i = 0; i < 15; ++i) h.feed(wire::Resync{kJob}, std::nullopt, t0 + 2ms);
  CHECK(sent<wire::Submit>(h.take()).empty());
  // A heartbeat later the broker still lacks them (the resend was lost): resend again.
  h.feed(wire::Resync{kJob}, std::nullopt, t0 + 1ms + h.core.heartbeat());
  CHECK(firsts(h.take()) == std::vector<std::uint64_t>{0, 2});
}

TEST_CASE("C14 a broker instance change resubmits; the first ALIVE only sets it") {
  Harness h;
  h.fill(t0, 2);
  h.take();
  h.feed(wire::Alive{5, 250, 3}, std::nullopt, t0 + 1ms);
  CHECK(h.take().empty());
  CHECK(h.core.heartbeat() == 250ms);
  CHECK(h.core.instance() == 5);
  h.feed(wire::Alive{5, 0, 0}, std::nullopt, t0 + 2ms);  // 0 is ignored
  CHECK(h.core.heartbeat() == 250ms);
  CHECK(h.take().empty());
  h.feed(wire::Alive{6, 250, 3}, std::nullopt, t0 + 3ms);
  CHECK(firsts(h.take()) == std::vector<std::uint64_t>{0, 2});
}

TEST_CASE("C14 a RESYNC that names the new instance resubmits once, not again at its ALIVE") {
  Harness h;
  h.fill(t0, 2);
  h.take();
  h.feed(wire::Alive{5, 250, 3}, std::nullopt, t0 + 1ms);
  CHECK(h.take().empty());
  // The broker restarted: the first answer is a RESYNC (it knows no job), then an ALIVE.
  h.feed(wire::Resync{kJob, 6}, std::nullopt, t0 + 1s);
  CHECK(firsts(h.take()) == std::vector<std::uint64_t>{0, 2});
  CHECK(h.core.instance() == 6);
  h.feed(wire::Alive{6, 250, 3}, std::nullopt, t0 + 2s);
  CHECK(sent<wire::Submit>(h.take()).empty());
  // From an older broker (no instance in RESYNC) the ALIVE still tells the restart.
  Harness old;
  old.fill(t0, 2);
  old.take();
  old.feed(wire::Alive{5, 250, 3}, std::nullopt, t0 + 1ms);
  old.feed(wire::Resync{kJob}, std::nullopt, t0 + 1s);
  CHECK(firsts(old.take()) == std::vector<std::uint64_t>{0, 2});
  old.feed(wire::Alive{6, 250, 3}, std::nullopt, t0 + 2s);
  CHECK(firsts(old.take()) == std::vector<std::uint64_t>{0, 2});
}

TEST_CASE("C15 ERROR forbidden fails the job as refused, any other as a protocol error") {
  Harness h;
  h.fill(t0, 1);
  h.feed(wire::Error{wire::Code::Forbidden, "key not listed"}, std::nullopt, t0 + 1ms);
  REQUIRE(h.core.failed());
  CHECK(h.core.failure()->kind == JobCore::Failure::Kind::Refused);
  CHECK(h.core.failure()->code == "forbidden");
  CHECK(h.core.failure()->message ==
        "the broker at tcp://127.0.0.1:5555 refused this client: key not listed");

  Harness other;
  other.fill(t0, 1);
  other.feed(wire::Error{wire::Code::BadMessage, "what"}, std::nullopt, t0 + 1ms);
  REQUIRE(other.core.failed());
  CHECK(other.core.failure()->kind == JobCore::Failure::Kind::Protocol);
  CHECK(other.core.failure()->message == "broker refused a message: bad_message: what");
}

TEST_CASE("C16 BYE from the broker changes nothing: the job goes on") {
  Harness h;
  h.fill(t0, 2);
  h.take();
  h.feed(wire::Bye{"broker shutting down"}, std::nullopt, t0 + 1ms);
  CHECK(h.take().empty());
  CHECK_FALSE(h.core.failed());
  CHECK(h.core.open_chunks() == 2);
}

TEST_CASE("C17 a HEARTBEAT goes when nothing was sent for an interval, with seen and open") {
  Harness h;
  h.fill(t0, 2);
  h.take();
  CHECK(h.core.next_deadline(t0) == t0 + 1000ms);
  h.core.on_tick(t0 + 999ms);
  CHECK(h.take().empty());
  h.deliver(0, 2, 4, t0 + 500ms);
  h.core.on_tick(t0 + 1000ms);
  const auto beats = sent<wire::Heartbeat>(h.take());
  REQUIRE(beats.size() == 1);
  CHECK(beats[0].job_id == kJob);
  CHECK(beats[0].seen == 4);
  CHECK(beats[0].open == std::vector<std::uint64_t>{2});
  CHECK(h.core.next_deadline(t0) == t0 + 2000ms);
  // A SUBMIT counts as something sent.
  h.fill(t0 + 1500ms);
  h.take();
  h.core.on_tick(t0 + 2000ms);
  CHECK(sent<wire::Heartbeat>(h.take()).empty());
}

TEST_CASE("C18 the broker-silence timeout fails the job with a clear error") {
  JobCoreOptions o = options();
  o.client.timeout = 5s;
  Harness h(o);
  h.fill(t0, 3);
  h.core.on_tick(t0 + 4999ms);
  CHECK_FALSE(h.core.failed());
  h.core.on_tick(t0 + 5s);
  REQUIRE(h.core.failed());
  CHECK(h.core.failure()->kind == JobCore::Failure::Kind::Timeout);
  CHECK(h.core.failure()->message ==
        "no reply from the broker at tcp://127.0.0.1:5555 for 5.0 s (is seppo-broker running "
        "there?); 3 chunks of m.square unanswered");
}

TEST_CASE("C18 time in which the caller does not read is not the broker's silence") {
  JobCoreOptions o = options();
  o.client.timeout = 5s;
  Harness h(o);
  h.fill(t0, 1);
  h.core.pause(t0 + 1s);
  CHECK(h.core.next_deadline(t0) == TimePoint::max());
  h.core.on_tick(t0 + 60s);
  CHECK_FALSE(h.core.failed());
  h.core.resume(t0 + 61s);
  h.core.on_tick(t0 + 64s);
  CHECK_FALSE(h.core.failed());
  h.core.on_tick(t0 + 65s);
  CHECK(h.core.failed());
}

TEST_CASE("C19 DONE goes once when the job closes, and only if something was submitted") {
  Harness h;
  h.fill(t0, 1);
  h.take();
  h.core.close(t0 + 1ms);
  h.core.close(t0 + 2ms);
  const auto out = h.take();
  REQUIRE(out.size() == 1);
  CHECK(std::get<wire::Done>(out[0].message).job_id == kJob);
  CHECK(h.core.closed());
  h.deliver(0, 2, 1, t0 + 3ms);  // after closing, nothing more reaches the caller
  CHECK(h.results().empty());

  Harness empty;
  empty.core.end_input(t0);
  CHECK(empty.core.done());
  empty.core.close(t0);
  CHECK(empty.take().empty());

  Harness failed;  // a failed job is forgotten by the broker too
  failed.fill(t0, 1);
  failed.take();
  failed.feed(wire::Error{wire::Code::BadMessage, "x"}, std::nullopt, t0);
  failed.core.close(t0);
  CHECK(sent<wire::Done>(failed.take()).size() == 1);
}

TEST_CASE("C20 messages for other jobs are ignored") {
  Harness h;
  h.fill(t0, 1);
  h.take();
  h.deliver(0, 2, 1, t0 + 1ms, kJob + 1);
  h.feed(wire::Failed{kJob + 1, 0, 0, wire::Code::UnknownFunction, "x", 0}, std::nullopt, t0 + 1ms);
  h.feed(wire::Task{1, "m.square", 1}, Bytes(std::string("\x91\x01", 2)), t0 + 1ms);
  CHECK(h.results().empty());
  CHECK(h.take().empty());
  CHECK_FALSE(h.core.failed());
  CHECK(h.core.seen() == 0);
  CHECK(h.core.open_chunks() == 1);
}

TEST_CASE("§10 a chunk split after a worker loss arrives item by item and closes with the last") {
  JobCoreOptions o = options();
  o.client.chunk_size = 3;
  o.client.window = 1;
  Harness h(o);
  h.fill(t0);
  h.take();
  h.deliver(2, 1, 1, t0 + 1ms);
  h.deliver(0, 1, 2, t0 + 2ms);
  CHECK(h.core.open_chunks() == 1);
  CHECK(h.core.wanted() == 0);
  h.deliver(1, 1, 3, t0 + 3ms);
  CHECK(indexes(h.results()) == std::vector<std::uint64_t>{2, 0, 1});
  CHECK(h.core.open_chunks() == 0);
  CHECK(h.core.wanted() == 3);
}

TEST_CASE("§10 a poison item's worker_lost fails that item alone; its chunk's others arrive") {
  JobCoreOptions o = options();
  o.client.chunk_size = 3;
  Harness h(o);
  h.fill(t0, 1);
  h.take();
  h.deliver(0, 1, 1, t0 + 1ms);
  h.failed(1, 1, wire::Code::WorkerLost, 2, t0 + 2ms, "worker lost 3 times running item 1");
  h.deliver(2, 1, 3, t0 + 3ms);
  const auto results = h.results();
  REQUIRE(results.size() == 3);
  CHECK(results[0].value != nullptr);
  CHECK(results[1].value == nullptr);
  CHECK(*results[1].error == "worker lost 3 times running item 1");
  CHECK(results[2].value != nullptr);
  h.core.end_input(t0 + 4ms);
  CHECK(h.core.done());
  CHECK_FALSE(h.core.failed());
}

// What a block sink's reader sees: each item's value (or -1 for an error) by index.
std::map<std::uint64_t, std::int64_t> block_items(const std::vector<detail::Block>& blocks) {
  std::map<std::uint64_t, std::int64_t> out;
  for (const detail::Block& b : blocks) {
    client::each_item(b, [&](const Item& item) {
      CHECK(out.count(item.index) == 0);
      out[item.index] = item.value != nullptr ? item.value->as<std::int64_t>() : -1;
    });
  }
  return out;
}

TEST_CASE("with blocks, a chunk answered whole goes over unread; parts and duplicates as before") {
  JobCoreOptions o = options();
  o.client.chunk_size = 3;
  o.client.window = 2;
  o.blocks = true;
  o.hold = true;
  Harness h(o);
  h.fill(t0, 2);  // items 0-2 and 3-5
  h.take();
  std::vector<detail::Block> blocks;

  // A whole chunk: one block, no item, the window place kept until it is consumed.
  h.deliver(3, 3, 1, t0 + 1ms);
  CHECK(h.results().empty());
  h.core.take_blocks(blocks);
  REQUIRE(blocks.size() == 1);
  CHECK(blocks[0].first == 3);
  CHECK(blocks[0].count == 3);
  CHECK(blocks[0].worker == "w1");
  CHECK(blocks[0].chunk_elapsed_us == 500);
  CHECK(block_items(blocks) == std::map<std::uint64_t, std::int64_t>{{3, 30}, {4, 40}, {5, 50}});
  CHECK(h.core.delivered_items() == 3);
  CHECK(h.core.open_chunks() == 1);
  CHECK(h.core.wanted() == 0);
  h.core.consumed(3, 3, t0 + 1ms);
  CHECK(h.core.wanted() == 3);
  // Its duplicate: nothing.
  h.deliver(3, 3, 2, t0 + 2ms);
  h.core.take_blocks(blocks);
  CHECK(blocks.empty());
  CHECK(h.results().empty());

  // A chunk split after a worker loss: each part not answered before is a block of its own...
  h.deliver(1, 1, 3, t0 + 3ms);
  h.core.take_blocks(blocks);
  CHECK(block_items(blocks) == std::map<std::uint64_t, std::int64_t>{{1, 10}});
  // ...and an answer overlapping what arrived goes item by item, without the duplicate.
  h.deliver(0, 3, 4, t0 + 4ms);
  h.core.take_blocks(blocks);
  CHECK(blocks.empty());
  CHECK(indexes(h.results()) == std::vector<std::uint64_t>{0, 2});
  CHECK(h.core.delivered_items() == 6);
  CHECK(h.core.open_chunks() == 0);
}

TEST_CASE("each_item reads a block as the core reads an answer: errors, unreadable") {
  detail::Block b;
  b.first = 10;
  b.count = 3;
  b.worker = "w9";
  msgpack::sbuffer buffer;
  msgpack::packer<msgpack::sbuffer> p(buffer);
  p.pack_array(3);
  entry::begin_value(p);
  p.pack(std::int64_t{-7});
  entry::pack_error(p, "boom");
  entry::begin_value(p);
  p.pack_array(1);
  p.pack(1);
  b.data = buffer.data();
  b.size = buffer.size();
  std::vector<std::string> seen;
  client::each_item(b, [&](const Item& item) {
    CHECK(*item.worker == "w9");
    CHECK(item.last_in_message == (item.index == 12));
    if (item.value == nullptr) {
      seen.push_back(std::to_string(item.index) + ":" + *item.error);
    } else {
      seen.push_back(std::to_string(item.index) + "=" +
                     std::to_string(item.value->type == msgpack::type::ARRAY
                                        ? 100
                                        : item.value->as<std::int64_t>()));
    }
  });
  CHECK(seen == std::vector<std::string>{"10=-7", "11:boom", "12=100"});

  b.count = 4;  // not an array of count entries: every item fails
  seen.clear();
  client::each_item(b, [&](const Item& item) { seen.push_back(*item.error); });
  CHECK(seen == std::vector<std::string>(4, "result does not hold 4 entries"));
  const char bad[] = "\xc1";
  b.data = bad;
  b.size = 1;
  b.count = 1;
  seen.clear();
  client::each_item(b, [&](const Item& item) { seen.push_back(*item.error); });
  REQUIRE(seen.size() == 1);
  CHECK(seen[0].rfind("unreadable result", 0) == 0);
}

TEST_CASE("C10 a refused chunk answered anyway closes and no longer blocks the input") {
  Harness h;
  h.fill(t0, 2);
  h.take();
  // A resubmission of chunk 2 was refused, but the broker held its first copy.
  h.failed(2, 2, wire::Code::OverLimit, 0, t0 + 1ms);
  CHECK(h.core.wanted() == 0);
  h.deliver(2, 2, 1, t0 + 2ms);
  CHECK(indexes(h.results()) == std::vector<std::uint64_t>{2, 3});
  h.deliver(0, 2, 2, t0 + 3ms);
  CHECK(h.take().empty());  // nothing refused is left to resend
  CHECK(h.core.wanted() == 2);
}

TEST_CASE(
    "C13 a client that never heard ALIVE follows the resubmissions of RESYNC with HEARTBEAT") {
  JobCoreOptions o = options();
  o.broker_heartbeat = 0ms;
  Harness h(o);
  h.fill(t0, 2);
  h.take();
  h.feed(wire::Resync{kJob}, std::nullopt, t0 + 1ms);
  auto out = h.take();
  REQUIRE(out.size() == 3);
  CHECK(firsts(out) == std::vector<std::uint64_t>{0, 2});
  CHECK(std::holds_alternative<wire::Heartbeat>(out[2].message));
  h.feed(wire::Alive{3, 100, 3}, std::nullopt, t0 + 2ms);
  h.feed(wire::Resync{kJob}, std::nullopt, t0 + 3ms);
  CHECK(sent<wire::Heartbeat>(h.take()).empty());  // now it knows the interval
}

TEST_CASE("C23 a resubmission after a restart keeps job, first, count and payload; answers once") {
  Harness h;
  h.fill(t0, 3);
  const auto original = sent<wire::Submit>(h.take());
  h.feed(wire::Alive{5, 250, 3}, std::nullopt, t0 + 1ms);
  h.take();
  // The broker restarted: a new broker binds the resubmitted chunks to the workers that kept
  // them running (docs/protocol.md §9.1) by exactly these fields.
  h.feed(wire::Resync{kJob, 6}, std::nullopt, t0 + 1s);
  const auto again = sent<wire::Submit>(h.take());
  REQUIRE(again.size() == original.size());
  for (std::size_t i = 0; i < again.size(); ++i) {
    CHECK(again[i].job_id == original[i].job_id);
    CHECK(again[i].first == original[i].first);
    CHECK(again[i].count == original[i].count);
  }
  // The kept run's answer, then a duplicate (a run crossing it): each item once.
  h.deliver(0, 2, 1, t0 + 2s);
  h.deliver(0, 2, 2, t0 + 2s);
  CHECK(h.results().size() == 2);
}

namespace {
// A pair of brokers (docs/protocol.md §15.4), heartbeat 1000 ms.
JobCoreOptions pair_of_brokers() {
  JobCoreOptions o = options();
  o.endpoint = "tcp://127.0.0.1:5555,tcp://127.0.0.1:5565";
  return o;
}
}  // namespace

TEST_CASE("C30 with several endpoints, silence for heartbeat × 3/2 moves to the next one") {
  Harness h(pair_of_brokers());
  h.fill(t0, 2);
  h.take();
  h.deliver(0, 2, 1, t0 + 100ms);
  CHECK(h.core.next_deadline(t0 + 100ms) <= t0 + 1600ms);
  h.core.on_tick(t0 + 1599ms);
  CHECK(!h.core.take_switch());
  h.take();
  h.core.on_tick(t0 + 1600ms);
  CHECK(h.core.take_switch());
  // A HEARTBEAT for the next broker at once: it does not know the job and answers RESYNC, on
  // which the open chunk goes to it unchanged (C13).
  const auto out = h.take();
  REQUIRE(sent<wire::Heartbeat>(out).size() == 1);
  CHECK(sent<wire::Heartbeat>(out)[0].open == std::vector<std::uint64_t>{2});
  h.feed(wire::Resync{kJob, 99}, std::nullopt, t0 + 1601ms);
  CHECK(firsts(h.take()) == std::vector<std::uint64_t>{2});
  CHECK(!h.core.failed());
  // An endpoint that does not answer gets heartbeat / 2 before the next one.
  Harness quiet(pair_of_brokers());
  quiet.fill(t0, 1);
  quiet.core.on_tick(t0 + 1500ms);
  CHECK(quiet.core.take_switch());
  quiet.core.on_tick(t0 + 1999ms);
  CHECK(!quiet.core.take_switch());
  quiet.core.on_tick(t0 + 2000ms);
  CHECK(quiet.core.take_switch());
  // With one endpoint there is no list to move along.
  Harness one;
  one.fill(t0, 1);
  one.core.on_tick(t0 + 5s);
  CHECK(!one.core.take_switch());
}

TEST_CASE("C17 with several endpoints a HEARTBEAT goes every interval even while SUBMITs flow") {
  // Only a HEARTBEAT draws an answer: a client that only submits would hear nothing, and C30
  // would move it to the passive broker of a pair for no reason (review finding).
  Harness h(pair_of_brokers());
  h.fill(t0, 1);
  h.take();
  h.fill(t0 + 900ms, 1);  // a SUBMIT late in the interval
  h.take();
  CHECK(h.core.next_deadline(t0 + 900ms) <= t0 + 1000ms);
  h.core.on_tick(t0 + 1000ms);
  CHECK(sent<wire::Heartbeat>(h.take()).size() == 1);
  h.feed(wire::Alive{}, std::nullopt, t0 + 1001ms);
  h.core.on_tick(t0 + 1600ms);  // heard within failover_after: no move
  CHECK(!h.core.take_switch());
  // With one endpoint the SUBMIT is the sign of life, as before.
  Harness one;
  one.fill(t0, 1);
  one.take();
  one.fill(t0 + 900ms, 1);
  one.take();
  one.core.on_tick(t0 + 1000ms);
  CHECK(sent<wire::Heartbeat>(one.take()).empty());
}

TEST_CASE("C31 ERROR not_active moves to the next endpoint after heartbeat / 2, or fails alone") {
  Harness h(pair_of_brokers());
  h.fill(t0, 1);
  h.take();
  h.feed(wire::Error{wire::Code::NotActive, "backup, passive"}, std::nullopt, t0 + 10ms);
  CHECK(!h.core.failed());
  h.core.on_tick(t0 + 509ms);
  CHECK(!h.core.take_switch());
  h.core.on_tick(t0 + 510ms);
  CHECK(h.core.take_switch());
  Harness one;
  one.fill(t0, 1);
  one.feed(wire::Error{wire::Code::NotActive, "backup, passive"}, std::nullopt, t0 + 10ms);
  REQUIRE(one.core.failed());
  CHECK(one.core.failure()->message.find("give both brokers' endpoints") != std::string::npos);
}

// --- C25: SUBMITS (feature "submits", §4.20) ---

namespace {

// The chunks (first, count) the core sent, SUBMIT or SUBMITS, in order; and how many messages.
struct Submitted {
  std::vector<std::pair<std::uint64_t, std::uint64_t>> chunks;
  std::size_t submit = 0, submits = 0;
};
Submitted submitted(const std::vector<Sent>& out) {
  Submitted s;
  for (const Sent& o : out) {
    if (const auto* m = std::get_if<wire::Submit>(&o.message)) {
      ++s.submit;
      s.chunks.emplace_back(m->first, m->count);
    } else if (const auto* ms = std::get_if<wire::Submits>(&o.message)) {
      ++s.submits;
      REQUIRE(o.payload);
      const auto parts = wire::split(*ms, *o.payload);
      for (const auto& p : parts) s.chunks.emplace_back(p.submit.first, p.submit.count);
    }
  }
  return s;
}

wire::Alive alive_with(std::vector<std::string> features, std::uint64_t max_message = 1 << 20) {
  return wire::Alive{9, 1000, 3, max_message, std::move(features)};
}

}  // namespace

TEST_CASE(
    "C25 SUBMIT per chunk until an ALIVE names submits, then the chunks of a turn as one "
    "SUBMITS") {
  JobCoreOptions o = options();
  o.client.window = 4;
  Harness h(o);
  CHECK(h.fill(t0) == 4);
  auto s = submitted(h.take());
  CHECK(s.submit == 4);
  CHECK(s.submits == 0);
  // An ALIVE without the feature (an older broker): still one SUBMIT per chunk.
  h.feed(alive_with({"adopt", "batch"}), std::nullopt, t0 + 1ms);
  h.deliver(0, 2, 1, t0 + 2ms);
  h.deliver(2, 2, 2, t0 + 2ms);
  h.fill(t0 + 2ms);
  s = submitted(h.take());
  CHECK(s.submit == 2);
  CHECK(s.submits == 0);
  // One that names it: the refill after several answers leaves as one SUBMITS.
  h.feed(alive_with({"adopt", "batch", "submits"}), std::nullopt, t0 + 3ms);
  CHECK(h.core.broker_submits());
  h.deliver(4, 2, 3, t0 + 4ms);
  h.deliver(6, 2, 4, t0 + 4ms);
  h.deliver(8, 2, 5, t0 + 4ms);
  h.fill(t0 + 4ms);
  const auto out = h.take();
  s = submitted(out);
  CHECK(s.submit == 0);
  CHECK(s.submits == 1);
  CHECK(s.chunks ==
        std::vector<std::pair<std::uint64_t, std::uint64_t>>{{12, 2}, {14, 2}, {16, 2}});
  const auto m = sent<wire::Submits>(out);
  REQUIRE(m.size() == 1);
  CHECK(m[0].job_id == kJob);
  CHECK(m[0].function == "m.square");
  CHECK(m[0].wait_ms == 10000);
  CHECK(m[0].features == std::vector<std::string>{"batch"});
  // A lone chunk still goes as SUBMIT: nothing waits to fill a batch.
  h.deliver(10, 2, 6, t0 + 5ms);
  h.fill(t0 + 5ms);
  s = submitted(h.take());
  CHECK(s.submit == 1);
  CHECK(s.submits == 0);
  // A RESYNC's resubmission of every open chunk: one SUBMITS too.
  h.feed(wire::Resync{kJob, 9}, std::nullopt, t0 + 6ms);
  s = submitted(h.take());
  CHECK(s.submits == 1);
  CHECK(s.chunks.size() == 4);
  // Items arrive once each, as before.
  CHECK(h.core.delivered_items() == 12);
}

TEST_CASE("C25 after a broker restart, chunks go one a message until its ALIVE names submits") {
  JobCoreOptions o = options();
  o.client.window = 10;
  o.client.chunk_size = 1;
  Harness h(o);
  h.feed(wire::Alive{9, 1000, 3, 1 << 20, {"batch", "submits"}}, std::nullopt, t0);
  CHECK(h.fill(t0) == 10);
  auto s = submitted(h.take());
  CHECK(s.submits == 1);
  CHECK(s.chunks.size() == 10);
  // A RESYNC from another instance (the broker restarted, maybe an older one): the chunks go
  // again, one SUBMIT each.
  h.feed(wire::Resync{kJob, 10}, std::nullopt, t0 + 10ms);
  s = submitted(h.take());
  CHECK(s.submits == 0);
  CHECK(s.submit == 10);
  // Its ALIVE names submits: SUBMITS again for what is resent next.
  h.feed(wire::Alive{10, 1000, 3, 1 << 20, {"batch", "submits"}}, std::nullopt, t0 + 20ms);
  h.feed(wire::Resync{kJob, 10}, std::nullopt, t0 + 2s);
  s = submitted(h.take());
  CHECK(s.submits == 1);
  CHECK(s.submit == 0);
  // A broker that refuses SUBMITS as a bad message after all (replaced by an older one before
  // its ALIVE): the job goes on, everything open sent again one chunk a message.
  h.feed(wire::Error{wire::Code::BadMessage, "unknown message type 21"}, std::nullopt, t0 + 3s);
  CHECK_FALSE(h.core.failed());
  s = submitted(h.take());
  CHECK(s.submits == 0);
  CHECK(s.submit == 10);
  // Once: a second bad_message is an error of the job.
  h.feed(wire::Error{wire::Code::BadMessage, "still"}, std::nullopt, t0 + 4s);
  CHECK(h.core.failed());
}

TEST_CASE("C25 a SUBMITS holds at most 64 chunks and 64 KiB, or the broker's limit") {
  JobCoreOptions o = options();
  o.client.window = 200;
  o.client.chunk_size = 1;
  o.heard_alive = true;
  o.broker_submits = true;
  Harness h(o);
  CHECK(h.fill(t0) == 200);
  auto out = h.take();
  auto s = submitted(out);
  CHECK(s.submits == 4);  // 64 + 64 + 64 + 8
  CHECK(s.submit == 0);
  CHECK(s.chunks.size() == 200);
  for (std::size_t i = 0; i < s.chunks.size(); ++i) CHECK(s.chunks[i].first == i);
  for (const auto& m : sent<wire::Submits>(out)) {
    CHECK(m.chunks.size() <= wire::kMaxBatch * wire::kSubmitFields);
  }
  // A broker that takes at most 64 bytes a frame: each SUBMITS's payload within it.
  o.broker_max_message = 64;
  o.client.window = 40;
  Harness small(o);
  small.fill(t0);
  out = small.take();
  s = submitted(out);
  CHECK(s.chunks.size() == 40);
  CHECK(s.submits > 1);
  for (const Sent& sent_one : out) {
    if (std::holds_alternative<wire::Submits>(sent_one.message))
      CHECK(sent_one.payload->size() <= 64);
  }
  // A chunk larger than 64 KiB goes alone as SUBMIT.
  JobCoreOptions big = options();
  big.heard_alive = true;
  big.broker_submits = true;
  big.client.window = 3;
  Harness large(big);
  const std::string text(70000, 'x');
  for (int i = 0; i < 3; ++i) {
    msgpack::sbuffer buffer;
    msgpack::packer<msgpack::sbuffer> p(buffer);
    p.pack_array(1);
    p.pack(i == 1 ? text : std::string("y"));
    large.core.add_chunk(Bytes::copy(buffer.data(), buffer.size()), 1, t0);
  }
  s = submitted(large.take());
  CHECK(s.submit == 3);
  CHECK(s.chunks == std::vector<std::pair<std::uint64_t, std::uint64_t>>{{0, 1}, {1, 1}, {2, 1}});
}

TEST_CASE(
    "C25 per-chunk rules stay per chunk: deferral before ALIVE, a HEARTBEAT after its "
    "chunks, no SUBMITS with batch off, and a move to the other broker relearns") {
  // Before any ALIVE (C21, C3): small chunks go at once as SUBMIT, large ones wait.
  JobCoreOptions o = options();
  o.broker_heartbeat = 0ms;
  o.client.window = 3;
  o.client.chunk_size = 1;
  Harness h(o);
  const std::string text(2000, 'x');
  for (int i = 0; i < 3; ++i) {
    msgpack::sbuffer buffer;
    msgpack::packer<msgpack::sbuffer> p(buffer);
    p.pack_array(1);
    p.pack(i == 0 ? std::string("y") : text);
    h.core.add_chunk(Bytes::copy(buffer.data(), buffer.size()), 1, t0);
  }
  auto out = h.take();
  auto s = submitted(out);
  CHECK(s.submit == 1);
  CHECK(s.submits == 0);
  // The ALIVE naming submits releases the two deferred ones together, as one SUBMITS.
  h.feed(alive_with({"batch", "submits"}), std::nullopt, t0 + 1ms);
  out = h.take();
  s = submitted(out);
  CHECK(s.submits == 1);
  CHECK(s.chunks == std::vector<std::pair<std::uint64_t, std::uint64_t>>{{1, 1}, {2, 1}});
  // A HEARTBEAT sent in the turn that queued chunks leaves after them.
  h.deliver(0, 1, 1, t0 + 2ms);
  h.deliver(1, 1, 2, t0 + 2ms);
  h.fill(t0 + 2ms);
  h.core.on_tick(t0 + 5s);
  out = h.take();
  REQUIRE(out.size() == 2);
  CHECK(std::holds_alternative<wire::Submits>(out[0].message));
  CHECK(std::get<wire::Heartbeat>(out[1].message).open == std::vector<std::uint64_t>{2, 3, 4});

  // ClientOptions::batch false: neither DELIVERS nor SUBMITS.
  JobCoreOptions off = options();
  off.client.batch = false;
  off.client.window = 4;
  off.heard_alive = true;
  off.broker_submits = true;
  Harness plain(off);
  plain.fill(t0);
  s = submitted(plain.take());
  CHECK(s.submit == 4);
  CHECK(s.submits == 0);

  // A pair: after a move to the other broker, SUBMIT again until its ALIVE names submits.
  JobCoreOptions pair = options();
  pair.endpoint = "tcp://127.0.0.1:5555,tcp://127.0.0.1:5556";
  pair.client.window = 4;
  pair.heard_alive = true;
  pair.broker_submits = true;
  Harness moved(pair);
  moved.fill(t0);
  CHECK(submitted(moved.take()).submits == 1);
  // Chunks queued in the turn that moves: they go to the next broker as SUBMITs.
  moved.deliver(0, 2, 1, t0 + 1ms);
  moved.deliver(2, 2, 2, t0 + 1ms);
  moved.fill(t0 + 1ms);
  moved.core.on_tick(t0 + 10s);  // silence: C30 moves on
  CHECK(moved.core.take_switch());
  s = submitted(moved.take());
  CHECK(s.submit == 2);
  CHECK(s.submits == 0);
  CHECK_FALSE(moved.core.broker_submits());
  moved.feed(wire::Resync{kJob, 0}, std::nullopt, t0 + 10s + 1ms);
  s = submitted(moved.take());
  CHECK(s.submit == 4);
  CHECK(s.submits == 0);
}

TEST_CASE(
    "adaptive chunks: a job sends 8 chunks until their cost is known, and more as time passes") {
  JobCoreOptions o = options();
  o.client.chunk_size = 0;  // adaptive
  o.client.target_chunk_time = 10ms;
  o.client.window = 256;
  Harness h(o);
  CHECK(h.fill(t0) == 8);  // eight single items, not the whole window
  CHECK(h.core.submitted_items() == 8);
  CHECK(h.core.next_deadline(t0) == t0 + 1ms);  // when more may go, though nothing answered
  h.core.on_tick(t0 + 1ms);
  CHECK(h.fill(t0 + 1ms) == 8);  // 16 unanswered
  h.core.on_tick(t0 + 5ms);
  CHECK(h.fill(t0 + 5ms) == 256 - 16);  // after 5 ms the window is open, slow items or not
  CHECK(h.core.next_deadline(t0 + 5ms) > t0 + 6ms);

  // A step fills before it ticks (and after a pause): fill itself reads the clock it is given.
  Harness late(o);
  CHECK(late.fill(t0) == 8);
  std::int64_t next = 8;
  late.core.fill(
      [&](msgpack::sbuffer& buffer) {
        msgpack::pack(buffer, next++);
        return true;
      },
      t0 + 2ms);
  CHECK(late.core.submitted_items() == 32);  // 32 unanswered at 2 ms, no on_tick between
  // Once the input ended, the limit's growth wakes nobody.
  Harness ended(o);
  ended.core.fill([](msgpack::sbuffer&) { return false; }, t0);
  CHECK(ended.core.next_deadline(t0) > t0 + 100ms);
}

TEST_CASE(
    "adaptive chunks: sized from single items, they stay few until one of that size is measured") {
  JobCoreOptions o = options();
  o.client.chunk_size = 0;
  o.client.target_chunk_time = 10ms;
  o.client.window = 256;
  o.heard_alive = true;  // no chunk waits for ALIVE's size limit
  Harness h(o);
  CHECK(h.fill(t0) == 8);
  h.take();
  // A single item took 20 µs: chunks of 500 are asked for, but only up to 8 unanswered.
  h.feed(wire::Deliver{kJob, 0, 1, "w1", 20, 1}, values(0, 1), t0 + 100us);
  CHECK(h.core.wanted() == 500);
  CHECK(h.fill(t0 + 100us) == 1);
  // It took 60 µs, 0.12 µs an item: the estimate now asks for the largest chunks, of which
  // again one more may go (8 unanswered).
  h.feed(wire::Deliver{kJob, 8, 500, "w1", 60, 2}, values(8, 500), t0 + 200us);
  CHECK(h.core.wanted() == ChunkSizer::kMaxItems);
  CHECK(h.fill(t0 + 200us) == 1);
  CHECK(h.fill(t0 + 200us) == 0);
  // That chunk, closed at its byte limit (16,383 items), took 800 µs: the estimate rests on
  // a chunk as large as these items' chunks get; the window opens (before the time would).
  const auto big = static_cast<std::uint32_t>(h.core.submitted_items() - 508);
  CHECK(big < ChunkSizer::kMaxItems);
  h.feed(wire::Deliver{kJob, 508, big, "w1", 800, 3}, values(508, big), t0 + 1100us);
  CHECK(h.fill(t0 + 1100us) > 16);
}
