// Several tasks per message (issue 28, feature "batch", docs/protocol.md §4.17, §4.18): the
// codec, the broker's rows B56–B58 and the worker's W30–W32, with fake clocks and no sockets.
#include <doctest/doctest.h>

#include "seppo/error.hpp"
#include "seppo/msgpack.hpp"

#include "tests/unit/broker_harness.hpp"
#include "worker/session_core.hpp"

using namespace seppo;
using namespace std::chrono_literals;
using broker_test::items;
using broker_test::ok_results;

namespace {

wire::Message reread(const wire::Message& m) {
  const std::string header = wire::encode(m);
  return wire::decode(header.data(), header.size());
}

// A worker of m.f that speaks "batch" (and "adopt", as the C++ worker does), with `capacity`.
void batch_ready(broker_test::Harness& h, const std::string& worker, std::uint32_t capacity) {
  h.deliver(worker, wire::Ready{worker, "host", 1, capacity, {"m.f"}, "", {"adopt", "batch"}});
  h.deliver(worker, wire::Heartbeat{0, 0, {}});
}

// What left the broker for `peer`, raw (the TASKS's header and payload as they go out).
std::vector<wire::Outgoing> raw_to(broker::Core& core, const std::string& peer) {
  std::vector<wire::Outgoing> out;
  for (auto& o : broker::drain(core)) {
    if (o.peer == peer) out.push_back(std::move(o));
  }
  return out;
}

}  // namespace

TEST_CASE("TASKS and RESULTS round-trip, and their parts share the frame") {
  const std::string a = items(1), b = items(2, 3);
  const Bytes pa(a), pb(b);
  const wire::TaskPart parts[] = {{17, 1, 5, 0, &pa}, {18, 2, 5, 1, &pb}};
  wire::Batch batch = wire::encode_tasks("m.f", parts, 2);
  const wire::Message m = wire::decode(batch.header.data(), batch.header.size());
  const auto& tasks = std::get<wire::Tasks>(m);
  CHECK(tasks.function == "m.f");
  CHECK(tasks.tasks == std::vector<std::uint64_t>{17, 1, a.size(), 5, 0, 18, 2, b.size(), 5, 1});
  const Bytes payload(batch.payload);
  const auto split = wire::split(tasks, payload);
  REQUIRE(split.size() == 2);
  CHECK(split[0].task.task_id == 17);
  CHECK(split[1].task.count == 2);
  CHECK(split[1].task.first == 1);
  CHECK(split[0].payload.view() == a);
  CHECK(split[1].payload.view() == b);
  CHECK(split[1].payload.owner() == payload.owner());  // a slice, not a copy

  wire::Batch results = wire::encode_results({{wire::Result{17, 9, 0}, Bytes(ok_results(1))},
                                              {wire::Result{18, 4, 1}, Bytes(ok_results(2))}});
  const auto r =
      std::get<wire::Results>(wire::decode(results.header.data(), results.header.size()));
  const auto rs = wire::split(r, Bytes(results.payload));
  REQUIRE(rs.size() == 2);
  CHECK(rs[1].result.task_id == 18);
  CHECK(rs[1].result.elapsed_us == 4);
  CHECK(rs[1].result.items_failed == 1);
  CHECK(rs[1].payload.view() == ok_results(2));
  // The documented example (§4.17).
  CHECK(wire::encode(wire::Tasks{"m.f", {17, 1, 2, 0, 0, 18, 1, 2, 0, 0}}) ==
        std::string("\x94\x01\x12\xa3m.f\x9a\x11\x01\x02\x00\x00\x12\x01\x02\x00\x00", 18));
  CHECK(wire::encode(wire::Results{{17, 842, 0, 4, 18, 3, 1, 9}}) ==
        std::string("\x93\x01\x13\x98\x11\xcd\x03\x4a\x00\x04\x12\x03\x01\x09", 14));
}

TEST_CASE("TASKS and RESULTS refuse counts and sizes that do not fit their message") {
  // Not a whole number of groups, none, more than kMaxBatch: refused when decoded.
  CHECK_THROWS_AS(reread(wire::Tasks{"m.f", {1, 1, 1, 0}}), ProtocolError);
  CHECK_THROWS_AS(reread(wire::Tasks{"m.f", {}}), ProtocolError);
  CHECK_THROWS_AS(reread(wire::Results{std::vector<std::uint64_t>(4 * 65, 0)}), ProtocolError);
  CHECK_THROWS_AS(reread(wire::Tasks{"m.f", {1, 1ull << 32, 1, 0, 0}}), ProtocolError);
  // Sizes beyond the payload (a hostile size near 2^64 included) or short of it.
  const Bytes payload(std::string("\x91\x01\x91\x02", 4));
  CHECK_THROWS_AS(wire::split(wire::Tasks{"m.f", {1, 1, 2, 0, 0, 2, 1, ~0ull, 0, 0}}, payload),
                  ProtocolError);
  CHECK_THROWS_AS(wire::split(wire::Results{{1, 0, 0, 2}}, payload), ProtocolError);
  CHECK(wire::split(wire::Results{{1, 0, 0, 2, 2, 0, 0, 2}}, payload).size() == 2);
}

TEST_CASE("B58: TASKs one event queues for a worker that speaks batch leave as one TASKS") {
  broker_test::Harness h;
  batch_ready(h, "W1", 8);
  h.drain();
  // One-item chunks, each its own event drained before the next: each TASK goes alone (nothing
  // waits to fill a batch).
  std::vector<wire::Outgoing> singles;
  for (std::uint32_t i = 0; i < 3; ++i) {
    h.submit("C1", 1, "m.f", i, items(i), 1);
    for (auto& o : raw_to(h.core, "W1")) singles.push_back(std::move(o));
  }
  REQUIRE(singles.size() == 3);
  for (const auto& o : singles) {
    CHECK(std::holds_alternative<wire::Task>(wire::decode(o.header.data(), o.header.size())));
  }
  h.ready("W0", {"m.f"}, 8);  // an older worker: single TASKs
  // Its credit frees by a RESULTS of three: the tasks that one event sends it form one TASKS.
  for (std::uint32_t i = 3; i < 40; ++i) h.submit("C1", 1, "m.f", i, items(i), 1);
  // Queued together (the socket loop flushes after a burst of messages): W1's five go as one
  // TASKS, the older W0's eight as eight TASKs.
  const auto burst = h.drain();
  CHECK(broker_test::Harness::sent_to<wire::Task>(burst, "W0").size() == 8);
  CHECK(broker_test::Harness::sent_to<wire::Tasks>(burst, "W0").empty());
  CHECK(broker_test::Harness::sent_to<wire::Task>(burst, "W1").empty());
  CHECK(broker_test::Harness::sent_to<wire::Tasks>(burst, "W1").size() == 1);
  std::vector<std::uint64_t> held;
  for (const auto& o : singles) held.push_back(o.task_id);
  std::vector<wire::BatchedResult> answers;
  for (std::uint64_t id : held) answers.push_back({wire::Result{id, 3, 0}, Bytes(ok_results(1))});
  wire::Batch results = wire::encode_results(answers);
  broker::feed(h.core, "W1", results.header, Bytes(results.payload), h.now);
  const auto out = raw_to(h.core, "W1");
  REQUIRE(out.size() == 1);
  const auto tasks =
      std::get<wire::Tasks>(wire::decode(out[0].header.data(), out[0].header.size()));
  CHECK(tasks.tasks.size() == held.size() * wire::kTaskFields);
  CHECK(tasks.tasks[3] != 0);  // "adopt": the identity is in the batch too
  const auto parts = wire::split(tasks, *out[0].payload);
  // The delivery report names every task of the batch.
  CHECK(out[0].task_id == parts[0].task.task_id);
  REQUIRE(out[0].batched_tasks.size() == parts.size() - 1);
  for (std::size_t i = 1; i < parts.size(); ++i) {
    CHECK(out[0].batched_tasks[i - 1] == parts[i].task.task_id);
  }
}

TEST_CASE("B56: a RESULTS is its RESULTs in order; DELIVERs follow for each") {
  broker_test::Harness h;
  batch_ready(h, "W1", 4);
  h.drain();
  for (std::uint32_t i = 0; i < 4; ++i) h.submit("C1", 1, "m.f", i, items(i), 1);
  std::vector<std::uint64_t> ids;
  for (const auto& o : raw_to(h.core, "W1")) {
    const auto m = wire::decode(o.header.data(), o.header.size());
    if (const auto* t = std::get_if<wire::Task>(&m)) ids.push_back(t->task_id);
    if (const auto* t = std::get_if<wire::Tasks>(&m)) {
      for (std::size_t k = 0; k < t->tasks.size(); k += wire::kTaskFields)
        ids.push_back(t->tasks[k]);
    }
  }
  REQUIRE(ids.size() == 4);
  std::vector<wire::BatchedResult> answers;
  for (std::uint64_t id : ids) answers.push_back({wire::Result{id, 3, 0}, Bytes(ok_results(1))});
  wire::Batch results = wire::encode_results(answers);
  broker::feed(h.core, "W1", results.header, Bytes(results.payload), h.now);
  const auto delivered = broker_test::Harness::sent_to<wire::Deliver>(h.drain(), "C1");
  REQUIRE(delivered.size() == 4);
  for (std::uint64_t i = 0; i < 4; ++i) CHECK(delivered[i].first == i);
  CHECK(h.core.inflight_count("W1") == 0);

  // Sizes that do not add up: refused whole, nothing of it taken.
  for (std::uint32_t i = 4; i < 6; ++i) h.submit("C1", 1, "m.f", i, items(i), 1);
  h.drain();
  const std::string bad = wire::encode(wire::Results{{1, 0, 0, 50}});
  broker::feed(h.core, "W1", bad, Bytes(ok_results(1)), h.now);
  const auto errors = broker_test::Harness::sent_to<wire::Error>(h.drain(), "W1");
  REQUIRE(errors.size() == 1);
  CHECK(errors[0].code == wire::Code::BadMessage);
  CHECK(h.core.inflight_count("W1") == 2);
}

TEST_CASE("B57: RESULTS from an unknown peer is answered not_ready") {
  broker_test::Harness h;
  wire::Batch results = wire::encode_results({{wire::Result{1, 3, 0}, Bytes(ok_results(1))}});
  broker::feed(h.core, "W9", results.header, Bytes(results.payload), h.now);
  const auto errors = broker_test::Harness::sent_to<wire::Error>(h.drain(), "W9");
  REQUIRE(errors.size() == 1);
  CHECK(errors[0].code == wire::Code::NotReady);
}

namespace {

const worker::SessionCore::TimePoint w0 = worker::SessionCore::TimePoint{} + 1h;

struct NullEffects final : worker::SessionCore::Effects {
  std::vector<worker::SessionCore::Start> started;
  void reconnect() override {}
  void skip_through(std::uint64_t) override {}
  void start(worker::SessionCore::Start s) override { started.push_back(std::move(s)); }
  bool cancel(std::uint64_t, bool) override { return false; }
};

struct Worker {
  explicit Worker(bool batch = true, std::uint32_t prefetch = 8)
      : core(options(batch, prefetch), wire::Ready{"w", "h", 1, 0, {}}, {"m.f"}, w0,
             [](log::Level, const std::string&) {}) {}
  static worker::SessionCoreOptions options(bool batch, std::uint32_t prefetch) {
    worker::SessionCoreOptions o;
    o.prefetch = prefetch;
    o.batch = batch;
    return o;
  }
  void message(const std::string& header, std::optional<Bytes> payload = {}) {
    core.on_message({}, header.data(), header.size(), payload ? &*payload : nullptr, w0);
  }
  std::vector<wire::Outgoing> take() {
    std::vector<wire::Outgoing> out;
    core.carry_out(effects, out);
    return out;
  }
  worker::SessionCore core;
  NullEffects effects;
};

}  // namespace

TEST_CASE(
    "W30, W31: a TASKS is its TASKs in order; results finished together leave as one RESULTS when "
    "the broker speaks batch") {
  Worker w;
  auto first = w.take();
  REQUIRE(first.size() == 1);
  const auto ready =
      std::get<wire::Ready>(wire::decode(first[0].header.data(), first[0].header.size()));
  CHECK(wire::has_feature(ready.features, wire::kFeatureBatch));
  w.message(wire::encode(wire::Alive{7, 1000, 3, 0, {"adopt", "batch"}}));
  const std::string a = items(1), b = items(2), c = items(3);
  const Bytes pa(a), pb(b), pc(c);
  const wire::TaskPart parts[] = {{11, 1, 0, 0, &pa}, {12, 1, 0, 0, &pb}, {13, 1, 0, 0, &pc}};
  wire::Batch batch = wire::encode_tasks("m.f", parts, 3);
  w.message(batch.header, Bytes(batch.payload));
  w.take();
  REQUIRE(w.effects.started.size() == 3);
  CHECK(w.core.held() == 3);
  CHECK(w.effects.started[0].payload.view() == a);
  CHECK(w.effects.started[2].payload.view() == c);
  for (const auto& s : w.effects.started) {
    w.core.on_finished(s.sequence, worker::SessionCore::Outcome::Ok, 5, Bytes(ok_results(1)), w0);
  }
  const auto out = w.take();
  REQUIRE(out.size() == 1);
  const auto results =
      std::get<wire::Results>(wire::decode(out[0].header.data(), out[0].header.size()));
  const auto rs = wire::split(results, *out[0].payload);
  REQUIRE(rs.size() == 3);
  CHECK(rs[0].result.task_id == 11);
  CHECK(rs[2].result.task_id == 13);
  CHECK(rs[1].payload.view() == ok_results(1));
}

TEST_CASE("W32: without batch in the broker's ALIVE, or switched off, results go one by one") {
  for (const bool feature : {false, true}) {
    Worker w(feature);
    auto first = w.take();
    const auto ready =
        std::get<wire::Ready>(wire::decode(first.at(0).header.data(), first.at(0).header.size()));
    CHECK(wire::has_feature(ready.features, wire::kFeatureBatch) == feature);
    // A broker that predates batch (feature on) or one that speaks it (feature off).
    w.message(wire::encode(wire::Alive{
        7, 1000, 3, 0,
        feature ? std::vector<std::string>{"adopt"} : std::vector<std::string>{"adopt", "batch"}}));
    for (std::uint64_t id = 1; id <= 3; ++id) {
      w.message(wire::encode(wire::Task{id, "m.f", 1}), Bytes(items(id)));
    }
    w.take();
    for (const auto& s : w.effects.started) {
      w.core.on_finished(s.sequence, worker::SessionCore::Outcome::Ok, 5, Bytes(ok_results(1)), w0);
    }
    const auto out = w.take();
    REQUIRE(out.size() == 3);
    for (const auto& o : out) {
      CHECK(std::holds_alternative<wire::Result>(wire::decode(o.header.data(), o.header.size())));
    }
  }
}

TEST_CASE("W31: a RESULTS header stays within a small --max-message-bytes, as its payload does") {
  // The broker's ROUTER bounds every frame by its limit (1024 is the least it accepts): 64
  // results with task ids near 2^59 and long elapsed times make a header of about 1.3 KB with a
  // payload under 1 KB, which would cut the worker off.
  Worker w(true, 64);
  w.take();
  w.message(wire::encode(wire::Alive{7, 1000, 3, 1024, {"adopt", "batch"}}));
  const std::uint64_t base = std::uint64_t{1} << 59;
  for (std::uint64_t i = 0; i < 64; ++i) {
    w.message(wire::encode(wire::Task{base + i, "m.f", 1}), Bytes(items(i)));
  }
  w.take();
  REQUIRE(!w.effects.started.empty());
  std::size_t results = 0;
  for (int round = 0; round < 10 && results < 64; ++round) {
    const auto started = std::exchange(w.effects.started, {});
    for (const auto& s : started) {
      w.core.on_finished(s.sequence, worker::SessionCore::Outcome::Ok, std::uint64_t{1} << 40,
                         Bytes(ok_results(1)), w0);
    }
    for (const auto& o : w.take()) {
      CHECK(o.header.size() <= 1024);
      const auto message = wire::decode(o.header.data(), o.header.size());
      if (const auto* r = std::get_if<wire::Results>(&message)) {
        CHECK(o.header.size() + o.payload->size() <= 1024);
        results += wire::split(*r, *o.payload).size();
      } else if (std::holds_alternative<wire::Result>(message)) {
        ++results;
      }
    }
  }
  CHECK(results == 64);
}
