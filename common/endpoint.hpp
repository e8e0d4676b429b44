// Where the broker is: one default and one environment variable for every program.
#pragma once

#include <string>

namespace seppo {

inline constexpr const char* kDefaultEndpoint = "tcp://127.0.0.1:5555";
inline constexpr const char* kBrokerVariable = "SEPPO_BROKER";

// SEPPO_BROKER when set and not empty, otherwise tcp://127.0.0.1:5555.
std::string default_broker_endpoint();

// True for endpoints that only this machine can reach: ipc://, inproc://, and tcp:// to a
// loopback address written as such (127.0.0.0/8, [::1], localhost). Anything else, including
// host names, interface names, wildcards and other transports, counts as the network.
bool is_local_endpoint(const std::string& endpoint);

// A bound endpoint as others can connect to it: a wildcard address (tcp://0.0.0.0:PORT or
// tcp://[::]:PORT, what ZMQ_LAST_ENDPOINT says after binding tcp://*:0) is replaced by `host`;
// anything else is returned unchanged.
std::string connectable_endpoint(const std::string& bound, const std::string& host);

}  // namespace seppo
