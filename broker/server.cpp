#include "broker/server.hpp"

#include <signal.h>

#include <zmq.hpp>

#include <algorithm>
#include <functional>
#include <utility>

#include "broker/admission.hpp"
#include "broker/connections.hpp"
#include "broker/delivery.hpp"
#include "broker/ha_gate.hpp"
#include "common/log.hpp"
#include "common/poll.hpp"
#include "common/signals.hpp"
#include "protocol/bytes_zmq.hpp"
#include "seppo/error.hpp"

namespace seppo::broker {
namespace {

// Messages read per wake-up before the core's timers get a turn: keeps heartbeats on time
// under a flood without a syscall per message.
constexpr int kBatch = 512;

// What a connection may send beyond --max-message-bytes before a message of it is read: the
// header frame (64 KiB), ZMTP's framing and handshake, and what the kernel holds for libzmq
// to read (its receive buffer grows to 6 MiB by default).
constexpr std::uint64_t kUnfinishedAllowance = 8u << 20;

// The ROUTER as broker/delivery.hpp's Link. `connections` says whose connection has closed;
// `may_send`, when given, vetoes a routing id (§14.6): such a send counts as failed.
class RouterLink final : public Link {
 public:
  RouterLink(zmq::socket_t& router, Connections& connections,
             std::function<bool(const PeerId&)> may_send)
      : router_(router), connections_(connections), may_send_(std::move(may_send)) {}

  std::vector<PeerId> take_lost() override {
    return connections_.take_lost(!std::exchange(events_read_, false));
  }
  // The connection events were read just now (take_closed_fds): the next take_lost need not
  // read them again.
  void events_read() { events_read_ = true; }

  bool send(Outgoing& m) override {
    if (may_send_ && !may_send_(m.peer)) return false;
    try {
      zmq::message_t id(m.peer.data(), m.peer.size());
      if (!router_.send(id, zmq::send_flags::sndmore | zmq::send_flags::dontwait)) return false;
      zmq::message_t header(m.header.data(), m.header.size());
      if (m.payload) {
        router_.send(header, zmq::send_flags::sndmore);
        router_.send(to_zmq(*m.payload), zmq::send_flags::none);
      } else {
        router_.send(header, zmq::send_flags::none);
      }
      return true;
    } catch (const zmq::error_t& e) {
      if (e.num() != EHOSTUNREACH) log::warning(std::string("send failed: ") + e.what());
      return false;
    }
  }

 private:
  zmq::socket_t& router_;
  Connections& connections_;
  std::function<bool(const PeerId&)> may_send_;
  bool events_read_ = false;
};

}  // namespace

int serve(const ServerOptions& options, Core& core) {
  zmq::context_t context(1);
  // The ZAP handler comes first and goes last: with no handler bound, libzmq would admit any
  // CURVE client that knows the broker's public key.
  std::unique_ptr<Authenticator> auth;
  if (options.curve) {
    auth = std::make_unique<Authenticator>(context, options.authorized, options.lists, log::write);
  } else if (options.local) {
    // Without keys too: the handler admits this user's ipc:// peers by uid (§14.9).
    auth = std::make_unique<Authenticator>(context, *options.local, log::write);
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
  // The key gate and the routing-id bindings (broker/admission.hpp).
  Admission::Options admit;
  if (options.curve) {
    // Without lists the gate would be open: refuse to serve rather than admit every key.
    if (!options.lists)
      throw seppo::Error("seppo-broker: CurveZMQ is on but no key lists were given");
    admit.lists = options.lists;
  }
  if (tell_apart) {
    const Config& config = core.config();
    const auto expiry = config.heartbeat * config.liveness;
    router.set(zmq::sockopt::heartbeat_ivl, static_cast<int>(config.heartbeat.count()));
    router.set(zmq::sockopt::heartbeat_timeout, static_cast<int>(expiry.count()));
    admit.bind_for = expiry * 4;
  }
  Admission admission(admit, log::write);
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
    for (int fd : connections->take_closed_fds()) admission.on_closed(fd);
  };
  const std::function<bool(const PeerId&)> may_send =
      admission.binds() ? std::function<bool(const PeerId&)>(
                              [&](const PeerId& peer) { return admission.may_send(peer); })
                        : std::function<bool(const PeerId&)>();
  RouterLink link(router, *connections, may_send);
  // What a flush left queued (more rounds than flush() takes at once) goes at the next turn.
  bool flushed = true;
  const auto send_all = [&](TimePoint now) {
    watch_closed();
    link.events_read();
    flushed = flush(core, link, now);
  };
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
  // One broker of a pair: the HA link, and the gate in front of the core (§15).
  std::unique_ptr<ha::PairLink> pair;
  if (options.pair) {
    ha::Config ha_config;
    ha_config.role = options.pair->role;
    ha_config.expiry = core.config().heartbeat;
    ha_config.interval =
        std::max<Duration>(core.config().heartbeat / 4, std::chrono::milliseconds(5));
    try {
      pair = std::make_unique<ha::PairLink>(
          *options.pair, ha_config, options.curve, Clock::now(),
          [](log::Level level, const std::string& line) { log::write(level, line); });
    } catch (const seppo::Error& e) {
      log::error(e.what());
      if (options.on_ready) options.on_ready(bound, e.what());
      return 1;
    }
    log::info("broker pair: " + std::string(ha::name(options.pair->role)) + ", state on " +
              pair->bound() + ", peer at " + options.pair->peer);
    core.set_pair_state(ha::name(options.pair->role), ha::name(pair->core().state()), "silent");
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
  const std::size_t connections_item = items.size();
  items.push_back(connections->pollitem());
  // The peer broker's state wakes the loop, whose turn takes it in.
  if (pair) {
    for (const zmq::pollitem_t& item : pair->pollitems()) items.push_back(item);
  }
  // Frames are received into the same messages every time (a receive releases what the
  // message held before): no vector of frames and no message objects made per frame.
  zmq::message_t id_frame, header, payload_frame, extra;
  // Who owns a client's jobs, for STATUS (asked once per client): its key's file name under
  // CurveZMQ, its uid over ipc:// (the ZAP handler's User-Id).
  core.set_owner_source([&]() -> std::string {
    // zmq_msg_gets, not cppzmq's gets(): over TCP without keys there is no User-Id (or an
    // empty one), and a throw would cost the loop. Empty then, as docs/protocol.md §4.13 says;
    // the core asks once per client whatever the answer.
    const char* user = zmq_msg_gets(header.handle(), "User-Id");
    if (user == nullptr || *user == '\0') return "";
    if (const auto admitted = parse_user_id(user)) {
      const std::string label = options.curve ? auth->lists()->label_of(admitted->key) : "";
      return label.empty() ? "key " + curve::fingerprint(admitted->key) : label;
    }
    return user;  // "uid:1000"
  });
  // An ERROR answered here, before the core: a peer the key gate or the pair's gate refused.
  const auto refuse = [&](const PeerId& peer, const std::string& reply) {
    try {
      router.send(zmq::buffer(peer.data(), peer.size()),
                  zmq::send_flags::sndmore | zmq::send_flags::dontwait);
      router.send(zmq::buffer(reply), zmq::send_flags::dontwait);
    } catch (const zmq::error_t&) {
    }
  };
  TimePoint next_tick = Clock::now();
  TimePoint next_guard = next_tick;
  int status = 0;
  while (true) {
    const TimePoint now = Clock::now();
    if (pair) {
      pair->turn(now);
      ha::sync(pair->core(), core, now);  // §15.1, §9.1, §15.3
    }
    if (now >= next_tick) {
      core.on_tick(now);
      next_tick = core.next_deadline(now);
      admission.expire(now);
      send_all(now);
    }
    if (now >= next_guard) next_guard = connections->guard(now);
    if (options.on_turn) options.on_turn(core, now);
    TimePoint next = std::min(next_tick, next_guard);
    if (pair) next = std::min(next, pair->next_deadline());
    const auto wait = flushed ? std::chrono::duration_cast<std::chrono::milliseconds>(next - now)
                              : std::chrono::milliseconds(0);
    seppo::poll(items, std::max(wait, std::chrono::milliseconds(0)));
    // A connection event (a new TCP connection, perhaps): the guard looks again at once.
    if (items[connections_item].revents & ZMQ_POLLIN)
      next_guard = std::min(next_guard, Clock::now());
    bool stop = false;
    if (pair && pair->core().must_yield()) {
      log::error("broker pair: both brokers were active; this backup stops (start it again)");
      stop = true;
      status = 3;
    }
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
            log::info("received SIGHUP: reloaded the key lists; authorised: " + result.message);
            // A worker whose key went is forgotten and its connection closed at once (its
            // DEALER reconnects and is refused by the ZAP handler); a client's is told ERROR
            // forbidden at its next message. Nothing more is sent to either.
            watch_closed();
            const TimePoint at = Clock::now();
            for (const Admission::Revoked& r : reload(admission, &core, auth->lists(), at)) {
              if (r.connection >= 0 && connections->drop(r.connection)) {
                log::info("closed the connection of routing id " + printable_id(r.peer) + " (" +
                          describe_user(r.user) + "): its key no longer serves as a worker's");
              }
            }
          } else {
            log::error("received SIGHUP: kept the previous key lists: " + result.message);
          }
        }
      }
    }
    if (stop) {
      core.shutdown();
      // Every BYE out: flush stops after a bounded number of rounds, which the loop would
      // otherwise resume on its next turn.
      for (int round = 0; round < 64; ++round) {
        send_all(Clock::now());
        if (flushed) break;
      }
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
      if ((admission.gates() || admission.binds()) && frames >= 2) {
        // zmq_msg_gets, not cppzmq's gets(): without keys over TCP there is no User-Id.
        const char* user = zmq_msg_gets(header.handle(), "User-Id");
        int fd = -1;
        if (admission.binds()) {
          // A close is taken in first: the descriptor may serve a new connection now.
          watch_closed();
          fd = zmq_msg_get(header.handle(), ZMQ_SRCFD);
        }
        Admission::Verdict verdict = admission.on_message(peer, user, fd, at);
        if (!verdict.accepted) {
          core.stats().refused(verdict.reason);
          if (!verdict.refusal.empty()) {
            refuse(peer, wire::encode(wire::Error{wire::Code::Forbidden, verdict.refusal}));
          }
          continue;
        }
        role = verdict.role;
        key = verdict.key;
      }
      // A broker of a pair serves only while active (§15.1, H7, H8, H15).
      // Taken over on this very message (H6, H14), the adoption window opens before the core
      // reads it (§9.1).
      if (pair && frames >= 2) {
        if (const auto refusal = pair->admit(core, header.data(), header.size(), at)) {
          refuse(peer, *refusal);
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
  return status;
}

}  // namespace seppo::broker
