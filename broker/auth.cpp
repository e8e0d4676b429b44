#include "broker/auth.hpp"

#include <atomic>
#include <cstdlib>
#include <stdexcept>

#include <zmq_addon.hpp>

#include "common/curve.hpp"

namespace seppo::broker {
namespace {

constexpr auto kRefusalLogInterval = std::chrono::seconds(60);
constexpr std::size_t kMaxRefusalsRemembered = 4096;

std::string describe(const std::string& fingerprint, const std::string& label) {
  return label.empty() ? fingerprint : fingerprint + " (" + label + ")";
}

}  // namespace

std::shared_ptr<const KeyLists> KeyLists::load(const AuthConfig& config) {
  auto lists = std::make_shared<KeyLists>();
  for (const auto& [path, role] :
       {std::pair{config.workers, Role::Worker}, std::pair{config.clients, Role::Client}}) {
    if (path.empty()) continue;
    for (curve::AuthorizedKey& k : curve::read_authorized(path)) {
      auto [entry, added] = lists->keys_.try_emplace(k.key, Entry{role, k.label});
      if (!added && entry->second.role != role && entry->second.role != Role::Any) {
        entry->second.role = Role::Any;
        lists->warnings_.push_back("key " + describe(curve::fingerprint(k.key), k.label) +
                                   " is authorised both as a worker and as a client (" + k.origin +
                                   "): it may do both");
      }
    }
  }
  for (const auto& [key, entry] : lists->keys_) {
    if (entry.role != Role::Client) ++lists->workers_;
    if (entry.role != Role::Worker) ++lists->clients_;
  }
  return lists;
}

std::optional<Role> KeyLists::role_of(std::string_view key) const {
  auto it = keys_.find(key);
  if (it == keys_.end()) return std::nullopt;
  return it->second.role;
}

const std::string& KeyLists::label_of(std::string_view key) const {
  static const std::string none;
  auto it = keys_.find(key);
  return it == keys_.end() ? none : it->second.label;
}

std::string KeyLists::summary() const {
  return std::to_string(workers_) + " worker key" + (workers_ == 1 ? "" : "s") + ", " +
         std::to_string(clients_) + " client key" + (clients_ == 1 ? "" : "s");
}

std::string user_id(Role role, std::string_view key) {
  return std::string(role_name(role)) + ":" + std::string(key);
}

std::optional<Admitted> parse_user_id(std::string_view text) {
  const auto colon = text.find(':');
  if (colon == std::string_view::npos) return std::nullopt;
  const std::string_view role = text.substr(0, colon);
  const std::string_view key = text.substr(colon + 1);
  if (key.size() != curve::kZ85Chars) return std::nullopt;
  for (Role r : {Role::Worker, Role::Client, Role::Any}) {
    if (role == role_name(r)) return Admitted{r, key};
  }
  return std::nullopt;
}

std::optional<Role> still_permitted(Role admitted, std::optional<Role> current) {
  if (!current) return std::nullopt;
  if (admitted == Role::Any) return current;
  if (*current == Role::Any || *current == admitted) return admitted;
  return std::nullopt;
}

Authenticator::Authenticator(zmq::context_t& context, AuthConfig config,
                             std::shared_ptr<const KeyLists> lists, LogSink log)
    : config_(std::move(config)),
      log_(std::move(log)),
      lists_(std::move(lists)),
      pipe_(context, zmq::socket_type::pair) {
  static std::atomic<unsigned> instances{0};
  const std::string pipe_endpoint = "inproc://seppo-zap-pipe-" + std::to_string(++instances);
  pipe_.bind(pipe_endpoint);
  zmq::socket_t child(context, zmq::socket_type::pair);
  child.connect(pipe_endpoint);
  // Bound here, before the thread starts, so the handler is in place when this returns and a
  // second one in the same context fails loudly (EADDRINUSE) instead of quietly.
  zmq::socket_t zap(context, zmq::socket_type::rep);
  zap.set(zmq::sockopt::linger, 0);
  zap.bind("inproc://zeromq.zap.01");
  thread_ = std::thread([this, child = std::move(child), zap = std::move(zap)]() mutable {
    try {
      run(child, zap);
    } catch (const std::exception& e) {
      // Without a handler libzmq would admit every key: never carry on without one.
      this->log(LogLevel::Error, std::string("authentication handler failed: ") + e.what() +
                                     "; stopping the broker");
      std::_Exit(1);
    }
  });
}

void Authenticator::run(zmq::socket_t& pipe, zmq::socket_t& zap) {
  std::vector<zmq::pollitem_t> items = {{pipe.handle(), 0, ZMQ_POLLIN, 0},
                                        {zap.handle(), 0, ZMQ_POLLIN, 0}};
  while (true) {
    try {
      zmq::poll(items, std::chrono::milliseconds(-1));
    } catch (const zmq::error_t& e) {
      if (e.num() == EINTR) continue;
      throw;
    }
    if (items[0].revents & ZMQ_POLLIN) {
      zmq::message_t command;
      (void)pipe.recv(command);
      if (command.to_string_view() == "TERM") return;
      Reload result;
      try {
        std::shared_ptr<const KeyLists> fresh = KeyLists::load(config_);
        for (const std::string& w : fresh->warnings()) log(LogLevel::Warning, w);
        result = Reload{true, fresh->summary()};
        std::lock_guard<std::mutex> lock(mutex_);
        lists_ = std::move(fresh);
      } catch (const std::exception& e) {
        result = Reload{false, e.what()};
      }
      pipe.send(zmq::buffer(std::string(result.ok ? "OK " : "ERROR ") + result.message));
    }
    if (items[1].revents & ZMQ_POLLIN) answer(zap);
  }
}

Authenticator::~Authenticator() {
  try {
    pipe_.send(zmq::str_buffer("TERM"), zmq::send_flags::none);
  } catch (const zmq::error_t&) {
  }
  thread_.join();
}

Authenticator::Reload Authenticator::reload() {
  pipe_.send(zmq::str_buffer("RELOAD"), zmq::send_flags::none);
  zmq::message_t reply;
  (void)pipe_.recv(reply);
  const std::string text = reply.to_string();
  if (text.rfind("OK ", 0) == 0) return Reload{true, text.substr(3)};
  return Reload{false, text.substr(text.find(' ') + 1)};
}

std::shared_ptr<const KeyLists> Authenticator::lists() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return lists_;
}

void Authenticator::log(LogLevel level, const std::string& text) const {
  if (log_) log_(level, text);
}

// One ZAP request (RFC 27): version, request id, domain, address, routing id, mechanism, then
// the mechanism's credentials, for CURVE the client's 32-byte public key. Every request gets a
// reply, or the REP socket would stop answering.
void Authenticator::answer(zmq::socket_t& zap) {
  std::vector<zmq::message_t> request;
  if (!zmq::recv_multipart(zap, std::back_inserter(request), zmq::recv_flags::dontwait)) return;
  auto frame = [&](std::size_t i) {
    return i < request.size() ? request[i].to_string_view() : std::string_view();
  };
  const std::string address(frame(3));
  std::string status = "400";
  std::string text;
  std::string user;
  if (request.size() < 6 || frame(0) != "1.0") {
    text = "malformed ZAP request";
  } else if (frame(2) != curve::kZapDomain) {
    text = "unknown ZAP domain";
  } else if (frame(5) != "CURVE" || request.size() != 7 || request[6].size() != curve::kKeyBytes) {
    text = "CurveZMQ required";
  } else {
    const std::string key = curve::encode(request[6].to_string_view());
    const std::shared_ptr<const KeyLists> lists = this->lists();
    const std::optional<Role> role = lists->role_of(key);
    const std::string who = describe(curve::fingerprint(key), lists->label_of(key));
    if (role) {
      status = "200";
      text = "OK";
      user = user_id(*role, key);
      log(LogLevel::Info,
          std::string("admitted ") + role_name(*role) + " key " + who + " from " + address);
    } else {
      text = "key not authorised";
      const auto now = std::chrono::steady_clock::now();
      if (refused_.size() > kMaxRefusalsRemembered) refused_.clear();
      auto [entry, first] = refused_.try_emplace(key, now, 0u);
      if (first || now - entry->second.first >= kRefusalLogInterval) {
        const unsigned since = entry->second.second;
        log(LogLevel::Warning,
            "refused a connection from " + address + ": key " + who + " is not authorised" +
                (since ? " (and " + std::to_string(since) + " more attempts in the last minute)"
                       : std::string()));
        entry->second = {now, 0u};
      } else {
        ++entry->second.second;
      }
    }
  }
  std::vector<zmq::message_t> reply;
  reply.emplace_back(std::string_view("1.0"));
  reply.emplace_back(frame(1));
  reply.emplace_back(std::string_view(status));
  reply.emplace_back(std::string_view(text));
  reply.emplace_back(std::string_view(user));
  reply.emplace_back();  // no metadata
  zmq::send_multipart(zap, reply);
}

}  // namespace seppo::broker
