// A real seppo cluster for a test: a seppo-broker process on an ephemeral loopback port and
// seppo-worker processes serving the example module, all stopped by PID when the test ends.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <seppo/client.hpp>

#include "tests/support/process.hpp"

namespace seppo::test {

struct Paths {
  static std::string broker();
  static std::string worker();
  static std::string cli();
  static std::string example_module();
  static std::string hello_world();
};

// Heartbeats fast enough that failures are noticed within a test's patience.
inline const std::vector<std::string> kFastHeartbeat = {"--heartbeat-ms", "100", "--liveness", "3"};

class Cluster {
 public:
  explicit Cluster(std::vector<std::string> broker_args = kFastHeartbeat);
  // With options for every client (client() and the status probes; the timeouts are the
  // test's own) and arguments for every worker: CurveZMQ keys, for instance.
  Cluster(std::vector<std::string> broker_args, ClientOptions client,
          std::vector<std::string> worker_args = {});
  ~Cluster();

  const std::string& endpoint() const { return endpoint_; }
  const TempDir& dir() const { return dir_; }

  Process& broker() { return *broker_; }
  // Starts the broker again on the same endpoint (after it was killed).
  void restart_broker();
  Process& add_worker(unsigned processes = 1, std::vector<std::string> extra = {});
  // A worker connecting to `endpoint` instead of the broker's (a relay, say) with `args` alone
  // after the module: no worker arguments of the cluster.
  Process& add_worker_at(const std::string& endpoint, std::vector<std::string> args);
  Process& worker(std::size_t i) { return *workers_.at(i); }

  // Waits until the broker reports `n` connected worker processes; false on timeout.
  bool wait_for_workers(std::size_t n, std::chrono::milliseconds timeout = 20s);
  // Fields of `seppo status`, or nullopt when the broker did not answer.
  std::optional<std::size_t> worker_count();
  std::optional<std::size_t> queued_count();
  std::optional<std::size_t> busy_count();

  ClientOptions client_options() const;
  Client client() const { return Client(endpoint_, client_options()); }

 private:
  void start_broker(const std::string& bind);
  msgpack::object_handle status();
  // The size of STATUS field `list`, or the sum of `summed` over its entries.
  std::optional<std::size_t> status_figure(const char* list, const char* summed);

  TempDir dir_;
  std::vector<std::string> broker_args_;
  ClientOptions client_;
  std::vector<std::string> worker_args_;
  std::string endpoint_;
  std::unique_ptr<Process> broker_;
  std::vector<std::unique_ptr<Process>> workers_;
  int broker_starts_ = 0;
};

}  // namespace seppo::test
