// Which messages the broker takes, under CurveZMQ or --allow-group (docs/protocol.md §14.5,
// §14.6; docs/design-broker.md): the key gate (a connection keeps only what the current key
// lists still grant its key) and the routing-id bindings (an id belongs to the first user that
// spoke under it). Sans-I/O, as broker::Core: broker/server.cpp feeds it each message's
// routing id, ZAP User-Id and connection, and the simulator does the same with its own peers,
// so the rules the server runs are the rules the simulator checks (issue 27).
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

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
  // Lists given as they are, key by key (tests, the simulator).
  static std::shared_ptr<const KeyLists> of(const std::vector<std::pair<std::string, Role>>& keys);

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
  // Calls f(peer, user, fd) for every binding (fd -1: its connection closed).
  template <class F>
  void for_each(F&& f) const {
    for (const auto& [peer, b] : by_peer_) f(peer, b.user, b.fd);
  }
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
// The key gate and the bindings together: what the socket loop asks of every message.
class Admission {
 public:
  struct Options {
    // Under CurveZMQ: the lists each message's key is judged by. Null: no key gate (every
    // message is taken as Role::Any).
    std::shared_ptr<const KeyLists> lists;
    // Where users are told apart (CurveZMQ, or ipc:// with --allow-group): routing ids are
    // bound to their first user, and forgotten this long after last heard. 0: no bindings.
    std::chrono::milliseconds bind_for{0};
  };
  using LogSink = Core::LogSink;

  explicit Admission(Options options, LogSink log = {});

  struct Verdict {
    bool accepted = false;
    Role role = Role::Any;  // accepted: what the sender's key allows
    std::string_view key;   // accepted: its key's first characters, for the core's logs
    // Not accepted: why, as Stats::refused counts it ("unauthorised_key", "routing_id_taken").
    const char* reason = nullptr;
    // Not accepted: the text of an ERROR forbidden to answer with, when one is due (a client's
    // revoked key, at most once a second per routing id); empty: no answer.
    std::string refusal;
  };
  // A message from routing id `peer`, on connection `connection` (the socket loop's number for
  // it: ZMQ_SRCFD; unused without bindings), whose connection was admitted as `user` (the ZAP
  // User-Id, "worker:KEY", "uid:1000"; null when the message carries none). `key` in the
  // verdict points into `user`.
  Verdict on_message(const PeerId& peer, const char* user, int connection, TimePoint now);
  // The connection `connection` closed (ids bound to it take nothing until their owner speaks
  // again: whoever takes such an id next must not be sent its owner's messages).
  void on_closed(int connection);
  // Whether messages for `peer` may go out now.
  bool may_send(const PeerId& peer) const;
  // A peer bound (§14.6) to a key that reloaded lists no longer grant what it had.
  struct Revoked {
    PeerId peer;
    std::string user;     // the User-Id it is bound to ("worker:KEY")
    int connection = -1;  // its connection (ZMQ_SRCFD), -1 when that closed
    bool worker = false;  // it may no longer serve as a worker (its key granted that before)
    bool all = false;     // its key is granted nothing now: nothing may be sent to it
  };
  // The key lists were read again (SIGHUP): messages are judged by `lists` from now on.
  // Returns the peers whose keys lost rights: nothing goes to those that lost all (may_send),
  // and the caller drops the workers among them (the core forgets them, their connections
  // close): else the core would send TASKs to a worker whose answers the gate drops until it
  // presumed it dead (issue 26). Needs the bindings (a peer's key is known through them).
  std::vector<Revoked> reloaded(std::shared_ptr<const KeyLists> lists);
  // Forgets bindings not heard from for bind_for; call by the core's ticks.
  void expire(TimePoint now);

  bool gates() const { return lists_ != nullptr; }
  bool binds() const { return bindings_.has_value(); }
  const std::shared_ptr<const KeyLists>& lists() const { return lists_; }

 private:
  void warn_once(const std::string& key, const std::string& text);

  static constexpr std::size_t kMaxAnswered = 65536;
  static constexpr std::chrono::seconds kAnswerAgain{1};  // a revoked client's ERROR, at most
  static constexpr std::size_t kMaxLogged = 4096;
  std::shared_ptr<const KeyLists> lists_;
  std::optional<RoutingBindings> bindings_;
  LogSink log_;
  std::set<std::string> warned_;          // keys warned about since the reload (once each)
  std::map<PeerId, TimePoint> answered_;  // ids told ERROR forbidden since the reload: when
  std::set<PeerId> revoked_;  // ids bound to a key granted nothing since the last reload
  std::map<PeerId, TimePoint> refusals_logged_;  // taken ids: logged once a minute per id
};

// SIGHUP's rule (issue 26): messages are judged by `lists` from now on (Admission::reloaded),
// `core` forgets each registered worker whose key no longer serves as a worker's, and the result
// is the peers whose connections must close now: those workers, and any worker whose key is
// granted nothing at all (a key that stays a client's keeps its client's connection). The
// server and the simulator both call it. Without a core (the simulator's broker is down),
// nothing closes.
std::vector<Admission::Revoked> reload(Admission& admission, Core* core,
                                       std::shared_ptr<const KeyLists> lists, TimePoint now);

// How a log line names the user behind a User-Id: "key FINGERPRINT" or "uid N".
std::string describe_user(std::string_view user);

}  // namespace seppo::broker
