// The broker's core driven message by message with a fake clock: no sockets, no sleeps. Shared
// by the broker's unit tests (broker_core_test.cpp, broker_rows_test.cpp, task_timer_test.cpp).
#pragma once

#include <doctest/doctest.h>

#include <chrono>
#include <deque>
#include <map>
#include <string>
#include <variant>
#include <vector>

#include "seppo/msgpack.hpp"

#include "broker/core.hpp"
#include "broker/driver.hpp"
#include "protocol/wire.hpp"

namespace seppo::broker_test {

using namespace std::chrono_literals;
using broker::TimePoint;

struct Sent {
  std::string peer;
  wire::Message message;
  std::string payload;
};

template <class... Items>
std::string items(const Items&... values) {
  msgpack::sbuffer buffer;
  msgpack::packer<msgpack::sbuffer> p(buffer);
  p.pack_array(sizeof...(values));
  (p.pack(values), ...);
  return std::string(buffer.data(), buffer.size());
}

// An array of `count` items 0, 1, ...: a chunk's payload where the items do not matter.
inline std::string numbers(std::uint32_t count) {
  msgpack::sbuffer buffer;
  msgpack::packer<msgpack::sbuffer> p(buffer);
  p.pack_array(count);
  for (std::uint32_t i = 0; i < count; ++i) p.pack(i);
  return std::string(buffer.data(), buffer.size());
}

inline std::string ok_results(std::uint32_t count) {
  msgpack::sbuffer buffer;
  msgpack::packer<msgpack::sbuffer> p(buffer);
  p.pack_array(count);
  for (std::uint32_t i = 0; i < count; ++i) p.pack_array(2).pack(0).pack(i);
  return std::string(buffer.data(), buffer.size());
}

struct Harness {
  broker::Config config;
  TimePoint now{std::chrono::seconds(1000)};
  broker::Core core;

  explicit Harness(broker::Config c = {}) : config(c), core(c, 42) {}

  void deliver(const std::string& from, const wire::Message& m,
               const std::string* payload = nullptr) {
    deliver_as(broker::Role::Any, from, m, payload);
  }
  // As the socket loop does with CURVE on: the sender's role comes with every message.
  void deliver_as(broker::Role role, const std::string& from, const wire::Message& m,
                  const std::string* payload = nullptr) {
    broker::feed(core, from, wire::encode(m),
                 payload ? std::optional<Bytes>(Bytes(*payload)) : std::nullopt, now, role,
                 "KeyPrint");
  }
  void ready(const std::string& worker, std::vector<std::string> functions,
             std::uint32_t capacity = 1) {
    deliver(worker, wire::Ready{worker, "host", 1, capacity, std::move(functions)});
    // It has spoken since READY, so the broker can blame its death on a task (§10).
    deliver(worker, wire::Heartbeat{0, 0, {}});
  }
  void submit(const std::string& client, std::uint64_t job, const std::string& function,
              std::uint64_t first, const std::string& payload, std::uint32_t count,
              std::uint32_t wait_ms = 1000) {
    deliver(client, wire::Submit{job, function, first, count, wait_ms}, &payload);
  }
  // Worker `worker` of m.f with `capacity`, and `chunks` one-item chunks 0, 1, ... of job 1 of
  // client C1 (items 1, 2, ...): returns the TASKs the worker got (other messages are drained).
  std::vector<wire::Task> serve(const std::string& worker, std::uint32_t capacity,
                                std::uint32_t chunks) {
    ready(worker, {"m.f"}, capacity);
    for (std::uint32_t i = 0; i < chunks; ++i) submit("C1", 1, "m.f", i, items(i + 1), 1);
    return sent_to<wire::Task>(drain(), worker);
  }
  // A chunk of `count` items for job 1 of client C1 (function m.f) with SUBMIT's optional time
  // limit per item (0: none).
  void submit_timed(std::uint64_t first, std::uint32_t count, std::uint32_t item_timeout_ms,
                    std::uint32_t wait_ms = 60000) {
    const std::string payload = numbers(count);
    deliver("C1", wire::Submit{1, "m.f", first, count, wait_ms, item_timeout_ms}, &payload);
  }
  void result(const std::string& worker, std::uint64_t task, std::uint32_t count) {
    const std::string payload = ok_results(count);
    deliver(worker, wire::Result{task, 5}, &payload);
  }
  // Lets four heartbeats pass (past the default expiry of three) while the named workers and
  // clients (the latter for their job 1) keep beating: every other peer is presumed dead.
  void expire_silent(const std::vector<std::string>& workers,
                     const std::vector<std::string>& clients) {
    for (int i = 0; i < 4; ++i) {
      advance(1000ms);
      for (const auto& w : workers) deliver(w, wire::Heartbeat{0, 0, {}});
      for (const auto& c : clients) deliver(c, wire::Heartbeat{1, 0, {}});
    }
  }
  void advance(std::chrono::milliseconds d) {
    now += d;
    core.on_tick(now);
  }
  std::vector<Sent> drain() {
    std::vector<Sent> out;
    for (auto& o : broker::drain(core)) {
      out.push_back(Sent{o.peer, wire::decode(o.header.data(), o.header.size()),
                         o.payload ? o.payload->str() : std::string()});
    }
    return out;
  }
  // Messages of type T sent to `peer`, in order.
  template <class T>
  static std::vector<T> sent_to(const std::vector<Sent>& all, const std::string& peer) {
    std::vector<T> out;
    for (const auto& s : all) {
      if (s.peer == peer && std::holds_alternative<T>(s.message))
        out.push_back(std::get<T>(s.message));
    }
    return out;
  }
};

// What each worker holds, as the broker's TASKs tell it: for tests that answer tasks in the
// order sent, as workers run them.
struct Held {
  std::map<std::string, std::deque<std::uint64_t>> tasks;
  // Records the TASKs in `out`, and returns them.
  std::vector<Sent> track(std::vector<Sent> out) {
    for (const auto& s : out) {
      if (const auto* t = std::get_if<wire::Task>(&s.message)) tasks[s.peer].push_back(t->task_id);
    }
    return out;
  }
  // Answers the task `worker` runs (its oldest), and records what the broker sends then.
  std::vector<Sent> answer(Harness& h, const std::string& worker) {
    auto& queue = tasks[worker];
    REQUIRE_FALSE(queue.empty());
    const std::uint64_t id = queue.front();
    queue.pop_front();
    h.result(worker, id, 1);
    return track(h.drain());
  }
};

}  // namespace seppo::broker_test
