#include "common/endpoint.hpp"

#include <cstdlib>

namespace seppo {

std::string default_broker_endpoint() {
  const char* value = std::getenv(kBrokerVariable);
  return value != nullptr && *value != '\0' ? std::string(value) : std::string(kDefaultEndpoint);
}

bool is_local_endpoint(const std::string& endpoint) {
  if (endpoint.rfind("ipc://", 0) == 0 || endpoint.rfind("inproc://", 0) == 0) return true;
  if (endpoint.rfind("tcp://", 0) != 0) return false;
  const std::string host = endpoint.substr(6, endpoint.rfind(':') - 6);
  return host.rfind("127.", 0) == 0 || host == "localhost" || host == "[::1]";
}

}  // namespace seppo
