#include "worker/session.hpp"

#include <signal.h>
#include <unistd.h>

#include <deque>
#include <optional>
#include <unordered_map>

#include <msgpack.hpp>
#include <zmq.hpp>
#include <zmq_addon.hpp>

#include "common/poll.hpp"
#include "common/curve.hpp"
#include "common/host.hpp"
#include "common/log.hpp"
#include "common/monitor.hpp"
#include "common/signals.hpp"
#include "protocol/wire.hpp"
#include "seppo/error.hpp"
#include "worker/credit.hpp"
#include "worker/executor.hpp"

namespace seppo::worker {
namespace {

using Clock = std::chrono::steady_clock;

// A task handed to the executor, awaiting its outcome; outcomes return in submission order.
struct Submitted {
  std::uint64_t sequence = 0;
  std::uint64_t task_id = 0;
  std::uint32_t count = 0;
  std::uint64_t epoch = 0;  // broker epoch it came from: results of an earlier one are dropped
};

// A results array in which every item carries the same error.
zmq::message_t all_failed(std::uint32_t count, const std::string& message) {
  msgpack::sbuffer buffer;
  msgpack::packer<msgpack::sbuffer> p(buffer);
  p.pack_array(count);
  for (std::uint32_t i = 0; i < count; ++i) p.pack_array(2).pack(1).pack(message);
  return zmq::message_t(buffer.data(), buffer.size());
}

class Session {
 public:
  Session(const SessionOptions& options, const std::vector<Function>& functions)
      : options_(options),
        heartbeat_(options.heartbeat),
        liveness_(options.liveness),
        credit_(options.prefetch),
        executor_(context_, functions) {
    for (std::uint32_t i = 0; i < functions.size(); ++i) index_[functions[i].name] = i;
    ready_.host = fqdn();
    ready_.pid = ::getpid();
    ready_.name = ready_.host + ", process " + std::to_string(ready_.pid);
    ready_.capacity = credit_.initial();
    for (const Function& f : functions) ready_.functions.push_back(f.name);
    identity_ = random_routing_id('W');
  }

  int run() {
    SignalPipe signals({SIGINT, SIGTERM});
    connect();
    bool leaving = false;
    while (true) {
      std::vector<zmq::pollitem_t> items = {{socket_->handle(), 0, ZMQ_POLLIN, 0},
                                            {executor_.pipe().handle(), 0, ZMQ_POLLIN, 0},
                                            {nullptr, signals.fd(), ZMQ_POLLIN, 0},
                                            monitor_->pollitem()};
      seppo::poll(items, heartbeat_ / 4 + std::chrono::milliseconds(1));
      const auto now = Clock::now();
      if (items[3].revents & ZMQ_POLLIN) check_handshake();
      if (items[2].revents & ZMQ_POLLIN) {
        signals.take();
        if (!leaving) log::info("stopping: finishing the running chunk, returning the rest");
        leaving = true;
        executor_.skip_through(sequence_);
      }
      if (items[1].revents & ZMQ_POLLIN) finish_chunks();
      if (items[0].revents & ZMQ_POLLIN) receive(now, leaving);
      if (forbidden_) break;
      if (options_.exit_when_idle) {  // --exit-when-idle: leave when done or told BYE
        if (!submitted_.empty()) last_busy_ = now;
        if (broker_left_ || (submitted_.empty() && now - last_busy_ >= *options_.exit_when_idle)) {
          if (!leaving) {
            log::info(broker_left_ ? "the broker is shutting down; leaving too" : "idle; leaving");
          }
          leaving = true;
        }
      }
      if (leaving && submitted_.empty()) {
        send(wire::Bye{"worker stopping"});  // the broker re-queues what we did not answer
        break;
      }
      if (now - last_sent_ >= heartbeat_) send(wire::Heartbeat{0, 0, {}});
      if (now - last_heard_ > heartbeat_ * liveness_) reconnect(now);
    }
    socket_->set(zmq::sockopt::linger, forbidden_ ? 0 : 1000);  // let BYE through, never hang
    monitor_.reset();
    socket_.reset();
    return forbidden_ ? kExitForbidden : 0;
  }

 private:
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
    last_heard_ = Clock::now();
    announce();
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

  void announce() {
    ready_.capacity = credit_.wanted();
    announced_credit_ = ready_.capacity;
    send(ready_);
  }

  // Whatever the executor holds belongs to a broker that no longer knows us: skip what has not
  // started and drop the results of what has.
  void forget_tasks() {
    ++epoch_;
    executor_.skip_through(sequence_);
  }

  // The broker went silent: start over on a fresh socket so nothing stale is queued, with a
  // growing delay so a dead broker is not hammered.
  void reconnect(Clock::time_point now) {
    if (now < next_reconnect_) return;
    log::warning("no word from broker " + options_.endpoint + " for " +
                 std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(
                                    now - last_heard_)
                                    .count()) +
                 " ms; reconnecting");
    forget_tasks();
    connect();
    reconnect_delay_ = std::min(std::max(reconnect_delay_ * 2, heartbeat_),
                                options_.max_reconnect_delay);
    next_reconnect_ = now + reconnect_delay_;
    last_heard_ = now - heartbeat_ * liveness_ + reconnect_delay_;
  }

  void send(const wire::Message& message) {
    const std::string header = wire::encode(message);
    socket_->send(zmq::buffer(header), zmq::send_flags::none);
    last_sent_ = Clock::now();
  }

  void send(const wire::Message& message, zmq::message_t&& payload) {
    const std::string header = wire::encode(message);
    socket_->send(zmq::buffer(header), zmq::send_flags::sndmore);
    socket_->send(payload, zmq::send_flags::none);
    last_sent_ = Clock::now();
  }

  void receive(Clock::time_point now, bool leaving) {
    std::vector<zmq::message_t> frames;
    while (true) {
      frames.clear();
      if (!zmq::recv_multipart(*socket_, std::back_inserter(frames), zmq::recv_flags::dontwait)) {
        return;
      }
      try {
        wire::Message message = wire::decode(frames[0].data(), frames[0].size());
        last_heard_ = now;  // only a message we understand shows the broker is there
        reconnect_delay_ = std::chrono::milliseconds(0);
        handle(std::move(message), frames, leaving);
      } catch (const Error& e) {
        log::warning(std::string("dropped a malformed message from the broker: ") + e.what());
      }
    }
  }

  void handle(wire::Message&& message, std::vector<zmq::message_t>& frames, bool leaving) {
    if (auto* task = std::get_if<wire::Task>(&message)) {
      if (frames.size() != 2) throw ProtocolError("TASK without its payload frame");
      auto f = index_.find(task->function);
      if (f == index_.end()) {
        send(wire::Result{task->task_id, 0},
             all_failed(task->count, "this worker does not provide " + task->function));
      } else if (!leaving) {
        // Straight to the executor's queue: tiny tasks then run back to back.
        submitted_.push_back(Submitted{++sequence_, task->task_id, task->count, epoch_});
        executor_.submit(sequence_, f->second, std::move(frames[1]));
      }
    } else if (auto* alive = std::get_if<wire::Alive>(&message)) {
      if (instance_ != 0 && alive->instance != instance_) {
        log::info("broker restarted (new instance); serving it");
      }
      instance_ = alive->instance;
      if (alive->heartbeat_ms > 0) heartbeat_ = std::chrono::milliseconds(alive->heartbeat_ms);
      if (alive->liveness > 0) liveness_ = alive->liveness;
    } else if (auto* error = std::get_if<wire::Error>(&message)) {
      if (error->code == "forbidden") {
        log::error("the broker at " + options_.endpoint + " accepts this key, but not as a " +
                   "worker's (" + error->message + "): list it in --authorized-workers " +
                   "instead; stopping");
        forbidden_ = true;
      } else if (error->code == "not_ready") {
        // The broker does not know us (it restarted, or presumed us dead): the tasks we hold
        // were re-queued there already, so forget ours and announce again.
        forget_tasks();
        announce();
      } else {
        log::warning("broker refused a message: " + error->code + ": " + error->message);
      }
    } else if (std::holds_alternative<wire::Bye>(message)) {
      broker_left_ = true;  // with exit_when_idle, the loop leaves too
      if (!options_.exit_when_idle) {
        log::info("broker is shutting down; waiting for it to come back");
      }
      forget_tasks();
      last_heard_ = Clock::now() - heartbeat_ * liveness_;  // reconnect with backoff from now
    } else {
      log::warning(std::string("ignored unexpected ") + wire::type_name(wire::type_of(message)));
    }
  }

  void finish_chunks() {
    while (std::optional<Executor::Outcome> finished = executor_.try_finish()) {
      Executor::Outcome& outcome = *finished;
      const Submitted task = submitted_.front();
      submitted_.pop_front();
      if (outcome.status == Executor::Status::Skipped || task.epoch != epoch_) continue;
      zmq::message_t payload =
          outcome.status == Executor::Status::Ok
              ? std::move(outcome.output)
              : all_failed(task.count,
                           std::string(outcome.output.data<char>(), outcome.output.size()));
      send(wire::Result{task.task_id, outcome.elapsed_us}, std::move(payload));
      credit_.observe(outcome.elapsed_us);
    }
    const std::uint32_t wanted = credit_.wanted();
    if (CreditPolicy::worth_announcing(announced_credit_, wanted)) {
      announced_credit_ = wanted;
      send(wire::Credit{wanted});
    }
  }

  const SessionOptions& options_;
  std::unordered_map<std::string, std::uint32_t> index_;
  wire::Ready ready_;
  std::string identity_;
  std::chrono::milliseconds heartbeat_;
  std::uint32_t liveness_;
  CreditPolicy credit_;
  std::uint32_t announced_credit_ = 0;
  zmq::context_t context_{1};
  Executor executor_;
  std::optional<zmq::socket_t> socket_;
  std::optional<HandshakeMonitor> monitor_;  // of socket_, replaced with it
  std::string handshake_trouble_;            // the last handshake failure reported
  bool forbidden_ = false;
  bool broker_left_ = false;  // it said BYE (only acted on with exit_when_idle)
  Clock::time_point last_busy_ = Clock::now();
  std::deque<Submitted> submitted_;
  std::uint64_t sequence_ = 0;
  std::uint64_t epoch_ = 0;
  std::uint64_t instance_ = 0;
  Clock::time_point last_sent_{};
  Clock::time_point last_heard_{};
  Clock::time_point next_reconnect_{};
  std::chrono::milliseconds reconnect_delay_{0};
};

}  // namespace

int run_session(const SessionOptions& options, const std::vector<Function>& functions) {
  Session session(options, functions);
  return session.run();
}

}  // namespace seppo::worker
