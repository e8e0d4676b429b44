// Facts about this process and its host that several programs report.
#pragma once

#include <cstdint>
#include <string>

namespace seppo {

// The fully qualified domain name, as Python's socket.getfqdn() gives it; the plain host name
// when no resolver knows better.
std::string fqdn();

// A routing id that stays with a peer across reconnections and is unique across restarts.
std::string random_routing_id(char role);

std::uint64_t random_u64();

// The environment variable's value; empty when it is unset.
std::string environment(const char* name);

}  // namespace seppo
