#include "seppo/client.hpp"

#include <fcntl.h>
#include <time.h>
#include <unistd.h>
#include <algorithm>
#include <array>

#include <cerrno>
#include <cstdio>
#include <cstring>

#include <zmq.hpp>
#include <zmq_addon.hpp>

#include "common/curve.hpp"
#include "common/endpoint.hpp"
#include "common/endpoint_list.hpp"
#include "common/host.hpp"
#include "common/monitor.hpp"
#include "common/poll.hpp"
#include "libclient/client_access.hpp"
#include "libclient/job_core.hpp"
#include "protocol/bytes_zmq.hpp"
#include "protocol/payload.hpp"
#include "protocol/wire.hpp"

namespace seppo {
namespace {

using Clock = std::chrono::steady_clock;

std::string seconds(std::chrono::milliseconds d) {
  char text[32];
  std::snprintf(text, sizeof text, "%.1f s", static_cast<double>(d.count()) / 1000.0);
  return text;
}

}  // namespace

std::string default_endpoint() {
  return default_broker_endpoint();
}

ClientOptions ClientOptions::from_env() {
  ClientOptions options;
  options.curve_secret_key_file = environment("SEPPO_CURVE_SECRET_KEY");
  options.curve_server_key_file = environment("SEPPO_CURVE_SERVER_KEY");
  return options;
}

struct Client::Impl {
  // The process that made the context: in a fork() child (docs/client.md, "fork") the context's
  // I/O threads do not exist, and zmq_ctx_term would wait for them for ever.
  const pid_t owner = ::getpid();
  std::string endpoint;                // as given: one endpoint, or a pair's list
  std::vector<std::string> endpoints;  // the list (§15.4); `current` is the one connected
  std::size_t current = 0;
  ClientOptions options;
  zmq::context_t context{1};
  zmq::socket_t socket{context, zmq::socket_type::dealer};
  std::optional<HandshakeMonitor> monitor;  // declared after the socket: goes first
  std::uint64_t next_job = random_u64() & 0xffffffffffffull;
  std::string public_key;         // ours, when CurveZMQ is on
  std::string handshake_failure;  // the last failed handshake, for the timeout's message
  int handshake_failures = 0;     // in a row
  static constexpr int kHandshakeFailures = 3;
  // Connecting has failed this long since the client started, never having connected: nothing
  // listens there. A broker restarting later in a job is waited for as before.
  static constexpr std::chrono::milliseconds kUnreachable{1000};
  // A job (or stream) is running: the socket carries one at a time, since a job's receive
  // loop drops messages for other job ids.
  bool busy = false;
  // Set by the local cluster: starts workers for the function before a job (detail::).
  std::function<void(const std::string&)> before_submit;
  // The broker's heartbeat, from its last ALIVE; zero until one came.
  std::chrono::milliseconds broker_heartbeat{0};
  // From its last ALIVE: whether one came, and the largest message it accepts (0: unknown).
  bool heard_alive = false;
  std::uint64_t broker_max_message = 0;
  // A job's two result buffers (its core's and its own), kept for the next job: an answer holds
  // thousands of items, and buffers grown anew for every job are paged in anew every time.
  std::array<std::vector<client::JobCore::ItemResult>, 2> result_buffers;
  bool broker_submits = false;  // and whether it named "submits" (SUBMITS, C25)

  Impl(std::string e, ClientOptions o)
      : endpoint(std::move(e)), endpoints(split_endpoints(endpoint)), options(std::move(o)) {
    const std::string id = random_routing_id('C');
    socket.set(zmq::sockopt::routing_id, zmq::buffer(id));
    socket.set(zmq::sockopt::linger, 0);
    socket.set(zmq::sockopt::sndhwm, 0);
    socket.set(zmq::sockopt::rcvhwm, 0);
    // When asked (§4.9), a broker's frame is at most that limit plus a header: ZeroMQ drops the
    // connection of one that sends more, before holding any of it. Not by default: this socket
    // is never made again, so a broker's larger announced limit could not be followed, and a
    // client talks only to the broker it was given.
    if (const std::uint64_t limit = options.max_message_bytes;
        limit != 0 && limit < (std::uint64_t{1} << 62)) {
      socket.set(zmq::sockopt::maxmsgsize,
                 static_cast<std::int64_t>(limit + wire::kFrameAllowance));
    }
    secure();
    for (const std::string& one : endpoints) {
      try {
        check_private_endpoint(one, false);
      } catch (const std::runtime_error& e) {
        throw ConnectionError(std::string("will not connect to ") + one + ": " + e.what());
      }
    }
    monitor.emplace(context, socket);
    try {
      socket.connect(endpoints[0]);
    } catch (const zmq::error_t& e) {
      throw ConnectionError("cannot connect to broker " + endpoints[0] + ": " + e.what());
    }
  }

  // A pair of brokers (§15.4, C30, C31): the socket moves to the next endpoint of the list,
  // keeping its routing id; what was queued for the one left is dropped (resubmitted on RESYNC).
  void next_endpoint() {
    if (endpoints.size() < 2) return;
    try {
      socket.disconnect(endpoints[current]);
    } catch (const zmq::error_t&) {
    }
    current = (current + 1) % endpoints.size();
    socket.connect(endpoints[current]);
  }

  ~Impl() {
    // Long enough for a last DONE to leave (a cancelled job's queue is then dropped at once,
    // not after the broker's client expiry), short enough not to hang on a dead broker.
    try {
      socket.set(zmq::sockopt::linger, 250);
    } catch (...) {
    }
  }

  // Its context's I/O threads stayed in the parent of a fork(): any call would wait for them.
  void check_owner() const {
    if (owner != ::getpid()) {
      throw Error(
          "this seppo::Client was made before fork(): a forked child must make a Client "
          "of its own");
    }
  }

  // Throws unless the socket is free for a job or a status request.
  void claim(const char* what) {
    check_owner();
    if (busy) {
      throw Error(std::string("this seppo::Client is running a job already, so it cannot ") + what +
                  ": finish or destroy the stream first, or use another Client or submit()");
    }
  }

  // CurveZMQ when both key files are given; without keys, only a broker on this machine.
  void secure() {
    const bool has_secret = !options.curve_secret_key_file.empty();
    const bool has_server = !options.curve_server_key_file.empty();
    if (!has_secret && !has_server) {
      if (!options.insecure &&
          !std::all_of(endpoints.begin(), endpoints.end(),
                       [](const std::string& e) { return is_local_endpoint(e); })) {
        throw Error("refusing to connect to " + endpoint +
                    " without CurveZMQ keys: set SEPPO_CURVE_SECRET_KEY and "
                    "SEPPO_CURVE_SERVER_KEY (or the ClientOptions curve_*_file fields), or "
                    "allow plaintext with ClientOptions::insecure (seppo --insecure)");
      }
      return;
    }
    if (has_secret != has_server) {
      throw Error(std::string("CurveZMQ needs both this client's secret key and the broker's "
                              "public key; only the ") +
                  (has_secret ? "secret" : "broker's public") + " key is set");
    }
    if (!curve::available()) throw Error("this libzmq was built without CurveZMQ support");
    try {
      const curve::KeyPair keys = curve::read_secret_key_file(options.curve_secret_key_file);
      const std::string server = curve::read_public_key_file(options.curve_server_key_file);
      socket.set(zmq::sockopt::curve_serverkey, zmq::buffer(curve::decode(server)));
      socket.set(zmq::sockopt::curve_publickey, zmq::buffer(curve::decode(keys.public_key)));
      socket.set(zmq::sockopt::curve_secretkey, zmq::buffer(curve::decode(keys.secret_key)));
      public_key = keys.public_key;
    } catch (const std::runtime_error& e) {
      throw Error(e.what());
    }
  }

  // Throws when the broker refused our handshake, when the handshake keeps failing (the wrong
  // server key), or when nothing has listened at the endpoint for a second since we started:
  // ZeroMQ would retry each forever in silence.
  void check_handshake() {
    while (std::optional<HandshakeMonitor::Event> event = monitor->take()) {
      switch (event->outcome) {
        case HandshakeMonitor::Outcome::Succeeded:
          handshake_failure.clear();
          handshake_failures = 0;
          break;
        case HandshakeMonitor::Outcome::Refused:
          if (public_key.empty()) {
            throw ConnectionError("the broker at " + endpoint + " refused this user (uid " +
                                  std::to_string(::geteuid()) +
                                  "): without keys a broker admits only the user running it "
                                  "(and its --allow-group)");
          }
          throw ConnectionError("the broker at " + endpoint + " refused this client's key " +
                                curve::fingerprint(public_key) +
                                ": its operator must list the public key in "
                                "--authorized-clients (and send the broker SIGHUP)");
        case HandshakeMonitor::Outcome::MechanismMismatch:
          throw ConnectionError(
              public_key.empty()
                  ? "the broker at " + endpoint +
                        " requires CurveZMQ: set SEPPO_CURVE_SECRET_KEY and "
                        "SEPPO_CURVE_SERVER_KEY (seppo --curve-secret-key, --curve-server-key)"
                  : "the broker at " + endpoint +
                        " does not use CurveZMQ, but this client has keys");
        case HandshakeMonitor::Outcome::Failed:
          handshake_failure = event->detail;
          // One failure may be a broker going away mid-handshake; the same failure on every
          // retry (100 ms apart) is a server key that is not this broker's.
          if (!public_key.empty() && ++handshake_failures >= kHandshakeFailures) {
            throw ConnectionError(
                "the CurveZMQ handshake with the broker at " + endpoint + " failed " +
                std::to_string(handshake_failures) + " times in a row (" + event->detail +
                "): the broker's public key given (" + options.curve_server_key_file +
                ") is not the key of the broker listening there");
          }
          break;
      }
    }
    const auto failing = monitor->failing_since();
    // With a pair's list, an unreachable endpoint is the next one's turn (C30), not an error.
    if (failing && endpoints.size() < 2 &&
        std::chrono::steady_clock::now() - *failing >= kUnreachable) {
      std::string reason = unreachable_reason(endpoint);
      if (reason.empty()) reason = "connection refused";
      throw ConnectionError("cannot reach the broker at " + endpoint + ": " + reason +
                            (reason == std::strerror(EACCES)
                                 ? " (the socket is another user's: without keys a broker "
                                   "admits only the user running it)"
                             : endpoint == private_endpoint()
                                 ? " (start seppo-broker: it listens there by default)"
                                 : " (is seppo-broker running there?)"));
    }
  }

  // Appended to "no reply" messages: why the connection may not have come up.
  std::string handshake_hint() const {
    if (handshake_failure.empty()) {
      if (monitor->disconnections() == 0) return "";
      // ZeroMQ closes, without a word, the connection of a broker whose frame is over our limit.
      return "; the connection closed " + std::to_string(monitor->disconnections()) +
             " time(s): the broker went away" +
             (options.max_message_bytes == 0 ? std::string()
                                             : ", or sent a frame over this client's limit of " +
                                                   std::to_string(options.max_message_bytes) +
                                                   " bytes (ClientOptions::max_message_bytes)");
    }
    return "; the last handshake failed: " + handshake_failure +
           (public_key.empty() ? "" : " (is the server key the broker's public key?)");
  }

  void send(const wire::Header& header) {
    socket.send(zmq::buffer(header.data(), header.size()), zmq::send_flags::dontwait);
  }
  void send(const wire::Header& header, zmq::message_t&& payload) {
    socket.send(zmq::buffer(header.data(), header.size()),
                zmq::send_flags::sndmore | zmq::send_flags::dontwait);
    socket.send(payload, zmq::send_flags::dontwait);
  }
};

// One map call: the socket loop around the job's rules (libclient/job_core.hpp). It packs the
// caller's input into chunks when the core has room, sends what the core queues, feeds it what
// the broker sends and the time, and hands the core's results to the sink.
//
// The caller drives it: step() until it returns false. Between steps nothing happens, so a
// consumer that pauses longer than the broker's client expiry (heartbeat × liveness) has its
// job dropped there; its next step heartbeats, the broker answers RESYNC and the unanswered
// chunks are sent again. The pause itself never counts as the broker's silence.
namespace {

using ClientImpl = detail::ClientAccess::Impl;

class ClientJob {
 public:
  using Next = std::function<bool(Client::Packer&)>;
  using Fill = detail::Engine::Fill;
  using Sink = std::function<bool(const Client::Item&)>;
  using BlockSink = detail::Engine::BlockSink;

  // With `hold`, a chunk counts against the window until consumed() was called for all its
  // items, not only until its results arrived: results waiting for the consumer are bounded.
  // With `blocks`, answers not handed over before go to it whole (detail::Block).
  // With `fill` (and no `next`), inputs are packed many a call.
  ClientJob(ClientImpl& client, std::string function, Next next, Sink sink, bool hold = false,
            BlockSink blocks = nullptr, Fill fill = nullptr)
      : c_(client),
        next_(std::move(next)),
        fill_(std::move(fill)),
        sink_(std::move(sink)),
        block_sink_(std::move(blocks)),
        hold_(hold),
        core_(++client.next_job, std::move(function),
              core_options(client, hold, static_cast<bool>(block_sink_)), Clock::now()) {
    c_.check_owner();
    if (c_.before_submit) c_.before_submit(core_.function());  // before we are busy
    c_.claim("start another");
    c_.busy = true;
    results_ = std::move(c_.result_buffers[0]);
    core_.take_results(results_);  // the core takes this one's room, we get its empty one
    results_ = std::move(c_.result_buffers[1]);
  }

  ~ClientJob() {
    results_.clear();
    c_.result_buffers[1] = std::move(results_);
    core_.take_results(c_.result_buffers[0]);
    c_.result_buffers[0].clear();
    c_.busy = false;
    if (core_.broker_heartbeat().count() > 0) c_.broker_heartbeat = core_.broker_heartbeat();
    c_.heard_alive = core_.heard_alive();
    c_.broker_max_message = core_.broker_max_message();
    c_.broker_submits = core_.broker_submits();
    // Finished, failed or abandoned by an exception: the broker forgets the job either way.
    core_.close(Clock::now());
    try {
      flush();
    } catch (...) {
    }
  }

  ClientJob(const ClientJob&) = delete;
  ClientJob& operator=(const ClientJob&) = delete;

  // Returns false once every item was handed to the sink, or the sink asked to stop.
  bool step(std::chrono::milliseconds max_wait, int wake_fd = -1) {
    if (finished_) return false;
    auto now = Clock::now();
    core_.resume(now);
    fill(now);
    if (core_.done()) {
      finished_ = true;
      return false;
    }
    flush();
    // Kept between steps: a stream steps for every few results, and this is its hot path.
    poll_items_.assign({{c_.socket.handle(), 0, ZMQ_POLLIN, 0}, c_.monitor->pollitem()});
    if (wake_fd >= 0) poll_items_.push_back({nullptr, wake_fd, ZMQ_POLLIN, 0});
    seppo::poll(poll_items_, wait_for(max_wait, now));
    c_.check_handshake();
    if (!receive()) {
      finished_ = true;
      return false;
    }
    core_.on_tick(Clock::now());
    check();
    flush();
    last_step_ = Clock::now();
    core_.pause(last_step_);
    return true;
  }

  // With hold: the consumer took item `index`. Every few milliseconds of consumption, also a
  // step that does not wait: heartbeats go on and the freed room is filled.
  void consumed(std::uint64_t index) {
    // Called for every item: the coarse clock (the kernel's tick, read without a system call
    // or a hardware clock read) is enough to notice that kTendInterval has passed.
    const auto now = coarse_now();
    if (hold_) core_.consumed(index, now);
    if (!finished_ && now - last_step_ >= kTendInterval) step(std::chrono::milliseconds(0));
  }
  void consumed(std::uint64_t first, std::uint32_t count) {
    const auto now = coarse_now();
    if (hold_) core_.consumed(first, count, now);
    if (!finished_ && now - last_step_ >= kTendInterval) step(std::chrono::milliseconds(0));
  }

 private:
  static constexpr std::chrono::milliseconds kTendInterval{10};

  // CLOCK_MONOTONIC, which steady_clock reads, at the resolution of the kernel's tick (1-10 ms).
  static Clock::time_point coarse_now() {
    timespec ts{};
    if (::clock_gettime(CLOCK_MONOTONIC_COARSE, &ts) != 0) return Clock::now();
    return Clock::time_point(std::chrono::duration_cast<Clock::duration>(
        std::chrono::seconds(ts.tv_sec) + std::chrono::nanoseconds(ts.tv_nsec)));
  }

  static client::JobCoreOptions core_options(const ClientImpl& c, bool hold, bool blocks) {
    client::JobCoreOptions o;
    o.client = c.options;
    o.endpoint = c.endpoint;
    o.broker_heartbeat = c.broker_heartbeat;
    o.heard_alive = c.heard_alive;
    o.broker_max_message = c.broker_max_message;
    o.broker_submits = c.broker_submits;
    o.hold = hold;
    o.blocks = blocks;
    return o;
  }

  // Until the core's next deadline, rounded up so that the tick after it finds it passed.
  std::chrono::milliseconds wait_for(std::chrono::milliseconds max_wait, Clock::time_point now) {
    std::chrono::milliseconds wait = std::min(max_wait, kMaxWait);
    const auto deadline = core_.next_deadline(now);
    if (deadline != Clock::time_point::max()) {
      const auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - now);
      wait = std::min(wait, std::max(left, std::chrono::milliseconds(0)));
    }
    return wait;
  }
  static constexpr std::chrono::milliseconds kMaxWait{60000};

  void fill(Clock::time_point now) {
    if (fill_) {
      core_.fill_many(
          [this](msgpack::sbuffer& buffer, std::uint32_t want, std::size_t max_bytes, bool& ended) {
            Packer packer(buffer);
            return fill_(packer, want, max_bytes, ended);
          },
          now);
      return;
    }
    core_.fill(
        [this](msgpack::sbuffer& buffer) {
          Packer packer(buffer);
          return next_(packer);
        },
        now);
  }

  void flush() {
    if (core_.take_switch()) c_.next_endpoint();  // before the HEARTBEAT meant for the next one
    outbox_.clear();
    core_.take_outbox(outbox_);
    for (wire::Outgoing& out : outbox_) {
      if (out.payload) {
        c_.send(out.header, to_zmq(*out.payload));
      } else {
        c_.send(out.header);
      }
    }
    outbox_.clear();
  }

  // Throws what the core's failure means to the caller.
  void check() {
    const auto& failure = core_.failure();
    if (!failure) return;
    using Kind = client::JobCore::Failure::Kind;
    switch (failure->kind) {
      case Kind::UnknownFunction:
        throw UnknownFunctionError(core_.function(), failure->message);
      case Kind::Refused:
        throw RefusedError(failure->code, failure->message);
      case Kind::Timeout:
        throw ConnectionError(failure->message + c_.handshake_hint());
      case Kind::Protocol:
        break;
    }
    throw ProtocolError(failure->message);
  }

  // Returns false when the sink asked to stop.
  bool receive() {
    while (true) {
      frames_.clear();
      if (!zmq::recv_multipart(c_.socket, std::back_inserter(frames_), zmq::recv_flags::dontwait)) {
        return true;
      }
      std::optional<Bytes> payload;
      if (frames_.size() == 2) payload = from_zmq(std::move(frames_[1]));
      core_.on_message({}, frames_[0].data(), frames_[0].size(), payload ? &*payload : nullptr,
                       Clock::now());
      core_.take_results(results_);
      bool handed = !results_.empty();
      for (const client::JobCore::ItemResult& r : results_) {
        if (!sink_(r)) return false;
      }
      results_.clear();  // frees the message's payload; keeps the capacity
      if (block_sink_) {
        core_.take_blocks(blocks_);
        handed = handed || !blocks_.empty();
        for (const detail::Block& b : blocks_) {
          if (!block_sink_(b)) return false;
        }
        blocks_.clear();
      }
      check();
      flush();
      // A held job's consumer takes results one by one: the rest wait in ZeroMQ's queue as
      // compact msgpack rather than decoded in the consumer's buffer.
      if (hold_ && handed) return true;
    }
  }

  ClientImpl& c_;
  const Next next_;
  const Fill fill_;
  const Sink sink_;
  const BlockSink block_sink_;
  const bool hold_;
  client::JobCore core_;
  bool finished_ = false;
  std::vector<zmq::pollitem_t> poll_items_;
  std::vector<zmq::message_t> frames_;
  std::vector<client::JobCore::ItemResult> results_;
  std::vector<detail::Block> blocks_;
  std::vector<wire::Outgoing> outbox_;
  Clock::time_point last_step_{};  // when the last step returned; none yet when zero
};

}  // namespace

Client::Client(std::string endpoint, ClientOptions options)
    : impl_(std::make_unique<Impl>(std::move(endpoint), options)) {}
// In a child forked after the Client was made, the ZeroMQ context's threads are gone: closing
// the socket and terminating the context would wait for them for ever (100% CPU in
// zmq_ctx_term). The child leaks the connection instead, deliberately (a little memory, and the
// parent's file descriptors, which the child's exit closes).
void Client::release() noexcept {
  if (impl_ && impl_->owner != ::getpid()) {
    // Kept reachable, so leak checkers (LeakSanitizer, valgrind) do not report it.
    static auto* kept = new std::vector<Impl*>;
    try {
      kept->push_back(impl_.get());
    } catch (...) {
    }
    [[maybe_unused]] Impl* leaked = impl_.release();
  }
  impl_.reset();
}

Client::~Client() {
  release();
}
Client::Client(Client&&) noexcept = default;
Client& Client::operator=(Client&& other) noexcept {
  if (this != &other) {
    release();
    impl_ = std::move(other.impl_);
  }
  return *this;
}

const std::string& Client::endpoint() const {
  return impl_->endpoint;
}
const ClientOptions& Client::options() const {
  return impl_->options;
}

Client Client::sibling() const {
  return sibling(impl_->options);
}

Client Client::sibling(ClientOptions options) const {
  Client copy(impl_->endpoint, std::move(options));
  copy.impl_->before_submit = impl_->before_submit;
  return copy;
}

void detail::ClientAccess::set_before_submit(Client& client,
                                             std::function<void(const std::string&)> hook) {
  client.impl_->before_submit = std::move(hook);
}

std::string Client::status_bytes(std::chrono::milliseconds timeout) {
  impl_->claim("ask for the broker's status");
  impl_->send(wire::encode(wire::StatusRequest{}));
  const auto deadline = Clock::now() + timeout;
  std::vector<zmq::message_t> frames;
  while (true) {
    const auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    if (left.count() <= 0) {
      throw ConnectionError("no reply from the broker at " + impl_->endpoint + " within " +
                            seconds(timeout) + " (is seppo-broker running there?)" +
                            impl_->handshake_hint());
    }
    std::vector<zmq::pollitem_t> items = {{impl_->socket.handle(), 0, ZMQ_POLLIN, 0},
                                          impl_->monitor->pollitem()};
    seppo::poll(items, left);
    impl_->check_handshake();
    frames.clear();
    if (!zmq::recv_multipart(impl_->socket, std::back_inserter(frames),
                             zmq::recv_flags::dontwait)) {
      continue;
    }
    try {
      const wire::Message message = wire::decode(frames[0].data(), frames[0].size());
      if (std::holds_alternative<wire::Status>(message) && frames.size() == 2) {
        return frames[1].to_string();
      }
      // A key removed from the broker's lists is told so (docs/protocol.md §14.5).
      if (const auto* e = std::get_if<wire::Error>(&message);
          e && e->code == wire::Code::Forbidden) {
        throw RefusedError(
            std::string(wire::code_name(e->code)),
            "the broker at " + impl_->endpoint + " refused this client: " + e->message);
      }
    } catch (const ProtocolError&) {
    }
  }
}

void Client::run(const std::string& function, const std::function<bool(Packer&)>& next,
                 const std::function<bool(const Item&)>& sink) {
  ClientJob job(*impl_, function, next, sink);
  while (job.step(std::chrono::milliseconds::max())) {
  }
}

namespace detail {

struct Waker::Impl {
  int read_fd = -1;
  int write_fd = -1;
};

Waker::Waker() : impl_(new Impl) {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC | O_NONBLOCK) != 0) {
    throw Error(std::string("cannot make a waker's pipe: ") + std::strerror(errno));
  }
  impl_->read_fd = fds[0];
  impl_->write_fd = fds[1];
}

Waker::~Waker() {
  ::close(impl_->read_fd);
  ::close(impl_->write_fd);
}

void Waker::wake() noexcept {
  // Only write(2) and errno: async-signal-safe. A full pipe is woken already.
  const int saved = errno;
  const char byte = 1;
  [[maybe_unused]] const ssize_t n = ::write(impl_->write_fd, &byte, 1);
  errno = saved;
}

struct Engine::Impl {
  ClientJob job;
};

Engine::Engine(Client& client, std::string function, Next next, Sink sink, bool hold)
    : impl_(new Impl{ClientJob(ClientAccess::impl(client), std::move(function), std::move(next),
                               std::move(sink), hold)}) {}
Engine::Engine(Client& client, std::string function, Next next, Sink sink, BlockSink blocks,
               bool hold)
    : impl_(new Impl{ClientJob(ClientAccess::impl(client), std::move(function), std::move(next),
                               std::move(sink), hold, std::move(blocks))}) {}
Engine::Engine(Client& client, std::string function, Fill fill, Sink sink, BlockSink blocks,
               bool hold)
    : impl_(new Impl{ClientJob(ClientAccess::impl(client), std::move(function), nullptr,
                               std::move(sink), hold, std::move(blocks), std::move(fill))}) {}
Engine::~Engine() = default;

bool Engine::step() {
  return impl_->job.step(std::chrono::milliseconds::max());
}
bool Engine::step(Waker& waker) {
  const bool more = impl_->job.step(std::chrono::milliseconds::max(), waker.impl_->read_fd);
  // Takes the wakes so far: the next step waits again.
  char bytes[64];
  while (::read(waker.impl_->read_fd, bytes, sizeof bytes) > 0) {
  }
  return more;
}
void Engine::consumed(std::uint64_t index) {
  impl_->job.consumed(index);
}
void Engine::consumed(std::uint64_t first, std::uint64_t count) {
  impl_->job.consumed(first, static_cast<std::uint32_t>(count));
}
void Engine::each_item(const Block& block, const std::function<void(const Item&)>& item) {
  client::each_item(block, item);
}

}  // namespace detail

}  // namespace seppo
