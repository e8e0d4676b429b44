#include "worker/session.hpp"

#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <optional>

#include <zmq.hpp>
#include <zmq_addon.hpp>

#include "common/curve.hpp"
#include "common/host.hpp"
#include "common/log.hpp"
#include "common/monitor.hpp"
#include "common/poll.hpp"
#include "common/signals.hpp"
#include "protocol/bytes_zmq.hpp"
#include "protocol/wire.hpp"
#include "seppo/error.hpp"
#include "worker/executor.hpp"
#include "worker/session_core.hpp"

namespace seppo::worker {
namespace {

using Clock = std::chrono::steady_clock;

SessionCoreOptions core_options(const SessionOptions& options) {
  SessionCoreOptions core;
  core.endpoint = options.endpoint;
  core.prefetch = options.prefetch;
  core.heartbeat = options.heartbeat;
  core.liveness = options.liveness;
  core.max_reconnect_delay = options.max_reconnect_delay;
  core.exit_when_idle = options.exit_when_idle;
  core.exit_on_broker_bye = options.exit_on_broker_bye;
  return core;
}

wire::Ready identity() {
  wire::Ready ready;
  ready.host = fqdn();
  ready.pid = ::getpid();
  ready.name = ready.host + ", process " + std::to_string(ready.pid);
  return ready;
}

std::vector<std::string> names(const std::vector<Function>& functions) {
  std::vector<std::string> list;
  for (const Function& f : functions) list.push_back(f.name);
  return list;
}

// The socket loop around SessionCore: poll the broker's socket, the executor's pipe, the
// signals and the handshake monitor; feed what arrives to the core; carry out what it asks.
class Session {
 public:
  Session(const SessionOptions& options, const std::vector<Function>& functions)
      : options_(options),
        executor_(context_, functions),
        core_(core_options(options), identity(), names(functions), Clock::now()) {
    identity_ = random_routing_id('W');
  }

  int run() {
    SignalPipe signals({SIGINT, SIGTERM});
    connect();
    while (true) {
      carry_out();
      if (core_.ending() != SessionCore::Ending::Running) break;
      std::vector<zmq::pollitem_t> items = {{socket_->handle(), 0, ZMQ_POLLIN, 0},
                                            {executor_.pipe().handle(), 0, ZMQ_POLLIN, 0},
                                            {nullptr, signals.fd(), ZMQ_POLLIN, 0},
                                            monitor_->pollitem()};
      const auto wait =
          std::chrono::ceil<std::chrono::milliseconds>(core_.next_deadline() - Clock::now());
      seppo::poll(items, std::clamp(wait, std::chrono::milliseconds(0), core_.heartbeat()));
      if (items[3].revents & ZMQ_POLLIN) check_handshake();
      if (items[2].revents & ZMQ_POLLIN) {
        signals.take();
        core_.on_stop(Clock::now());
      }
      if (items[1].revents & ZMQ_POLLIN) finish_tasks();
      if (items[0].revents & ZMQ_POLLIN) receive();
      core_.on_tick(Clock::now());
    }
    const bool forbidden = core_.ending() == SessionCore::Ending::Forbidden;
    socket_->set(zmq::sockopt::linger, forbidden ? 0 : 1000);  // let BYE through, never hang
    monitor_.reset();
    socket_.reset();
    return forbidden ? kExitForbidden : 0;
  }

 private:
  // What the core decided: a fresh connection, tasks to start or skip, messages to send.
  void carry_out() {
    if (core_.take_reconnect()) connect();
    executor_.skip_through(core_.skip_through());
    for (SessionCore::Start& start : core_.starts()) {
      executor_.submit(start.sequence, start.function_index, to_zmq(start.payload));
    }
    core_.starts().clear();
    for (std::uint64_t sequence : core_.skips()) executor_.cancel(sequence, false);
    core_.skips().clear();
    for (std::uint64_t sequence : core_.abandons()) {
      if (executor_.cancel(sequence, true)) abandon_process();
    }
    core_.abandons().clear();
    for (const SessionCore::Outgoing& out : core_.outbox()) {
      const std::string header = wire::encode(out.message);
      if (out.payload) {
        socket_->send(zmq::buffer(header), zmq::send_flags::sndmore);
        socket_->send(to_zmq(*out.payload), zmq::send_flags::none);
      } else {
        socket_->send(zmq::buffer(header), zmq::send_flags::none);
      }
    }
    core_.outbox().clear();
  }

  // The broker cancelled the running task (its time limit, or its job is gone), and a module
  // function cannot be stopped inside this process: the process goes, and its supervisor starts
  // a fresh one. The broker sees the connection close and hands back what this worker held
  // (docs/protocol.md §4.15, W20).
  [[noreturn]] void abandon_process() {
    log::warning(
        "the broker cancelled the running task, which cannot be interrupted: "
        "replacing this worker process");
    std::fflush(nullptr);
    // Not exit(): the executor's thread is still inside the function.
    ::_exit(kExitAbandoned);
  }

  void connect() {
    monitor_.reset();  // it watches the old socket
    socket_.emplace(context_, zmq::socket_type::dealer);
    socket_->set(zmq::sockopt::routing_id, zmq::buffer(identity_));
    socket_->set(zmq::sockopt::linger, 0);
    socket_->set(zmq::sockopt::rcvhwm, 0);
    socket_->set(zmq::sockopt::sndhwm, 0);
    if (!options_.curve_secret_key.empty()) {
      socket_->set(zmq::sockopt::curve_serverkey,
                   zmq::buffer(curve::decode(options_.curve_server_key)));
      socket_->set(zmq::sockopt::curve_publickey,
                   zmq::buffer(curve::decode(options_.curve_public_key)));
      socket_->set(zmq::sockopt::curve_secretkey,
                   zmq::buffer(curve::decode(options_.curve_secret_key)));
    }
    monitor_.emplace(context_, *socket_);
    socket_->connect(options_.endpoint);
  }

  // ZeroMQ retries a refused handshake every 100 ms without a word: say why, once, and keep
  // trying, so the worker joins as soon as the broker's operator authorises its key.
  void check_handshake() {
    const bool curve = !options_.curve_secret_key.empty();
    while (std::optional<HandshakeMonitor::Event> event = monitor_->take()) {
      std::string trouble;
      switch (event->outcome) {
        case HandshakeMonitor::Outcome::Succeeded:
          if (!handshake_trouble_.empty()) log::info("the broker accepted the handshake now");
          handshake_trouble_.clear();
          continue;
        case HandshakeMonitor::Outcome::Refused:
          trouble = "the broker at " + options_.endpoint + " refused this worker's key " +
                    curve::fingerprint(options_.curve_public_key) +
                    ": its operator must list the public key in --authorized-workers (and "
                    "send the broker SIGHUP); retrying";
          break;
        case HandshakeMonitor::Outcome::MechanismMismatch:
          trouble = curve ? "the broker at " + options_.endpoint +
                                " does not use CurveZMQ, but this worker has keys; retrying"
                          : "the broker at " + options_.endpoint +
                                " requires CurveZMQ: give --curve-secret-key and "
                                "--curve-server-key; retrying";
          break;
        case HandshakeMonitor::Outcome::Failed:
          if (!curve) continue;  // a broker going away mid-handshake: nothing to report
          trouble = "the CurveZMQ handshake with " + options_.endpoint + " failed (" +
                    event->detail + "): is --curve-server-key the broker's public key? retrying";
          break;
      }
      if (trouble != handshake_trouble_) log::error(trouble);
      handshake_trouble_ = trouble;
    }
  }

  void receive() {
    std::vector<zmq::message_t> frames;
    while (core_.ending() == SessionCore::Ending::Running) {
      frames.clear();
      if (!zmq::recv_multipart(*socket_, std::back_inserter(frames), zmq::recv_flags::dontwait)) {
        return;
      }
      wire::Message message;
      try {
        message = wire::decode(frames[0].data(), frames[0].size());
      } catch (const Error& e) {
        log::warning(std::string("dropped a malformed message from the broker: ") + e.what());
        continue;
      }
      std::optional<Bytes> payload;
      if (frames.size() == 2) payload = from_zmq(std::move(frames[1]));
      core_.on_message(message, std::move(payload), Clock::now());
      carry_out();  // a TASK starts at once, before the rest of the batch is read
    }
  }

  void finish_tasks() {
    while (std::optional<Executor::Outcome> finished = executor_.try_finish()) {
      const auto outcome = finished->status == Executor::Status::Ok ? SessionCore::Outcome::Ok
                           : finished->status == Executor::Status::Failed
                               ? SessionCore::Outcome::Failed
                               : SessionCore::Outcome::Skipped;
      core_.on_finished(finished->sequence, outcome, finished->elapsed_us,
                        from_zmq(std::move(finished->output)), Clock::now());
    }
  }

  const SessionOptions& options_;
  std::string identity_;
  zmq::context_t context_{1};
  Executor executor_;
  SessionCore core_;
  std::optional<zmq::socket_t> socket_;
  std::optional<HandshakeMonitor> monitor_;  // of socket_, replaced with it
  std::string handshake_trouble_;            // the last handshake failure reported
};

}  // namespace

int run_session(const SessionOptions& options, const std::vector<Function>& functions) {
  Session session(options, functions);
  return session.run();
}

}  // namespace seppo::worker
