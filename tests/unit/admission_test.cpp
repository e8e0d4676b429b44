// broker/delivery.hpp's flush and broker/admission.hpp's Admission: the rules the socket loop
// (broker/server.cpp) and the simulator share (issue 27 §1).
#include <doctest/doctest.h>

#include <string>
#include <vector>

#include "broker/admission.hpp"
#include "broker/delivery.hpp"
#include "tests/unit/broker_harness.hpp"

using namespace seppo;
using namespace seppo::broker_test;
using broker::Role;

namespace {

// A transport that fails sends to the peers in `unreachable` and loses the ones in `lost`.
struct FakeLink final : broker::Link {
  std::vector<std::string> lost, unreachable;
  std::vector<Sent> sent;
  std::vector<wire::DeliveryReport> reports;
  std::vector<std::string> take_lost() override { return std::exchange(lost, {}); }
  bool send(broker::Outgoing& m) override {
    if (std::find(unreachable.begin(), unreachable.end(), m.peer) != unreachable.end())
      return false;
    sent.push_back(Sent{m.peer, wire::decode(m.header.data(), m.header.size()),
                        m.payload ? m.payload->str() : std::string()});
    return true;
  }
  void reporting(const wire::DeliveryReport& r) override { reports.push_back(r); }
};

// A 40-character Z85 key (only its length matters here).
std::string key(char c) {
  return std::string(40, c);
}

}  // namespace

TEST_CASE(
    "flush: TASKs held back for a closed connection are reported unsent, and the task runs "
    "elsewhere uncharged") {
  Harness h;
  h.ready("W1", {"m.f"});
  h.ready("W2", {"m.f"});
  h.drain();
  h.submit("C1", 1, "m.f", 0, items(1), 1);
  FakeLink link;
  // The first TASK went to one of the two; its connection closed before the flush.
  std::vector<broker::Outgoing> queued(h.core.queued().begin(), h.core.queued().end());
  REQUIRE(queued.size() == 1);
  const std::string first = queued[0].peer;
  const std::string other = first == "W1" ? "W2" : "W1";
  link.lost = {first};
  CHECK(broker::flush(h.core, link, h.now));
  // A closed connection with a message held back: disconnected, then the failed send.
  REQUIRE(link.reports.size() == 2);
  CHECK(link.reports[0].peer == first);
  CHECK(link.reports[0].disconnected);
  CHECK(link.reports[0].unsent_tasks == std::vector<std::uint64_t>{queued[0].task_id});
  CHECK_FALSE(link.reports[1].disconnected);
  // Its task went to the other worker in the next round of the same flush, uncharged.
  auto tasks = Harness::sent_to<wire::Task>(link.sent, other);
  REQUIRE(tasks.size() == 1);
  CHECK(h.core.worker_count() == 1);
  CHECK(h.core.outbox_empty());
}

TEST_CASE("flush: a client its DELIVER could not reach is asked to resubmit (RESYNC)") {
  Harness h;
  h.ready("W1", {"m.f"});
  h.submit("C1", 1, "m.f", 0, items(1), 1);
  const auto tasks = Harness::sent_to<wire::Task>(h.drain(), "W1");
  REQUIRE(tasks.size() == 1);
  h.result("W1", tasks[0].task_id, 1);
  FakeLink link;
  link.unreachable = {"C1"};
  CHECK(broker::flush(h.core, link, h.now));
  REQUIRE(link.reports.size() == 1);
  CHECK(link.reports[0].peer == "C1");
  CHECK_FALSE(link.reports[0].disconnected);
  // The client speaks again: what it missed is recomputed on its resubmission.
  link.unreachable.clear();
  h.deliver("C1", wire::Heartbeat{1, 0, {0}});
  CHECK(broker::flush(h.core, link, h.now));
  CHECK(Harness::sent_to<wire::Resync>(link.sent, "C1").size() == 1);
}

TEST_CASE("flush: a closed connection with nothing for it is only a disconnection") {
  Harness h;
  h.ready("W1", {"m.f"});
  h.drain();
  FakeLink link;
  link.lost = {"W1"};
  CHECK(broker::flush(h.core, link, h.now));
  REQUIRE(link.reports.size() == 1);
  CHECK(link.reports[0].disconnected);
  CHECK(h.core.worker_count() == 0);
}

TEST_CASE("Admission without keys or bindings takes every message as Role::Any") {
  broker::Admission open({});
  const auto v = open.on_message("W1", nullptr, -1, TimePoint{});
  CHECK(v.accepted);
  CHECK(v.role == Role::Any);
  CHECK(open.may_send("W1"));
}

TEST_CASE("Admission: a key the reloaded lists no longer grant is dropped; a client is told once") {
  const std::string worker = key('w'), client = key('c');
  std::vector<std::string> logged;
  broker::Admission gate(
      {broker::KeyLists::of({{worker, Role::Worker}, {client, Role::Client}}), {}},
      [&](log::Level, const std::string& line) { logged.push_back(line); });
  const std::string worker_user = "worker:" + worker, client_user = "client:" + client;
  auto v = gate.on_message("W1", worker_user.c_str(), 3, TimePoint{});
  CHECK(v.accepted);
  CHECK(v.role == Role::Worker);
  CHECK(v.key == worker.substr(0, 8));
  // Mislabelled: a worker key that the lists call a client's is held to what both grant.
  gate.reloaded(broker::KeyLists::of({{worker, Role::Client}}));
  v = gate.on_message("W1", worker_user.c_str(), 3, TimePoint{});
  CHECK_FALSE(v.accepted);
  CHECK(std::string(v.reason) == "unauthorised_key");
  CHECK(v.refusal.empty());  // a worker is not answered: it would stop for good
  v = gate.on_message("C1", client_user.c_str(), 4, TimePoint{});
  CHECK_FALSE(v.accepted);
  CHECK(v.refusal.find("no longer authorised") != std::string::npos);
  v = gate.on_message("C1", client_user.c_str(), 4, TimePoint{});
  CHECK(v.refusal.empty());   // once per routing id and reload
  CHECK(logged.size() == 2);  // once per key
  // No User-Id at all under keys: dropped.
  CHECK_FALSE(gate.on_message("X", nullptr, 5, TimePoint{}).accepted);
  // Authorised again: taken again.
  gate.reloaded(broker::KeyLists::of({{client, Role::Client}}));
  CHECK(gate.on_message("C1", client_user.c_str(), 4, TimePoint{}).accepted);
}

TEST_CASE(
    "Admission: a revoked client is told on the connection it speaks on, and again a second "
    "later") {
  // The client's connection closed before the reload (its id unbound from any descriptor) and
  // it spoke next on a new one: it used to get no ERROR at all, and waited for its timeout.
  using namespace std::chrono_literals;
  const std::string client = "client:" + key('c'), other = "client:" + key('o');
  broker::Admission admission(
      {broker::KeyLists::of({{key('c'), Role::Client}, {key('o'), Role::Client}}), 10s});
  const TimePoint t0{std::chrono::hours(1)};
  REQUIRE(admission.on_message("C1", client.c_str(), 7, t0).accepted);
  admission.on_closed(7);
  admission.reloaded(broker::KeyLists::of({{key('o'), Role::Client}}));
  const auto told = [&](const std::string& id, const std::string& user, TimePoint at) {
    return admission.on_message(id, user.c_str(), 8, at).refusal.find("no longer authorised") !=
           std::string::npos;
  };
  CHECK(told("C1", client, t0 + 100ms));
  CHECK_FALSE(told("C1", client, t0 + 600ms));  // not for every message
  CHECK(told("C1", client, t0 + 1100ms));       // in case the last one was lost
  // Another key presenting the id is told nothing: the id is the first key's (§14.6).
  REQUIRE(admission.on_message("C2", other.c_str(), 9, t0).accepted);
  admission.reloaded(broker::KeyLists::of({}));
  CHECK_FALSE(told("C2", client, t0 + 2s));
  CHECK(told("C2", other, t0 + 2s));
}

TEST_CASE(
    "Admission: a routing id bound to one key is refused to another, and gets nothing "
    "until its owner speaks again") {
  using namespace std::chrono_literals;
  const std::string a = "worker:" + key('a'), b = "worker:" + key('b');
  std::vector<std::string> logged;
  broker::Admission admission(
      {broker::KeyLists::of({{key('a'), Role::Worker}, {key('b'), Role::Worker}}), 10s},
      [&](log::Level, const std::string& line) { logged.push_back(line); });
  const TimePoint t0{std::chrono::hours(1)};
  CHECK(admission.on_message("W1", a.c_str(), 7, t0).accepted);
  admission.on_closed(7);
  CHECK_FALSE(admission.may_send("W1"));
  const auto v = admission.on_message("W1", b.c_str(), 8, t0 + 1s);
  CHECK_FALSE(v.accepted);
  CHECK(std::string(v.reason) == "routing_id_taken");
  CHECK_FALSE(admission.may_send("W1"));
  CHECK_FALSE(admission.on_message("W1", b.c_str(), 8, t0 + 2s).accepted);
  CHECK(logged.size() == 1);  // once a minute per id
  CHECK(admission.on_message("W1", a.c_str(), 9, t0 + 3s).accepted);
  CHECK(admission.may_send("W1"));
}

TEST_CASE("Admission: a reload names the bound peers whose keys lost the worker role or all") {
  // Issue 26: the core does not know peers' keys; the bindings do, so a reload says which
  // registered workers to forget, and nothing more goes to a key granted nothing.
  using namespace std::chrono_literals;
  const std::string worker = "worker:" + key('w'), both = "any:" + key('a'),
                    client = "client:" + key('c');
  broker::Admission admission(
      {broker::KeyLists::of(
           {{key('w'), Role::Worker}, {key('a'), Role::Any}, {key('c'), Role::Client}}),
       10s});
  const TimePoint t0{std::chrono::hours(1)};
  REQUIRE(admission.on_message("W1", worker.c_str(), 7, t0).accepted);
  REQUIRE(admission.on_message("A1", both.c_str(), 8, t0).accepted);
  REQUIRE(admission.on_message("C1", client.c_str(), 9, t0).accepted);
  // The worker key goes; the key of both roles keeps only the client's; the client's stays.
  const auto revoked = admission.reloaded(
      broker::KeyLists::of({{key('a'), Role::Client}, {key('c'), Role::Client}}));
  REQUIRE(revoked.size() == 2);
  for (const auto& r : revoked) {
    CHECK(r.worker);
    CHECK(r.all == (r.peer == "W1"));
    CHECK(r.connection == (r.peer == "W1" ? 7 : 8));
    CHECK(r.user == (r.peer == "W1" ? worker : both));
  }
  CHECK_FALSE(admission.may_send("W1"));
  CHECK(admission.may_send("A1"));  // still a client
  CHECK(admission.may_send("C1"));
  // Authorised again: sent to again; the others' keys are granted nothing now.
  CHECK(admission.reloaded(broker::KeyLists::of({{key('w'), Role::Worker}})).size() == 2);
  CHECK(admission.may_send("W1"));
  CHECK_FALSE(admission.may_send("A1"));
  CHECK_FALSE(admission.may_send("C1"));
  CHECK(admission.on_message("W1", worker.c_str(), 7, t0 + 1s).accepted);
  // A client's revoked key is still answered ERROR forbidden once (§14.5), the veto aside.
  CHECK(
      admission.on_message("C1", client.c_str(), 9, t0 + 1s).refusal.find("no longer authorised") !=
      std::string::npos);
}
