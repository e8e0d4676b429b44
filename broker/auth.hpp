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

#include "broker/admission.hpp"
#include "broker/core.hpp"

namespace seppo::broker {

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
  void log(log::Level level, const std::string& text) const;
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
