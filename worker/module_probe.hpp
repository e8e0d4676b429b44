// What a set of module files provides right now, found in a short-lived child process: a module
// loaded there leaves nothing behind, so the same files can be loaded again after they changed
// (dlopen in this process would hand back the copy it already has).
#pragma once

#include <string>
#include <vector>

namespace seppo::worker {

struct ProbeResult {
  std::vector<std::string> functions;  // NAME.FUNCTION, in load order
  std::string error;                   // empty when every module loaded
};

// Forks, loads each module in the child and reports back. Call with no ZeroMQ context alive.
ProbeResult probe_modules(const std::vector<std::string>& paths);

// "added a.x, b.y; removed a.z", or "" when the lists hold the same names.
std::string describe_change(const std::vector<std::string>& before,
                            const std::vector<std::string>& after);

}  // namespace seppo::worker
