// seppo-broker: the name service and task queue that clients and workers connect to.
#include <grp.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <optional>

#include <CLI/CLI.hpp>

#include "broker/core.hpp"
#include "broker/server.hpp"
#include "common/curve.hpp"
#include "common/duration.hpp"
#include "common/endpoint.hpp"
#include "common/host.hpp"
#include "common/log.hpp"
#include "common/notify.hpp"

namespace {

seppo::log::Level convert(seppo::broker::LogLevel level) {
  switch (level) {
    case seppo::broker::LogLevel::Debug:
      return seppo::log::Level::Debug;
    case seppo::broker::LogLevel::Info:
      return seppo::log::Level::Info;
    case seppo::broker::LogLevel::Warning:
      return seppo::log::Level::Warning;
    case seppo::broker::LogLevel::Error:
      return seppo::log::Level::Error;
  }
  return seppo::log::Level::Info;
}

// Writes the endpoints, one per line, to `path` through a temporary file and a rename, so a
// reader polling for the file never sees half of it.
bool write_endpoint_file(const std::string& path, const std::vector<std::string>& bound) {
  char host[256] = {};
  if (::gethostname(host, sizeof host - 1) != 0) std::snprintf(host, sizeof host, "localhost");
  const std::string temporary = path + ".tmp." + std::to_string(::getpid());
  {
    std::ofstream out(temporary, std::ios::trunc);
    for (const std::string& endpoint : bound) {
      out << seppo::connectable_endpoint(endpoint, host) << "\n";
    }
    out.flush();
    if (!out) return false;
  }
  std::error_code error;
  std::filesystem::rename(temporary, path, error);
  if (error) std::filesystem::remove(temporary, error);
  return !error;
}

}  // namespace

int main(int argc, char** argv) {
  using namespace seppo;
  log::set_program("seppo-broker");
  CLI::App app{
      "seppo-broker: the central broker of seppo (simple embarrassingly parallel).\n"
      "Workers announce functions to it; clients submit jobs; it hands tasks to idle\n"
      "workers and routes results back."};
  app.footer(
      "Examples:\n"
      "  seppo-broker                               # listen on ipc:///tmp/seppo-$UID/broker\n"
      "  seppo-broker --bind ipc:///run/seppo/broker\n"
      "  seppo-broker --bind tcp://*:0 --insecure --endpoint-file $SLURM_SUBMIT_DIR/broker\n"
      "  SEPPO_BROKER=tcp://127.0.0.1:6000 seppo-broker --heartbeat-ms 500\n"
      "  seppo-broker --bind tcp://*:5555 --curve-secret-key /etc/seppo/broker.key_secret \\\n"
      "      --authorized-workers /etc/seppo/workers --authorized-clients /etc/seppo/clients\n\n"
      "Without --curve-secret-key the broker listens only on loopback or ipc:// endpoints,\n"
      "unless --insecure; by default on ipc:///tmp/seppo-$UID/broker, in a folder of this\n"
      "user's alone, admitting no other user (but --allow-group). SIGHUP reloads the\n"
      "authorised key lists.\n"
      "Exit status: 0 after SIGINT/SIGTERM; 1 if an endpoint cannot be bound or a key file\n"
      "cannot be read; 2 on bad usage, including a network endpoint without keys.\n"
      "Environment: SEPPO_BROKER_BIND is the default for --bind, else SEPPO_BROKER (the\n"
      "endpoint workers and clients connect to, when the broker can bind it as it is);\n"
      "SEPPO_CURVE_SECRET_KEY for --curve-secret-key; SEPPO_RUNTIME_DIR for the folder of the\n"
      "default endpoint (/tmp/seppo-$UID).");
  app.set_version_flag("--version", std::string("seppo-broker ") + SEPPO_VERSION);

  std::vector<std::string> endpoints;
  std::string level = "info";
  broker::Config config;
  broker::ServerOptions server;
  std::int64_t heartbeat_ms = config.heartbeat.count();
  app.add_option(
      "-b,--bind", endpoints,
      "endpoint to listen on (repeatable; default $SEPPO_BROKER_BIND, $SEPPO_BROKER or " +
          std::string(kDefaultEndpointHelp) + ")");
  app.add_option("--heartbeat-ms", heartbeat_ms, "heartbeat interval announced to peers")
      ->capture_default_str()
      ->check(CLI::Range(10, 600000));
  app.add_option("--liveness", config.liveness,
                 "heartbeats a peer may miss before it is presumed dead")
      ->capture_default_str()
      ->check(CLI::Range(1, 1000));
  app.add_option("--max-attempts", config.max_attempts,
                 "runs of a task whose worker died before the item is reported lost")
      ->capture_default_str()
      ->check(CLI::Range(1, 1000));
  app.add_option("--max-message-bytes", server.max_message_bytes,
                 "larger messages are refused and their sender disconnected")
      ->capture_default_str()
      ->check(CLI::Range(std::int64_t{1024}, std::int64_t{1} << 40));
  app.add_option("--max-client-bytes", config.max_client_bytes,
                 "payload bytes one client may have queued before its chunks are refused; "
                 "also bounds its results awaiting delivery")
      ->capture_default_str();
  std::string worker_grace = "60s";
  app.add_option("--worker-grace", worker_grace,
                 "how long jobs wait for workers of their function to come back after the last "
                 "one left (an outage, a reboot), e.g. 60s, 5m, 0")
      ->capture_default_str();
  std::string task_timeout_text;
  app.add_option("--task-timeout", task_timeout_text,
                 "time limit per item (30s, 500ms, 5m; a bare number is seconds): an item "
                 "running longer fails with `timeout` and its worker process is replaced. The "
                 "default for jobs that set none, and a cap for those that do (default: none)")
      ->type_name("DURATION");
  std::string secret_key_file;
  broker::AuthConfig authorized;
  bool insecure = false;
  app.add_option("--curve-secret-key", secret_key_file,
                 "the broker's secret key file (from seppo keygen): turns on CurveZMQ "
                 "encryption and authentication")
      ->envname(curve::kSecretKeyVariable);
  app.add_option("--authorized-workers", authorized.workers,
                 "public keys that may serve as workers: a file of keys, one per line, or a "
                 "folder of NAME.key files");
  app.add_option("--authorized-clients", authorized.clients,
                 "public keys that may submit jobs and read status: a file or a folder");
  std::string allow_group;
  app.add_option("--allow-group", allow_group,
                 "without keys, also admit the members of GROUP over ipc:// (by their uid, "
                 "which the kernel vouches for); the socket and its folder become the group's")
      ->type_name("GROUP");
  app.add_flag("--insecure", insecure,
               "allow network endpoints without CurveZMQ: anyone who can reach them can run "
               "code on every worker");
  std::string endpoint_file;
  app.add_option("--endpoint-file", endpoint_file,
                 "once listening, write the endpoints as clients and workers connect to them, "
                 "one per line (a wildcard address replaced by this host's name, a port 0 or * "
                 "by the port chosen) to FILE; removed again when the broker stops")
      ->type_name("FILE");
  app.add_option("--log-level", level, "debug, info, warning or error")
      ->capture_default_str()
      ->check(CLI::IsMember({"debug", "info", "warning", "error"}));
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 2;  // bad usage
  }
  log::set_level(log::parse_level(level));
  config.heartbeat = std::chrono::milliseconds(heartbeat_ms);
  config.max_message_bytes = static_cast<std::uint64_t>(server.max_message_bytes);
  if (const auto grace = parse_duration(worker_grace)) {
    config.worker_grace = *grace;
  } else {
    std::cerr << "seppo-broker: --worker-grace " << worker_grace << ": not a duration ("
              << kDurationForms << ", or 0)\n";
    return 2;
  }
  if (!task_timeout_text.empty()) {
    const std::optional<std::chrono::milliseconds> limit = parse_duration(task_timeout_text);
    if (!limit || limit->count() == 0) {
      std::cerr << "seppo-broker: --task-timeout " << task_timeout_text
                << ": not a positive duration (" << kDurationForms << ")\n";
      return 2;
    }
    config.task_timeout = *limit;
  }
  if (endpoints.empty()) {
    // SEPPO_BROKER_BIND says where to listen (tcp://*:5555); SEPPO_BROKER, where others connect
    // (tcp://head:5555), is a fallback for the common case where one value serves both.
    const char* bind = std::getenv("SEPPO_BROKER_BIND");
    endpoints.push_back(bind != nullptr && *bind != '\0' ? std::string(bind)
                                                         : default_broker_endpoint());
  }
  server.endpoints = endpoints;
  server.heartbeat = config.heartbeat;
  server.liveness = config.liveness;

  auto fail = [](int status, const std::string& text) {
    std::cerr << "seppo-broker: " << text << "\n";
    return status;
  };
  if (secret_key_file.empty()) {
    if (!authorized.workers.empty() || !authorized.clients.empty()) {
      return fail(2, "--authorized-workers and --authorized-clients need --curve-secret-key");
    }
    // Secure by default: without keys, only this user (and --allow-group) may talk to the
    // broker over ipc://; TCP is open to every user of this machine, and said so.
    broker::LocalPolicy local;
    local.uid = ::geteuid();
    if (!allow_group.empty()) {
      const group* g = ::getgrnam(allow_group.c_str());
      if (g == nullptr) return fail(2, "--allow-group: no group named " + allow_group);
      local.group = g->gr_gid;
      local.group_name = allow_group;
    }
    server.local = local;
    for (const std::string& endpoint : endpoints) {
      try {
        check_private_endpoint(endpoint, true);
      } catch (const std::exception& e) {
        return fail(1, e.what());
      }
      if (is_local_endpoint(endpoint)) {
        if (endpoint.rfind("tcp://", 0) == 0) {
          log::warning("listening on " + endpoint +
                       " without keys: every user of this machine can connect to it, submit "
                       "work and serve as a worker; the default endpoint (" +
                       private_endpoint() + ") admits only this user");
        }
        continue;
      }
      if (!insecure) {
        return fail(2, "refusing to listen on " + endpoint +
                           " without CurveZMQ keys: anyone who can reach it could run code on "
                           "every worker. Give --curve-secret-key (see seppo keygen), bind to "
                           "127.0.0.1 or ipc://, or accept the risk with --insecure");
      }
      log::warning("listening on " + endpoint +
                   " without authentication or encryption (--insecure): anyone who can reach "
                   "it can submit work to every worker and read every job");
    }
  } else {
    if (!allow_group.empty()) {
      return fail(2,
                  "--allow-group is for a broker without keys; with keys, list the group's "
                  "users' public keys in --authorized-clients");
    }
    if (authorized.workers.empty() || authorized.clients.empty()) {
      return fail(2,
                  "--curve-secret-key (or $SEPPO_CURVE_SECRET_KEY) needs --authorized-workers "
                  "and --authorized-clients (a file of public keys or a folder of NAME.key "
                  "files each)");
    }
    if (!curve::available()) return fail(1, "this libzmq was built without CurveZMQ support");
    try {
      server.curve = curve::read_secret_key_file(secret_key_file);
      server.authorized = authorized;
      server.lists = broker::KeyLists::load(authorized);
    } catch (const std::exception& e) {
      return fail(1, e.what());
    }
    for (const std::string& w : server.lists->warnings()) log::warning(w);
  }

  broker::Core core(config, random_u64(), [](broker::LogLevel l, const std::string& text) {
    log::write(convert(l), text);
  });
  bool wrote_endpoint_file = false;
  if (!endpoint_file.empty()) {
    // Checked before binding: a script polling for the file should hear at once that it won't come.
    const std::string probe = endpoint_file + ".tmp." + std::to_string(::getpid());
    if (!std::ofstream(probe)) return fail(1, "cannot write the endpoint file " + endpoint_file);
    std::error_code ignored;
    std::filesystem::remove(probe, ignored);
    server.on_ready = [&](const std::vector<std::string>& bound, const std::string& error) {
      if (!error.empty()) return;
      wrote_endpoint_file = write_endpoint_file(endpoint_file, bound);
      if (!wrote_endpoint_file) log::error("cannot write the endpoint file " + endpoint_file);
    };
  }
  if (server.local && server.local->group) {
    // The group reaches the sockets through their folders: both become the group's, the
    // folder without write (no one else may replace the socket) and without anything for
    // others.
    const unsigned gid = *server.local->group;
    server.on_ready = [previous = server.on_ready, gid](const std::vector<std::string>& bound,
                                                        const std::string& error) {
      for (const std::string& endpoint : bound) {
        if (!error.empty() || endpoint.rfind("ipc://", 0) != 0 || endpoint.size() < 7 ||
            endpoint[6] == '@') {
          continue;
        }
        const std::string path = endpoint.substr(6);
        const std::string folder = std::filesystem::path(path).parent_path().string();
        bool ok = ::chown(path.c_str(), static_cast<uid_t>(-1), gid) == 0 &&
                  ::chmod(path.c_str(), 0660) == 0;
        if (ok && endpoint == private_endpoint()) {
          ok = ::chown(folder.c_str(), static_cast<uid_t>(-1), gid) == 0 &&
               ::chmod(folder.c_str(), 0710) == 0;
        }
        if (!ok) {
          log::error("--allow-group: cannot give " + path +
                     " to the group: " + std::strerror(errno));
        }
      }
      if (previous) previous(bound, error);
    };
  }
  // systemd (Type=notify): ready once every endpoint is bound.
  server.on_ready = [previous = server.on_ready](const std::vector<std::string>& bound,
                                                 const std::string& error) {
    if (previous) previous(bound, error);
    if (!error.empty()) return;
    std::string list;
    for (const std::string& e : bound) list += (list.empty() ? "" : " ") + e;
    notify::send("READY=1\nSTATUS=listening on " + list);
  };
  const int status = broker::serve(server, core);
  notify::send("STOPPING=1");
  if (wrote_endpoint_file) {
    std::error_code ignored;
    std::filesystem::remove(endpoint_file, ignored);
  }
  return status;
}
