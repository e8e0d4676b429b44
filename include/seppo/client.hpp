// The client library: map a named function over inputs on a seppo cluster.
//
//   seppo::Client client{"tcp://127.0.0.1:5555"};
//   std::vector<std::string> out =
//       client.map_parallel<std::string>("example_module.hello_world", std::vector<double>{1, 2,
//       3});
//
// Results come back in input order whichever worker finished first.
#pragma once

#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <functional>
#include <iterator>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

#include "seppo/msgpack.hpp"

#include "seppo/convert.hpp"
#include "seppo/error.hpp"
#include "seppo/item.hpp"

namespace seppo {
class Client;
template <class T>
class Stream;
template <class T>
class UnorderedStream;
template <class R>
class Job;
namespace detail {
class Engine;
struct ClientAccess;  // libclient/client_access.hpp: the library's own way in, not API
}  // namespace detail

// SEPPO_BROKER when set, otherwise ipc:///tmp/seppo-UID/broker (this user's alone).
SEPPO_API std::string default_endpoint();

namespace detail {
inline std::string environment(const char* name) {
  const char* value = std::getenv(name);
  return value != nullptr ? std::string(value) : std::string();
}
}  // namespace detail

struct ClientOptions {
  // A call fails with ConnectionError when the broker has been silent this long.
  std::chrono::milliseconds timeout{30000};
  // How long the broker waits for a worker providing the function before failing the call
  // with UnknownFunctionError. 0: fail at once if no worker serves it, unless workers that
  // did are only briefly away (the broker's --worker-grace).
  std::chrono::milliseconds worker_wait{0};
  // Items per chunk; 0 adapts it to the function's measured cost (see docs/design.md).
  std::size_t chunk_size = 0;
  // Chunks in flight at once; bounds the memory of client and broker whatever the input size.
  std::size_t window = 256;
  // Bytes of submitted chunks not yet answered; the other bound on memory.
  std::size_t max_inflight_bytes = 8u << 20;
  // Chunks are aimed at this much compute each when chunk_size is 0.
  std::chrono::microseconds target_chunk_time{10000};
  // Until the broker announces its own.
  std::chrono::milliseconds heartbeat{1000};
  // CurveZMQ (README.md, "Running on a network"): paths of this client's secret key file and
  // of the broker's public key file, as `seppo keygen` writes them. Both or neither; with them
  // all traffic is encrypted and the broker admits the client by its key. Empty by default;
  // from_env() sets them from SEPPO_CURVE_SECRET_KEY and SEPPO_CURVE_SERVER_KEY.
  std::string curve_secret_key_file;
  std::string curve_server_key_file;
  // Without keys, the client connects only to a broker on this machine (loopback or ipc://)
  // and throws seppo::Error otherwise; true allows any broker, in plaintext, unauthenticated.
  bool insecure = false;
  // Time limit per item; 0: none (the broker's --task-timeout, if any, applies, and caps this).
  // An item running longer ends as an item error with code "timeout", and the worker process
  // running it is replaced (docs/protocol.md §10.1).
  std::chrono::milliseconds item_timeout{0};
  // The largest message this client accepts from the broker (docs/client.md, "Limits"): a
  // broker that sends a larger frame is disconnected, and the call fails with ConnectionError.
  // 0: 256 MiB, the broker's default --max-message-bytes; set it to a broker's larger limit.
  std::uint64_t max_message_bytes = 0;

  // The defaults, with what the environment sets: the key files from SEPPO_CURVE_SECRET_KEY and
  // SEPPO_CURVE_SERVER_KEY. What a Client constructed without options uses.
  SEPPO_API static ClientOptions from_env();
};

// One item's outcome: its value, or the error its function raised.
template <class R>
class Result {
 public:
  Result(R value) : state_(std::move(value)) {}            // NOLINT: implicit on purpose
  Result(RemoteError error) : state_(std::move(error)) {}  // NOLINT
  bool ok() const noexcept { return state_.index() == 0; }
  explicit operator bool() const noexcept { return ok(); }
  // The value; throws the item's RemoteError if it failed.
  const R& value() const& {
    if (!ok()) throw std::get<1>(state_);
    return std::get<0>(state_);
  }
  R&& value() && {
    if (!ok()) throw std::get<1>(state_);
    return std::get<0>(std::move(state_));
  }
  const RemoteError& error() const { return std::get<1>(state_); }

 private:
  std::variant<R, RemoteError> state_;
};

class SEPPO_API Client {
 public:
  explicit Client(std::string endpoint = default_endpoint(),
                  ClientOptions options = ClientOptions::from_env());
  ~Client();
  Client(Client&&) noexcept;
  Client& operator=(Client&&) noexcept;

  const std::string& endpoint() const;
  const ClientOptions& options() const;

  // A new Client (connection) like this one, for a job on a thread of its own: same endpoint and
  // options (or `options`), and a local cluster's client still loads the function's module
  // before a job.
  Client sibling() const;
  Client sibling(ClientOptions options) const;

  // The broker's view of the cluster (workers, functions, jobs) as a msgpack map; the fields
  // are listed in docs/protocol.md under STATUS. Throws ConnectionError after `timeout`, or
  // at once when the broker refuses this client's key.
  msgpack::object_handle status(std::chrono::milliseconds timeout) {
    const std::string map = status_bytes(timeout);
    return unpack_untrusted(map.data(), map.size());
  }
  // The same, as the msgpack bytes the broker sent.
  std::string status_bytes(std::chrono::milliseconds timeout);

  // Calls `function` on every input and returns the results in input order. Throws
  // RemoteError for the first item that fails (the job is then cancelled), UnknownFunctionError,
  // ConnectionError, RefusedError (a worker's key, or an item over the broker's per-client
  // limit), or TypeError when a result is not convertible to R.
  template <class R, class Range>
  std::vector<R> map_parallel(std::string_view function, const Range& inputs) {
    std::vector<std::optional<R>> slots = collect<R>(function, inputs, true);
    std::vector<R> out;
    out.reserve(slots.size());
    for (auto& slot : slots) out.push_back(std::move(*slot));
    return out;
  }

  // Like map_parallel, but a failed item does not stop the others: every item's value or error.
  template <class R, class Range>
  std::vector<Result<R>> map_results(std::string_view function, const Range& inputs) {
    std::vector<std::optional<Result<R>>> slots;
    auto it = std::begin(inputs);
    const auto end = std::end(inputs);
    const std::string name(function);
    run(name, encoder(it, end), [&](const Item& item) {
      if (slots.size() <= item.index) slots.resize(item.index + 1);
      if (item.error != nullptr) {
        slots[item.index].emplace(remote_error(name, item));
      } else {
        slots[item.index].emplace(convert_result<R>(name, item));
      }
      return true;
    });
    std::vector<Result<R>> out;
    out.reserve(slots.size());
    for (auto& slot : slots) out.push_back(std::move(*slot));
    return out;
  }

  // Lazily, one result at a time in input order, as an input range (include/seppo/stream.hpp):
  //   for (R y : client.imap<R>(function, inputs)) ...
  // Inputs are read as results are consumed, so any input range works, endless ones too; the
  // range is moved in from an rvalue and referred to (it must outlive the stream) from an
  // lvalue. Memory stays bounded: ClientOptions::window and max_inflight_bytes count a chunk
  // until the consumer has taken all its results. A failed item throws its RemoteError at its
  // position; leaving the loop early cancels the job. One stream or call at a time per Client.
  template <class R, class Range>
  Stream<R> imap(std::string_view function, Range&& inputs) & {
    return Stream<R>(*this, function, std::forward<Range>(inputs));
  }
  // Like imap, but each item's value or error: a failed item does not end the loop.
  template <class R, class Range>
  Stream<Result<R>> imap_results(std::string_view function, Range&& inputs) & {
    return Stream<Result<R>>(*this, function, std::forward<Range>(inputs));
  }
  // Like imap, in the order results complete, each as Indexed<R>{index, value}.
  template <class R, class Range>
  UnorderedStream<R> imap_unordered(std::string_view function, Range&& inputs) & {
    return UnorderedStream<R>(*this, function, std::forward<Range>(inputs));
  }
  template <class R, class Range>
  UnorderedStream<Result<R>> imap_unordered_results(std::string_view function, Range&& inputs) & {
    return UnorderedStream<Result<R>>(*this, function, std::forward<Range>(inputs));
  }

  // A stream refers to its Client: on a temporary one (client().imap(...) in a range-for) it
  // would outlive it. Name the Client first.
  template <class R, class Range>
  void imap(std::string_view, Range&&) && = delete;
  template <class R, class Range>
  void imap_results(std::string_view, Range&&) && = delete;
  template <class R, class Range>
  void imap_unordered(std::string_view, Range&&) && = delete;
  template <class R, class Range>
  void imap_unordered_results(std::string_view, Range&&) && = delete;

  // Starts the map on a thread and connection of its own and returns at once
  // (include/seppo/job.hpp): job.get(), job.results(), job.wait_for(d), job.cancel(). The job
  // owns its inputs (an lvalue range is copied). This Client stays free for other calls.
  template <class R, class Range>
  Job<R> submit(std::string_view function, Range&& inputs) {
    return Job<R>(sibling(), function, std::forward<Range>(inputs));
  }

  // The type-erased engine under the templates. `next` packs the next input and returns true,
  // or returns false at the end. `sink` receives each item's outcome once, in completion order;
  // returning false cancels the job.
  using Packer = seppo::Packer;
  using Item = seppo::Item;
  void run(const std::string& function, const std::function<bool(Packer&)>& next,
           const std::function<bool(const Item&)>& sink);

 private:
  template <class It, class End>
  static std::function<bool(Packer&)> encoder(It& it, const End& end) {
    return [&it, &end](Packer& packer) {
      if (it == end) return false;
      packer.pack(*it);
      ++it;
      return true;
    };
  }

  template <class R>
  static R convert_result(const std::string& function, const Item& item) {
    return convert<R>(*item.value,
                      [&] { return function + ": result of item " + std::to_string(item.index); });
  }

  template <class R, class Range>
  std::vector<std::optional<R>> collect(std::string_view function, const Range& inputs,
                                        bool fail_fast) {
    std::vector<std::optional<R>> slots;
    if constexpr (requires { std::size(inputs); }) slots.resize(std::size(inputs));
    auto it = std::begin(inputs);
    const auto end = std::end(inputs);
    const std::string name(function);
    run(name, encoder(it, end), [&](const Item& item) {
      if (item.error != nullptr) {
        if (fail_fast) throw remote_error(name, item);
        return true;
      }
      if (slots.size() <= item.index) slots.resize(item.index + 1);
      slots[item.index].emplace(convert_result<R>(name, item));
      return true;
    });
    return slots;
  }

  // Closes the connection; in a fork() child of the process that made it, leaks it instead.
  void release() noexcept;

  struct SEPPO_HIDDEN Impl;  // libclient/client.cpp; not part of the API
  friend struct detail::ClientAccess;
  std::unique_ptr<Impl> impl_;
};

// A client of the broker named by SEPPO_BROKER; when it is unset, of this process' local
// cluster (seppo/local_cluster.hpp), started on first use, stopped at exit, announced once on
// stderr. With `options` (CurveZMQ keys are ignored for the local cluster: it is private).
SEPPO_API Client default_client(ClientOptions options = ClientOptions::from_env());

// map_parallel on default_client(): SEPPO_BROKER's broker, or worker processes on this machine.
template <class R, class Range>
std::vector<R> map_parallel(std::string_view function, const Range& inputs) {
  Client client = default_client();
  return client.map_parallel<R>(function, inputs);
}

}  // namespace seppo

// The types the streaming and background calls return; they need Client complete.
#include "seppo/job.hpp"
#include "seppo/stream.hpp"
