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

// Who may connect without keys (docs/protocol.md §14.5). On ipc:// the kernel tells the
// handler the peer's uid (SO_PEERCRED, which libzmq appends to the ZAP address as
// ":UID:GID:PID"): this user and the members of `group` are admitted, as User-Id "uid:UID";
// anyone else is refused and logged. A tcp:// peer carries no uid: it is admitted, as the
// broker warned when it bound a TCP endpoint without keys.
struct LocalPolicy {
  unsigned uid = 0;               // the broker's own user
  std::optional<unsigned> group;  // --allow-group
  std::string group_name;         // for messages
};

// The uid in a ZAP address of an ipc:// peer ("...:UID:GID:PID"); nothing for other peers.
std::optional<unsigned> peer_uid(std::string_view zap_address);
// Whether user `uid` (primary group `gid`) belongs to `group`, as the user database says.
bool in_group(unsigned uid, unsigned gid, unsigned group);

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

// Routing ids bound to the user that first used them (docs/protocol.md §14.6): ZeroMQ routes by
// an id the peer chooses, so without this any admitted peer could present another's id and
// be sent its results or tasks. Sans-I/O: the socket loop feeds it what it sees.
//
// The socket loop turns ROUTER_HANDOVER off when users are told apart, so a second connection
// presenting a live peer's id is ignored by ZeroMQ; this covers what that leaves: an id taken
// once its owner's connection closed, before the owner comes back or is forgotten.
class RoutingBindings {
 public:
  explicit RoutingBindings(std::chrono::milliseconds forget_after) : forget_after_(forget_after) {}

  // A message from routing id `peer`, whose connection was admitted as `user` (the ZAP
  // User-Id) and arrived on descriptor `fd` (ZMQ_SRCFD). Accepted when the id is free or
  // `user`'s; refused when another user holds it: then nothing goes to the id until its
  // owner speaks again, since the connection behind it is not the owner's.
  bool on_message(std::string_view peer, std::string_view user, int fd,
                  std::chrono::steady_clock::time_point now);
  // The connection on `fd` closed: what goes to its id now could reach whoever takes the id
  // next, so nothing does until its owner speaks again.
  void on_closed(int fd);
  // Whether messages for `peer` may go out.
  bool may_send(std::string_view peer) const;
  // The user `peer` is bound to, or empty.
  std::string owner(std::string_view peer) const;
  // Forgets ids not heard from for `forget_after` (longer than the broker keeps any peer it
  // has not heard from), so memory follows the peers alive.
  void expire(std::chrono::steady_clock::time_point now);
  std::size_t size() const { return by_peer_.size(); }

 private:
  struct Binding {
    std::string user;
    int fd = -1;           // the owner's connection, -1 when it closed
    bool refused = false;  // another user's connection holds the id now
    std::chrono::steady_clock::time_point heard;
  };
  std::chrono::milliseconds forget_after_;
  std::unordered_map<std::string, Binding> by_peer_;
  std::unordered_map<int, std::string> by_fd_;
};

class Authenticator {
 public:
  using LogSink = Core::LogSink;

  // Starts the handler with `lists` (from KeyLists::load(config)) and returns once it answers.
  Authenticator(zmq::context_t& context, AuthConfig config, std::shared_ptr<const KeyLists> lists,
                LogSink log);
  // Starts the handler for a broker without keys: peers are judged by `policy`.
  Authenticator(zmq::context_t& context, LocalPolicy policy, LogSink log);
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
  void start(zmq::context_t& context);
  void run(zmq::socket_t& pipe, zmq::socket_t& zap);
  void answer(zmq::socket_t& zap);
  // The status, text and User-Id for a peer without keys (policy_ set).
  void judge_local(const std::string& address, std::string& status, std::string& text,
                   std::string& user);
  void log(LogLevel level, const std::string& text) const;
  // Once a minute per refused key or uid: a refused peer's ZeroMQ retries ten times a second.
  bool should_log_refusal(const std::string& who, unsigned& since);

  const AuthConfig config_;
  const std::optional<LocalPolicy> policy_;
  LogSink log_;
  mutable std::mutex mutex_;
  std::shared_ptr<const KeyLists> lists_;  // guarded by mutex_
  zmq::socket_t pipe_;
  std::thread thread_;
  // Refusals are logged once a minute per key: a refused peer's ZeroMQ retries ten times a second.
  std::map<std::string, std::pair<std::chrono::steady_clock::time_point, unsigned>> refused_;
};

}  // namespace seppo::broker
