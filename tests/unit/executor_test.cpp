// The executor thread on its own (worker/executor.hpp): the order and thread of its callbacks,
// and what it skips. Bounded waits only: each test waits for its callbacks with a deadline.
#include <doctest/doctest.h>

#include <chrono>
#include <condition_variable>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "worker/executor.hpp"

using namespace seppo;
using namespace seppo::worker;
using namespace std::chrono_literals;

namespace {

// Echoes its input; "fail" fails the chunk; "throw" throws; "wait" blocks until the gate opens.
struct Functions {
  std::mutex mutex;
  std::condition_variable changed;
  bool open = true;
  int entered = 0;
  std::vector<std::string> ran;
  std::vector<Function> list;

  Functions() {
    Function echo;
    echo.name = "m.echo";
    echo.call = [this](const char* input, std::size_t size, seppo_sink* out) {
      const std::string text(input, size);
      std::unique_lock<std::mutex> lock(mutex);
      ++entered;
      changed.notify_all();
      changed.wait_for(lock, 10s, [&] { return open || text != "wait"; });
      ran.push_back(text);
      if (text == "throw") throw std::runtime_error("no good");
      out->write(out->context, input, size);
      return text == "fail" ? 1 : 0;
    };
    list.push_back(echo);
  }
};

struct Collected {
  std::mutex mutex;
  std::condition_variable changed;
  std::vector<Executor::Outcome> outcomes;
  std::vector<std::thread::id> threads;

  Executor::Finished callback() {
    return [this](Executor::Outcome&& outcome) {
      std::lock_guard<std::mutex> lock(mutex);
      outcomes.push_back(std::move(outcome));
      threads.push_back(std::this_thread::get_id());
      changed.notify_all();
    };
  }
  bool wait_for(std::size_t count) {
    std::unique_lock<std::mutex> lock(mutex);
    return changed.wait_for(lock, 10s, [&] { return outcomes.size() >= count; });
  }
};

}  // namespace

TEST_CASE("the executor reports every chunk in submission order, on its own thread") {
  Functions functions;
  Collected collected;
  Executor executor(functions.list, collected.callback());
  executor.submit(1, 0, Bytes(std::string("a")));
  executor.submit(2, 0, Bytes(std::string("fail")));
  executor.submit(3, 0, Bytes(std::string("c")));
  REQUIRE(collected.wait_for(3));
  std::lock_guard<std::mutex> lock(collected.mutex);
  CHECK(collected.outcomes[0].sequence == 1);
  CHECK(collected.outcomes[0].status == Executor::Status::Ok);
  CHECK(collected.outcomes[0].output.str() == "a");
  CHECK(collected.outcomes[1].sequence == 2);
  CHECK(collected.outcomes[1].status == Executor::Status::Failed);
  CHECK(collected.outcomes[2].sequence == 3);
  CHECK(collected.outcomes[2].output.str() == "c");
  CHECK(collected.threads[0] != std::this_thread::get_id());
  CHECK(collected.threads[0] == collected.threads[2]);
}

TEST_CASE("chunks cancelled or skipped before they start are reported Skipped, not run") {
  Functions functions;
  functions.open = false;
  Collected collected;
  Executor executor(functions.list, collected.callback());
  executor.submit(1, 0, Bytes(std::string("wait")));
  executor.submit(2, 0, Bytes(std::string("b")));
  executor.submit(3, 0, Bytes(std::string("c")));
  executor.submit(4, 0, Bytes(std::string("d")));
  {
    std::unique_lock<std::mutex> lock(functions.mutex);  // the first chunk runs
    REQUIRE(functions.changed.wait_for(lock, 10s, [&] { return functions.entered == 1; }));
  }
  CHECK_FALSE(executor.cancel(2, false));
  executor.skip_through(3);
  {
    std::lock_guard<std::mutex> lock(functions.mutex);
    functions.open = true;
  }
  functions.changed.notify_all();
  REQUIRE(collected.wait_for(4));
  std::lock_guard<std::mutex> lock(collected.mutex);
  CHECK(collected.outcomes[1].status == Executor::Status::Skipped);
  CHECK(collected.outcomes[2].status == Executor::Status::Skipped);
  CHECK(collected.outcomes[3].status == Executor::Status::Ok);
  std::lock_guard<std::mutex> ran(functions.mutex);
  CHECK(functions.ran == std::vector<std::string>{"wait", "d"});
}

TEST_CASE("the executor's callback may submit the next chunk itself") {
  Functions functions;
  Collected collected;
  Executor* self = nullptr;
  Executor executor(functions.list, [&](Executor::Outcome&& outcome) {
    const std::uint64_t next = outcome.sequence + 1;
    collected.callback()(std::move(outcome));
    if (next <= 3) self->submit(next, 0, Bytes(std::to_string(next)));
  });
  self = &executor;
  executor.submit(1, 0, Bytes(std::string("1")));
  REQUIRE(collected.wait_for(3));
  std::lock_guard<std::mutex> lock(collected.mutex);
  CHECK(collected.outcomes[2].output.str() == "3");
}

// Issue 28: a lone chunk runs on the caller's thread (the socket loop's); once it has run for
// stand_in_after the executor's idle thread is called to stand in for the caller, and what is
// submitted meanwhile waits for the chunk. A running chunk is cancelled as a queued one is.
TEST_CASE("run_here runs a chunk on the caller's thread; a long one calls stand_in on the other") {
  Functions functions;
  functions.open = false;
  Collected collected;
  Executor* self = nullptr;
  std::thread::id stood_in;
  bool cannot_stop = false;
  Executor executor(
      functions.list, collected.callback(),
      [&] {
        stood_in = std::this_thread::get_id();
        cannot_stop = self->cancel(1, true);  // a module's function: the process must go
        self->submit(2, 0, Bytes(std::string("b")));
        {
          std::lock_guard<std::mutex> lock(functions.mutex);
          functions.open = true;
        }
        functions.changed.notify_all();
      },
      1ms);
  self = &executor;
  const std::optional<Executor::Outcome> here = executor.run_here(1, 0, Bytes(std::string("wait")));
  REQUIRE(here);
  CHECK(here->sequence == 1);
  CHECK(here->status == Executor::Status::Ok);
  CHECK(here->output.str() == "wait");
  CHECK(cannot_stop);
  REQUIRE(collected.wait_for(1));
  std::lock_guard<std::mutex> lock(collected.mutex);
  CHECK(collected.outcomes[0].sequence == 2);
  CHECK(collected.threads[0] == stood_in);
  CHECK(stood_in != std::this_thread::get_id());
  std::lock_guard<std::mutex> ran(functions.mutex);
  CHECK(functions.ran == std::vector<std::string>{"wait", "b"});
}

TEST_CASE("run_here queues the chunk when the executor's thread runs one") {
  Functions functions;
  functions.open = false;
  Collected collected;
  Executor executor(functions.list, collected.callback());
  executor.submit(1, 0, Bytes(std::string("wait")));
  {
    std::unique_lock<std::mutex> lock(functions.mutex);
    REQUIRE(functions.changed.wait_for(lock, 10s, [&] { return functions.entered == 1; }));
  }
  CHECK_FALSE(executor.run_here(2, 0, Bytes(std::string("b"))));
  {
    std::lock_guard<std::mutex> lock(functions.mutex);
    functions.open = true;
  }
  functions.changed.notify_all();
  REQUIRE(collected.wait_for(2));
  std::lock_guard<std::mutex> lock(collected.mutex);
  CHECK(collected.outcomes[0].sequence == 1);
  CHECK(collected.outcomes[1].sequence == 2);
  CHECK(collected.outcomes[1].output.str() == "b");
}

// A function that throws fails its chunk with the exception's message, on the caller's thread
// (run_here) as on the executor's: before, run_here left the executor marked busy with the
// timer armed, and a throw on the executor's thread ended the process (std::terminate).
TEST_CASE("a function that throws fails its chunk; the executor goes on, run_here too") {
  Functions functions;
  Collected collected;
  int stood_in = 0;
  Executor executor(
      functions.list, collected.callback(), [&] { ++stood_in; }, 10s);
  const std::optional<Executor::Outcome> thrown =
      executor.run_here(1, 0, Bytes(std::string("throw")));
  REQUIRE(thrown);
  CHECK(thrown->status == Executor::Status::Failed);
  CHECK(thrown->output.str().find("no good") != std::string::npos);
  // Not left running: the next lone chunk runs here again, not queued behind a ghost.
  const std::optional<Executor::Outcome> next = executor.run_here(2, 0, Bytes(std::string("b")));
  REQUIRE(next);
  CHECK(next->status == Executor::Status::Ok);
  CHECK(next->output.str() == "b");
  executor.submit(3, 0, Bytes(std::string("throw")));
  executor.submit(4, 0, Bytes(std::string("d")));
  REQUIRE(collected.wait_for(2));
  std::lock_guard<std::mutex> lock(collected.mutex);
  CHECK(collected.outcomes[0].sequence == 3);
  CHECK(collected.outcomes[0].status == Executor::Status::Failed);
  CHECK(collected.outcomes[0].output.str().find("no good") != std::string::npos);
  CHECK(collected.outcomes[1].sequence == 4);
  CHECK(collected.outcomes[1].output.str() == "d");
  CHECK(stood_in == 0);
}
