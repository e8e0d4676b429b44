// The broker's rules, driven message by message with a fake clock: no sockets, no sleeps.
#include <doctest/doctest.h>

#include <algorithm>
#include <map>
#include <set>

#include "seppo/msgpack.hpp"

#include "broker/core.hpp"
#include "broker_harness.hpp"
#include "protocol/wire.hpp"

using namespace seppo;
using namespace std::chrono_literals;
using broker::TimePoint;

using namespace seppo::broker_test;

TEST_CASE(
    "B19: a task's result from its holder goes to the client in a DELIVER, and the task is "
    "forgotten") {
  Harness h;
  h.ready("W1", {"m.f"});
  h.submit("C1", 7, "m.f", 0, items(1, 2), 2);
  auto out = h.drain();
  auto tasks = h.sent_to<wire::Task>(out, "W1");
  REQUIRE(tasks.size() == 1);
  CHECK(tasks[0].function == "m.f");
  CHECK(tasks[0].count == 2);
  h.result("W1", tasks[0].task_id, 2);
  out = h.drain();
  auto delivered = h.sent_to<wire::Deliver>(out, "C1");
  REQUIRE(delivered.size() == 1);
  CHECK(delivered[0].job_id == 7);
  CHECK(delivered[0].first == 0);
  CHECK(delivered[0].count == 2);
  CHECK(delivered[0].worker == "W1");
  CHECK(delivered[0].seq == 1);
  CHECK(h.core.task_count() == 0);
}

TEST_CASE(
    "B16: new work goes to the provider holding the fewest tasks, so slow items spread over "
    "workers whatever their credit") {
  Harness h;
  h.ready("W1", {"m.slow"}, 8);  // credit raised by fast items
  h.ready("W2", {"m.slow"}, 2);
  h.drain();
  for (std::uint64_t i = 0; i < 5; ++i) h.submit("C1", 1, "m.slow", i, items(i), 1);
  auto out = h.drain();
  // Shortest queue first: 1-1, 2-2, then only W1 has credit left.
  CHECK(h.sent_to<wire::Task>(out, "W1").size() == 3);
  CHECK(h.sent_to<wire::Task>(out, "W2").size() == 2);
  CHECK(h.core.queued_count() == 0);
}

TEST_CASE("a worker never holds more tasks than its capacity") {
  Harness h;
  h.ready("W1", {"m.f"}, 3);
  for (std::uint64_t i = 0; i < 10; ++i) h.submit("C1", 1, "m.f", i, items(i), 1);
  auto tasks = h.sent_to<wire::Task>(h.drain(), "W1");
  CHECK(tasks.size() == 3);
  CHECK(h.core.inflight_count("W1") == 3);
  h.result("W1", tasks[0].task_id, 1);
  CHECK(h.sent_to<wire::Task>(h.drain(), "W1").size() == 1);
  CHECK(h.core.inflight_count("W1") == 3);
}

TEST_CASE("jobs of two clients share a worker in turn") {
  Harness h;
  for (std::uint64_t i = 0; i < 4; ++i) h.submit("BIG", 1, "m.f", i, items(i), 1);
  h.submit("SMALL", 1, "m.f", 0, items(0), 1);
  h.ready("W1", {"m.f"}, 1);
  auto first = h.sent_to<wire::Task>(h.drain(), "W1");
  REQUIRE(first.size() == 1);
  h.result("W1", first[0].task_id, 1);
  auto second = h.sent_to<wire::Task>(h.drain(), "W1");
  REQUIRE(second.size() == 1);
  h.result("W1", second[0].task_id, 1);
  auto out = h.drain();
  // The small job's only task ran second, not after the big job's four.
  CHECK(h.sent_to<wire::Deliver>(out, "SMALL").size() == 1);
}

TEST_CASE(
    "a silent worker is presumed dead after heartbeat times liveness and its task runs elsewhere") {
  Harness h;
  h.ready("W1", {"m.f"});
  h.submit("C1", 1, "m.f", 0, items(5), 1);
  h.drain();
  h.ready("W2", {"m.f"});
  CHECK(h.sent_to<wire::Task>(h.drain(), "W2").empty());
  // W2 keeps talking; W1 falls silent.
  h.expire_silent({"W2"}, {"C1"});
  CHECK(h.core.worker_count() == 1);
  auto tasks = h.sent_to<wire::Task>(h.drain(), "W2");
  REQUIRE(tasks.size() == 1);
  h.result("W2", tasks[0].task_id, 1);
  CHECK(h.sent_to<wire::Deliver>(h.drain(), "C1").size() == 1);
}

TEST_CASE("a result that arrives twice reaches the client once") {
  Harness h;
  h.ready("W1", {"m.f"});
  h.submit("C1", 1, "m.f", 0, items(5), 1);
  auto tasks = h.sent_to<wire::Task>(h.drain(), "W1");
  h.result("W1", tasks[0].task_id, 1);
  h.result("W1", tasks[0].task_id, 1);
  CHECK(h.sent_to<wire::Deliver>(h.drain(), "C1").size() == 1);
}

TEST_CASE("a slow worker's late result after a re-run is dropped") {
  Harness h;
  h.ready("SLOW", {"m.f"});
  h.submit("C1", 1, "m.f", 0, items(5), 1);
  const auto first = h.sent_to<wire::Task>(h.drain(), "SLOW").at(0);
  h.ready("FAST", {"m.f"});
  h.expire_silent({"FAST"}, {"C1"});
  const auto rerun = h.sent_to<wire::Task>(h.drain(), "FAST").at(0);
  h.result("FAST", rerun.task_id, 1);
  // The slow one comes back to life, re-announces, and answers the old task.
  h.ready("SLOW", {"m.f"});
  h.result("SLOW", first.task_id, 1);
  CHECK(h.sent_to<wire::Deliver>(h.drain(), "C1").size() == 1);
}

TEST_CASE("B40: items that keep killing workers fail with worker_lost after max attempts") {
  broker::Config config;
  config.max_attempts = 3;
  Harness h(config);
  h.submit("C1", 1, "m.f", 10, items(1, 2, 3), 3);
  std::vector<wire::Failed> failed;
  std::vector<std::uint32_t> task_sizes;
  for (int round = 0; round < 10 && failed.size() < 3; ++round) {
    const std::string w = "W" + std::to_string(round);
    h.ready(w, {"m.f"}, 4);
    for (const auto& t : h.sent_to<wire::Task>(h.drain(), w)) task_sizes.push_back(t.count);
    h.expire_silent({}, {"C1"});  // every worker dies holding all it was given
    for (auto& f : h.sent_to<wire::Failed>(h.drain(), "C1")) failed.push_back(f);
  }
  REQUIRE(!task_sizes.empty());
  CHECK(task_sizes.front() == 3);
  CHECK(std::all_of(task_sizes.begin() + 1, task_sizes.end(), [](auto n) { return n == 1; }));
  REQUIRE(failed.size() == 3);
  for (const auto& f : failed) {
    CHECK(f.code == wire::Code::WorkerLost);
    CHECK(f.count == 1);
    CHECK(f.message.find("3 attempts") != std::string::npos);
  }
  CHECK(failed[0].message == "worker lost while running m.f on item 10, 3 attempts");
  CHECK(h.core.task_count() == 0);
}

TEST_CASE(
    "B44: only the task a lost worker was running is charged an attempt, not those queued behind "
    "it") {
  broker::Config config;
  config.max_attempts = 2;
  Harness h(config);
  for (std::uint64_t i = 0; i < 3; ++i) h.submit("C1", 1, "m.f", i, items(i), 1);
  h.ready("W1", {"m.f"}, 3);
  CHECK(h.sent_to<wire::Task>(h.drain(), "W1").size() == 3);
  h.deliver("W1", wire::Heartbeat{0, 0, {}});
  h.expire_silent({}, {"C1"});
  h.ready("W2", {"m.f"}, 3);
  const auto tasks = h.sent_to<wire::Task>(h.drain(), "W2");
  REQUIRE(tasks.size() == 1);  // item 0, now a suspect, runs alone
  h.expire_silent({}, {"C1"});
  // Item 0 was running both times: it is lost. Items 1 and 2 were never charged.
  const auto failed = h.sent_to<wire::Failed>(h.drain(), "C1");
  REQUIRE(failed.size() == 1);
  CHECK(failed[0].first == 0);
  CHECK(h.core.queued_count() == 2);
}

TEST_CASE(
    "B43: a suspect task runs alone on a worker that has spoken, so an innocent one is blamed once "
    "at most") {
  Harness h;
  h.submit("C1", 1, "m.f", 0, items(0), 1);
  h.submit("C1", 1, "m.f", 1, items(1), 1);
  h.ready("W1", {"m.f"}, 2);
  CHECK(h.sent_to<wire::Task>(h.drain(), "W1").size() == 2);
  h.expire_silent({}, {"C1"});  // W1 dies: item 0 (running) is charged, item 1 is not
  h.ready("W2", {"m.f"}, 4);
  const auto first = h.sent_to<wire::Task>(h.drain(), "W2");
  REQUIRE(first.size() == 1);  // item 0 alone: item 1 waits though W2 has credit
  h.result("W2", first[0].task_id, 1);
  const auto second = h.sent_to<wire::Task>(h.drain(), "W2");
  REQUIRE(second.size() == 1);  // now item 1
  h.result("W2", second[0].task_id, 1);
  CHECK(h.sent_to<wire::Deliver>(h.drain(), "C1").size() == 1);
  CHECK(h.core.task_count() == 0);
}

TEST_CASE("a poison item is reported lost while its chunk's other items complete") {
  Harness h;
  h.submit("C1", 1, "m.f", 0, items(1, 2, 3), 3);
  std::size_t ok_items = 0;
  std::vector<wire::Failed> failed;
  for (int round = 0; round < 12 && failed.empty(); ++round) {
    const std::string w = "W" + std::to_string(round);
    h.ready(w, {"m.f"}, 1);
    // Answer tasks until the poison item (first == 1) arrives, then die holding it.
    while (true) {
      auto out = h.drain();
      for (auto& f : h.sent_to<wire::Failed>(out, "C1")) failed.push_back(f);
      for (auto& d : h.sent_to<wire::Deliver>(out, "C1")) ok_items += d.count;
      auto tasks = h.sent_to<wire::Task>(out, w);
      if (tasks.empty()) break;
      const auto& t = tasks[0];
      if (t.count == 1) {
        // Single items: a poison one kills the worker; find out which by asking the core.
        // Item 1 is the poison: its task is the one whose payload holds 2.
        bool poison = false;
        for (const auto& s : out) {
          if (s.peer == w && std::holds_alternative<wire::Task>(s.message)) {
            poison = s.payload == items(2);
          }
        }
        if (poison) break;
        h.result(w, t.task_id, 1);
      } else {
        break;  // the whole chunk: the worker dies running it
      }
    }
    h.expire_silent({}, {"C1"});
  }
  REQUIRE(failed.size() == 1);
  CHECK(failed[0].first == 1);
  CHECK(failed[0].code == wire::Code::WorkerLost);
  CHECK(ok_items == 2);
}

TEST_CASE("B36: no worker for a function: the client is told by name after its wait") {
  Harness h;
  h.ready("W1", {"m.other"});
  h.submit("C1", 1, "m.missing", 0, items(1), 1, 500);
  h.drain();
  h.advance(400ms);
  CHECK(h.sent_to<wire::Failed>(h.drain(), "C1").empty());
  h.advance(200ms);
  auto failed = h.sent_to<wire::Failed>(h.drain(), "C1");
  REQUIRE(failed.size() == 1);
  CHECK(failed[0].code == wire::Code::UnknownFunction);
  CHECK(failed[0].message.find("m.missing") != std::string::npos);
  CHECK(failed[0].message.find("m.other") != std::string::npos);
  CHECK(h.core.job_count() == 0);
}

TEST_CASE("a worker arriving within the wait serves the job") {
  Harness h;
  h.submit("C1", 1, "m.f", 0, items(1), 1, 5000);
  h.advance(1000ms);
  h.deliver("C1", wire::Heartbeat{1, 0, {}});
  h.ready("W1", {"m.f"});
  CHECK(h.sent_to<wire::Task>(h.drain(), "W1").size() == 1);
}

TEST_CASE(
    "B35: a client that says BYE or vanishes is forgotten with its jobs, and its late results "
    "discarded") {
  Harness h;
  h.ready("W1", {"m.f"});
  for (std::uint64_t i = 0; i < 5; ++i) h.submit("C1", 1, "m.f", i, items(i), 1);
  auto task = h.sent_to<wire::Task>(h.drain(), "W1").at(0);
  h.expire_silent({"W1"}, {});
  CHECK(h.core.job_count() == 0);
  CHECK(h.core.queued_count() == 0);
  h.result("W1", task.task_id, 1);
  CHECK(h.sent_to<wire::Deliver>(h.drain(), "C1").empty());
  CHECK(h.core.inflight_count("W1") == 0);
  CHECK(h.core.task_count() == 0);
  CHECK(h.core.client_count() == 0);
  // BYE forgets a client at once.
  h.submit("C2", 1, "m.f", 0, items(1), 1);
  h.submit("C2", 2, "m.f", 0, items(2), 1);
  h.deliver("C2", wire::Bye{"done"});
  CHECK(h.core.job_count() == 0);
  CHECK(h.core.client_count() == 0);
}

TEST_CASE("B34: DONE forgets the job and its queued tasks, and with its last job the client") {
  Harness h;
  for (std::uint64_t i = 0; i < 5; ++i) h.submit("C1", 1, "m.f", i, items(i), 1);
  CHECK(h.core.queued_count() == 5);
  h.submit("C1", 2, "m.f", 0, items(9), 1);
  h.deliver("C1", wire::Done{1});
  CHECK(h.core.job_count() == 1);
  CHECK(h.core.task_count() == 1);
  CHECK(h.core.client_count() == 1);
  h.deliver("C1", wire::Done{2});  // its last job
  CHECK(h.core.job_count() == 0);
  CHECK(h.core.task_count() == 0);
  CHECK(h.core.client_count() == 0);
}

TEST_CASE("B26: a resubmitted chunk the broker already holds is ignored, not queued twice") {
  Harness h;
  h.submit("C1", 1, "m.f", 0, items(1), 1);
  h.submit("C1", 1, "m.f", 0, items(1), 1);
  CHECK(h.core.queued_count() == 1);
}

TEST_CASE(
    "B31: a client heartbeat for a job the broker does not know asks for a resync if it awaits "
    "chunks") {
  Harness h;
  h.deliver("C1", wire::Heartbeat{9, 0, {0}});
  auto resync = h.sent_to<wire::Resync>(h.drain(), "C1");
  REQUIRE(resync.size() == 1);
  CHECK(resync[0].job_id == 9);
  // Awaiting nothing (chunks held back until it knows the message limit): it wants the ALIVE.
  h.deliver("C2", wire::Heartbeat{9, 0, {}});
  auto out = h.drain();
  CHECK(h.sent_to<wire::Resync>(out, "C2").empty());
  CHECK(h.sent_to<wire::Alive>(out, "C2").size() == 1);
}

TEST_CASE("B32: a chunk the client awaits that the broker never received is asked for again") {
  Harness h;
  h.submit("C1", 1, "m.f", 0, items(1), 1);
  h.drain();
  h.deliver("C1", wire::Heartbeat{1, 0, {0}});
  CHECK(h.sent_to<wire::Resync>(h.drain(), "C1").empty());
  h.deliver("C1", wire::Heartbeat{1, 0, {0, 1}});
  CHECK(h.sent_to<wire::Resync>(h.drain(), "C1").size() == 1);
}

TEST_CASE("a chunk answered but not yet read by the client is not a loss; unread for good, it is") {
  Harness h;
  h.ready("W1", {"m.f"}, 2);
  h.submit("C1", 1, "m.f", 0, items(1), 1);
  h.submit("C1", 1, "m.f", 1, items(2), 1);
  auto tasks = h.sent_to<wire::Task>(h.drain(), "W1");
  h.result("W1", tasks[0].task_id, 1);
  const auto delivered = h.sent_to<wire::Deliver>(h.drain(), "C1").at(0);
  // The DELIVER is on its way: the client still lists chunk 0 as open.
  h.deliver("C1", wire::Heartbeat{1, 0, {0, 1}});
  CHECK(h.sent_to<wire::Resync>(h.drain(), "C1").empty());
  // The client says it read up to that DELIVER, yet still awaits chunk 0: it was lost.
  h.deliver("C1", wire::Heartbeat{1, delivered.seq, {0, 1}});
  CHECK(h.sent_to<wire::Resync>(h.drain(), "C1").size() == 1);
}

TEST_CASE("B33: an undeliverable result makes the client resync on its next heartbeat, once") {
  Harness h;
  h.submit("C1", 1, "m.f", 0, items(1), 1);
  h.core.on_send_failed("C1", h.now);
  h.deliver("C1", wire::Heartbeat{1, 0, {0}});
  CHECK(h.sent_to<wire::Resync>(h.drain(), "C1").size() == 1);
  h.deliver("C1", wire::Heartbeat{1, 0, {0}});  // the resubmission is held: all is well
  CHECK(h.sent_to<wire::Resync>(h.drain(), "C1").empty());
}

TEST_CASE("B20: a late result from a worker that no longer holds the task is dropped") {
  Harness h;
  h.ready("W1", {"m.f"});
  h.submit("C1", 1, "m.f", 0, items(1), 1);
  const auto task = h.sent_to<wire::Task>(h.drain(), "W1").at(0);
  h.ready("W1", {"m.f"});  // re-announced: its task went back to the queue, then to it again
  const auto again = h.sent_to<wire::Task>(h.drain(), "W1").at(0);
  CHECK(again.task_id == task.task_id);
  h.deliver("W1", wire::Bye{"gone"});  // now queued, held by nobody
  h.result("W1", task.task_id, 1);
  CHECK(h.sent_to<wire::Deliver>(h.drain(), "C1").empty());
  CHECK(h.core.queued_count() == 1);
  h.ready("W2", {"m.f"});
  CHECK(h.sent_to<wire::Task>(h.drain(), "W2").size() == 1);
}

TEST_CASE("a job submitted after its function's last worker left waits through the grace period") {
  Harness h;
  h.ready("W1", {"m.f"});
  h.deliver("W1", wire::Bye{"gone"});
  h.advance(10000ms);
  h.submit("C1", 1, "m.f", 0, items(1), 1, 0);
  h.advance(1000ms);
  CHECK(h.sent_to<wire::Failed>(h.drain(), "C1").empty());
}

TEST_CASE("B10: a worker that leaves with BYE hands its tasks back without using an attempt") {
  Harness h;
  h.ready("W1", {"m.f"});
  h.submit("C1", 1, "m.f", 0, items(1, 2), 2);
  h.drain();
  h.deliver("W1", wire::Bye{"stopping"});
  CHECK(h.core.worker_count() == 0);
  CHECK(h.core.queued_count() == 1);
  h.ready("W2", {"m.f"});
  auto tasks = h.sent_to<wire::Task>(h.drain(), "W2");
  REQUIRE(tasks.size() == 1);
  CHECK(tasks[0].count == 2);  // not split: nothing suggests a poison item
}

TEST_CASE("a message the broker cannot read is answered with ERROR naming the problem") {
  Harness h;
  const std::string garbage = "\xdd\xff\x00\x00\x00";
  h.core.on_message("X", garbage.data(), garbage.size(), nullptr, h.now);
  auto errors = h.sent_to<wire::Error>(h.drain(), "X");
  REQUIRE(errors.size() == 1);
  CHECK(errors[0].code == wire::Code::BadMessage);
}

TEST_CASE("a SUBMIT without its payload frame is refused") {
  Harness h;
  h.deliver("C1", wire::Submit{1, "m.f", 0, 1, 0});
  auto errors = h.sent_to<wire::Error>(h.drain(), "C1");
  REQUIRE(errors.size() == 1);
  CHECK(errors[0].message.find("payload") != std::string::npos);
  CHECK(h.core.job_count() == 0);
}

TEST_CASE(
    "B2: RESULT, CREDIT, RETURN and a job-less HEARTBEAT from an unknown peer ask it to announce "
    "itself") {
  Harness h;
  h.result("STRANGER", 99, 1);
  h.deliver("STRANGER", wire::Credit{4});
  h.deliver("STRANGER", wire::Return{{99}});
  h.deliver("STRANGER", wire::Heartbeat{0, 1, {99}});
  auto errors = h.sent_to<wire::Error>(h.drain(), "STRANGER");
  REQUIRE(errors.size() == 4);
  for (const auto& e : errors) CHECK(e.code == wire::Code::NotReady);
  CHECK(h.core.worker_count() == 0);
}

TEST_CASE("B28: a client over its queued-bytes limit gets over_limit for that chunk") {
  broker::Config config;
  config.max_client_bytes = 2000;  // room for one chunk of 700 bytes and its overheads
  Harness h(config);
  const std::string big(690, 'x');
  msgpack::sbuffer buffer;
  msgpack::packer<msgpack::sbuffer>(buffer).pack_array(1).pack(big);
  const std::string payload(buffer.data(), buffer.size());
  h.submit("C1", 1, "m.f", 0, payload, 1);
  h.submit("C1", 1, "m.f", 1, payload, 1);
  auto failed = h.sent_to<wire::Failed>(h.drain(), "C1");
  REQUIRE(failed.size() == 1);
  CHECK(failed[0].code == wire::Code::OverLimit);
  CHECK(failed[0].first == 1);
}

TEST_CASE(
    "B14: shutdown says BYE to workers, to clients with jobs, and to later READY and SUBMIT") {
  Harness h;
  h.ready("W1", {"m.f"});
  h.submit("C1", 1, "m.f", 0, items(1), 1);
  h.drain();
  h.core.shutdown();
  auto out = h.drain();
  CHECK(h.sent_to<wire::Bye>(out, "W1").size() == 1);
  CHECK(h.sent_to<wire::Bye>(out, "C1").size() == 1);
  h.deliver("W2", wire::Ready{"W2", "host", 1, 1, {"m.f"}});
  h.submit("C2", 1, "m.f", 0, items(1), 1);
  out = h.drain();
  CHECK(h.sent_to<wire::Bye>(out, "W2").size() == 1);
  CHECK(h.sent_to<wire::Bye>(out, "C2").size() == 1);
  CHECK(h.core.worker_count() == 1);
  CHECK(h.core.job_count() == 1);
}

TEST_CASE("a client key can neither announce a worker, nor return results, nor change credit") {
  using broker::Role;
  Harness h;
  h.deliver_as(Role::Worker, "W1", wire::Ready{"W1", "host", 1, 1, {"m.f"}});
  const std::string payload = items(1);
  h.deliver_as(Role::Client, "C1", wire::Submit{1, "m.f", 0, 1, 1000}, &payload);
  auto tasks = h.sent_to<wire::Task>(h.drain(), "W1");
  REQUIRE(tasks.size() == 1);

  const std::string results = ok_results(1);
  h.deliver_as(Role::Client, "THIEF", wire::Ready{"THIEF", "host", 2, 1, {"m.f"}});
  h.deliver_as(Role::Client, "THIEF", wire::Result{tasks[0].task_id, 5}, &results);
  h.deliver_as(Role::Client, "THIEF", wire::Credit{8});
  h.deliver_as(Role::Client, "THIEF", wire::Heartbeat{0, 0, {}});
  auto out = h.drain();
  auto errors = h.sent_to<wire::Error>(out, "THIEF");
  REQUIRE(errors.size() == 4);
  for (const auto& e : errors) CHECK(e.code == wire::Code::Forbidden);
  CHECK(errors[0].message == "READY needs a worker key; this peer's key is authorised as a client");
  CHECK(h.core.worker_count() == 1);
  CHECK(h.sent_to<wire::Deliver>(out, "C1").empty());
  CHECK(h.core.inflight_count("W1") == 1);  // the real worker still holds its task

  h.deliver_as(Role::Worker, "W1", wire::Result{tasks[0].task_id, 5}, &results);
  CHECK(h.sent_to<wire::Deliver>(h.drain(), "C1").size() == 1);
}

TEST_CASE("a worker key can neither submit, nor finish, nor follow a job") {
  using broker::Role;
  Harness h;
  h.deliver_as(Role::Worker, "W1", wire::Ready{"W1", "host", 1, 1, {"m.f"}});
  h.drain();
  const std::string payload = items(1);
  h.deliver_as(Role::Worker, "W2", wire::Submit{1, "m.f", 0, 1, 1000}, &payload);
  h.deliver_as(Role::Worker, "W2", wire::Heartbeat{1, 0, {0}});
  h.deliver_as(Role::Worker, "W2", wire::Done{1});
  auto out = h.drain();
  auto errors = h.sent_to<wire::Error>(out, "W2");
  REQUIRE(errors.size() == 3);
  for (const auto& e : errors) CHECK(e.code == wire::Code::Forbidden);
  CHECK(errors[0].message ==
        "SUBMIT needs a client key; this peer's key is authorised as a worker");
  CHECK(h.core.job_count() == 0);
  CHECK(h.sent_to<wire::Task>(out, "W1").empty());
  CHECK(h.sent_to<wire::Resync>(out, "W2").empty());
}

TEST_CASE("both roles may ask for status and say BYE; role Any may send everything") {
  using broker::Role;
  Harness h;
  h.deliver_as(Role::Worker, "W1", wire::Ready{"W1", "host", 1, 1, {"m.f"}});
  h.deliver_as(Role::Worker, "W1", wire::Heartbeat{0, 0, {}});
  h.deliver_as(Role::Worker, "W1", wire::StatusRequest{});
  h.deliver_as(Role::Client, "C1", wire::StatusRequest{});
  auto out = h.drain();
  CHECK(h.sent_to<wire::Error>(out, "W1").empty());
  CHECK(h.sent_to<wire::Status>(out, "W1").size() == 1);
  CHECK(h.sent_to<wire::Status>(out, "C1").size() == 1);
  h.deliver_as(Role::Worker, "W1", wire::Bye{"worker stopping"});
  CHECK(h.core.worker_count() == 0);
  // Without CURVE (Role::Any) every peer may take either part, as before.
  h.ready("W2", {"m.f"});
  h.submit("C2", 1, "m.f", 0, items(1), 1);
  out = h.drain();
  CHECK(h.sent_to<wire::Error>(out, "W2").empty());
  CHECK(h.sent_to<wire::Error>(out, "C2").empty());
  CHECK(h.sent_to<wire::Task>(out, "W2").size() == 1);
}

TEST_CASE("STATUS names a client by a label, never by its routing id") {
  Harness h;
  const std::string id = "C-secret-routing-id";
  h.submit(id, 1, "m.f", 0, items(1), 1);
  const std::string status = h.core.status_payload(h.now);
  CHECK(status.find(id) == std::string::npos);
  CHECK(status.find(broker::client_label(id)) != std::string::npos);
  CHECK(broker::client_label(id).size() == 8);
  CHECK(broker::client_label(id) != broker::client_label("C-another-id"));
}

TEST_CASE(
    "200 workers and 20 clients: every item is delivered once, and every job starts at once") {
  Harness h;
  for (int w = 0; w < 200; ++w) h.ready("W" + std::to_string(w), {"m.f"}, 2);
  h.drain();
  constexpr int kClients = 20;
  constexpr int kChunks = 100;
  for (int c = 0; c < kClients; ++c) {
    for (int i = 0; i < kChunks; ++i) {
      h.submit("C" + std::to_string(c), 1, "m.f", i, items(i), 1);
    }
  }
  std::map<std::string, std::set<std::uint64_t>> delivered;
  // Clients served within the first two waves: the first four jobs take the 400 free credits
  // as they arrive; the sixteen queued behind them must then share the freed credit in turn,
  // not wait for one another.
  std::set<std::string> started;
  std::size_t duplicates = 0;
  for (int round = 0; round < 100; ++round) {
    auto out = h.drain();
    if (out.empty()) break;
    for (const auto& sent : out) {
      if (const auto* task = std::get_if<wire::Task>(&sent.message)) {
        h.result(sent.peer, task->task_id, task->count);
      } else if (const auto* d = std::get_if<wire::Deliver>(&sent.message)) {
        if (!delivered[sent.peer].insert(d->first).second) ++duplicates;
        if (round <= 2) started.insert(sent.peer);
      }
    }
  }
  CHECK(duplicates == 0);
  CHECK(started.size() == kClients);
  REQUIRE(delivered.size() == kClients);
  for (const auto& [client, firsts] : delivered) CHECK(firsts.size() == kChunks);
  CHECK(h.core.queued_count() == 0);
}

// ---- Fairness, grace, attempts, limits and STATUS cost (issue 12, cases 3-8 and 11) ----

namespace {

std::string result_of_bytes(std::size_t bytes) {
  msgpack::sbuffer buffer;
  msgpack::packer<msgpack::sbuffer> p(buffer);
  p.pack_array(1).pack_array(2).pack(0).pack(std::string(bytes, 'r'));
  return std::string(buffer.data(), buffer.size());
}

}  // namespace

TEST_CASE(
    "B17: freed credit goes to the client served least, so a short job runs next to a long one") {
  Harness h;
  // "a.long" sorts first: freed credit used to go to it until the long job was done.
  h.ready("W1", {"a.long", "b.short"}, 1);
  for (std::uint64_t i = 0; i < 50; ++i) h.submit("LONG", 1, "a.long", i, items(i), 1, 0);
  for (int i = 0; i < 5; ++i) {
    auto tasks = h.sent_to<wire::Task>(h.drain(), "W1");
    REQUIRE(tasks.size() == 1);
    h.result("W1", tasks[0].task_id, 1);
    h.deliver("LONG", wire::Heartbeat{1, 1000, {}});
  }
  for (std::uint64_t i = 0; i < 3; ++i) h.submit("SHORT", 1, "b.short", i, items(i), 1, 0);
  std::size_t long_tasks = 0, short_delivered = 0;
  for (int i = 0; i < 45 && short_delivered < 3; ++i) {
    auto out = h.drain();
    short_delivered += h.sent_to<wire::Deliver>(out, "SHORT").size();
    auto tasks = h.sent_to<wire::Task>(out, "W1");
    REQUIRE(tasks.size() == 1);
    if (tasks[0].function == "a.long") ++long_tasks;
    h.result("W1", tasks[0].task_id, 1);
  }
  short_delivered += h.sent_to<wire::Deliver>(h.drain(), "SHORT").size();
  CHECK(short_delivered == 3);
  CHECK(long_tasks <= 4);  // the two jobs alternate: the short one does not wait for the long
}

TEST_CASE("a job whose function's workers vanish for less than the grace period waits for them") {
  Harness h;
  h.ready("W1", {"m.f"});
  h.submit("C1", 1, "m.f", 0, items(1), 1, 10000);
  CHECK(h.sent_to<wire::Task>(h.drain(), "W1").size() == 1);
  // An outage of 15 s: W1 is presumed dead after 3 s, its task is queued again.
  for (int i = 0; i < 15; ++i) {
    h.advance(1000ms);
    h.deliver("C1", wire::Heartbeat{1, 0, {0}});
  }
  CHECK(h.sent_to<wire::Failed>(h.drain(), "C1").empty());
  h.ready("W1", {"m.f"});
  auto tasks = h.sent_to<wire::Task>(h.drain(), "W1");
  REQUIRE(tasks.size() == 1);
  h.result("W1", tasks[0].task_id, 1);
  CHECK(h.sent_to<wire::Deliver>(h.drain(), "C1").size() == 1);
}

TEST_CASE("after the grace period a job whose workers did not come back fails") {
  broker::Config config;
  config.worker_grace = 5s;
  Harness h(config);
  h.ready("W1", {"m.f"});
  h.submit("C1", 1, "m.f", 0, items(1), 1, 0);
  h.deliver("W1", wire::Bye{"gone"});
  h.drain();
  for (int i = 0; i < 4; ++i) {
    h.advance(1000ms);
    h.deliver("C1", wire::Heartbeat{1, 0, {0}});
  }
  CHECK(h.sent_to<wire::Failed>(h.drain(), "C1").empty());
  h.advance(1100ms);
  auto failed = h.sent_to<wire::Failed>(h.drain(), "C1");
  REQUIRE(failed.size() == 1);
  CHECK(failed[0].code == wire::Code::UnknownFunction);
}

TEST_CASE(
    "a function no worker ever served fails at the first tick when the client does not wait") {
  Harness h;
  h.submit("C1", 1, "m.nobody", 0, items(1), 1, 0);
  h.advance(300ms);
  auto failed = h.sent_to<wire::Failed>(h.drain(), "C1");
  REQUIRE(failed.size() == 1);
  CHECK(failed[0].code == wire::Code::UnknownFunction);
}

TEST_CASE("B37: a TASK that could not be sent to its worker costs its item no attempt") {
  Harness h;
  h.submit("C1", 1, "m.f", 0, items(7), 1, 10000);
  // Ten workers in a row say READY and are gone before their TASK leaves.
  for (int i = 0; i < 10; ++i) {
    const std::string w = "GHOST" + std::to_string(i);
    h.ready(w, {"m.f"});
    auto tasks = h.sent_to<wire::Task>(h.drain(), w);
    REQUIRE(tasks.size() == 1);
    h.core.on_send_failed(w, h.now, {tasks[0].task_id});
  }
  CHECK(h.sent_to<wire::Failed>(h.drain(), "C1").empty());
  h.ready("W1", {"m.f"}, 2);
  auto tasks = h.sent_to<wire::Task>(h.drain(), "W1");
  REQUIRE(tasks.size() == 1);
  h.result("W1", tasks[0].task_id, 1);
  CHECK(h.sent_to<wire::Deliver>(h.drain(), "C1").size() == 1);
}

TEST_CASE(
    "B39: a worker that received its task and became unreachable is still charged an attempt") {
  broker::Config config;
  config.max_attempts = 1;
  Harness h(config);
  h.ready("W1", {"m.f"});
  h.submit("C1", 1, "m.f", 0, items(7), 1);
  REQUIRE(h.sent_to<wire::Task>(h.drain(), "W1").size() == 1);
  h.core.on_send_failed("W1", h.now);  // a later ALIVE, say: the TASK itself had left
  auto failed = h.sent_to<wire::Failed>(h.drain(), "C1");
  REQUIRE(failed.size() == 1);
  CHECK(failed[0].code == wire::Code::WorkerLost);
  // Only a later TASK failed to leave: the running one had left, so it is still the one charged,
  // and the unsent one goes back uncharged.
  h.ready("W2", {"m.f"}, 2);
  h.submit("C1", 1, "m.f", 1, items(8), 1);
  h.submit("C1", 1, "m.f", 2, items(9), 1);
  const auto tasks = h.sent_to<wire::Task>(h.drain(), "W2");
  REQUIRE(tasks.size() == 2);
  h.core.on_send_failed("W2", h.now, {tasks[1].task_id});
  failed = h.sent_to<wire::Failed>(h.drain(), "C1");
  REQUIRE(failed.size() == 1);
  CHECK(failed[0].first == 1);
  CHECK(h.core.queued_count() == 1);
}

TEST_CASE(
    "each chunk costs its client an overhead, so a million tiny chunks cannot grow the broker") {
  broker::Config config;
  config.max_client_bytes = 16 << 10;
  Harness h(config);
  for (std::uint64_t i = 0; i < 1000; ++i) h.submit("C1", 1, "m.f", i, items(1), 1, 60000);
  const auto failed = h.sent_to<wire::Failed>(h.drain(), "C1");
  // 16 KiB hold about 60 chunks of 2 bytes and their records, not 8,000.
  CHECK(h.core.task_count() < 70);
  CHECK(failed.size() > 930);
}

TEST_CASE(
    "B27: a chunk larger than the client limit fails at once as too_large, naming the limit") {
  broker::Config config;
  config.max_client_bytes = 4096;
  Harness h(config);
  msgpack::sbuffer buffer;
  msgpack::packer<msgpack::sbuffer>(buffer).pack_array(1).pack(std::string(5000, 'x'));
  h.submit("C1", 1, "m.f", 0, std::string(buffer.data(), buffer.size()), 1);
  auto failed = h.sent_to<wire::Failed>(h.drain(), "C1");
  REQUIRE(failed.size() == 1);
  CHECK(failed[0].code == wire::Code::TooLarge);
  CHECK(failed[0].count == 1);
  CHECK(failed[0].message.find("--max-client-bytes of 4096") != std::string::npos);
  CHECK(h.core.job_count() == 0);
  CHECK(h.core.client_count() == 0);  // a refused SUBMIT creates no client record (§7.4)
}

TEST_CASE("B18: a client that does not read its results gets no more tasks run until it does") {
  broker::Config config;
  config.max_client_bytes = 64 << 10;
  Harness h(config);
  h.ready("W1", {"m.f"}, 1);
  for (std::uint64_t i = 0; i < 40; ++i) h.submit("C1", 1, "m.f", i, items(i), 1, 60000);
  std::size_t ran = 0;
  for (int i = 0; i < 40; ++i) {
    auto tasks = h.sent_to<wire::Task>(h.drain(), "W1");
    if (tasks.empty()) break;
    ++ran;
    const std::string payload = result_of_bytes(10000);
    h.deliver("W1", wire::Result{tasks[0].task_id, 5}, &payload);
  }
  CHECK(ran == 7);  // 7 results of 10 kB reach the 64 KiB limit: the rest wait
  h.deliver("C1", wire::Heartbeat{1, 7, {}});  // it read them
  CHECK(h.sent_to<wire::Task>(h.drain(), "W1").size() == 1);
}

TEST_CASE("ALIVE tells peers the largest message the broker accepts") {
  broker::Config config;
  config.max_message_bytes = 1 << 20;
  Harness h(config);
  h.ready("W1", {"m.f"});
  auto alive = h.sent_to<wire::Alive>(h.drain(), "W1");
  REQUIRE(alive.size() == 2);  // to its READY and its HEARTBEAT
  CHECK(alive[0].max_message_bytes == (1u << 20));
}

// Before: one STATUS scanned functions x jobs, and each job removed scanned every task (about
// 8e8 steps here, seconds of CPU); now each is linear. Timings belong in bench/: this test
// shows the case completes and stays correct.
TEST_CASE("STATUS and failing 20,000 jobs of unserved functions take work linear in the jobs") {
  Harness h;
  constexpr std::uint64_t kJobs = 20000;
  for (std::uint64_t i = 0; i < kJobs; ++i) {
    h.submit("C" + std::to_string(i % 50), i + 1, "m.f" + std::to_string(i), 0, items(1), 1, 60000);
  }
  h.drain();
  h.deliver("W1", wire::StatusRequest{});
  auto out = h.drain();
  REQUIRE(out.size() == 1);
  CHECK(out[0].payload.size() > kJobs * 20);
  h.now += 61s;
  h.core.on_tick(h.now);
  CHECK(h.core.job_count() == 0);
  CHECK(h.core.task_count() == 0);
}

TEST_CASE(
    "B5: a TASK lost on a worker's brief disconnection is queued again when two heartbeats do not "
    "list it") {
  Harness h;
  h.ready("W1", {"m.f"});
  h.submit("C1", 1, "m.f", 0, items(5), 1);
  auto tasks = h.sent_to<wire::Task>(h.drain(), "W1");
  REQUIRE(tasks.size() == 1);
  // The TASK was in flight when the connection broke; ZeroMQ reconnected under the same id.
  // Within a liveness the broker still presumes it travelling.
  h.now += 500ms;
  h.deliver("W1", wire::Heartbeat{0, 1, {}});
  CHECK(h.sent_to<wire::Task>(h.drain(), "W1").empty());
  // Past a liveness, one heartbeat that does not list it is not yet proof: the TASK may be
  // slow on its way (a large payload on a slow link). A second one is.
  h.now += 3000ms;
  h.deliver("W1", wire::Heartbeat{0, 1, {}});
  CHECK(h.sent_to<wire::Task>(h.drain(), "W1").empty());
  h.now += 1000ms;
  h.deliver("W1", wire::Heartbeat{0, 1, {}});
  auto again = h.sent_to<wire::Task>(h.drain(), "W1");
  REQUIRE(again.size() == 1);
  CHECK(again[0].task_id == tasks[0].task_id);  // the same task, sent again
}

TEST_CASE("a task its worker lists in its heartbeat stays with it, however long it runs") {
  Harness h;
  h.ready("W1", {"m.f"});
  h.submit("C1", 1, "m.f", 0, items(5), 1);
  auto tasks = h.sent_to<wire::Task>(h.drain(), "W1");
  REQUIRE(tasks.size() == 1);
  for (int i = 0; i < 10; ++i) {
    h.now += 1000ms;
    h.deliver("W1", wire::Heartbeat{0, 1, {tasks[0].task_id}});
  }
  CHECK(h.sent_to<wire::Task>(h.drain(), "W1").empty());
}

TEST_CASE("an answer lost on the way to a client is sent again once a liveness has passed") {
  Harness h;
  h.ready("W1", {"m.f"});
  h.submit("C1", 1, "m.f", 0, items(5), 1);
  auto tasks = h.sent_to<wire::Task>(h.drain(), "W1");
  REQUIRE(tasks.size() == 1);
  h.result("W1", tasks[0].task_id, 1);
  REQUIRE(h.sent_to<wire::Deliver>(h.drain(), "C1").size() == 1);
  // The DELIVER was lost when the client's connection broke: it still awaits chunk 0.
  h.now += 100ms;
  h.deliver("C1", wire::Heartbeat{1, 0, {0}});
  CHECK(h.sent_to<wire::Resync>(h.drain(), "C1").empty());  // it may still be on its way
  h.now += 3500ms;
  h.deliver("C1", wire::Heartbeat{1, 0, {0}});
  CHECK(h.sent_to<wire::Resync>(h.drain(), "C1").size() == 1);
}

TEST_CASE("answers a client is still reading through are not presumed lost") {
  Harness h;
  h.ready("W1", {"m.f"}, 2);
  h.submit("C1", 1, "m.f", 0, items(5), 1);
  h.submit("C1", 1, "m.f", 1, items(6), 1);
  auto tasks = h.sent_to<wire::Task>(h.drain(), "W1");
  REQUIRE(tasks.size() == 2);
  h.result("W1", tasks[0].task_id, 1);
  h.result("W1", tasks[1].task_id, 1);
  REQUIRE(h.sent_to<wire::Deliver>(h.drain(), "C1").size() == 2);
  // A slow link: the client reads the first answer long after both were sent, and the
  // second is still on its way.
  h.now += 3500ms;
  h.deliver("C1", wire::Heartbeat{1, 1, {1}});
  CHECK(h.sent_to<wire::Resync>(h.drain(), "C1").empty());
}
