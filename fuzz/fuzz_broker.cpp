// Fuzzes the sans-I/O broker (broker/core.hpp): one seppo::broker::Core is driven through a
// sequence of operations carved from the input, with a fake clock, as broker/server.cpp would
// drive it from a ROUTER socket. Most operations build *valid* headers with seppo::wire::encode
// from input-chosen fields (READY, CREDIT, SUBMIT with a payload, RESULT for task ids the broker
// really dispatched, HEARTBEAT with seen/open, DONE, BYE...), so the fuzzer reaches deep states:
// workers holding tasks, workers dying, chunks being split, jobs expiring. The others are raw
// bytes, wrong payload frames, and calls of on_tick / on_send_failed / on_malformed / shutdown.
//
// Input layout (all reads past the end give zeros):
//   4 bytes  configuration: heartbeat, liveness and max_attempts, max_capacity and whether
//            peers have CURVE roles (kRoles) or are all Role::Any, client limits
//   then operations until the input ends, each one byte `op` followed by its own fields:
//     op & 7   the peer it comes from (3 worker-like, 3 client-like ids, 2 binary ZeroMQ-style ids)
//     op >> 3  the operation, through kOps below
//
// Checked after every operation, through the public interface only:
//   - nothing throws out of on_message (documented never to throw), on_tick, on_send_failed,
//     on_malformed or shutdown: server.cpp does not catch, so a throw kills the broker;
//   - every message in the outbox has a header that seppo::wire::decode accepts (peers enforce the
//     same kMaxHeaderBytes limit) and a payload frame exactly when its type carries one;
//   - a TASK goes to a peer whose READY the broker accepted, for a function that READY announced,
//     with at least one item, and never to a client's key; DELIVER, RESYNC and per-chunk FAILED
//     never go to a worker's key; a DELIVER carries a non-zero seq;
//   - a worker's inflight_count() never grows past its capacity (READY, then CREDIT, clamped to
//     Config::max_capacity);
//   - task_count() never exceeds the items of all SUBMITs sent (tasks are split at most to single
//     items), job_count() the SUBMITs sent, queued_count() task_count(), worker_count() the peers;
//   - the STATUS payload is a msgpack map that unpack_untrusted accepts.
//
// SEPPO_FUZZ_TRACE=1 prints the messages in and out and the broker's log (see fuzz/README.md).
#include <algorithm>
#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "seppo/msgpack.hpp"

#include "broker/core.hpp"
#include "broker/driver.hpp"
#include "protocol/wire.hpp"
#include "seppo/convert.hpp"
#include "seppo/error.hpp"

namespace {

namespace wire = seppo::wire;
namespace broker = seppo::broker;
using std::chrono::milliseconds;

// SEPPO_FUZZ_TRACE=1 prints every message in and out, and the broker's log: for reproducing.
bool trace = false;

[[noreturn]] void fail(const std::string& what) {
  std::fprintf(stderr, "fuzz_broker: %s\n", what.c_str());
  std::abort();
}

class Reader {
 public:
  Reader(const std::uint8_t* data, std::size_t size) : p_(data), n_(size) {}
  bool empty() const { return n_ == 0; }
  std::uint8_t u8() {
    if (n_ == 0) return 0;
    --n_;
    return *p_++;
  }
  std::uint16_t u16() { return static_cast<std::uint16_t>(u8() << 8 | u8()); }
  std::uint32_t u32() { return std::uint32_t(u16()) << 16 | u16(); }
  std::uint64_t u64() { return std::uint64_t(u32()) << 32 | u32(); }
  std::string bytes(std::size_t count) {
    count = std::min(count, n_);
    std::string out(reinterpret_cast<const char*>(p_), count);
    p_ += count;
    n_ -= count;
    return out;
  }

 private:
  const std::uint8_t* p_;
  std::size_t n_;
};

// With CURVE the socket loop tells the core what each peer's key allows (broker::Role); the
// configuration chooses whether the run uses roles (as below) or makes every peer Role::Any.
const std::array<broker::Role, 8> kRoles = {
    broker::Role::Worker, broker::Role::Worker, broker::Role::Worker, broker::Role::Client,
    broker::Role::Client, broker::Role::Client, broker::Role::Any,    broker::Role::Client,
};

const std::array<broker::PeerId, 8> kPeers = {
    "worker-a", "worker-b", "worker-c", "client-a", "client-b", "client-c",
    std::string("\0\x8b\x45\x67\x01", 5),  // what a ROUTER assigns to peers without an id
    std::string("\0\x8b\x45\x67\x02", 5),
};

// Function names: valid ones shared between workers and clients, and the invalid edge cases.
const std::array<std::string, 6> kFunctions = {
    "f", "g", "example_module.square", std::string(256, 'x'), "", std::string(257, 'y'),
};

enum class Op {
  Raw, Ready, ReadyMany, Credit, Submit, Result, Heartbeat, Done, Bye, StatusRequest, Tick,
  SendFailed, OtherType, Malformed, Shutdown,
};
// op >> 3 indexes this table: the weights favour the messages that build state.
constexpr std::array<Op, 32> kOps = {
    Op::Raw,       Op::Raw,        Op::Credit,        Op::Ready,     Op::Ready,
    Op::Ready,     Op::ReadyMany,  Op::Submit,        Op::Submit,    Op::Submit,
    Op::Submit,    Op::Submit,     Op::Result,        Op::Result,    Op::Result,
    Op::Result,    Op::Result,     Op::Heartbeat,     Op::Heartbeat, Op::Heartbeat,
    Op::Done,      Op::Done,       Op::Bye,           Op::Bye,       Op::StatusRequest,
    Op::Tick,      Op::Tick,       Op::Tick,          Op::SendFailed, Op::OtherType,
    Op::Malformed, Op::Shutdown,
};

// A msgpack array of `count` items (ints, strings, nested arrays, floats), as a client packs it.
std::string items_payload(std::uint32_t count, std::uint8_t style) {
  msgpack::sbuffer buffer;
  msgpack::packer<msgpack::sbuffer> p(buffer);
  p.pack_array(count);
  for (std::uint32_t i = 0; i < count; ++i) {
    switch ((style + i) % 4) {
      case 0: p.pack(static_cast<std::int64_t>(i) - 3); break;
      case 1: p.pack(std::string(i % 40, 's')); break;
      case 2: p.pack_array(2).pack(i).pack_nil(); break;
      default: p.pack(1.5 * i); break;
    }
  }
  return std::string(buffer.data(), buffer.size());
}

// A worker's RESULT payload: one [0, value] entry per item.
std::string results_payload(std::uint32_t count) {
  msgpack::sbuffer buffer;
  msgpack::packer<msgpack::sbuffer> p(buffer);
  p.pack_array(count);
  for (std::uint32_t i = 0; i < count; ++i) p.pack_array(2).pack(0).pack(i);
  return std::string(buffer.data(), buffer.size());
}

class Driver {
 public:
  explicit Driver(Reader& in)
      : in_(in), core_(make_config(in), 0x5e990, trace ? broker::Core::LogSink(log) : nullptr) {}

  void run() {
    while (!in_.empty()) {
      step();
      drain();
      check();
    }
  }

 private:
  // Runs in core_'s initializer: config_ is declared, hence constructed, before core_.
  broker::Config make_config(Reader& in) {
    broker::Config c;
    const std::uint8_t a = in.u8(), b = in.u8(), cap = in.u8(), limits = in.u8();
    c.heartbeat = milliseconds(10 * (1 + a % 100));
    c.liveness = 1 + b % 4;
    c.max_attempts = 1 + (b >> 2) % 4;
    c.max_capacity = 1 + cap % 64;
    roles_ = (cap & 0x40) != 0;
    if (limits & 1) c.max_chunk_items = 1 + (limits >> 1) % 16;
    if (limits & 2) c.max_client_bytes = 64 * (1 + (limits >> 2));
    config_ = c;
    return c;
  }

  static void log(seppo::log::Level, const std::string& text) {
    std::fprintf(stderr, "  log: %s\n", text.c_str());
  }

  broker::Role role_of(const broker::PeerId& peer) const {
    if (!roles_) return broker::Role::Any;
    for (std::size_t i = 0; i < kPeers.size(); ++i) {
      if (kPeers[i] == peer) return kRoles[i];
    }
    return broker::Role::Any;
  }

  // What the broker receives: a header frame and maybe a payload frame. Built messages are
  // accounted from their fields, raw ones if they happen to decode.
  void deliver(const broker::PeerId& from, const wire::Message& m,
               const std::optional<std::string>& payload) {
    inject(from, wire::encode(m), &m, payload);
  }
  void deliver_raw(const broker::PeerId& from, const std::string& header,
                   const std::optional<std::string>& payload) {
    std::optional<wire::Message> m;
    try {
      m = wire::decode(header.data(), header.size());
    } catch (const seppo::Error&) {
    }
    inject(from, header, m ? &*m : nullptr, payload);
  }

  void inject(const broker::PeerId& from, const std::string& header, const wire::Message* m,
              const std::optional<std::string>& payload) {
    if (trace) {
      std::fprintf(stderr, "%s -> broker: %s%s\n", broker::printable_id(from).c_str(),
                   m ? wire::type_name(wire::type_of(*m))
                     : ("undecodable header of " + std::to_string(header.size()) + " bytes").c_str(),
                   payload ? (" + payload of " + std::to_string(payload->size())).c_str() : "");
    }
    const std::size_t before = core_.outbox_size();
    const broker::Role role = role_of(from);
    const std::string key = "key of " + broker::printable_id(from);
    try {
      broker::feed(core_, from, header,
                   payload ? std::optional<seppo::Bytes>(seppo::Bytes(*payload)) : std::nullopt,
                   now_, role, key);
    } catch (const std::exception& e) {
      fail(std::string("on_message threw: ") + e.what());
    }
    if (m) account(from, *m, payload.has_value(), before);
  }

  // Learns from what was sent the bounds the checks use: items submitted, and each worker's
  // functions and capacity as of its last READY the broker accepted (answered with ALIVE) or
  // CREDIT it accepted (not answered with ERROR).
  void account(const broker::PeerId& from, const wire::Message& m, bool has_payload,
               std::size_t outbox_before) {
    const auto& outbox = core_.queued();
    auto answered = [&](wire::Type type) {
      return std::any_of(outbox.begin() + static_cast<std::ptrdiff_t>(outbox_before),
                         outbox.end(), [&](const broker::Outgoing& o) {
                           if (o.peer != from) return false;
                           try {
                             return wire::type_of(wire::decode(o.header.data(),
                                                               o.header.size())) == type;
                           } catch (const seppo::Error&) {
                             return false;  // drain() reports it
                           }
                         });
    };
    if (auto* s = std::get_if<wire::Submit>(&m); s && has_payload) {
      ++submits_;
      submitted_items_ += s->count;
    } else if (auto* r = std::get_if<wire::Ready>(&m); r && !has_payload) {
      if (answered(wire::Type::Alive)) {
        capacity_[from] = std::clamp<std::uint32_t>(r->capacity, 1, config_.max_capacity);
        functions_[from] = std::set<std::string>(r->functions.begin(), r->functions.end());
      }
    } else if (auto* c = std::get_if<wire::Credit>(&m); c && !has_payload) {
      if (capacity_.count(from) && !answered(wire::Type::Error)) {
        capacity_[from] = std::clamp<std::uint32_t>(c->capacity, 1, config_.max_capacity);
      }
    }
  }

  void step() {
    const std::uint8_t op = in_.u8();
    const broker::PeerId& peer = kPeers[op & 7];
    switch (kOps[op >> 3]) {
      case Op::Raw: {
        const std::string header = in_.bytes(in_.u16() % 4096);
        const std::uint8_t flag = in_.u8();
        std::optional<std::string> payload;
        if (flag & 1) payload = in_.bytes(in_.u16() % 4096);
        deliver_raw(peer, header, payload);
        break;
      }
      case Op::Ready: {
        wire::Ready m;
        const std::uint8_t capacity = in_.u8(), mask = in_.u8(), style = in_.u8();
        m.capacity = capacity == 255 ? in_.u32() : capacity;
        for (std::size_t i = 0; i < kFunctions.size(); ++i) {
          if (mask & (1u << i)) m.functions.push_back(kFunctions[i]);
        }
        if ((mask & 0x40) && !m.functions.empty()) m.functions.push_back(m.functions.front());
        m.name = style % 3 == 0 ? "" : style % 3 == 1 ? "host, process 7" : std::string(300, 'n');
        m.host = (style & 4) ? std::string(257, 'h') : "host";
        m.pid = (style & 8) ? INT64_MIN : (style & 16) ? -1 : 7;
        deliver(peer, m, (style & 32) ? std::optional<std::string>("") : std::nullopt);
        break;
      }
      case Op::ReadyMany: {
        // Many and long function names from a few bytes: reaches the 4096-function limit and
        // messages whose size grows with the number of known functions.
        wire::Ready m;
        m.name = "many";
        m.capacity = in_.u8();
        // Usually a few dozen (each name costs the broker a service); rarely about 4096, around
        // the limit: enough for messages that list every function to outgrow a header.
        const std::uint8_t many = in_.u8();
        const std::uint32_t count = many < 240 ? many % 64 : 4080 + (many - 240) * 2u;
        const std::size_t length = 1 + in_.u8();
        const std::uint8_t prefix = in_.u8();
        for (std::uint32_t i = 0; i < count; ++i) {
          std::string name = std::to_string(prefix) + "." + std::to_string(i) + ".";
          name.resize(std::max(length, name.size()), 'z');
          m.functions.push_back(std::move(name));
        }
        deliver(peer, m, std::nullopt);
        break;
      }
      case Op::Credit: {
        const std::uint8_t credit = in_.u8();
        deliver(peer, wire::Credit{credit == 255 ? in_.u32() : credit}, std::nullopt);
        break;
      }
      case Op::Submit: {
        wire::Submit m;
        const std::uint8_t job = in_.u8();
        m.job_id = job < 250 ? job % 4 : in_.u64();
        m.function = kFunctions[in_.u8() % kFunctions.size()];
        m.first = in_.u8();
        const std::uint8_t count = in_.u8();
        m.count = count == 255 ? in_.u32() : count;
        m.wait_ms = 10 * in_.u8();
        const std::uint8_t mode = in_.u8();
        std::optional<std::string> payload;
        const std::uint32_t items = std::min<std::uint32_t>(m.count, 4096);
        switch (mode % 6) {
          case 0:
          case 1: payload = items_payload(items, mode); break;
          case 2: payload = in_.bytes(in_.u8()); break;      // arbitrary bytes
          case 3: break;                                      // the payload frame is missing
          case 4: payload = items_payload(items + 1, mode); break;  // wrong item count
          default: {                                          // truncated
            std::string bytes = items_payload(items, mode);
            bytes.resize(bytes.size() / 2);
            payload = bytes;
          }
        }
        deliver(peer, m, payload);
        break;
      }
      case Op::Result: {
        wire::Result m;
        const std::uint8_t pick = in_.u8();
        auto& tasks = dispatched_[peer];
        std::uint32_t count = 1;
        if (pick < 192 && !tasks.empty()) {
          // A task this peer was really sent; usually the oldest, as a worker would answer.
          const std::size_t index = pick < 128 ? 0 : pick % tasks.size();
          m.task_id = tasks[index].first;
          count = tasks[index].second;
          tasks.erase(tasks.begin() + static_cast<std::ptrdiff_t>(index));
        } else if (pick < 250) {
          m.task_id = pick % 16;  // any task id: other workers', finished, queued, or unused
        } else {
          m.task_id = in_.u64();
        }
        m.elapsed_us = in_.u16();
        const std::uint8_t mode = in_.u8();
        std::optional<std::string> payload;
        if (mode % 4 == 0) {
          payload = results_payload(std::min<std::uint32_t>(count, 4096));
        } else if (mode % 4 == 1) {
          payload = in_.bytes(in_.u8());
        } else if (mode % 4 == 2) {
          payload = results_payload(1);
        }  // 3: no payload frame
        deliver(peer, m, payload);
        break;
      }
      case Op::Heartbeat: {
        // A worker's (job 0) or a client's: `seen` is usually the last seq the broker sent this
        // peer for the job, as an honest client reports it; `open` lists chunk firsts.
        wire::Heartbeat m;
        const std::uint8_t job = in_.u8();
        m.job_id = job < 200 ? job % 5 : in_.u64();  // 0 is "no job"
        const std::uint8_t seen = in_.u8();
        m.seen = seen < 128 ? last_seq_[{peer, m.job_id}] : seen % 16;
        for (std::uint8_t i = 0, n = in_.u8() % 6; i < n; ++i) m.open.push_back(in_.u8());
        deliver(peer, m, std::nullopt);
        break;
      }
      case Op::Done: {
        const std::uint8_t job = in_.u8();
        deliver(peer, wire::Done{job % 5u},
                (job & 0x80) ? std::optional<std::string>("x") : std::nullopt);
        break;
      }
      case Op::Bye:
        deliver(peer, wire::Bye{in_.bytes(in_.u8() % 32)}, std::nullopt);
        break;
      case Op::StatusRequest: {
        const std::uint8_t flag = in_.u8();
        deliver(peer, wire::StatusRequest{},
                (flag & 1) ? std::optional<std::string>("") : std::nullopt);
        break;
      }
      case Op::Tick: {
        const std::uint16_t amount = in_.u16();
        // Mostly small steps (heartbeats, waits); sometimes long silences.
        if (trace) std::fprintf(stderr, "clock +%u%s ms\n", amount & 0x7fff, (amount & 0x8000) ? "00" : "");
        now_ += (amount & 0x8000) ? milliseconds(std::int64_t(amount & 0x7fff) * 100)
                                  : milliseconds(amount & 0x7fff);
        break;  // on_tick runs after every operation
      }
      case Op::SendFailed:
        try {
          core_.on_send_failed(peer, now_);
        } catch (const std::exception& e) {
          fail(std::string("on_send_failed threw: ") + e.what());
        }
        break;
      case Op::OtherType: {
        // Broker-to-peer types, and types with the payload frame missing or extra.
        const std::uint8_t which = in_.u8();
        wire::Message m;
        switch (which % 8) {
          case 0: {
            wire::Task t;
            t.task_id = in_.u8();
            t.function = "f";
            t.count = 1;
            m = t;
            break;
          }
          case 1: {
            wire::Deliver d;
            d.job_id = 1;
            d.count = 1;
            m = d;
            break;
          }
          case 2: {
            wire::Failed f;
            f.job_id = 1;
            f.count = 1;
            f.code = std::nullopt;  // a name this program does not know
            m = f;
            break;
          }
          case 3: m = wire::Alive{}; break;
          case 4: m = wire::Resync{}; break;
          case 5: m = wire::Error{}; break;
          case 6: m = wire::Status{}; break;
          default: m = wire::Heartbeat{}; break;  // with a payload frame it must not carry
        }
        deliver(peer, m,
                (which & 8) ? std::optional<std::string>(results_payload(1)) : std::nullopt);
        break;
      }
      case Op::Malformed:
        try {
          core_.on_malformed(peer, "frame count " + std::to_string(in_.u8()));
        } catch (const std::exception& e) {
          fail(std::string("on_malformed threw: ") + e.what());
        }
        break;
      case Op::Shutdown:
        if (in_.u8() != 0x5d) break;  // rare: everything after it is refused
        try {
          core_.shutdown();
        } catch (const std::exception& e) {
          fail(std::string("shutdown threw: ") + e.what());
        }
        break;
    }
    // on_tick after every operation: the socket loop may call it between any two messages.
    try {
      core_.on_tick(now_);
    } catch (const std::exception& e) {
      fail(std::string("on_tick threw: ") + e.what());
    }
  }

  // Takes everything out of the outbox, as the socket loop would send it, checking each message.
  void drain() {
    core_.take_outbox(outbox_);
    for (broker::Outgoing& out : outbox_) {
      wire::Message m;
      try {
        m = wire::decode(out.header.data(), out.header.size());
      } catch (const seppo::Error& e) {
        fail("the broker sent a header its peers cannot decode (" +
             std::to_string(out.header.size()) + " bytes): " + e.what());
      }
      const wire::Type type = wire::type_of(m);
      if (trace) {
        std::fprintf(stderr, "broker -> %s: %s%s\n", broker::printable_id(out.peer).c_str(),
                     wire::type_name(type), out.payload ? " + payload" : "");
      }
      if (wire::has_payload(type) != out.payload.has_value()) {
        fail(std::string("the broker sent ") + wire::type_name(type) +
             (out.payload ? " with" : " without") + " a payload frame");
      }
      if (type == wire::Type::Status && out.payload) {
        try {
          const msgpack::object_handle status =
              seppo::unpack_untrusted(out.payload->data(), out.payload->size());
          if (status.get().type != msgpack::type::MAP) fail("the STATUS payload is not a map");
        } catch (const seppo::Error& e) {
          fail(std::string("the STATUS payload does not decode: ") + e.what());
        }
      }
      // A key authorised as a client never gets work, one authorised as a worker never gets
      // another client's results.
      const broker::Role role = role_of(out.peer);
      if (role == broker::Role::Client && type == wire::Type::Task) {
        fail("the broker sent a TASK to a peer whose key is a client's");
      }
      if (role == broker::Role::Worker &&
          (type == wire::Type::Deliver || type == wire::Type::Resync ||
           (type == wire::Type::Failed && std::get<wire::Failed>(m).seq != 0))) {
        fail(std::string("the broker sent ") + wire::type_name(type) +
             " to a peer whose key is a worker's");
      }
      if (const auto* d = std::get_if<wire::Deliver>(&m)) {
        if (d->seq == 0) fail("the broker sent a DELIVER without a seq");
        last_seq_[{out.peer, d->job_id}] = d->seq;
      } else if (const auto* f = std::get_if<wire::Failed>(&m); f && f->seq != 0) {
        last_seq_[{out.peer, f->job_id}] = f->seq;
      }
      if (const auto* task = std::get_if<wire::Task>(&m)) {
        if (task->count == 0) fail("the broker sent a TASK of 0 items");
        auto functions = functions_.find(out.peer);
        if (functions == functions_.end()) fail("the broker sent a TASK to a peer that never sent READY");
        if (!functions->second.count(task->function)) {
          fail("the broker sent a TASK for " + task->function + " to a worker that does not provide it");
        }
        auto& held = dispatched_[out.peer];
        held.emplace_back(task->task_id, task->count);
        if (held.size() > 256) held.erase(held.begin());
      }
    }
    outbox_.clear();
  }

  void check() {
    // A worker's tasks never grow past its capacity (they may exceed a capacity just lowered by
    // CREDIT, until enough results come back).
    for (const broker::PeerId& peer : kPeers) {
      const std::size_t inflight = core_.inflight_count(peer);
      std::size_t& before = inflight_[peer];
      if (inflight > before) {
        auto cap = capacity_.find(peer);
        if (cap == capacity_.end() || inflight > cap->second) {
          fail("a worker holds " + std::to_string(inflight) + " tasks, more than its capacity " +
               (cap == capacity_.end() ? std::string("(never announced)")
                                       : std::to_string(cap->second)));
        }
      }
      before = inflight;
    }
    if (core_.task_count() > submitted_items_) {
      fail("task_count() " + std::to_string(core_.task_count()) + " exceeds the " +
           std::to_string(submitted_items_) + " items ever submitted");
    }
    if (core_.job_count() > submits_) fail("job_count() exceeds the SUBMITs ever sent");
    if (core_.queued_count() > core_.task_count()) fail("queued_count() exceeds task_count()");
    if (core_.worker_count() > kPeers.size()) fail("worker_count() exceeds the peers");
  }

  Reader& in_;
  broker::Config config_;
  bool roles_ = false;  // set by make_config, before core_ exists
  broker::Core core_;
  std::vector<broker::Outgoing> outbox_;  // drain()'s batch, reused
  broker::TimePoint now_{std::chrono::hours(1)};  // any time but the clock's epoch
  std::uint64_t submits_ = 0;
  std::uint64_t submitted_items_ = 0;
  std::map<broker::PeerId, std::uint32_t> capacity_;  // as of the last accepted READY/CREDIT
  std::map<broker::PeerId, std::size_t> inflight_;   // inflight_count() after the last step
  std::map<broker::PeerId, std::set<std::string>> functions_;
  std::map<broker::PeerId, std::vector<std::pair<std::uint64_t, std::uint32_t>>> dispatched_;
  std::map<std::pair<broker::PeerId, std::uint64_t>, std::uint64_t> last_seq_;  // (client, job)
};

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  const char* env = std::getenv("SEPPO_FUZZ_TRACE");
  trace = env != nullptr && *env != '\0' && *env != '0';
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  Reader in(data, size);
  Driver driver(in);
  driver.run();
  return 0;
}
