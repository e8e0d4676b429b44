#include "seppo/client.hpp"

#include <cstdio>
#include <map>

#include <zmq.hpp>
#include <zmq_addon.hpp>

#include "common/curve.hpp"
#include "common/endpoint.hpp"
#include "common/host.hpp"
#include "common/monitor.hpp"
#include "common/poll.hpp"
#include "libclient/chunk_sizer.hpp"
#include "protocol/codes.hpp"
#include "protocol/payload.hpp"
#include "protocol/result_entry.hpp"
#include "protocol/wire.hpp"

namespace seppo {
namespace {

using Clock = std::chrono::steady_clock;

// A chunk sent and not yet fully answered; its bytes are kept to resubmit after a broker restart.
struct Chunk {
  std::uint32_t count = 0;
  std::uint32_t remaining = 0;
  std::vector<bool> received;
  zmq::message_t payload;             // shared, not copied, by each (re)submission
  bool refused = false;               // over the broker's per-client limit: waits to be sent again
  std::uint64_t answers_at_send = 0;  // the job's answer count when this chunk was last sent
};

std::string seconds(std::chrono::milliseconds d) {
  char text[32];
  std::snprintf(text, sizeof text, "%.1f s", static_cast<double>(d.count()) / 1000.0);
  return text;
}

// SUBMIT's optional item_timeout_ms (docs/protocol.md §4.4), clamped to what the field holds.
std::uint32_t item_timeout_ms(const ClientOptions& options) {
  const auto ms = options.item_timeout.count();
  if (ms <= 0) return 0;
  return static_cast<std::uint32_t>(std::min<long long>(ms, UINT32_MAX));
}

}  // namespace

std::string default_endpoint() {
  return default_broker_endpoint();
}

struct Client::Impl {
  std::string endpoint;
  ClientOptions options;
  zmq::context_t context{1};
  zmq::socket_t socket{context, zmq::socket_type::dealer};
  std::optional<HandshakeMonitor> monitor;  // declared after the socket: goes first
  std::uint64_t next_job = random_u64() & 0xffffffffffffull;
  std::string public_key;         // ours, when CurveZMQ is on
  std::string handshake_failure;  // the last failed handshake, for the timeout's message
  // A job (or stream) is running: the socket carries one at a time, since a job's receive
  // loop drops messages for other job ids.
  bool busy = false;
  // Set by the local cluster: starts workers for the function before a job (detail::).
  std::function<void(const std::string&)> before_submit;
  // The broker's heartbeat, from its last ALIVE; zero until one came.
  std::chrono::milliseconds broker_heartbeat{0};

  Impl(std::string e, ClientOptions o) : endpoint(std::move(e)), options(std::move(o)) {
    const std::string id = random_routing_id('C');
    socket.set(zmq::sockopt::routing_id, zmq::buffer(id));
    socket.set(zmq::sockopt::linger, 0);
    socket.set(zmq::sockopt::sndhwm, 0);
    socket.set(zmq::sockopt::rcvhwm, 0);
    secure();
    monitor.emplace(context, socket);
    try {
      socket.connect(endpoint);
    } catch (const zmq::error_t& e) {
      throw ConnectionError("cannot connect to broker " + endpoint + ": " + e.what());
    }
  }

  ~Impl() {
    // Long enough for a last DONE to leave (a cancelled job's queue is then dropped at once,
    // not after the broker's client expiry), short enough not to hang on a dead broker.
    try {
      socket.set(zmq::sockopt::linger, 250);
    } catch (...) {
    }
  }

  // Throws unless the socket is free for a job or a status request.
  void claim(const char* what) {
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
      if (!options.insecure && !is_local_endpoint(endpoint)) {
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

  // Throws when the broker refused our handshake: ZeroMQ would retry it forever in silence.
  void check_handshake() {
    while (std::optional<HandshakeMonitor::Event> event = monitor->take()) {
      switch (event->outcome) {
        case HandshakeMonitor::Outcome::Succeeded:
          handshake_failure.clear();
          break;
        case HandshakeMonitor::Outcome::Refused:
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
          break;
      }
    }
  }

  // Appended to "no reply" messages: why the connection may not have come up.
  std::string handshake_hint() const {
    if (handshake_failure.empty()) return "";
    return "; the last handshake failed: " + handshake_failure +
           (public_key.empty() ? "" : " (is the server key the broker's public key?)");
  }

  void send(const wire::Message& message, const zmq::message_t* payload = nullptr) {
    const std::string header = wire::encode(message);
    if (payload == nullptr) {
      socket.send(zmq::buffer(header), zmq::send_flags::dontwait);
    } else {
      zmq::message_t shared;
      shared.copy(*const_cast<zmq::message_t*>(payload));
      socket.send(zmq::buffer(header), zmq::send_flags::sndmore | zmq::send_flags::dontwait);
      socket.send(shared, zmq::send_flags::dontwait);
    }
  }
};

// One map call: submission window, result bookkeeping, heartbeats and recovery.
//
// The caller drives it: step() until it returns false. Between steps nothing happens, so a
// consumer that pauses longer than the broker's client expiry (heartbeat × liveness) has its
// job dropped there; its next step heartbeats, the broker answers RESYNC and the unanswered
// chunks are sent again. The pause itself never counts as the broker's silence.
class ClientJob {
 public:
  using Next = std::function<bool(Client::Packer&)>;
  using Sink = std::function<bool(const Client::Item&)>;

  // With `hold`, a chunk counts against the window until consumed() was called for all its
  // items, not only until its results arrived: results waiting for the consumer are bounded.
  ClientJob(Client::Impl& client, std::string function, Next next, Sink sink, bool hold = false)
      : c_(client),
        function_(std::move(function)),
        next_(std::move(next)),
        sink_(std::move(sink)),
        hold_(hold),
        id_(++client.next_job),
        sizer_(client.options.chunk_size, client.options.target_chunk_time) {
    if (c_.before_submit) c_.before_submit(function_);  // before we are busy
    c_.claim("start another");
    c_.busy = true;
    last_heard_ = Clock::now();
    heartbeat_ = c_.broker_heartbeat.count() > 0 ? c_.broker_heartbeat : c_.options.heartbeat;
  }

  ~ClientJob() {
    c_.busy = false;
    if (next_index_ == 0) return;  // nothing was ever submitted: nothing to forget
    // Finished, failed or abandoned by an exception: the broker forgets the job either way.
    try {
      c_.send(wire::Done{id_});
    } catch (...) {
    }
  }

  ClientJob(const ClientJob&) = delete;
  ClientJob& operator=(const ClientJob&) = delete;

  // Returns false once every item was handed to the sink, or the sink asked to stop.
  bool step(std::chrono::milliseconds max_wait, int wake_fd = -1) {
    if (finished_) return false;
    const auto entered = Clock::now();
    if (last_step_ != Clock::time_point{}) last_heard_ += entered - last_step_;
    fill();
    if (input_done_ && pending_.empty()) {
      finished_ = true;
      return false;
    }
    if (c_.broker_heartbeat.count() == 0 && !asked_heartbeat_) {
      // A broker with a faster heartbeat than ours would take us for dead before our first
      // heartbeat: ask at once, its ALIVE says how often it wants to hear from us.
      heartbeat();
      asked_heartbeat_ = true;
    }
    // Kept between steps: a stream steps for every few results, and this is its hot path.
    poll_items_.assign({{c_.socket.handle(), 0, ZMQ_POLLIN, 0}, c_.monitor->pollitem()});
    if (wake_fd >= 0) poll_items_.push_back({nullptr, wake_fd, ZMQ_POLLIN, 0});
    seppo::poll(poll_items_, std::min(max_wait, heartbeat_ / 2 + std::chrono::milliseconds(1)));
    c_.check_handshake();
    if (!receive()) {
      finished_ = true;
      return false;
    }
    const auto now = Clock::now();
    if (now - last_sent_ >= heartbeat_) {
      heartbeat();
      last_sent_ = now;
    }
    if (now - last_heard_ > c_.options.timeout) {
      throw ConnectionError("no reply from the broker at " + c_.endpoint + " for " +
                            seconds(c_.options.timeout) + " (is seppo-broker running there?); " +
                            std::to_string(pending_.size()) + " chunks of " + function_ +
                            " unanswered" + c_.handshake_hint());
    }
    last_step_ = Clock::now();
    return true;
  }

  // With hold: the consumer took item `index`. Every few milliseconds of consumption, also a
  // step that does not wait: heartbeats go on and the freed room is filled.
  void consumed(std::uint64_t index) {
    if (hold_) release(index);
    if (!finished_ && Clock::now() - last_step_ >= kTendInterval) {
      step(std::chrono::milliseconds(0));
    }
  }

 private:
  static constexpr std::chrono::milliseconds kTendInterval{10};

  struct Held {
    std::uint32_t count = 0;
    std::uint32_t unconsumed = 0;
    std::size_t bytes = 0;
  };

  void release(std::uint64_t index) {
    auto& it = release_hint_;  // items are mostly taken chunk by chunk
    if (it == outstanding_.end() || index < it->first || index >= it->first + it->second.count) {
      it = outstanding_.upper_bound(index);
      if (it == outstanding_.begin()) {
        it = outstanding_.end();
        return;
      }
      --it;
      if (index >= it->first + it->second.count) {
        it = outstanding_.end();
        return;
      }
    }
    if (--it->second.unconsumed == 0) {
      outstanding_bytes_ -= it->second.bytes;
      outstanding_.erase(it);
      it = outstanding_.end();
    }
  }

  bool room() const {
    if (hold_) {
      return outstanding_.size() < c_.options.window && outstanding_bytes_ < byte_window_;
    }
    return pending_.size() < c_.options.window && inflight_bytes_ < byte_window_;
  }

  void fill() {
    while (!input_done_ && refused_ == 0 && room()) {
      const std::uint32_t want = sizer_.next_size();
      // One buffer for every chunk of the job: no allocation, no fresh pages per chunk.
      buffer_.clear();
      char header[wire::kArray32HeaderSize] = {};
      buffer_.write(header, sizeof header);
      msgpack::sbuffer& buffer = buffer_;
      Client::Packer packer(buffer);
      std::uint32_t count = 0;
      while (count < want && buffer.size() < kMaxChunkBytes && next_(packer)) ++count;
      if (count < want && buffer.size() < kMaxChunkBytes) input_done_ = true;
      if (count == 0) break;
      wire::write_array32_header(buffer.data(), count);
      Chunk& chunk = pending_[next_index_];
      chunk.count = chunk.remaining = count;
      chunk.received.assign(count, false);
      chunk.payload.rebuild(buffer.data(), buffer.size());
      inflight_bytes_ += chunk.payload.size();
      if (hold_) {
        outstanding_.emplace(next_index_, Held{count, count, chunk.payload.size()});
        outstanding_bytes_ += chunk.payload.size();
      }
      submit(next_index_, chunk);
      next_index_ += count;
    }
  }

  void submit(std::uint64_t first, Chunk& chunk) {
    chunk.answers_at_send = answers_;
    c_.send(wire::Submit{id_, function_, first, chunk.count,
                         static_cast<std::uint32_t>(c_.options.worker_wait.count()),
                         item_timeout_ms(c_.options)},
            &chunk.payload);
    last_sent_ = Clock::now();
  }

  // Tells the broker which chunks we still await, so it can spot one lost on the way.
  void heartbeat() {
    wire::Heartbeat beat{id_, seen_, {}};
    beat.open.reserve(pending_.size());
    for (const auto& [first, chunk] : pending_) {
      if (!chunk.refused) beat.open.push_back(first);  // the broker never took a refused one
    }
    c_.send(beat);
  }

  void resubmit_all() {
    for (auto& [first, chunk] : pending_) {
      if (!chunk.refused) submit(first, chunk);
    }
  }

  // FAILED over_limit: the broker holds as many of our bytes as its operator allows
  // (--max-client-bytes), so it did not take this chunk. Keep it, send it again when an answer
  // frees room, and hold fewer bytes from now on. A chunk refused while the broker holds
  // nothing else of ours can never fit: that is the caller's error.
  void over_limit(const wire::Failed& f) {
    auto it = pending_.find(f.first);
    if (it == pending_.end() || it->second.refused) return;
    std::size_t held = 0;
    for (const auto& [first, chunk] : pending_) {
      if (!chunk.refused && first != f.first) held += chunk.payload.size();
    }
    if (held == 0 && chunk_answered_since(it->second)) {
      // The broker still held chunks whose answers crossed this refusal on the wire: there
      // is room now, so send it again at once (nothing else would wake a resend).
      submit(it->first, it->second);
      return;
    }
    if (held == 0) {
      throw RefusedError(std::string(wire::to_wire(wire::Code::OverLimit)),
                         "the broker at " + c_.endpoint + " refused a chunk of " +
                             std::to_string(it->second.payload.size()) + " bytes of " + function_ +
                             ": " + f.message);
    }
    it->second.refused = true;
    ++refused_;
    byte_window_ = std::min(byte_window_, held);
  }

  bool chunk_answered_since(const Chunk& chunk) const { return answers_ != chunk.answers_at_send; }

  void resend_refused() {
    for (auto& [first, chunk] : pending_) {
      if (!chunk.refused) continue;
      chunk.refused = false;
      --refused_;
      submit(first, chunk);
      return;  // one per answer: what an answer frees is room for about one chunk
    }
  }

  // Returns false when the sink asked to stop.
  bool receive() {
    std::vector<zmq::message_t> frames;
    const std::uint64_t delivered_before = delivered_;
    while (true) {
      // A held job's consumer takes results one by one: the rest wait in ZeroMQ's queue as
      // compact msgpack rather than decoded in the consumer's buffer.
      if (hold_ && delivered_ != delivered_before) return true;
      frames.clear();
      if (!zmq::recv_multipart(c_.socket, std::back_inserter(frames), zmq::recv_flags::dontwait)) {
        return true;
      }
      wire::Message message;
      try {
        message = wire::decode(frames[0].data(), frames[0].size());
      } catch (const ProtocolError&) {
        continue;  // not from a broker we understand: ignore, and it does not count as one
      }
      last_heard_ = Clock::now();
      if (!handle(message, frames)) return false;
    }
  }

  bool handle(const wire::Message& message, std::vector<zmq::message_t>& frames) {
    if (const auto* d = std::get_if<wire::Deliver>(&message)) {
      if (d->job_id != id_ || frames.size() != 2) return true;  // a late answer for an old job
      seen_ = d->seq;
      ++answers_;
      return deliver(*d, frames[1]);
    }
    if (const auto* f = std::get_if<wire::Failed>(&message)) {
      if (f->job_id != id_) return true;
      if (f->seq != 0) seen_ = f->seq;
      if (!wire::is(f->code, wire::Code::OverLimit)) ++answers_;
      if (wire::is(f->code, wire::Code::UnknownFunction))
        throw UnknownFunctionError(function_, f->message);
      if (wire::is(f->code, wire::Code::OverLimit)) {
        over_limit(*f);
        return true;
      }
      const std::string text = f->message.empty() ? f->code : f->message;
      return fail_range(f->first, f->count, text, "");
    }
    if (const auto* r = std::get_if<wire::Resync>(&message)) {
      if (r->job_id == id_) resubmit_all();
      return true;
    }
    if (const auto* a = std::get_if<wire::Alive>(&message)) {
      if (instance_ != 0 && a->instance != instance_) resubmit_all();
      instance_ = a->instance;
      if (a->heartbeat_ms > 0)
        c_.broker_heartbeat = heartbeat_ = std::chrono::milliseconds(a->heartbeat_ms);
      return true;
    }
    if (const auto* e = std::get_if<wire::Error>(&message)) {
      if (wire::is(e->code, wire::Code::Forbidden)) {
        throw RefusedError(e->code,
                           "the broker at " + c_.endpoint + " refused this client: " + e->message);
      }
      throw ProtocolError("broker refused a message: " + e->code + ": " + e->message);
    }
    return true;  // BYE: the broker is restarting; heartbeats will find it again
  }

  // Finds the pending chunk that holds [first, first+count): split re-runs deliver parts.
  std::map<std::uint64_t, Chunk>::iterator chunk_of(std::uint64_t first, std::uint32_t count) {
    auto it = pending_.upper_bound(first);
    if (it == pending_.begin()) return pending_.end();
    --it;
    if (first + count > it->first + it->second.count) return pending_.end();
    return it;
  }

  bool deliver(const wire::Deliver& d, const zmq::message_t& payload) {
    auto it = chunk_of(d.first, d.count);
    if (it == pending_.end()) return true;  // a duplicate of something already received
    msgpack::object_handle handle;
    try {
      handle = unpack_untrusted(payload.data<char>(), payload.size());
    } catch (const ProtocolError& e) {
      return fail_range(d.first, d.count, std::string("unreadable result: ") + e.what(), d.worker);
    }
    const msgpack::object& array = handle.get();
    if (array.type != msgpack::type::ARRAY || array.via.array.size != d.count) {
      return fail_range(d.first, d.count,
                        "result does not hold " + std::to_string(d.count) + " entries", d.worker);
    }
    if (d.count > 0 && d.elapsed_us > 0) sizer_.observe(d.count, d.elapsed_us);
    for (std::uint32_t i = 0; i < d.count; ++i) {
      Client::Item item;
      item.index = d.first + i;
      item.worker = &d.worker;
      item.last_in_message = i + 1 == d.count;
      item.chunk_elapsed_us = d.elapsed_us;
      const entry::Decoded decoded = entry::decode(array.via.array.ptr[i]);
      item.value = decoded.value;
      if (item.value == nullptr) item.error = &decoded.error;
      if (!accept(it, item)) return false;
    }
    forget_if_complete(it);
    return true;
  }

  bool fail_range(std::uint64_t first, std::uint32_t count, const std::string& message,
                  const std::string& worker) {
    auto it = chunk_of(first, count);
    if (it == pending_.end()) return true;
    for (std::uint32_t i = 0; i < count; ++i) {
      Client::Item item;
      item.index = first + i;
      item.error = &message;
      item.worker = &worker;
      item.last_in_message = i + 1 == count;
      if (!accept(it, item)) return false;
    }
    forget_if_complete(it);
    return true;
  }

  void forget_if_complete(std::map<std::uint64_t, Chunk>::iterator it) {
    if (it->second.remaining == 0) {
      inflight_bytes_ -= it->second.payload.size();
      pending_.erase(it);
      if (refused_ > 0) resend_refused();
    }
  }

  // Exactly once to the caller: an item already received (a re-run's duplicate) is dropped.
  bool accept(std::map<std::uint64_t, Chunk>::iterator it, const Client::Item& item) {
    Chunk& chunk = it->second;
    const std::uint64_t offset = item.index - it->first;
    if (chunk.received[offset]) return true;
    chunk.received[offset] = true;
    --chunk.remaining;
    ++delivered_;
    return sink_(item);
  }

  // Big enough that per-chunk costs vanish, small enough to stay under malloc's mmap threshold
  // (results are about twice their arguments' size): mmap'd buffers fault in every page anew.
  static constexpr std::size_t kMaxChunkBytes = 48 << 10;
  msgpack::sbuffer buffer_{kMaxChunkBytes + 4096};

  Client::Impl& c_;
  const std::string function_;
  const Next next_;
  const Sink sink_;
  const bool hold_;
  const std::uint64_t id_;
  ChunkSizer sizer_;
  std::map<std::uint64_t, Chunk> pending_;
  std::uint64_t next_index_ = 0;
  std::uint64_t seen_ = 0;  // seq of the last DELIVER or FAILED received
  std::size_t inflight_bytes_ = 0;
  std::size_t byte_window_ = c_.options.max_inflight_bytes;  // lowered by over_limit
  std::uint64_t answers_ = 0;  // DELIVERs and FAILEDs (but over_limit) received for this job
  std::size_t refused_ = 0;    // chunks waiting to be sent again
  bool input_done_ = false;
  bool finished_ = false;
  std::uint64_t delivered_ = 0;  // items handed to the sink
  // With hold: chunks submitted and not yet entirely consumed, by first index.
  std::map<std::uint64_t, Held> outstanding_;
  std::map<std::uint64_t, Held>::iterator release_hint_ = outstanding_.end();
  std::size_t outstanding_bytes_ = 0;
  std::uint64_t instance_ = 0;
  std::chrono::milliseconds heartbeat_{1000};
  Clock::time_point last_sent_{};
  bool asked_heartbeat_ = false;
  std::vector<zmq::pollitem_t> poll_items_;
  Clock::time_point last_heard_{};
  Clock::time_point last_step_{};  // when the last step returned; none yet when zero
};

Client::Client(std::string endpoint, ClientOptions options)
    : impl_(std::make_unique<Impl>(std::move(endpoint), options)) {}
Client::~Client() = default;
Client::Client(Client&&) noexcept = default;
Client& Client::operator=(Client&&) noexcept = default;

const std::string& Client::endpoint() const {
  return impl_->endpoint;
}
const ClientOptions& Client::options() const {
  return impl_->options;
}

Client Client::sibling() const {
  Client copy(impl_->endpoint, impl_->options);
  copy.impl_->before_submit = impl_->before_submit;
  return copy;
}

void detail::set_before_submit(Client& client, std::function<void(const std::string&)> hook) {
  client.impl_->before_submit = std::move(hook);
}

msgpack::object_handle Client::status(std::chrono::milliseconds timeout) {
  impl_->claim("ask for the broker's status");
  impl_->send(wire::StatusRequest{});
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
      if (std::holds_alternative<wire::Status>(wire::decode(frames[0].data(), frames[0].size())) &&
          frames.size() == 2) {
        return unpack_untrusted(frames[1].data<char>(), frames[1].size());
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

Engine::Engine(Client& client, std::string function, Next next, Sink sink, bool hold)
    : job_(std::make_unique<ClientJob>(*client.impl_, std::move(function), std::move(next),
                                       std::move(sink), hold)) {}
Engine::~Engine() = default;

bool Engine::step(int wake_fd) {
  return job_->step(std::chrono::milliseconds::max(), wake_fd);
}
void Engine::consumed(std::uint64_t index) {
  job_->consumed(index);
}

}  // namespace detail

}  // namespace seppo
