// Lazy, pull-driven maps: Client::imap (results in input order) and Client::imap_unordered
// (results as they complete), over any input range, with bounded memory. See docs/client.md.
//
//   std::int64_t sum = 0;
//   for (std::int64_t y : client.imap<std::int64_t>("example_module.square",
//                                                   std::views::iota(0, 10'000'000)))
//     sum += y;
//
// The stream runs on the caller's thread: inputs are read, chunks sent and results received
// only while the caller is in begin() or ++it. Leaving the loop early (break, an exception)
// destroys the stream, which cancels the job at the broker.
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <exception>
#include <functional>
#include <iterator>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>

#include "seppo/convert.hpp"
#include "seppo/error.hpp"
#include "seppo/export.hpp"
#include "seppo/item.hpp"
#include "seppo/result.hpp"

namespace seppo {

class Client;  // seppo/client.hpp, which includes this header: a stream refers to its Client

// One result of an unordered stream: the input's position (from 0) and its outcome.
template <class T>
struct Indexed {
  std::uint64_t index = 0;
  T value;
};

namespace detail {

// Runs one of the engine's calls for a stream: an error there ends the job, so the stream ends
// too (what is left is lost with the job) and the error goes to the consumer.
template <class State, class Call>
auto ending_on_error(State& state, Call call) {
  try {
    return call();
  } catch (...) {
    state.at_end = true;
    state.engine.reset();
    throw;
  }
}

template <class T>
struct is_result : std::false_type {};
template <class R>
struct is_result<Result<R>> : std::true_type {};

// What a stream of T converts each result to: T itself, or R for T = Result<R>.
template <class T>
struct value_of {
  using type = T;
};
template <class R>
struct value_of<Result<R>> {
  using type = R;
};

// The caller's inputs, packed one at a time on demand.
class SEPPO_API Source {
 public:
  virtual ~Source() = default;
  virtual bool next(Packer& packer) = 0;
};

// Range is a reference type for an lvalue argument (the range must outlive the stream) and a
// value type for an rvalue, which is then moved in. Heap-allocated and never moved, so the
// iterators into an owned range stay valid.
template <class Range>
class RangeSource final : public Source {
 public:
  explicit RangeSource(Range&& range)
      : range_(std::forward<Range>(range)), it_(std::begin(range_)), end_(std::end(range_)) {}
  RangeSource(const RangeSource&) = delete;
  RangeSource& operator=(const RangeSource&) = delete;

  bool next(Packer& packer) override {
    if (it_ == end_) return false;
    packer.pack(*it_);
    ++it_;
    return true;
  }

 private:
  using Stored = std::conditional_t<std::is_lvalue_reference_v<Range>, Range, std::decay_t<Range>>;
  Stored range_;
  decltype(std::begin(std::declval<Stored&>())) it_;
  decltype(std::end(std::declval<Stored&>())) end_;
};

template <class Range>
std::unique_ptr<Source> make_source(Range&& range) {
  return std::make_unique<RangeSource<Range>>(std::forward<Range>(range));
}

// An item's value as R, or the exception to raise at its position (RemoteError, TypeError).
inline std::exception_ptr failure_of(const std::string& function, const Item& item) {
  return std::make_exception_ptr(remote_error(function, item));
}
template <class R>
R value_from(const std::string& function, const Item& item) {
  return convert<R>(*item.value,
                    [&] { return function + ": result of item " + std::to_string(item.index); });
}

// What the consumer receives for a failed item: the Result, or the exception thrown.
template <class T>
T failed_outcome(const std::exception_ptr& failure) {
  if constexpr (is_result<T>::value) {
    try {
      std::rethrow_exception(failure);
    } catch (const RemoteError& e) {
      return T(e);
    }
  } else {
    std::rethrow_exception(failure);
  }
}

// Wakes an Engine waiting in step() (libclient/client.cpp): wake() may be called from another
// thread or from a signal handler (it is async-signal-safe). The step waiting then, or else the
// next one, returns without waiting for the broker, and takes the wake: later steps wait again
// until the next wake(). Throws seppo::Error when the system has no pipe to spare.
class SEPPO_API Waker {
 public:
  Waker();
  ~Waker();
  Waker(const Waker&) = delete;
  Waker& operator=(const Waker&) = delete;

  void wake() noexcept;

 private:
  friend class Engine;
  struct SEPPO_HIDDEN Impl;  // libclient/client.cpp
  std::unique_ptr<Impl> impl_;
};

// One job on a Client, stepped by its consumer (libclient/client.cpp).
class SEPPO_API Engine {
 public:
  using Next = std::function<bool(Packer&)>;
  using Sink = std::function<bool(const Item&)>;
  using BlockSink = std::function<bool(const Block&)>;
  // Packs several inputs a call, for inputs cheaper to pack in a loop than one call each (a
  // Python range): appends up to `max_items` packed inputs to packer.buffer(), stopping once it
  // holds `max_bytes` or more, as a Next would be asked for no more then; returns how many, at
  // least one unless the input ended, and sets `ended` when the input has no more. Fewer than
  // `max_items` without `ended` must mean `max_bytes` was reached (chunk sizes learn from it).
  using Fill = std::function<std::uint32_t(Packer& packer, std::uint32_t max_items,
                                           std::size_t max_bytes, bool& ended)>;

  // With `hold`, a chunk keeps its place in the client's window (ClientOptions::window and
  // max_inflight_bytes) until consumed() was called for each of its items, so results waiting
  // for a slow consumer bound what is submitted. Throws seppo::Error when the client already
  // runs a job.
  Engine(Client& client, std::string function, Next next, Sink sink, bool hold);
  // The same, but a chunk's answer whose items none was handed over yet goes to `blocks`
  // whole, unread (Block); duplicates, failed ranges and partly answered ranges still go to
  // `sink` item by item.
  Engine(Client& client, std::string function, Next next, Sink sink, BlockSink blocks, bool hold);
  // The same, packing inputs with `fill`.
  Engine(Client& client, std::string function, Fill fill, Sink sink, BlockSink blocks, bool hold);
  // Sends DONE: the broker forgets the job, finished or not, and drops its queued tasks.
  ~Engine();
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  // Submits what the window allows, waits for the broker for about half a heartbeat at most
  // (less when `waker` is woken), and hands what arrived to the sink. False once every item
  // was handed over (or the sink returned false); then call it no more. Throws
  // ConnectionError, UnknownFunctionError, RefusedError, and what the input range throws.
  bool step();
  bool step(Waker& waker);

  // The consumer took item `index`. Also keeps heartbeats and submissions going while the
  // consumer works through results already here, so it may call the sink.
  void consumed(std::uint64_t index);
  // The consumer took items [first, first + count), which lie in one Block.
  void consumed(std::uint64_t first, std::uint64_t count);

  // Each item of `block`, in order, as a sink would have received it (pointers valid for the
  // call): its value, or its error (an entry that failed, or every item of an unreadable
  // payload, as the engine itself reads it).
  static void each_item(const Block& block, const std::function<void(const Item&)>& item);

 private:
  struct SEPPO_HIDDEN Impl;  // libclient/client.cpp
  std::unique_ptr<Impl> impl_;
};

}  // namespace detail

namespace detail {

// Starts a stream's job: inputs from its source, every item to its accept().
template <class State>
void start_engine(State& state, Client& client) {
  state.engine.emplace(
      client, state.function, [&state](Packer& p) { return state.source->next(p); },
      [&state](const Item& item) {
        state.accept(item);
        return true;
      },
      true);
}

template <class T>
struct OrderedState {
  using R = typename value_of<T>::type;
  using value_type = T;

  std::string function;
  std::unique_ptr<Source> source;
  std::uint64_t base = 0;                                // index of the next item to yield
  std::deque<std::optional<R>> slots;                    // results of items base, base+1, ...
  std::map<std::uint64_t, std::exception_ptr> failures;  // by index, all >= base
  std::optional<T> current;
  bool started = false;
  bool finished = false;  // the engine has handed over every item
  bool at_end = false;
  // Last: destroyed first, so the sink never sees freed buffers.
  std::optional<Engine> engine;

  OrderedState(Client& client, std::string name, std::unique_ptr<Source> inputs)
      : function(std::move(name)), source(std::move(inputs)) {
    start_engine(*this, client);
  }

  void accept(const Item& item) {
    const std::uint64_t offset = item.index - base;
    if (slots.size() <= offset) slots.resize(offset + 1);
    if (item.error != nullptr) {
      failures.emplace(item.index, failure_of(function, item));
      return;
    }
    try {
      slots[offset].emplace(value_from<R>(function, item));
    } catch (const Error&) {
      failures.emplace(item.index, std::current_exception());
    }
  }

  void pop() {
    if (!slots.empty()) slots.pop_front();
    ++base;
    // After: it may deliver more, placed relative to base.
    ending_on_error(*this, [&] { engine->consumed(base - 1); });
  }

  // Makes `current` the next item, or sets at_end; throws a failed item's exception at its
  // position (the item is then passed: incrementing again goes on with the next one).
  void advance() {
    current.reset();
    while (!at_end) {
      if (!failures.empty() && failures.begin()->first == base) {
        const std::exception_ptr failure = failures.begin()->second;
        failures.erase(failures.begin());
        pop();
        current.emplace(failed_outcome<T>(failure));
        return;
      }
      if (!slots.empty() && slots.front().has_value()) {
        current.emplace(std::move(*slots.front()));
        pop();
        return;
      }
      if (finished) {
        at_end = true;
        engine.reset();
        return;
      }
      finished = !ending_on_error(*this, [&] { return engine->step(); });
    }
  }
};

template <class T>
struct UnorderedState {
  using R = typename value_of<T>::type;
  using value_type = Indexed<T>;

  struct Failed {
    std::uint64_t index;
    std::exception_ptr failure;
  };

  std::string function;
  std::unique_ptr<Source> source;
  std::deque<Indexed<R>> ready;  // apart from failures: no per-item room for the rare error
  std::deque<Failed> failed;
  std::optional<Indexed<T>> current;
  bool started = false;
  bool finished = false;
  bool at_end = false;
  std::optional<Engine> engine;

  UnorderedState(Client& client, std::string name, std::unique_ptr<Source> inputs)
      : function(std::move(name)), source(std::move(inputs)) {
    start_engine(*this, client);
  }

  void accept(const Item& item) {
    if (item.error != nullptr) {
      failed.push_back(Failed{item.index, failure_of(function, item)});
      return;
    }
    try {
      ready.push_back(Indexed<R>{item.index, value_from<R>(function, item)});
    } catch (const Error&) {
      failed.push_back(Failed{item.index, std::current_exception()});
    }
  }

  void advance() {
    current.reset();
    while (!at_end) {
      if (!failed.empty()) {
        const Failed next = std::move(failed.front());
        failed.pop_front();
        ending_on_error(*this, [&] { engine->consumed(next.index); });
        current.emplace(Indexed<T>{next.index, failed_outcome<T>(next.failure)});
        return;
      }
      if (!ready.empty()) {
        const std::uint64_t index = ready.front().index;
        current.emplace(Indexed<T>{index, T(std::move(ready.front().value))});
        ready.pop_front();
        ending_on_error(*this, [&] { engine->consumed(index); });
        return;
      }
      if (finished) {
        at_end = true;
        engine.reset();
        return;
      }
      finished = !ending_on_error(*this, [&] { return engine->step(); });
    }
  }
};

// A stream's shape, whatever its order: an input range over the values State::advance() makes
// current, begun once; moving it is cheap, copying impossible.
template <class State>
class PullRange {
  using V = typename State::value_type;

 public:
  class iterator {
   public:
    using iterator_concept = std::input_iterator_tag;
    using iterator_category = std::input_iterator_tag;
    using value_type = V;
    using difference_type = std::ptrdiff_t;
    using reference = V&;
    using pointer = V*;

    iterator() = default;
    V& operator*() const { return *state_->current; }
    V* operator->() const { return &*state_->current; }
    iterator& operator++() {
      state_->advance();
      return *this;
    }
    void operator++(int) { ++*this; }
    friend bool operator==(const iterator& it, std::default_sentinel_t) {
      return it.state_ == nullptr || it.state_->at_end;
    }

   private:
    friend class PullRange;
    explicit iterator(State* state) : state_(state) {}
    State* state_ = nullptr;
  };

  template <class Range>
  PullRange(Client& client, std::string_view function, Range&& inputs)
      : state_(std::make_unique<State>(client, std::string(function),
                                       make_source(std::forward<Range>(inputs)))) {}

  // The first call starts consuming results (and may throw the first item's error); later
  // calls return an iterator at the current position.
  iterator begin() {
    if (!state_->started) {
      state_->started = true;
      state_->advance();
    }
    return iterator(state_.get());
  }
  std::default_sentinel_t end() const noexcept { return {}; }

 private:
  std::unique_ptr<State> state_;
};

}  // namespace detail

// The results of Client::imap (T = R) or imap_results (T = Result<R>), in input order.
template <class T>
class Stream : public detail::PullRange<detail::OrderedState<T>> {
 public:
  using detail::PullRange<detail::OrderedState<T>>::PullRange;
};

// The results of Client::imap_unordered (T = R) or imap_unordered_results (T = Result<R>),
// each with its input's index, in the order they complete.
template <class T>
class UnorderedStream : public detail::PullRange<detail::UnorderedState<T>> {
 public:
  using detail::PullRange<detail::UnorderedState<T>>::PullRange;
};

}  // namespace seppo
