// Where the broker is: one default and one environment variable for every program.
#pragma once

#include <string>

namespace seppo {

inline constexpr const char* kBrokerVariable = "SEPPO_BROKER";
inline constexpr const char* kRuntimeFolderVariable = "SEPPO_RUNTIME_DIR";
// The default endpoint as help texts show it.
inline constexpr const char* kDefaultEndpointHelp = "ipc:///tmp/seppo-$UID/broker";

// The folder of the default endpoint: $SEPPO_RUNTIME_DIR when set and not empty, otherwise
// /tmp/seppo-UID (UID this user's number). Not $XDG_RUNTIME_DIR or $TMPDIR: those differ
// between a login shell, cron, sudo and a batch job, and logind removes the first at logout
// under a broker still running.
std::string private_folder();
// ipc://FOLDER/broker: a socket only this user can reach, since the folder is theirs alone.
std::string private_endpoint();

// SEPPO_BROKER when set and not empty, otherwise private_endpoint().
std::string default_broker_endpoint();

// Before binding (`create`) or connecting to `endpoint`: when it is the private endpoint,
// makes its folder (mode 0700) if `create` and it is missing, and checks that the folder is
// a folder (not a link), belongs to this user and is closed to others. Throws
// std::runtime_error naming the folder and the fix otherwise: a folder someone else made
// could hold their socket, and our jobs would go to their broker. Other endpoints pass.
void check_private_endpoint(const std::string& endpoint, bool create);

// Why a connection to `endpoint` cannot be made, as the system says it ("No such file or
// directory", "Permission denied", "Connection refused"), for ipc:// paths and tcp:// loopback
// addresses; empty when it can, or for other endpoints (nothing is tried on the network).
std::string unreachable_reason(const std::string& endpoint);

// True for endpoints that only this machine can reach: ipc://, inproc://, and tcp:// to a
// loopback address written as such (127.0.0.0/8, [::1], localhost). Anything else, including
// host names, interface names, wildcards and other transports, counts as the network.
bool is_local_endpoint(const std::string& endpoint);

// A bound endpoint as others can connect to it: a wildcard address (tcp://0.0.0.0:PORT or
// tcp://[::]:PORT, what ZMQ_LAST_ENDPOINT says after binding tcp://*:0) is replaced by `host`;
// anything else is returned unchanged.
std::string connectable_endpoint(const std::string& bound, const std::string& host);

}  // namespace seppo
