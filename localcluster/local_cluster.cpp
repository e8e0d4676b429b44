#include "seppo/local_cluster.hpp"

#include <sys/eventfd.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <future>
#include <map>
#include <mutex>
#include <set>
#include <thread>

#include "broker/core.hpp"
#include "broker/server.hpp"
#include "common/host.hpp"
#include "common/log.hpp"
#include "libclient/client_access.hpp"
#include "localcluster/local_manager.hpp"
#include "localcluster/local_registry.hpp"
#include "localcluster/module_path.hpp"

namespace seppo {
namespace {

// A private folder for the broker's ipc:// socket: mode 0700, so no other user can connect.
std::string private_folder() {
  const char* tmp = std::getenv("TMPDIR");
  std::string base = tmp != nullptr && *tmp != '\0' ? tmp : "/tmp";
  // A socket's path must fit in sockaddr_un (108 bytes), "/broker" included.
  if (base.size() > 60) base = "/tmp";
  std::string pattern = base + "/seppo-local-XXXXXX";
  if (::mkdtemp(pattern.data()) == nullptr) {
    throw Error("cannot start a local cluster: cannot create a folder in " + base + ": " +
                std::strerror(errno));
  }
  return pattern;
}

}  // namespace

struct __attribute__((visibility("hidden"))) LocalCluster::State {
  LocalClusterOptions options;
  unsigned workers = 0;
  std::string folder;
  std::string endpoint;
  std::unique_ptr<local::Manager> manager;
  std::unique_ptr<broker::Core> core;
  int stop_fd = -1;
  std::thread broker;
  pid_t owner = ::getpid();

  std::mutex mutex;  // require() may come from clients in several threads
  std::map<std::string, std::vector<std::string>> modules;  // served: module -> its functions
  std::map<std::string, local::ModuleSource> sources;
  bool stopped = false;

  ~State() { stop(); }

  void start_broker() {
    stop_fd = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (stop_fd < 0)
      throw Error(std::string("cannot start a local broker: ") + std::strerror(errno));
    broker::Config config;
    config.heartbeat = options.heartbeat;
    core = std::make_unique<broker::Core>(config, random_u64(), log::write);
    auto ready = std::make_shared<std::promise<std::string>>();
    std::future<std::string> bound = ready->get_future();
    broker::ServerOptions server;
    server.endpoints = {endpoint};
    server.handle_signals = false;
    server.stop_fd = stop_fd;
    server.shutdown_grace = std::chrono::milliseconds(200);
    broker = std::thread([this, server, ready]() mutable {
      bool told = false;
      server.on_ready = [&](const std::vector<std::string>&, const std::string& error) {
        told = true;
        ready->set_value(error);
      };
      try {
        broker::serve(server, *core);
      } catch (const std::exception& e) {
        log::error(std::string("local broker: ") + e.what());
        if (!told) ready->set_value(e.what());
      }
    });
    const std::string error = bound.get();
    if (!error.empty()) throw Error("cannot start a local broker on " + endpoint + ": " + error);
  }

  // Loads a module into the manager (without restarting the workers) and records it.
  void add(const local::ModuleSource& source) {
    std::vector<std::string> names;
    try {
      names = source.python ? manager->load_python(source.module, source.folder)
                            : manager->load(source.file);
    } catch (const ConnectionError&) {
      throw;
    } catch (const Error& e) {
      if (source.by_name) throw UnknownFunctionError(source.function, source.missing);
      throw UnknownFunctionError(source.function, source.function + ": " + e.what());
    }
    modules[source.module] = names;
    sources[source.module] = source;
  }

  void require(std::string_view function) {
    std::lock_guard lock(mutex);
    if (stopped) throw ConnectionError("this local cluster was stopped");
    const auto [module, name] = local::split_function(function);
    if (const auto it = modules.find(module); it != modules.end()) {
      local::ModuleSource source = sources.at(module);
      source.function = std::string(function);
      local::check_provides(source, it->second);
      return;
    }
    const local::ModuleSource source = local::locate(function, options.module_path);
    if (source.registered) {
      throw UnknownFunctionError(source.function,
                                 source.function + ": module " + module +
                                     " was registered after this local cluster started");
    }
    add(source);
    // The new module is loaded whether or not it has the function: the next workers serve it.
    manager->start(workers);
    local::check_provides(source, modules.at(module));
  }

  void stop() noexcept {
    {
      std::lock_guard lock(mutex);
      stopped = true;
    }
    // Workers first: leaving, they return their unfinished tasks to a broker still there.
    if (manager) manager->stop();
    if (::getpid() != owner) {
      // A fork of the program: the broker thread does not exist here; the cluster is not ours.
      if (broker.joinable()) broker.detach();
    } else if (broker.joinable()) {
      const std::uint64_t one = 1;
      [[maybe_unused]] const ssize_t n = ::write(stop_fd, &one, sizeof one);
      broker.join();
    }
    if (stop_fd >= 0) ::close(stop_fd);
    stop_fd = -1;
    if (!folder.empty() && ::getpid() == owner) {
      std::error_code ignored;
      std::filesystem::remove_all(folder, ignored);
    }
    folder.clear();
  }
};

LocalClusterOptions LocalClusterOptions::from_env() {
  LocalClusterOptions options;
  options.module_path = environment(local::kModulePathVariable);
  return options;
}

LocalCluster::LocalCluster(unsigned workers, LocalClusterOptions options)
    : state_(std::make_shared<State>()) {
  State& s = *state_;
  s.options = std::move(options);
  try {
    log::set_level(log::parse_level(s.options.log_level));
  } catch (const std::invalid_argument& e) {
    throw Error(std::string("LocalClusterOptions::log_level: ") + e.what());
  }
  s.workers = workers != 0 ? workers : std::max(1u, std::thread::hardware_concurrency());
  s.folder = private_folder();
  s.endpoint = "ipc://" + s.folder + "/broker";

  local::ManagerOptions manager;
  manager.session.endpoint = s.endpoint;
  manager.session.heartbeat = s.options.heartbeat;
  manager.stop_grace = s.options.stop_grace;
  manager.stdout_to_stderr = s.options.worker_stdout_to_stderr;
  manager.folder = s.folder;
  manager.log_level = s.options.log_level;
  for (local::RegisteredModule& m : local::registered_modules()) {
    std::vector<std::string> names;
    for (const worker::Function& f : m.functions) names.push_back(f.name);
    s.modules[m.name] = names;
    s.sources[m.name] = local::ModuleSource{"", m.name, true, "", false, "", false, ""};
    manager.functions.insert(manager.functions.end(), m.functions.begin(), m.functions.end());
  }
  // Forked before the broker's thread exists: the manager must be a single-threaded process.
  s.manager = std::make_unique<local::Manager>(manager);
  s.start_broker();

  for (const std::string& wanted : s.options.modules) {
    local::ModuleSource source;
    if (wanted.find('/') != std::string::npos) {
      source = local::ModuleSource{
          wanted, worker::module_name(wanted), false, wanted, false, "", false, ""};
    } else {
      source = local::locate_module(wanted, wanted, s.options.module_path);
    }
    if (s.modules.count(source.module) == 0) s.add(source);
  }
  if (!s.modules.empty()) s.manager->start(s.workers);
}

LocalCluster::~LocalCluster() = default;
LocalCluster::LocalCluster(LocalCluster&&) noexcept = default;
LocalCluster& LocalCluster::operator=(LocalCluster&&) noexcept = default;

Client LocalCluster::client(ClientOptions options) const {
  // The endpoint is a private ipc:// socket: keys meant for a remote broker do not apply.
  options.curve_secret_key_file.clear();
  options.curve_server_key_file.clear();
  // Until the broker announces its heartbeat, a slower client would look vanished to it.
  options.heartbeat = std::min(options.heartbeat, state_->options.heartbeat);
  // Its workers are being started for the function: wait for them to announce it.
  if (options.worker_wait.count() == 0) options.worker_wait = std::chrono::seconds(10);
  std::weak_ptr<State> weak = state_;
  Client client(state_->endpoint, std::move(options));
  detail::ClientAccess::set_before_submit(client, [weak](const std::string& function) {
    const std::shared_ptr<State> state = weak.lock();
    if (!state) throw ConnectionError("the local cluster of this client was stopped");
    state->require(function);
  });
  return client;
}

void LocalCluster::require(std::string_view function) {
  state_->require(function);
}

const std::string& LocalCluster::endpoint() const {
  return state_->endpoint;
}

unsigned LocalCluster::workers() const {
  return state_->workers;
}

std::vector<pid_t> LocalCluster::worker_pids() const {
  std::lock_guard lock(state_->mutex);
  return state_->manager->pids();
}

pid_t LocalCluster::manager_pid() const {
  return state_->manager->pid();
}

}  // namespace seppo
