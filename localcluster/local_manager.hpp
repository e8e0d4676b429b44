// The process that starts a local cluster's workers: forked once, when the cluster is made and
// before it starts any thread of its own, it stays single-threaded, so it can fork worker
// processes safely whenever the cluster needs them (a new module, a worker that died). Workers
// are forks too, so they serve the functions compiled into the program.
//
// It is driven over a SOCK_SEQPACKET socket pair, one msgpack message per request and reply,
// and it stops everything when that socket closes or its parent process is gone: a program
// that is killed leaves no worker behind.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <string>
#include <vector>

#include "seppo/msgpack.hpp"

#include "worker/module_loader.hpp"
#include "worker/session.hpp"

// Internal to libseppo: not exported.
#pragma GCC visibility push(hidden)

namespace seppo::local {

struct ManagerOptions {
  worker::SessionOptions session;           // what every worker runs
  std::vector<worker::Function> functions;  // served from the start
  std::chrono::milliseconds stop_grace{2000};
  bool stdout_to_stderr = false;
  // The cluster's private folder, removed by the manager when the program died without.
  std::string folder;
  // What Python workers (seppo-worker --python, started for load_python) log.
  std::string log_level = "warning";
};

class Manager {
 public:
  // Forks the manager process. Throws seppo::Error when it cannot.
  explicit Manager(const ManagerOptions& options);
  ~Manager();  // stop()
  Manager(const Manager&) = delete;
  Manager& operator=(const Manager&) = delete;

  // Loads a module file in the manager; later workers serve it. Returns its functions'
  // names; throws seppo::Error with the loader's message.
  std::vector<std::string> load(const std::string& path);
  // Has later workers serve Python module `module`, imported from `folder`: the manager runs
  // seppo-worker --python (worker_program()) in addition to its own forked workers. Returns
  // the module's functions' names; throws seppo::Error with the worker's message.
  std::vector<std::string> load_python(const std::string& module, const std::string& folder);
  // Starts `processes` workers serving everything loaded so far; the workers running until
  // now are asked to stop (SIGTERM: each finishes its running task and hands the rest back).
  std::vector<pid_t> start(unsigned processes);
  // The workers of the latest start(), as running now (restarted ones included).
  std::vector<pid_t> pids();
  // Stops every worker (SIGTERM, SIGKILL after the grace) and the manager; waits for them.
  // Does nothing in a process forked from the one that made the manager.
  void stop() noexcept;

  pid_t pid() const { return pid_; }

 private:
  msgpack::object_handle request(const std::string& command, const std::string& argument,
                                 std::uint64_t number, std::chrono::milliseconds timeout);

  pid_t owner_ = -1;
  pid_t pid_ = -1;
  int fd_ = -1;
  std::chrono::milliseconds stop_grace_;
};

}  // namespace seppo::local

#pragma GCC visibility pop
