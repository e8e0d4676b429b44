#include "broker/server.hpp"

#include <signal.h>

#include <zmq.hpp>

#include <algorithm>
#include <functional>
#include <map>
#include <set>

#include "broker/connections.hpp"
#include "common/log.hpp"
#include "common/poll.hpp"
#include "common/signals.hpp"
#include "protocol/bytes_zmq.hpp"

namespace seppo::broker {
namespace {

// Messages read per wake-up before the core's timers get a turn: keeps heartbeats on time
// under a flood without a syscall per message.
constexpr int kBatch = 512;

// What a connection may send beyond --max-message-bytes before a message of it is read: the
// header frame (64 KiB), ZMTP's framing and handshake, and what the kernel holds for libzmq
// to read (its receive buffer grows to 6 MiB by default).
constexpr std::uint64_t kUnfinishedAllowance = 8u << 20;

// Sends the core's outbox. `connections` (may be null) says whose connection has closed:
// nothing is sent to those peers, and their TASKs count as never received, since the close was
// known before the send. (A send into a closing connection can still succeed and be lost; the
// order of the monitor's event and our send is all that tells "never received" apart.)
// `may_send`, when given, vetoes a routing id (§14.6): such a send counts as failed.
void flush(zmq::socket_t& router, Core& core, TimePoint now, Connections* connections,
           const std::function<bool(const PeerId&)>& may_send = {}) {
  std::vector<PeerId> lost;
  if (connections) lost = connections->take_lost();
  std::vector<Outgoing> out;
  out.swap(core.outbox());
  // Per peer that could not be reached, the TASKs that did not leave: the core charges no
  // attempt for a task its worker never received.
  std::vector<std::pair<PeerId, std::vector<std::uint64_t>>> failed, held_back;
  auto note = [](auto& list, const Outgoing& m) {
    auto f =
        std::find_if(list.begin(), list.end(), [&](const auto& p) { return p.first == m.peer; });
    if (f == list.end()) f = list.insert(list.end(), {m.peer, {}});
    if (m.task_id != 0) f->second.push_back(m.task_id);
  };
  for (const PeerId& peer : lost) held_back.push_back({peer, {}});
  for (Outgoing& m : out) {
    if (!lost.empty() && std::find(lost.begin(), lost.end(), m.peer) != lost.end()) {
      note(held_back, m);
      continue;
    }
    if (may_send && !may_send(m.peer)) {
      note(failed, m);
      continue;
    }
    try {
      zmq::message_t id(m.peer.data(), m.peer.size());
      if (!router.send(id, zmq::send_flags::sndmore | zmq::send_flags::dontwait)) {
        note(failed, m);
        continue;
      }
      zmq::message_t header(m.header.data(), m.header.size());
      if (m.has_payload) {
        router.send(header, zmq::send_flags::sndmore);
        router.send(to_zmq(m.payload), zmq::send_flags::none);
      } else {
        router.send(header, zmq::send_flags::none);
      }
    } catch (const zmq::error_t& e) {
      if (e.num() != EHOSTUNREACH) log::warning(std::string("send failed: ") + e.what());
      note(failed, m);
    }
  }
  for (const auto& [peer, tasks] : held_back) {
    core.on_disconnected(peer, now, tasks);
    // A client's closed connection changes nothing, but what it was not sent must be resent
    // (RESYNC), as for a send that failed; for a worker just removed this does nothing.
    if (std::any_of(out.begin(), out.end(), [&](const Outgoing& m) { return m.peer == peer; })) {
      core.on_send_failed(peer, now, tasks);
    }
  }
  for (const auto& [peer, tasks] : failed) core.on_send_failed(peer, now, tasks);
  if (core.outbox().empty()) {
    // The emptied vector goes back with its capacity: the next batch's outbox grows without
    // reallocating (large reallocations also made malloc consolidate its free lists).
    out.clear();
    core.outbox().swap(out);
    return;
  }
  flush(router, core, now, connections, may_send);
}

log::Level level_of(LogLevel level) {
  switch (level) {
    case LogLevel::Debug:
      return log::Level::Debug;
    case LogLevel::Info:
      return log::Level::Info;
    case LogLevel::Warning:
      return log::Level::Warning;
    case LogLevel::Error:
      return log::Level::Error;
  }
  return log::Level::Info;
}

// Who sent a message, under CURVE: the role and key its connection was admitted with (the
// User-Id the ZAP handler answered), narrowed to what the current lists still allow.
class Gate {
 public:
  explicit Gate(std::shared_ptr<const KeyLists> lists) : lists_(std::move(lists)) {}

  void reloaded(std::shared_ptr<const KeyLists> lists) {
    lists_ = std::move(lists);
    warned_.clear();
    answered_.clear();
  }

  // The sender's role and key, or nothing when its key is no longer authorised: its message
  // is dropped. A client's is answered once per connection and reload, in `refusal`, so it
  // fails at once rather than after its timeout (§14.5); a worker stops for good on ERROR
  // forbidden, and its key may be authorised again, so it is left to reconnect and be refused.
  std::optional<std::pair<Role, std::string_view>> admit(zmq::message_t& frame, const PeerId& peer,
                                                         std::string& refusal) {
    const char* user = nullptr;
    try {
      user = frame.gets("User-Id");
    } catch (const zmq::error_t&) {
    }
    const std::optional<Admitted> admitted = user ? parse_user_id(user) : std::optional<Admitted>();
    if (!admitted) {
      warn("?", "dropped a message that carries no authenticated key");
      return std::nullopt;
    }
    const std::optional<Role> role =
        still_permitted(admitted->role, lists_->role_of(admitted->key));
    if (!role) {
      warn(std::string(admitted->key),
           "dropped messages from key " + curve::fingerprint(admitted->key) + ", admitted as " +
               role_name(admitted->role) +
               " but no longer authorised so since the lists were reloaded");
      if (admitted->role != Role::Worker && answered_.size() < kMaxAnswered &&
          answered_.insert(peer).second) {
        refusal = "this client's key " + curve::fingerprint(admitted->key) +
                  " is no longer authorised (the broker's lists were reloaded)";
      }
      return std::nullopt;
    }
    return std::pair{*role, admitted->key.substr(0, 8)};
  }

 private:
  void warn(const std::string& key, const std::string& text) {
    if (warned_.insert(key).second) log::warning(text);
  }

  static constexpr std::size_t kMaxAnswered = 65536;
  std::shared_ptr<const KeyLists> lists_;
  std::set<std::string> warned_;  // once per key and reload: a dropped peer keeps sending
  std::set<PeerId> answered_;     // routing ids told ERROR forbidden since the reload
};

// How a log line names the user behind a User-Id: "key FINGERPRINT" or "uid N".
std::string describe_user(std::string_view user) {
  if (const auto admitted = parse_user_id(user)) return "key " + curve::fingerprint(admitted->key);
  if (user.rfind("uid:", 0) == 0) return "uid " + std::string(user.substr(4));
  return user.empty() ? std::string("no user") : std::string(user);
}

}  // namespace

int serve(const ServerOptions& options, Core& core) {
  zmq::context_t context(1);
  // The ZAP handler comes first and goes last: with no handler bound, libzmq would admit any
  // CURVE client that knows the broker's public key.
  std::unique_ptr<Authenticator> auth;
  std::optional<Gate> gate;
  if (options.curve) {
    auth = std::make_unique<Authenticator>(
        context, options.authorized, options.lists,
        [](LogLevel level, const std::string& text) { log::write(level_of(level), text); });
    gate.emplace(options.lists);
  } else if (options.local) {
    // Without keys too: the handler admits this user's ipc:// peers by uid (§14.9).
    auth = std::make_unique<Authenticator>(
        context, *options.local,
        [](LogLevel level, const std::string& text) { log::write(level_of(level), text); });
  }
  zmq::socket_t router(context, zmq::socket_type::router);
  if (options.curve) {
    router.set(zmq::sockopt::curve_server, 1);
    router.set(zmq::sockopt::curve_secretkey,
               zmq::buffer(curve::decode(options.curve->secret_key)));
    router.set(zmq::sockopt::curve_publickey,
               zmq::buffer(curve::decode(options.curve->public_key)));
    router.set(zmq::sockopt::zap_domain, curve::kZapDomain);
  }
  if (!options.curve && options.local) router.set(zmq::sockopt::zap_domain, curve::kZapDomain);
  router.set(zmq::sockopt::router_mandatory, 1);
  // Where users are told apart, a routing id is its first user's (§14.6): no handover, and
  // ZMTP heartbeats close a dead connection in the broker's expiry, so its owner's next
  // connection is not ignored for long.
  const bool tell_apart = options.curve || (options.local && options.local->group);
  router.set(zmq::sockopt::router_handover, tell_apart ? 0 : 1);
  std::optional<RoutingBindings> bindings;
  if (tell_apart) {
    const auto expiry = options.heartbeat * options.liveness;
    router.set(zmq::sockopt::heartbeat_ivl, static_cast<int>(options.heartbeat.count()));
    router.set(zmq::sockopt::heartbeat_timeout, static_cast<int>(expiry.count()));
    bindings.emplace(expiry * 4);
  }
  // Which connection each peer is on, and which closed (a ROUTER allows one monitor). Before
  // binding, so that no connection goes unseen.
  std::optional<Connections> connections;
  connections.emplace(context, router);
  connections->set_max_connections(options.max_connections);
  // libzmq's ZMQ_MAXMSGSIZE (below) bounds each frame, not a message: a peer may send frames
  // marked MORE for ever, and libzmq holds them all until the last. So a TCP connection that
  // sends more than a whole message may hold (the largest payload, a 64 KiB header, ZMTP's
  // framing) plus what the kernel may buffer, without a message of it being read, is closed.
  connections->set_max_unfinished_bytes(static_cast<std::uint64_t>(options.max_message_bytes) +
                                        kUnfinishedAllowance);
  // A close is taken in before any later message or send: the descriptor of a closed
  // connection may serve the next one, and the id of a closed one may be taken by another.
  const auto watch_closed = [&] {
    for (int fd : connections->take_closed_fds()) {
      if (bindings) bindings->on_closed(fd);
    }
  };
  const std::function<bool(const PeerId&)> may_send =
      tell_apart ? std::function<bool(const PeerId&)>(
                       [&](const PeerId& peer) { return bindings->may_send(peer); })
                 : std::function<bool(const PeerId&)>();
  const auto send_all = [&](TimePoint now) {
    watch_closed();
    flush(router, core, now, &*connections, may_send);
  };
  std::map<PeerId, TimePoint> refusals_logged;  // once a minute per routing id
  router.set(zmq::sockopt::maxmsgsize, options.max_message_bytes);
  router.set(zmq::sockopt::linger, static_cast<int>(options.shutdown_grace.count()));
  // Credits bound what is queued per peer; the high-water marks are only a backstop.
  router.set(zmq::sockopt::sndhwm, 100000);
  router.set(zmq::sockopt::rcvhwm, 100000);
  if (options.curve) {
    log::info("CurveZMQ on: public key " + options.curve->public_key +
              "; authorised: " + options.lists->summary());
  }
  // Before binding: once we listen (and say so), a SIGTERM must find its handler in place.
  std::optional<SignalPipe> signals;
  if (options.handle_signals) signals.emplace(std::initializer_list<int>{SIGINT, SIGTERM, SIGHUP});
  std::vector<std::string> bound;
  for (const std::string& endpoint : options.endpoints) {
    try {
      router.bind(endpoint);
    } catch (const zmq::error_t& e) {
      const std::string error = "cannot bind " + endpoint + ": " + e.what();
      log::error(error);
      if (options.on_ready) options.on_ready(bound, error);
      return 1;
    }
    // With a wildcard port (tcp://127.0.0.1:*) this says which port the system chose.
    bound.push_back(router.get(zmq::sockopt::last_endpoint));
    log::info("listening on " + bound.back());
  }
  if (options.on_ready) options.on_ready(bound, "");

  // The signal pipe and the stop fd, when there are any, stand in the same poll set as the router.
  std::vector<zmq::pollitem_t> items = {{router.handle(), 0, ZMQ_POLLIN, 0}};
  std::size_t signal_item = 0, stop_item = 0;  // 0: none
  if (signals) {
    signal_item = items.size();
    items.push_back({nullptr, signals->fd(), ZMQ_POLLIN, 0});
  }
  if (options.stop_fd >= 0) {
    stop_item = items.size();
    items.push_back({nullptr, options.stop_fd, ZMQ_POLLIN, 0});
  }
  items.push_back(connections->pollitem());
  // Frames are received into the same messages every time (a receive releases what the
  // message held before): no vector of frames and no message objects made per frame.
  zmq::message_t id_frame, header, payload_frame, extra;
  // Who owns a client's jobs, for STATUS (asked once per client): its key's file name under
  // CurveZMQ, its uid over ipc:// (the ZAP handler's User-Id).
  core.set_owner_source([&]() -> std::string {
    // zmq_msg_gets, not cppzmq's gets(): over TCP without keys there is no User-Id, and a
    // throw per SUBMIT would be the loop's cost. "?" so that the core asks once per client.
    const char* user = zmq_msg_gets(header.handle(), "User-Id");
    if (user == nullptr) return "?";
    if (const auto admitted = parse_user_id(user)) {
      const std::string label = options.curve ? auth->lists()->label_of(admitted->key) : "";
      return label.empty() ? "key " + curve::fingerprint(admitted->key) : label;
    }
    return user;  // "uid:1000"
  });
  TimePoint next_tick = Clock::now();
  TimePoint next_guard = next_tick;
  while (true) {
    const TimePoint now = Clock::now();
    if (now >= next_tick) {
      core.on_tick(now);
      next_tick = core.next_deadline(now);
      if (bindings) bindings->expire(now);
      send_all(now);
    }
    if (now >= next_guard) next_guard = connections->guard(now);
    if (options.on_turn) options.on_turn(core, now);
    const auto wait = std::chrono::duration_cast<std::chrono::milliseconds>(
        std::min(next_tick, next_guard) - now);
    seppo::poll(items, std::max(wait, std::chrono::milliseconds(0)));
    // A connection event (a new TCP connection, perhaps): the guard looks again at once.
    if (items.back().revents & ZMQ_POLLIN) next_guard = std::min(next_guard, Clock::now());
    bool stop = false;
    if (stop_item != 0 && (items[stop_item].revents & ZMQ_POLLIN)) {
      log::info("asked to stop");
      stop = true;
    }
    if (signal_item != 0 && (items[signal_item].revents & ZMQ_POLLIN)) {
      while (const int number = signals->take()) {
        if (number != SIGHUP) {
          log::info(std::string("received ") + (number == SIGINT ? "SIGINT" : "SIGTERM"));
          stop = true;
        } else if (!options.curve) {
          log::info("received SIGHUP: nothing to reload (CurveZMQ is off)");
        } else {
          // New connections are judged by the new lists at once; connections already open
          // keep only what the new lists still grant their key.
          const Authenticator::Reload result = auth->reload();
          if (result.ok) {
            gate->reloaded(auth->lists());
            log::info("received SIGHUP: reloaded the key lists; authorised: " + result.message);
          } else {
            log::error("received SIGHUP: kept the previous key lists: " + result.message);
          }
        }
      }
    }
    if (stop) {
      core.shutdown();
      send_all(Clock::now());
      break;
    }
    for (int i = 0; i < kBatch; ++i) {
      if (!router.recv(id_frame, zmq::recv_flags::dontwait)) break;
      // The other frames of a message arrive with its first: these receives do not wait.
      std::size_t frames = 1;
      bool more = id_frame.more();
      if (more && router.recv(header, zmq::recv_flags::dontwait)) {
        ++frames;
        more = header.more();
      }
      if (more && router.recv(payload_frame, zmq::recv_flags::dontwait)) {
        ++frames;
        more = payload_frame.more();
      }
      while (more && router.recv(extra, zmq::recv_flags::dontwait)) {
        ++frames;
        more = extra.more();
      }
      const TimePoint at = Clock::now();
      const PeerId peer(id_frame.data<char>(), id_frame.size());
      Role role = Role::Any;
      std::string_view key;
      if (gate && frames >= 2) {
        std::string refusal;
        const auto sender = gate->admit(header, peer, refusal);
        if (!sender) {
          core.stats().refused("unauthorised_key");
          if (!refusal.empty() && (!bindings || bindings->may_send(peer))) {
            const std::string reply = wire::encode(wire::Error{wire::Code::Forbidden, refusal});
            try {
              router.send(zmq::buffer(peer.data(), peer.size()),
                          zmq::send_flags::sndmore | zmq::send_flags::dontwait);
              router.send(zmq::buffer(reply), zmq::send_flags::dontwait);
            } catch (const zmq::error_t&) {
            }
          }
          continue;
        }
        std::tie(role, key) = *sender;
      }
      if (bindings && frames >= 2) {
        watch_closed();
        const char* user = nullptr;
        try {
          user = header.gets("User-Id");
        } catch (const zmq::error_t&) {
        }
        const int fd = zmq_msg_get(header.handle(), ZMQ_SRCFD);
        if (!bindings->on_message(peer, user ? user : "", fd, at)) {
          core.stats().refused("routing_id_taken");
          if (refusals_logged.size() > 4096) refusals_logged.clear();
          auto [logged, first] = refusals_logged.try_emplace(peer, at);
          if (first || at - logged->second >= std::chrono::minutes(1)) {
            logged->second = at;
            log::warning("refused a message with routing id " + printable_id(peer) + " from " +
                         describe_user(user ? user : "") + ": the id belongs to " +
                         describe_user(bindings->owner(peer)) +
                         " (nothing goes to the id until its owner speaks again)");
          }
          continue;
        }
      }
      if (frames == 2) {
        core.on_message(peer, header.data(), header.size(), nullptr, at, role, key);
      } else if (frames == 3) {
        Bytes payload = from_zmq(std::move(payload_frame));
        core.on_message(peer, header.data(), header.size(), &payload, at, role, key);
      } else {
        core.on_malformed(peer, "expected 1 or 2 frames, got " + std::to_string(frames - 1));
      }
      // Only an admitted message says which connection a peer is on. After the core, since
      // the frame may be taken: which connection a peer is on matters only when the outbox is
      // sent (flush), not to the core.
      if (frames >= 2) connections->heard(peer, header);
    }
    // Sending the replies to a whole batch at once lets ZeroMQ wake its I/O thread once and
    // coalesce the writes, instead of a wake-up and a syscall per message.
    send_all(Clock::now());
  }
  // The owner source refers to this function's frames and handler.
  core.set_owner_source({});
  connections.reset();  // it monitors the router
  router.close();       // linger bounds how long the goodbyes may take
  auth.reset();
  context.close();
  log::info("stopped");
  return 0;
}

}  // namespace seppo::broker
