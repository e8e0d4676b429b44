// The worker's rules (docs/protocol.md §9, rows W1..W29), driven with a fake clock: no socket,
// no executor thread, no sleeps. Each test is named after the row it checks.
#include <doctest/doctest.h>

#include "seppo/msgpack.hpp"

#include "common/crash_backoff.hpp"
#include "protocol/bytes_zmq.hpp"
#include "worker/session_core.hpp"

using namespace seppo;
using namespace seppo::worker;
using namespace std::chrono_literals;
using TimePoint = SessionCore::TimePoint;
using Outcome = SessionCore::Outcome;

namespace {

const TimePoint t0 = TimePoint{} + 1h;

// A message the core queued, decoded back from the header frame it encoded.
struct Sent {
  wire::Message message;
  std::optional<Bytes> payload;
};

// The executor and the socket as the core's carry_out() reaches them, recording what it asked.
struct Recorder final : SessionCore::Effects {
  int reconnects = 0;
  std::uint64_t skip_through_to = 0;
  std::vector<SessionCore::Start> started;
  std::vector<std::uint64_t> skips, abandons;
  bool unstoppable = false;  // cancel(…, true) finds the task running and unstoppable
  void reconnect() override { ++reconnects; }
  void skip_through(std::uint64_t sequence) override { skip_through_to = sequence; }
  void start(SessionCore::Start start) override { started.push_back(std::move(start)); }
  bool cancel(std::uint64_t sequence, bool abandon) override {
    (abandon ? abandons : skips).push_back(sequence);
    return abandon && unstoppable;
  }
};

struct Harness {
  std::vector<std::string> logs;
  SessionCore core;
  Recorder effects;
  std::vector<Sent> sent;

  explicit Harness(SessionCoreOptions options = {}, TimePoint now = t0)
      : core(options, wire::Ready{"w", "host", 42, 0, {}}, {"m.square", "m.sleep"}, now,
             [this](log::Level, const std::string& line) { logs.push_back(line); }) {}

  // The one drain, as worker/session.cpp and sim/workers.cpp call it.
  void carry_out() {
    std::vector<wire::Outgoing> out;
    core.carry_out(effects, out);
    for (wire::Outgoing& o : out) {
      CHECK(o.peer.empty());
      sent.push_back(Sent{wire::decode(o.header.data(), o.header.size()), std::move(o.payload)});
    }
  }
  std::vector<Sent> take() {
    carry_out();
    return std::exchange(sent, {});
  }
  std::vector<SessionCore::Start> starts() {
    carry_out();
    return std::exchange(effects.started, {});
  }
  bool take_reconnect() {
    carry_out();
    return std::exchange(effects.reconnects, 0) > 0;
  }
  std::uint64_t skip_through() {
    carry_out();
    return effects.skip_through_to;
  }
  std::vector<std::uint64_t>& skips() {
    carry_out();
    return effects.skips;
  }
  std::vector<std::uint64_t>& abandons() {
    carry_out();
    return effects.abandons;
  }

  // A message from the broker, as its frames arrive.
  void message(const wire::Message& message, TimePoint now, std::optional<Bytes> payload = {}) {
    const std::string header = wire::encode(message);
    core.on_message({}, header.data(), header.size(), payload ? &*payload : nullptr, now);
  }
  void task(std::uint64_t id, TimePoint now, const std::string& function = "m.square",
            std::uint32_t count = 1) {
    message(wire::Task{id, function, count}, now, Bytes(std::string("\x91\x05", 2)));
  }
  void alive(TimePoint now, std::uint32_t heartbeat_ms = 100, std::uint32_t liveness = 3,
             std::uint64_t instance = 7) {
    message(wire::Alive{instance, heartbeat_ms, liveness}, now);
  }
  bool logged(const std::string& text) const {
    for (const auto& line : logs) {
      if (line.find(text) != std::string::npos) return true;
    }
    return false;
  }
};

template <class T>
std::size_t count_of(const std::vector<Sent>& out) {
  return static_cast<std::size_t>(std::count_if(
      out.begin(), out.end(), [](const auto& o) { return std::holds_alternative<T>(o.message); }));
}

// Each entry of a result payload as (status, text).
std::vector<std::pair<int, std::string>> entries(const Bytes& payload) {
  msgpack::object_handle handle = msgpack::unpack(payload.data(), payload.size());
  std::vector<std::pair<int, std::string>> out;
  for (const auto& entry : handle.get().as<std::vector<msgpack::object>>()) {
    const auto pair = entry.as<std::vector<msgpack::object>>();
    out.emplace_back(pair.at(0).as<int>(), pair.at(1).type == msgpack::type::STR
                                               ? pair.at(1).as<std::string>()
                                               : std::string());
  }
  return out;
}

// Prefetch 4 and tasks waiting behind a running one offered back after 100 ms (W21).
SessionCoreOptions returning() {
  SessionCoreOptions options;
  options.prefetch = 4;
  options.return_after = 100ms;
  return options;
}

}  // namespace

TEST_CASE("W1 start: READY with the functions and the initial capacity, on the loop's socket") {
  Harness h;
  auto out = h.take();
  REQUIRE(out.size() == 1);
  const auto& ready = std::get<wire::Ready>(out[0].message);
  CHECK(ready.functions == std::vector<std::string>{"m.square", "m.sleep"});
  CHECK(ready.capacity == 2);
  CHECK(ready.name == "w");
  CHECK_FALSE(h.take_reconnect());  // the first connection is the socket loop's own

  SessionCoreOptions fixed;
  fixed.prefetch = 24;
  Harness p(fixed);
  CHECK(std::get<wire::Ready>(p.take().at(0).message).capacity == 24);
}

TEST_CASE("W2 serving, TASK for a provided function: held and started in the order received") {
  Harness h;
  h.take();
  h.task(5, t0);
  h.task(6, t0, "m.sleep");
  const auto starts = h.starts();
  REQUIRE(starts.size() == 2);
  CHECK(starts[0].sequence < starts[1].sequence);
  CHECK(starts[0].function_index == 0);
  CHECK(starts[1].function_index == 1);
  CHECK(starts[0].payload.view() == std::string("\x91\x05", 2));
  CHECK(h.core.held() == 2);
  CHECK(h.take().empty());
}

TEST_CASE("W3 TASK for another function: RESULT at once, every entry an error naming it") {
  Harness h;
  h.take();
  h.task(9, t0, "m.other", 3);
  CHECK(h.starts().empty());
  auto out = h.take();
  REQUIRE(out.size() == 1);
  CHECK(std::get<wire::Result>(out[0].message).task_id == 9);
  REQUIRE(out[0].payload);
  const auto e = entries(*out[0].payload);
  REQUIRE(e.size() == 3);
  for (const auto& [status, text] : e) {
    CHECK(status == 1);
    CHECK(text == "this worker does not provide m.other");
  }
}

TEST_CASE("W4 leaving, TASK for a provided function: ignored, the BYE hands it back") {
  Harness h;
  h.take();
  h.task(1, t0);
  h.starts();
  h.core.on_stop(t0);
  h.task(2, t0 + 1ms);
  CHECK(h.starts().empty());
  CHECK(h.take().empty());
  CHECK(h.core.held() == 1);
}

TEST_CASE(
    "W5 a held task finishes: RESULT with its entries, or count errors for a rejected chunk") {
  SessionCoreOptions fixed;
  fixed.prefetch = 4;  // no CREDIT in between
  Harness h(fixed);
  h.take();
  h.task(1, t0);
  h.task(2, t0, "m.square", 2);
  h.task(3, t0);
  const auto starts = h.starts();
  h.core.on_finished(starts[0].sequence, Outcome::Ok, 120,
                     Bytes(std::string("\x91\x92\x00\x19", 4)), t0 + 1ms);
  h.core.on_finished(starts[1].sequence, Outcome::Failed, 80, Bytes(std::string("bad chunk")),
                     t0 + 2ms);
  auto out = h.take();
  REQUIRE(count_of<wire::Result>(out) == 2);
  CHECK(std::get<wire::Result>(out[0].message).task_id == 1);
  CHECK(std::get<wire::Result>(out[0].message).elapsed_us == 120);
  CHECK(out[0].payload->view() == std::string("\x91\x92\x00\x19", 4));
  const auto& failed = out[1];
  CHECK(std::get<wire::Result>(failed.message).task_id == 2);
  CHECK(entries(*failed.payload) ==
        std::vector<std::pair<int, std::string>>{{1, "bad chunk"}, {1, "bad chunk"}});
  // RESULT's items_failed (§4.3): none of task 1's entries, both of the rejected chunk's.
  CHECK(std::get<wire::Result>(out[0].message).items_failed == 0);
  CHECK(std::get<wire::Result>(failed.message).items_failed == 2);
  // A skipped task (dropped, W10/W15) sends nothing.
  h.core.on_finished(starts[2].sequence, Outcome::Skipped, 0, Bytes(), t0 + 3ms);
  CHECK(count_of<wire::Result>(h.take()) == 0);
  CHECK(h.core.held() == 0);
}

TEST_CASE("W5 RESULT's items_failed counts the error entries of a chunk that ran") {
  SessionCoreOptions fixed;
  fixed.prefetch = 4;
  Harness h(fixed);
  h.take();
  h.task(1, t0, "m.square", 3);
  const auto starts = h.starts();
  // [[0, 1], [1, "boom"], [1, "bang"]]: two items the function failed.
  h.core.on_finished(starts[0].sequence, Outcome::Ok, 10,
                     Bytes(std::string("\x93\x92\x00\x01\x92\x01\xa4"
                                       "boom\x92\x01\xa4"
                                       "bang",
                                       18)),
                     t0 + 1ms);
  const auto out = h.take();
  REQUIRE(count_of<wire::Result>(out) == 1);
  CHECK(std::get<wire::Result>(out[0].message).items_failed == 2);
}

TEST_CASE("W6 adaptive capacity: CREDIT when tiny tasks double it, none with a fixed prefetch") {
  Harness h;
  h.take();
  h.task(1, t0);
  h.core.on_finished(h.starts().at(0).sequence, Outcome::Ok, 100, Bytes(std::string("\x90")),
                     t0 + 1ms);
  auto out = h.take();
  REQUIRE(count_of<wire::Credit>(out) == 1);
  CHECK(std::get<wire::Credit>(out.back().message).capacity == 51);  // 1 + 5000 µs / 100 µs

  SessionCoreOptions fixed;
  fixed.prefetch = 4;
  Harness f(fixed);
  f.take();
  f.task(1, t0);
  f.core.on_finished(f.starts().at(0).sequence, Outcome::Ok, 100, Bytes(std::string("\x90")),
                     t0 + 1ms);
  CHECK(count_of<wire::Credit>(f.take()) == 0);
}

TEST_CASE("W7 an idle worker sends HEARTBEAT every heartbeat_ms, and its deadline says when") {
  Harness h;
  h.alive(t0);
  h.take();
  CHECK(h.core.next_deadline(t0) == t0 + 100ms);
  h.core.on_tick(t0 + 99ms);
  CHECK(h.take().empty());
  h.core.on_tick(t0 + 100ms);
  auto out = h.take();
  REQUIRE(out.size() == 1);
  const auto& beat = std::get<wire::Heartbeat>(out[0].message);
  CHECK(beat.job_id == 0);
  CHECK(beat.seen == 1);  // `open` lists the tasks held: none
  CHECK(beat.open.empty());
  CHECK(h.core.next_deadline(t0) == t0 + 200ms);
}

TEST_CASE(
    "W7 results sent more often than heartbeat_ms do not postpone the HEARTBEAT: the "
    "broker's ALIVE answers keep a busy worker connected (the heartbeat gap)") {
  Harness h;
  h.alive(t0);  // 100 ms, liveness 3: silence of 300 ms means the broker is gone
  h.take();
  for (std::uint64_t id = 1; id <= 40; ++id) h.task(id, t0);
  auto starts = h.starts();
  std::size_t heartbeats = 0;
  // 40 tasks of 50 ms: 2 s of RESULTs, no new TASK. The broker answers each HEARTBEAT.
  for (std::size_t i = 0; i < starts.size(); ++i) {
    const TimePoint now = t0 + 50ms * static_cast<int>(i + 1);
    h.core.on_tick(now);
    h.core.on_finished(starts[i].sequence, Outcome::Ok, 50000, Bytes(std::string("\x90")), now);
    for (const auto& o : h.take()) {
      if (std::holds_alternative<wire::Heartbeat>(o.message)) {
        ++heartbeats;
        h.alive(now + 1ms);
      }
    }
    CHECK_FALSE(h.take_reconnect());
  }
  CHECK(heartbeats >= 19);
  CHECK_FALSE(h.logged("reconnecting"));
  CHECK(h.core.held() == 0);
}

TEST_CASE("W8 any message from the broker counts as hearing it and resets the backoff") {
  Harness h;
  h.alive(t0);
  h.take();
  h.core.on_tick(t0 + 301ms);  // silent: first reconnection
  CHECK(h.take_reconnect());
  h.core.on_tick(t0 + 402ms);  // silent again, after the 100 ms delay: second, delay now 200 ms
  CHECK(h.take_reconnect());
  h.task(1, t0 + 450ms);  // heard: delay back to 0
  h.take();
  h.core.on_tick(t0 + 450ms + 300ms);
  CHECK_FALSE(h.take_reconnect());
  h.core.on_tick(t0 + 450ms + 301ms);
  CHECK(h.take_reconnect());
}

TEST_CASE("W9 ALIVE: heartbeat and liveness adopted, zeros ignored, a new instance logged") {
  Harness h;
  CHECK(h.core.heartbeat() == 1000ms);
  h.alive(t0, 250, 5, 11);
  CHECK(h.core.heartbeat() == 250ms);
  CHECK(h.core.liveness() == 5);
  CHECK(h.core.instance() == 11);
  h.alive(t0, 0, 0, 11);
  CHECK(h.core.heartbeat() == 250ms);
  CHECK(h.core.liveness() == 5);
  CHECK_FALSE(h.logged("broker restarted"));
  h.alive(t0, 250, 5, 12);
  CHECK(h.logged("broker restarted"));
  CHECK(h.core.instance() == 12);
}

TEST_CASE("W10 ERROR not_ready: held tasks dropped (the running one's RESULT too), READY again") {
  Harness h;
  h.take();
  h.task(1, t0);
  h.task(2, t0);
  const auto starts = h.starts();
  h.message(wire::Error{wire::Code::NotReady, "unknown worker"}, t0 + 1ms);
  CHECK(h.skip_through() >= starts[1].sequence);  // not started: never run
  auto out = h.take();
  REQUIRE(out.size() == 1);
  CHECK(std::holds_alternative<wire::Ready>(out[0].message));
  CHECK_FALSE(h.take_reconnect());  // same connection
  h.core.on_finished(starts[0].sequence, Outcome::Ok, 10, Bytes(std::string("\x90")), t0 + 2ms);
  h.core.on_finished(starts[1].sequence, Outcome::Skipped, 0, Bytes(), t0 + 2ms);
  CHECK(count_of<wire::Result>(h.take()) == 0);
  // Tasks sent after the READY are answered.
  h.task(3, t0 + 3ms);
  h.core.on_finished(h.starts().at(0).sequence, Outcome::Ok, 10, Bytes(std::string("\x90")),
                     t0 + 4ms);
  CHECK(count_of<wire::Result>(h.take()) == 1);
}

TEST_CASE("W11 ERROR forbidden: the worker stops for good") {
  Harness h;
  h.take();
  h.message(wire::Error{wire::Code::Forbidden, "READY needs a worker key"}, t0);
  CHECK(h.core.ending() == SessionCore::Ending::Forbidden);
  CHECK(h.logged("not as a worker's"));
  h.core.on_tick(t0 + 10s);
  CHECK(h.take().empty());
}

TEST_CASE("W12 another ERROR is logged and changes nothing") {
  Harness h;
  h.take();
  h.task(1, t0);
  h.message(wire::Error{wire::Code::BadMessage, "what"}, t0);
  CHECK(h.logged("bad_message: what"));
  CHECK(h.take().empty());
  CHECK(h.core.held() == 1);
  CHECK(h.core.ending() == SessionCore::Ending::Running);
}

TEST_CASE("W13 BYE from the broker: held tasks dropped, reconnection at once, then backoff") {
  Harness h;
  h.alive(t0);
  h.take();
  h.task(1, t0);
  const auto start = h.starts().at(0);
  h.message(wire::Bye{"broker shutting down"}, t0 + 10ms);
  CHECK(h.logged("waiting for it to come back"));
  CHECK(h.skip_through() >= start.sequence);
  h.core.on_tick(t0 + 10ms + 1us);
  CHECK(h.take_reconnect());
  CHECK(count_of<wire::Ready>(h.take()) == 1);
  CHECK(h.core.ending() == SessionCore::Ending::Running);
}

TEST_CASE(
    "W14 silence over heartbeat × liveness: drop held tasks, new socket, READY; delays "
    "double from the heartbeat up to the cap") {
  SessionCoreOptions options;
  options.max_reconnect_delay = 400ms;
  Harness h(options);
  h.alive(t0);
  h.take();
  h.task(1, t0 + 100ms);
  const auto start = h.starts().at(0);
  h.take();
  h.core.on_tick(t0 + 400ms);  // exactly the expiry: not more
  CHECK_FALSE(h.take_reconnect());
  h.take();  // the HEARTBEAT it sent meanwhile
  CHECK(h.core.next_deadline(t0) <= t0 + 400ms + 1us);
  h.core.on_tick(t0 + 400ms + 1us);
  CHECK(h.take_reconnect());
  CHECK(h.logged("reconnecting"));
  CHECK(h.skip_through() >= start.sequence);
  auto out = h.take();
  REQUIRE_FALSE(out.empty());
  CHECK(std::holds_alternative<wire::Ready>(out[0].message));
  // The running task's result belongs to the abandoned connection.
  h.core.on_finished(start.sequence, Outcome::Ok, 10, Bytes(std::string("\x90")), t0 + 410ms);
  CHECK(count_of<wire::Result>(h.take()) == 0);
  // Still silent: attempts after 100, 200, 400, 400 ms.
  std::vector<std::chrono::milliseconds> gaps;
  TimePoint last = t0 + 400ms + 1us;
  for (TimePoint now = last; now < t0 + 3s; now += 1ms) {
    h.core.on_tick(now);
    if (h.take_reconnect()) {
      gaps.push_back(std::chrono::duration_cast<std::chrono::milliseconds>(now - last));
      last = now;
    }
  }
  REQUIRE(gaps.size() >= 4);
  // "More than" the delay: the first 1 ms tick after it.
  const std::vector<std::chrono::milliseconds> expected = {100ms, 200ms, 400ms, 400ms};
  for (std::size_t i = 0; i < expected.size(); ++i) {
    CHECK(gaps[i] >= expected[i]);
    CHECK(gaps[i] <= expected[i] + 1ms);
  }
}

TEST_CASE(
    "W15 SIGTERM: tasks not started are skipped, new ones ignored, the running one answered") {
  Harness h;
  h.take();
  h.task(1, t0);
  h.task(2, t0);
  const auto starts = h.starts();
  h.core.on_stop(t0 + 1ms);
  CHECK(h.core.leaving());
  CHECK(h.skip_through() >= starts[1].sequence);
  CHECK(h.take().empty());  // no BYE while a task is held
  h.core.on_finished(starts[0].sequence, Outcome::Ok, 10, Bytes(std::string("\x90")), t0 + 2ms);
  auto out = h.take();
  CHECK(count_of<wire::Result>(out) == 1);
  CHECK(count_of<wire::Bye>(out) == 0);
  CHECK(h.core.ending() == SessionCore::Ending::Running);
}

TEST_CASE("W21 leaving (W15): tasks waiting behind the running one are still offered back") {
  // Issue 26: a stopping worker kept them until its long task ended and its BYE handed them
  // back, their time limits running at the broker all the while.
  Harness h(returning());
  h.take();
  h.task(1, t0);
  h.task(2, t0);
  h.task(3, t0);
  h.core.on_stop(t0 + 10ms);
  CHECK(h.core.next_deadline(t0 + 10ms) <= t0 + 100ms);
  h.core.on_tick(t0 + 100ms);
  auto out = h.take();
  REQUIRE(count_of<wire::Return>(out) == 1);
  CHECK(std::get<wire::Return>(out.back().message).task_ids == std::vector<std::uint64_t>{2, 3});
  CHECK(count_of<wire::Bye>(out) == 0);  // the running task is still held
}

TEST_CASE("W16 leaving with nothing held: BYE \"worker stopping\", then stopped") {
  SessionCoreOptions fixed;
  fixed.prefetch = 4;  // no CREDIT in between
  Harness h(fixed);
  h.take();
  h.task(1, t0);
  const auto start = h.starts().at(0);
  h.core.on_stop(t0 + 1ms);
  h.core.on_finished(start.sequence, Outcome::Ok, 10, Bytes(std::string("\x90")), t0 + 2ms);
  auto out = h.take();
  REQUIRE(out.size() == 2);
  CHECK(std::holds_alternative<wire::Result>(out[0].message));
  CHECK(std::get<wire::Bye>(out[1].message).reason == "worker stopping");
  CHECK(h.core.ending() == SessionCore::Ending::Stopped);

  Harness idle;  // stopped while holding nothing: BYE at once
  idle.take();
  idle.core.on_stop(t0);
  CHECK(count_of<wire::Bye>(idle.take()) == 1);
  CHECK(idle.core.ending() == SessionCore::Ending::Stopped);
}

TEST_CASE("W17 exit_when_idle: BYE \"worker idle\" after holding nothing for D, not before") {
  SessionCoreOptions options;
  options.exit_when_idle = 500ms;
  Harness h(options);  // heartbeat 1 s, liveness 3: no reconnection in this test
  h.take();
  h.task(1, t0 + 100ms);
  h.core.on_tick(t0 + 700ms);  // busy: not idle
  CHECK(h.core.ending() == SessionCore::Ending::Running);
  h.core.on_finished(h.starts().at(0).sequence, Outcome::Ok, 10, Bytes(std::string("\x90")),
                     t0 + 800ms);
  h.take();
  CHECK(h.core.next_deadline(t0) <= t0 + 1300ms);
  h.core.on_tick(t0 + 1299ms);
  CHECK(h.core.ending() == SessionCore::Ending::Running);
  h.core.on_tick(t0 + 1300ms);
  CHECK(h.core.ending() == SessionCore::Ending::Stopped);
  auto out = h.take();
  REQUIRE_FALSE(out.empty());
  CHECK(std::get<wire::Bye>(out.back().message).reason == "worker idle");
}

TEST_CASE("W18 exit_on_broker_bye: BYE from the broker stops the worker, held tasks dropped") {
  SessionCoreOptions options;
  options.exit_on_broker_bye = true;
  Harness h(options);
  h.take();
  h.task(1, t0);
  const auto start = h.starts().at(0);
  h.message(wire::Bye{"broker shutting down"}, t0 + 1ms);
  CHECK(h.core.ending() == SessionCore::Ending::Stopped);
  CHECK(h.skip_through() >= start.sequence);
  CHECK(h.take().empty());  // nothing to say to a broker that is leaving
  CHECK_FALSE(h.take_reconnect());
}

TEST_CASE("W19 CANCEL for a held task not started: skipped, answered \"cancelled\"") {
  SessionCoreOptions fixed;
  fixed.prefetch = 4;
  Harness h(fixed);
  h.take();
  h.task(1, t0);
  h.task(2, t0);
  const auto starts = h.starts();
  h.message(wire::Cancel{{2}}, t0 + 1ms);
  CHECK(h.abandons() == std::vector<std::uint64_t>{starts[1].sequence});
  h.abandons().clear();
  h.core.on_finished(starts[0].sequence, Outcome::Ok, 10, Bytes(std::string("\x91\x92\x00\x19", 4)),
                     t0 + 2ms);
  h.core.on_finished(starts[1].sequence, Outcome::Skipped, 0, Bytes(), t0 + 2ms);
  auto out = h.take();
  REQUIRE(count_of<wire::Result>(out) == 2);
  CHECK(std::get<wire::Result>(out[0].message).task_id == 1);
  CHECK(std::get<wire::Result>(out[1].message).task_id == 2);
  const auto e = entries(*out[1].payload);
  REQUIRE(e.size() == 1);
  CHECK(e[0] == std::pair<int, std::string>{1, "cancelled by the broker"});
  CHECK(h.core.held() == 0);
}

TEST_CASE("W20 CANCEL for the running task: abandoned, its answer says \"cancelled\"") {
  Harness h;
  h.take();
  h.task(1, t0);
  const auto start = h.starts().at(0);
  h.message(wire::Cancel{{1}}, t0 + 1ms);
  // The socket loop stops it: a command's process group is killed, a module function's process
  // replaced (then no answer is sent at all).
  CHECK(h.abandons() == std::vector<std::uint64_t>{start.sequence});
  h.core.on_finished(start.sequence, Outcome::Failed, 30, Bytes(std::string("killed")), t0 + 50ms);
  auto out = h.take();
  REQUIRE(count_of<wire::Result>(out) == 1);
  CHECK(entries(*out[0].payload).at(0).second == "cancelled by the broker");
  CHECK(count_of<wire::Credit>(out) == 0);  // an abandoned run says nothing about task times
}

TEST_CASE(
    "W21, W22 tasks waiting behind one running for return_after: CREDIT 1, RETURN, kept until "
    "CANCEL") {
  Harness h(returning());
  h.take();
  h.task(1, t0);
  h.task(2, t0);
  h.task(3, t0);
  const auto starts = h.starts();
  CHECK(h.core.next_deadline(t0) <= t0 + 100ms);
  h.core.on_tick(t0 + 99ms);
  CHECK(count_of<wire::Return>(h.take()) == 0);
  h.core.on_tick(t0 + 100ms);
  auto out = h.take();
  REQUIRE(out.size() == 2);
  CHECK(std::get<wire::Credit>(out[0].message).capacity == 1);
  CHECK(std::get<wire::Return>(out[1].message).task_ids == std::vector<std::uint64_t>{2, 3});
  CHECK(h.skips().empty());  // an offer: a broker that predates RETURN refuses it
  h.core.on_tick(t0 + 200ms);
  CHECK(count_of<wire::Return>(h.take()) == 0);  // offered once
  h.message(wire::Cancel{{2, 3}}, t0 + 201ms);   // the broker took them
  CHECK(h.skips() == std::vector<std::uint64_t>{starts[1].sequence, starts[2].sequence});
  CHECK(h.abandons().empty());
  // The running one still answers; the returned ones never do, whatever the executor says.
  h.core.on_finished(starts[0].sequence, Outcome::Ok, 300000,
                     Bytes(std::string("\x91\x92\x00\x19", 4)), t0 + 300ms);
  h.core.on_finished(starts[1].sequence, Outcome::Skipped, 0, Bytes(), t0 + 300ms);
  h.core.on_finished(starts[2].sequence, Outcome::Ok, 5, Bytes(std::string("\x91\x92\x00\x19", 4)),
                     t0 + 300ms);
  out = h.take();
  REQUIRE(count_of<wire::Result>(out) == 1);
  CHECK(std::get<wire::Result>(out[0].message).task_id == 1);
  CHECK(std::get<wire::Credit>(out.back().message).capacity == 4);  // its own credit again
}

TEST_CASE(
    "W22, W24 CANCEL taking back an offered copy of a task held twice: the broker forgot the id, "
    "so the running copy, which has run return_after, is abandoned without an answer") {
  Harness h(returning());
  h.take();
  h.task(1, t0);
  h.task(1, t0);  // sent again after a READY re-queued it
  const auto starts = h.starts();
  h.core.on_tick(t0 + 100ms);
  auto out = h.take();
  REQUIRE(count_of<wire::Return>(out) == 1);
  CHECK(std::get<wire::Return>(out.back().message).task_ids == std::vector<std::uint64_t>{1});
  h.message(wire::Cancel{{1}}, t0 + 101ms);  // the broker took it back
  // Neither copy is wanted: the executor skips the one not started.
  CHECK(h.skips() == std::vector<std::uint64_t>{starts[0].sequence, starts[1].sequence});
  // The broker re-queued the task under a new id and sends nothing more here meanwhile: the
  // running copy would hold this worker, for ever if it never returns (seppo-sim seed 700).
  CHECK(h.abandons() == std::vector<std::uint64_t>{starts[0].sequence});
  h.core.on_finished(starts[0].sequence, Outcome::Failed, 0, Bytes(std::string("killed")),
                     t0 + 102ms);
  h.core.on_finished(starts[1].sequence, Outcome::Skipped, 0, Bytes(), t0 + 102ms);
  CHECK(count_of<wire::Result>(h.take()) == 0);
  CHECK(h.core.held() == 0);
}

TEST_CASE(
    "W24 a task taken back just after it started is spared at first; once work sent after it "
    "is offered back and taken, it is abandoned") {
  Harness h(returning());
  h.take();
  h.task(1, t0);
  h.task(2, t0);
  auto starts = h.starts();
  h.core.on_tick(t0 + 100ms);
  REQUIRE(count_of<wire::Return>(h.take()) == 1);  // offers 2
  // 1 ends and 2 starts before the broker's CANCEL for 2 arrives: 2 runs on, spared, since
  // the broker (which still counted 1 there) may send us work again at once.
  h.core.on_finished(starts[0].sequence, Outcome::Ok, 10, Bytes(std::string("\x91\x92\x00\x19", 4)),
                     t0 + 101ms);
  h.take();
  h.message(wire::Cancel{{2}}, t0 + 103ms);
  CHECK(h.abandons().empty());
  h.skips().clear();  // 2 is running: the executor skips only what has not started
  // It runs on (it never returns); the broker sends work, which waits behind it and is offered
  // back; once the broker takes it, 2 is abandoned: nobody waits for it.
  h.task(3, t0 + 250ms);
  starts = h.starts();
  const auto out = h.take();
  REQUIRE(count_of<wire::Return>(out) == 1);
  CHECK(std::get<wire::Return>(out.back().message).task_ids == std::vector<std::uint64_t>{3});
  h.message(wire::Cancel{{3}}, t0 + 252ms);
  CHECK(h.skips() == std::vector<std::uint64_t>{starts[0].sequence});
  REQUIRE(h.abandons().size() == 1);
  CHECK(h.abandons()[0] == starts[0].sequence - 1);  // task 2's
  CHECK(h.logged("although no broker waits for it"));
}

TEST_CASE(
    "W24 a task taken back after it started, with nothing waiting behind it, is abandoned once "
    "it has run return_after (the broker sends nothing more here meanwhile: seppo-sim 41988)") {
  Harness h(returning());
  h.take();
  h.task(1, t0);
  h.task(2, t0);
  const auto starts = h.starts();
  h.core.on_tick(t0 + 100ms);
  REQUIRE(count_of<wire::Return>(h.take()) == 1);
  h.core.on_finished(starts[0].sequence, Outcome::Ok, 10, Bytes(std::string("\x91\x92\x00\x19", 4)),
                     t0 + 101ms);
  h.take();                                  // 1's RESULT
  h.message(wire::Cancel{{2}}, t0 + 103ms);  // 2 started at 101 ms
  CHECK(h.abandons().empty());
  CHECK(h.core.next_deadline(t0) <= t0 + 201ms);
  h.core.on_tick(t0 + 200ms);
  CHECK(h.abandons().empty());
  h.core.on_tick(t0 + 201ms);
  CHECK(h.abandons() == std::vector<std::uint64_t>{starts[1].sequence});
  h.core.on_finished(starts[1].sequence, Outcome::Failed, 0, Bytes(std::string("killed")),
                     t0 + 202ms);
  CHECK(count_of<wire::Result>(h.take()) == 0);
}

TEST_CASE(
    "W24 a task held from before the session started over is abandoned when the broker takes "
    "back the work waiting behind it") {
  Harness h(returning());
  h.take();
  h.task(1, t0);
  const auto first = h.starts().at(0);
  // The broker restarted and does not know us: task 1 runs on, its answer will be dropped.
  h.message(wire::Error{wire::Code::NotReady, "unknown worker"}, t0 + 1ms);
  h.take();
  h.task(5, t0 + 200ms);
  const auto out = h.take();
  REQUIRE(count_of<wire::Return>(out) == 1);
  h.message(wire::Cancel{{5}}, t0 + 202ms);
  CHECK(h.abandons() == std::vector<std::uint64_t>{first.sequence});
}

TEST_CASE("W23 CANCEL for a task not held: ignored") {
  Harness h;
  h.take();
  h.message(wire::Cancel{{99}}, t0);
  CHECK(h.abandons().empty());
  CHECK(h.take().empty());
}

TEST_CASE("W20 a cancelled task that cannot be stopped ends the session before anything is sent") {
  SessionCoreOptions fixed;
  fixed.prefetch = 4;
  Harness h(fixed);
  h.take();
  h.task(1, t0);
  h.task(2, t0);
  const auto starts = h.starts();
  REQUIRE(starts.size() == 2);
  h.take();
  h.task(3, t0 + 1ms, "m.other");  // answered at once, but the drain ends before the messages
  h.message(wire::Cancel{{1}}, t0 + 1ms);
  h.effects.unstoppable = true;  // a module function: the process must go
  auto out = h.take();
  CHECK(out.empty());  // the RESULT for task 3 dies with the process: the connection says enough
  CHECK(h.core.ending() == SessionCore::Ending::Abandoned);
  CHECK(h.logged("cannot be interrupted"));
  CHECK(h.core.next_deadline(t0) == TimePoint::min());
  // Nothing more: the process is going.
  h.core.on_finished(starts[0].sequence, Outcome::Ok, 10, Bytes(std::string("\x90")), t0 + 2ms);
  h.core.on_tick(t0 + 10s);
  CHECK(h.take().empty());
}

TEST_CASE("Frames are decoded by the core: a header that does not decode is logged and dropped") {
  Harness h;
  h.alive(t0);
  h.take();
  const std::string junk("\x93\x07\xff", 3);
  h.core.on_message({}, junk.data(), junk.size(), nullptr, t0 + 200ms);
  CHECK(h.logged("dropped a malformed message from the broker"));
  // Not a sign of life: the broker's silence still counts from its ALIVE.
  h.core.on_tick(t0 + 301ms);
  CHECK(h.take_reconnect());
  // A TASK without its payload frame is refused too.
  Harness t;
  t.take();
  t.message(wire::Task{1, "m.square", 1}, t0);
  CHECK(t.starts().empty());
  CHECK(t.logged("TASK without its payload frame"));
}

TEST_CASE(
    "W25 orphan: a stopping worker whose supervisor is gone leaves its task after the grace") {
  SessionCoreOptions options;
  options.orphan_grace = 5000ms;
  Harness h(options);
  h.alive(t0, 1000, 3);
  h.take();
  h.task(1, t0);
  h.starts();
  h.core.on_stop(t0 + 1s);  // SIGTERM: finish the running task first
  h.take();
  CHECK(h.core.leaving());
  // With its supervisor there, a stopping worker waits for its task (the supervisor kills it
  // after its own grace).
  h.core.on_tick(t0 + 20s);
  h.alive(t0 + 20s, 1000, 3);
  CHECK(h.core.ending() == SessionCore::Ending::Running);
  Harness o(options);
  o.alive(t0, 1000, 3);
  o.take();
  o.task(1, t0);
  o.starts();
  o.core.on_stop(t0 + 1s);
  o.core.on_parent_gone(t0 + 2s);
  CHECK(o.core.next_deadline(t0 + 2s) <= t0 + 6s);
  o.core.on_tick(t0 + 6s - 1ms);
  CHECK(o.core.ending() == SessionCore::Ending::Running);
  o.core.on_tick(t0 + 6s);  // 5 s after SIGTERM
  CHECK(o.core.ending() == SessionCore::Ending::Abandoned);
  CHECK(o.logged("no supervisor left"));
  // No BYE: the closed connection hands back what it held.
  CHECK(count_of<wire::Bye>(o.take()) == 0);
  // An orphan whose task finishes in time says BYE as any stopping worker.
  Harness f(options);
  f.take();
  f.task(1, t0);
  const auto start = f.starts().at(0);
  f.core.on_stop(t0 + 1s);
  f.core.on_parent_gone(t0 + 1s);
  f.core.on_finished(start.sequence, Outcome::Ok, 10, Bytes(std::string("\x90")), t0 + 2s);
  CHECK(f.core.ending() == SessionCore::Ending::Stopped);
  CHECK(count_of<wire::Bye>(f.take()) == 1);
}

TEST_CASE("Bytes shared with a zmq::message_t and back point at the same bytes, never copied") {
  const std::string text(kCopyBelow + 1, 'x');
  const Bytes original(text);
  {
    zmq::message_t frame = to_zmq(original);
    CHECK(frame.data<char>() == original.data());
    CHECK(original.owner().use_count() == 2);  // the frame holds the owner, not a copy
    const Bytes back = from_zmq(std::move(frame));
    CHECK(back.view() == text);
    CHECK(back.data() == original.data());
  }
  CHECK(original.owner().use_count() == 1);  // released with the last frame
  CHECK(to_zmq(Bytes()).size() == 0);
  CHECK(Bytes().view().empty());
}

TEST_CASE("Small Bytes are copied into their zmq::message_t, cheaper than sharing") {
  const Bytes original(std::string("payload bytes"));
  zmq::message_t frame = to_zmq(original);
  CHECK(frame.to_string_view() == "payload bytes");
  CHECK(frame.data<char>() != original.data());
  CHECK(original.owner().use_count() == 1);
}

// seppo-worker's supervisor and the local cluster's keeper restart crashed workers by this one
// rule (common/crash_backoff.hpp).
TEST_CASE("Crash-loop backoff: at once for three deaths per process in the window, then slower") {
  seppo::CrashBackoff backoff(10s);
  const auto now = seppo::CrashBackoff::Clock::time_point{} + 1h;
  for (int i = 0; i < 6; ++i) CHECK(backoff.died(now, 2) == now);  // 2 processes: 6 at once
  CHECK(backoff.died(now, 2) == now + 700ms);                      // the 7th: 100 ms each
  for (int i = 0; i < 60; ++i) backoff.died(now, 2);
  CHECK(backoff.died(now, 2) == now + 5s);  // at most 5 s
  // Deaths older than the window are forgotten.
  CHECK(backoff.died(now + 10s + 1ms, 2) == now + 10s + 1ms);
}

// Issue 25: work kept across a broker's restart (docs/protocol.md §9.1, rows W26 to W29).
namespace {

// A TASK carrying its identity outliving the broker (TASK's job and first, "adopt").
void keyed_task(Harness& h, std::uint64_t id, std::uint64_t job, std::uint64_t first,
                TimePoint now) {
  h.message(wire::Task{id, "m.square", 1, job, first}, now, Bytes(std::string("\x91\x05", 2)));
}

void adopting_alive(Harness& h, TimePoint now, std::uint64_t instance = 7) {
  h.message(wire::Alive{instance, 100, 3, 0, {std::string(wire::kFeatureAdopt)}}, now);
}

}  // namespace

TEST_CASE("W26 broker lost with tasks that carry their identity: they run on, READY lists them") {
  Harness h;
  auto first = h.take();
  REQUIRE(first.size() == 1);
  CHECK(wire::has_feature(std::get<wire::Ready>(first[0].message).features, wire::kFeatureAdopt));
  adopting_alive(h, t0);
  keyed_task(h, 11, 0xabc, 4, t0);
  keyed_task(h, 12, 0xabc, 5, t0);
  h.task(13, t0);  // without an identity: dropped as before
  const auto starts = h.starts();
  REQUIRE(starts.size() == 3);
  h.message(wire::Bye{"broker shutting down"}, t0 + 10ms);
  CHECK(h.core.detached() == 2);
  // Only the task without an identity is skipped; the others are not.
  CHECK(h.skips() == std::vector<std::uint64_t>{starts[2].sequence});
  CHECK(h.skip_through() < starts[0].sequence);
  h.core.on_tick(t0 + 10ms + 1us);
  CHECK(h.take_reconnect());
  auto out = h.take();
  REQUIRE(count_of<wire::Ready>(out) == 1);
  const auto& ready = std::get<wire::Ready>(out.back().message);
  const auto held = wire::held_tasks(ready.held);
  REQUIRE(held.size() == 2);
  CHECK(held[0].task_id == 11);
  CHECK(held[0].job == 0xabc);
  CHECK(held[0].first == 4);
  CHECK(held[0].count == 1);
  CHECK(held[1].task_id == 12);
  // HEARTBEATs list them apart from the tasks of this broker, with their identity.
  adopting_alive(h, t0 + 20ms, 8);
  h.core.on_tick(t0 + 200ms);
  out = h.take();
  REQUIRE(count_of<wire::Heartbeat>(out) == 1);
  for (const auto& o : out) {
    if (const auto* beat = std::get_if<wire::Heartbeat>(&o.message)) {
      CHECK(beat->open.empty());
      CHECK(wire::held_tasks(beat->held).size() == 2);
    }
  }
  CHECK_FALSE(h.logged("abandoning it"));  // W24 leaves a kept task alone
}

TEST_CASE(
    "W27 a kept task finished while no broker adopts: its result kept, handed over on ALIVE") {
  SessionCoreOptions options;
  options.keep_result_bytes = 40;
  Harness h(options);
  h.take();
  adopting_alive(h, t0);
  keyed_task(h, 11, 0xabc, 4, t0);
  keyed_task(h, 12, 0xabc, 5, t0);
  const auto starts = h.starts();
  h.message(wire::Error{wire::Code::NotReady, "unknown worker"}, t0 + 1ms);
  h.take();
  const std::string result = "\x91\x92\x00\x19";  // [[0, 25]]
  h.core.on_finished(starts[0].sequence, Outcome::Ok, 10, Bytes(result), t0 + 2ms);
  CHECK(count_of<wire::Result>(h.take()) == 0);  // no broker has said it adopts
  CHECK(h.core.results_held() == 1);
  CHECK(h.core.result_bytes_held() == result.size());
  // Over the bound: dropped, its items run again.
  h.core.on_finished(starts[1].sequence, Outcome::Ok, 10, Bytes(std::string(40, '\x90')), t0 + 3ms);
  CHECK(h.logged("its items will run again"));
  CHECK(h.core.results_held() == 1);
  adopting_alive(h, t0 + 4ms, 8);
  const auto out = h.take();
  REQUIRE(count_of<wire::Result>(out) == 1);
  for (const auto& o : out) {
    if (const auto* r = std::get_if<wire::Result>(&o.message)) {
      CHECK(r->task_id == 11);
      CHECK(o.payload->str() == result);
    }
  }
  CHECK(h.core.results_held() == 0);
}

TEST_CASE("W28 ALIVE of a broker that does not adopt: kept tasks and results dropped, as before") {
  Harness h;
  h.take();
  adopting_alive(h, t0);
  keyed_task(h, 11, 0xabc, 4, t0);
  keyed_task(h, 12, 0xabc, 5, t0);
  const auto starts = h.starts();
  h.message(wire::Error{wire::Code::NotReady, "unknown worker"}, t0 + 1ms);
  h.take();
  h.alive(t0 + 2ms, 100, 3, 9);  // no features: an older broker
  CHECK(h.core.detached() == 0);
  CHECK(h.logged("does not adopt"));
  const auto& skips = h.skips();
  CHECK(std::find(skips.begin(), skips.end(), starts[1].sequence) != skips.end());
  h.core.on_finished(starts[0].sequence, Outcome::Ok, 10, Bytes(std::string("\x90")), t0 + 3ms);
  CHECK(count_of<wire::Result>(h.take()) == 0);
}

TEST_CASE("W29 CANCEL naming a kept task or result: dropped without an answer") {
  Harness h;
  h.take();
  adopting_alive(h, t0);
  keyed_task(h, 11, 0xabc, 4, t0);
  keyed_task(h, 12, 0xabc, 5, t0);
  keyed_task(h, 13, 0xabc, 6, t0);
  const auto starts = h.starts();
  h.message(wire::Error{wire::Code::NotReady, "unknown worker"}, t0 + 1ms);
  h.core.on_finished(starts[0].sequence, Outcome::Ok, 10, Bytes(std::string("\x91\x92\x00\x19")),
                     t0 + 2ms);
  h.take();
  CHECK(h.core.results_held() == 1);
  // The new broker will not adopt 11 (kept result), 12 (running now) nor 13 (waiting).
  h.message(wire::Cancel{{11, 12, 13}}, t0 + 3ms);
  CHECK(h.core.results_held() == 0);
  CHECK(h.core.detached() == 0);
  const auto& abandons = h.abandons();
  CHECK(std::find(abandons.begin(), abandons.end(), starts[1].sequence) != abandons.end());
  CHECK(std::find(abandons.begin(), abandons.end(), starts[2].sequence) != abandons.end());
  h.core.on_finished(starts[1].sequence, Outcome::Ok, 10, Bytes(std::string("\x90")), t0 + 4ms);
  h.core.on_finished(starts[2].sequence, Outcome::Skipped, 0, Bytes(), t0 + 4ms);
  adopting_alive(h, t0 + 5ms, 8);
  CHECK(count_of<wire::Result>(h.take()) == 0);
}

// A pair of brokers (docs/protocol.md §15.4): two endpoints, heartbeat 1000 ms (the default).
SessionCoreOptions pair_of_brokers() {
  SessionCoreOptions options;
  options.endpoint = "tcp://127.0.0.1:1,tcp://127.0.0.1:2";
  return options;
}

TEST_CASE("W40: with several endpoints, silence for heartbeat × 3/2 moves to the next one") {
  Harness h(pair_of_brokers());
  h.take();
  CHECK(h.core.endpoint_index() == 0);
  h.alive(t0, 1000);
  h.task(5, t0 + 10ms);
  REQUIRE(h.starts().size() == 1);
  h.core.on_tick(t0 + 1510ms);  // not yet more than 1.5 s since the TASK
  CHECK(!h.take_reconnect());
  h.core.on_tick(t0 + 1511ms);
  CHECK(h.take_reconnect());
  CHECK(h.core.endpoint_index() == 1);
  const auto out = h.take();
  REQUIRE(count_of<wire::Ready>(out) == 1);
  CHECK(h.logged("trying tcp://127.0.0.1:2"));
  // The next endpoint has probe = heartbeat / 2 to answer, then the list wraps around.
  h.core.on_tick(t0 + 2011ms);
  CHECK(!h.take_reconnect());
  h.core.on_tick(t0 + 2012ms);
  CHECK(h.take_reconnect());
  CHECK(h.core.endpoint_index() == 0);
  // Heard: the delay resets, and the silence rule starts again from there.
  h.alive(t0 + 2100ms, 1000);
  h.core.on_tick(t0 + 3500ms);
  CHECK(!h.take_reconnect());
  CHECK(h.core.endpoint_index() == 0);
}

TEST_CASE("W41: ERROR not_active moves to the next endpoint after heartbeat / 2") {
  Harness h(pair_of_brokers());
  h.take();
  h.message(wire::Error{wire::Code::NotActive, "passive"}, t0 + 5ms);
  CHECK(h.logged("not the active one"));
  h.core.on_tick(t0 + 504ms);
  CHECK(!h.take_reconnect());
  h.core.on_tick(t0 + 506ms);
  CHECK(h.take_reconnect());
  CHECK(h.core.endpoint_index() == 1);
  CHECK(count_of<wire::Ready>(h.take()) == 1);
  // With one endpoint the worker stays with it and tries it again (W14's timing).
  Harness one;
  one.take();
  one.message(wire::Error{wire::Code::NotActive, "passive"}, t0 + 5ms);
  CHECK(one.logged("give seppo-worker both endpoints"));
  one.core.on_tick(t0 + 506ms);
  CHECK(one.take_reconnect());
  CHECK(one.core.endpoint_index() == 0);
}
