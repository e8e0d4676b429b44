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
  std::fprintf(out, "broker %s (protocol %s)\n", client.endpoint().c_str(),
               s.value("protocol", nlohmann::json()).dump().c_str());
  const auto& workers = s.value("workers", nlohmann::json::array());
  std::fprintf(out, "\nworkers: %zu\n", workers.size());
  for (const auto& w : workers) {
    std::fprintf(out, "  %-40s busy %s/%s  done %s  heard %s ms ago\n",
                 w.value("name", std::string()).c_str(), w.value("busy", nlohmann::json()).dump().c_str(),
                 w.value("capacity", nlohmann::json()).dump().c_str(),
                 w.value("tasks_done", nlohmann::json()).dump().c_str(),
                 w.value("last_heard_ms", nlohmann::json()).dump().c_str());
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
