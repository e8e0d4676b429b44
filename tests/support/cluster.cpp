#include "tests/support/cluster.hpp"

#include <regex>
#include <stdexcept>

namespace seppo::test {

std::string Paths::broker() { return SEPPO_TEST_BROKER; }
std::string Paths::worker() { return SEPPO_TEST_WORKER; }
std::string Paths::cli() { return SEPPO_TEST_CLI; }
std::string Paths::example_module() { return SEPPO_TEST_EXAMPLE_MODULE; }
std::string Paths::hello_world() { return SEPPO_TEST_HELLO_WORLD; }

Cluster::Cluster(std::vector<std::string> broker_args) : broker_args_(std::move(broker_args)) {
  start_broker("tcp://127.0.0.1:*");
}

Cluster::Cluster(std::vector<std::string> broker_args, ClientOptions client,
                 std::vector<std::string> worker_args)
    : broker_args_(std::move(broker_args)),
      client_(std::move(client)),
      worker_args_(std::move(worker_args)) {
  start_broker("tcp://127.0.0.1:*");
}

Cluster::~Cluster() {
  workers_.clear();  // workers first, so they do not spend their last moments reconnecting
  broker_.reset();
}

void Cluster::start_broker(const std::string& bind) {
  const auto log = dir_.path() / ("broker-" + std::to_string(++broker_starts_) + ".log");
  std::vector<std::string> argv = {Paths::broker(), "--bind", bind, "--log-level", "debug"};
  argv.insert(argv.end(), broker_args_.begin(), broker_args_.end());
  broker_ = std::make_unique<Process>(argv, log);
  // The broker logs the port the system chose: "listening on tcp://127.0.0.1:NNNNN".
  const std::regex listening("listening on (tcp://[0-9.]+:[0-9]+)");
  std::smatch match;
  std::string text;
  const bool up = eventually([&] {
    text = read_file(log);
    return std::regex_search(text, match, listening) || !broker_->running();
  });
  if (!up || match.empty()) throw std::runtime_error("broker did not start:\n" + text);
  endpoint_ = match[1];
}

void Cluster::restart_broker() { start_broker(endpoint_); }

Process& Cluster::add_worker(unsigned processes, std::vector<std::string> extra) {
  std::vector<std::string> args = {"-j", std::to_string(processes), "--heartbeat-ms", "100"};
  args.insert(args.end(), worker_args_.begin(), worker_args_.end());
  args.insert(args.end(), extra.begin(), extra.end());
  return add_worker_at(endpoint_, args);
}

Process& Cluster::add_worker_at(const std::string& endpoint, std::vector<std::string> args) {
  const auto log = dir_.path() / ("worker-" + std::to_string(workers_.size()) + ".log");
  std::vector<std::string> argv = {Paths::worker(), "--broker", endpoint, "--module",
                                   Paths::example_module()};
  argv.insert(argv.end(), args.begin(), args.end());
  workers_.push_back(std::make_unique<Process>(argv, log));
  return *workers_.back();
}

ClientOptions Cluster::client_options() const {
  ClientOptions options = client_;
  options.timeout = 20s;
  options.worker_wait = 5s;
  options.heartbeat = 100ms;
  return options;
}

msgpack::object_handle Cluster::status() {
  Client probe(endpoint_, client_options());
  return probe.status(2s);
}

namespace {

const msgpack::object* field(const msgpack::object& map, const std::string& name) {
  if (map.type != msgpack::type::MAP) return nullptr;
  for (std::uint32_t i = 0; i < map.via.map.size; ++i) {
    const auto& kv = map.via.map.ptr[i];
    if (kv.key.type == msgpack::type::STR &&
        std::string(kv.key.via.str.ptr, kv.key.via.str.size) == name) {
      return &kv.val;
    }
  }
  return nullptr;
}

std::size_t sum_of(const msgpack::object& list, const std::string& name) {
  std::size_t total = 0;
  if (list.type == msgpack::type::ARRAY) {
    for (std::uint32_t i = 0; i < list.via.array.size; ++i) {
      if (const auto* v = field(list.via.array.ptr[i], name)) total += v->as<std::size_t>();
    }
  } else if (list.type == msgpack::type::MAP) {
    for (std::uint32_t i = 0; i < list.via.map.size; ++i) {
      if (const auto* v = field(list.via.map.ptr[i].val, name)) total += v->as<std::size_t>();
    }
  }
  return total;
}

}  // namespace

std::optional<std::size_t> Cluster::status_figure(const char* list, const char* summed) {
  try {
    auto s = status();
    const auto* entries = field(s.get(), list);
    if (entries == nullptr) return std::nullopt;
    return summed == nullptr ? std::size_t{entries->via.array.size} : sum_of(*entries, summed);
  } catch (const Error&) {
    return std::nullopt;  // not up yet, or refused: the callers poll
  }
}

std::optional<std::size_t> Cluster::worker_count() { return status_figure("workers", nullptr); }
std::optional<std::size_t> Cluster::queued_count() { return status_figure("functions", "queued"); }
std::optional<std::size_t> Cluster::busy_count() { return status_figure("workers", "busy"); }

bool Cluster::wait_for_workers(std::size_t n, std::chrono::milliseconds timeout) {
  return eventually([&] { return worker_count() == n; }, timeout);
}

}  // namespace seppo::test
