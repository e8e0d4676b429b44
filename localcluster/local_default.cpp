// What the free seppo::map_parallel runs on: SEPPO_BROKER's broker, or else a local cluster
// started on first use and kept for the life of the process.
#include <unistd.h>

#include <cstdio>
#include <cstdlib>

#include "common/endpoint.hpp"
#include "common/host.hpp"
#include "seppo/local_cluster.hpp"

namespace seppo {
namespace {

LocalCluster* default_cluster = nullptr;
pid_t default_owner = -1;

// At exit, before the static objects it uses are destroyed (they were made before it was
// registered). A forked copy of the program leaves the cluster to its owner.
void stop_default_cluster() {
  if (::getpid() != default_owner) return;
  delete default_cluster;
  default_cluster = nullptr;
}

LocalCluster& default_local_cluster() {
  [[maybe_unused]] static const bool started = [] {
    default_cluster = new LocalCluster();
    default_owner = ::getpid();
    std::atexit(stop_default_cluster);
    std::fprintf(stderr,
                 "seppo: no broker configured (SEPPO_BROKER is unset): running on a local "
                 "cluster of %u worker processes\n",
                 default_cluster->workers());
    return true;
  }();
  if (default_cluster == nullptr) throw ConnectionError("the local cluster was stopped at exit");
  return *default_cluster;
}

}  // namespace

Client default_client(ClientOptions options) {
  const std::string broker = environment(kBrokerVariable);
  if (!broker.empty()) return Client(broker, std::move(options));
  return default_local_cluster().client(std::move(options));
}

}  // namespace seppo
