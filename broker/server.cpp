#include "broker/server.hpp"

#include <signal.h>

#include <zmq.hpp>
#include <zmq_addon.hpp>

#include "common/poll.hpp"
#include "common/log.hpp"
#include "common/signals.hpp"

namespace seppo::broker {
namespace {

// Messages read per wake-up before the core's timers get a turn: keeps heartbeats on time
// under a flood without a syscall per message.
constexpr int kBatch = 512;

// Sends everything the core produced. A peer that is gone or full is reported back to the core,
// which decides what that means (ROUTER_MANDATORY turns ZeroMQ's silent drops into these errors).
void flush(zmq::socket_t& router, Core& core, TimePoint now) {
  std::vector<Outgoing> out;
  out.swap(core.outbox());
  std::vector<PeerId> failed;
  for (Outgoing& m : out) {
    try {
      zmq::message_t id(m.peer.data(), m.peer.size());
      if (!router.send(id, zmq::send_flags::sndmore | zmq::send_flags::dontwait)) {
        failed.push_back(m.peer);
        continue;
      }
      zmq::message_t header(m.header.data(), m.header.size());
      if (m.has_payload) {
        router.send(header, zmq::send_flags::sndmore);
        router.send(m.payload, zmq::send_flags::none);
      } else {
        router.send(header, zmq::send_flags::none);
      }
    } catch (const zmq::error_t& e) {
      if (e.num() != EHOSTUNREACH) log::warning(std::string("send failed: ") + e.what());
      failed.push_back(m.peer);
    }
  }
  for (const PeerId& peer : failed) core.on_send_failed(peer, now);
  if (!core.outbox().empty()) flush(router, core, now);
}

}  // namespace

int serve(const ServerOptions& options, Core& core) {
  zmq::context_t context(1);
  zmq::socket_t router(context, zmq::socket_type::router);
  router.set(zmq::sockopt::router_mandatory, 1);
  router.set(zmq::sockopt::router_handover, 1);
  router.set(zmq::sockopt::maxmsgsize, options.max_message_bytes);
  router.set(zmq::sockopt::linger, static_cast<int>(options.shutdown_grace.count()));
  // Credits bound what is queued per peer; the high-water marks are only a backstop.
  router.set(zmq::sockopt::sndhwm, 100000);
  router.set(zmq::sockopt::rcvhwm, 100000);
  // Before binding: once we listen (and say so), a SIGTERM must find its handler in place.
  SignalPipe signals({SIGINT, SIGTERM});
  for (const std::string& endpoint : options.endpoints) {
    try {
      router.bind(endpoint);
    } catch (const zmq::error_t& e) {
      log::error("cannot bind " + endpoint + ": " + e.what());
      return 1;
    }
    // With a wildcard port (tcp://127.0.0.1:*) this says which port the system chose.
    log::info("listening on " + router.get(zmq::sockopt::last_endpoint));
  }

  std::vector<zmq::pollitem_t> items = {{router.handle(), 0, ZMQ_POLLIN, 0},
                                        {nullptr, signals.fd(), ZMQ_POLLIN, 0}};
  std::vector<zmq::message_t> frames;
  TimePoint next_tick = Clock::now();
  while (true) {
    const TimePoint now = Clock::now();
    if (now >= next_tick) {
      core.on_tick(now);
      next_tick = core.next_deadline(now);
      flush(router, core, now);
    }
    const auto wait = std::chrono::duration_cast<std::chrono::milliseconds>(next_tick - now);
    seppo::poll(items, std::max(wait, std::chrono::milliseconds(0)));
    if (items[1].revents & ZMQ_POLLIN) {
      const int number = signals.take();
      log::info(std::string("received ") + (number == SIGINT ? "SIGINT" : "SIGTERM"));
      core.shutdown();
      flush(router, core, Clock::now());
      break;
    }
    for (int i = 0; i < kBatch; ++i) {
      frames.clear();
      if (!zmq::recv_multipart(router, std::back_inserter(frames), zmq::recv_flags::dontwait)) {
        break;
      }
      const TimePoint at = Clock::now();
      const PeerId peer(frames[0].data<char>(), frames[0].size());
      if (frames.size() == 2) {
        core.on_message(peer, frames[1].data(), frames[1].size(), nullptr, at);
      } else if (frames.size() == 3) {
        core.on_message(peer, frames[1].data(), frames[1].size(), &frames[2], at);
      } else {
        core.on_malformed(peer, "expected 1 or 2 frames, got " + std::to_string(frames.size() - 1));
      }
    }
    // Sending the replies to a whole batch at once lets ZeroMQ wake its I/O thread once and
    // coalesce the writes, instead of a wake-up and a syscall per message.
    flush(router, core, Clock::now());
  }
  router.close();  // linger bounds how long the goodbyes may take
  context.close();
  log::info("stopped");
  return 0;
}

}  // namespace seppo::broker
