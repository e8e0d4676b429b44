// seppo-broker: the name service and task queue that clients and workers connect to.
#include <grp.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <iostream>
#include <memory>
#include <optional>

#include <CLI/CLI.hpp>

#include "broker/core.hpp"
#include "broker/http.hpp"
#include "broker/server.hpp"
#include "common/curve.hpp"
#include "common/duration.hpp"
#include "common/endpoint.hpp"
#include "common/host.hpp"
#include "common/journal.hpp"
#include "common/log.hpp"
#include "common/notify.hpp"
#include "common/version.hpp"
#include "protocol/wire.hpp"
#include "seppo/error.hpp"

namespace {

// A new temporary file next to `path` (mkstemp: O_CREAT|O_EXCL, so never through a link
// someone planted, and a name nobody can predict), readable as a file the user creates
// normally would be (0666 less the umask), or -1.
int make_temporary(const std::string& path, std::string& name) {
  std::string pattern = path + ".tmp.XXXXXX";
  const int fd = ::mkstemp(pattern.data());
  if (fd < 0) return -1;
  const mode_t mask = ::umask(0);
  ::umask(mask);
  if (::fchmod(fd, 0666 & ~mask) != 0) {
    ::close(fd);
    ::unlink(pattern.c_str());
    return -1;
  }
  name = pattern;
  return fd;
}

// Writes the endpoints, one per line, to `path` through a temporary file and a rename, so a
// reader polling for the file never sees half of it.
bool write_endpoint_file(const std::string& path, const std::vector<std::string>& bound) {
  char host[256] = {};
  if (::gethostname(host, sizeof host - 1) != 0) std::snprintf(host, sizeof host, "localhost");
  std::string text;
  for (const std::string& endpoint : bound) {
    text += seppo::connectable_endpoint(endpoint, host) + "\n";
  }
  std::string temporary;
  const int fd = make_temporary(path, temporary);
  if (fd < 0) return false;
  std::size_t done = 0;
  while (done < text.size()) {
    const ssize_t n = ::write(fd, text.data() + done, text.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    done += static_cast<std::size_t>(n);
  }
  const bool written = ::close(fd) == 0 && done == text.size();
  std::error_code error;
  if (written) std::filesystem::rename(temporary, path, error);
  if (!written || error) {
    std::error_code ignored;
    std::filesystem::remove(temporary, ignored);
  }
  return written && !error;
}

// Raises the soft descriptor limit to the hard one (a broker holds one per connection) and
// returns how many connections fit: the limit less `kReserved` for the broker's own (libzmq's
// signalling descriptors, listeners, the ZAP handler, logs). libzmq retries accept() at once
// when descriptors run out, spinning a core, so the cap must stay below it.
std::size_t descriptor_room() {
  constexpr rlim_t kReserved = 64;
  rlimit limit{};
  if (::getrlimit(RLIMIT_NOFILE, &limit) != 0) return 0;
  // (Under systemd the unit sets both alike: its sandbox forbids setrlimit.)
  if (limit.rlim_cur < limit.rlim_max) {
    rlimit raised = limit;
    raised.rlim_cur = limit.rlim_max;
    if (::setrlimit(RLIMIT_NOFILE, &raised) == 0) limit = raised;
  }
  if (limit.rlim_cur == RLIM_INFINITY) return 0;
  return limit.rlim_cur > 2 * kReserved ? static_cast<std::size_t>(limit.rlim_cur - kReserved)
                                        : static_cast<std::size_t>(limit.rlim_cur / 2);
}

}  // namespace

int main(int argc, char** argv) {
  using namespace seppo;
  log::set_program("seppo-broker");
  journal::install();
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
      "A pair of brokers (hot standby): give each --ha-role primary|backup, --ha-bind and\n"
      "--ha-peer (the other's --ha-bind), and give clients and workers both endpoints:\n"
      "  seppo-broker --bind tcp://127.0.0.1:5555 --ha-role primary \\\n"
      "      --ha-bind tcp://127.0.0.1:5556 --ha-peer tcp://127.0.0.1:5566\n"
      "  seppo-broker --bind tcp://127.0.0.1:5565 --ha-role backup \\\n"
      "      --ha-bind tcp://127.0.0.1:5566 --ha-peer tcp://127.0.0.1:5556\n"
      "  seppo-worker --broker tcp://127.0.0.1:5555,tcp://127.0.0.1:5565 ...\n"
      "Exit status: 0 after SIGINT/SIGTERM; 1 if an endpoint cannot be bound or a key file\n"
      "cannot be read; 2 on bad usage, including a network endpoint without keys; 3 for a\n"
      "backup of a pair that found its primary active too (start it again: it stands by).\n"
      "Environment: SEPPO_BROKER_BIND is the default for --bind, else SEPPO_BROKER (the\n"
      "endpoint workers and clients connect to, when the broker can bind it as it is);\n"
      "SEPPO_CURVE_SECRET_KEY for --curve-secret-key; SEPPO_RUNTIME_DIR for the folder of the\n"
      "default endpoint (/tmp/seppo-$UID).");
  app.set_version_flag("--version", version_line("seppo-broker", wire::kVersion));

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
  std::size_t max_connections = 16384;
  app.add_option("--max-connections", max_connections,
                 "connections open at once (workers, clients, status probes); new ones beyond "
                 "are closed at once and logged. Lowered to the descriptor limit (ulimit -n, "
                 "raised to its hard limit at start) less 64")
      ->capture_default_str()
      ->check(CLI::Range(std::size_t{1}, std::size_t{1} << 24));
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
  std::string http_text;
  bool http_public = false;
  app.add_option("--http", http_text,
                 "serve read-only information over HTTP at HOST:PORT: a dashboard at /, "
                 "Prometheus metrics at /metrics, the status as JSON at /api/status (default: "
                 "off; a loopback address unless --http-public)")
      ->type_name("HOST:PORT");
  app.add_flag("--http-public", http_public,
               "allow --http on an address other than loopback: anyone who reaches it can read "
               "the workers, jobs, owners and functions (nothing can be changed through it)");
  std::string ha_role, ha_bind, ha_peer;
  app.add_option("--ha-role", ha_role,
                 "one broker of a pair (hot standby, docs/operating.md \"Running a pair of "
                 "brokers\"): primary or backup; needs --ha-bind and --ha-peer")
      ->check(CLI::IsMember({"primary", "backup"}));
  app.add_option("--ha-bind", ha_bind,
                 "endpoint on which this broker publishes its state to its peer (a pair only)");
  app.add_option("--ha-peer", ha_peer,
                 "the peer broker's --ha-bind endpoint (a pair only; with keys, the peer uses "
                 "the same --curve-secret-key)");
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
  server.max_connections = max_connections;
  if (const std::size_t room = descriptor_room(); room != 0 && room < max_connections) {
    server.max_connections = room;
    log::warning("--max-connections lowered to " + std::to_string(room) +
                 " to fit the descriptor limit (ulimit -n), less the descriptors the broker "
                 "keeps for itself");
  }

  auto fail = [](int status, const std::string& text) {
    std::cerr << "seppo-broker: " << text << "\n";
    return status;
  };
  if (!ha_role.empty() || !ha_bind.empty() || !ha_peer.empty()) {
    // All three or none: half a pair would run as a single broker nobody expects.
    std::string missing;
    if (ha_role.empty()) missing += " --ha-role";
    if (ha_bind.empty()) missing += " --ha-bind";
    if (ha_peer.empty()) missing += " --ha-peer";
    if (!missing.empty()) {
      return fail(
          2, "a broker pair needs --ha-role, --ha-bind and --ha-peer together; missing" + missing);
    }
    if (ha_bind == ha_peer) return fail(2, "--ha-bind and --ha-peer must differ");
    server.pair = broker::ha::PairOptions{*broker::ha::parse_role(ha_role), ha_bind, ha_peer};
    if (secret_key_file.empty() && !insecure) {
      for (const std::string& endpoint : {ha_bind, ha_peer}) {
        if (!is_local_endpoint(endpoint)) {
          return fail(2, "refusing the HA endpoint " + endpoint +
                             " without CurveZMQ keys: give --curve-secret-key (the same for "
                             "both brokers), use 127.0.0.1 or ipc://, or --insecure");
        }
      }
    }
    if (secret_key_file.empty()) {
      // docs/protocol.md §15.2: the link checks no user, unlike the broker's own ipc:// socket.
      log::warning("the pair's HA link (" + ha_bind + ", " + ha_peer +
                   ") has no keys: every user of this machine who can reach it can make this "
                   "broker passive or active; give both brokers --curve-secret-key");
    }
  }
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

  config.version = build_version();
  broker::Core core(config, random_u64(), log::write);
  core.set_fields_log([](log::Level l, const std::string& text, const broker::Core::LogFields& f) {
    log::write_with(
        l, text,
        {{"SEPPO_JOB", f.job}, {"SEPPO_WORKER", f.worker}, {"SEPPO_FUNCTION", f.function}});
  });
  std::unique_ptr<broker::HttpServer> http;
  if (!http_text.empty()) {
    try {
      const broker::HttpAddress address = broker::parse_http_address(http_text);
      if (!address.loopback && !http_public) {
        return fail(2, "refusing to serve HTTP on " + address.text() +
                           ": it shows every worker, job and owner to anyone who reaches it. "
                           "Give a loopback address (127.0.0.1:9090) or add --http-public");
      }
      http = std::make_unique<broker::HttpServer>(address, std::chrono::milliseconds(500));
    } catch (const Error& e) {
      return fail(1, e.what());
    }
    core.stats().record_tasks(true);
    log::info("serving HTTP on http://" + http->address().text() +
              "/ (read-only: /, /metrics, /api/status)");
    server.on_turn = [&http](broker::Core& c, broker::TimePoint now) {
      // /metrics alone gets the part of the map it reads, without the task stream (issue 28).
      if (const auto want = http->due(now); want == broker::HttpServer::kFull) {
        http->publish(c.status_payload(now), now, true);
      } else if (want == broker::HttpServer::kMetrics) {
        http->publish(c.metrics_payload(now), now, false);
      }
    };
  }
  bool wrote_endpoint_file = false;
  if (!endpoint_file.empty()) {
    // Checked before binding: a script polling for the file should hear at once that it won't come.
    std::string probe;
    const int fd = make_temporary(endpoint_file, probe);
    if (fd < 0) return fail(1, "cannot write the endpoint file " + endpoint_file);
    ::close(fd);
    ::unlink(probe.c_str());
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
  // The log's first line, once the options are known to be good (a bad one is a one-line
  // error): which build runs, so mixed versions in a cluster show in the logs.
  log::info(version_line("seppo-broker", wire::kVersion) + ", process " +
            std::to_string(::getpid()));
  const int status = broker::serve(server, core);
  notify::send("STOPPING=1");
  if (wrote_endpoint_file) {
    std::error_code ignored;
    std::filesystem::remove(endpoint_file, ignored);
  }
  return status;
}
