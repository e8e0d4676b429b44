// Who may connect: the broker's ZAP handler (ZeroMQ RFC 27) and the key lists it judges by.
//
// With CURVE on, libzmq asks the handler bound at inproc://zeromq.zap.01 about every new
// connection once the peer has proved it holds the secret key of the public key it presents.
// The handler admits a key listed in --authorized-workers or --authorized-clients and answers
// User-Id "ROLE:KEY"; the socket loop reads that from each message's metadata and gives the
// role to the core, which refuses what the role may not send. Refused peers get no message.
//
// The handler is an actor, as czmq's zauth: a thread with its own REP socket, driven over an
// inproc PAIR pipe, started and stopped synchronously. It must be running before the broker's
// socket binds and until it is closed: libzmq admits every CURVE peer when no handler is bound.
#pragma once

#include <chrono>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_map>
#include <vector>

#include <zmq.hpp>

#include "broker/core.hpp"

namespace seppo::broker {

struct AuthConfig {
  std::string workers;  // --authorized-workers: a list file or a folder of *.key files
  std::string clients;  // --authorized-clients
};

// The keys admitted, with their roles. Immutable once loaded, shared by the handler's thread
// and the socket loop.
class KeyLists {
 public:
  // Reads both lists; throws std::runtime_error ("path:line: ...") when one cannot be read.
  static std::shared_ptr<const KeyLists> load(const AuthConfig& config);

  // Worker, Client, Any (listed in both), or nothing.
  std::optional<Role> role_of(std::string_view key) const;
  const std::string& label_of(std::string_view key) const;
  // "2 worker keys, 3 client keys" and anything odd worth a warning.
  std::string summary() const;
  const std::vector<std::string>& warnings() const { return warnings_; }

 private:
  struct Entry {
    Role role = Role::Any;
    std::string label;
  };
  // Looked up with a string_view for every message under CURVE: no allocation per lookup.
  struct Hash {
    using is_transparent = void;
    std::size_t operator()(std::string_view s) const { return std::hash<std::string_view>()(s); }
  };
  std::unordered_map<std::string, Entry, Hash, std::equal_to<>> keys_;
  std::size_t workers_ = 0, clients_ = 0;
  std::vector<std::string> warnings_;
};

// "worker:KEY" and back. A role and a key that a connection was admitted with.
std::string user_id(Role role, std::string_view key);
struct Admitted {
  Role role;
  std::string_view key;
};
std::optional<Admitted> parse_user_id(std::string_view user_id);
// What a connection admitted as `admitted` may still do under lists that now give `current`:
// the rights it had and the lists still grant; nothing when they share none.
std::optional<Role> still_permitted(Role admitted, std::optional<Role> current);

class Authenticator {
 public:
  using LogSink = Core::LogSink;

  // Starts the handler with `lists` (from KeyLists::load(config)) and returns once it answers.
  Authenticator(zmq::context_t& context, AuthConfig config, std::shared_ptr<const KeyLists> lists,
                LogSink log);
  ~Authenticator();  // stops the handler and waits for its thread
  Authenticator(const Authenticator&) = delete;
  Authenticator& operator=(const Authenticator&) = delete;

  // Reads the lists again, in the handler's thread. On success new connections are judged by
  // the new lists and the result says what they hold; on failure the old lists stay.
  struct Reload {
    bool ok = false;
    std::string message;
  };
  Reload reload();
  std::shared_ptr<const KeyLists> lists() const;

 private:
  void run(zmq::socket_t& pipe, zmq::socket_t& zap);
  void answer(zmq::socket_t& zap);
  void log(LogLevel level, const std::string& text) const;

  const AuthConfig config_;
  LogSink log_;
  mutable std::mutex mutex_;
  std::shared_ptr<const KeyLists> lists_;  // guarded by mutex_
  zmq::socket_t pipe_;
  std::thread thread_;
  // Refusals are logged once a minute per key: a refused peer's ZeroMQ retries ten times a second.
  std::map<std::string, std::pair<std::chrono::steady_clock::time_point, unsigned>> refused_;
};

}  // namespace seppo::broker
