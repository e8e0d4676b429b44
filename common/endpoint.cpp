#include "common/endpoint.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <cstdlib>

namespace seppo {

std::string default_broker_endpoint() {
  const char* value = std::getenv(kBrokerVariable);
  return value != nullptr && *value != '\0' ? std::string(value) : std::string(kDefaultEndpoint);
}

bool is_local_endpoint(const std::string& endpoint) {
  if (endpoint.rfind("ipc://", 0) == 0 || endpoint.rfind("inproc://", 0) == 0) return true;
  if (endpoint.rfind("tcp://", 0) != 0) return false;
  std::string address = endpoint.substr(6);
  // A connect endpoint may name a source address first (tcp://SOURCE;HOST:PORT): the
  // destination is what decides where the traffic goes.
  if (const auto semicolon = address.rfind(';'); semicolon != std::string::npos) {
    address.erase(0, semicolon + 1);
  }
  const auto colon = address.rfind(':');
  if (colon == std::string::npos) return false;
  std::string host = address.substr(0, colon);
  if (host == "localhost") return true;
  // Literal addresses only: a name such as 127.example.org could resolve anywhere.
  if (host.size() > 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
    in6_addr a6{};
    if (::inet_pton(AF_INET6, host.c_str(), &a6) != 1) return false;
    if (IN6_IS_ADDR_LOOPBACK(&a6)) return true;
    return IN6_IS_ADDR_V4MAPPED(&a6) && a6.s6_addr[12] == 127;
  }
  in_addr a4{};
  if (::inet_pton(AF_INET, host.c_str(), &a4) != 1) return false;
  return (ntohl(a4.s_addr) >> 24) == 127;
}

std::string connectable_endpoint(const std::string& bound, const std::string& host) {
  for (const char* wildcard : {"tcp://0.0.0.0:", "tcp://[::]:", "tcp://*:"}) {
    const std::string prefix(wildcard);
    if (bound.rfind(prefix, 0) == 0) return "tcp://" + host + ":" + bound.substr(prefix.size());
  }
  return bound;
}

}  // namespace seppo
