// Issue 28, "Scale beyond this machine": the broker's per-task work must not grow with its
// workers (dispatch chooses from per-service provider indexes, not by scanning every provider)
// and a /metrics scrape must not pack or decode what /metrics does not show (the task stream).
#include <doctest/doctest.h>

#include <random>
#include <set>

#include "seppo/msgpack.hpp"

#include "broker/core.hpp"
#include "broker/http.hpp"
#include "broker_harness.hpp"
#include "protocol/wire.hpp"

using namespace seppo;
using namespace std::chrono_literals;
using namespace seppo::broker_test;

TEST_CASE("the provider indexes choose the worker the scan over every provider chose") {
  // With the self-check on, every dispatch compares the index's choice (best and idle) with
  // the rule's scan and throws on a difference: a worker whose tasks held, credit, isolation or
  // first words changed without its entries being updated would show here.
  for (std::uint32_t seed = 1; seed <= 20; ++seed) {
    CAPTURE(seed);
    Harness h;
    h.core.set_self_check(true);
    std::mt19937 rng(seed);
    auto pick = [&](std::uint32_t n) { return static_cast<std::uint32_t>(rng() % n); };
    const std::vector<std::string> functions = {"m.f", "m.g"};
    std::vector<std::string> workers;
    std::map<std::string, std::vector<std::uint64_t>> held;  // tasks each worker was sent
    std::uint64_t first = 0;
    auto take = [&](const std::vector<Sent>& out) {
      for (const Sent& s : out) {
        if (const auto* t = std::get_if<wire::Task>(&s.message)) held[s.peer].push_back(t->task_id);
      }
    };
    CHECK_NOTHROW([&] {
      for (int step = 0; step < 400; ++step) {
        const std::uint32_t what = pick(10);
        if (what == 0 || workers.size() < 3) {  // a worker joins (or joins again)
          const std::string w = "W" + std::to_string(pick(30));
          std::vector<std::string> fs = {functions[pick(2)]};
          if (pick(3) == 0) fs.push_back(functions[pick(2)]);
          h.ready(w, fs, 1 + pick(4));
          held[w].clear();
          if (std::find(workers.begin(), workers.end(), w) == workers.end()) workers.push_back(w);
        } else if (what <= 3) {  // a client submits
          const std::string c = "C" + std::to_string(pick(3));
          h.submit(c, 1 + pick(2), c == "C0" ? "m.f" : functions[pick(2)], first, items(1), 1);
          ++first;
        } else if (what <= 6) {  // a worker answers the first task it holds
          const std::string& w = workers[pick(static_cast<std::uint32_t>(workers.size()))];
          if (!held[w].empty()) {
            h.result(w, held[w].front(), 1);
            held[w].erase(held[w].begin());
          }
        } else if (what == 7) {  // a worker speaks, or changes its credit
          const std::string& w = workers[pick(static_cast<std::uint32_t>(workers.size()))];
          if (pick(2)) {
            h.deliver(w, wire::Heartbeat{0, 0, {}});
          } else {
            h.deliver(w, wire::Credit{1 + pick(5)});
          }
        } else if (what == 8) {  // a worker leaves
          const std::string w = workers[pick(static_cast<std::uint32_t>(workers.size()))];
          h.deliver(w, wire::Bye{"gone"});
          workers.erase(std::find(workers.begin(), workers.end(), w));
          held.erase(w);
        } else {  // time passes: silent workers expire
          h.advance(std::chrono::milliseconds(100 + pick(1500)));
          h.core.on_tick(h.now);
        }
        take(h.drain());
      }
    }());
  }
}

TEST_CASE("/metrics renders the same from its own snapshot, which holds no task stream") {
  Harness h;
  h.core.stats().record_tasks(true);  // as under seppo-broker --http
  h.advance(0ms);
  for (int w = 0; w < 20; ++w) {
    h.deliver("W" + std::to_string(w), wire::Ready{"W" + std::to_string(w),
                                                   "host" + std::to_string(w % 3),
                                                   w,
                                                   2,
                                                   {w % 2 ? "m.f" : "m.g"},
                                                   w % 4 ? "0.1.0" : ""});
  }
  for (std::uint64_t k = 0; k < 60; ++k) {
    h.submit("C" + std::to_string(k % 4), 1 + k % 2, k % 3 ? "m.f" : "m.g", k, items(1), 1);
  }
  const auto out = h.drain();
  int answered = 0;
  for (const Sent& s : out) {
    const auto* t = std::get_if<wire::Task>(&s.message);
    if (t != nullptr && answered++ % 2 == 0) h.result(s.peer, t->task_id, 1);
  }
  h.deliver("X", wire::Result{99, 1}, nullptr);  // a refusal, counted
  h.drain();
  h.advance(20ms);

  const std::string full = h.core.status_payload(h.now);
  const std::string part = h.core.metrics_payload(h.now);
  CHECK(broker::status_metrics(part) == broker::status_metrics(full));
  CHECK(full.find("recent") != std::string::npos);
  CHECK(part.find("recent") == std::string::npos);
  CHECK(part.find("running") == std::string::npos);
  CHECK(part.size() * 2 < full.size());
}

TEST_CASE("a RankSet finds the least rank from any point as a std::set does") {
  // Ranks over three blocks' words of pages (past 262,144), sparse and dense, inserted and erased
  // at random: every page taken and given back, and every level of the search crossed.
  broker::RankPages pool;
  broker::RankSet set;
  std::set<std::uint32_t> model;
  std::mt19937 rng(7);
  const std::uint32_t spans[] = {70, 5000, 600000};
  for (std::uint32_t span : spans) {
    CAPTURE(span);
    for (int step = 0; step < 20000; ++step) {
      const std::uint32_t r = static_cast<std::uint32_t>(rng() % span);
      if (rng() % 3 == 0) {
        set.erase(r, pool);
        model.erase(r);
      } else {
        set.insert(r, pool);
        model.insert(r);
      }
      REQUIRE(set.size() == model.size());
      const std::uint32_t from = static_cast<std::uint32_t>(rng() % (span + 100));
      auto m = model.lower_bound(from);
      REQUIRE(set.first(pool, from) == (m == model.end() ? broker::RankSet::npos : *m));
      REQUIRE(set.first(pool) == (model.empty() ? broker::RankSet::npos : *model.begin()));
    }
    for (std::uint32_t r : model) set.erase(r, pool);
    model.clear();
    CHECK(set.empty());
    CHECK(set.first(pool) == broker::RankSet::npos);
    CHECK(pool.spare.size() == pool.pages.size());  // every page given back
  }
}

TEST_CASE("workers leaving in numbers keep the order of joining for those who stay") {
  // A service's provider list keeps a hole where a worker left and is compacted once the holes
  // outnumber the providers: the ranks change, the order of choice must not (the self-check
  // compares every choice with the scan in joining order).
  Harness h;
  h.core.set_self_check(true);
  CHECK_NOTHROW([&] {
    for (int i = 0; i < 300; ++i) h.ready("W" + std::to_string(i), {"m.f"}, 1);
    // All but every seventh leave, from the front, so that the compaction moves those left.
    for (int i = 0; i < 300; ++i) {
      if (i % 7 != 6) h.deliver("W" + std::to_string(i), wire::Bye{"gone"});
    }
    h.drain();
    for (std::uint64_t first = 0; first < 100; ++first) {
      h.submit("C", 1, "m.f", first, items(1), 1);
    }
    std::map<std::string, int> tasks;
    std::vector<std::string> order;
    for (const Sent& s : h.drain()) {
      if (!std::holds_alternative<wire::Task>(s.message)) continue;
      if (tasks[s.peer]++ == 0) order.push_back(s.peer);
    }
    // 42 workers of capacity 1 stay: 42 tasks went, one to each, in their order of joining.
    CHECK(tasks.size() == 42);
    REQUIRE(order.size() == 42);
    CHECK(order.front() == "W6");
    CHECK(order[1] == "W13");
    CHECK(order.back() == "W293");
    CHECK(tasks.count("W0") == 0);
  }());
  CHECK(h.core.worker_count() == 42);
}

TEST_CASE("a service starts and ends its index as its providers pass 32 and fall below 16") {
  // Without the self-check a service of few providers is chosen from by the scan, and keeps
  // the index only from 32 providers on: the choice is the same either side of both changes.
  Harness h;
  std::uint64_t first = 0;
  auto sent_to = [&](int tasks) {
    for (int i = 0; i < tasks; ++i) h.submit("C", 1, "m.f", first++, items(1), 1);
    std::vector<std::string> peers;
    for (const Sent& s : h.drain()) {
      if (std::holds_alternative<wire::Task>(s.message)) peers.push_back(s.peer);
    }
    return peers;
  };
  for (int i = 0; i < 40; ++i) h.ready("W" + std::to_string(i), {"m.f"}, 1);
  h.drain();
  CHECK(sent_to(3) == std::vector<std::string>{"W0", "W1", "W2"});  // indexed (40)
  for (int i = 3; i < 30; ++i) h.deliver("W" + std::to_string(i), wire::Bye{"gone"});
  h.drain();
  CHECK(sent_to(3) == std::vector<std::string>{"W30", "W31", "W32"});  // scanned (13)
  for (int i = 0; i < 30; ++i) h.ready("X" + std::to_string(i), {"m.f"}, 1);
  h.drain();
  CHECK(sent_to(4) == std::vector<std::string>{"W33", "W34", "W35", "W36"});  // indexed (43)
  // Every idle provider busy: the rest go to none until one answers.
  CHECK(sent_to(40).size() == 33);
}
