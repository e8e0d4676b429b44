// Issue 28, "Scale beyond this machine": the broker's per-task work must not grow with its
// workers (dispatch chooses from per-service provider indexes, not by scanning every provider)
// and a /metrics scrape must not pack or decode what /metrics does not show (the task stream).
#include <doctest/doctest.h>

#include <random>

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
