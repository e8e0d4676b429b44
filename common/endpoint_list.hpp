// A broker given as a comma-separated list of endpoints (a pair of brokers, docs/protocol.md
// §15.4): "tcp://a:5555,tcp://b:5555". Header-only: the sans-I/O cores use it too.
#pragma once

#include <string>
#include <vector>

namespace seppo {

// The endpoints in order, surrounding spaces dropped, empty entries skipped; a text without a
// comma gives itself (even empty, so that one endpoint behaves as before).
inline std::vector<std::string> split_endpoints(const std::string& text) {
  std::vector<std::string> list;
  std::size_t start = 0;
  while (start <= text.size()) {
    std::size_t end = text.find(',', start);
    if (end == std::string::npos) end = text.size();
    std::size_t a = start, b = end;
    while (a < b && text[a] == ' ') ++a;
    while (b > a && text[b - 1] == ' ') --b;
    if (b > a) list.push_back(text.substr(a, b - a));
    start = end + 1;
  }
  if (list.empty()) list.push_back(text);
  return list;
}

}  // namespace seppo
