#include "protocol/wire.hpp"

#include <algorithm>
#include <cstring>
#include <new>

#include "seppo/msgpack.hpp"

#include "protocol/msgpack_reader.hpp"
#include "seppo/convert.hpp"
#include "seppo/error.hpp"

namespace seppo::wire {
namespace {

// Packs into a buffer on the stack, then the header string is made in one piece: the packer
// writes a byte or a few at a time. Headers longer than the buffer continue in `spill`.
class HeaderStream {
 public:
  void write(const char* data, std::size_t size) {
    if (spill_.empty() && size <= sizeof buffer_ - used_) {
      std::memcpy(buffer_ + used_, data, size);
      used_ += size;
      return;
    }
    if (spill_.empty()) spill_.assign(buffer_, used_);
    spill_.append(data, size);
  }
  std::string take() { return spill_.empty() ? std::string(buffer_, used_) : std::move(spill_); }
  Header take_header() {
    return spill_.empty() ? Header(buffer_, used_) : Header(std::move(spill_));
  }

 private:
  char buffer_[128];
  std::size_t used_ = 0;
  std::string spill_;
};
using Packer = msgpack::packer<HeaderStream>;

// The broker's hot path (issue 28): msgpack written straight into a buffer sized beforehand
// (at most 9 bytes an integer, 5 a length), in the forms msgpack::packer chooses (the shortest
// integer; fixarray, array 16, array 32; fixstr, str 8, str 16, str 32), so the bytes are the
// packer's, without a call into a stream for every byte or two written.
class Direct {
 public:
  explicit Direct(char* at) : at_(reinterpret_cast<unsigned char*>(at)) {}
  static constexpr std::size_t kMaxUint = 9;
  static constexpr std::size_t kMaxLength = 5;

  [[gnu::always_inline]] Direct& uint(std::uint64_t v) {
    if (v < 0x80) {
      *at_++ = static_cast<unsigned char>(v);
    } else if (v < 0x100) {
      *at_++ = 0xcc;
      *at_++ = static_cast<unsigned char>(v);
    } else if (v < 0x10000) {
      *at_++ = 0xcd;
      big(v, 2);
    } else if (v < 0x100000000ull) {
      *at_++ = 0xce;
      big(v, 4);
    } else {
      *at_++ = 0xcf;
      big(v, 8);
    }
    return *this;
  }
  [[gnu::always_inline]] Direct& array(std::uint32_t n) {
    if (n < 16) {
      *at_++ = static_cast<unsigned char>(0x90u | n);
    } else if (n < 0x10000) {
      *at_++ = 0xdc;
      big(n, 2);
    } else {
      *at_++ = 0xdd;
      big(n, 4);
    }
    return *this;
  }
  [[gnu::always_inline]] Direct& str(std::string_view text) {
    const std::size_t n = text.size();
    if (n < 32) {
      *at_++ = static_cast<unsigned char>(0xa0u | n);
    } else if (n < 0x100) {
      *at_++ = 0xd9;
      *at_++ = static_cast<unsigned char>(n);
    } else if (n < 0x10000) {
      *at_++ = 0xda;
      big(n, 2);
    } else {
      *at_++ = 0xdb;
      big(n, 4);
    }
    if (n != 0) std::memcpy(at_, text.data(), n);
    at_ += n;
    return *this;
  }
  // [version, type, ...fields], as start() packs it.
  Direct& start(Type type, std::uint32_t fields) {
    array(2 + fields);
    uint(kVersion);
    return uint(static_cast<std::uint8_t>(type));
  }
  std::size_t written(const char* from) const {
    return static_cast<std::size_t>(reinterpret_cast<const char*>(at_) - from);
  }

 private:
  [[gnu::always_inline]] void big(std::uint64_t v, int bytes) {
    for (int i = bytes - 1; i >= 0; --i) *at_++ = static_cast<unsigned char>(v >> (8 * i));
  }
  unsigned char* at_;
};

// A header of at most `bound` bytes, written by `write(char*) -> bytes written`: on the stack
// and then in place in the Header when short, else in a string.
template <typename Write>
Header direct_header(std::size_t bound, Write write) {
  if (bound <= 256) {
    char buffer[256];
    return Header(buffer, write(buffer));
  }
  std::string text(bound, '\0');
  text.resize(write(text.data()));
  return Header(std::move(text));
}

// A batched header of at most `bound` bytes, written the same way.
template <typename Write>
std::string direct_string(std::size_t bound, Write write) {
  std::string text(bound, '\0');
  text.resize(write(text.data()));
  return text;
}

// Reads header fields by position, with errors that name the message and field.
class Fields {
 public:
  Fields(const msgpack::object_array& array, Type type) : array_(array), type_(type) {}

  void need(std::uint32_t count) const {
    if (array_.size < count) {
      throw ProtocolError(std::string(type_name(type_)) + ": expected " + std::to_string(count) +
                          " header fields, got " + std::to_string(array_.size));
    }
  }
  bool has(std::uint32_t index) const { return array_.size > index; }  // optional trailing field
  std::uint64_t u64(std::uint32_t index, const char* name) const {
    const msgpack::object& o = at(index);
    if (o.type != msgpack::type::POSITIVE_INTEGER) fail(index, name, "unsigned integer", o);
    return o.via.u64;
  }
  std::uint32_t u32(std::uint32_t index, const char* name) const {
    const std::uint64_t value = u64(index, name);
    if (value > UINT32_MAX) {
      throw ProtocolError(std::string(type_name(type_)) + ": field " + name + " out of range");
    }
    return static_cast<std::uint32_t>(value);
  }
  std::int64_t i64(std::uint32_t index, const char* name) const {
    const msgpack::object& o = at(index);
    if (o.type == msgpack::type::NEGATIVE_INTEGER) return o.via.i64;
    if (o.type != msgpack::type::POSITIVE_INTEGER || o.via.u64 > INT64_MAX) {
      fail(index, name, "integer", o);
    }
    return static_cast<std::int64_t>(o.via.u64);
  }
  std::string str(std::uint32_t index, const char* name) const {
    const msgpack::object& o = at(index);
    if (o.type != msgpack::type::STR) fail(index, name, "string", o);
    return std::string(o.via.str.ptr, o.via.str.size);
  }
  std::vector<std::uint64_t> u64s(std::uint32_t index, const char* name) const {
    const msgpack::object& o = at(index);
    if (o.type != msgpack::type::ARRAY) fail(index, name, "array of unsigned integers", o);
    std::vector<std::uint64_t> out;
    out.reserve(o.via.array.size);
    for (std::uint32_t i = 0; i < o.via.array.size; ++i) {
      const msgpack::object& v = o.via.array.ptr[i];
      if (v.type != msgpack::type::POSITIVE_INTEGER)
        fail(index, name, "array of unsigned integers", v);
      out.push_back(v.via.u64);
    }
    return out;
  }
  std::vector<std::string> strings(std::uint32_t index, const char* name) const {
    const msgpack::object& o = at(index);
    if (o.type != msgpack::type::ARRAY) fail(index, name, "array of strings", o);
    std::vector<std::string> out;
    out.reserve(o.via.array.size);
    for (std::uint32_t i = 0; i < o.via.array.size; ++i) {
      const msgpack::object& s = o.via.array.ptr[i];
      if (s.type != msgpack::type::STR) fail(index, name, "array of strings", s);
      out.emplace_back(s.via.str.ptr, s.via.str.size);
    }
    return out;
  }

 private:
  const msgpack::object& at(std::uint32_t index) const { return array_.ptr[index]; }
  [[noreturn]] void fail(std::uint32_t, const char* name, const char* expected,
                         const msgpack::object& got) const {
    throw ProtocolError(std::string(type_name(type_)) + ": field " + name + ": expected " +
                        expected + ", got " + seppo::type_name(got.type));
  }

  const msgpack::object_array& array_;
  Type type_;
};

// Reads a header of the usual shape (scalars, and arrays of them; at most kSlots values) with
// protocol/msgpack_reader.hpp instead of msgpack-c's parser, which allocates its two stacks and a
// zone on every call (issue 16): strings point into the input and the values live here. Anything
// else, malformed input included, makes read() return false and decode() falls back to
// unpack_untrusted, so that what is accepted, and the errors peers see, stay msgpack-c's.
class QuickReader {
 public:
  QuickReader(const void* data, std::size_t size) : in_(data, size) {}
  QuickReader(const QuickReader&) = delete;
  QuickReader& operator=(const QuickReader&) = delete;

  bool read(msgpack::object& root) { return value(root, 0) && in_.at_end(); }

 private:
  // Room for a DELIVERS of kMaxBatch chunks and as many names (§4.19), the largest batched
  // header, beside its other fields.
  static constexpr std::size_t kSlots = 8 + kMaxBatch * (kDeliverFields + 1);
  static_assert(kDeliverFields + 1 >= kTaskFields && kDeliverFields + 1 >= kResultFields);

  bool value(msgpack::object& o, int depth) {
    unsigned char first = 0;
    if (!in_.byte(first)) return false;
    if (!MsgpackReader::is_array(first)) return in_.scalar(first, o);
    std::uint32_t size = 0;
    return in_.array_count(first, size) && array(o, size, depth);
  }
  bool array(msgpack::object& o, std::uint64_t size, int depth) {
    if (depth >= 2 || size > kSlots - used_) return false;
    msgpack::object* items = reinterpret_cast<msgpack::object*>(slots_) + used_;
    used_ += size;
    o.type = msgpack::type::ARRAY;
    o.via.array.size = static_cast<std::uint32_t>(size);
    o.via.array.ptr = size == 0 ? nullptr : items;
    for (std::uint64_t i = 0; i < size; ++i) {
      if (!value(*new (&items[i]) msgpack::object(), depth + 1)) return false;
    }
    return true;
  }

  MsgpackReader in_;
  std::size_t used_ = 0;
  // Not value-initialised: only the slots used are constructed.
  alignas(msgpack::object) unsigned char slots_[kSlots * sizeof(msgpack::object)];
};

void start(Packer& p, Type type, std::uint32_t fields) {
  p.pack_array(2 + fields);
  p.pack(kVersion);
  p.pack(static_cast<std::uint8_t>(type));
}

void pack_str(Packer& p, std::string_view text) {
  p.pack_str(static_cast<std::uint32_t>(text.size()));
  p.pack_str_body(text.data(), static_cast<std::uint32_t>(text.size()));
}

void pack_task(Packer& p, std::uint64_t task_id, std::string_view function, std::uint32_t count,
               std::uint64_t job, std::uint64_t first) {
  start(p, Type::Task, job != 0 ? 5 : 3);
  p.pack(task_id);
  pack_str(p, function);
  p.pack(count);
  if (job != 0) p.pack(job).pack(first);
}

void pack_deliver(Packer& p, std::uint64_t job_id, std::uint64_t first, std::uint32_t count,
                  std::string_view worker, std::uint64_t elapsed_us, std::uint64_t seq) {
  start(p, Type::Deliver, 6);
  p.pack(job_id).pack(first).pack(count);
  pack_str(p, worker);
  p.pack(elapsed_us).pack(seq);
}

struct Encoder {
  Packer& p;
  void operator()(const Ready& m) {
    // Optional trailing fields are appended only when set, so a message without them is byte for
    // byte what peers that predate them send.
    const std::uint32_t fields = !m.held.empty()       ? 8
                                 : !m.features.empty() ? 7
                                 : !m.version.empty()  ? 6
                                                       : 5;
    start(p, Type::Ready, fields);
    p.pack(m.name).pack(m.host).pack(m.pid).pack(m.capacity).pack(m.functions);
    if (fields > 5) p.pack(m.version);
    if (fields > 6) p.pack(m.features);
    if (fields > 7) p.pack(m.held);
  }
  void operator()(const Task& m) { pack_task(p, m.task_id, m.function, m.count, m.job, m.first); }
  void operator()(const Result& m) {
    start(p, Type::Result, m.items_failed != 0 ? 3 : 2);
    p.pack(m.task_id).pack(m.elapsed_us);
    if (m.items_failed != 0) p.pack(m.items_failed);
  }
  void operator()(const Submit& m) {
    // The time limit and the features are appended only when set, so a SUBMIT without them is
    // byte for byte what peers that predate them send.
    const std::uint32_t fields = !m.features.empty() ? 7 : m.item_timeout_ms ? 6 : 5;
    start(p, Type::Submit, fields);
    p.pack(m.job_id).pack(m.function).pack(m.first).pack(m.count).pack(m.wait_ms);
    if (fields > 5) p.pack(m.item_timeout_ms);
    if (fields > 6) p.pack(m.features);
  }
  void operator()(const Deliver& m) {
    pack_deliver(p, m.job_id, m.first, m.count, m.worker, m.elapsed_us, m.seq);
  }
  void operator()(const Failed& m) {
    start(p, Type::Failed, 6);
    p.pack(m.job_id).pack(m.first).pack(m.count).pack(code_name(m.code)).pack(m.message);
    p.pack(m.seq);
  }
  void operator()(const Done& m) {
    start(p, Type::Done, 1);
    p.pack(m.job_id);
  }
  void operator()(const Heartbeat& m) {
    start(p, Type::Heartbeat, m.held.empty() ? 3 : 4);
    p.pack(m.job_id).pack(m.seen).pack(m.open);
    if (!m.held.empty()) p.pack(m.held);
  }
  void operator()(const Alive& m) {
    const std::uint32_t fields = !m.features.empty() ? 5 : m.max_message_bytes != 0 ? 4 : 3;
    start(p, Type::Alive, fields);
    p.pack(m.instance).pack(m.heartbeat_ms).pack(m.liveness);
    if (fields > 3) p.pack(m.max_message_bytes);
    if (fields > 4) p.pack(m.features);
  }
  void operator()(const Resync& m) {
    start(p, Type::Resync, m.instance != 0 ? 2 : 1);
    p.pack(m.job_id);
    if (m.instance != 0) p.pack(m.instance);
  }
  void operator()(const Bye& m) {
    start(p, Type::Bye, 1);
    p.pack(m.reason);
  }
  void operator()(const Error& m) {
    start(p, Type::Error, 2);
    p.pack(code_name(m.code)).pack(m.message);
  }
  void operator()(const StatusRequest&) { start(p, Type::StatusRequest, 0); }
  void operator()(const Status&) { start(p, Type::Status, 0); }
  void operator()(const Credit& m) {
    start(p, Type::Credit, 1);
    p.pack(m.capacity);
  }
  void operator()(const Cancel& m) {
    start(p, Type::Cancel, 1);
    p.pack(m.task_ids);
  }
  void operator()(const Return& m) {
    start(p, Type::Return, 1);
    p.pack(m.task_ids);
  }
  void operator()(const Tasks& m) {
    start(p, Type::Tasks, 2);
    pack_str(p, m.function);
    p.pack(m.tasks);
  }
  void operator()(const Results& m) {
    start(p, Type::Results, 1);
    p.pack(m.results);
  }
  void operator()(const Delivers& m) {
    start(p, Type::Delivers, 3);
    p.pack(m.job_id).pack(m.delivers).pack(m.workers);
  }
  void operator()(const Submits& m) {
    start(p, Type::Submits, 6);
    p.pack(m.job_id).pack(m.function).pack(m.wait_ms).pack(m.item_timeout_ms).pack(m.features);
    p.pack(m.chunks);
  }
};

// A batched message's flat list: a whole number of groups, 1 to kMaxBatch of them. Checked
// before anything is allocated for the parts (the list itself is bounded by the header's size).
void check_batch(Type type, const std::vector<std::uint64_t>& flat, std::size_t fields) {
  const std::size_t n = flat.size() / fields;
  if (flat.size() % fields != 0 || n == 0 || n > kMaxBatch) {
    throw ProtocolError(std::string(type_name(type)) + ": expected 1 to " +
                        std::to_string(kMaxBatch) + " groups of " + std::to_string(fields) +
                        " numbers, got " + std::to_string(flat.size()) + " numbers");
  }
  for (std::size_t i = 0; i < flat.size(); i += fields) {
    // TASKS', DELIVERS' and SUBMITS' count, RESULTS' items_failed: uint32 fields.
    if (flat[i + 1 + (type == Type::Results ? 1 : 0)] > UINT32_MAX) {
      throw ProtocolError(std::string(type_name(type)) + ": a count out of range");
    }
    if (type == Type::Submits && (flat[i + 1] == 0 || flat[i + 1] > kMaxChunkItems)) {
      throw ProtocolError("SUBMITS: a chunk of " + std::to_string(flat[i + 1]) + " items (1 to " +
                          std::to_string(kMaxChunkItems) + ")");
    }
  }
}

Message decode_fields(Type type, const Fields& f) {
  switch (type) {
    case Type::Ready:
      f.need(7);
      return Ready{f.str(2, "name"),
                   f.str(3, "host"),
                   f.i64(4, "pid"),
                   f.u32(5, "capacity"),
                   f.strings(6, "functions"),
                   f.has(7) ? f.str(7, "version") : std::string(),
                   f.has(8) ? f.strings(8, "features") : std::vector<std::string>(),
                   f.has(9) ? f.u64s(9, "held") : std::vector<std::uint64_t>()};
    case Type::Task:
      f.need(5);
      return Task{f.u64(2, "task_id"), f.str(3, "function"), f.u32(4, "count"),
                  f.has(6) ? f.u64(5, "job") : 0, f.has(6) ? f.u64(6, "first") : 0};
    case Type::Result:
      f.need(4);
      return Result{f.u64(2, "task_id"), f.u64(3, "elapsed_us"),
                    f.has(4) ? f.u32(4, "items_failed") : 0};
    case Type::Submit:
      f.need(7);
      return Submit{f.u64(2, "job_id"),
                    f.str(3, "function"),
                    f.u64(4, "first"),
                    f.u32(5, "count"),
                    f.u32(6, "wait_ms"),
                    f.has(7) ? f.u32(7, "item_timeout_ms") : 0,
                    f.has(8) ? f.strings(8, "features") : std::vector<std::string>()};
    case Type::Deliver:
      f.need(8);
      return Deliver{f.u64(2, "job_id"), f.u64(3, "first"),      f.u32(4, "count"),
                     f.str(5, "worker"), f.u64(6, "elapsed_us"), f.u64(7, "seq")};
    case Type::Failed:
      f.need(8);
      return Failed{f.u64(2, "job_id"),  f.u64(3, "first"),
                    f.u32(4, "count"),   code_from_wire(f.str(5, "code")),
                    f.str(6, "message"), f.u64(7, "seq")};
    case Type::Done:
      f.need(3);
      return Done{f.u64(2, "job_id")};
    case Type::Heartbeat:
      f.need(5);
      return Heartbeat{f.u64(2, "job_id"), f.u64(3, "seen"), f.u64s(4, "open"),
                       f.has(5) ? f.u64s(5, "held") : std::vector<std::uint64_t>()};
    case Type::Alive:
      f.need(5);
      return Alive{f.u64(2, "instance"), f.u32(3, "heartbeat_ms"), f.u32(4, "liveness"),
                   f.has(5) ? f.u64(5, "max_message_bytes") : 0,
                   f.has(6) ? f.strings(6, "features") : std::vector<std::string>()};
    case Type::Resync:
      f.need(3);
      return Resync{f.u64(2, "job_id"), f.has(3) ? f.u64(3, "instance") : 0};
    case Type::Bye:
      f.need(3);
      return Bye{f.str(2, "reason")};
    case Type::Error:
      f.need(4);
      return Error{code_from_wire(f.str(2, "code")), f.str(3, "message")};
    case Type::StatusRequest:
      return StatusRequest{};
    case Type::Status:
      return Status{};
    case Type::Credit:
      f.need(3);
      return Credit{f.u32(2, "capacity")};
    case Type::Cancel:
      f.need(3);
      return Cancel{f.u64s(2, "task_ids")};
    case Type::Return:
      f.need(3);
      return Return{f.u64s(2, "task_ids")};
    case Type::Tasks: {
      f.need(4);
      Tasks m{f.str(2, "function"), f.u64s(3, "tasks")};
      check_batch(type, m.tasks, kTaskFields);
      return m;
    }
    case Type::Results: {
      f.need(3);
      Results m{f.u64s(2, "results")};
      check_batch(type, m.results, kResultFields);
      return m;
    }
    case Type::Delivers: {
      f.need(5);
      Delivers m{f.u64(2, "job_id"), f.u64s(3, "delivers"), f.strings(4, "workers")};
      check_batch(type, m.delivers, kDeliverFields);
      if (m.workers.empty() || m.workers.size() > kMaxBatch) {
        throw ProtocolError("DELIVERS: expected 1 to " + std::to_string(kMaxBatch) +
                            " worker names, got " + std::to_string(m.workers.size()));
      }
      for (std::size_t i = 0; i < m.delivers.size(); i += kDeliverFields) {
        if (m.delivers[i + 2] >= m.workers.size()) {
          throw ProtocolError("DELIVERS: a worker index out of range");
        }
      }
      return m;
    }
    case Type::Submits: {
      f.need(8);
      Submits m{f.u64(2, "job_id"),          f.str(3, "function"),     f.u32(4, "wait_ms"),
                f.u32(5, "item_timeout_ms"), f.strings(6, "features"), f.u64s(7, "chunks")};
      check_batch(type, m.chunks, kSubmitFields);
      return m;
    }
  }
  throw ProtocolError("unknown message type " + std::to_string(static_cast<int>(type)));
}

}  // namespace

bool has_payload(Type type) {
  return type == Type::Task || type == Type::Result || type == Type::Submit ||
         type == Type::Deliver || type == Type::Status || type == Type::Tasks ||
         type == Type::Results || type == Type::Delivers || type == Type::Submits;
}

Type type_of(const Message& message) {
  return std::visit([](const auto& m) { return std::decay_t<decltype(m)>::kType; }, message);
}

const char* type_name(Type type) {
  switch (type) {
    case Type::Ready:
      return "READY";
    case Type::Task:
      return "TASK";
    case Type::Result:
      return "RESULT";
    case Type::Submit:
      return "SUBMIT";
    case Type::Deliver:
      return "DELIVER";
    case Type::Failed:
      return "FAILED";
    case Type::Done:
      return "DONE";
    case Type::Heartbeat:
      return "HEARTBEAT";
    case Type::Alive:
      return "ALIVE";
    case Type::Resync:
      return "RESYNC";
    case Type::Bye:
      return "BYE";
    case Type::Error:
      return "ERROR";
    case Type::StatusRequest:
      return "STATUS_REQUEST";
    case Type::Status:
      return "STATUS";
    case Type::Credit:
      return "CREDIT";
    case Type::Cancel:
      return "CANCEL";
    case Type::Return:
      return "RETURN";
    case Type::Tasks:
      return "TASKS";
    case Type::Results:
      return "RESULTS";
    case Type::Delivers:
      return "DELIVERS";
    case Type::Submits:
      return "SUBMITS";
  }
  return "UNKNOWN";
}

std::string encode(const Message& message) {
  HeaderStream stream;
  Packer packer(stream);
  std::visit(Encoder{packer}, message);
  return stream.take();
}

bool has_feature(const std::vector<std::string>& features, std::string_view name) {
  for (const std::string& f : features) {
    if (f == name) return true;
  }
  return false;
}

std::vector<HeldTask> held_tasks(const std::vector<std::uint64_t>& flat) {
  std::vector<HeldTask> out;
  out.reserve(flat.size() / 4);
  for (std::size_t i = 0; i + 4 <= flat.size(); i += 4) {
    if (flat[i + 3] > UINT32_MAX) continue;
    out.push_back(
        HeldTask{flat[i], flat[i + 1], flat[i + 2], static_cast<std::uint32_t>(flat[i + 3])});
  }
  return out;
}

void append_held(std::vector<std::uint64_t>& flat, const HeldTask& task) {
  flat.insert(flat.end(), {task.task_id, task.job, task.first, task.count});
}

std::uint64_t job_tag(std::string_view client, std::uint64_t job_id) {
  std::uint64_t h = 0xcbf29ce484222325ull;  // FNV-1a over the id, then the job id's 8 bytes
  for (unsigned char c : client) h = (h ^ c) * 0x100000001b3ull;
  for (int i = 0; i < 8; ++i) h = (h ^ ((job_id >> (8 * i)) & 0xff)) * 0x100000001b3ull;
  h ^= h >> 33;  // and a finaliser (murmur3's), so that near ids give unrelated tags
  h *= 0xff51afd7ed558ccdull;
  h ^= h >> 33;
  return h != 0 ? h : 1;
}

Header encode_task(std::uint64_t task_id, std::string_view function, std::uint32_t count,
                   std::uint64_t job, std::uint64_t first) {
  // pack_task's bytes.
  return direct_header(8 + 4 * Direct::kMaxUint + Direct::kMaxLength + function.size(),
                       [&](char* buffer) {
                         Direct d(buffer);
                         d.start(Type::Task, job != 0 ? 5 : 3).uint(task_id).str(function);
                         d.uint(count);
                         if (job != 0) d.uint(job).uint(first);
                         return d.written(buffer);
                       });
}

namespace {

// The string after `skip` unsigned integers in a header [array, version 1, type, ...] that this
// file packed (fixarray, shortest integers, str up to 16 bits), as a view; empty otherwise.
std::string_view str_after(const Header& header, Type type, int skip) {
  const auto* p = reinterpret_cast<const unsigned char*>(header.data());
  const std::size_t size = header.size();
  if (size < 5 || (p[0] & 0xf0) != 0x90 || p[1] != kVersion ||
      p[2] != static_cast<unsigned char>(type)) {
    return {};
  }
  std::size_t at = 3;
  for (int i = 0; i < skip; ++i) {
    if (at >= size) return {};
    const unsigned n = p[at];
    at += n <= 0x7f ? 1 : n == 0xcc ? 2 : n == 0xcd ? 3 : n == 0xce ? 5 : n == 0xcf ? 9 : size;
  }
  if (at >= size) return {};
  std::size_t length = 0;
  const unsigned marker = p[at];
  if ((marker & 0xe0) == 0xa0) {
    length = marker & 0x1f;
    at += 1;
  } else if (marker == 0xd9 && at + 1 < size) {
    length = p[at + 1];
    at += 2;
  } else if (marker == 0xda && at + 2 < size) {
    length = (std::size_t{p[at + 1]} << 8) | p[at + 2];
    at += 3;
  } else {
    return {};
  }
  if (length > size - at) return {};
  return {header.data() + at, length};
}

}  // namespace

// [array, version 1, type 2, task_id, function, ...], as pack_task writes it.
std::string_view task_function(const Header& task) {
  return str_after(task, Type::Task, 1);
}

// [array, version 1, type 5, job_id, first, count, worker, ...], as pack_deliver writes it.
std::string_view deliver_worker(const Header& deliver) {
  return str_after(deliver, Type::Deliver, 3);
}

Header encode_deliver(std::uint64_t job_id, std::uint64_t first, std::uint32_t count,
                      std::string_view worker, std::uint64_t elapsed_us, std::uint64_t seq) {
  // pack_deliver's bytes.
  return direct_header(8 + 5 * Direct::kMaxUint + Direct::kMaxLength + worker.size(),
                       [&](char* buffer) {
                         Direct d(buffer);
                         d.start(Type::Deliver, 6).uint(job_id).uint(first).uint(count);
                         d.str(worker).uint(elapsed_us).uint(seq);
                         return d.written(buffer);
                       });
}

namespace {

// The parts of a batched payload: `size` is the group's field at `at`; the sizes must add up.
void check_parts(Type type, const std::vector<std::uint64_t>& flat, std::size_t fields,
                 std::size_t at, const Bytes& payload) {
  check_batch(type, flat, fields);
  std::uint64_t total = 0;
  for (std::size_t i = 0; i < flat.size(); i += fields) {
    if (flat[i + at] > payload.size() - total) {
      throw ProtocolError(std::string(type_name(type)) + ": the sizes exceed the payload's " +
                          std::to_string(payload.size()) + " bytes");
    }
    total += flat[i + at];
  }
  if (total != payload.size()) {
    throw ProtocolError(std::string(type_name(type)) + ": the sizes add up to " +
                        std::to_string(total) + " bytes, the payload has " +
                        std::to_string(payload.size()));
  }
}

template <typename Part, typename Make>
std::vector<Part> split_parts(Type type, const std::vector<std::uint64_t>& flat, std::size_t fields,
                              std::size_t at, const Bytes& payload, Make make) {
  check_parts(type, flat, fields, at, payload);
  std::vector<Part> parts;
  parts.reserve(flat.size() / fields);
  std::size_t offset = 0;
  for (std::size_t i = 0; i < flat.size(); i += fields) {
    const std::size_t size = flat[i + at];
    parts.push_back(make(&flat[i], Bytes(payload.owner(), payload.data() + offset, size)));
    offset += size;
  }
  return parts;
}

}  // namespace

std::vector<BatchedTask> split(const Tasks& m, const Bytes& payload) {
  return split_parts<BatchedTask>(
      Type::Tasks, m.tasks, kTaskFields, 2, payload, [&](const std::uint64_t* g, Bytes bytes) {
        return BatchedTask{Task{g[0], m.function, static_cast<std::uint32_t>(g[1]), g[3], g[4]},
                           std::move(bytes)};
      });
}

std::vector<BatchedResult> split(const Results& m, const Bytes& payload) {
  return split_parts<BatchedResult>(
      Type::Results, m.results, kResultFields, 3, payload, [](const std::uint64_t* g, Bytes bytes) {
        return BatchedResult{Result{g[0], g[1], static_cast<std::uint32_t>(g[2])},
                             std::move(bytes)};
      });
}

std::vector<BatchedDeliver> split(const Delivers& m, const Bytes& payload) {
  return split_parts<BatchedDeliver>(
      Type::Delivers, m.delivers, kDeliverFields, 5, payload,
      [&](const std::uint64_t* g, Bytes bytes) {
        // decode() checked the index; a Delivers built otherwise is checked here.
        if (g[2] >= m.workers.size()) throw ProtocolError("DELIVERS: a worker index out of range");
        return BatchedDeliver{
            Deliver{m.job_id, g[0], static_cast<std::uint32_t>(g[1]), m.workers[g[2]], g[3], g[4]},
            std::move(bytes)};
      });
}

std::vector<BatchedSubmit> split(const Submits& m, const Bytes& payload) {
  return split_parts<BatchedSubmit>(
      Type::Submits, m.chunks, kSubmitFields, 2, payload, [&](const std::uint64_t* g, Bytes bytes) {
        return BatchedSubmit{Submit{m.job_id, m.function, g[0], static_cast<std::uint32_t>(g[1]),
                                    m.wait_ms, m.item_timeout_ms, m.features},
                             std::move(bytes)};
      });
}

void check_split(const Submits& submits, const Bytes& payload) {
  check_parts(Type::Submits, submits.chunks, kSubmitFields, 2, payload);
}

Batch encode_submits(const Submit& submit, const SubmitPart* parts, std::size_t n) {
  HeaderStream stream;
  Packer p(stream);
  start(p, Type::Submits, 6);
  p.pack(submit.job_id);
  pack_str(p, submit.function);
  p.pack(submit.wait_ms).pack(submit.item_timeout_ms).pack(submit.features);
  p.pack_array(static_cast<std::uint32_t>(n * kSubmitFields));
  std::size_t bytes = 0;
  for (std::size_t i = 0; i < n; ++i) bytes += parts[i].payload->size();
  Batch batch;
  batch.payload.reserve(bytes);
  for (std::size_t i = 0; i < n; ++i) {
    const SubmitPart& c = parts[i];
    p.pack(c.first).pack(c.count).pack(std::uint64_t{c.payload->size()});
    batch.payload.append(c.payload->data(), c.payload->size());
  }
  batch.header = stream.take();
  return batch;
}

Batch encode_tasks(std::string_view function, const TaskPart* parts, std::size_t n) {
  std::size_t bytes = 0;
  for (std::size_t i = 0; i < n; ++i) bytes += parts[i].payload->size();
  Batch batch;
  batch.header = direct_string(
      8 + 2 * Direct::kMaxLength + function.size() + n * kTaskFields * Direct::kMaxUint,
      [&](char* buffer) {
        Direct d(buffer);
        d.start(Type::Tasks, 2).str(function).array(static_cast<std::uint32_t>(n * kTaskFields));
        for (std::size_t i = 0; i < n; ++i) {
          const TaskPart& t = parts[i];
          d.uint(t.task_id).uint(t.count).uint(t.payload->size()).uint(t.job).uint(t.first);
        }
        return d.written(buffer);
      });
  batch.payload.reserve(bytes);
  for (std::size_t i = 0; i < n; ++i)
    batch.payload.append(parts[i].payload->data(), parts[i].payload->size());
  return batch;
}

Batch encode_results(const std::vector<BatchedResult>& parts) {
  std::size_t bytes = 0;
  for (const BatchedResult& r : parts) bytes += r.payload.size();
  Batch batch;
  batch.header = direct_string(
      8 + Direct::kMaxLength + parts.size() * kResultFields * Direct::kMaxUint, [&](char* buffer) {
        Direct d(buffer);
        d.start(Type::Results, 1).array(static_cast<std::uint32_t>(parts.size() * kResultFields));
        for (const BatchedResult& r : parts) {
          d.uint(r.result.task_id).uint(r.result.elapsed_us).uint(r.result.items_failed);
          d.uint(r.payload.size());
        }
        return d.written(buffer);
      });
  batch.payload.reserve(bytes);
  for (const BatchedResult& r : parts) batch.payload.append(r.payload.data(), r.payload.size());
  return batch;
}

Batch encode_delivers(std::uint64_t job_id, const DeliverPart* parts, std::size_t n) {
  // The table of names, in order of first use (a batch holds a few workers' results).
  std::vector<std::string_view> names;
  std::vector<std::size_t> index(n);
  std::size_t bytes = 0;
  for (std::size_t i = 0; i < n; ++i) {
    auto it = std::find(names.begin(), names.end(), parts[i].worker);
    index[i] = static_cast<std::size_t>(it - names.begin());
    if (it == names.end()) names.push_back(parts[i].worker);
    bytes += parts[i].payload->size();
  }
  std::size_t bound =
      8 + Direct::kMaxUint + 2 * Direct::kMaxLength + n * kDeliverFields * Direct::kMaxUint;
  for (std::string_view name : names) bound += Direct::kMaxLength + name.size();
  Batch batch;
  batch.header = direct_string(bound, [&](char* buffer) {
    Direct w(buffer);
    w.start(Type::Delivers, 3).uint(job_id).array(static_cast<std::uint32_t>(n * kDeliverFields));
    for (std::size_t i = 0; i < n; ++i) {
      const DeliverPart& d = parts[i];
      w.uint(d.first).uint(d.count).uint(index[i]).uint(d.elapsed_us).uint(d.seq);
      w.uint(d.payload->size());
    }
    w.array(static_cast<std::uint32_t>(names.size()));
    for (std::string_view name : names) w.str(name);
    return w.written(buffer);
  });
  batch.payload.reserve(bytes);
  for (std::size_t i = 0; i < n; ++i)
    batch.payload.append(parts[i].payload->data(), parts[i].payload->size());
  return batch;
}

Message decode(const void* data, std::size_t size) {
  if (size > kMaxHeaderBytes) {
    throw ProtocolError("header of " + std::to_string(size) + " bytes exceeds the limit of " +
                        std::to_string(kMaxHeaderBytes));
  }
  QuickReader reader(data, size);
  msgpack::object quick;
  msgpack::object_handle handle;
  const bool read = reader.read(quick);
  if (!read) handle = unpack_untrusted(static_cast<const char*>(data), size);
  const msgpack::object& root = read ? quick : handle.get();
  if (root.type != msgpack::type::ARRAY || root.via.array.size < 2) {
    throw ProtocolError("header is not an array [version, type, ...]");
  }
  const msgpack::object& version = root.via.array.ptr[0];
  if (version.type != msgpack::type::POSITIVE_INTEGER || version.via.u64 != kVersion) {
    throw ProtocolError("unsupported protocol version (this program speaks version " +
                        std::to_string(kVersion) + ")");
  }
  const msgpack::object& type = root.via.array.ptr[1];
  if (type.type != msgpack::type::POSITIVE_INTEGER || type.via.u64 < 1 ||
      type.via.u64 > static_cast<std::uint64_t>(kLastType)) {
    throw ProtocolError("unknown message type");
  }
  const Type t = static_cast<Type>(type.via.u64);
  return decode_fields(t, Fields(root.via.array, t));
}

}  // namespace seppo::wire
