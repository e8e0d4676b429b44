// The library's own way into a Client, for the local cluster (localcluster/local_cluster.cpp)
// and the engine (libclient/client.cpp): not installed, not exported, not API.
#pragma once

#include <functional>
#include <string>

#include "seppo/client.hpp"

namespace seppo::detail {

struct ClientAccess {
  using Impl = Client::Impl;
  static Impl& impl(Client& client) { return *client.impl_; }
  // `hook` is called with the function's name before each job of this Client (and of its
  // siblings) starts; it may throw to fail the call.
  static void set_before_submit(Client& client, std::function<void(const std::string&)> hook);
};

}  // namespace seppo::detail
