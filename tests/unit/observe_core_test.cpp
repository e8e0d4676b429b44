// Issue 24: what the broker's STATUS snapshot tells operators (seppo status, seppo-broker
// --http): running tasks, owners, counters per function, refusals and the task stream.
#include <doctest/doctest.h>

#include "seppo/msgpack.hpp"

#include "broker/core.hpp"
#include "broker/http.hpp"
#include "broker_harness.hpp"
#include "protocol/wire.hpp"
#include "seppo/error.hpp"

using namespace seppo;
using namespace std::chrono_literals;
using namespace seppo::broker_test;

namespace {

const msgpack::object& at(const msgpack::object& map, const std::string& key) {
  REQUIRE(map.type == msgpack::type::MAP);
  for (std::uint32_t i = 0; i < map.via.map.size; ++i) {
    if (map.via.map.ptr[i].key.as<std::string>() == key) return map.via.map.ptr[i].val;
  }
  FAIL("no key " << key);
  throw 0;
}

}  // namespace

TEST_CASE("a client's owner is asked once, even when it is unknown (TCP without keys)") {
  // It was asked again at every SUBMIT while the answer was empty: a call into libzmq per chunk.
  Harness h;
  int asked = 0;
  h.core.set_owner_source([&] {
    ++asked;
    return std::string();
  });
  h.advance(0ms);
  h.ready("W1", {"m.f"}, 2);
  for (std::uint64_t first = 0; first < 6; first += 2) h.submit("C1", 7, "m.f", first, items(1, 2), 2);
  h.drain();
  CHECK(asked == 1);
  const std::string status = h.core.status_payload(h.now);
  const auto handle = msgpack::unpack(status.data(), status.size());
  CHECK(at(at(handle.get(), "jobs").via.array.ptr[0], "owner").as<std::string>().empty());
}

TEST_CASE(
    "STATUS shows each worker's tasks, the job's owner and progress, and counts by function") {
  Harness h;
  h.core.stats().record_tasks(true);
  h.core.set_owner_source([] { return std::string("alice.key"); });
  h.advance(0ms);  // the broker's clock starts
  h.ready("W1", {"m.f"}, 2);
  h.submit("C1", 7, "m.f", 0, items(1, 2), 2);
  h.submit("C1", 7, "m.f", 2, items(3, 4), 2);
  auto tasks = h.sent_to<wire::Task>(h.drain(), "W1");
  REQUIRE(tasks.size() == 2);
  h.advance(50ms);

  {
    const std::string status = h.core.status_payload(h.now);
    const auto handle = msgpack::unpack(status.data(), status.size());
    const msgpack::object& s = handle.get();
    CHECK(at(s, "uptime_ms").as<std::int64_t>() == 50);
    CHECK(at(s, "version").as<std::string>() == std::string(SEPPO_VERSION));
    CHECK(at(s, "clients").as<int>() == 1);
    const msgpack::object& worker = at(s, "workers").via.array.ptr[0];
    const msgpack::object& running = at(worker, "running");
    REQUIRE(running.via.array.size == 2);
    CHECK(at(running.via.array.ptr[0], "first").as<int>() == 0);
    CHECK(at(running.via.array.ptr[0], "count").as<int>() == 2);
    CHECK(at(running.via.array.ptr[0], "job").as<int>() == 7);
    CHECK(at(running.via.array.ptr[0], "function").as<std::string>() == "m.f");
    CHECK(at(running.via.array.ptr[0], "elapsed_ms").as<int>() == 50);
    CHECK(at(running.via.array.ptr[1], "first").as<int>() == 2);
    const msgpack::object& job = at(s, "jobs").via.array.ptr[0];
    CHECK(at(job, "owner").as<std::string>() == "alice.key");
    CHECK(at(job, "items_open").as<int>() == 4);
    CHECK(at(job, "items_done").as<int>() == 0);
  }

  h.result("W1", tasks[0].task_id, 2);  // 5 µs of run time
  // A RESULT from a peer that is not a worker: refused, and counted by reason.
  h.deliver("X", wire::Result{99, 1}, nullptr);
  h.drain();
  const std::string status = h.core.status_payload(h.now);
  const auto handle = msgpack::unpack(status.data(), status.size());
  const msgpack::object& s = handle.get();
  const msgpack::object& f = at(at(s, "counters"), "m.f");
  CHECK(at(f, "finished").as<int>() == 2);
  CHECK(at(f, "tasks").as<int>() == 1);
  CHECK(at(f, "retried").as<int>() == 0);
  CHECK(at(at(s, "refused"), "bad_message").as<int>() == 1);  // a RESULT without its payload
  const msgpack::object& recent = at(s, "recent");
  REQUIRE(recent.via.array.size == 1);
  CHECK(recent.via.array.ptr[0].via.array.ptr[2].as<std::string>() == "W1");
  CHECK(recent.via.array.ptr[0].via.array.ptr[6].as<int>() == 0);  // first item
  const msgpack::object& job = at(s, "jobs").via.array.ptr[0];
  CHECK(at(job, "items_done").as<int>() == 2);
  CHECK(at(job, "items_open").as<int>() == 2);

  // The same snapshot as metrics: the histogram's +Inf bucket holds the one task.
  const std::string metrics = broker::status_metrics(status);
  CHECK(metrics.find("seppo_items_finished_total{function=\"m.f\"} 2\n") != std::string::npos);
  CHECK(metrics.find("seppo_task_run_seconds_bucket{function=\"m.f\",le=\"0.001\"} 1\n") !=
        std::string::npos);
  CHECK(metrics.find("seppo_task_run_seconds_bucket{function=\"m.f\",le=\"+Inf\"} 1\n") !=
        std::string::npos);
  CHECK(metrics.find("seppo_messages_refused_total{reason=\"bad_message\"} 1\n") !=
        std::string::npos);
  CHECK(broker::status_json(status).find("\"owner\":\"alice.key\"") != std::string::npos);
}

TEST_CASE("items a function failed (RESULT's items_failed) count per job, function and metrics") {
  Harness h;
  h.core.stats().record_tasks(true);
  h.deliver("W1", wire::Ready{"W1", "host", 1, 1, {"m.f"}, "0.1.0-7-gfeed"});
  h.deliver("W2", wire::Ready{"W2", "host", 2, 1, {"m.f"}});  // an older worker: no version
  h.submit("C1", 7, "m.f", 0, items(1, 2, 3), 3);
  h.submit("C1", 7, "m.f", 3, items(4), 1);
  const auto out = h.drain();
  auto w1 = h.sent_to<wire::Task>(out, "W1");
  auto w2 = h.sent_to<wire::Task>(out, "W2");
  REQUIRE(w1.size() == 1);
  REQUIRE(w2.size() == 1);
  const std::string three = ok_results(3);  // the count is the worker's word, not re-read
  h.deliver("W1", wire::Result{w1[0].task_id, 5, 2}, &three);
  const std::string one = ok_results(1);
  h.deliver("W2", wire::Result{w2[0].task_id, 5, 9}, &one);  // more than the task: at most 1
  h.drain();
  const std::string status = h.core.status_payload(h.now);
  const auto handle = msgpack::unpack(status.data(), status.size());
  const msgpack::object& s = handle.get();
  const msgpack::object& f = at(at(s, "counters"), "m.f");
  CHECK(at(f, "finished").as<int>() == 4);
  CHECK(at(at(f, "failed"), "error").as<int>() == 3);
  const msgpack::object& job = at(s, "jobs").via.array.ptr[0];
  CHECK(at(job, "items_done").as<int>() == 4);
  CHECK(at(job, "items_failed").as<int>() == 3);
  const msgpack::object& recent = at(s, "recent");
  REQUIRE(recent.via.array.size == 2);
  CHECK_FALSE(recent.via.array.ptr[0].via.array.ptr[8].as<bool>());  // drawn red
  const msgpack::object& workers = at(s, "workers");
  REQUIRE(workers.via.array.size == 2);
  for (std::uint32_t i = 0; i < 2; ++i) {
    const msgpack::object& w = workers.via.array.ptr[i];
    CHECK(at(w, "version").as<std::string>() ==
          (at(w, "name").as<std::string>() == "W1" ? "0.1.0-7-gfeed" : ""));
  }
  const std::string metrics = broker::status_metrics(status);
  CHECK(metrics.find("seppo_items_failed_total{function=\"m.f\",reason=\"error\"} 3\n") !=
        std::string::npos);
  CHECK(metrics.find("seppo_worker_versions{version=\"0.1.0-7-gfeed\"} 1\n") != std::string::npos);
  CHECK(metrics.find("seppo_worker_versions{version=\"unknown\"} 1\n") != std::string::npos);
  CHECK(broker::status_json(status).find("\"version\":\"0.1.0-7-gfeed\"") != std::string::npos);
}

TEST_CASE("a READY whose version is longer than 256 bytes is refused") {
  Harness h;
  h.deliver("W1", wire::Ready{"W1", "host", 1, 1, {"m.f"}, std::string(257, 'v')});
  const auto out = h.drain();
  REQUIRE(out.size() == 1);
  REQUIRE(std::holds_alternative<wire::Error>(out[0].message));
  CHECK(std::get<wire::Error>(out[0].message).code == wire::Code::BadMessage);
}

TEST_CASE("the task stream is kept only when asked (seppo-broker --http)") {
  Harness h;
  h.ready("W1", {"m.f"});
  h.submit("C1", 1, "m.f", 0, items(1), 1);
  auto tasks = h.sent_to<wire::Task>(h.drain(), "W1");
  REQUIRE(tasks.size() == 1);
  h.result("W1", tasks[0].task_id, 1);
  const std::string status = h.core.status_payload(h.now);
  CHECK(status.find("recent") == std::string::npos);
  CHECK(status.find("counters") != std::string::npos);
}

TEST_CASE("metrics label values are escaped; a function name cannot break the text format") {
  Harness h;
  h.ready("W1", {"m.\"odd\\\nname"});
  const std::string metrics = broker::status_metrics(h.core.status_payload(h.now));
  CHECK(metrics.find("function=\"m.\\\"odd\\\\\\nname\"") != std::string::npos);
}

TEST_CASE("--http takes loopback and numeric addresses; others are flagged") {
  CHECK(broker::parse_http_address("127.0.0.1:9090").loopback);
  CHECK(broker::parse_http_address("localhost:0").host == "127.0.0.1");
  CHECK(broker::parse_http_address("[::1]:80").loopback);
  CHECK(broker::parse_http_address("[::1]:80").text() == "[::1]:80");
  CHECK_FALSE(broker::parse_http_address("0.0.0.0:9090").loopback);
  CHECK_FALSE(broker::parse_http_address("10.1.2.3:9090").loopback);
  CHECK_THROWS_AS(broker::parse_http_address("head:9090"), seppo::Error);
  CHECK_THROWS_AS(broker::parse_http_address("127.0.0.1"), seppo::Error);
  CHECK_THROWS_AS(broker::parse_http_address("127.0.0.1:99999"), seppo::Error);
}

TEST_CASE("a stray byte in a peer's name leaves the JSON and the metrics valid UTF-8") {
  Harness h;
  h.ready("W1", {"m.\xff"});
  const std::string status = h.core.status_payload(h.now);
  CHECK(broker::status_json(status).find("\"m.\xef\xbf\xbd\"") != std::string::npos);
  CHECK(broker::status_json(status).find('\xff') == std::string::npos);
  CHECK(broker::status_metrics(status).find("function=\"m.\xef\xbf\xbd\"") != std::string::npos);
}

TEST_CASE("surrogates, overlong forms and code points past U+10FFFF are not passed as UTF-8") {
  Harness h;
  // ED A0 80 (a surrogate), E0 80 80 (overlong), F4 90 80 80 (past U+10FFFF): each byte
  // replaced; E2 82 AC (the euro sign) kept.
  h.ready("W1", {"m.\xed\xa0\x80.\xe0\x80\x80.\xf4\x90\x80\x80.\xe2\x82\xac"});
  const std::string json = broker::status_json(h.core.status_payload(h.now));
  CHECK(json.find("\xed\xa0") == std::string::npos);
  CHECK(json.find("\xe0\x80") == std::string::npos);
  CHECK(json.find("\xf4\x90") == std::string::npos);
  CHECK(json.find("\xe2\x82\xac") != std::string::npos);
}
