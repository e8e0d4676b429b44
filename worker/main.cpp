// seppo-worker: serves the functions of the modules its operator names to a broker.
#include <unistd.h>

#include <iostream>
#include <set>
#include <thread>

#include <CLI/CLI.hpp>

#include "common/endpoint.hpp"
#include "common/log.hpp"
#include "worker/module_loader.hpp"
#include "worker/session.hpp"
#include "worker/supervisor.hpp"

int main(int argc, char** argv) {
  using namespace seppo;
  log::set_program("seppo-worker");
  CLI::App app{"seppo-worker: runs functions from modules (shared objects) for a seppo broker.\n"
               "Each function of path/to/libNAME.so is announced as NAME.FUNCTION."};
  app.footer(
      "Examples:\n"
      "  seppo-worker --module build/examples/example_module/libexample_module.so\n"
      "  seppo-worker -j 8 --broker tcp://head-node:5555 --module ~/lib/libphysics.so\n\n"
      "Exit status: 0 after SIGINT/SIGTERM, 1 if a module cannot be loaded, 2 on bad usage.\n"
      "Environment: SEPPO_BROKER is the default for --broker.");
  app.set_version_flag("--version", std::string("seppo-worker ") + SEPPO_VERSION);

  std::string endpoint = default_broker_endpoint();
  std::vector<std::string> modules;
  unsigned processes = std::max(1u, std::thread::hardware_concurrency());
  std::string level = "info";
  worker::SessionOptions session;
  std::int64_t heartbeat_ms = session.heartbeat.count();
  app.add_option("-b,--broker", endpoint, "broker endpoint (default $SEPPO_BROKER or " +
                                              std::string(kDefaultEndpoint) + ")");
  app.add_option("-m,--module", modules, "module to serve: path to libNAME.so (repeatable)")
      ->required();
  app.add_option("-j,--jobs", processes, "worker processes to run (default: one per core)")
      ->check(CLI::Range(1u, 4096u));
  app.add_option("--prefetch", session.prefetch,
                 "tasks each process holds at once, one running and the rest waiting "
                 "(default: adapted to how long tasks take)")
      ->check(CLI::Range(1u, 1024u));
  app.add_option("--heartbeat-ms", heartbeat_ms,
                 "heartbeat interval until the broker announces its own")
      ->capture_default_str()
      ->check(CLI::Range(10, 600000));
  app.add_option("--log-level", level, "debug, info, warning or error")
      ->capture_default_str()
      ->check(CLI::IsMember({"debug", "info", "warning", "error"}));
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 2;  // bad usage
  }
  log::set_level(log::parse_level(level));
  session.endpoint = endpoint;
  session.heartbeat = std::chrono::milliseconds(heartbeat_ms);

  // Modules are loaded once, before forking, so a bad one fails the command at once.
  std::vector<worker::Function> functions;
  std::set<std::string> names;
  try {
    for (const std::string& path : modules) {
      for (worker::Function& f : worker::load_module(path)) {
        if (!names.insert(f.name).second) {
          throw std::runtime_error("function " + f.name + " is provided by two modules");
        }
        functions.push_back(std::move(f));
      }
    }
  } catch (const std::exception& e) {
    std::cerr << "seppo-worker: " << e.what() << "\n";
    return 1;
  }
  std::string list;
  for (const auto& f : functions) list += (list.empty() ? "" : ", ") + f.name;
  log::info("serving " + list + " for " + endpoint);

  worker::SupervisorOptions supervisor;
  supervisor.processes = processes;
  return worker::supervise(supervisor, [&] { return worker::run_session(session, functions); });
}
