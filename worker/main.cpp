// seppo-worker: serves the functions of the modules its operator names to a broker.
#include <unistd.h>

#include <iostream>
#include <set>
#include <thread>

#include <CLI/CLI.hpp>

#include "common/curve.hpp"
#include "common/endpoint.hpp"
#include "common/log.hpp"
#include "common/notify.hpp"
#include "worker/module_loader.hpp"
#include "worker/session.hpp"
#include "worker/shell_command.hpp"
#include "worker/supervisor.hpp"

int main(int argc, char** argv) {
  using namespace seppo;
  log::set_program("seppo-worker");
  CLI::App app{"seppo-worker: runs functions from modules (shared objects), and shell commands\n"
               "its operator names, for a seppo broker. Each function of path/to/libNAME.so is\n"
               "announced as NAME.FUNCTION, each --command NAME=TEMPLATE as NAME."};
  app.footer(
      "Examples:\n"
      "  seppo-worker --module build/examples/example_module/libexample_module.so\n"
      "  seppo-worker --command thumbnail='convert {} {.}.png'\n"
      "      (then: ls *.jpg | seppo map thumbnail)\n"
      "  seppo-worker -j 8 --broker tcp://head-node:5555 --module ~/lib/libphysics.so \\\n"
      "      --curve-secret-key ~/.seppo/node7.key_secret --curve-server-key ~/.seppo/broker.key\n\n"
      "Without CurveZMQ keys the worker connects only to a broker on this machine (loopback or\n"
      "ipc://), unless --insecure.\n"
      "Commands: {} is the input, {.} without its extension, {/} its basename, {//} its\n"
      "directory, {/.} its basename without extension; each is substituted as one shell-quoted\n"
      "word, and ' {}' is appended when the template has none. The command runs with /bin/sh -c;\n"
      "its stdout, less one trailing newline, is the result; a non-zero exit status or a signal\n"
      "is an error for that item, with the end of its stderr.\n"
      "Exit status: 0 after SIGINT/SIGTERM; 1 if a module or key file cannot be loaded, or the\n"
      "broker accepts the key but not as a worker's; 2 on bad usage, including a remote broker\n"
      "without keys, a malformed --command or one named like a module's function.\n"
      "Environment: SEPPO_BROKER is the default for --broker, SEPPO_CURVE_SECRET_KEY for\n"
      "--curve-secret-key, SEPPO_CURVE_SERVER_KEY for --curve-server-key.");
  app.set_version_flag("--version", std::string("seppo-worker ") + SEPPO_VERSION);

  std::string endpoint = default_broker_endpoint();
  std::vector<std::string> modules;
  std::vector<std::string> commands;
  unsigned processes = std::max(1u, std::thread::hardware_concurrency());
  std::string level = "info";
  worker::SessionOptions session;
  std::int64_t heartbeat_ms = session.heartbeat.count();
  app.add_option("-b,--broker", endpoint, "broker endpoint (default $SEPPO_BROKER or " +
                                              std::string(kDefaultEndpoint) + ")");
  app.add_option("-m,--module", modules, "module to serve: path to libNAME.so (repeatable)");
  app.add_option("--command", commands,
                 "a shell command to serve as NAME: NAME=TEMPLATE, e.g. "
                 "thumbnail='convert {} {.}.png' (repeatable)");
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
  std::string secret_key_file, server_key_file;
  bool insecure = false;
  app.add_option("--curve-secret-key", secret_key_file,
                 "this worker's secret key file (from seppo keygen): talk to the broker over "
                 "CurveZMQ")
      ->envname(curve::kSecretKeyVariable);
  app.add_option("--curve-server-key", server_key_file, "the broker's public key file")
      ->envname(curve::kServerKeyVariable);
  app.add_flag("--insecure", insecure,
               "allow a broker on another host without CurveZMQ keys: plaintext, and anyone "
               "posing as the broker could send this worker tasks");
  app.add_option("--log-level", level, "debug, info, warning or error")
      ->capture_default_str()
      ->check(CLI::IsMember({"debug", "info", "warning", "error"}));
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 2;  // bad usage
  }
  log::set_level(log::parse_level(level));
  if (modules.empty() && commands.empty()) {
    std::cerr << "seppo-worker: nothing to serve: give at least one --module or --command\n";
    return 2;
  }
  // Parsed before anything connects, so a typo fails the command at once.
  std::vector<worker::CommandSpec> command_specs;
  try {
    for (const std::string& option : commands) {
      command_specs.push_back(worker::parse_command_option(option));
    }
  } catch (const std::invalid_argument& e) {
    std::cerr << "seppo-worker: " << e.what() << "\n";
    return 2;
  }
  session.endpoint = endpoint;
  session.heartbeat = std::chrono::milliseconds(heartbeat_ms);

  if (secret_key_file.empty() && server_key_file.empty()) {
    if (!is_local_endpoint(endpoint)) {
      if (!insecure) {
        std::cerr << "seppo-worker: refusing to connect to " << endpoint
                  << " without CurveZMQ keys: the traffic would be plaintext and anyone posing "
                     "as the broker could send this worker tasks. Give --curve-secret-key and "
                     "--curve-server-key (see seppo keygen), or accept the risk with --insecure\n";
        return 2;
      }
      log::warning("connecting to " + endpoint +
                   " without authentication or encryption (--insecure)");
    }
  } else if (secret_key_file.empty() || server_key_file.empty()) {
    std::cerr << "seppo-worker: CurveZMQ needs both --curve-secret-key and --curve-server-key\n";
    return 2;
  } else {
    try {
      if (!curve::available()) throw std::runtime_error("this libzmq was built without CurveZMQ");
      const curve::KeyPair keys = curve::read_secret_key_file(secret_key_file);
      session.curve_public_key = keys.public_key;
      session.curve_secret_key = keys.secret_key;
      session.curve_server_key = curve::read_public_key_file(server_key_file);
    } catch (const std::exception& e) {
      std::cerr << "seppo-worker: " << e.what() << "\n";
      return 1;
    }
  }

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
  for (const worker::CommandSpec& spec : command_specs) {
    if (!names.insert(spec.name).second) {
      std::cerr << "seppo-worker: --command " << spec.name
                << ": that name is already served (by a module or another --command)\n";
      return 2;
    }
    log::info("command " + spec.name + ": " + spec.command_template);
    functions.push_back(worker::command_function(spec));
  }
  std::string list;
  for (const auto& f : functions) list += (list.empty() ? "" : ", ") + f.name;
  log::info("serving " + list + " for " + endpoint);

  worker::SupervisorOptions supervisor;
  supervisor.processes = processes;
  supervisor.no_restart_status = worker::kExitForbidden;
  // systemd (Type=notify, NotifyAccess=all): ready once a worker process runs, so the
  // supervisor's signal handlers are in place; a restarted process repeats it, harmlessly.
  // Whether the processes registered is the broker's to say (seppo status).
  const std::string ready = "READY=1\nSTATUS=serving " + list + " for " + endpoint;
  const int status = worker::supervise(supervisor, [&] {
    notify::send(ready);
    return worker::run_session(session, functions);
  });
  notify::send("STOPPING=1");
  return status;
}
