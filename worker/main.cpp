// seppo-worker: serves the functions of the modules its operator names to a broker.
#include <sched.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <iostream>
#include <optional>
#include <set>
#include <thread>

#include <CLI/CLI.hpp>

#include "common/curve.hpp"
#include "common/duration.hpp"
#include "common/endpoint.hpp"
#include "common/endpoint_list.hpp"
#include "common/journal.hpp"
#include "common/log.hpp"
#include "common/notify.hpp"
#include "common/version.hpp"
#include "protocol/wire.hpp"
#include "worker/executor.hpp"
#include "worker/module_loader.hpp"
#include "worker/module_probe.hpp"
#ifdef SEPPO_WITH_PYTHON
#include "worker/python_functions.hpp"
#endif
#include "worker/session.hpp"
#include "worker/shell_command.hpp"
#include "worker/supervisor.hpp"

namespace {

// One process per CPU this process may run on (taskset, cgroups' cpusets), and no more than a
// batch system allocated on this node.
unsigned default_processes() {
  unsigned cpus = std::max(1u, std::thread::hardware_concurrency());
  cpu_set_t set;
  CPU_ZERO(&set);
  if (::sched_getaffinity(0, sizeof set, &set) == 0) {
    cpus = std::max(1, CPU_COUNT(&set));
  }
  if (const char* slurm = std::getenv("SLURM_CPUS_ON_NODE")) {
    char* end = nullptr;
    const long allocated = std::strtol(slurm, &end, 10);
    if (end != slurm && allocated > 0 && static_cast<unsigned long>(allocated) < cpus) {
      cpus = static_cast<unsigned>(allocated);
    }
  }
  return cpus;
}

}  // namespace

int main(int argc, char** argv) {
  using namespace seppo;
  log::set_program("seppo-worker");
  journal::install();
  CLI::App app{
      "seppo-worker: runs functions from modules (shared objects), and shell commands\n"
      "its operator names, for a seppo broker. Each function of path/to/libNAME.so is\n"
      "announced as NAME.FUNCTION, each --command NAME=TEMPLATE as NAME."};
  app.footer(
      "Examples:\n"
      "  seppo-worker --module build/examples/example_module/libexample_module.so\n"
      "  seppo-worker --command thumbnail='convert {} {.}.png'\n"
      "      (then: ls *.jpg | seppo map thumbnail)\n"
      "  seppo-worker -j 8 --broker tcp://head-node:5555 --module ~/lib/libphysics.so \\\n"
      "      --curve-secret-key ~/.seppo/node7.key_secret --curve-server-key ~/.seppo/broker.key\n"
      "  srun --ntasks-per-node=1 seppo-worker --broker \"$(head -1 broker-endpoint)\" \\\n"
      "      --insecure --exit-when-idle 60s --module libphysics.so    # in a Slurm job\n\n"
      "Without CurveZMQ keys the worker connects only to a broker on this machine (loopback or\n"
      "ipc://), unless --insecure.\n"
      "Commands: {} is the input, {.} without its extension, {/} its basename, {//} its\n"
      "directory, {/.} its basename without extension; ' {}' is appended when the template\n"
      "has none; {#} is the item's job number (sent by seppo map), {%} this process's slot (1\n"
      "to -j). Input is never code: each replacement string becomes a quoted reference to a\n"
      "positional parameter (\"$1\", inside quotes too) and the values are the shell's\n"
      "arguments, so only what the template itself runs as code (eval {}, sh -c {}) can run\n"
      "them. The command runs with the --shell (default /bin/sh) as SHELL -c SCRIPT SHELL ARGS;\n"
      "its stdout, less one trailing newline, is the result; a non-zero exit status or a signal\n"
      "is an error for that item, with the end of its stderr.\n"
      "SIGHUP reloads the modules: the files are read again, what changed is logged, and the\n"
      "processes are replaced one at a time (each finishes its running task first); a module\n"
      "that no longer loads is reported and the running processes are kept.\n"
      "Exit status: 0 after SIGINT/SIGTERM, or when every process left under --exit-when-idle;\n"
      "1 if a module or key file cannot be loaded, or the broker accepts the key but not as a\n"
      "worker's; 2 on bad usage, including a remote broker without keys, a malformed --command\n"
      "or one named like a module's function.\n"
      "Environment: SEPPO_BROKER is the default for --broker, SEPPO_CURVE_SECRET_KEY for\n"
      "--curve-secret-key, SEPPO_CURVE_SERVER_KEY for --curve-server-key.");
  app.set_version_flag("--version", version_line("seppo-worker", wire::kVersion));

  std::string endpoint = default_broker_endpoint();
  std::vector<std::string> modules;
  std::vector<std::string> commands;
  std::vector<std::string> python_modules;
  unsigned processes = default_processes();
  std::string level = "info";
  worker::SessionOptions session;
  std::int64_t heartbeat_ms = session.heartbeat.count();
  app.add_option("-b,--broker", endpoint,
                 "broker endpoint, or a pair's two, comma-separated, the primary first (default "
                 "$SEPPO_BROKER or " +
                     std::string(kDefaultEndpointHelp) + ")");
  app.add_option("-m,--module", modules, "module to serve: path to libNAME.so (repeatable)");
#ifdef SEPPO_WITH_PYTHON
  app.add_option("--python", python_modules,
                 "Python module to serve, imported by name from SEPPO_MODULE_PATH, PYTHONPATH "
                 "or sys.path; its public functions become MODULE.fn (repeatable)");
#endif
  app.add_option("--command", commands,
                 "a shell command to serve as NAME: NAME=TEMPLATE, e.g. "
                 "thumbnail='convert {} {.}.png' (repeatable)");
  bool allow_any_command = false;
  app.add_flag("--allow-any-command", allow_any_command,
               "serve --command templates that run their input as code (sh -c {}, eval {}, {} as "
               "the program): any client may then run anything as this worker's user");
  worker::CommandLimits command_limits;
  app.add_option("--shell", command_limits.shell,
                 "the shell that runs --command templates (absolute path), e.g. /bin/bash for "
                 "[[ ]], {a,b} and echo -e as bash has them")
      ->capture_default_str()
      ->check(CLI::ExistingFile);
  app.add_flag("--client-folders", command_limits.client_folders,
               "run each --command item in the client's folder (seppo map sends it), so relative "
               "file names work on a shared file system; clients then choose the folder, and so "
               "what ./tool or a Makefile there runs");
  app.add_flag("--allow-stdin", command_limits.allow_stdin,
               "let clients give each --command item a block on stdin (seppo map --pipe); a "
               "command that reads stdin as code (python3 with no file) then runs theirs");
  app.add_flag("--allow-context-replace", command_limits.allow_context_replace,
               "let clients ask for GNU parallel's -X on --command items (seppo map -X): each "
               "word holding {} repeated per argument, which changes what a template such as "
               "cp {} /out/{/} does");
  app.add_option("--allow-env", command_limits.allow_env,
                 "let clients set these variables for --command items (seppo map --env NAME): "
                 "NAME,... (repeatable); PATH, LD_PRELOAD and the like then let a client choose "
                 "what runs")
      ->delimiter(',')
      ->type_name("NAME,...")
      ->check([](const std::string& name) {
        const bool ok = !name.empty() &&
                        (std::isalpha(static_cast<unsigned char>(name[0])) || name[0] == '_') &&
                        std::all_of(name.begin(), name.end(), [](char c) {
                          return std::isalnum(static_cast<unsigned char>(c)) || c == '_';
                        });
        return ok ? std::string() : "not a variable name: " + name;
      });
  app.add_option("-j,--jobs", processes,
                 "worker processes to run (default: one per CPU in this process' affinity "
                 "mask, at most $SLURM_CPUS_ON_NODE)")
      ->check(CLI::Range(1u, 4096u));
  app.add_option("--prefetch", session.prefetch,
                 "tasks each process holds at once, one running and the rest waiting "
                 "(default: adapted to how long tasks take)")
      ->check(CLI::Range(1u, 1024u));
  bool no_batch = false;
  app.add_flag("--no-batch", no_batch,
               "take one task per message and send one result per message, as workers before "
               "0.1.0 did (the protocol feature \"batch\" is not announced); for comparisons "
               "and tests of older workers");
  app.add_flag("--no-inline", session.no_inline,
               "run every task on each process' executor thread: by default a lone task of a "
               "C++ module function runs on the process' main thread (fewer wake-ups), so a "
               "module's thread_local state and per-thread pools (OpenMP) may exist twice");
  app.add_option("--heartbeat-ms", heartbeat_ms,
                 "heartbeat interval until the broker announces its own")
      ->capture_default_str()
      ->check(CLI::Range(10, 600000));
  std::string idle_text;
  app.add_option("--exit-when-idle", idle_text,
                 "a process that held no task for DURATION (30s, 500ms, 5m; a bare number is "
                 "seconds) says goodbye and exits, and every process leaves at once when the "
                 "broker says it is shutting down; seppo-worker exits 0 when all have left. "
                 "For batch jobs. Without it, workers serve until stopped and wait for a "
                 "broker that went away")
      ->type_name("DURATION");
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
  bool list_functions = false;
  app.add_flag("--list-functions", list_functions,
               "print the functions the modules provide, one per line, and exit (local clusters "
               "use it to learn a Python module's functions)");
  app.add_option("--log-level", level, "debug, info, warning or error")
      ->capture_default_str()
      ->check(CLI::IsMember({"debug", "info", "warning", "error"}));
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 2;  // bad usage
  }
  log::set_level(log::parse_level(level));
  if (modules.empty() && commands.empty() && python_modules.empty()) {
    std::cerr
        << "seppo-worker: nothing to serve: give at least one --module, --python or --command\n";
    return 2;
  }
  // Parsed before anything connects, so a typo fails the command at once.
  std::vector<worker::CommandSpec> command_specs;
  try {
    for (const std::string& option : commands) {
      command_specs.push_back(worker::parse_command_option(option, allow_any_command));
    }
  } catch (const std::invalid_argument& e) {
    std::cerr << "seppo-worker: " << e.what() << "\n";
    return 2;
  }
  if (!idle_text.empty()) {
    const std::optional<std::chrono::milliseconds> idle = parse_duration(idle_text);
    if (!idle) {
      std::cerr << "seppo-worker: --exit-when-idle " << idle_text << ": not a duration ("
                << kDurationForms << ")\n";
      return 2;
    }
    // For batch jobs (Slurm): leave when the work is done, or at once when the broker leaves.
    session.exit_when_idle = *idle;
    session.exit_on_broker_bye = true;
  }
  session.endpoint = endpoint;
  session.batch = !no_batch;
  session.heartbeat = std::chrono::milliseconds(heartbeat_ms);

  // A pair of brokers (§15.4): every endpoint of the list passes the same checks.
  const std::vector<std::string> endpoints = split_endpoints(endpoint);
  for (const std::string& one : endpoints) {
    try {
      // The default endpoint's folder must be ours: another user's could hold their broker.
      check_private_endpoint(one, false);
    } catch (const std::exception& e) {
      std::cerr << "seppo-worker: will not connect to " << one << ": " << e.what() << "\n";
      return 1;
    }
  }
  const bool all_local = std::all_of(endpoints.begin(), endpoints.end(),
                                     [](const std::string& e) { return is_local_endpoint(e); });
  if (secret_key_file.empty() && server_key_file.empty()) {
    if (!all_local) {
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

  // Each process loads the modules itself, so SIGHUP can have new processes load changed files;
  // a probe first makes a bad module fail the command at once.
  worker::ProbeResult probe = worker::probe_modules(modules);
  if (!probe.error.empty()) {
    std::cerr << "seppo-worker: " << probe.error << "\n";
    return 1;
  }
  std::set<std::string> names(probe.functions.begin(), probe.functions.end());
  // Python functions start their interpreter in each process when it starts; their names are
  // read by a throw-away child process (python_functions), at start and again on SIGHUP, which
  // so checks a changed module before any running process is replaced.
  const auto load_python = [&](std::set<std::string> taken) {
    std::vector<worker::Function> loaded;
#ifdef SEPPO_WITH_PYTHON
    for (const std::string& module : python_modules) {
      for (worker::Function& f : worker::python_functions(module)) {
        if (!taken.insert(f.name).second) {
          throw std::runtime_error("function " + f.name + " is provided by two modules");
        }
        loaded.push_back(std::move(f));
      }
    }
#else
    (void)taken;
#endif
    return loaded;
  };
  std::vector<worker::Function> functions;
  try {
    functions = load_python(names);
  } catch (const std::exception& e) {
    std::cerr << "seppo-worker: " << e.what() << "\n";
    return 1;
  }
  for (const worker::Function& f : functions) names.insert(f.name);
  const std::size_t python_count = functions.size();
  for (const worker::CommandSpec& spec : command_specs) {
    if (!names.insert(spec.name).second) {
      std::cerr << "seppo-worker: --command " << spec.name
                << ": that name is already served (by a module or another --command)\n";
      return 2;
    }
    // The broker's CANCEL (a time limit, a cancelled job) kills the running command's group.
    worker::CommandLimits limits = command_limits;
    limits.cancel = &worker::Executor::abandon_flag();
    functions.push_back(worker::command_function(spec, limits));
  }
  // The log's first line, once the options are known to be good (a bad one is a one-line
  // error): which build runs, so mixed versions in a cluster show in the logs.
  if (!list_functions) {
    log::info(version_line("seppo-worker", wire::kVersion) + ", process " +
              std::to_string(::getpid()));
    for (const worker::CommandSpec& spec : command_specs) {
      log::info("command " + spec.name + ": " + spec.command_template);
    }
  }
  if (list_functions) {
    for (const auto& name : probe.functions) std::cout << name << "\n";
    for (const auto& f : functions) std::cout << f.name << "\n";
    return std::cout.flush() ? 0 : 1;
  }
  std::string list;
  for (const auto& name : probe.functions) list += (list.empty() ? "" : ", ") + name;
  for (const auto& f : functions) list += (list.empty() ? "" : ", ") + f.name;
  log::info("serving " + list + " for " + endpoint);

  worker::SupervisorOptions supervisor;
  supervisor.processes = processes;
  supervisor.no_restart_status = worker::kExitForbidden;
  supervisor.replace_status = worker::kExitAbandoned;
  if (!idle_text.empty()) supervisor.done_status = worker::kExitIdle;
  const auto names_of = [](std::vector<std::string> modules_served,
                           const std::vector<worker::Function>& python) {
    for (const worker::Function& f : python) modules_served.push_back(f.name);
    return modules_served;
  };
  std::vector<std::string> served = names_of(
      probe.functions,
      std::vector<worker::Function>(functions.begin(),
                                    functions.begin() + static_cast<std::ptrdiff_t>(python_count)));
  const std::vector<worker::Function> command_functions(
      functions.begin() + static_cast<std::ptrdiff_t>(python_count), functions.end());
  supervisor.reload = [&] {
    worker::ProbeResult now = worker::probe_modules(modules);
    if (!now.error.empty()) {
      log::error("received SIGHUP: keeping the running processes: " + now.error);
      return false;
    }
    // The Python modules are imported afresh in a child: one that no longer imports keeps the
    // running processes, as a C++ module that no longer loads does.
    std::vector<worker::Function> python;
    try {
      python = load_python(std::set<std::string>(now.functions.begin(), now.functions.end()));
    } catch (const std::exception& e) {
      log::error(std::string("received SIGHUP: keeping the running processes: ") + e.what());
      return false;
    }
    // The same rule as at start: a module may not take the name of a command, which each
    // process would otherwise silently replace by the module's.
    for (const std::string& name : names_of(now.functions, python)) {
      if (std::any_of(command_functions.begin(), command_functions.end(),
                      [&](const worker::Function& f) { return f.name == name; })) {
        log::error("received SIGHUP: keeping the running processes: " + name +
                   " is also served by a --command");
        return false;
      }
    }
    const std::vector<std::string> serving = names_of(now.functions, python);
    const std::string change = worker::describe_change(served, serving);
    log::info("received SIGHUP: modules reloaded: " +
              (change.empty() ? std::string("no function added or removed") : change));
    served = serving;
    // What the next processes serve: fork copies this list into each.
    functions = std::move(python);
    functions.insert(functions.end(), command_functions.begin(), command_functions.end());
    return true;
  };
  // systemd (Type=notify, NotifyAccess=all): ready once a worker process runs, so the
  // supervisor's signal handlers are in place; a restarted process repeats it, harmlessly.
  // Whether the processes registered is the broker's to say (seppo status).
  const std::string ready = "READY=1\nSTATUS=serving " + list + " for " + endpoint;
  const int status = worker::supervise(supervisor, [&] {
    notify::send(ready);
    std::vector<worker::Function> all;
    try {
      for (const std::string& path : modules) {
        for (worker::Function& f : worker::load_module(path)) all.push_back(std::move(f));
      }
    } catch (const std::exception& e) {
      log::error(e.what());
      return 1;
    }
#ifdef SEPPO_WITH_PYTHON
    worker::import_python_modules(python_modules);
#endif
    for (const worker::Function& f : functions) {
      if (std::none_of(all.begin(), all.end(), [&](const auto& g) { return g.name == f.name; })) {
        all.push_back(f);
      }
    }
    return worker::run_session(session, all);
  });
  notify::send("STOPPING=1");
  return status;
}
