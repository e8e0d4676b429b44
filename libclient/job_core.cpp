#include "libclient/job_core.hpp"

#include "common/endpoint_list.hpp"

#include <algorithm>
#include <cstdio>

#include "libclient/scalar_entries.hpp"
#include "protocol/payload.hpp"
#include "protocol/result_entry.hpp"
#include "seppo/convert.hpp"
#include "seppo/error.hpp"

namespace seppo::client {
namespace {

// No broker accepts less than this per message (--max-message-bytes is at least 1024), so a
// chunk this small may go before the broker has said how large one may be.
constexpr std::size_t kSafeUnannounced = 1024;
// A resubmission after a broker restart: the function had workers, which need a moment to
// announce themselves to the new broker.
constexpr std::chrono::milliseconds kRestartWait{60000};
// The protocol features this client names in SUBMIT (§4.4, §13.1): it takes DELIVERS (C24).
const std::vector<std::string> kFeatures{std::string(wire::kFeatureBatch)};

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

JobCore::JobCore(std::uint64_t job_id, std::string function, JobCoreOptions options, TimePoint now)
    : id_(job_id),
      function_(std::move(function)),
      options_(std::move(options)),
      sizer_(options_.client.chunk_size, options_.client.target_chunk_time, options_.client.window,
             now, options_.start_chunks),
      byte_window_(options_.client.max_inflight_bytes),
      heartbeat_(options_.broker_heartbeat.count() > 0 ? options_.broker_heartbeat
                                                       : options_.client.heartbeat),
      broker_heartbeat_(options_.broker_heartbeat),
      last_sent_(now),
      last_beat_(now),
      last_heard_(now) {
  // A broker with a faster heartbeat than ours would take us for dead before our first
  // heartbeat: ask at once (C3), its ALIVE says how often it wants to hear from us.
  first_beat_pending_ = broker_heartbeat_.count() == 0;
  heard_alive_ = options_.heard_alive;
  broker_max_message_ = options_.broker_max_message;
  broker_submits_ = options_.broker_submits;
  endpoints_ = split_endpoints(options_.endpoint).size();
  next_switch_ = now + failover_after();
}

// --- input ---

std::uint32_t JobCore::wanted() const {
  if (over() || input_done_ || refused_ > 0 || deferred_ > 0) return 0;
  const bool room =
      options_.hold
          ? outstanding_.size() < options_.client.window && outstanding_bytes_ < byte_window_
          : pending_.size() < options_.client.window && inflight_bytes_ < byte_window_;
  return room && pending_.size() < sizer_.chunk_limit() ? sizer_.next_size() : 0;
}

void JobCore::add_chunk(Bytes payload, std::uint32_t count, TimePoint now) {
  if (over() || input_done_ || count == 0) return;
  Chunk& chunk = pending_[next_index_];
  chunk.count = chunk.remaining = count;
  chunk.received.assign(count, false);
  chunk.payload = std::move(payload);
  inflight_bytes_ += chunk.payload.size();
  if (options_.hold) {
    outstanding_.emplace(next_index_, Held{count, count, chunk.payload.size()});
    outstanding_bytes_ += chunk.payload.size();
  }
  submit(next_index_, chunk, now);
  next_index_ += count;
  if (first_beat_pending_) {
    first_beat_pending_ = false;
    send_heartbeat(now);
  }
  fail_oversized(now);
}

void JobCore::end_input(TimePoint) {
  input_done_ = true;
}

// --- events ---

void JobCore::on_message(const wire::PeerId&, const void* header, std::size_t header_size,
                         Bytes* payload, TimePoint now) {
  if (over()) return;
  wire::Message message;
  try {
    message = wire::decode(header, header_size);
  } catch (const ProtocolError&) {
    return;  // not from a broker we understand: ignored, and no sign of its life
  }
  on_decoded(message, payload, now);
}

void JobCore::on_decoded(const wire::Message& message, Bytes* payload, TimePoint now) {
  last_heard_ = now;  // C4: anything that decodes is a sign of the broker's life
  next_switch_ = now + failover_after();
  if (const auto* d = std::get_if<wire::Deliver>(&message)) {
    if (d->job_id != id_ || payload == nullptr) return;  // C20: a late answer for an old job
    seen_ = d->seq;
    ++answers_;
    on_deliver(*d, *payload, now);
  } else if (const auto* ds = std::get_if<wire::Delivers>(&message)) {
    // C24: several chunks' answers in one message, each read as its own DELIVER, in order.
    if (ds->job_id != id_ || payload == nullptr) return;  // C20
    std::vector<wire::BatchedDeliver> parts;
    try {
      parts = wire::split(*ds, *payload);
    } catch (const ProtocolError&) {
      return;  // sizes that do not add up: none is read, so the broker resends them (RESYNC)
    }
    for (const wire::BatchedDeliver& part : parts) {
      if (over()) return;
      seen_ = part.deliver.seq;
      ++answers_;
      on_deliver(part.deliver, part.payload, now);
    }
  } else if (const auto* f = std::get_if<wire::Failed>(&message)) {
    if (f->job_id != id_) return;
    if (f->seq != 0) seen_ = f->seq;
    if (f->code != wire::Code::OverLimit) ++answers_;
    if (f->code == wire::Code::UnknownFunction) {
      fail(Failure::Kind::UnknownFunction, std::string(wire::to_wire(wire::Code::UnknownFunction)),
           f->message);
    } else if (f->code == wire::Code::OverLimit) {
      over_limit(*f, now);
    } else {
      // The code goes to the caller as it is on the wire (RemoteError::code()): "unknown" for
      // one this client does not know.
      const std::string_view code = wire::code_name(f->code);
      fail_range(f->first, f->count, code, f->message.empty() ? std::string(code) : f->message, "",
                 now);
    }
  } else if (const auto* r = std::get_if<wire::Resync>(&message)) {
    if (r->job_id == id_) {
      // Heartbeats queued while a connection was down arrive together, and the broker answers
      // each with RESYNC: resending for every one would run chunks answered meanwhile again
      // and fill the client's byte limit (seppo-sim seed 21918). Within a heartbeat of the
      // last resend, a RESYNC answers a heartbeat sent before it; a real need shows again at
      // the next heartbeat.
      // C25: a broker that restarted (or one too old to name its instance) may not take
      // SUBMITS: until its ALIVE says so, chunks go one a message.
      if (r->instance == 0 || (instance_ != 0 && r->instance != instance_)) broker_submits_ = false;
      if (!resynced_at_ || now - *resynced_at_ >= heartbeat_) {
        resynced_at_ = now;
        resubmit_all(now);
      }
      // The instance this RESYNC comes from has what we resubmitted (or will have at the next
      // RESYNC): its ALIVE must not make us resubmit it again (§4.10).
      if (r->instance != 0) instance_ = r->instance;
      if (!heard_alive_) {
        // C21: a broker that answers RESYNC while we hold our chunks back does not announce
        // its limits (an older one): stop waiting for them.
        heard_alive_ = true;
        send_deferred(now);
      }
      // C13: until an ALIVE came, ask again. The broker that answered RESYNC may have dropped
      // us for dead because our default interval is longer than its expiry (its ALIVE got
      // lost): without its heartbeat_ms we would be dropped again and again.
      if (broker_heartbeat_.count() == 0) send_heartbeat(now);
    }
  } else if (const auto* a = std::get_if<wire::Alive>(&message)) {
    // A restarted broker's limit applies to what is resubmitted to it.
    broker_max_message_ = a->max_message_bytes;
    broker_submits_ = wire::has_feature(a->features, wire::kFeatureSubmits);
    heard_alive_ = true;
    // The first ALIVE of a job only sets the instance: a change means the broker restarted.
    if (instance_ != 0 && a->instance != instance_) resubmit_all(now);
    instance_ = a->instance;
    if (a->heartbeat_ms > 0)
      heartbeat_ = broker_heartbeat_ = std::chrono::milliseconds(a->heartbeat_ms);
    send_deferred(now);
  } else if (const auto* e = std::get_if<wire::Error>(&message)) {
    const std::string code(wire::code_name(e->code));
    if (e->code == wire::Code::NotActive) {
      on_not_active(e->message, now);
    } else if (e->code == wire::Code::BadMessage && broker_submits_) {
      // C25: a broker that does not take SUBMITS after all (one replaced by an older version
      // under the same connection, before its ALIVE): everything open goes again one chunk a
      // message; the broker ignores what it holds already. Once: then it is an error.
      broker_submits_ = false;
      resubmit_all(now);
    } else if (e->code == wire::Code::Forbidden) {
      fail(Failure::Kind::Refused, code,
           "the broker at " + options_.endpoint + " refused this client: " + e->message);
    } else {
      fail(Failure::Kind::Protocol, code, "broker refused a message: " + code + ": " + e->message);
    }
  }
  // BYE (C16): the broker is restarting; heartbeats will find it again. Others: not for us.
  fail_oversized(now);
}

void JobCore::on_tick(TimePoint now) {
  if (over() || paused_at_) return;
  sizer_.tick(now);
  if (endpoints_ > 1 && now >= next_switch_) fail_over(now);  // C30
  if (now >= next_beat()) send_heartbeat(now);
  if (now - last_heard_ >= options_.client.timeout) {
    fail(Failure::Kind::Timeout, "",
         "no reply from the broker at " + options_.endpoint + " for " +
             seconds(options_.client.timeout) + " (is seppo-broker running there?); " +
             std::to_string(pending_.size()) + " chunks of " + function_ + " unanswered");
  }
}

void JobCore::consumed(std::uint64_t index, TimePoint) {
  if (options_.hold) release(index);
}

void JobCore::consumed(std::uint64_t first, std::uint32_t count, TimePoint) {
  if (options_.hold && count > 0) release(first, count);
}

void JobCore::pause(TimePoint now) {
  if (!paused_at_) paused_at_ = now;
}

void JobCore::resume(TimePoint now) {
  if (!paused_at_) return;
  last_heard_ += now - *paused_at_;
  next_switch_ += now - *paused_at_;
  paused_at_.reset();
}

void JobCore::close(TimePoint now) {
  if (closed_) return;
  closed_ = true;
  if (next_index_ > 0) send(wire::Done{id_}, now);  // nothing submitted: nothing to forget
}

// --- drained ---

void JobCore::on_delivery(const wire::DeliveryReport&, TimePoint) {}

void JobCore::take_outbox(std::vector<wire::Outgoing>& out) {
  flush_submits();
  if (out.empty()) {
    std::swap(out, outbox_);
  } else {
    for (wire::Outgoing& o : outbox_) out.push_back(std::move(o));
  }
  outbox_.clear();
}

std::vector<JobCore::ItemResult> JobCore::take_results() {
  std::vector<ItemResult> out;
  take_results(out);
  return out;
}

void JobCore::take_results(std::vector<ItemResult>& out) {
  out.clear();
  std::swap(out, results_);
  taken_answers_.clear();  // the previous batch's answers may go now
  std::swap(taken_answers_, held_answers_);
}

void JobCore::take_blocks(std::vector<detail::Block>& out) {
  out.clear();
  std::swap(out, blocks_);
}

JobCore::TimePoint JobCore::next_deadline(TimePoint) const {
  if (over() || done() || paused_at_) return TimePoint::max();
  TimePoint deadline = std::min(next_beat(), last_heard_ + options_.client.timeout);
  if (!input_done_) deadline = std::min(deadline, sizer_.limit_grows_at());
  return endpoints_ > 1 ? std::min(deadline, next_switch_) : deadline;
}

bool JobCore::done() const {
  return input_done_ && pending_.empty() && !failure_;
}

// --- rules ---

void JobCore::send(const wire::Message& message, TimePoint now, std::optional<Bytes> payload) {
  flush_submits();  // queued SUBMITs were sent before this message
  outbox_.push_back(wire::Outgoing{{}, wire::encode(message), std::move(payload), 0});
  last_sent_ = now;  // C17: any message counts, HEARTBEAT goes when nothing else did
}

void JobCore::submit(std::uint64_t first, Chunk& chunk, TimePoint now) {
  if (broker_max_message_ != 0 && chunk.payload.size() > broker_max_message_) {
    // C22: sent, it would only get the connection dropped and resubmitted forever (§12).
    oversized_.push_back(first);
    return;
  }
  if (!heard_alive_ && chunk.payload.size() > kSafeUnannounced) {
    if (!chunk.deferred) ++deferred_;
    chunk.deferred = true;
    return;
  }
  chunk.answers_at_send = answers_;
  // Only a job's first SUBMIT sets the wait for workers; after a restart they need a moment.
  const auto wait = resubmitting_ ? std::max(options_.client.worker_wait, kRestartWait)
                                  : options_.client.worker_wait;
  const auto wait_ms = static_cast<std::uint32_t>(wait.count());
  if (options_.client.batch && options_.client.submits && broker_submits_) {
    // C25: the chunks this turn sends leave together as SUBMITS (flush_submits).
    if (!chunk.queued) queued_.push_back(Queued{first, wait_ms});
    chunk.queued = true;
    last_sent_ = now;  // C17: it leaves with this turn's outbox
    return;
  }
  send(submit_message(first, chunk.count, wait_ms), now, chunk.payload);
}

// A SUBMIT of this job, or a SUBMITS' common fields (first and count 0). Naming "batch" lets the
// broker send this client DELIVERS (C24, B59).
wire::Submit JobCore::submit_message(std::uint64_t first, std::uint32_t count,
                                     std::uint32_t wait_ms) const {
  return wire::Submit{id_,
                      function_,
                      first,
                      count,
                      wait_ms,
                      item_timeout_ms(options_.client),
                      options_.client.batch ? kFeatures : std::vector<std::string>{}};
}

// C25: the SUBMITs queued this turn, in order, as SUBMITS of at most kMaxBatch chunks and
// kMaxBatchBytes of payload (or the broker's limit, when lower); a chunk alone, or one whose
// payload alone exceeds that, goes as SUBMIT. Chunks answered or failed meanwhile are left out.
void JobCore::flush_submits() {
  if (queued_.empty()) return;
  std::vector<Queued> queued;
  std::swap(queued, queued_);
  std::size_t limit = wire::kMaxBatchBytes;
  if (broker_max_message_ != 0) limit = std::min<std::uint64_t>(limit, broker_max_message_);
  wire::SubmitPart parts[wire::kMaxBatch];
  std::size_t n = 0, bytes = 0;
  std::uint32_t wait_ms = 0;
  auto emit = [&] {
    if (n == 1) {
      outbox_.push_back(
          wire::Outgoing{{},
                         wire::encode(submit_message(parts[0].first, parts[0].count, wait_ms)),
                         *parts[0].payload,
                         0});
    } else if (n > 1) {
      wire::Batch batch = wire::encode_submits(submit_message(0, 0, wait_ms), parts, n);
      outbox_.push_back(
          wire::Outgoing{{}, std::move(batch.header), Bytes(std::move(batch.payload)), 0});
    }
    n = bytes = 0;
  };
  for (const Queued& q : queued) {
    auto it = pending_.find(q.first);
    if (it == pending_.end() || !it->second.queued) continue;
    Chunk& chunk = it->second;
    chunk.queued = false;
    const std::size_t size = chunk.payload.size();
    // A broker that no longer names the feature (the client moved to the other of a pair, or
    // an ALIVE without it came this turn) gets the queued chunks as SUBMITs.
    if (n == wire::kMaxBatch ||
        (n > 0 && (!broker_submits_ || bytes + size > limit || q.wait_ms != wait_ms))) {
      emit();
    }
    parts[n++] = wire::SubmitPart{q.first, chunk.count, &chunk.payload};
    bytes += size;
    wait_ms = q.wait_ms;
  }
  emit();
}

void JobCore::send_deferred(TimePoint now) {
  for (auto& [first, chunk] : pending_) {
    if (!chunk.deferred) continue;
    chunk.deferred = false;
    --deferred_;
    submit(first, chunk, now);
  }
}

// Chunks too large for the broker fail item by item, naming the limit (C22).
void JobCore::fail_oversized(TimePoint now) {
  while (!oversized_.empty() && !over()) {
    const std::uint64_t first = oversized_.back();
    oversized_.pop_back();
    auto it = pending_.find(first);
    if (it == pending_.end()) continue;
    Chunk& chunk = it->second;
    if (chunk.refused) --refused_;
    chunk.refused = false;
    const std::string message =
        "item too large: a chunk of " + std::to_string(chunk.payload.size()) + " bytes (" +
        std::to_string(chunk.count) + " items) exceeds the broker's --max-message-bytes of " +
        std::to_string(broker_max_message_);
    fail_range(first, chunk.count, wire::to_wire(wire::Code::TooLarge), message, "", now);
  }
}

// Tells the broker which chunks we still await, so it can spot one lost on the way.
void JobCore::send_heartbeat(TimePoint now) {
  wire::Heartbeat beat{id_, seen_, {}};
  beat.open.reserve(pending_.size());
  for (const auto& [first, chunk] : pending_) {
    // The broker never took a refused or deferred one.
    if (!chunk.refused && !chunk.deferred) beat.open.push_back(first);
  }
  send(std::move(beat), now);
  last_beat_ = now;
}

void JobCore::resubmit_all(TimePoint now) {
  resubmitting_ = true;
  for (auto& [first, chunk] : pending_) {
    if (!chunk.refused) submit(first, chunk, now);
  }
}

// FAILED over_limit (C10, C11, C12): the broker holds as many of our bytes as its operator allows
// (--max-client-bytes), so it did not take this chunk. Keep it, send it again when an answer
// frees room, and hold fewer bytes from now on. A chunk refused while the broker holds nothing
// else of ours can never fit: that is the caller's error.
void JobCore::over_limit(const wire::Failed& f, TimePoint now) {
  auto it = pending_.find(f.first);
  if (it == pending_.end() || it->second.refused) return;
  std::size_t held = 0;
  for (const auto& [first, chunk] : pending_) {
    // Deferred chunks (C21) never reached the broker: it holds none of their bytes.
    if (!chunk.refused && !chunk.deferred && first != f.first) held += chunk.payload.size();
  }
  if (held == 0 && answers_ != it->second.answers_at_send) {
    // The broker still held chunks whose answers crossed this refusal on the wire: there is
    // room now, so send it again at once (nothing else would wake a resend).
    submit(it->first, it->second, now);
    return;
  }
  if (held == 0) {
    fail(Failure::Kind::Refused, std::string(wire::to_wire(wire::Code::OverLimit)),
         "the broker at " + options_.endpoint + " refused a chunk of " +
             std::to_string(it->second.payload.size()) + " bytes of " + function_ + ": " +
             f.message);
    return;
  }
  it->second.refused = true;
  ++refused_;
  byte_window_ = std::min(byte_window_, held);
}

void JobCore::resend_refused(TimePoint now) {
  for (auto& [first, chunk] : pending_) {
    if (!chunk.refused) continue;
    chunk.refused = false;
    --refused_;
    submit(first, chunk, now);
    return;  // one per answer: what an answer frees is room for about one chunk
  }
}

void JobCore::on_deliver(const wire::Deliver& d, const Bytes& payload, TimePoint now) {
  auto it = chunk_of(d.first, d.count);
  if (it == pending_.end()) return;  // C6: a duplicate of something already received
  if (options_.blocks && deliver_block(it, d, payload)) {
    if (d.count > 0 && d.elapsed_us > 0) sizer_.observe(d.count, d.elapsed_us);
    forget_if_complete(it, now);
    return;
  }
  std::shared_ptr<Answer> answer = new_answer();
  answer->worker = d.worker;
  answer->elapsed_us = d.elapsed_us;
  if (decode_scalar_entries(payload.data(), payload.size(), d.count, answer->values)) {
    answer->payload = payload;  // the strings' bytes
    if (d.count > 0 && d.elapsed_us > 0) sizer_.observe(d.count, d.elapsed_us);
    const Answer& a = *answer;
    held_answers_.push_back(std::move(answer));
    for (std::uint32_t i = 0; i < d.count; ++i) {
      accept(it, answered(d.first + i, &a.values[i], nullptr, a, i + 1 == d.count));
    }
    forget_if_complete(it, now);
    return;
  }
  answer->values.clear();
  std::vector<const msgpack::object*> values;
  if (!read_entries(payload.data(), payload.size(), d.count, *answer, values)) {
    fail_range(d.first, d.count, "", answer->error, d.worker, now);
    return;
  }
  if (d.count > 0 && d.elapsed_us > 0) sizer_.observe(d.count, d.elapsed_us);
  const Answer& a = *answer;
  held_answers_.push_back(std::move(answer));
  std::size_t failure = 0;
  for (std::uint32_t i = 0; i < d.count; ++i) {
    const bool last = i + 1 == d.count;
    accept(it, values[i] != nullptr
                   ? answered(d.first + i, values[i], nullptr, a, last)
                   : answered(d.first + i, nullptr, &a.errors[failure++], a, last));
  }
  forget_if_complete(it, now);
}

bool JobCore::read_entries(const char* data, std::size_t size, std::uint32_t count, Answer& answer,
                           std::vector<const msgpack::object*>& values) {
  values.clear();
  try {
    answer.entries = unpack_untrusted(data, size);
  } catch (const ProtocolError& e) {
    answer.error = std::string("unreadable result: ") + e.what();
    return false;
  }
  const msgpack::object& array = answer.entries.get();
  if (array.type != msgpack::type::ARRAY || array.via.array.size != count) {
    answer.error = "result does not hold " + std::to_string(count) + " entries";
    return false;
  }
  // Decoded first, into the answer: the items point to their errors there.
  std::vector<entry::Decoded> decoded(count);
  std::size_t failures = 0;
  for (std::uint32_t i = 0; i < count; ++i) {
    decoded[i] = entry::decode(array.via.array.ptr[i]);
    if (decoded[i].value == nullptr) ++failures;
  }
  answer.errors.reserve(answer.errors.size() + failures);
  values.reserve(count);
  for (entry::Decoded& e : decoded) {
    values.push_back(e.value);
    if (e.value == nullptr) answer.errors.push_back(std::move(e.error));
  }
  return true;
}

// The common case of a map: a chunk answered once, whole. Its items are marked received (C6)
// here; the caller reads them, and Engine::each_item() reads them as the core would have.
bool JobCore::deliver_block(Open::iterator it, const wire::Deliver& d, const Bytes& payload) {
  Chunk& chunk = it->second;
  if (d.count == 0) return false;
  const std::uint64_t offset = d.first - it->first;
  const auto begin = chunk.received.begin() + static_cast<std::ptrdiff_t>(offset);
  const auto end = begin + static_cast<std::ptrdiff_t>(d.count);
  // A whole chunk not answered before is the usual case: no bit to look at.
  if (!(d.count == chunk.count && chunk.remaining == chunk.count) &&
      std::find(begin, end, true) != end) {
    return false;
  }
  std::fill(begin, end, true);
  chunk.remaining -= d.count;
  delivered_ += d.count;
  detail::Block block;
  block.first = d.first;
  block.count = d.count;
  block.data = payload.data();
  block.size = payload.size();
  block.keep = payload.owner();
  block.worker = d.worker;
  block.chunk_elapsed_us = d.elapsed_us;
  blocks_.push_back(std::move(block));
  return true;
}

void JobCore::fail_range(std::uint64_t first, std::uint32_t count, std::string_view code,
                         const std::string& message, const std::string& worker, TimePoint now) {
  auto it = chunk_of(first, count);
  if (it == pending_.end()) return;
  auto answer = std::make_shared<Answer>();
  answer->worker = worker;
  answer->code = code;
  answer->error = message;
  const Answer& a = *answer;
  held_answers_.push_back(std::move(answer));
  for (std::uint32_t i = 0; i < count; ++i) {
    accept(it, answered(first + i, nullptr, &a.error, a, i + 1 == count));
  }
  forget_if_complete(it, now);
}

JobCore::ItemResult JobCore::answered(std::uint64_t index, const msgpack::object* value,
                                      const std::string* error, const Answer& answer, bool last) {
  ItemResult r;
  r.index = index;
  r.value = value;
  r.error = error;
  r.worker = &answer.worker;
  r.last_in_message = last;
  if (error != nullptr) {
    r.code = answer.code;
  } else {
    r.chunk_elapsed_us = answer.elapsed_us;
  }
  r.answer = &answer;
  return r;
}

std::shared_ptr<JobCore::Answer> JobCore::new_answer() {
  for (std::shared_ptr<Answer>& spare : spare_answers_) {
    if (spare && spare.use_count() == 1) {
      spare->payload = Bytes();
      spare->entries = msgpack::object_handle();
      spare->errors.clear();
      return spare;
    }
  }
  // None free: an empty slot, else the second one is given up (it goes with the last result
  // that needs it); a DELIVERS of many chunks takes a fresh Answer for each part but the first.
  std::shared_ptr<Answer>& slot = spare_answers_[0] ? spare_answers_[1] : spare_answers_[0];
  slot = std::make_shared<Answer>();
  return slot;
}

// Finds the open chunk that holds [first, first+count): split re-runs deliver parts.
JobCore::Open::iterator JobCore::chunk_of(std::uint64_t first, std::uint32_t count) {
  auto it = pending_.upper_bound(first);
  if (it == pending_.begin()) return pending_.end();
  --it;
  if (first + count > it->first + it->second.count) return pending_.end();
  return it;
}

void JobCore::forget_if_complete(Open::iterator it, TimePoint now) {
  if (it->second.remaining != 0) return;
  // C10: refused, yet answered: the broker held an earlier copy. It waits no longer.
  if (it->second.refused) --refused_;
  inflight_bytes_ -= it->second.payload.size();
  pending_.erase(it);
  if (refused_ > 0) resend_refused(now);
}

// Exactly once to the caller (C6): an item already received (a re-run's duplicate) is dropped.
bool JobCore::accept(Open::iterator it, ItemResult&& item) {
  Chunk& chunk = it->second;
  const std::uint64_t offset = item.index - it->first;
  if (chunk.received[offset]) return false;
  chunk.received[offset] = true;
  --chunk.remaining;
  ++delivered_;
  results_.push_back(std::move(item));
  return true;
}

void JobCore::release(std::uint64_t index, std::uint32_t count) {
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
  it->second.unconsumed -= std::min(count, it->second.unconsumed);
  if (it->second.unconsumed == 0) {
    outstanding_bytes_ -= it->second.bytes;
    outstanding_.erase(it);
    it = outstanding_.end();
  }
}

void JobCore::fail(Failure::Kind kind, std::string code, std::string message) {
  if (failure_) return;
  failure_ = Failure{kind, std::move(code), std::move(message)};
}

// Here, beside the core's own reading of answers, which it shares.
void each_item(const detail::Block& block, const std::function<void(const Item&)>& item) {
  client::JobCore::Answer answer;
  answer.worker = block.worker;
  std::vector<const msgpack::object*> values;
  const bool readable =
      client::JobCore::read_entries(block.data, block.size, block.count, answer, values);
  std::size_t failure = 0;
  for (std::uint32_t i = 0; i < block.count; ++i) {
    Item one;
    one.index = block.first + i;
    one.worker = &answer.worker;
    one.last_in_message = i + 1 == block.count;
    if (!readable) {
      one.error = &answer.error;
    } else if (values[i] != nullptr) {
      one.value = values[i];
      one.chunk_elapsed_us = block.chunk_elapsed_us;
    } else {
      one.error = &answer.errors[failure++];
    }
    item(one);
  }
}

}  // namespace seppo::client
