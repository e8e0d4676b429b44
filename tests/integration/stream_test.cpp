// imap, imap_unordered and submit end to end: a real broker, real worker processes, loopback
// TCP, inputs read lazily, and cancellation seen in the broker's STATUS.
#include <doctest/doctest.h>

#include <chrono>
#include <numeric>
#include <optional>
#include <ranges>
#include <set>
#include <thread>

#include <seppo/seppo.hpp>

#include "tests/support/cluster.hpp"

using namespace seppo;
using namespace seppo::test;

namespace {

static_assert(std::ranges::input_range<Stream<int>>);
static_assert(std::ranges::input_range<UnorderedStream<Result<int>>>);

// example_module.square throws for this input: its square overflows int64.
constexpr std::int64_t kOverflows = 5'000'000'000;

// A single-pass generator: its iterators share one position, as a generator's do.
class Counter {
 public:
  explicit Counter(std::int64_t n) : n_(n) {}
  struct iterator {
    using value_type = std::int64_t;
    using difference_type = std::ptrdiff_t;
    Counter* c = nullptr;
    std::int64_t operator*() const { return c->at_; }
    iterator& operator++() {
      ++c->at_;
      return *this;
    }
    void operator++(int) { ++c->at_; }
    bool operator==(std::default_sentinel_t) const { return c->at_ == c->n_; }
  };
  iterator begin() { return iterator{this}; }
  std::default_sentinel_t end() { return {}; }

 private:
  std::int64_t n_;
  std::int64_t at_ = 0;
};

// The number of jobs the broker holds, from its STATUS; nullopt when it did not answer.
std::optional<std::size_t> job_count(const Cluster& cluster) {
  try {
    Client probe(cluster.endpoint(), cluster.client_options());
    const auto status = probe.status(2s);
    const msgpack::object& map = status.get();
    for (std::uint32_t i = 0; i < map.via.map.size; ++i) {
      const auto& kv = map.via.map.ptr[i];
      if (kv.key.type == msgpack::type::STR &&
          std::string_view(kv.key.via.str.ptr, kv.key.via.str.size) == "jobs") {
        return kv.val.via.array.size;
      }
    }
  } catch (const Error&) {
  }
  return std::nullopt;
}

// True once the broker holds no job and no queued task, and no worker runs one.
bool cluster_goes_idle(Cluster& cluster, std::chrono::milliseconds timeout = 10s) {
  return eventually(
      [&] {
        return job_count(cluster) == 0u && cluster.queued_count() == 0u &&
               cluster.busy_count() == 0u;
      },
      timeout);
}

// A sleep_ms job long enough to be cancelled while most of it is still queued.
std::vector<std::int64_t> slow_inputs() {
  return std::vector<std::int64_t>(400, 50);
}

ClientOptions one_per_chunk(const Cluster& cluster) {
  ClientOptions options = cluster.client_options();
  options.chunk_size = 1;
  return options;
}

}  // namespace

TEST_CASE("imap yields every result in input order, reading a lazy range only a window ahead") {
  Cluster cluster;
  cluster.add_worker(2);
  REQUIRE(cluster.wait_for_workers(2));
  ClientOptions options = cluster.client_options();
  options.chunk_size = 10;
  options.window = 4;
  Client client(cluster.endpoint(), options);
  std::int64_t read = 0;
  auto inputs = std::views::iota(std::int64_t{0}, std::int64_t{20000}) |
                std::views::transform([&read](std::int64_t x) {
                  ++read;
                  return x;
                });
  std::int64_t expected = 0;
  std::int64_t furthest_ahead = 0;
  for (std::int64_t y : client.imap<std::int64_t>("example_module.square", inputs)) {
    if (y != expected * expected) FAIL("item " << expected << " is " << y);
    furthest_ahead = std::max(furthest_ahead, read - expected);
    ++expected;
  }
  CHECK(expected == 20000);
  // At most the window's 4 chunks of 10 are read and not yet consumed, plus the one just taken.
  CHECK(furthest_ahead <= 41);
}

TEST_CASE("leaving an imap loop early cancels the job and the broker's queue empties") {
  Cluster cluster;
  cluster.add_worker(2);
  REQUIRE(cluster.wait_for_workers(2));
  ClientOptions options = one_per_chunk(cluster);
  options.window = 64;
  Client client(cluster.endpoint(), options);
  int taken = 0;
  for (std::int64_t ms :
       client.imap<std::int64_t>("example_module.sleep_ms", slow_inputs()) | std::views::take(3)) {
    CHECK(ms == 50);
    ++taken;
    if (taken == 1) CHECK(cluster.queued_count().value_or(0) > 10);
  }
  CHECK(taken == 3);
  CHECK(cluster_goes_idle(cluster));
  // The client is free again for another call.
  CHECK(client.map_parallel<std::int64_t>("example_module.square", std::vector<int>{3}) ==
        std::vector<std::int64_t>{9});
}

TEST_CASE("imap_unordered yields every index exactly once, from a single-pass generator") {
  Cluster cluster;
  cluster.add_worker(2);
  REQUIRE(cluster.wait_for_workers(2));
  Client client = cluster.client();
  std::set<std::uint64_t> seen;
  for (auto& [index, value] :
       client.imap_unordered<std::int64_t>("example_module.square", Counter(5000))) {
    CHECK(seen.insert(index).second);
    if (value != static_cast<std::int64_t>(index * index))
      FAIL("item " << index << " is " << value);
  }
  CHECK(seen.size() == 5000);
  CHECK(*seen.rbegin() == 4999);
}

TEST_CASE("a failed item makes imap throw its RemoteError at its position; imap_results goes on") {
  Cluster cluster;
  cluster.add_worker(2);
  REQUIRE(cluster.wait_for_workers(2));
  std::vector<std::int64_t> inputs(100);
  std::iota(inputs.begin(), inputs.end(), 0);
  inputs[37] = kOverflows;
  Client client = cluster.client();

  std::int64_t before = 0;
  try {
    for (std::int64_t y : client.imap<std::int64_t>("example_module.square", inputs)) {
      CHECK(y == before * before);
      ++before;
    }
    FAIL("no RemoteError");
  } catch (const RemoteError& e) {
    CHECK(e.index() == 37);
    CHECK(e.remote_message().find("overflows") != std::string::npos);
    CHECK(e.code().empty());
  }
  CHECK(before == 37);

  {
    // Incrementing past the failure goes on with the next item.
    auto stream = client.imap<std::int64_t>("example_module.square", inputs);
    auto it = stream.begin();
    for (int i = 0; i < 36; ++i) ++it;
    CHECK(*it == 36 * 36);
    CHECK_THROWS_AS(++it, RemoteError);
    ++it;
    CHECK(*it == 38 * 38);
  }

  std::size_t count = 0;
  for (const Result<std::int64_t>& r :
       client.imap_results<std::int64_t>("example_module.square", inputs)) {
    if (count == 37) {
      CHECK_FALSE(r.ok());
      CHECK(r.error().index() == 37);
    } else {
      CHECK(r.value() == inputs[count] * inputs[count]);
    }
    ++count;
  }
  CHECK(count == 100);

  std::size_t failed = 0;
  for (const auto& [index, r] :
       client.imap_unordered_results<std::int64_t>("example_module.square", inputs)) {
    if (!r.ok()) {
      CHECK(index == 37);
      ++failed;
    }
  }
  CHECK(failed == 1);
}

TEST_CASE("an imap consumer pausing longer than the broker's client expiry gets every result") {
  Cluster cluster;  // expiry: 100 ms x 3
  cluster.add_worker(2);
  REQUIRE(cluster.wait_for_workers(2));
  ClientOptions options = one_per_chunk(cluster);
  options.window = 8;
  Client client(cluster.endpoint(), options);
  std::vector<std::int64_t> inputs(40, 5);
  std::size_t count = 0;
  for (std::int64_t ms : client.imap<std::int64_t>("example_module.sleep_ms", inputs)) {
    CHECK(ms == 5);
    // Long enough for the broker to give the client up; its job is dropped and resubmitted.
    if (++count == 10) std::this_thread::sleep_for(800ms);
  }
  CHECK(count == 40);
  CHECK(cluster.broker().output().find("vanished") != std::string::npos);
}

TEST_CASE("a Client runs one stream at a time and says so") {
  Cluster cluster;
  cluster.add_worker(1);
  REQUIRE(cluster.wait_for_workers(1));
  Client client = cluster.client();
  auto first = client.imap<std::int64_t>("example_module.square", std::vector<int>{1, 2, 3});
  CHECK_THROWS_WITH_AS(
      client.map_parallel<std::int64_t>("example_module.square", std::vector<int>{1}),
      doctest::Contains("running a job already"), Error);
  CHECK(*first.begin() == 1);
}

TEST_CASE("submit runs the job in the background and get returns the results in order") {
  Cluster cluster;
  cluster.add_worker(2);
  REQUIRE(cluster.wait_for_workers(2));
  Client client = cluster.client();
  std::vector<std::int64_t> inputs(10000);
  std::iota(inputs.begin(), inputs.end(), -5000);
  Job<std::int64_t> job = client.submit<std::int64_t>("example_module.square", inputs);
  // The submitting Client is free meanwhile.
  CHECK(client.map_parallel<std::int64_t>("example_module.square", std::vector<int>{4}) ==
        std::vector<std::int64_t>{16});
  REQUIRE(job.wait_for(30s));
  CHECK(job.completed() == 10000);
  const auto out = job.get();
  REQUIRE(out.size() == inputs.size());
  for (std::size_t i = 0; i < inputs.size(); ++i) {
    if (out[i] != inputs[i] * inputs[i]) FAIL("item " << i << " is " << out[i]);
  }
  CHECK_THROWS_AS(job.get(), Error);  // taken once

  inputs[5] = kOverflows;
  auto failing = client.submit<std::int64_t>("example_module.square", std::move(inputs));
  const auto results = failing.results();
  REQUIRE(results.size() == 10000);
  CHECK_FALSE(results[5].ok());
  CHECK(results[6].value() == (6 - 5000) * (6 - 5000));
  auto again = client.submit<std::int64_t>("example_module.square",
                                           std::vector<std::int64_t>{1, kOverflows});
  CHECK_THROWS_AS(again.get(), RemoteError);
}

TEST_CASE("cancelling a submitted sleep_ms job frees the broker's queue and the workers go idle") {
  Cluster cluster;
  cluster.add_worker(2);
  REQUIRE(cluster.wait_for_workers(2));
  Client client(cluster.endpoint(), one_per_chunk(cluster));
  Job<std::int64_t> job = client.submit<std::int64_t>("example_module.sleep_ms", slow_inputs());
  REQUIRE(eventually([&] { return job.completed() >= 2; }));
  CHECK(cluster.queued_count().value_or(0) > 10);
  const auto asked = std::chrono::steady_clock::now();
  job.cancel();
  REQUIRE(job.wait_for(5s));
  CHECK(std::chrono::steady_clock::now() - asked < 1s);
  CHECK_THROWS_AS(job.get(), CancelledError);
  CHECK(job.completed() < 400);
  CHECK(cluster_goes_idle(cluster));
}

TEST_CASE("destroying a running Job cancels it") {
  Cluster cluster;
  cluster.add_worker(2);
  REQUIRE(cluster.wait_for_workers(2));
  Client client(cluster.endpoint(), one_per_chunk(cluster));
  {
    auto job = client.submit<std::int64_t>("example_module.sleep_ms", slow_inputs());
    REQUIRE(eventually([&] { return job.completed() >= 1; }));
    CHECK(cluster.queued_count().value_or(0) > 10);
  }
  CHECK(cluster_goes_idle(cluster));
}

TEST_CASE("a Job for a function no worker provides fails with UnknownFunctionError") {
  Cluster cluster;
  ClientOptions options = cluster.client_options();
  options.worker_wait = 200ms;
  Client client(cluster.endpoint(), options);
  auto job = client.submit<int>("no_such_module.f", std::vector<int>{1});
  CHECK_THROWS_AS(job.get(), UnknownFunctionError);
}

TEST_CASE("an exception from the input range reaches the caller of imap and of Job::get") {
  Cluster cluster;
  cluster.add_worker(1);
  REQUIRE(cluster.wait_for_workers(1));
  ClientOptions options = cluster.client_options();
  options.chunk_size = 10;
  options.window = 2;
  Client client(cluster.endpoint(), options);
  const auto inputs = std::views::iota(0, 1000) | std::views::transform([](int x) {
                        if (x == 500) throw std::runtime_error("input 500 is unreadable");
                        return x;
                      });
  std::int64_t taken = 0;
  CHECK_THROWS_WITH_AS(
      [&] {
        for (std::int64_t y : client.imap<std::int64_t>("example_module.square", inputs)) {
          CHECK(y == taken * taken);
          ++taken;
        }
      }(),
      "input 500 is unreadable", std::runtime_error);
  // The items before the unreadable one come first, as many as arrived before it was read (all
  // of them when one DELIVERS brought the last ones together); none after it exists.
  CHECK(taken <= 500);
  auto job = client.submit<std::int64_t>("example_module.square", inputs);
  CHECK_THROWS_WITH_AS(job.get(), "input 500 is unreadable", std::runtime_error);
  CHECK(cluster_goes_idle(cluster));
}
