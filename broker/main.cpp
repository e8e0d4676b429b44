// seppo-broker: the name service and task queue that clients and workers connect to.
#include <cstdio>
#include <iostream>

#include <CLI/CLI.hpp>

#include "broker/core.hpp"
#include "broker/server.hpp"
#include "common/endpoint.hpp"
#include "common/host.hpp"
#include "common/log.hpp"

namespace {

seppo::log::Level convert(seppo::broker::LogLevel level) {
  switch (level) {
    case seppo::broker::LogLevel::Debug: return seppo::log::Level::Debug;
    case seppo::broker::LogLevel::Info: return seppo::log::Level::Info;
    case seppo::broker::LogLevel::Warning: return seppo::log::Level::Warning;
    case seppo::broker::LogLevel::Error: return seppo::log::Level::Error;
  }
  return seppo::log::Level::Info;
}

}  // namespace

int main(int argc, char** argv) {
  using namespace seppo;
  log::set_program("seppo-broker");
  CLI::App app{"seppo-broker: the central broker of seppo (simple embarrassingly parallel).\n"
               "Workers announce functions to it; clients submit jobs; it hands tasks to idle\n"
               "workers and routes results back."};
  app.footer(
      "Examples:\n"
      "  seppo-broker                               # listen on tcp://127.0.0.1:5555\n"
      "  seppo-broker --bind ipc:///run/seppo/broker\n"
      "  SEPPO_BROKER=tcp://127.0.0.1:6000 seppo-broker --heartbeat-ms 500\n\n"
      "Exit status: 0 after SIGINT/SIGTERM, 1 if an endpoint cannot be bound, 2 on bad usage.\n"
      "Environment: SEPPO_BROKER is the default for --bind.");
  app.set_version_flag("--version", std::string("seppo-broker ") + SEPPO_VERSION);

  std::vector<std::string> endpoints;
  std::string level = "info";
  broker::Config config;
  broker::ServerOptions server;
  std::int64_t heartbeat_ms = config.heartbeat.count();
  app.add_option("-b,--bind", endpoints,
                 "endpoint to listen on (repeatable; default $SEPPO_BROKER or " +
                     std::string(kDefaultEndpoint) + ")");
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
                 "payload bytes one client may have queued before its chunks are refused")
      ->capture_default_str();
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
  if (endpoints.empty()) endpoints.push_back(default_broker_endpoint());
  server.endpoints = endpoints;

  broker::Core core(config, random_u64(), [](broker::LogLevel l, const std::string& text) {
    log::write(convert(l), text);
  });
  return broker::serve(server, core);
}
