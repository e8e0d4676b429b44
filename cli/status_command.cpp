#include "cli/status_command.hpp"

#include <string>

#include "cli/json.hpp"

namespace seppo::cli {

int run_status(Client& client, std::chrono::milliseconds timeout, bool json, std::FILE* out) {
  const msgpack::object_handle status = client.status(timeout);
  const nlohmann::json s = to_json(status.get());
  if (json) {
    std::fprintf(out, "%s\n", s.dump().c_str());
    return 0;
  }
  const std::string version = s.value("version", std::string());
  std::fprintf(out, "broker %s (protocol %s%s)\n", client.endpoint().c_str(),
               s.value("protocol", nlohmann::json()).dump().c_str(),
               version.empty() ? "" : (", version " + version).c_str());
  const auto& workers = s.value("workers", nlohmann::json::array());
  std::fprintf(out, "\nworkers: %zu\n", workers.size());
  for (const auto& w : workers) {
    const auto busy = w.value("busy", std::uint64_t{0});
    const std::string state = busy == 0 ? "idle" : "busy " + std::to_string(busy);
    std::string names;
    for (const auto& f : w.value("functions", nlohmann::json::array())) {
      names += (names.empty() ? "" : ", ") + f.get<std::string>();
    }
    if (names.size() > 60) names = names.substr(0, 57) + "...";
    std::fprintf(out, "  %-32s %-8s done %-8s heard %5s ms ago  %s\n",
                 w.value("name", std::string()).c_str(), state.c_str(),
                 w.value("tasks_done", nlohmann::json()).dump().c_str(),
                 w.value("last_heard_ms", nlohmann::json()).dump().c_str(), names.c_str());
  }
  const auto& functions = s.value("functions", nlohmann::json::object());
  std::fprintf(out, "\nfunctions: %zu\n", functions.size());
  for (const auto& [name, f] : functions.items()) {
    std::fprintf(out, "  %-40s workers %s  queued %s\n", name.c_str(),
                 f.value("workers", nlohmann::json()).dump().c_str(),
                 f.value("queued", nlohmann::json()).dump().c_str());
  }
  const auto& jobs = s.value("jobs", nlohmann::json::array());
  std::fprintf(out, "\njobs: %zu\n", jobs.size());
  for (const auto& j : jobs) {
    std::fprintf(out, "  %-40s done %s  queued %s\n", j.value("function", std::string()).c_str(),
                 j.value("items_done", nlohmann::json()).dump().c_str(),
                 j.value("queued", nlohmann::json()).dump().c_str());
  }
  return 0;
}

int run_ping(Client& client, std::chrono::milliseconds timeout, std::FILE* out) {
  const msgpack::object_handle status = client.status(timeout);
  const nlohmann::json s = to_json(status.get());
  std::fprintf(out, "broker at %s is alive: %zu workers, %zu jobs\n", client.endpoint().c_str(),
               s.value("workers", nlohmann::json::array()).size(),
               s.value("jobs", nlohmann::json::array()).size());
  return 0;
}

}  // namespace seppo::cli
