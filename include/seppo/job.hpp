// Client::submit: a map running in the background, with a handle to wait for it, take its
// results or cancel it. See docs/client.md.
//
//   seppo::Job<std::int64_t> job = client.submit<std::int64_t>("example_module.square", inputs);
//   ...                               // the calling thread is free meanwhile
//   std::vector<std::int64_t> squares = job.get();
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <exception>
#include <iterator>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "seppo/error.hpp"
#include "seppo/export.hpp"
#include "seppo/item.hpp"
#include "seppo/result.hpp"
#include "seppo/stream.hpp"  // detail::Source, make_source, failure_of, value_from, Engine

namespace seppo {

class Client;  // seppo/client.hpp, which includes this header: a job owns a Client of its own

namespace detail {

// The thread running one job on a Client of its own (libclient/job.cpp).
class SEPPO_API JobThread {
 public:
  // Starts the thread; `next` and `sink` are called on it, and nowhere else.
  JobThread(Client&& client, std::string function, Engine::Next next, Engine::Sink sink);
  // Cancels the job if it still runs, and waits for the thread.
  ~JobThread();
  JobThread(const JobThread&) = delete;
  JobThread& operator=(const JobThread&) = delete;

  // Stops the job within a moment; the broker drops its queued tasks.
  void cancel();
  // True when the job has ended (finished, failed or cancelled).
  bool wait_for(std::chrono::milliseconds timeout);
  void wait();
  // After the end: throws what ended the job early, CancelledError after cancel().
  void rethrow_failure() const;

 private:
  struct SEPPO_HIDDEN Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace detail

// A job started by Client::submit, running on its own thread and connection. Its results
// are kept until taken; dropping the handle cancels the job. get() and results() may be
// called once (together: once in all), like std::future::get.
template <class R>
class Job {
  struct Storage {
    std::string function;
    std::unique_ptr<detail::Source> source;
    std::vector<std::optional<R>> values;
    std::map<std::uint64_t, std::exception_ptr> failures;  // RemoteError or TypeError
    std::atomic<std::uint64_t> completed{0};
    bool taken = false;

    bool accept(const Item& item) {
      if (values.size() <= item.index) values.resize(item.index + 1);
      if (item.error != nullptr) {
        failures.emplace(item.index, detail::failure_of(function, item));
      } else {
        try {
          values[item.index].emplace(detail::value_from<R>(function, item));
        } catch (const Error&) {
          failures.emplace(item.index, std::current_exception());
        }
      }
      completed.fetch_add(1, std::memory_order_relaxed);
      return true;
    }
  };

 public:
  // The range is owned by the job (copied from an lvalue, moved from an rvalue): the job's
  // thread reads it. Pass std::views::all(range) to share one that outlives the job.
  template <class Range>
  Job(Client&& client, std::string_view function, Range&& inputs)
      : storage_(std::make_unique<Storage>()) {
    storage_->function = std::string(function);
    if constexpr (requires { std::size(inputs); }) storage_->values.reserve(std::size(inputs));
    storage_->source = detail::make_source(std::decay_t<Range>(std::forward<Range>(inputs)));
    Storage* s = storage_.get();
    thread_ = std::make_unique<detail::JobThread>(
        std::move(client), s->function, [s](Packer& p) { return s->source->next(p); },
        [s](const Item& item) { return s->accept(item); });
  }
  Job(Job&&) noexcept = default;
  Job& operator=(Job&& other) noexcept {
    if (this != &other) {
      thread_.reset();  // cancel and join before the storage it writes goes
      storage_ = std::move(other.storage_);
      thread_ = std::move(other.thread_);
    }
    return *this;
  }
  ~Job() = default;  // thread_ goes first: cancels and joins

  // Every result in input order. Throws the failed item with the lowest index as RemoteError
  // (the job ran every item: cancel() to stop early), what ended the job (ConnectionError,
  // UnknownFunctionError, RefusedError, an exception of the input range), CancelledError,
  // or TypeError.
  std::vector<R> get() {
    take();
    if (!storage_->failures.empty()) std::rethrow_exception(storage_->failures.begin()->second);
    std::vector<R> out;
    out.reserve(storage_->values.size());
    for (auto& value : storage_->values) out.push_back(std::move(*value));
    return out;
  }

  // Every item's value or error, in input order; throws like get() except for RemoteError.
  std::vector<Result<R>> results() {
    take();
    std::vector<Result<R>> out;
    out.reserve(storage_->values.size());
    for (std::uint64_t i = 0; i < storage_->values.size(); ++i) {
      if (storage_->values[i].has_value()) {
        out.emplace_back(std::move(*storage_->values[i]));
      } else {
        out.push_back(detail::failed_outcome<Result<R>>(storage_->failures.at(i)));
      }
    }
    return out;
  }

  // True when the job has ended: finished, failed or cancelled.
  template <class Rep, class Period>
  bool wait_for(std::chrono::duration<Rep, Period> timeout) {
    return thread_->wait_for(std::chrono::ceil<std::chrono::milliseconds>(timeout));
  }
  void wait() { thread_->wait(); }
  bool done() { return thread_->wait_for(std::chrono::milliseconds(0)); }

  // Stops the job: its thread ends within a moment and tells the broker, which drops the
  // tasks still queued (workers finish the ones they run). get() then throws CancelledError,
  // unless the job had already finished. Idempotent.
  void cancel() { thread_->cancel(); }

  // Items that have completed (succeeded or failed) so far: for progress reports.
  std::uint64_t completed() const { return storage_->completed.load(std::memory_order_relaxed); }

 private:
  void take() {
    thread_->wait();
    thread_->rethrow_failure();
    if (storage_->taken) throw Error("the results of this seppo::Job were already taken");
    storage_->taken = true;
  }

  std::unique_ptr<Storage> storage_;
  std::unique_ptr<detail::JobThread> thread_;  // after storage_: destroyed (joined) first
};

}  // namespace seppo
