// The client's side of one job (docs/protocol.md §9, client rows C1..C20), with no socket,
// thread or clock of its own. libclient/client.cpp is the thin socket loop around it;
// tests/unit/client_core_test.cpp and the simulator drive it with a fake clock.
//
// It follows the contract of the three cores (protocol/core_io.hpp, docs/design.md). How a
// driver uses it:
//   JobCore core(job_id, "m.square", options, now);
//   loop:
//     core.fill(next, now);   // packs inputs into chunks while the window has room (the one
//                             // packing rule: the client and the simulator both use it)
//     core.take_outbox(out); send each (header frame, plus the payload frame if any);
//     wait for a message from the broker, but not past core.next_deadline(now);
//     on a message: core.on_message("", header, size, payload, now);  then core.on_tick(now);
//     hand every core.take_results() entry to the caller (exactly once each, already deduped);
//     stop when core.done() (every item answered) or core.failed() (see failure());
//   finally: core.close(now) and send the outbox: it holds DONE when anything was submitted.
// A caller that stops reading for a while (a slow consumer) brackets the pause with
// pause(now) / resume(now): the broker's silence meanwhile is not held against it.
#pragma once

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "seppo/msgpack.hpp"

#include "libclient/chunk_sizer.hpp"
#include "protocol/bytes.hpp"
#include "protocol/codes.hpp"
#include "protocol/core_io.hpp"
#include "protocol/payload.hpp"
#include "protocol/wire.hpp"
#include "seppo/client_options.hpp"
#include "seppo/error.hpp"
#include "seppo/item.hpp"

namespace seppo::client {

struct JobCoreOptions {
  // The caller's: window, max_inflight_bytes, chunk_size, target_chunk_time, heartbeat (until
  // the broker announces its own), timeout (the broker's silence that fails the job, C18),
  // worker_wait (SUBMIT's wait_ms) and item_timeout (SUBMIT's item_timeout_ms). The core reads
  // them where the caller set them: no field-by-field copy to drift apart.
  ClientOptions client;
  // The broker's, for error messages; or a pair's comma-separated list (§15.4): the core then
  // asks the driver to move to the next endpoint (take_switch(), C30, C31).
  std::string endpoint;
  // What this client (connection) learnt from earlier jobs. The heartbeat of the last ALIVE it
  // saw, 0 if none yet: then a HEARTBEAT follows the first SUBMITs, so the broker's ALIVE says
  // how often to beat (C3).
  std::chrono::milliseconds broker_heartbeat{0};
  // Whether an ALIVE came, and the largest message the broker accepts (0: not announced).
  bool heard_alive = false;
  std::uint64_t broker_max_message = 0;
  // Whether that ALIVE named the feature "submits" (§4.20): chunks may then go as SUBMITS.
  bool broker_submits = false;
  // The chunk sizer's limit on unanswered chunks at a job's start (ChunkSizer::chunk_limit):
  // the simulator lowers it, since its windows are smaller than the default.
  std::size_t start_chunks = ChunkSizer::kBlindChunks;
  // A chunk keeps its window place until consumed() was called for all its items, not only
  // until they arrived: results waiting for a slow consumer are bounded too.
  bool hold = false;
  // A DELIVER (or DELIVERS part) whose items none was handed over yet goes whole, unread, to
  // take_blocks(), not item by item to take_results(): the caller decodes it in one pass.
  bool blocks = false;
};

class JobCore {
 public:
  using Clock = std::chrono::steady_clock;
  using TimePoint = Clock::time_point;

  // Big enough that per-chunk costs vanish, small enough to stay under malloc's mmap threshold
  // (results are about twice their arguments' size): a driver closes a chunk at this size.
  static constexpr std::size_t kMaxChunkBytes = 48 << 10;

  // What one DELIVER or FAILED carried; shared by the items it answered, kept alive by them.
  struct Answer {
    std::string worker;              // "host, process PID", or empty
    std::uint64_t elapsed_us = 0;    // the chunk's compute time (0 for failures)
    msgpack::object_handle entries;  // the decoded DELIVER payload, empty for failures
    // Or, when every entry is a success with a scalar value (scalar_entries.hpp), the values
    // alone, whose strings point into the payload kept here.
    std::vector<msgpack::object> values;
    Bytes payload;
    // A FAILED's code, or the client's own for items it fails (C22: "too_large"); empty for a
    // DELIVER, whose failed items are the function's own errors. Item::code.
    std::string code;
    // Why its items failed: one message for a whole range (FAILED, an unreadable DELIVER), or
    // each failed entry's own (a DELIVER's), which Item::error points to.
    std::string error;
    std::vector<std::string> errors;
  };
  // One item's outcome, handed over exactly once: the Item the caller's sink receives (its
  // value, error, worker and code point into `answer`). The core keeps the answers of the
  // results last taken alive until the next take_results(): no reference count per item.
  struct ItemResult : Item {
    const Answer* answer = nullptr;
  };
  // Why the job failed as a whole; the driver turns it into the matching seppo:: exception.
  struct Failure {
    enum class Kind {
      UnknownFunction,  // FAILED unknown_function (C9): UnknownFunctionError(function, message)
      Refused,   // ERROR forbidden, or a chunk that can never fit: RefusedError(code, message)
      Protocol,  // any other ERROR: ProtocolError(message)
      Timeout,   // the broker's silence (C18): ConnectionError(message)
    };
    Kind kind = Kind::Protocol;
    std::string code;     // the wire code's name, for RefusedError
    std::string message;  // complete, for the exception (ConnectionError: add the hint)
  };

  JobCore(std::uint64_t job_id, std::string function, JobCoreOptions options, TimePoint now);

  // --- input ---
  // Items the next chunk should hold; 0 when no chunk may be added now (the window or its bytes
  // are full, a chunk refused over_limit waits to be sent again, the input ended, the job is
  // over, or the sizer's chunk_limit() is reached, which holds until a chunk about the size
  // the estimate asks for was measured: next_deadline() is then when that limit grows).
  std::uint32_t wanted() const;
  // The chunk packing rule: while wanted() > 0, packs a chunk of up to wanted() arguments and
  // at most kMaxChunkBytes, calling `next(buffer)` for each, which appends one packed argument
  // to the msgpack::sbuffer and returns true, or returns false at the end of the input (then
  // end_input()). Stops early, the input not ended, after `max_items` arguments in all.
  template <class Next>
  void fill(Next&& next, TimePoint now, std::uint64_t max_items = UINT64_MAX);
  // The same rule with a filler that packs many arguments a call: `fill(buffer, max_items,
  // max_bytes, ended)` appends up to max_items packed arguments to the msgpack::sbuffer,
  // stopping once it holds max_bytes or more (the check `next` gets before each argument), and
  // returns how many, at least one unless it sets `ended` (the input's end: then end_input()).
  // Fewer than max_items without `ended` means max_bytes was reached: the sizer learns from it
  // how large these items' chunks get (ChunkSizer::cut).
  template <class Fill>
  void fill_many(Fill&& fill, TimePoint now, std::uint64_t max_items = UINT64_MAX);
  // The next chunk: `payload` is a msgpack array of `count` (≥ 1) arguments. Queues its SUBMIT.
  void add_chunk(Bytes payload, std::uint32_t count, TimePoint now);
  // No more input: the job is done once every open chunk is answered.
  void end_input(TimePoint now);

  // --- events (protocol/core_io.hpp) ---
  // A message from the broker as received: its header frame, and its payload frame if it had
  // one (taken). A header that does not decode is ignored, and is no sign of the broker's life.
  // `from` is empty: a client has one peer.
  void on_message(const wire::PeerId& from, const void* header, std::size_t header_size,
                  Bytes* payload, TimePoint now);
  // Time passed: heartbeats (C17) and the broker's silence (C18). Call by next_deadline().
  void on_tick(TimePoint now);
  // What the socket could not send: nothing for a client, whose DEALER queues every message
  // (its high-water mark is unlimited) and resends after a broker restart by its own rules.
  void on_delivery(const wire::DeliveryReport& report, TimePoint now);
  // With hold: the caller took item `index`; its chunk's window place frees with its last item.
  void consumed(std::uint64_t index, TimePoint now);
  // The same for items [first, first + count), which lie in one chunk (a block's).
  void consumed(std::uint64_t first, std::uint32_t count, TimePoint now);
  // The caller stops reading for a while and comes back: that time is not the broker's silence.
  void pause(TimePoint now);
  void resume(TimePoint now);
  // Finished, failed or cancelled: queues DONE (C19) if anything was submitted. Idempotent.
  void close(TimePoint now);

  // --- drained by the driver ---
  // What to send to the broker, in order, appended to `out` (peer empty: the broker).
  void take_outbox(std::vector<wire::Outgoing>& out);
  // Their pointers stay valid until the next take_results().
  std::vector<ItemResult> take_results();
  // The same into `out`, cleared first, whose capacity is reused: a chunk may answer thousands
  // of items, and a fresh vector per message would be allocated (and paged in) anew each time.
  void take_results(std::vector<ItemResult>& out);
  // With blocks: the answers handed over whole since the last call, into `out` (cleared first).
  void take_blocks(std::vector<detail::Block>& out);
  // A DELIVER payload of `count` entries read one by one, as the core reads any that is not
  // handed over whole: each item's value (null for a failed entry, whose error is the next of
  // answer.errors), pointing into answer.entries. False when the payload is unreadable as a
  // whole: answer.error then says why, and every item fails with it.
  static bool read_entries(const char* data, std::size_t size, std::uint32_t count, Answer& answer,
                           std::vector<const msgpack::object*>& values);
  TimePoint next_deadline(TimePoint now) const;  // TimePoint::max() once the job is over
  // True once per move to the next endpoint of a pair's list (C30, C31): the driver connects
  // its socket there before sending the outbox, which then holds a HEARTBEAT for it.
  bool take_switch() { return std::exchange(switch_, false); }

  // --- state ---
  bool done() const;  // the input ended and every item of it was handed over
  bool failed() const { return failure_.has_value(); }
  const std::optional<Failure>& failure() const { return failure_; }
  bool closed() const { return closed_; }

  // Introspection, for the driver and tests.
  std::uint64_t job_id() const { return id_; }
  const std::string& function() const { return function_; }
  std::size_t open_chunks() const { return pending_.size(); }
  std::size_t inflight_bytes() const { return inflight_bytes_; }
  std::uint64_t seen() const { return seen_; }
  std::uint64_t instance() const { return instance_; }
  std::chrono::milliseconds heartbeat() const { return heartbeat_; }
  // From the last ALIVE (0 until one came): the driver keeps it for the client's next job.
  std::chrono::milliseconds broker_heartbeat() const { return broker_heartbeat_; }
  bool heard_alive() const { return heard_alive_; }
  std::uint64_t broker_max_message() const { return broker_max_message_; }
  bool broker_submits() const { return broker_submits_; }
  std::uint64_t submitted_items() const { return next_index_; }
  std::uint64_t delivered_items() const { return delivered_; }

 private:
  // A chunk sent and not yet fully answered; its bytes are kept to send it again.
  struct Chunk {
    std::uint32_t count = 0;
    std::uint32_t remaining = 0;
    std::vector<bool> received;
    Bytes payload;
    bool refused = false;   // over the broker's per-client limit: waits to be resent
    bool deferred = false;  // larger than any broker surely accepts: waits for its ALIVE (C21)
    std::uint64_t answers_at_send = 0;  // the job's answer count when this chunk was last sent
    bool queued = false;  // its SUBMIT waits in queued_ to leave within a SUBMITS (C25)
  };
  struct Held {
    std::uint32_t count = 0;
    std::uint32_t unconsumed = 0;
    std::size_t bytes = 0;
  };
  using Open = std::map<std::uint64_t, Chunk>;

  void on_decoded(const wire::Message& message, Bytes* payload, TimePoint now);
  void send(const wire::Message& message, TimePoint now,
            std::optional<Bytes> payload = std::nullopt);
  void submit(std::uint64_t first, Chunk& chunk, TimePoint now);
  void flush_submits();
  void send_heartbeat(TimePoint now);
  void resubmit_all(TimePoint now);
  void over_limit(const wire::Failed& f, TimePoint now);
  void resend_refused(TimePoint now);
  wire::Submit submit_message(std::uint64_t first, std::uint32_t count,
                              std::uint32_t wait_ms) const;
  void send_deferred(TimePoint now);
  void fail_oversized(TimePoint now);
  void on_deliver(const wire::Deliver& d, const Bytes& payload, TimePoint now);
  void fail_range(std::uint64_t first, std::uint32_t count, std::string_view code,
                  const std::string& message, const std::string& worker, TimePoint now);
  Open::iterator chunk_of(std::uint64_t first, std::uint32_t count);
  void forget_if_complete(Open::iterator it, TimePoint now);
  bool accept(Open::iterator it, ItemResult&& item);
  // One item of a DELIVER or FAILED: its value, or its error (with the answer's code).
  static ItemResult answered(std::uint64_t index, const msgpack::object* value,
                             const std::string* error, const Answer& answer, bool last);
  // A fresh or reused Answer, kept alive until the results that point into it were taken.
  std::shared_ptr<Answer> new_answer();
  void release(std::uint64_t index, std::uint32_t count = 1);
  // With blocks: hands [first, first + d.count) over whole if none of it was handed over yet.
  bool deliver_block(Open::iterator it, const wire::Deliver& d, const Bytes& payload);
  void fail(Failure::Kind kind, std::string code, std::string message);
  bool over() const { return closed_ || failure_.has_value(); }

  const std::uint64_t id_;
  const std::string function_;
  const JobCoreOptions options_;
  ChunkSizer sizer_;
  Open pending_;
  std::uint64_t next_index_ = 0;
  std::uint64_t seen_ = 0;  // seq of the last DELIVER or FAILED received
  std::size_t inflight_bytes_ = 0;
  std::size_t byte_window_;    // lowered by over_limit
  std::uint64_t answers_ = 0;  // DELIVERs and FAILEDs (but over_limit) received for this job
  std::size_t refused_ = 0;    // chunks waiting to be sent again
  std::size_t deferred_ = 0;   // chunks waiting for the ALIVE that says how large one may be
  std::vector<std::uint64_t> oversized_;  // chunks over the broker's message limit, to fail
  bool heard_alive_ = false;
  std::uint64_t broker_max_message_ = 0;
  bool broker_submits_ = false;  // an ALIVE of this connection named "submits" (C25)
  // Chunks whose SUBMIT this turn queued (C25): they leave together, as SUBMITS, before any
  // other message (send() and take_outbox() flush them), each with the wait_ms it was given.
  struct Queued {
    std::uint64_t first = 0;
    std::uint32_t wait_ms = 0;
  };
  std::vector<Queued> queued_;
  bool resubmitting_ = false;  // chunks were sent again after a RESYNC or a broker restart
  // When a RESYNC last made us resend (C13): RESYNCs soon after answer heartbeats sent before.
  std::optional<TimePoint> resynced_at_;
  bool input_done_ = false;
  bool closed_ = false;
  std::uint64_t delivered_ = 0;                // items handed over
  std::map<std::uint64_t, Held> outstanding_;  // with hold: chunks not yet entirely consumed
  std::map<std::uint64_t, Held>::iterator release_hint_ = outstanding_.end();
  std::size_t outstanding_bytes_ = 0;
  std::uint64_t instance_ = 0;
  std::chrono::milliseconds heartbeat_;
  std::chrono::milliseconds broker_heartbeat_;
  bool first_beat_pending_ = false;  // C3: a HEARTBEAT goes after the first SUBMITs
  TimePoint last_sent_{};
  TimePoint last_beat_{};  // the last HEARTBEAT: with a pair, one goes every heartbeat (C17)
  TimePoint last_heard_{};
  // A pair of brokers (§15.4, libclient/failover.cpp): how many endpoints, and when to move.
  std::size_t endpoints_ = 1;
  TimePoint next_switch_{};
  bool switch_ = false;
  // When the next HEARTBEAT is due (C17). Only HEARTBEAT draws an answer (ALIVE) from a broker,
  // so with several endpoints one goes every heartbeat even while SUBMITs flow: else a client
  // that only submits hears nothing and C30 moves it to the passive broker for no reason.
  TimePoint next_beat() const { return (endpoints_ > 1 ? last_beat_ : last_sent_) + heartbeat_; }
  // heartbeat × 3/2, at least heartbeat + 250 ms (the margin against a loaded host's hiccups).
  std::chrono::milliseconds failover_after() const {
    return std::max(heartbeat_ * 3 / 2, heartbeat_ + std::chrono::milliseconds(250));
  }
  std::chrono::milliseconds probe() const {
    return std::max(heartbeat_ / 2, std::chrono::milliseconds(1));
  }
  void on_not_active(const std::string& message, TimePoint now);
  void fail_over(TimePoint now);
  std::optional<TimePoint> paused_at_;
  std::optional<Failure> failure_;
  std::vector<wire::Outgoing> outbox_;
  msgpack::sbuffer chunk_buffer_{kMaxChunkBytes +
                                 4096};  // fill()'s, reused for every chunk of the job
  std::vector<ItemResult> results_;
  std::vector<detail::Block> blocks_;
  std::vector<std::shared_ptr<const Answer>> held_answers_;   // what results_ points into
  std::vector<std::shared_ptr<const Answer>> taken_answers_;  // the same for the results taken
  // The last DELIVERs' Answers, used again once no result refers to them: their values keep
  // their capacity, instead of a new block of thousands of objects per message. Two, since
  // the results last taken still hold one.
  std::array<std::shared_ptr<Answer>, 2> spare_answers_;
};

// Each item of a block the core handed over whole, in order, as take_results() would have
// handed it (pointers valid for the call): detail::Engine::each_item().
void each_item(const detail::Block& block, const std::function<void(const Item&)>& item);

template <class Next>
void JobCore::fill(Next&& next, TimePoint now, std::uint64_t max_items) {
  fill_many(
      [&next](msgpack::sbuffer& buffer, std::uint32_t want, std::size_t max_bytes, bool& ended) {
        std::uint32_t count = 0;
        while (count < want && buffer.size() < max_bytes) {
          if (!next(buffer)) {
            ended = true;
            break;
          }
          ++count;
        }
        return count;
      },
      now, max_items);
}

template <class Fill>
void JobCore::fill_many(Fill&& fill, TimePoint now, std::uint64_t max_items) {
  if (!paused_at_) sizer_.tick(now);  // a step may fill before its tick: the limit is current
  while (max_items > 0) {
    const std::uint32_t want =
        static_cast<std::uint32_t>(std::min<std::uint64_t>(wanted(), max_items));
    if (want == 0) return;
    // One buffer for every chunk of the job: no allocation, no fresh pages per chunk.
    chunk_buffer_.clear();
    const char header[wire::kArray32HeaderSize] = {};
    chunk_buffer_.write(header, sizeof header);
    bool ended = false;
    const std::uint32_t count = fill(chunk_buffer_, want, kMaxChunkBytes, ended);
    // More than asked would overfill the window (and wrap max_items): a filler's bug, said so.
    if (count > want) {
      throw Error("an input filler packed " + std::to_string(count) + " items where " +
                  std::to_string(want) + " were asked");
    }
    max_items -= count;
    if (count > 0 && count < want && !ended) sizer_.cut(count);  // closed at kMaxChunkBytes
    if (count > 0) {
      wire::write_array32_header(chunk_buffer_.data(), count);
      add_chunk(Bytes::copy(chunk_buffer_.data(), chunk_buffer_.size()), count, now);
    }
    if (ended) {
      end_input(now);
      return;
    }
    if (count == 0) return;  // a filler that broke its contract: not a loop without end
  }
}

}  // namespace seppo::client
