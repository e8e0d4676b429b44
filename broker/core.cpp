#include "broker/core.hpp"

#include <algorithm>
#include <cstdio>
#include <sstream>

#include "seppo/msgpack.hpp"

#include "protocol/codes.hpp"
#include "protocol/payload.hpp"
#include "seppo/error.hpp"

namespace seppo::broker {
namespace {

constexpr std::size_t kMaxFunctions = 4096;
constexpr std::size_t kMaxNameBytes = 256;
// A worker's name as DELIVER and DELIVERS carry it: its READY name (kMaxNameBytes), or
// printable_id() of its routing id (ZeroMQ's are 1 to 255 bytes, in hex twice as long).
constexpr std::size_t kMaxRoutingIdBytes = 255;
constexpr std::size_t kMaxWorkerName = std::max(kMaxNameBytes, 2 * kMaxRoutingIdBytes);
// B59: a DELIVERS may name kMaxBatch workers, each with the longest name; a client drops a
// header over kMaxHeaderBytes (C24), so a longer name would make it drop every such DELIVERS.
static_assert(wire::max_delivers_header(kMaxWorkerName) <= wire::kMaxHeaderBytes,
              "a DELIVERS of the longest worker names would exceed the header limit");

// Decoded messages carry the code itself; kept so the senders below read as before.
wire::Code code(wire::Code c) {
  return c;
}

std::string seconds(Duration d) {
  char text[32];
  std::snprintf(text, sizeof text, "%.1f s", std::chrono::duration<double>(d).count());
  return text;
}

}  // namespace

std::string printable_id(const PeerId& id) {
  const bool text = !id.empty() && std::all_of(id.begin(), id.end(),
                                               [](char c) { return c >= 0x21 && c <= 0x7e; });
  if (text) return id;
  static const char digits[] = "0123456789abcdef";
  std::string out;
  for (unsigned char c : id) {
    out.push_back(digits[c >> 4]);
    out.push_back(digits[c & 15]);
  }
  return out;
}

std::string client_label(const PeerId& id) {
  std::uint64_t h = 0xcbf29ce484222325ull;  // FNV-1a: stable across runs and platforms
  for (unsigned char c : id) h = (h ^ c) * 0x100000001b3ull;
  // The upper half as 8 hex digits, without snprintf's 1,000 instructions: with --http every
  // task's label goes to the task stream (bench/http_cost.sh).
  std::string text(8, '0');
  std::uint64_t upper = h >> 32;
  for (int i = 7; i >= 0; --i, upper >>= 4) text[i] = "0123456789abcdef"[upper & 0xf];
  return text;
}

const char* role_name(Role role) {
  switch (role) {
    case Role::Any:
      return "any";
    case Role::Worker:
      return "worker";
    case Role::Client:
      return "client";
  }
  return "?";
}

Core::Core(Config config, std::uint64_t instance, LogSink log)
    : config_(config),
      instance_(instance),
      log_(std::move(log)),
      // Ids differ between broker runs, so a result for a task of an earlier run never
      // matches a task of this one.
      next_task_id_(((instance >> 24) << 20) | 1) {}

void Core::log(log::Level level, const std::string& text) const {
  if (log_) log_(level, text);
}

void Core::log(log::Level level, const std::string& text, const LogFields& fields) const {
  if (fields_log_) {
    fields_log_(level, text, fields);
  } else {
    log(level, text);
  }
}

wire::Alive Core::alive() const {
  return wire::Alive{instance_,
                     static_cast<std::uint32_t>(config_.heartbeat.count()),
                     config_.liveness,
                     config_.max_message_bytes,
                     {std::string(wire::kFeatureAdopt), std::string(wire::kFeatureBatch),
                      std::string(wire::kFeatureSubmits)}};
}

void Core::send(const PeerId& to, const wire::Message& message) {
  if (const auto* error = std::get_if<wire::Error>(&message)) {
    stats_.refused(error->code ? wire::to_wire(*error->code) : "unknown");
  }
  outbox_.push_back(Outgoing{to, wire::encode(message), std::nullopt});
}

void Core::send(const PeerId& to, const wire::Message& message, Bytes payload) {
  outbox_.push_back(Outgoing{to, wire::encode(message), std::move(payload)});
}

void Core::on_malformed(const PeerId& from, const std::string& why) {
  log(log::Level::Warning, "dropped a malformed message from " + printable_id(from) + ": " + why);
  send(from, wire::Error{code(wire::Code::BadMessage), why});
}

void Core::on_message(const PeerId& from, const void* header, std::size_t header_size,
                      Bytes* payload, TimePoint now, Role role, std::string_view key) {
  now_ = now;
  begin(now);
  wire::Message message;
  try {
    message = wire::decode(header, header_size);
  } catch (const Error& e) {
    on_malformed(from, e.what());
    return;
  }
  const wire::Type type = wire::type_of(message);
  stats_.received(static_cast<std::uint8_t>(type));
  if (wire::has_payload(type) != (payload != nullptr)) {
    on_malformed(from,
                 std::string(wire::type_name(type)) +
                     (payload ? " must not carry a payload frame" : " must carry a payload frame"));
    return;
  }
  if (role != Role::Any && !permitted(from, message, role, key)) return;
  handle(from, std::move(message), payload, now);
}

// Workers serve and clients submit: a key authorised for one cannot do the other's part, so a
// stolen client key cannot receive other clients' chunks, nor a worker key run jobs.
bool Core::permitted(const PeerId& from, const wire::Message& message, Role role,
                     std::string_view key) {
  const wire::Type type = wire::type_of(message);
  Role needed = Role::Any;
  switch (type) {
    case wire::Type::Ready:
    case wire::Type::Result:
    case wire::Type::Results:
    case wire::Type::Credit:
    case wire::Type::Return:
      needed = Role::Worker;
      break;
    case wire::Type::Submit:
    case wire::Type::Submits:
    case wire::Type::Done:
      needed = Role::Client;
      break;
    case wire::Type::Heartbeat:
      needed = std::get<wire::Heartbeat>(message).job_id == 0 ? Role::Worker : Role::Client;
      break;
    default:
      return true;  // BYE and STATUS_REQUEST are for everyone; others are refused as usual
  }
  if (role == needed) return true;
  std::string what = wire::type_name(type);
  if (type == wire::Type::Heartbeat)
    what += needed == Role::Worker ? " without a job" : " for a job";
  log(log::Level::Warning, "refused " + what + " from " + printable_id(from) + ", key " +
                               std::string(key) + ": the key is authorised as a " +
                               role_name(role) + ", not a " + role_name(needed));
  send(from, wire::Error{code(wire::Code::Forbidden),
                         what + " needs a " + role_name(needed) +
                             " key; this peer's key is authorised as a " + role_name(role)});
  return false;
}

void Core::handle(const PeerId& from, wire::Message&& message, Bytes* payload, TimePoint now) {
  switch (wire::type_of(message)) {
    case wire::Type::Ready:
      on_ready(from, std::get<wire::Ready>(std::move(message)), now);
      break;
    case wire::Type::Result:
      on_result(from, std::get<wire::Result>(message), payload, now);
      break;
    case wire::Type::Results:
      on_results(from, std::get<wire::Results>(message), payload, now);
      break;
    case wire::Type::Submit: {
      const auto& m = std::get<wire::Submit>(message);
      on_submit(from,
                SubmitView{m.job_id, m.function, m.first, m.count, m.wait_ms, m.item_timeout_ms,
                           wire::has_feature(m.features, wire::kFeatureBatch)},
                payload, now);
    } break;
    case wire::Type::Submits:
      on_submits(from, std::get<wire::Submits>(message), payload, now);
      break;
    case wire::Type::Heartbeat:
      on_heartbeat(from, std::get<wire::Heartbeat>(message), now);
      break;
    case wire::Type::Done:
      if (auto c = clients_.find(from); c != clients_.end()) c->second.last_heard = now;
      on_done(from, std::get<wire::Done>(message).job_id, now);
      break;
    case wire::Type::Bye:
      if (workers_.count(from)) {
        remove_worker(from, false, "left: " + std::get<wire::Bye>(message).reason, now);
      } else if (clients_.count(from)) {
        remove_client(from, "left");
      }
      break;
    case wire::Type::Credit:
      if (auto w = workers_.find(from); w != workers_.end()) {
        w->second.heard(now);
        w->second.capacity = std::clamp<std::uint32_t>(std::get<wire::Credit>(message).capacity, 1,
                                                       config_.max_capacity);
        reindex(w->second);
        dispatch_worker(from);
      } else {
        send(from, wire::Error{code(wire::Code::NotReady), "unknown worker: send READY first"});
      }
      break;
    case wire::Type::Return:
      on_return(from, std::get<wire::Return>(message), now);
      break;
    case wire::Type::StatusRequest: {
      send(from, wire::Status{}, Bytes(status_payload(now)));
      break;
    }
    default:
      on_malformed(from, std::string(wire::type_name(wire::type_of(message))) +
                             " is not a message the broker accepts");
  }
}

void Core::on_ready(const PeerId& from, wire::Ready&& m, TimePoint now) {
  if (shutting_down_) {
    send(from, wire::Bye{"broker shutting down"});
    return;
  }
  if (m.functions.empty() || m.functions.size() > kMaxFunctions || m.name.size() > kMaxNameBytes ||
      m.host.size() > kMaxNameBytes || m.version.size() > kMaxNameBytes ||
      std::any_of(m.functions.begin(), m.functions.end(),
                  [](const std::string& f) { return f.empty() || f.size() > kMaxNameBytes; })) {
    on_malformed(from, "READY: needs 1 to 4096 functions with names of 1 to 256 bytes");
    return;
  }
  // A READY from a known worker means it lost track of us: its tasks are not coming back,
  // except those it lists as kept (W26). Those must stay with it: its requeued tasks are
  // dispatched only after take_listing re-adopted them (B51), and the CANCELs it was sent
  // recently still count (one READY per buffered message answered not_ready, W10).
  std::vector<std::string> requeued_functions;
  std::unordered_map<std::uint64_t, TimePoint> cancelled_kept, cancelled_listed;
  if (auto known = workers_.find(from); known != workers_.end()) {
    requeued_functions = known->second.functions;
    cancelled_kept = std::move(known->second.cancelled_kept);
    cancelled_listed = std::move(known->second.cancelled_listed);
    remove_worker(from, false, "announced itself again", now, false);
  }
  const auto slot = workers_.try_emplace(from).first;
  Worker& w = slot->second;
  w.cancelled_kept = std::move(cancelled_kept);
  w.cancelled_listed = std::move(cancelled_listed);
  w.id = &slot->first;
  w.name = m.name.empty() ? printable_id(from) : std::move(m.name);
  w.host = std::move(m.host);
  w.version = std::move(m.version);  // empty from a worker that predates it (§4.1)
  w.adopts = wire::has_feature(m.features, wire::kFeatureAdopt);
  w.batches = wire::has_feature(m.features, wire::kFeatureBatch);
  w.pid = m.pid;
  w.capacity = std::clamp<std::uint32_t>(m.capacity, 1, config_.max_capacity);
  std::sort(m.functions.begin(), m.functions.end());
  m.functions.erase(std::unique(m.functions.begin(), m.functions.end()), m.functions.end());
  w.functions = std::move(m.functions);
  w.last_heard = now;
  w.joined = now;
  w.services.clear();
  w.ranks.clear();
  for (const std::string& f : w.functions) {
    Service& s = services_[f];
    w.ranks.push_back(static_cast<std::uint32_t>(s.providers.size()));
    s.providers.push_back(Provider{&w, static_cast<std::uint32_t>(w.services.size())});
    ++s.provider_count;
    w.services.push_back(&s);
    unserved_since_.erase(f);
    if (!s.indexed && s.provider_count >= index_from_) set_indexed(s, true);
  }
  reindex(w);
  log(log::Level::Info,
      "worker " + w.name + " joined with " + std::to_string(w.functions.size()) +
          " functions, capacity " + std::to_string(w.capacity) +
          (w.version.empty() ? std::string() : ", version " + w.version),
      LogFields{{}, w.name, {}});
  // What it kept from a broker it lost (§9.1): adopted, waited for, or cancelled (before the
  // ALIVE, on which it hands over the results it kept).
  take_listing(from, w, m.held, false);
  send(from, alive());
  for (const std::string& f : requeued_functions) dispatch(f);
  dispatch_worker(from);
}

void Core::on_result(const PeerId& from, const wire::Result& m, Bytes* payload, TimePoint now) {
  auto w = workers_.find(from);
  if (w == workers_.end()) {
    send(from, wire::Error{code(wire::Code::NotReady), "unknown worker: send READY first"});
    return;
  }
  w->second.heard(now);
  auto& held = w->second.inflight;
  if (auto h = std::find(held.begin(), held.end(), m.task_id); h != held.end()) {
    if (h == held.begin()) w->second.head_since = now;  // the next one starts now
    held.erase(h);
  }
  // The task it ran alone (a suspect) or was abandoning (a time limit, §10.1) is answered: it
  // may take work again, though tasks sent before the time limit passed still wait there.
  if (held.empty() || w->second.isolating == m.task_id) w->second.isolating = 0;
  reindex(w->second);
  auto t = tasks_.find(m.task_id);
  if (t == tasks_.end() || t->second.holder != from) {
    // A duplicate (the task was re-run and delivered already), a job that is gone, or a task
    // taken back from this worker and queued or running elsewhere: that run will answer.
    // A task it kept from a broker it lost, not adopted yet: kept until its client resubmits.
    if (w->second.pending == 0 || !stash_result(from, w->second, m, payload)) {
      log(log::Level::Debug, "dropped a result for task " + std::to_string(m.task_id) +
                                 " that is no longer outstanding at " + w->second.name);
    }
  } else {
    Task& task = t->second;
    ++w->second.tasks_done;
    auto j = jobs_.find(task.job);
    if (j != jobs_.end()) {
      deliver(j->second, task, w->second.name, m.elapsed_us, m.items_failed, std::move(*payload));
    }
    release(task);
    erase_task(m.task_id, j == jobs_.end() ? nullptr : &j->second);
  }
  dispatch_worker(from);
}

// B56, B57: a RESULTS is its RESULTs, in order, each as B6 (or B2) would take it; one whose
// sizes do not add up to its payload is refused whole (nothing of it taken).
void Core::on_results(const PeerId& from, const wire::Results& m, Bytes* payload, TimePoint now) {
  if (workers_.find(from) == workers_.end()) {
    send(from, wire::Error{code(wire::Code::NotReady), "unknown worker: send READY first"});
    return;
  }
  std::vector<wire::BatchedResult> parts;
  try {
    parts = wire::split(m, *payload);
  } catch (const Error& e) {
    on_malformed(from, e.what());
    return;
  }
  for (wire::BatchedResult& part : parts) on_result(from, part.result, &part.payload, now);
}

void Core::deliver(Job& job, Task& task, const std::string& worker, std::uint64_t elapsed_us,
                   std::uint32_t items_failed, Bytes payload) {
  stats_.finished(job.function, task.count, elapsed_us);
  // Items the function failed, as the worker counted them (RESULT's items_failed, §4.3).
  const std::uint32_t failed = std::min(items_failed, task.count);
  if (failed != 0) stats_.failed(job.function, Stats::kFunctionError, failed);
  job.items_failed += failed;
  if (stats_.recording()) {
    stats_.recent({now_, elapsed_us, worker, job.function, client_label(task.job.client),
                   task.job.id, task.first, task.count, failed == 0});
  }
  const std::uint64_t seq = job.next_seq++;
  // Counted until the client says it read it: a client that never reads its results
  // stops getting its tasks run (dispatch_worker) instead of filling the send queue.
  const std::uint64_t bytes = payload.size() + kChunkOverhead;
  job.unread.emplace_back(seq, bytes);
  if (auto c = clients_.find(task.job.client); c != clients_.end()) {
    c->second.unread_bytes += bytes;
    if (c->second.batches && payload.size() <= wire::kMaxBatchBytes) {
      deliver_notes_.push_back(
          DeliverNote{outbox_.size(), task.job.id, task.first, task.count, elapsed_us, seq});
    }
  }
  outbox_.push_back(
      Outgoing{task.job.client,
               wire::encode_deliver(task.job.id, task.first, task.count, worker, elapsed_us, seq),
               std::move(payload)});
  chunk_finished(job, task, seq);
}

void Core::chunk_finished(Job& job, const Task& task, std::uint64_t seq) {
  job.items_delivered += task.count;
  auto c = job.chunks.find(task.chunk_first);
  if (c == job.chunks.end()) return;
  c->second -= std::min(c->second, task.count);
  if (c->second == 0) {
    job.chunks.erase(c);
    job.unseen.emplace_back(seq, task.chunk_first);
    Job::Answered& answered = job.answered[task.chunk_first];
    ++answered.unseen;
    answered.at = now_;
  }
}

void Core::on_submit(const PeerId& from, const SubmitView& m, Bytes* payload, TimePoint now) {
  if (shutting_down_) {
    send(from, wire::Bye{"broker shutting down"});
    return;
  }
  if (workers_.count(from)) {
    on_malformed(from, "SUBMIT from a peer registered as a worker");
    return;
  }
  auto fail = [&](wire::Code why, const std::string& message) {
    stats_.refused(wire::to_wire(why));
    send(from, wire::Failed{m.job_id, m.first, m.count, code(why), message, 0});
  };
  if (m.count == 0 || m.count > config_.max_chunk_items || m.function.empty() ||
      m.function.size() > kMaxNameBytes) {
    fail(wire::Code::BadRequest, "SUBMIT needs 1 to " + std::to_string(config_.max_chunk_items) +
                                     " items and a function name of 1 to 256 bytes");
    return;
  }
  // Only an accepted SUBMIT creates the client's record (§7.4): a refused one (too_large,
  // over_limit) leaves nothing behind; it refreshes a record that exists.
  auto known = clients_.find(from);
  if (known != clients_.end()) known->second.last_heard = now;
  const std::uint64_t queued_bytes = known == clients_.end() ? 0 : known->second.queued_bytes;
  const JobKey key{from, m.job_id};
  auto j = jobs_.find(key);
  if (j != jobs_.end() && j->second.function != m.function) {
    fail(wire::Code::BadRequest, "job " + std::to_string(m.job_id) + " is for " +
                                     j->second.function + ", not " + std::string(m.function));
    return;
  }
  // The client's features are those of its last SUBMIT not refused as bad_request (§4.4; B59:
  // "batch", it takes DELIVERS): a resubmission, too_large and over_limit included.
  const bool batches = m.batches;
  if (known != clients_.end()) known->second.batches = batches;
  if (j != jobs_.end() && j->second.chunks.count(m.first)) return;  // a resubmission we hold
  // A new job costs its overhead too: the limit holds however many jobs a client opens.
  const std::uint64_t cost = payload->size() + kChunkOverhead;
  const std::uint64_t job_cost = j == jobs_.end() ? kJobOverhead : 0;
  if (cost + kJobOverhead > config_.max_client_bytes) {
    // Could never be accepted, however long the client waits: say so, once, on both sides.
    const std::string message = "item too large: a chunk of " + std::to_string(payload->size()) +
                                " bytes (" + std::to_string(m.count) +
                                " items) exceeds the broker's --max-client-bytes of " +
                                std::to_string(config_.max_client_bytes);
    log(log::Level::Warning, "refused " + message + ", job " + std::to_string(m.job_id) +
                                 " of client " + client_label(from));
    fail(wire::Code::TooLarge, message);
    return;
  }
  if (queued_bytes + cost + job_cost > config_.max_client_bytes) {
    log(log::Level::Debug, "refused a chunk of job " + std::to_string(m.job_id) + " of client " +
                               client_label(from) + ": over its limit of " +
                               std::to_string(config_.max_client_bytes) + " queued bytes");
    fail(wire::Code::OverLimit, "client has " + std::to_string(queued_bytes) +
                                    " bytes queued; the broker's limit is " +
                                    std::to_string(config_.max_client_bytes));
    return;
  }
  Client& client = clients_[from];
  client.last_heard = now;
  client.batches = batches;
  if (!client.owner_asked && owner_source_) {
    client.owner = owner_source_();
    client.owner_asked = true;
  }
  if (j == jobs_.end()) {
    j = jobs_.emplace(key, Job{}).first;
    j->second.function = m.function;
    j->second.wait_ms = m.wait_ms;
    j->second.started = now;
    j->second.item_timeout_ms = m.item_timeout_ms;
    j->second.tag = wire::job_tag(from, m.job_id);
    tags_[j->second.tag] = key;
    // Resubmitted on our RESYNC just after we started: its chunks may still run at workers that
    // have not spoken yet, so they wait for the adoption window (§9.1).
    j->second.resuming = window_open_ && resynced_.count(key) != 0;
    client.jobs.push_back(m.job_id);
    client.job_records.push_back(&j->second);
    client.queued_bytes += kJobOverhead;
    Service& s = services_[std::string(m.function)];
    j->second.service = &s;
    ++s.jobs;
    if (s.provider_count == 0 && s.no_provider_since == TimePoint{}) s.no_provider_since = now;
    log(log::Level::Info,
        "job " + std::to_string(m.job_id) + " of client " + client_label(from) +
            " started: " + std::string(m.function),
        LogFields{
            client_label(from) + "/" + std::to_string(m.job_id), {}, std::string(m.function)});
  }
  Job& job = j->second;
  job.chunks.emplace(m.first, m.count);
  const std::uint64_t id = new_task(job);
  Task& task = tasks_[id];
  task.job = key;
  task.chunk_first = m.first;
  task.first = m.first;
  task.count = m.count;
  task.payload = std::move(*payload);
  task.tag = job.tag;
  charge(task, cost);
  enqueue(id, task, job, false);
  adopt_chunk(job, id);  // a worker may keep it running from before we started (§9.1)
  dispatch(*job.service, job.function);
}

// B60: a SUBMITS is its SUBMITs, in order, each as on_submit takes it (its own refusals,
// a resubmitted first ignored, the features of each); one whose sizes do not add up to its
// payload is refused whole (nothing of it taken). Each chunk's bytes are copied out of the
// frame: a slice would keep the whole frame alive for the chunks the broker accepted, while
// the client is charged for those alone.
void Core::on_submits(const PeerId& from, const wire::Submits& m, Bytes* payload, TimePoint now) {
  if (shutting_down_) {
    send(from, wire::Bye{"broker shutting down"});
    return;
  }
  if (workers_.count(from)) {
    on_malformed(from, "SUBMITS from a peer registered as a worker");
    return;
  }
  try {
    wire::check_split(m, *payload);
  } catch (const Error& e) {
    on_malformed(from, e.what());
    return;
  }
  SubmitView chunk{m.job_id,
                   m.function,
                   0,
                   0,
                   m.wait_ms,
                   m.item_timeout_ms,
                   wire::has_feature(m.features, wire::kFeatureBatch)};
  std::size_t offset = 0;
  for (std::size_t i = 0; i < m.chunks.size(); i += wire::kSubmitFields) {
    chunk.first = m.chunks[i];
    chunk.count = static_cast<std::uint32_t>(m.chunks[i + 1]);
    const std::size_t size = m.chunks[i + 2];
    Bytes bytes = Bytes::copy(payload->data() + offset, size);
    offset += size;
    on_submit(from, chunk, &bytes, now);
  }
}

void Core::acknowledge(const JobKey& key, Job& job, std::uint64_t seen) {
  std::uint64_t freed = 0;
  while (!job.unread.empty() && job.unread.front().first <= seen) {
    freed += job.unread.front().second;
    job.unread.pop_front();
  }
  if (freed == 0) return;
  auto c = clients_.find(key.client);
  if (c == clients_.end()) return;
  const bool was_backlogged = delivery_backlogged(key.client);
  c->second.unread_bytes -= std::min(c->second.unread_bytes, freed);
  if (was_backlogged && !delivery_backlogged(key.client)) {
    for (std::uint64_t id : c->second.jobs) {
      if (auto other = jobs_.find(JobKey{key.client, id}); other != jobs_.end()) {
        dispatch(other->second.function);
      }
    }
  }
}

void Core::on_heartbeat(const PeerId& from, const wire::Heartbeat& m, TimePoint now) {
  if (auto w = workers_.find(from); w != workers_.end()) {
    const bool first_words = !w->second.spoken;
    w->second.heard(now);
    reindex(w->second);
    if (m.seen == 1) {
      // The worker lists the tasks it holds (§8; seppo-sim seed 414). One we sent it long enough
      // ago that it neither holds nor answered was lost on a connection that broke and came back.
      // Two heartbeats in a row must leave it out, both past a liveness since it was sent: a
      // TASK still on its way on a slow link would otherwise be sent again at every liveness.
      std::unordered_set<std::uint64_t> held(m.open.begin(), m.open.end());
      for (const wire::HeldTask& h : wire::held_tasks(m.held)) held.insert(h.task_id);
      std::vector<std::uint64_t> lost;
      std::unordered_set<std::uint64_t> unlisted;
      for (std::uint64_t id : w->second.inflight) {
        if (held.count(id)) continue;
        auto t = tasks_.find(id);
        if (t != tasks_.end() && now - t->second.sent <= expiry()) continue;
        if (w->second.unlisted.count(id)) {
          lost.push_back(id);
        } else {
          unlisted.insert(id);
        }
      }
      w->second.unlisted = std::move(unlisted);
      auto& inflight = w->second.inflight;
      for (auto it = lost.rbegin(); it != lost.rend(); ++it) {
        const auto at = std::find(inflight.begin(), inflight.end(), *it);
        // The next task's time limit counts from now, not from when the lost one was sent.
        if (at == inflight.begin()) w->second.head_since = now;
        inflight.erase(at);
        if (w->second.isolating == *it) w->second.isolating = 0;
        auto t = tasks_.find(*it);
        if (t != tasks_.end() && t->second.holder == from) requeue(*it, false);
      }
      reindex(w->second);
      if (!lost.empty()) {
        const std::vector<std::string> functions = w->second.functions;
        for (const std::string& f : functions) dispatch(f);
      }
      // What it holds that we do not count there (§4.16): a task re-run elsewhere after two
      // heartbeats left it out, which reached it after all. Nothing else would ever end it
      // there, and while it is listed a worker that handed back its first task gets no work:
      // cancel it (a worker ignores a CANCEL of an id it does not hold, W23).
      // Once per liveness per id: the worker keeps listing one that started before the CANCEL
      // arrived until it ends or is abandoned (W24), and a CANCEL lost on a connection that
      // broke is sent again.
      std::vector<std::uint64_t> uncounted;
      std::unordered_map<std::uint64_t, TimePoint> cancelled;
      for (std::uint64_t id : m.open) {
        if (std::find(inflight.begin(), inflight.end(), id) != inflight.end()) continue;
        if (cancelled.count(id)) continue;  // listed twice: it holds two copies (§4.2)
        auto c = w->second.cancelled_listed.find(id);
        if (c != w->second.cancelled_listed.end() && now - c->second <= expiry()) {
          cancelled.insert(*c);
          continue;
        }
        uncounted.push_back(id);
        cancelled.emplace(id, now);
      }
      w->second.cancelled_listed = std::move(cancelled);
      if (!uncounted.empty()) send(from, wire::Cancel{std::move(uncounted)});
      // It holds nothing, nor we anything there: what it ran that we did not count is over
      // (§4.16, W24), and it may take work again.
      if (m.open.empty() && w->second.inflight.empty() && w->second.isolating != 0) {
        w->second.isolating = 0;
        reindex(w->second);
        dispatch_worker(from);
      }
    }
    // What it kept from a broker it lost, and still holds (§9.1).
    if (auto again = workers_.find(from); again != workers_.end()) {
      const std::size_t pending = again->second.pending;
      take_listing(from, again->second, m.held, true);
      if (pending != 0 && again->second.pending == 0) dispatch_worker(from);
    }
    send(from, alive());
    if (first_words) dispatch_worker(from);  // suspect tasks may wait for a worker like it
    return;
  }
  if (m.job_id == 0) {
    send(from, wire::Error{code(wire::Code::NotReady), "unknown worker: send READY first"});
    return;
  }
  Client& client = clients_[from];
  client.last_heard = now;
  auto j = jobs_.find(JobKey{from, m.job_id});
  if (j == jobs_.end()) {
    // A client that awaits nothing (it holds its first chunks back until it knows our
    // message limit, §9) has nothing to resubmit: it wants the ALIVE.
    if (m.open.empty()) {
      send(from, alive());
      return;
    }
    if (window_open_) resynced_.insert(JobKey{from, m.job_id});  // its SUBMITs wait (§9.1)
    send(from, wire::Resync{m.job_id, instance_});  // we restarted, or gave the client up for dead
    return;
  }
  Job& job = j->second;
  while (!job.unseen.empty() && job.unseen.front().first <= m.seen) {
    job.read_at = now;
    const std::uint64_t first = job.unseen.front().second;
    if (auto a = job.answered.find(first); a != job.answered.end() && --a->second.unseen == 0) {
      job.answered.erase(a);
    }
    job.unseen.pop_front();
  }
  acknowledge(j->first, job, m.seen);
  // A chunk the client still awaits that we neither hold nor just answered was lost on the way.
  const bool lost = std::any_of(m.open.begin(), m.open.end(), [&](std::uint64_t first) {
    if (job.chunks.count(first)) return false;
    // An answer is on its way for a liveness, not forever: one sent on a connection that then
    // broke (the ROUTER had not noticed) never arrives (seppo-sim seed 1190).
    auto a = job.answered.find(first);
    return a == job.answered.end() || now - std::max(a->second.at, job.read_at) > expiry();
  });
  if (lost || job.needs_resync) {
    job.needs_resync = false;
    if (window_open_ && lost) job.resuming = true;  // resubmissions may be kept at workers
    send(from, wire::Resync{m.job_id, instance_});
    return;
  }
  send(from, alive());
}

void Core::on_done(const PeerId& from, std::uint64_t job_id, TimePoint now) {
  const JobKey key{from, job_id};
  auto j = jobs_.find(key);
  if (j == jobs_.end()) return;
  const Job& job = j->second;
  const bool complete = job.chunks.empty();
  remove_job(key, complete ? "finished: " + std::to_string(job.items_delivered) + " items (" +
                                 std::to_string(job.items_failed) + " failed) in " +
                                 seconds(now - job.started)
                           : "cancelled by its client");
  auto c = clients_.find(from);
  if (c != clients_.end() && c->second.jobs.empty()) clients_.erase(c);
}

void Core::remove_job(const JobKey& key, const std::string& why) {
  auto j = jobs_.find(key);
  if (j == jobs_.end()) return;
  Job& job = j->second;
  cancel_held(key);
  // Queued and running tasks go; workers running one still get credit back when they answer.
  // Only this job's tasks are visited: a broker with many jobs removes each in its own time.
  for (std::uint64_t id : job.tasks) {
    if (auto t = tasks_.find(id); t != tasks_.end()) {
      release(t->second);
      tasks_.erase(t);
    }
  }
  if (auto c = clients_.find(key.client); c != clients_.end()) {
    std::uint64_t unread = kJobOverhead;
    for (const auto& [seq, bytes] : job.unread) unread += bytes;
    c->second.queued_bytes -= std::min(c->second.queued_bytes, std::uint64_t{kJobOverhead});
    c->second.unread_bytes -= std::min(c->second.unread_bytes, unread - kJobOverhead);
  }
  dequeued(key.client, job.queue.size());
  log(log::Level::Info,
      "job " + std::to_string(key.id) + " of client " + client_label(key.client) + " (" +
          job.function + ") " + why,
      LogFields{client_label(key.client) + "/" + std::to_string(key.id), {}, job.function});
  if (auto s = services_.find(job.function); s != services_.end() && s->second.jobs > 0) {
    --s->second.jobs;
  }
  Service* service = job.service;
  tags_.erase(job.tag);
  const Job* record = &job;
  jobs_.erase(j);
  if (auto c = clients_.find(key.client); c != clients_.end()) {
    auto& ids = c->second.jobs;
    ids.erase(std::remove(ids.begin(), ids.end(), key.id), ids.end());
    auto& records = c->second.job_records;
    records.erase(std::remove(records.begin(), records.end(), record), records.end());
  }
  // A worker kept for a suspect of this job works again (B50); one that drained already holds
  // nothing and waits for nothing, so it is given work here.
  if (service != nullptr && service->drain != nullptr && !reservation_live(*service)) {
    Worker* kept = service->drain;
    unreserve(*service);
    if (kept->inflight.empty()) {
      const PeerId id = *kept->id;
      dispatch_worker(id);
    }
  }
}

void Core::remove_client(const PeerId& id, const std::string& why) {
  auto c = clients_.find(id);
  if (c == clients_.end()) return;
  const std::vector<std::uint64_t> jobs = c->second.jobs;
  for (std::uint64_t job : jobs) remove_job(JobKey{id, job}, "dropped: client " + why);
  clients_.erase(id);
}

void Core::remove_worker(const PeerId& id, bool count_attempt, const std::string& why,
                         TimePoint now, bool redispatch) {
  auto w = workers_.find(id);
  if (w == workers_.end()) return;
  // Its suspect waits again; the next dispatch of the function reserves another worker (B50).
  // Before the move: the service points at this record.
  if (w->second.drained_for != nullptr) unreserve(*w->second.drained_for);
  unindex(w->second);
  for (std::size_t n = 0; n < w->second.services.size(); ++n) {
    Service& s = *w->second.services[n];
    s.providers[w->second.ranks[n]].worker = nullptr;
    --s.provider_count;
  }
  Worker worker = std::move(w->second);
  workers_.erase(w);
  if (worker.pending != 0) forget_pending(id);
  for (std::size_t n = 0; n < worker.services.size(); ++n) {
    Service& s = *worker.services[n];
    if (s.indexed && s.provider_count < index_from_ / 2) set_indexed(s, false);
    if (s.providers.size() - s.provider_count > s.provider_count) compact(s);
    if (s.provider_count == 0) {
      s.no_provider_since = now;
      unserved_since_[worker.functions[n]] = now;
    }
  }
  std::size_t requeued = 0;
  // Requeued at the front, last sent first, so they run again in their original order. Only
  // the task that was running (the first sent) is charged an attempt: those waiting behind it
  // cannot have killed the worker. Nor is it charged when the worker never spoke after its
  // READY: nothing shows it received the task (a peer that announces itself and vanishes, §10),
  // so the task is only suspect, and runs next alone on a worker that has spoken.
  const std::uint64_t running = worker.inflight.empty() ? 0 : worker.inflight.front();
  for (auto it = worker.inflight.rbegin(); it != worker.inflight.rend(); ++it) {
    auto t = tasks_.find(*it);
    if (t != tasks_.end() && t->second.holder == id) {
      const bool blamed = count_attempt && *it == running;
      if (blamed && !worker.spoken) t->second.unproven_loss = true;
      requeue(*it, blamed && worker.spoken);
      ++requeued;
    }
  }
  log(count_attempt ? log::Level::Warning : log::Level::Info,
      "worker " + worker.name + " " + why +
          (requeued ? "; " + std::to_string(requeued) + " tasks requeued" : std::string()));
  if (redispatch) {
    for (const std::string& f : worker.functions) dispatch(f);
  }
}

void Core::requeue(std::uint64_t task_id, bool count_attempt) {
  Task& task = tasks_.at(task_id);
  task.holder.clear();
  if (count_attempt) ++task.attempts;
  auto j = jobs_.find(task.job);
  if (j == jobs_.end()) {
    release(task);
    tasks_.erase(task_id);
    return;
  }
  Job& job = j->second;
  if (task.attempts >= config_.max_attempts) {
    fail_task(task_id, wire::Code::WorkerLost,
              "worker lost while running " + job.function + " on item " +
                  std::to_string(task.first) + ", " + std::to_string(task.attempts) + " attempts");
    return;
  }
  stats_.retried(job.function, task.count);  // queued again: not an item failed just above
  // A chunk that killed its worker may hold one poison item: re-run its items one by one so
  // only that item uses up its attempts and is reported lost.
  if (count_attempt && task.count > 1) {
    split(task_id, job);
    return;
  }
  enqueue(task_id, task, job, true);
}

void Core::fail_task(std::uint64_t task_id, wire::Code why, const std::string& message) {
  auto t = tasks_.find(task_id);
  if (t == tasks_.end()) return;
  Task& task = t->second;
  auto j = jobs_.find(task.job);
  if (j != jobs_.end()) {
    log(log::Level::Warning, message);
    stats_.failed(j->second.function, wire::to_wire(why), task.count);
    j->second.items_failed += task.count;
    // A timed-out task is recorded by time_out, with its worker; others have none by now.
    if (stats_.recording() && why != wire::Code::Timeout) {
      stats_.recent({now_, 0, std::string(), j->second.function, client_label(task.job.client),
                     task.job.id, task.first, task.count, false});
    }
    const std::uint64_t seq = j->second.next_seq++;
    send(task.job.client,
         wire::Failed{task.job.id, task.first, task.count, code(why), message, seq});
    chunk_finished(j->second, task, seq);
  }
  release(task);
  erase_task(task_id);
}

std::uint64_t Core::new_task(Job& job) {
  const std::uint64_t id = next_task_id_++;
  job.tasks.insert(id);
  return id;
}

void Core::erase_task(std::uint64_t task_id) {
  auto t = tasks_.find(task_id);
  if (t == tasks_.end()) return;
  auto j = jobs_.find(t->second.job);
  erase_task(task_id, j == jobs_.end() ? nullptr : &j->second);
}

void Core::erase_task(std::uint64_t task_id, Job* job) {
  if (job != nullptr) job->tasks.erase(task_id);
  tasks_.erase(task_id);
}

bool Core::in_grace(const std::string& function, TimePoint now) const {
  auto u = unserved_since_.find(function);
  return u != unserved_since_.end() && now - u->second < config_.worker_grace;
}

bool Core::received_running(const Worker& worker, const std::vector<std::uint64_t>& unsent) {
  // The task it was running is to blame only if the worker received it: a TASK that could
  // not even be sent never ran (a worker that said READY and vanished must not use up the
  // attempts of the innocent items sent to it).
  const auto& held = worker.inflight;
  return !held.empty() && std::find(unsent.begin(), unsent.end(), held.front()) == unsent.end();
}

void Core::on_delivery(const wire::DeliveryReport& report, TimePoint now) {
  if (report.disconnected) {
    on_disconnected(report.peer, now, report.unsent_tasks);
  } else {
    on_send_failed(report.peer, now, report.unsent_tasks);
  }
}

void Core::on_send_failed(const PeerId& peer, TimePoint now,
                          const std::vector<std::uint64_t>& unsent_tasks) {
  now_ = now;
  if (auto w = workers_.find(peer); w != workers_.end()) {
    remove_worker(peer, received_running(w->second, unsent_tasks), "unreachable", now);
    return;
  }
  auto c = clients_.find(peer);
  if (c == clients_.end()) return;
  // Whatever we could not deliver is recomputed when the client resubmits on RESYNC.
  for (std::uint64_t job : c->second.jobs) {
    auto j = jobs_.find(JobKey{peer, job});
    if (j != jobs_.end()) j->second.needs_resync = true;
  }
}

void Core::on_tick(TimePoint now) {
  now_ = now;
  begin(now);
  if (window_open_ && now >= adopt_until_) close_window();
  stats_.start(now);
  check_timeouts(now);
  std::vector<PeerId> silent;
  for (const auto& [id, w] : workers_) {
    if (now - w.last_heard > expiry()) silent.push_back(id);
  }
  for (const PeerId& id : silent) {
    remove_worker(id, true, "lost: no heartbeat for " + seconds(expiry()), now);
  }
  silent.clear();
  for (const auto& [id, c] : clients_) {
    if (now - c.last_heard > expiry()) silent.push_back(id);
  }
  for (const PeerId& id : silent)
    remove_client(id, "vanished: no heartbeat for " + seconds(expiry()));

  std::vector<JobKey> unserved;
  for (const auto& [key, job] : jobs_) {
    if (job.queue.empty()) continue;
    const Service& s = services_[job.function];
    if (s.provider_count != 0) continue;
    // Workers that served the function may be back soon (a partition, a reboot, a rolling
    // upgrade): their jobs wait for them through the grace period (§8).
    if (in_grace(job.function, now)) continue;
    const TimePoint since = std::max(job.started, s.no_provider_since);
    if (now - since >= std::chrono::milliseconds(job.wait_ms)) unserved.push_back(key);
  }
  for (auto u = unserved_since_.begin(); u != unserved_since_.end();) {
    if (now - u->second >= config_.worker_grace) {
      u = unserved_since_.erase(u);
    } else {
      ++u;
    }
  }
  // Names nobody provides and no job uses are forgotten: clients cannot grow this map.
  for (auto s = services_.begin(); s != services_.end();) {
    if (s->second.provider_count == 0 && s->second.jobs == 0) {
      s = services_.erase(s);
    } else {
      ++s;
    }
  }
  // Named up to a point: a FAILED header must stay far below the 64 KiB limit however many
  // functions the workers announced. Built once per tick, not once per failing job.
  std::string known;
  if (!unserved.empty()) {
    constexpr std::size_t kListed = 20;
    std::size_t available = 0;
    for (const auto& [name, s] : services_) {
      if (s.provider_count == 0) continue;
      if (++available <= kListed) known += (known.empty() ? "" : ", ") + name;
    }
    if (available > kListed) known += " and " + std::to_string(available - kListed) + " more";
  }
  for (const JobKey& key : unserved) {
    const Job& job = jobs_.at(key);
    const std::string message = "no worker provides " + job.function + " (waited " +
                                seconds(std::chrono::milliseconds(job.wait_ms)) +
                                "); available: " + (known.empty() ? std::string("none") : known);
    send(key.client, wire::Failed{key.id, 0, 0, code(wire::Code::UnknownFunction), message, 0});
    remove_job(key, "failed: " + message);
  }
}

TimePoint Core::next_deadline(TimePoint now) const {
  // Coarse but cheap: expiry needs no finer resolution than a fraction of a heartbeat.
  return now + std::max<Duration>(config_.heartbeat / 4, std::chrono::milliseconds(5));
}

void Core::shutdown() {
  shutting_down_ = true;
  for (const auto& [id, w] : workers_) send(id, wire::Bye{"broker shutting down"});
  for (const auto& [id, c] : clients_) {
    if (!c.jobs.empty()) send(id, wire::Bye{"broker shutting down"});
  }
  log(log::Level::Info, "shutting down: told " + std::to_string(workers_.size()) + " workers and " +
                            std::to_string(clients_.size()) + " clients");
}

}  // namespace seppo::broker
