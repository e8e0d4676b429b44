#include "broker/server.hpp"

#include <signal.h>

#include <zmq.hpp>
#include <zmq_addon.hpp>

#include <algorithm>
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

// Sends everything the core produced. A peer that is gone or full is reported back to the core,
// which decides what that means (ROUTER_MANDATORY turns ZeroMQ's silent drops into these errors).
// Sends the core's outbox. `connections` (may be null) says whose connection has closed:
// nothing is sent to those peers, and their TASKs count as never received, since the close was
// known before the send. (A send into a closing connection can still succeed and be lost; the
// order of the monitor's event and our send is all that tells "never received" apart.)
void flush(zmq::socket_t& router, Core& core, TimePoint now, Connections* connections) {
  // Has the socket act on its pending commands first (ZMQ_EVENTS does), so that connections
  // already closed have their pipes gone and a send to them fails instead of vanishing.
  (void)router.get(zmq::sockopt::events);
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
  for (const auto& [peer, tasks] : held_back) core.on_disconnected(peer, now, tasks);
  for (const auto& [peer, tasks] : failed) core.on_send_failed(peer, now, tasks);
  if (core.outbox().empty()) {
    // The emptied vector goes back with its capacity: the next batch's outbox grows without
    // reallocating (large reallocations also made malloc consolidate its free lists).
    out.clear();
    core.outbox().swap(out);
    return;
  }
  flush(router, core, now, connections);
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
  }

  // The sender's role and key, or nothing when its key is no longer authorised: its message
  // is dropped unanswered, as a refused connection would be.
  std::optional<std::pair<Role, std::string_view>> admit(zmq::message_t& frame) {
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
      return std::nullopt;
    }
    return std::pair{*role, admitted->key.substr(0, 8)};
  }

 private:
  void warn(const std::string& key, const std::string& text) {
    if (warned_.insert(key).second) log::warning(text);
  }

  std::shared_ptr<const KeyLists> lists_;
  std::set<std::string> warned_;  // once per key and reload: a dropped peer keeps sending
};

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
  router.set(zmq::sockopt::router_mandatory, 1);
  router.set(zmq::sockopt::router_handover, 1);
  router.set(zmq::sockopt::maxmsgsize, options.max_message_bytes);
  router.set(zmq::sockopt::linger, static_cast<int>(options.shutdown_grace.count()));
  // Credits bound what is queued per peer; the high-water marks are only a backstop.
  router.set(zmq::sockopt::sndhwm, 100000);
  router.set(zmq::sockopt::rcvhwm, 100000);
  if (options.curve) {
    log::info("CurveZMQ on: public key " + options.curve->public_key +
              "; authorised: " + options.lists->summary());
  }
  // Before binding, so that no connection goes unseen.
  std::optional<Connections> connections;
  connections.emplace(context, router);
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
  std::vector<zmq::message_t> frames;
  TimePoint next_tick = Clock::now();
  while (true) {
    const TimePoint now = Clock::now();
    if (now >= next_tick) {
      core.on_tick(now);
      next_tick = core.next_deadline(now);
      flush(router, core, now, &*connections);
    }
    const auto wait = std::chrono::duration_cast<std::chrono::milliseconds>(next_tick - now);
    seppo::poll(items, std::max(wait, std::chrono::milliseconds(0)));
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
        } else if (!auth) {
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
      flush(router, core, Clock::now(), &*connections);
      break;
    }
    for (int i = 0; i < kBatch; ++i) {
      frames.clear();
      if (!zmq::recv_multipart(router, std::back_inserter(frames), zmq::recv_flags::dontwait)) {
        break;
      }
      const TimePoint at = Clock::now();
      const PeerId peer(frames[0].data<char>(), frames[0].size());
      if (frames.size() >= 2) connections->heard(peer, frames[1]);
      Role role = Role::Any;
      std::string_view key;
      if (gate && frames.size() >= 2) {
        const auto sender = gate->admit(frames[1]);
        if (!sender) continue;
        std::tie(role, key) = *sender;
      }
      if (frames.size() == 2) {
        core.on_message(peer, frames[1].data(), frames[1].size(), nullptr, at, role, key);
      } else if (frames.size() == 3) {
        Bytes payload = from_zmq(std::move(frames[2]));
        core.on_message(peer, frames[1].data(), frames[1].size(), &payload, at, role, key);
      } else {
        core.on_malformed(peer, "expected 1 or 2 frames, got " + std::to_string(frames.size() - 1));
      }
    }
    // Sending the replies to a whole batch at once lets ZeroMQ wake its I/O thread once and
    // coalesce the writes, instead of a wake-up and a syscall per message.
    flush(router, core, Clock::now(), &*connections);
  }
  connections.reset();  // it monitors the router
  router.close();       // linger bounds how long the goodbyes may take
  auth.reset();
  context.close();
  log::info("stopped");
  return 0;
}

}  // namespace seppo::broker
