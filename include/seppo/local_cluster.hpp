// seppo with no service at all: worker processes on this machine, started and stopped by the
// program itself, as with Python's multiprocessing.Pool or Dask's Client().
//
//   seppo::LocalCluster cluster;  // one worker process per core
//   auto squares = cluster.map_parallel<std::int64_t>("example_module.square", inputs);
//
// A function "mod.fn" is served from the module `mod` registered in this program with
// SEPPO_LOCAL_MODULE, or else from the file libmod.so found in the folders of
// SEPPO_MODULE_PATH (colon-separated, like PYTHONPATH), then in the installed module folder.
// Everything the cluster started is stopped when it goes out of scope, and also when this
// program dies without running destructors. See docs/local.md.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstddef>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "seppo/client.hpp"
#include "seppo/module.hpp"

namespace seppo {

struct LocalClusterOptions {
  // Folders searched for lib<mod>.so before the installed module folder, colon-separated.
  // Empty by default; from_env() sets it from SEPPO_MODULE_PATH.
  std::string module_path;
  // Modules served from the start rather than on first use: module names, resolved as above,
  // or paths to lib<mod>.so files (anything with a '/').
  std::vector<std::string> modules;
  // When the cluster stops, workers get this long to finish their running task before they
  // are killed.
  std::chrono::milliseconds stop_grace{2000};
  // What the broker and the workers log on stderr: "debug", "info", "warning" or "error" and
  // above. The level is shared by every local cluster of the process.
  std::string log_level = "warning";
  // Workers' standard output goes to standard error instead: for programs whose own output is
  // results (seppo map --local), which a function's stray print must not corrupt.
  bool worker_stdout_to_stderr = false;
  // Heartbeat of the broker; a worker that dies is noticed within three of them.
  std::chrono::milliseconds heartbeat{1000};

  // The defaults, with what the environment sets: module_path from SEPPO_MODULE_PATH. What a
  // LocalCluster constructed without options uses.
  SEPPO_API static LocalClusterOptions from_env();
};

class SEPPO_API LocalCluster {
 public:
  // Starts a broker on a private ipc:// endpoint in this process and `workers` worker
  // processes (0: one per core) serving the registered modules and `options.modules`; more
  // modules are added on first use. Throws seppo::Error when it cannot.
  explicit LocalCluster(unsigned workers = 0,
                        LocalClusterOptions options = LocalClusterOptions::from_env());
  // Stops the workers (SIGTERM, then SIGKILL after options.stop_grace) and the broker.
  ~LocalCluster();
  LocalCluster(LocalCluster&&) noexcept;
  LocalCluster& operator=(LocalCluster&&) noexcept;

  // A client of this cluster. Before each job it makes the workers serve the function's
  // module (see require()). CurveZMQ keys in `options` are ignored: the endpoint is private.
  // A client that outlives its cluster throws ConnectionError.
  Client client(ClientOptions options = {}) const;

  template <class R, class Range>
  std::vector<R> map_parallel(std::string_view function, const Range& inputs) const {
    return client().map_parallel<R>(function, inputs);
  }
  template <class R, class Range>
  std::vector<Result<R>> map_results(std::string_view function, const Range& inputs) const {
    return client().map_results<R>(function, inputs);
  }

  // Makes the workers serve `function`'s module, resolving and loading it if it is new (the
  // workers are then replaced by ones serving it too: each finishes its running task and hands
  // the rest back, so no job loses an item). Throws UnknownFunctionError when the module is
  // found nowhere, does not load, or lacks the function. Thread-safe.
  void require(std::string_view function);

  const std::string& endpoint() const;
  // Worker processes per generation.
  unsigned workers() const;
  // The worker processes running now, and the process that starts them (for tests).
  std::vector<pid_t> worker_pids() const;
  pid_t manager_pid() const;

 private:
  struct State;
  std::shared_ptr<State> state_;
};

// The type-erased engine of map_parallel_serial, with Client::run's contract: resolves the
// function as a local cluster does and runs it in this process, one item at a time.
SEPPO_API void run_serial(const std::string& function,
                          const std::function<bool(Client::Packer&)>& next,
                          const std::function<bool(const Client::Item&)>& sink);

namespace detail {
// Runs `on_item` on each item's outcome of `function` over `inputs`, in this process.
template <class Range, class OnItem>
void serial_each(const std::string& function, const Range& inputs, OnItem on_item) {
  auto it = std::begin(inputs);
  const auto end = std::end(inputs);
  run_serial(
      function,
      [&](Client::Packer& packer) {
        if (it == end) return false;
        packer.pack(*it);
        ++it;
        return true;
      },
      [&](const Client::Item& item) {
        on_item(item);
        return true;
      });
}
}  // namespace detail

// map_parallel in the calling process, one item after the other, for debugging: a debugger
// or sanitizer sees the function run. Same results and errors as Client::map_parallel.
template <class R, class Range>
std::vector<R> map_parallel_serial(std::string_view function, const Range& inputs) {
  std::vector<R> out;
  if constexpr (requires { std::size(inputs); }) out.reserve(std::size(inputs));
  const std::string name(function);
  detail::serial_each(name, inputs, [&](const Client::Item& item) {
    if (item.error != nullptr) throw remote_error(name, item);
    out.push_back(detail::value_from<R>(name, item));
  });
  return out;
}

// Like map_parallel_serial, but every item's value or error.
template <class R, class Range>
std::vector<Result<R>> map_results_serial(std::string_view function, const Range& inputs) {
  std::vector<Result<R>> out;
  const std::string name(function);
  detail::serial_each(name, inputs, [&](const Client::Item& item) {
    if (item.error != nullptr) {
      out.emplace_back(remote_error(name, item));
    } else {
      out.emplace_back(detail::value_from<R>(name, item));
    }
  });
  return out;
}

namespace detail {
// Records a module whose functions are compiled into this program; see SEPPO_LOCAL_MODULE.
SEPPO_API bool register_local_module(const char* module, const seppo_function_v1* functions,
                                     std::size_t count) noexcept;
}  // namespace detail

}  // namespace seppo

// Functions of this program that local clusters and map_parallel_serial serve as
// module.function, with no shared object to build:
//
//   std::int64_t triple(std::int64_t x) { return 3 * x; }
//   SEPPO_LOCAL_MODULE(mine, SEPPO_FUNCTION(triple))   // at namespace scope: "mine.triple"
//
// Registration happens before main(); remote workers never see these functions.
#define SEPPO_LOCAL_MODULE(module, ...)                                                    \
  [[maybe_unused]] static const bool seppo_local_module_registered_##module = [] {         \
    static const seppo_function_v1 functions[] = {__VA_ARGS__};                            \
    return ::seppo::detail::register_local_module(#module, functions,                      \
                                                  sizeof functions / sizeof functions[0]); \
  }();
