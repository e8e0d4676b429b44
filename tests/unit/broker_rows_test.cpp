// The broker's rows (docs/protocol.md §7.2-§7.4, §10, §10.1), one test case per row, named by
// its number. Rows an older test already covered exactly carry their number there instead
// (broker_core_test.cpp, task_timer_test.cpp): `unit-tests -tc='B*'` runs them all.
#include <doctest/doctest.h>

#include <algorithm>
#include <string>
#include <vector>

#include "broker/core.hpp"
#include "broker_harness.hpp"
#include "protocol/wire.hpp"

using namespace seppo;
using namespace seppo::broker_test;

TEST_CASE("B1: a valid READY registers the worker, is answered ALIVE, and gets queued work") {
  Harness h;
  h.submit("C1", 1, "m.f", 0, items(1), 1, 60000);
  h.drain();
  h.deliver("W1", wire::Ready{"W1", "host", 1, 2, {"m.f", "m.f"}});  // duplicates ignored
  const auto out = h.drain();
  CHECK(h.core.worker_count() == 1);
  const auto alive = h.sent_to<wire::Alive>(out, "W1");
  REQUIRE(alive.size() == 1);
  CHECK(alive[0].instance == 42);
  CHECK(alive[0].heartbeat_ms == 1000);
  CHECK(alive[0].liveness == 3);
  CHECK(h.sent_to<wire::Task>(out, "W1").size() == 1);
}

TEST_CASE("B3: a BYE from an unknown peer is ignored") {
  Harness h;
  h.deliver("X", wire::Bye{"leaving"});
  CHECK(h.drain().empty());
  CHECK(h.core.worker_count() == 0);
  CHECK(h.core.client_count() == 0);
}

TEST_CASE("B4: an invalid READY is refused with bad_message and changes nothing") {
  Harness h;
  h.ready("W1", {"m.f"});
  h.submit("C1", 1, "m.f", 0, items(1), 1);
  REQUIRE(h.sent_to<wire::Task>(h.drain(), "W1").size() == 1);
  h.deliver("W1", wire::Ready{"W1", "host", 1, 1, {}});  // no function
  h.deliver("W2", wire::Ready{"W2", "host", 1, 1, {std::string(257, 'f')}});
  const auto out = h.drain();
  for (const char* peer : {"W1", "W2"}) {
    const auto errors = h.sent_to<wire::Error>(out, peer);
    REQUIRE(errors.size() == 1);
    CHECK(errors[0].code == wire::Code::BadMessage);
  }
  CHECK(h.core.worker_count() == 1);
  CHECK(h.core.inflight_count("W1") == 1);  // still holds its task
  CHECK(h.core.queued_count() == 0);
}

TEST_CASE("B6: a RESULT refreshes its worker, returns its credit and dispatches the next task") {
  Harness h;
  const auto tasks = h.serve("W1", 1, 2);
  REQUIRE(tasks.size() == 1);
  h.now += 2000ms;
  h.deliver("C1", wire::Heartbeat{1, 0, {0, 1}});
  h.result("W1", tasks[0].task_id, 1);
  const auto out = h.drain();
  CHECK(h.sent_to<wire::Deliver>(out, "C1").size() == 1);
  CHECK(h.sent_to<wire::Task>(out, "W1").size() == 1);
  h.now += 2000ms;  // 4 s after its HEARTBEAT, 2 s after its RESULT
  h.deliver("C1", wire::Heartbeat{1, 1, {1}});
  h.core.on_tick(h.now);
  CHECK(h.core.worker_count() == 1);
}

TEST_CASE("B7: CREDIT changes a worker's capacity at once, and a lower one takes back nothing") {
  Harness h;
  auto tasks = h.serve("W1", 1, 5);
  REQUIRE(tasks.size() == 1);
  h.deliver("W1", wire::Credit{3});
  const auto more = h.sent_to<wire::Task>(h.drain(), "W1");
  CHECK(more.size() == 2);
  tasks.insert(tasks.end(), more.begin(), more.end());
  h.deliver("W1", wire::Credit{0});  // clamped to 1
  CHECK(h.drain().empty());
  CHECK(h.core.inflight_count("W1") == 3);  // the tasks sent stay with it
  h.result("W1", tasks[0].task_id, 1);
  CHECK(h.sent_to<wire::Task>(h.drain(), "W1").empty());  // 2 held, capacity 1
  h.result("W1", tasks[1].task_id, 1);
  h.result("W1", tasks[2].task_id, 1);
  CHECK(h.sent_to<wire::Task>(h.drain(), "W1").size() == 1);
  CHECK(h.core.inflight_count("W1") == 1);
}

TEST_CASE(
    "B8: a READY from a registered worker hands its tasks back without an attempt and registers "
    "it anew") {
  broker::Config config;
  config.max_attempts = 1;  // any charge would fail the item at once
  Harness h(config);
  const auto tasks = h.serve("W1", 2, 2);
  REQUIRE(tasks.size() == 2);
  h.deliver("W1", wire::Ready{"W1", "host", 2, 2, {"m.g"}});  // a new process, other functions
  auto out = h.drain();
  CHECK(h.sent_to<wire::Alive>(out, "W1").size() == 1);
  CHECK(h.sent_to<wire::Failed>(out, "C1").empty());
  CHECK(h.core.worker_count() == 1);
  CHECK(h.core.inflight_count("W1") == 0);
  CHECK(h.core.queued_count() == 2);
  h.ready("W2", {"m.f"}, 2);
  const auto again = h.sent_to<wire::Task>(h.drain(), "W2");
  REQUIRE(again.size() == 2);
  CHECK(again[0].task_id == tasks[0].task_id);  // in their order
  CHECK(again[1].task_id == tasks[1].task_id);
}

TEST_CASE("B9: a SUBMIT from a registered worker is refused with bad_message") {
  Harness h;
  h.ready("W1", {"m.f"});
  h.drain();
  h.submit("W1", 1, "m.f", 0, items(1), 1);
  const auto errors = h.sent_to<wire::Error>(h.drain(), "W1");
  REQUIRE(errors.size() == 1);
  CHECK(errors[0].code == wire::Code::BadMessage);
  CHECK(h.core.job_count() == 0);
  CHECK(h.core.worker_count() == 1);
}

TEST_CASE(
    "B11: RETURN refreshes the worker and re-queues the listed tasks it holds, without an "
    "attempt, CANCELing them and every listed id it does not hold") {
  Harness h;
  const auto tasks = h.serve("W1", 2, 2);
  REQUIRE(tasks.size() == 2);
  h.now += 2500ms;
  h.deliver("C1", wire::Heartbeat{1, 0, {0, 1}});
  h.deliver("W1", wire::Return{{tasks[1].task_id, 999}});  // 999: not held, refused
  const auto out = h.drain();
  const auto cancels = h.sent_to<wire::Cancel>(out, "W1");
  REQUIRE(cancels.size() == 1);
  CHECK(cancels[0].task_ids == std::vector<std::uint64_t>{tasks[1].task_id, 999});
  // Its credit is still 2: without a CREDIT 1 first, the task comes straight back (§4.16), under
  // a new id, so that the CANCEL just sent cannot be taken for it.
  const auto back = h.sent_to<wire::Task>(out, "W1");
  REQUIRE(back.size() == 1);
  CHECK(back[0].task_id != tasks[1].task_id);
  CHECK(h.core.inflight_count("W1") == 2);
  h.now += 2000ms;  // 4.5 s after its last HEARTBEAT, 2 s after its RETURN
  h.deliver("C1", wire::Heartbeat{1, 0, {0, 1}});
  h.core.on_tick(h.now);
  CHECK(h.core.worker_count() == 1);
}

TEST_CASE(
    "B11: RETURN of a copy the broker answered already is refused with CANCEL, so the worker "
    "keeps no offered task that would stop W24 from abandoning the one it runs") {
  // seppo-sim 34125: a READY sent twice re-queued T1 and T2, sent again; the first T1's RESULT
  // completed T1, and the worker, running the first T2 for ever, offered back the second T1
  // with what waited behind. Unanswered, that copy kept the worker (and the queue) waiting.
  Harness h;
  const auto tasks = h.serve("W1", 2, 2);
  REQUIRE(tasks.size() == 2);
  h.deliver("W1", wire::Heartbeat{0, 0, {}});
  h.result("W1", tasks[0].task_id, 1);
  h.drain();
  // The worker runs another copy of tasks[1]; the one the broker counts and a stale copy of
  // tasks[0] wait behind it.
  h.deliver("W1", wire::Return{{tasks[0].task_id, tasks[1].task_id}});
  const auto cancels = h.sent_to<wire::Cancel>(h.drain(), "W1");
  REQUIRE(cancels.size() == 1);
  CHECK(cancels[0].task_ids == std::vector<std::uint64_t>{tasks[1].task_id, tasks[0].task_id});
}

TEST_CASE(
    "B12: a worker whose first task passes its time limit stays registered and gets nothing more "
    "until it answers that task") {
  Harness h;
  h.ready("W1", {"m.f"}, 2);
  for (std::uint64_t i = 0; i < 3; ++i) h.submit_timed(i, 1, 500);
  const auto tasks = h.sent_to<wire::Task>(h.drain(), "W1");
  REQUIRE(tasks.size() == 2);
  h.deliver("W1", wire::Heartbeat{0, 0, {}});
  h.advance(600ms);
  auto out = h.drain();
  REQUIRE(h.sent_to<wire::Cancel>(out, "W1").size() == 1);
  CHECK(h.sent_to<wire::Failed>(out, "C1").size() == 1);
  CHECK(h.core.worker_count() == 1);
  h.deliver("W1", wire::Credit{3});  // more credit: still nothing while it abandons the task
  CHECK(h.sent_to<wire::Task>(h.drain(), "W1").empty());
  h.result("W1", tasks[0].task_id, 1);  // "cancelled by the broker": dropped
  out = h.drain();
  CHECK(h.sent_to<wire::Deliver>(out, "C1").empty());
  CHECK(h.sent_to<wire::Task>(out, "W1").size() == 1);  // its second task still runs there
}

TEST_CASE(
    "B13: a worker silent past the liveness, unreachable, or whose connection closed is forgotten "
    "and its tasks queued again") {
  for (int way = 0; way < 3; ++way) {
    CAPTURE(way);
    Harness h;
    h.ready("W1", {"m.f"});
    h.submit("C1", 1, "m.f", 0, items(1), 1, 60000);
    REQUIRE(h.sent_to<wire::Task>(h.drain(), "W1").size() == 1);
    if (way == 0) h.expire_silent({}, {"C1"});
    if (way == 1) h.core.on_send_failed("W1", h.now);
    if (way == 2) h.core.on_disconnected("W1", h.now);
    CHECK(h.core.worker_count() == 0);
    CHECK(h.core.queued_count() == 1);
    h.drain();
    h.deliver("W1", wire::Heartbeat{0, 1, {}});  // unknown now: it must announce itself
    const auto errors = h.sent_to<wire::Error>(h.drain(), "W1");
    REQUIRE(errors.size() == 1);
    CHECK(errors[0].code == wire::Code::NotReady);
  }
}

TEST_CASE("B15: an accepted SUBMIT queues its chunk as one task at the back of its job's queue") {
  Harness h;
  h.submit("C1", 1, "m.f", 0, items(1, 2, 3), 3, 60000);
  h.submit("C1", 1, "m.f", 3, items(4, 5), 2, 60000);
  CHECK(h.core.queued_count() == 2);
  h.ready("W1", {"m.f"}, 2);
  const auto out = h.drain();
  std::vector<std::string> payloads;
  for (const auto& s : out) {
    if (s.peer == "W1" && std::holds_alternative<wire::Task>(s.message)) {
      payloads.push_back(s.payload);
    }
  }
  CHECK(payloads == std::vector<std::string>{items(1, 2, 3), items(4, 5)});  // unchanged, in order
}

TEST_CASE(
    "B21: a task whose holder announces itself again goes back to the front of its queue, attempts "
    "unchanged") {
  broker::Config config;
  config.max_attempts = 2;
  Harness h(config);
  const auto first = h.serve("W1", 1, 2);
  REQUIRE(first.size() == 1);
  h.deliver("W1", wire::Ready{"W1", "host", 1, 1, {"m.f"}});
  const auto again = h.sent_to<wire::Task>(h.drain(), "W1");
  REQUIRE(again.size() == 1);
  CHECK(again[0].task_id == first[0].task_id);  // the front, not the next chunk
  // Had the READY counted an attempt, this loss would be the second and final one.
  h.deliver("W1", wire::Heartbeat{0, 0, {}});
  h.core.on_disconnected("W1", h.now);
  CHECK(h.sent_to<wire::Failed>(h.drain(), "C1").empty());
  CHECK(h.core.queued_count() == 2);
}

TEST_CASE(
    "B24: a SUBMIT with no items or a bad function name fails bad_request and creates nothing") {
  Harness h;
  h.submit("C1", 1, "m.f", 0, items(), 0);
  h.submit("C1", 1, "", 0, items(1), 1);
  h.submit("C1", 1, std::string(257, 'f'), 5, items(1), 1);
  const auto failed = h.sent_to<wire::Failed>(h.drain(), "C1");
  REQUIRE(failed.size() == 3);
  for (const auto& f : failed) {
    CHECK(f.code == wire::Code::BadRequest);
    CHECK(f.seq == 0);
  }
  CHECK(failed[0].count == 0);  // echoes the SUBMIT: covers no item
  CHECK(failed[2].first == 5);
  CHECK(h.core.job_count() == 0);
  CHECK(h.core.client_count() == 0);
}

TEST_CASE("B25: a SUBMIT naming another function than its job's fails bad_request") {
  Harness h;
  h.submit("C1", 1, "m.f", 0, items(1), 1);
  h.submit("C1", 1, "m.g", 1, items(2), 1);
  const auto failed = h.sent_to<wire::Failed>(h.drain(), "C1");
  REQUIRE(failed.size() == 1);
  CHECK(failed[0].code == wire::Code::BadRequest);
  CHECK(failed[0].first == 1);
  CHECK(h.core.queued_count() == 1);
}

TEST_CASE(
    "B29: the first accepted SUBMIT creates the job and its client; its time limit is the job's") {
  Harness h;
  h.ready("W1", {"m.f"}, 1);
  h.submit_timed(0, 1, 500);
  h.submit_timed(1, 1, 0);  // a later chunk's limit does not change the job's
  CHECK(h.core.job_count() == 1);
  CHECK(h.core.client_count() == 1);
  const auto tasks = h.sent_to<wire::Task>(h.drain(), "W1");
  REQUIRE(tasks.size() == 1);
  h.result("W1", tasks[0].task_id, 1);
  REQUIRE(h.sent_to<wire::Task>(h.drain(), "W1").size() == 1);  // chunk 1
  h.advance(600ms);
  const auto failed = h.sent_to<wire::Failed>(h.drain(), "C1");
  REQUIRE(failed.size() == 1);
  CHECK(failed[0].code == wire::Code::Timeout);
  CHECK(failed[0].first == 1);
}

TEST_CASE(
    "B30: a client HEARTBEAT refreshes it, forgets the answers it read, and is answered ALIVE") {
  Harness h;
  h.ready("W1", {"m.f"});
  h.submit("C1", 1, "m.f", 0, items(1), 1);
  h.result("W1", h.sent_to<wire::Task>(h.drain(), "W1").at(0).task_id, 1);
  REQUIRE(h.sent_to<wire::Deliver>(h.drain(), "C1").size() == 1);
  h.now += 2500ms;
  h.deliver("W1", wire::Heartbeat{0, 0, {}});
  h.deliver("C1", wire::Heartbeat{1, 1, {}});
  auto out = h.drain();
  CHECK(h.sent_to<wire::Alive>(out, "C1").size() == 1);
  h.now += 1500ms;  // 4 s after its SUBMIT, 1.5 s after its HEARTBEAT
  h.core.on_tick(h.now);
  CHECK(h.core.client_count() == 1);
  // It read chunk 0's answer (seq 1): the broker forgot it, so awaiting it again is a loss.
  h.deliver("C1", wire::Heartbeat{1, 1, {0}});
  CHECK(h.sent_to<wire::Resync>(h.drain(), "C1").size() == 1);
}

TEST_CASE(
    "B41: a chunk charged for its lost worker is split into single items keeping its attempts; "
    "one that cannot be split fails bad_request") {
  {
    Harness h;
    h.ready("W1", {"m.f"}, 4);
    h.submit("C1", 1, "m.f", 10, items(1, 2, 3), 3);
    REQUIRE(h.sent_to<wire::Task>(h.drain(), "W1").size() == 1);
    h.core.on_disconnected("W1", h.now);
    CHECK(h.core.queued_count() == 3);
    h.ready("W2", {"m.f"}, 4);
    const auto out = h.drain();
    const auto tasks = h.sent_to<wire::Task>(out, "W2");
    REQUIRE(tasks.size() == 1);  // a suspect (attempts 1): alone
    CHECK(tasks[0].count == 1);
    CHECK(out.back().payload == items(1));
  }
  {
    Harness h;
    h.ready("W1", {"m.f"});
    h.submit("C1", 1, "m.f", 0, items(1), 2);  // says 2 items, holds 1
    REQUIRE(h.sent_to<wire::Task>(h.drain(), "W1").size() == 1);
    h.core.on_disconnected("W1", h.now);
    const auto failed = h.sent_to<wire::Failed>(h.drain(), "C1");
    REQUIRE(failed.size() == 1);
    CHECK(failed[0].code == wire::Code::BadRequest);
    CHECK(failed[0].count == 2);
    CHECK(h.core.task_count() == 0);
  }
}

TEST_CASE("B42: a single item charged for its lost worker goes back to the front of its queue") {
  Harness h;
  const auto first = h.serve("W1", 1, 2);
  REQUIRE(first.size() == 1);
  h.core.on_disconnected("W1", h.now);
  CHECK(h.sent_to<wire::Failed>(h.drain(), "C1").empty());
  h.ready("W2", {"m.f"}, 2);
  const auto again = h.sent_to<wire::Task>(h.drain(), "W2");
  REQUIRE(again.size() == 1);  // alone: it is a suspect now
  CHECK(again[0].task_id == first[0].task_id);
}

namespace {

// Three workers of capacity 2 kept busy by two clients' jobs of 20 single items each; W3 is then
// lost, so the task it was running is a suspect (B39, B43) and its other task is queued again.
// Returns the suspect's id.
std::uint64_t busy_with_a_suspect(Harness& h, Held& held) {
  for (const char* w : {"W1", "W2", "W3"}) h.ready(w, {"m.f"}, 2);
  for (int i = 0; i < 20; ++i) {
    h.submit("A", 1, "m.f", i, items(i), 1, 60000);
    h.submit("B", 1, "m.f", i, items(100 + i), 1, 60000);
  }
  held.track(h.drain());
  for (const char* w : {"W1", "W2", "W3"}) REQUIRE(held.tasks[w].size() == 2);
  const std::uint64_t suspect = held.tasks["W3"].front();
  h.core.on_disconnected("W3", h.now);
  held.tasks.erase("W3");
  REQUIRE(held.track(h.drain()).empty());  // nobody has credit: both wait
  return suspect;
}

bool sent(const std::vector<Sent>& out, const std::string& worker, std::uint64_t task) {
  for (const auto& t : Harness::sent_to<wire::Task>(out, worker)) {
    if (t.task_id == task) return true;
  }
  return false;
}

}  // namespace

TEST_CASE(
    "B50: a suspect waiting while other jobs keep every worker busy gets a worker that drains for "
    "it, not all their work") {
  Harness h;
  Held held;
  const std::uint64_t suspect = busy_with_a_suspect(h, held);
  // W1 answers first: it holds the fewest tasks then, so it stops getting work and drains.
  CHECK(h.sent_to<wire::Task>(held.answer(h, "W1"), "W1").empty());
  const auto w2 = held.answer(h, "W2");
  CHECK(h.sent_to<wire::Task>(w2, "W2").size() == 1);  // the others' work goes on at W2
  CHECK_FALSE(sent(w2, "W2", suspect));
  const auto w1 = held.answer(h, "W1");  // W1 holds nothing now: the suspect, alone
  REQUIRE(h.sent_to<wire::Task>(w1, "W1").size() == 1);
  CHECK(sent(w1, "W1", suspect));
  CHECK(h.core.inflight_count("W1") == 1);
  // Answered, the suspect frees W1 for everyone's work again.
  CHECK(h.sent_to<wire::Task>(held.answer(h, "W1"), "W1").size() == 2);
}

TEST_CASE("B50: the reservation ends when the suspect is taken elsewhere, cancelled, or lost") {
  Harness h;
  Held held;
  const std::uint64_t suspect = busy_with_a_suspect(h, held);
  CHECK(h.sent_to<wire::Task>(held.answer(h, "W1"), "W1").empty());  // W1 drains
  SUBCASE("taken by another worker once it holds nothing and has spoken") {
    h.ready("W4", {"m.f"}, 1);  // before it speaks, the other job's task
    CHECK_FALSE(sent(held.track(h.drain()), "W4", suspect));
    CHECK(sent(held.answer(h, "W4"), "W4", suspect));
    CHECK(h.sent_to<wire::Task>(held.answer(h, "W1"), "W1").size() == 2);  // works again
  }
  SUBCASE("its job cancelled by its client") {
    // Task ids are given in SUBMIT order: A's chunks got the odd ones.
    h.deliver(suspect % 2 == 1 ? "A" : "B", wire::Done{1});
    held.track(h.drain());
    CHECK(h.sent_to<wire::Task>(held.answer(h, "W1"), "W1").size() == 2);  // works again
  }
  SUBCASE("the reserved worker lost: another drains for it") {
    h.deliver("W1", wire::Bye{"leaving"});  // its task goes back, uncharged
    held.tasks.erase("W1");
    held.track(h.drain());
    // W2 may first run the task W1 handed back, if it went before the suspect in its job.
    bool got = false;
    for (int i = 0; i < 3 && !got; ++i) got = sent(held.answer(h, "W2"), "W2", suspect);
    CHECK(got);
    CHECK(h.core.inflight_count("W2") == 1);  // alone
  }
}

TEST_CASE(
    "B50: a reserved worker that hands back all it holds, putting a task before the suspect, works "
    "again") {
  Harness h;
  Held held;
  busy_with_a_suspect(h, held);
  // New work was placed A0 W1, B0 W2, A1 W3, B1 W1, A2 W2, B2 W3: W3 ran A1, now the suspect.
  CHECK(h.sent_to<wire::Task>(held.answer(h, "W2"), "W2").empty());  // W2 drains, holds A2
  h.deliver("W2", wire::Return{{held.tasks["W2"].front()}});         // A2 goes before A1 again
  held.tasks["W2"].clear();
  // Handing back the first task it holds, W2 shows it runs something the broker does not count
  // (§4.16, W24): nothing goes there until its HEARTBEAT lists no task.
  CHECK(h.sent_to<wire::Task>(held.track(h.drain()), "W2").empty());
  h.deliver("W2", wire::Heartbeat{0, 1, {}});
  // No RESULT will come from W2 now: the reservation ends here, not never.
  CHECK(h.sent_to<wire::Task>(held.track(h.drain()), "W2").size() == 2);
}

// ---- Review findings (not rows) ----

TEST_CASE("a TASK slower than a liveness on its way is not sent again once its worker lists it") {
  Harness h;
  h.ready("W1", {"m.f"});
  h.submit("C1", 1, "m.f", 0, items(5), 1);
  const auto tasks = h.sent_to<wire::Task>(h.drain(), "W1");
  REQUIRE(tasks.size() == 1);
  // A large payload on a slow link: the worker's heartbeats arrive before the TASK does.
  h.now += 3500ms;
  h.deliver("W1", wire::Heartbeat{0, 1, {}});
  h.now += 500ms;
  h.deliver("W1", wire::Heartbeat{0, 1, {tasks[0].task_id}});  // it arrived
  h.now += 1000ms;
  h.deliver("W1", wire::Heartbeat{0, 1, {tasks[0].task_id}});
  CHECK(h.sent_to<wire::Task>(h.drain(), "W1").empty());
  CHECK(h.core.inflight_count("W1") == 1);
}

TEST_CASE("a heavy client's fair-share debt persists when its tasks are placed as new work") {
  Harness h;
  // Fair share decides between functions (within one, jobs take turns): the two clients use
  // two functions of one worker.
  h.ready("W1", {"m.f", "m.h"}, 1);
  // Items 100.. are LIGHT's, 200.. HEAVY's: a TASK's payload tells whose it is.
  for (int i = 0; i < 20; ++i) h.submit("LIGHT", 1, "m.f", i, items(100 + i), 1, 60000);
  for (int i = 0; i < 20; ++i) h.submit("HEAVY", 1, "m.h", i, items(200 + i), 1, 60000);
  auto tasks = h.sent_to<wire::Task>(h.drain(), "W1");
  REQUIRE(tasks.size() == 1);
  // HEAVY is also served ten tasks on a worker of its own, each placed at once on SUBMIT.
  h.ready("W2", {"m.g"}, 20);
  for (int i = 0; i < 10; ++i) h.submit("HEAVY", 2, "m.g", i, items(i), 1, 60000);
  CHECK(h.sent_to<wire::Task>(h.drain(), "W2").size() == 10);
  // On the shared worker LIGHT now goes first until it has caught up; before, each task placed
  // for HEAVY moved the virtual time up to HEAVY's tag and the two alternated at once.
  std::string order;
  for (int i = 0; i < 8; ++i) {
    h.result("W1", tasks.at(0).task_id, 1);
    for (const auto& s : h.drain()) {
      if (s.peer != "W1" || !std::holds_alternative<wire::Task>(s.message)) continue;
      tasks = {std::get<wire::Task>(s.message)};
      // A one-item array: 0x91, then the positive fixint 100..127 or uint8 0xcc 200..
      order += s.payload.size() == 2 ? 'L' : 'H';
    }
  }
  CHECK(order == "LLLLLLLL");
}

TEST_CASE(
    "a worker that lists a task the broker re-ran elsewhere is told to cancel it, then works") {
  Harness h;
  h.ready("W1", {"m.f"}, 2);
  h.submit("C1", 1, "m.f", 0, items(1), 1, 600000);
  h.submit("C1", 1, "m.f", 1, items(2), 1, 600000);
  auto sent = Harness::sent_to<wire::Task>(h.drain(), "W1");
  REQUIRE(sent.size() == 2);
  const std::uint64_t x = sent[0].task_id, y = sent[1].task_id;
  h.ready("W2", {"m.f"}, 1);
  h.drain();
  // X is slow on its way to W1: two heartbeats past the expiry leave it out, so it is re-run.
  std::vector<Sent> out;
  for (int i = 0; i < 5; ++i) {
    h.advance(i == 0 ? 100ms : 1000ms);
    h.deliver("W1", wire::Heartbeat{0, 1, {y}});
    h.deliver("W2", wire::Heartbeat{0, 1, {x}});
    h.deliver("C1", wire::Heartbeat{1, 0, {}});
    auto o = h.drain();
    out.insert(out.end(), o.begin(), o.end());
  }
  REQUIRE(Harness::sent_to<wire::Task>(out, "W2").size() == 1);
  // X reaches W1 after all and hangs there; Y waits behind it and is handed back (W21).
  h.deliver("W1", wire::Return{{y}});
  h.drain();
  for (int i = 2; i < 8; ++i) h.submit("C1", 1, "m.f", i, items(i + 1), 1, 600000);
  h.drain();
  h.advance(1000ms);
  h.deliver("W1", wire::Heartbeat{0, 1, {x, y}});
  bool cancelled_x = false;
  for (const auto& c : Harness::sent_to<wire::Cancel>(h.drain(), "W1")) {
    cancelled_x |= std::find(c.task_ids.begin(), c.task_ids.end(), x) != c.task_ids.end();
  }
  CHECK(cancelled_x);  // before, nothing ever ended X at W1, and W1 got no work for good
  // W1 stops X (a command is killed; a module's process is replaced) and holds nothing.
  h.advance(1000ms);
  h.deliver("W1", wire::Heartbeat{0, 1, {}});
  CHECK_FALSE(Harness::sent_to<wire::Task>(h.drain(), "W1").empty());
}

TEST_CASE("a listed task the broker does not count is cancelled once per liveness, not per beat") {
  Harness h;  // heartbeat 1 s, liveness 3
  h.ready("W1", {"m.f"}, 2);
  h.submit("C1", 1, "m.f", 0, items(1), 1, 600000);
  const auto sent = Harness::sent_to<wire::Task>(h.drain(), "W1");
  REQUIRE(sent.size() == 1);
  const std::uint64_t x = sent[0].task_id, stray = x + 1000;
  // W1 lists a task the broker does not count there (one that started before the CANCEL of
  // its RETURN arrived runs on, listed, §4.16): cancelled at the first listing...
  const auto cancels = [&] {
    std::size_t n = 0;
    for (const auto& c : Harness::sent_to<wire::Cancel>(h.drain(), "W1")) {
      n += static_cast<std::size_t>(std::count(c.task_ids.begin(), c.task_ids.end(), stray));
    }
    return n;
  };
  // (Listed twice, it holds two copies of the id, §4.2: one CANCEL names it once; seppo-sim
  // seed 1104 with --faults broker-crash.)
  h.advance(1000ms);
  h.deliver("W1", wire::Heartbeat{0, 1, {x, stray, stray}});
  CHECK(cancels() == 1);
  // ...not at each heartbeat that still lists it (before: a CANCEL every heartbeat)...
  for (int i = 0; i < 3; ++i) {
    h.advance(1000ms);
    h.deliver("W1", wire::Heartbeat{0, 1, {x, stray}});
    CHECK(cancels() == 0);
  }
  // ...but again after a liveness, in case that CANCEL was lost.
  h.advance(1000ms);
  h.deliver("W1", wire::Heartbeat{0, 1, {x, stray}});
  CHECK(cancels() == 1);
  // Listed again after a heartbeat left it out: a new task of that id, cancelled at once.
  h.advance(1000ms);
  h.deliver("W1", wire::Heartbeat{0, 1, {x}});
  CHECK(cancels() == 0);
  h.advance(1000ms);
  h.deliver("W1", wire::Heartbeat{0, 1, {x, stray}});
  CHECK(cancels() == 1);
}

TEST_CASE(
    "B49 and §4.15: a task cancelled while it ran is freed by two seen=1 heartbeats, not seen=0") {
  for (const std::uint64_t seen : {0, 1}) {
    CAPTURE(seen);
    Harness h;
    h.ready("W1", {"m.f"}, 1);
    h.submit_timed(0, 1, 500);
    const auto tasks = Harness::sent_to<wire::Task>(h.drain(), "W1");
    REQUIRE(tasks.size() == 1);
    h.submit_timed(1, 1, 500);  // waits: W1's capacity is 1
    h.drain();
    // W1 lists the task while it runs; past its limit the broker cancels it.
    h.advance(600ms);
    h.deliver("W1", wire::Heartbeat{0, seen,
                                    seen == 1 ? std::vector<std::uint64_t>{tasks[0].task_id}
                                              : std::vector<std::uint64_t>{}});
    h.deliver("C1", wire::Heartbeat{1, 0, {0, 1}});
    const auto out = h.drain();
    REQUIRE(Harness::sent_to<wire::Cancel>(out, "W1").size() == 1);
    // It never answers (a worker that does not follow §4.15). Its heartbeats leave the task out.
    std::size_t sent = 0;
    for (int i = 0; i < 5; ++i) {
      h.advance(1000ms);
      h.deliver("W1", wire::Heartbeat{0, seen, {}});
      h.deliver("C1", wire::Heartbeat{1, 1, {1}});
      sent += Harness::sent_to<wire::Task>(h.drain(), "W1").size();
    }
    // seen = 1 says what it holds: the cancelled task is over there, W1 is free. seen = 0 says
    // nothing: only the RESULT (or W1's loss) frees it.
    CHECK(sent == (seen == 1 ? 1u : 0u));
  }
}

// Issue 25: adopting the work workers kept from a broker they lost (§9.1, rows B51 to B55).
namespace {

// READY of worker `id` (function m.f, capacity 1, announcing "adopt") listing kept tasks.
wire::Ready kept_ready(const std::string& id, const std::vector<wire::HeldTask>& kept) {
  wire::Ready ready{id, "host", 1, 1, {"m.f"}, "", {std::string(wire::kFeatureAdopt)}, {}};
  for (const auto& k : kept) wire::append_held(ready.held, k);
  return ready;
}

const std::uint64_t kTag = wire::job_tag("C1", 1);

// Lets `seconds` seconds pass, one at a time, while the given peers keep beating.
void pass(Harness& h, int seconds,
          const std::vector<std::pair<std::string, wire::Heartbeat>>& beats) {
  for (int i = 0; i < seconds; ++i) {
    h.advance(1000ms);
    for (const auto& [peer, beat] : beats) h.deliver(peer, beat);
  }
}

wire::Heartbeat kept_beat(const std::vector<wire::HeldTask>& kept) {
  wire::Heartbeat beat{0, 1, {}};
  for (const auto& k : kept) wire::append_held(beat.held, k);
  return beat;
}

}  // namespace

TEST_CASE("B51: READY listing kept tasks: a queued chunk is adopted, an unknown one waits") {
  Harness h;
  // The client resubmitted chunk 0 (RESYNC) before the worker came back.
  h.deliver("C1", wire::Heartbeat{1, 0, {0, 2}});
  CHECK(h.sent_to<wire::Resync>(h.drain(), "C1").size() == 1);
  h.submit("C1", 1, "m.f", 0, numbers(2), 2);
  h.drain();
  h.deliver("W1", kept_ready("W1", {{77, kTag, 0, 2}, {78, kTag, 2, 2}}));
  auto out = h.drain();
  CHECK(h.sent_to<wire::Task>(out, "W1").empty());    // it runs 77 already
  CHECK(h.sent_to<wire::Cancel>(out, "W1").empty());  // 78 waits for its resubmission
  CHECK(h.core.inflight_count("W1") == 1);
  CHECK(h.core.queued_count() == 0);
  // HEARTBEATs listing them keep them: not lost (B5), not cancelled, until the window closes
  // (78 was never resubmitted).
  pass(h, 1, {{"W1", kept_beat({{77, kTag, 0, 2}, {78, kTag, 2, 2}})}, {"C1", {1, 0, {0, 2}}}});
  CHECK(h.sent_to<wire::Cancel>(h.drain(), "W1").empty());
  pass(h, 2, {{"W1", kept_beat({{77, kTag, 0, 2}})}, {"C1", {1, 0, {0, 2}}}});  // 2 s: closed
  CHECK(h.core.inflight_count("W1") == 1);
  out = h.drain();
  const auto cancel = h.sent_to<wire::Cancel>(out, "W1");
  REQUIRE(cancel.size() == 1);
  CHECK(cancel[0].task_ids == std::vector<std::uint64_t>{78});
  h.result("W1", 77, 2);
  out = h.drain();
  const auto delivered = h.sent_to<wire::Deliver>(out, "C1");
  REQUIRE(delivered.size() == 1);
  CHECK(delivered[0].first == 0);
  CHECK(delivered[0].count == 2);
}

TEST_CASE("B52: SUBMIT of a chunk a worker keeps: bound to that worker, not queued or sent") {
  Harness h;
  h.deliver("W1", kept_ready("W1", {{77, kTag, 0, 2}}));
  h.deliver("W2", wire::Ready{"W2", "host", 2, 1, {"m.f"}, "", {"adopt"}, {}});
  h.deliver("W2", wire::Heartbeat{0, 1, {}});
  h.drain();
  h.deliver("C1", wire::Heartbeat{1, 0, {0, 2}});
  h.drain();
  h.submit("C1", 1, "m.f", 0, numbers(2), 2);
  auto out = h.drain();
  CHECK(h.sent_to<wire::Task>(out, "W1").empty());
  CHECK(h.sent_to<wire::Task>(out, "W2").empty());
  CHECK(h.core.inflight_count("W1") == 1);
  // The other chunk is held back for the window (a worker that kept it may not have spoken
  // yet), then runs; its TASK carries the identity.
  h.submit("C1", 1, "m.f", 2, numbers(2), 2);
  CHECK(h.sent_to<wire::Task>(h.drain(), "W2").empty());
  pass(h, 4, {{"W1", kept_beat({{77, kTag, 0, 2}})}, {"W2", {0, 1, {}}}, {"C1", {1, 0, {0, 2}}}});
  auto tasks = h.sent_to<wire::Task>(h.drain(), "W2");
  REQUIRE(tasks.size() == 1);
  CHECK(tasks[0].job == kTag);
  CHECK(tasks[0].first == 2);
  // A chunk split before the restart is kept item by item: adopted item by item.
  Harness s;
  s.deliver("W1", kept_ready("W1", {{90, kTag, 5, 1}}));
  s.drain();
  s.deliver("C1", wire::Heartbeat{1, 0, {4}});
  s.drain();
  s.submit("C1", 1, "m.f", 4, numbers(3), 3);
  s.drain();
  CHECK(s.core.inflight_count("W1") == 1);
  CHECK(s.core.queued_count() == 2);  // items 4 and 6
  s.result("W1", 90, 1);
  const auto delivered = s.sent_to<wire::Deliver>(s.drain(), "C1");
  REQUIRE(delivered.size() == 1);
  CHECK(delivered[0].first == 5);
}

TEST_CASE("B53: RESULT of a kept task before its resubmission: kept, delivered on the SUBMIT") {
  Harness h;
  h.deliver("W1", kept_ready("W1", {{77, kTag, 0, 2}}));
  h.drain();
  h.result("W1", 77, 2);
  CHECK(h.sent_to<wire::Deliver>(h.drain(), "C1").empty());
  h.deliver("C1", wire::Heartbeat{1, 0, {0}});
  h.drain();
  h.submit("C1", 1, "m.f", 0, numbers(2), 2);
  const auto out = h.drain();
  const auto delivered = h.sent_to<wire::Deliver>(out, "C1");
  REQUIRE(delivered.size() == 1);
  CHECK(delivered[0].first == 0);
  CHECK(delivered[0].worker == "W1");
  CHECK(h.core.task_count() == 0);
  CHECK(h.sent_to<wire::Task>(out, "W1").empty());
}

TEST_CASE("B54: the adoption window closes: kept tasks no one resubmitted are cancelled") {
  Harness h;
  h.deliver("W1", kept_ready("W1", {{77, kTag, 0, 2}}));
  h.drain();
  // It runs what it kept first: no new task meanwhile.
  h.submit("C2", 5, "m.f", 0, numbers(1), 1);
  CHECK(h.sent_to<wire::Task>(h.drain(), "W1").empty());
  pass(h, 4, {{"W1", kept_beat({{77, kTag, 0, 2}})}, {"C2", {5, 0, {0}}}});
  const auto out = h.drain();
  const auto cancel = h.sent_to<wire::Cancel>(out, "W1");
  REQUIRE(cancel.size() == 1);
  CHECK(cancel[0].task_ids == std::vector<std::uint64_t>{77});
  CHECK(h.sent_to<wire::Task>(out, "W1").size() == 1);  // and then takes work
}

TEST_CASE(
    "B54: a kept task listed several times (copies of one TASK) is cancelled once, by one id") {
  // seppo-sim seed 3879: a worker that got one TASKS three times listed each task three times,
  // and the READY's CANCEL named each id three times.
  Harness h;
  h.deliver("C2", wire::Heartbeat{5, 0, {}});
  pass(h, 4, {{"C2", {5, 0, {}}}});  // the adoption window is closed: no one waits for them
  h.drain();
  h.deliver(
      "W1",
      kept_ready("W1", {{77, kTag, 0, 2}, {77, kTag, 0, 2}, {78, kTag, 2, 1}, {77, kTag, 0, 2}}));
  const auto cancel = h.sent_to<wire::Cancel>(h.drain(), "W1");
  REQUIRE(cancel.size() == 1);
  CHECK(cancel[0].task_ids == std::vector<std::uint64_t>{77, 78});
  // Listed again at its next READY, within a liveness: nothing more.
  h.deliver("W1", kept_ready("W1", {{77, kTag, 0, 2}, {77, kTag, 0, 2}}));
  CHECK(h.sent_to<wire::Cancel>(h.drain(), "W1").empty());
}

TEST_CASE("B55: a job resubmitted on RESYNC in the window waits for it; a new job does not") {
  Harness h;
  h.deliver("W1", wire::Ready{"W1", "host", 1, 2, {"m.f"}, "", {"adopt"}, {}});
  h.deliver("W1", wire::Heartbeat{0, 1, {}});
  h.drain();
  h.deliver("C1", wire::Heartbeat{1, 0, {0}});
  h.drain();
  h.submit("C1", 1, "m.f", 0, numbers(1), 1);  // a resubmission: held back
  h.submit("C2", 1, "m.f", 0, numbers(1), 1);  // a new job: at once
  auto tasks = h.sent_to<wire::Task>(h.drain(), "W1");
  REQUIRE(tasks.size() == 1);
  CHECK(tasks[0].job == wire::job_tag("C2", 1));
  pass(h, 1, {{"W1", {0, 1, {tasks[0].task_id}}}, {"C1", {1, 0, {0}}}, {"C2", {1, 0, {0}}}});
  CHECK(h.sent_to<wire::Task>(h.drain(), "W1").empty());  // the window is 2 heartbeats
  pass(h, 2, {{"W1", {0, 1, {tasks[0].task_id}}}, {"C1", {1, 0, {0}}}, {"C2", {1, 0, {0}}}});
  CHECK(h.sent_to<wire::Task>(h.drain(), "W1").size() == 1);
}

TEST_CASE("B51: a known worker's READY again listing a kept task: it stays adopted there") {
  Harness h;
  h.deliver("W1", kept_ready("W1", {{77, kTag, 0, 2}}));
  h.deliver("W2", wire::Ready{"W2", "host", 2, 1, {"m.f"}, "", {"adopt"}, {}});
  h.drain();
  h.deliver("C1", wire::Heartbeat{1, 0, {0}});
  h.drain();
  h.submit("C1", 1, "m.f", 0, numbers(2), 2);
  h.drain();
  REQUIRE(h.core.inflight_count("W1") == 1);  // adopted (B52)
  pass(h, 4, {{"W1", kept_beat({{77, kTag, 0, 2}})}, {"W2", {0, 1, {}}}, {"C1", {1, 0, {0}}}});
  h.drain();  // the window is closed
  // W1 announces itself again (several buffered messages answered not_ready, W10), still
  // running 77: requeued by the READY, it is adopted there again before W2 could take it.
  h.deliver("W1", kept_ready("W1", {{77, kTag, 0, 2}}));
  auto out = h.drain();
  CHECK(h.sent_to<wire::Task>(out, "W2").empty());
  CHECK(h.sent_to<wire::Task>(out, "W1").empty());
  CHECK(h.sent_to<wire::Cancel>(out, "W1").empty());
  CHECK(h.core.inflight_count("W1") == 1);
  CHECK(h.core.inflight_count("W2") == 0);
  CHECK(h.core.queued_count() == 0);
  // A kept task no one waits for is cancelled once per liveness, not at every READY again.
  h.deliver("W1", kept_ready("W1", {{77, kTag, 0, 2}, {99, kTag, 8, 1}}));
  out = h.drain();
  const auto cancel = h.sent_to<wire::Cancel>(out, "W1");
  REQUIRE(cancel.size() == 1);
  CHECK(cancel[0].task_ids == std::vector<std::uint64_t>{99});
  h.deliver("W1", kept_ready("W1", {{77, kTag, 0, 2}, {99, kTag, 8, 1}}));
  CHECK(h.sent_to<wire::Cancel>(h.drain(), "W1").empty());
  h.result("W1", 77, 2);
  const auto delivered = h.sent_to<wire::Deliver>(h.drain(), "C1");
  REQUIRE(delivered.size() == 1);
  CHECK(delivered[0].worker == "W1");
}
