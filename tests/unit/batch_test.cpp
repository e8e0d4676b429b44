// Several tasks per message (issue 28, feature "batch", docs/protocol.md §4.17-§4.19): the
// codec, the broker's rows B56–B59 and the worker's W30–W32, with fake clocks and no sockets
// (the client's C24 is in client_core_test.cpp).
#include <doctest/doctest.h>

#include <map>

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

TEST_CASE(
    "DELIVERS round-trips: parts in order, names from its table, payloads sharing the frame") {
  const std::string a = ok_results(1), b = ok_results(2), c = ok_results(1);
  const Bytes pa(a), pb(b), pc(c);
  const wire::DeliverPart parts[] = {
      {0, 1, "w1", 7, 1, &pa}, {1, 2, "w2", 8, 2, &pb}, {3, 1, "w1", 9, 3, &pc}};
  wire::Batch batch = wire::encode_delivers(5, parts, 3);
  const auto m = std::get<wire::Delivers>(wire::decode(batch.header.data(), batch.header.size()));
  CHECK(m.job_id == 5);
  CHECK(m.workers == std::vector<std::string>{"w1", "w2"});  // each name once
  CHECK(m.delivers == std::vector<std::uint64_t>{0, 1, 0, 7, 1, a.size(), 1, 2, 1, 8, 2, b.size(),
                                                 3, 1, 0, 9, 3, c.size()});
  const Bytes payload(batch.payload);
  const auto split = wire::split(m, payload);
  REQUIRE(split.size() == 3);
  CHECK(split[1].deliver.job_id == 5);
  CHECK(split[1].deliver.first == 1);
  CHECK(split[1].deliver.count == 2);
  CHECK(split[1].deliver.worker == "w2");
  CHECK(split[2].deliver.worker == "w1");
  CHECK(split[1].deliver.elapsed_us == 8);
  CHECK(split[2].deliver.seq == 3);
  CHECK(split[0].payload.view() == a);
  CHECK(split[1].payload.view() == b);
  CHECK(split[2].payload.owner() == payload.owner());  // a slice, not a copy
  // The documented example (§4.19).
  CHECK(wire::encode(wire::Delivers{7, {0, 1, 0, 842, 1, 2, 1, 1, 0, 3, 2, 2}, {"w"}}) ==
        std::string("\x95\x01\x14\x07\x9c\x00\x01\x00\xcd\x03\x4a\x01\x02\x01\x01\x00\x03\x02\x02"
                    "\x91\xa1w",
                    22));
  // SUBMIT's features (§4.4): appended, with the time limit before them, only when set.
  const auto submit = std::get<wire::Submit>(reread(wire::Submit{1, "m.f", 0, 1, 0, 0, {"batch"}}));
  CHECK(submit.features == std::vector<std::string>{"batch"});
  CHECK(wire::encode(wire::Submit{1, "m.f", 0, 1, 0}).size() + 8 ==
        wire::encode(wire::Submit{1, "m.f", 0, 1, 0, 0, {"batch"}}).size());
  // The worker's name of a DELIVER, read from its header as the broker merges them (B59).
  CHECK(wire::deliver_worker(wire::encode_deliver(1ull << 40, 70000, 3, "node, process 4242", 5,
                                                  9)) == "node, process 4242");
  CHECK(wire::deliver_worker(wire::encode_deliver(1, 2, 3, std::string(300, 'x'), 5, 9)) ==
        std::string(300, 'x'));
  CHECK(wire::deliver_worker(wire::encode_task(1, "m.f", 1)).empty());
}

TEST_CASE("DELIVERS refuses groups, names and sizes that do not fit its message") {
  const std::vector<std::string> w{"w"};
  CHECK_THROWS_AS(reread(wire::Delivers{1, {0, 1, 0, 0, 1}, w}), ProtocolError);  // 5 numbers
  CHECK_THROWS_AS(reread(wire::Delivers{1, {}, w}), ProtocolError);
  CHECK_THROWS_AS(reread(wire::Delivers{1, std::vector<std::uint64_t>(6 * 65, 0), w}),
                  ProtocolError);
  CHECK_THROWS_AS(reread(wire::Delivers{1, {0, 1ull << 32, 0, 0, 1, 0}, w}), ProtocolError);
  CHECK_THROWS_AS(reread(wire::Delivers{1, {0, 1, 1, 0, 1, 0}, w}), ProtocolError);  // index
  CHECK_THROWS_AS(reread(wire::Delivers{1, {0, 1, 0, 0, 1, 0}, {}}), ProtocolError);
  CHECK_THROWS_AS(reread(wire::Delivers{1, {0, 1, 0, 0, 1, 0}, std::vector<std::string>(65, "w")}),
                  ProtocolError);
  CHECK_NOTHROW(reread(wire::Delivers{1, {0, 1, 0, 0, 1, 0}, w}));
  const Bytes payload(std::string("\x91\x01\x91\x02", 4));
  CHECK_THROWS_AS(
      wire::split(wire::Delivers{1, {0, 1, 0, 0, 1, 2, 1, 1, 0, 0, 2, ~0ull}, w}, payload),
      ProtocolError);
  CHECK_THROWS_AS(wire::split(wire::Delivers{1, {0, 1, 0, 0, 1, 3}, w}, payload), ProtocolError);
  CHECK_THROWS_AS(wire::split(wire::Delivers{1, {0, 1, 4, 0, 1, 4}, w}, payload), ProtocolError);
  CHECK(wire::split(wire::Delivers{1, {0, 1, 0, 0, 1, 2, 1, 1, 0, 0, 2, 2}, w}, payload).size() ==
        2);
}

namespace {

// The ids of the tasks `worker` was sent (TASK or TASKS) since the last drain, in order; what
// went to other peers is drained too.
std::vector<std::uint64_t> sent_tasks(broker_test::Harness& h, const std::string& worker) {
  std::vector<std::uint64_t> ids;
  for (const auto& o : raw_to(h.core, worker)) {
    const auto m = wire::decode(o.header.data(), o.header.size());
    if (const auto* t = std::get_if<wire::Task>(&m)) ids.push_back(t->task_id);
    if (const auto* t = std::get_if<wire::Tasks>(&m)) {
      for (std::size_t k = 0; k < t->tasks.size(); k += wire::kTaskFields)
        ids.push_back(t->tasks[k]);
    }
  }
  return ids;
}

// Answers every task `worker` was sent (TASK or TASKS) with one RESULTS, `per_result` bytes of
// payload each (one item), and returns their ids in order.
std::vector<std::uint64_t> answer_all(broker_test::Harness& h, const std::string& worker,
                                      std::size_t per_result = 0) {
  const std::vector<std::uint64_t> ids = sent_tasks(h, worker);
  std::vector<wire::BatchedResult> answers;
  for (std::uint64_t id : ids) {
    std::string payload = ok_results(1);
    if (per_result > 0) {
      msgpack::sbuffer buffer;
      msgpack::packer<msgpack::sbuffer> p(buffer);
      p.pack_array(1);
      p.pack_array(2);
      p.pack(0);
      p.pack(std::string(per_result, 'r'));
      payload.assign(buffer.data(), buffer.size());
    }
    answers.push_back({wire::Result{id, 3, 0}, Bytes(payload)});
  }
  for (std::size_t at = 0; at < answers.size(); at += wire::kMaxBatch) {
    std::vector<wire::BatchedResult> some(
        answers.begin() + static_cast<std::ptrdiff_t>(at),
        answers.begin() +
            static_cast<std::ptrdiff_t>(std::min(answers.size(), at + wire::kMaxBatch)));
    wire::Batch results = wire::encode_results(some);
    broker::feed(h.core, worker, results.header, Bytes(results.payload), h.now);
  }
  return ids;
}

void batch_submit(broker_test::Harness& h, const std::string& client, std::uint64_t first,
                  std::vector<std::string> features = {"batch"}) {
  const std::string payload = items(first);
  h.deliver(client, wire::Submit{1, "m.f", first, 1, 1000, 0, std::move(features)}, &payload);
}

}  // namespace

TEST_CASE("B59: DELIVERs one event queues for a client that speaks batch leave as one DELIVERS") {
  broker_test::Harness h;
  batch_ready(h, "W1", 8);
  h.drain();
  // C1 names "batch" in its SUBMITs, C0 does not (an older client, or one written from the
  // document that leaves the feature out).
  for (std::uint32_t i = 0; i < 4; ++i) batch_submit(h, "C1", i);
  for (std::uint32_t i = 0; i < 4; ++i) batch_submit(h, "C0", i, {});
  CHECK(answer_all(h, "W1").size() == 8);
  const auto out = h.drain();
  // C1's four answers: one DELIVERS, in order, each its own seq; C0's: four DELIVERs.
  CHECK(broker_test::Harness::sent_to<wire::Deliver>(out, "C1").empty());
  const auto batched = broker_test::Harness::sent_to<wire::Delivers>(out, "C1");
  REQUIRE(batched.size() == 1);
  CHECK(batched[0].job_id == 1);
  REQUIRE(batched[0].delivers.size() == 4 * wire::kDeliverFields);
  for (std::uint64_t i = 0; i < 4; ++i) {
    CHECK(batched[0].delivers[i * wire::kDeliverFields] == i);          // first
    CHECK(batched[0].delivers[i * wire::kDeliverFields + 4] == i + 1);  // seq
  }
  CHECK(batched[0].workers == std::vector<std::string>{"W1"});
  CHECK(broker_test::Harness::sent_to<wire::Delivers>(out, "C0").empty());
  const auto single = broker_test::Harness::sent_to<wire::Deliver>(out, "C0");
  REQUIRE(single.size() == 4);
  for (std::uint64_t i = 0; i < 4; ++i) CHECK(single[i].seq == i + 1);
  // The client has read them: the job's chunks are all answered.
  h.deliver("C1", wire::Heartbeat{1, 4, {}});
  CHECK(broker_test::Harness::sent_to<wire::Alive>(h.drain(), "C1").size() == 1);

  // One answer alone goes as DELIVER, also to a client that speaks batch: nothing waits.
  batch_submit(h, "C1", 4);
  CHECK(answer_all(h, "W1").size() == 1);
  const auto lone = h.drain();
  CHECK(broker_test::Harness::sent_to<wire::Deliver>(lone, "C1").size() == 1);
  CHECK(broker_test::Harness::sent_to<wire::Delivers>(lone, "C1").empty());

  // A client whose last SUBMIT leaves the feature out is one again to send DELIVERs.
  batch_submit(h, "C1", 5, {});
  batch_submit(h, "C1", 6, {});
  CHECK(answer_all(h, "W1").size() == 2);
  CHECK(broker_test::Harness::sent_to<wire::Deliver>(h.drain(), "C1").size() == 2);
}

// What went to `peer`, decoded, in order.
std::vector<wire::Message> messages_to(const std::vector<broker_test::Sent>& all,
                                       const std::string& peer) {
  std::vector<wire::Message> out;
  for (const auto& s : all) {
    if (s.peer == peer) out.push_back(s.message);
  }
  return out;
}

// The (first, seq) of every chunk answered in `messages` (DELIVERs and DELIVERS' parts), in
// order.
std::vector<std::pair<std::uint64_t, std::uint64_t>> answered(
    const std::vector<wire::Message>& messages) {
  std::vector<std::pair<std::uint64_t, std::uint64_t>> out;
  for (const auto& m : messages) {
    if (const auto* d = std::get_if<wire::Deliver>(&m)) out.emplace_back(d->first, d->seq);
    if (const auto* d = std::get_if<wire::Delivers>(&m)) {
      for (std::size_t k = 0; k < d->delivers.size(); k += wire::kDeliverFields)
        out.emplace_back(d->delivers[k], d->delivers[k + 4]);
    }
  }
  return out;
}

TEST_CASE("B59: DELIVERS never merges across other messages or jobs") {
  broker_test::Harness h;
  SUBCASE("answers of job 1, job 2, job 1 leave as three DELIVERs, in that order") {
    batch_ready(h, "W1", 8);
    h.drain();
    const std::uint64_t jobs[] = {1, 2, 1}, firsts[] = {0, 0, 1};
    for (int i = 0; i < 3; ++i) {
      const std::string payload = items(i);
      h.deliver("C1", wire::Submit{jobs[i], "m.f", firsts[i], 1, 1000, 0, {"batch"}}, &payload);
    }
    CHECK(answer_all(h, "W1").size() == 3);
    const auto out = messages_to(h.drain(), "C1");
    REQUIRE(out.size() == 3);
    const std::uint64_t seqs[] = {1, 1, 2};
    for (int i = 0; i < 3; ++i) {
      REQUIRE(std::holds_alternative<wire::Deliver>(out[i]));
      const auto& d = std::get<wire::Deliver>(out[i]);
      CHECK(d.job_id == jobs[i]);
      CHECK(d.first == firsts[i]);
      CHECK(d.seq == seqs[i]);
    }
  }
  SUBCASE("DELIVER, FAILED (an item over its time limit), DELIVER: three messages, seqs in order") {
    batch_ready(h, "W1", 2);
    batch_ready(h, "W2", 1);
    h.drain();
    for (std::uint64_t i = 0; i < 3; ++i) {
      const std::string payload = items(i);
      h.deliver("C1", wire::Submit{1, "m.f", i, 1, 1000, 100, {"batch"}}, &payload);
    }
    // W1 holds two of the chunks, W2 one; all three started now.
    const auto out0 = h.drain();
    std::vector<std::uint64_t> w1, w2;
    for (const auto& s : out0) {
      if (const auto* t = std::get_if<wire::Task>(&s.message)) {
        (s.peer == "W1" ? w1 : w2).push_back(t->task_id);
      }
      if (const auto* t = std::get_if<wire::Tasks>(&s.message)) {
        for (std::size_t k = 0; k < t->tasks.size(); k += wire::kTaskFields)
          (s.peer == "W1" ? w1 : w2).push_back(t->tasks[k]);
      }
    }
    REQUIRE(w1.size() == 2);
    REQUIRE(w2.size() == 1);
    // In one turn: W1 answers its first at 50 ms (its second's limit counts from then), W2's
    // is over its 100 ms at 120 ms and fails, W1 answers its second.
    h.now += 50ms;
    h.result("W1", w1[0], 1);
    h.advance(70ms);
    h.result("W1", w1[1], 1);
    const auto out = messages_to(h.drain(), "C1");
    REQUIRE(out.size() == 3);
    REQUIRE(std::holds_alternative<wire::Deliver>(out[0]));
    REQUIRE(std::holds_alternative<wire::Failed>(out[1]));
    REQUIRE(std::holds_alternative<wire::Deliver>(out[2]));
    CHECK(std::get<wire::Deliver>(out[0]).seq == 1);
    CHECK(std::get<wire::Failed>(out[1]).code == wire::Code::Timeout);
    CHECK(std::get<wire::Failed>(out[1]).seq == 2);
    CHECK(std::get<wire::Deliver>(out[2]).seq == 3);
  }
  SUBCASE("DELIVER, the ALIVE or RESYNC answering a HEARTBEAT, DELIVER: three messages") {
    batch_ready(h, "W1", 8);
    h.drain();
    std::uint64_t next = 0;
    // Open chunks as they are, then one the broker never received (B32: RESYNC).
    for (const bool lost : {false, true}) {
      batch_submit(h, "C1", next);
      batch_submit(h, "C1", next + 1);
      const auto ids = sent_tasks(h, "W1");
      REQUIRE(ids.size() == 2);
      h.result("W1", ids[0], 1);
      std::vector<std::uint64_t> open{next, next + 1};
      if (lost) open.push_back(1000);
      h.deliver("C1", wire::Heartbeat{1, next, open});
      h.result("W1", ids[1], 1);
      const auto out = messages_to(h.drain(), "C1");
      REQUIRE(out.size() == 3);
      CHECK(std::get<wire::Deliver>(out[0]).first == next);
      if (lost) {
        CHECK(std::holds_alternative<wire::Resync>(out[1]));
      } else {
        CHECK(std::holds_alternative<wire::Alive>(out[1]));
      }
      CHECK(std::get<wire::Deliver>(out[2]).first == next + 1);
      next += 2;
    }
  }
}

TEST_CASE("B33 with DELIVERS: a DELIVERS that could not be sent is answered again, once each") {
  broker_test::Harness h;
  batch_ready(h, "W1", 8);
  h.drain();
  for (std::uint32_t i = 0; i < 4; ++i) batch_submit(h, "C1", i);
  CHECK(answer_all(h, "W1").size() == 4);
  REQUIRE(broker_test::Harness::sent_to<wire::Delivers>(h.drain(), "C1").size() == 1);
  // The flush reports that it could not be sent: the client's next HEARTBEAT, still awaiting
  // the four chunks, gets RESYNC.
  h.core.on_send_failed("C1", h.now);
  h.deliver("C1", wire::Heartbeat{1, 0, {0, 1, 2, 3}});
  const auto resync = h.drain();
  CHECK(broker_test::Harness::sent_to<wire::Resync>(resync, "C1").size() == 1);
  CHECK(broker_test::Harness::sent_to<wire::Alive>(resync, "C1").empty());
  // It resubmits its open chunks: each runs again and is answered once, in a DELIVERS; its
  // next HEARTBEAT, sent before it read them, gets ALIVE (they are on their way).
  for (std::uint32_t i = 0; i < 4; ++i) batch_submit(h, "C1", i);
  CHECK(answer_all(h, "W1").size() == 4);
  h.deliver("C1", wire::Heartbeat{1, 0, {0, 1, 2, 3}});
  const auto again = messages_to(h.drain(), "C1");
  REQUIRE(again.size() == 2);
  CHECK(std::holds_alternative<wire::Delivers>(again[0]));
  CHECK(std::holds_alternative<wire::Alive>(again[1]));
  const std::vector<std::pair<std::uint64_t, std::uint64_t>> expected{
      {0, 5}, {1, 6}, {2, 7}, {3, 8}};
  CHECK(answered(again) == expected);
  // Read: all is well, nothing runs again.
  h.deliver("C1", wire::Heartbeat{1, 8, {}});
  const auto end = h.drain();
  REQUIRE(end.size() == 1);
  CHECK(end[0].peer == "C1");
  CHECK(std::holds_alternative<wire::Alive>(end[0].message));
}

TEST_CASE("B59: the client's features when its answers leave decide, not when they were queued") {
  broker_test::Harness h;
  batch_ready(h, "W1", 8);
  h.drain();
  // Two answers queued while its last SUBMIT named batch, then, in the same turn, a SUBMIT
  // without it: the two go as DELIVERs (§4.19: only to a client whose last SUBMIT named it).
  batch_submit(h, "C1", 0);
  batch_submit(h, "C1", 1);
  CHECK(answer_all(h, "W1").size() == 2);
  batch_submit(h, "C1", 2, {});
  auto out = h.drain();
  CHECK(broker_test::Harness::sent_to<wire::Delivers>(out, "C1").empty());
  CHECK(broker_test::Harness::sent_to<wire::Deliver>(out, "C1").size() == 2);
  // The other way: answers queued without the feature stay DELIVERs.
  const auto second = broker_test::Harness::sent_to<wire::Task>(out, "W1");
  REQUIRE(second.size() == 1);
  batch_submit(h, "C1", 3, {});
  const auto third = sent_tasks(h, "W1");
  REQUIRE(third.size() == 1);
  h.result("W1", second[0].task_id, 1);
  h.result("W1", third[0], 1);
  batch_submit(h, "C1", 4);
  out = h.drain();
  CHECK(broker_test::Harness::sent_to<wire::Delivers>(out, "C1").empty());
  CHECK(broker_test::Harness::sent_to<wire::Deliver>(out, "C1").size() == 2);
  const auto fourth = broker_test::Harness::sent_to<wire::Task>(out, "W1");
  REQUIRE(fourth.size() == 1);
  h.result("W1", fourth[0].task_id, 1);
  h.drain();

  // A SUBMIT refused as bad_request (§4.6: it changes nothing else) leaves them as they were.
  batch_submit(h, "C1", 5);
  batch_submit(h, "C1", 6);
  const std::string payload = items(7);
  const auto pending = sent_tasks(h, "W1");
  REQUIRE(pending.size() == 2);
  h.deliver("C1", wire::Submit{1, "m.g", 7, 1, 1000}, &payload);  // not the job's function
  out = h.drain();
  REQUIRE(broker_test::Harness::sent_to<wire::Failed>(out, "C1").size() == 1);
  CHECK(broker_test::Harness::sent_to<wire::Failed>(out, "C1")[0].code == wire::Code::BadRequest);
  h.result("W1", pending[0], 1);
  h.result("W1", pending[1], 1);
  CHECK(broker_test::Harness::sent_to<wire::Delivers>(h.drain(), "C1").size() == 1);
}

TEST_CASE("B59: the largest DELIVERS header stays within what a client decodes") {
  // 64 parts, each of another worker whose name is as long as the broker lets one be (a
  // routing id of 255 bytes in hex), every number as large as it may be: within the bound the
  // broker checks its name limit against (broker/core.cpp), and decoded whole.
  std::vector<std::string> names;
  std::vector<Bytes> payloads;
  std::vector<wire::DeliverPart> parts;
  for (std::size_t i = 0; i < wire::kMaxBatch; ++i) {
    names.push_back(std::string(510, 'a'));
    names.back()[0] = static_cast<char>('A' + i % 26);
    names.back()[1] = static_cast<char>('A' + i / 26);
    payloads.emplace_back(ok_results(1));
  }
  for (std::size_t i = 0; i < wire::kMaxBatch; ++i) {
    parts.push_back(wire::DeliverPart{~0ull, ~0u, names[i], ~0ull, ~0ull, &payloads[i]});
  }
  const wire::Batch batch = wire::encode_delivers(~0ull, parts.data(), parts.size());
  CHECK(batch.header.size() <= wire::max_delivers_header(510));
  CHECK(wire::max_delivers_header(510) <= wire::kMaxHeaderBytes);
  const auto m = std::get<wire::Delivers>(wire::decode(batch.header.data(), batch.header.size()));
  CHECK(m.workers.size() == wire::kMaxBatch);
}

TEST_CASE("B59: a DELIVERS stays within 64 chunks and the broker's --max-message-bytes") {
  broker::Config config;
  config.max_message_bytes = 1024;
  broker_test::Harness h(config);
  batch_ready(h, "W1", 256);
  h.drain();
  // 150 one-item answers in one burst: batches of 64, 64 and 22, in order.
  for (std::uint32_t i = 0; i < 150; ++i) batch_submit(h, "C1", i);
  CHECK(answer_all(h, "W1").size() == 150);
  auto out = broker_test::Harness::sent_to<wire::Delivers>(h.drain(), "C1");
  REQUIRE(out.size() == 3);
  CHECK(out[0].delivers.size() == 64 * wire::kDeliverFields);
  CHECK(out[2].delivers.size() == 22 * wire::kDeliverFields);
  CHECK(out[1].delivers[0] == 64);
  CHECK(out[2].delivers.back() == ok_results(1).size());
  // Answers of 300 bytes: at most three fit in 1,024, and no payload goes over it.
  for (std::uint32_t i = 150; i < 160; ++i) batch_submit(h, "C1", i);
  CHECK(answer_all(h, "W1", 290).size() == 10);
  std::uint64_t chunks = 0, next = 150;
  for (const auto& o : raw_to(h.core, "C1")) {
    REQUIRE(o.payload);
    CHECK(o.payload->size() <= 1024);
    const auto m = wire::decode(o.header.data(), o.header.size());
    if (const auto* d = std::get_if<wire::Delivers>(&m)) {
      CHECK(d->delivers.size() <= 3 * wire::kDeliverFields);
      for (std::size_t k = 0; k < d->delivers.size(); k += wire::kDeliverFields) {
        CHECK(d->delivers[k] == next++);
        ++chunks;
      }
    } else {
      CHECK(std::get<wire::Deliver>(m).first == next++);
      ++chunks;
    }
  }
  CHECK(chunks == 10);
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

// --- SUBMITS (feature "submits", §4.20, B60, C25 in client_core_test.cpp) ---

namespace {

// A SUBMITS of job 1 (m.f) of the chunks given as (first, count, payload).
struct Chunk {
  std::uint64_t first;
  std::uint32_t count;
  std::string payload;
};
wire::Batch submits_of(const std::vector<Chunk>& chunks,
                       std::vector<std::string> features = {"batch"}) {
  std::vector<Bytes> payloads;
  for (const Chunk& c : chunks) payloads.emplace_back(c.payload);
  std::vector<wire::SubmitPart> parts;
  for (std::size_t i = 0; i < chunks.size(); ++i) {
    parts.push_back(wire::SubmitPart{chunks[i].first, chunks[i].count, &payloads[i]});
  }
  return wire::encode_submits(wire::Submit{1, "m.f", 0, 0, 1000, 0, std::move(features)},
                              parts.data(), parts.size());
}

// What the broker sent, raw: peer, header and payload bytes.
std::vector<std::string> raw(broker::Core& core) {
  std::vector<std::string> out;
  for (auto& o : broker::drain(core)) {
    out.push_back(o.peer + "|" + std::string(o.header.view()) + "|" +
                  (o.payload ? o.payload->str() : std::string("-")));
  }
  return out;
}

}  // namespace

TEST_CASE("SUBMITS round-trips: its chunks become SUBMITs of its job, in order") {
  const std::string a = items(1), b = items(2, 3);
  const Bytes pa(a), pb(b);
  const wire::SubmitPart parts[] = {{0, 1, &pa}, {1, 2, &pb}};
  const wire::Batch batch =
      wire::encode_submits(wire::Submit{7, "m.f", 99, 99, 500, 20, {"batch"}}, parts, 2);
  const auto m = std::get<wire::Submits>(wire::decode(batch.header.data(), batch.header.size()));
  CHECK(m.job_id == 7);
  CHECK(m.function == "m.f");
  CHECK(m.wait_ms == 500);
  CHECK(m.item_timeout_ms == 20);
  CHECK(m.features == std::vector<std::string>{"batch"});
  CHECK(m.chunks == std::vector<std::uint64_t>{0, 1, a.size(), 1, 2, b.size()});
  CHECK(batch.payload == a + b);
  const Bytes payload(batch.payload);
  const auto split = wire::split(m, payload);
  REQUIRE(split.size() == 2);
  CHECK(split[0].submit.job_id == 7);
  CHECK(split[0].submit.first == 0);
  CHECK(split[1].submit.first == 1);
  CHECK(split[1].submit.count == 2);
  CHECK(split[1].submit.function == "m.f");
  CHECK(split[1].submit.wait_ms == 500);
  CHECK(split[1].submit.item_timeout_ms == 20);
  CHECK(split[1].submit.features == std::vector<std::string>{"batch"});
  CHECK(split[0].payload.view() == a);
  CHECK(split[1].payload.view() == b);
  CHECK(wire::has_payload(wire::Type::Submits));
  // The documented example (§4.20).
  CHECK(wire::encode(wire::Submits{7, "m.f", 1000, 0, {"batch"}, {0, 1, 2, 1, 1, 2}}) ==
        std::string("\x98\x01\x15\x07\xa3m.f\xcd\x03\xe8\x00\x91\xa5"
                    "batch\x96\x00\x01\x02\x01\x01\x02",
                    26));
}

TEST_CASE("SUBMITS refuses hostile shapes when decoded, before anything is allocated") {
  // Not a whole number of groups, none, more than kMaxBatch, counts outside 1..2^20.
  CHECK_THROWS_AS(reread(wire::Submits{1, "m.f", 0, 0, {}, {0, 1}}), ProtocolError);
  CHECK_THROWS_AS(reread(wire::Submits{1, "m.f", 0, 0, {}, {}}), ProtocolError);
  CHECK_THROWS_AS(reread(wire::Submits{1, "m.f", 0, 0, {}, std::vector<std::uint64_t>(3 * 65, 1)}),
                  ProtocolError);
  CHECK_NOTHROW(reread(wire::Submits{1, "m.f", 0, 0, {}, std::vector<std::uint64_t>(3 * 64, 1)}));
  CHECK_THROWS_AS(reread(wire::Submits{1, "m.f", 0, 0, {}, {0, 0, 1}}), ProtocolError);
  CHECK_THROWS_AS(reread(wire::Submits{1, "m.f", 0, 0, {}, {0, (1u << 20) + 1, 1}}), ProtocolError);
  CHECK_NOTHROW(reread(wire::Submits{1, "m.f", 0, 0, {}, {0, 1u << 20, 1}}));
  CHECK_THROWS_AS(reread(wire::Submits{1, "m.f", 0, 0, {}, {0, 1ull << 32, 1}}), ProtocolError);
  try {
    reread(wire::Submits{1, "m.f", 0, 0, {}, {0, 0, 1}});
  } catch (const ProtocolError& e) {
    CHECK(std::string(e.what()).find("SUBMITS") != std::string::npos);
  }
  // Missing or mistyped fields.
  const std::string short_header("\x97\x01\x15\x07\xa3m.f\x00\x00\x90", 11);
  CHECK_THROWS_AS(wire::decode(short_header.data(), short_header.size()), ProtocolError);
  const std::string bad_features("\x98\x01\x15\x07\xa3m.f\x00\x00\x91\x01\x93\x00\x01\x01", 17);
  CHECK_THROWS_AS(wire::decode(bad_features.data(), bad_features.size()), ProtocolError);
  // A chunk list declaring 2^32-1 entries in a few bytes: refused, not allocated.
  const std::string huge("\x98\x01\x15\x07\xa3m.f\x00\x00\x90\xdd\xff\xff\xff\xff", 16);
  CHECK_THROWS_AS(wire::decode(huge.data(), huge.size()), ProtocolError);
  // Sizes beyond the payload (one near 2^64 included) or short of it.
  const Bytes payload(std::string("\x91\x01\x91\x02", 4));
  CHECK_THROWS_AS(wire::split(wire::Submits{1, "m.f", 0, 0, {}, {0, 1, 2, 1, 1, ~0ull}}, payload),
                  ProtocolError);
  CHECK_THROWS_AS(wire::split(wire::Submits{1, "m.f", 0, 0, {}, {0, 1, 2, 1, 1, 1}}, payload),
                  ProtocolError);
  CHECK_THROWS_AS(wire::split(wire::Submits{1, "m.f", 0, 0, {}, {0, 1, 5}}, payload),
                  ProtocolError);
  CHECK(wire::split(wire::Submits{1, "m.f", 0, 0, {}, {0, 1, 2, 1, 1, 2}}, payload).size() == 2);
}

TEST_CASE(
    "B60: a SUBMITS is taken as its SUBMITs one by one: refusals per chunk, resubmission "
    "ignored") {
  broker::Config config;
  config.max_chunk_items = 4;
  config.max_client_bytes = broker::kJobOverhead + 3 * 300;
  // Accepted, too many items (bad_request), too large, a resubmission of 0 (ignored), accepted
  // twice, then over the client's limit (over_limit), and one more once a worker freed room.
  const std::vector<Chunk> chunks = {{0, 1, items(1)},
                                     {1, 5, broker_test::numbers(5)},
                                     {6, 1, items(std::string(2000, 'x'))},
                                     {0, 1, items(1)},
                                     {7, 1, items(8)},
                                     {8, 1, items(9)},
                                     {9, 1, items(10)}};
  broker_test::Harness one(config), many(config);
  for (broker_test::Harness* h : {&one, &many}) {
    h->ready("W1", {"m.f"}, 2);
    h->drain();
  }
  for (const Chunk& c : chunks) {
    one.deliver("C1", wire::Submit{1, "m.f", c.first, c.count, 1000, 0, {"batch"}}, &c.payload);
  }
  const wire::Batch batch = submits_of(chunks);
  broker::feed(many.core, "C1", batch.header, Bytes(batch.payload), many.now);
  const auto sent_one = raw(one.core), sent_many = raw(many.core);
  CHECK(sent_many == sent_one);
  // The same STATUS, but for the messages read by type (7 SUBMITs, 1 SUBMITS).
  const std::string status_one = one.core.status_payload(one.now),
                    status_many = many.core.status_payload(many.now);
  const auto h1 = msgpack::unpack(status_one.data(), status_one.size());
  const auto h2 = msgpack::unpack(status_many.data(), status_many.size());
  auto m1 = h1.get().as<std::map<std::string, msgpack::object>>();
  auto m2 = h2.get().as<std::map<std::string, msgpack::object>>();
  CHECK(m1.erase("messages") == 1);
  CHECK(m2.erase("messages") == 1);
  CHECK(m1 == m2);
  // What that was: two TASKs to W1, FAILED bad_request, too_large and over_limit to C1.
  broker_test::Harness check(config);
  check.ready("W1", {"m.f"}, 2);
  check.drain();
  broker::feed(check.core, "C1", batch.header, Bytes(batch.payload), check.now);
  const auto out = check.drain();
  CHECK(broker_test::Harness::sent_to<wire::Task>(out, "W1").size() == 2);
  const auto failed = broker_test::Harness::sent_to<wire::Failed>(out, "C1");
  REQUIRE(failed.size() == 3);
  CHECK(failed[0].first == 1);
  CHECK(failed[0].code == wire::Code::BadRequest);
  CHECK(failed[1].first == 6);
  CHECK(failed[1].code == wire::Code::TooLarge);
  CHECK(failed[2].first == 9);
  CHECK(failed[2].code == wire::Code::OverLimit);
}

TEST_CASE("B60: SUBMITS from a worker, or whose sizes do not add up, is refused whole") {
  broker_test::Harness h;
  h.ready("W1", {"m.f"}, 2);
  h.drain();
  const wire::Batch batch = submits_of({{0, 1, items(1)}, {1, 1, items(2)}});
  broker::feed(h.core, "W1", batch.header, Bytes(batch.payload), h.now);
  auto errors = broker_test::Harness::sent_to<wire::Error>(h.drain(), "W1");
  REQUIRE(errors.size() == 1);
  CHECK(errors[0].code == wire::Code::BadMessage);
  CHECK(errors[0].message == "SUBMITS from a peer registered as a worker");
  broker::feed(h.core, "C1", batch.header, Bytes(batch.payload.substr(1)), h.now);
  auto out = h.drain();
  errors = broker_test::Harness::sent_to<wire::Error>(out, "C1");
  REQUIRE(errors.size() == 1);
  CHECK(errors[0].code == wire::Code::BadMessage);
  CHECK(errors[0].message.find("SUBMITS: the sizes") == 0);
  CHECK(broker_test::Harness::sent_to<wire::Task>(out, "W1").empty());
  // A worker key may not send it (§14.3); a client key may.
  const std::string one = items(1);
  h.deliver_as(broker::Role::Worker, "C2", wire::Submits{1, "m.f", 0, 0, {}, {0, 1, one.size()}},
               &one);
  errors = broker_test::Harness::sent_to<wire::Error>(h.drain(), "C2");
  REQUIRE(errors.size() == 1);
  CHECK(errors[0].code == wire::Code::Forbidden);
  broker::feed(h.core, "C1", batch.header, Bytes(batch.payload), h.now);
  CHECK(broker_test::Harness::sent_to<wire::Task>(h.drain(), "W1").size() == 2);
  // The broker names the feature in ALIVE.
  h.deliver("C1", wire::Heartbeat{1, 0, {0, 1}});
  const auto alive = broker_test::Harness::sent_to<wire::Alive>(h.drain(), "C1");
  REQUIRE(alive.size() == 1);
  CHECK(wire::has_feature(alive[0].features, wire::kFeatureSubmits));
}

// Issue 28: the broker's headers are written by wire.cpp's direct writer, not msgpack's packer;
// their bytes must stay the packer's (encode()) at every boundary of msgpack's forms.
TEST_CASE("the broker's directly written headers are the packer's bytes") {
  const std::vector<std::uint64_t> numbers{0,     1,     127,        128,        255,        256,
                                           65535, 65536, UINT32_MAX, 1ull << 32, ~0ull >> 1, ~0ull};
  const std::vector<std::string> names{"",
                                       "m.f",
                                       std::string(31, 'a'),
                                       std::string(32, 'b'),
                                       std::string(255, 'c'),
                                       std::string(256, 'd'),
                                       std::string(65535, 'e'),
                                       std::string(65536, 'f')};
  for (const std::string& name : names) {
    for (std::uint64_t n : numbers) {
      const auto count = static_cast<std::uint32_t>(std::min<std::uint64_t>(n, UINT32_MAX));
      CHECK(wire::encode_task(n, name, count).view() == wire::encode(wire::Task{n, name, count}));
      CHECK(wire::encode_task(n, name, count, n | 1, n).view() ==
            wire::encode(wire::Task{n, name, count, n | 1, n}));
      CHECK(wire::encode_deliver(n, n, count, name, n, n).view() ==
            wire::encode(wire::Deliver{n, n, count, name, n, n}));
    }
  }
  // The batched ones, with 1, 3, 4 and 64 parts (the flat arrays fixarray, then array 16: four
  // RESULTS parts are exactly 16 numbers).
  const Bytes payload(std::string("\x91\x01"));
  for (std::size_t n : {std::size_t{1}, std::size_t{3}, std::size_t{4}, wire::kMaxBatch}) {
    std::vector<wire::TaskPart> tasks;
    std::vector<wire::DeliverPart> delivers;
    std::vector<wire::BatchedResult> results;
    std::vector<std::uint64_t> task_flat, deliver_flat, result_flat;
    for (std::size_t i = 0; i < n; ++i) {
      const std::uint64_t v = numbers[i % numbers.size()];
      const auto count = static_cast<std::uint32_t>(std::min<std::uint64_t>(v, UINT32_MAX));
      tasks.push_back(wire::TaskPart{v, count, v, ~v, &payload});
      task_flat.insert(task_flat.end(), {v, count, payload.size(), v, ~v});
      delivers.push_back(wire::DeliverPart{v, count, names[i % 2], ~v, v, &payload});
      deliver_flat.insert(deliver_flat.end(),
                          {v, count, i % 2 == 0 || n == 1 ? 0u : 1u, ~v, v, payload.size()});
      results.push_back(wire::BatchedResult{wire::Result{v, ~v, count}, payload});
      result_flat.insert(result_flat.end(), {v, ~v, count, payload.size()});
    }
    std::vector<std::string> workers{names[0]};
    if (n > 1) workers.push_back(names[1]);
    CHECK(wire::encode_tasks(names[3], tasks.data(), n).header ==
          wire::encode(wire::Tasks{names[3], task_flat}));
    CHECK(wire::encode_delivers(~0ull, delivers.data(), n).header ==
          wire::encode(wire::Delivers{~0ull, deliver_flat, workers}));
    CHECK(wire::encode_results(results).header == wire::encode(wire::Results{result_flat}));
  }
  // A DELIVERS of 15, 16 and 17 workers: its names' array fixarray, then array 16.
  for (std::size_t n : {std::size_t{15}, std::size_t{16}, std::size_t{17}}) {
    std::vector<std::string> workers;
    for (std::size_t i = 0; i < n; ++i) workers.push_back("node" + std::to_string(i));
    std::vector<wire::DeliverPart> delivers;
    std::vector<std::uint64_t> flat;
    for (std::size_t i = 0; i < n; ++i) {
      delivers.push_back(wire::DeliverPart{i, 1, workers[i], 7, i + 1, &payload});
      flat.insert(flat.end(), {i, 1, i, 7, i + 1, payload.size()});
    }
    CAPTURE(n);
    CHECK(wire::encode_delivers(5, delivers.data(), n).header ==
          wire::encode(wire::Delivers{5, flat, workers}));
  }
}
