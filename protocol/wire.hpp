// The seppo wire protocol, version 1: the one place where frames are encoded and decoded.
// docs/protocol.md is the specification; this file must match it field for field.
//
// Every message is one or two ZeroMQ frames (after the routing id the ROUTER adds):
//   frame 1: header, a msgpack array [version, type, fields...]
//   frame 2: payload, opaque msgpack bytes, only for TASK, RESULT, SUBMIT, DELIVER, STATUS,
//            TASKS, RESULTS, DELIVERS and SUBMITS.
#pragma once

#include <cstdint>
#include <cstring>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

#include "protocol/bytes.hpp"
#include "protocol/codes.hpp"

namespace seppo::wire {

inline constexpr std::uint32_t kVersion = 1;
// Headers are small; anything larger is refused before decoding.
inline constexpr std::size_t kMaxHeaderBytes = 64 * 1024;

enum class Type : std::uint8_t {
  Ready = 1,           // worker -> broker: announce functions and capacity
  Task = 2,            // broker -> worker: run a chunk (payload: array of arguments)
  Result = 3,          // worker -> broker: a chunk's outcome (payload: array of [status, value])
  Submit = 4,          // client -> broker: a chunk of a job (payload: array of arguments)
  Deliver = 5,         // broker -> client: a chunk's outcome, as the worker sent it
  Failed = 6,          // broker -> client: a chunk (or whole job) that will not run, and why
  Done = 7,            // client -> broker: the job is finished or cancelled; forget it
  Heartbeat = 8,       // worker/client -> broker: I am alive (and, for a client, my job's state)
  Alive = 9,           // broker -> worker/client: answer to READY and HEARTBEAT
  Resync = 10,         // broker -> client: resubmit every chunk of the job not yet delivered
  Bye = 11,            // any direction: the sender is leaving
  Error = 12,          // broker -> any: the last message was refused, and why
  StatusRequest = 13,  // anyone -> broker: describe yourself
  Status = 14,         // broker -> requester: payload is a msgpack map (see docs/protocol.md)
  Credit = 15,         // worker -> broker: from now on, hold this many of my tasks outstanding
  Cancel = 16,         // broker -> worker: these tasks are no longer wanted; abandon a running one
  Return = 17,         // worker -> broker: these tasks were not started; run them elsewhere
  Tasks = 18,          // broker -> worker ("batch"): several tasks of one function, one message
  Results = 19,        // worker -> broker ("batch"): several tasks' outcomes, one message
  Delivers = 20,       // broker -> client ("batch"): several chunks' outcomes of a job, one message
  Submits = 21,        // client -> broker ("submits"): several chunks of a job, one message
};

struct Ready {
  static constexpr Type kType = Type::Ready;
  std::string name;  // "host, process PID": how errors and status name this worker
  std::string host;
  std::int64_t pid = 0;
  std::uint32_t capacity = 1;  // tasks the broker may have outstanding at this worker
  std::vector<std::string> functions;
  // Optional trailing field (§4.1): the worker's build version, shown in STATUS; empty when not
  // sent (an older worker).
  std::string version{};
  // Optional trailing fields (§4.1, §13.1): the protocol features this worker speaks
  // (kFeatureAdopt...), and the tasks it kept from a broker it lost (detached, §9.1), flat:
  // [task_id, job, first, count] per task. Encoded only when set (version then too, maybe empty).
  std::vector<std::string> features{};
  std::vector<std::uint64_t> held{};
};
struct Task {
  static constexpr Type kType = Type::Task;
  std::uint64_t task_id = 0;
  std::string function;
  std::uint32_t count = 0;
  // Optional trailing fields (§4.2), sent only to a worker that announced kFeatureAdopt: the
  // task's identity that outlives the broker: its job's tag (job_tag(), never 0) and its first
  // item. 0: not sent.
  std::uint64_t job = 0;
  std::uint64_t first = 0;
};
struct Result {
  static constexpr Type kType = Type::Result;
  std::uint64_t task_id = 0;
  std::uint64_t elapsed_us = 0;  // time the worker spent running the chunk
  // Optional trailing field (§4.3, absent when 0): how many of the chunk's entries are not
  // successes, so the broker can count failed items without reading payloads. 0 from an older
  // worker.
  std::uint32_t items_failed = 0;
};
struct Submit {
  static constexpr Type kType = Type::Submit;
  std::uint64_t job_id = 0;
  std::string function;
  std::uint64_t first = 0;  // index of the chunk's first item within the job
  std::uint32_t count = 0;
  std::uint32_t wait_ms = 0;  // how long to wait for a worker providing the function
  // Optional trailing field (absent when 0 and no features follow): the caller's time limit
  // per item, 0 for none.
  std::uint32_t item_timeout_ms = 0;
  // Optional trailing field (§4.4, §13.1): the protocol features this client speaks
  // (kFeatureBatch: it takes DELIVERS). Encoded only when set.
  std::vector<std::string> features{};
};
struct Deliver {
  static constexpr Type kType = Type::Deliver;
  std::uint64_t job_id = 0;
  std::uint64_t first = 0;
  std::uint32_t count = 0;
  std::string worker;
  std::uint64_t elapsed_us = 0;
  std::uint64_t seq = 0;  // per job, increasing: lets a heartbeat say what has arrived
};
struct Failed {
  static constexpr Type kType = Type::Failed;
  std::uint64_t job_id = 0;
  std::uint64_t first = 0;
  std::uint32_t count = 0;
  // Empty for a name this program does not know (a later peer may send others): a failure of
  // unspecified kind. On the wire: to_wire(Code), "unknown" when empty.
  std::optional<Code> code;
  std::string message;
  std::uint64_t seq = 0;
};
struct Done {
  static constexpr Type kType = Type::Done;
  std::uint64_t job_id = 0;
};
struct Heartbeat {
  static constexpr Type kType = Type::Heartbeat;
  std::uint64_t job_id = 0;         // a client's running job, 0 for none and for workers
  std::uint64_t seen = 0;           // seq of the last DELIVER or FAILED of that job received
  std::vector<std::uint64_t> open;  // firsts of the chunks still awaited
  // Optional trailing field (§4.8), from a worker only: its detached tasks, as READY's `held`.
  std::vector<std::uint64_t> held{};
};
// What a worker or client accepts from a broker before an ALIVE says otherwise (§4.9): the
// broker's default --max-message-bytes, plus kFrameAllowance for a header. libzmq's
// ZMQ_MAXMSGSIZE drops the connection of a broker that sends a frame over it.
inline constexpr std::uint64_t kDefaultMaxMessageBytes = 256ull << 20;
inline constexpr std::uint64_t kFrameAllowance = 64ull << 10;

struct Alive {
  static constexpr Type kType = Type::Alive;
  std::uint64_t instance = 0;  // random per broker start: a change means the broker restarted
  std::uint32_t heartbeat_ms = 0;
  std::uint32_t liveness = 0;
  // Optional trailing field (§4.9): the largest message the broker accepts; 0 when not sent
  // (an older broker). Peers refuse to send anything larger instead of being disconnected.
  std::uint64_t max_message_bytes = 0;
  // Optional trailing field (§4.9, §13.1): the protocol features this broker speaks; a peer
  // uses a feature only once both announced it. Encoded only when set.
  std::vector<std::string> features{};
};
struct Resync {
  static constexpr Type kType = Type::Resync;
  std::uint64_t job_id = 0;
  // Optional trailing field (§4.10): the broker's instance, as in ALIVE; 0 when not sent (an
  // older broker). A client that resubmits on RESYNC takes it as seen, so that the next ALIVE
  // of the same instance does not make it resubmit again.
  std::uint64_t instance = 0;
};
struct Bye {
  static constexpr Type kType = Type::Bye;
  std::string reason;
};
struct Error {
  static constexpr Type kType = Type::Error;
  std::optional<Code> code;  // as in Failed
  std::string message;
};
struct StatusRequest {
  static constexpr Type kType = Type::StatusRequest;
};
struct Status {
  static constexpr Type kType = Type::Status;
};
struct Credit {
  static constexpr Type kType = Type::Credit;
  std::uint32_t capacity = 1;
};
struct Cancel {
  static constexpr Type kType = Type::Cancel;
  std::vector<std::uint64_t> task_ids;
};
struct Return {
  static constexpr Type kType = Type::Return;
  std::vector<std::uint64_t> task_ids;
};

// Batched framing (feature "batch", §4.17, §4.18): one header lists several tasks, flat, a
// fixed number of uint64 per task, and the payload frame holds their payloads one after the
// other, each `size` bytes (the sizes add up to the frame's). At most kMaxBatch tasks.
inline constexpr std::size_t kMaxBatch = 64;
// What the C++ programs put in one batched payload at most; a larger task goes alone.
inline constexpr std::size_t kMaxBatchBytes = 64 * 1024;
inline constexpr std::size_t kTaskFields = 5;    // task_id, count, size, job, first
inline constexpr std::size_t kResultFields = 4;  // task_id, elapsed_us, items_failed, size
// first, count, worker (an index into `workers`), elapsed_us, seq, size
inline constexpr std::size_t kDeliverFields = 6;
// The largest DELIVERS header (§4.19) whose worker names are at most `max_name` bytes (under
// 64 KiB): kMaxBatch parts of kDeliverFields uint64 (9 bytes each at most) and as many names
// (3 bytes of str16 header each), and fewer than 32 bytes around them. A client drops a header
// over kMaxHeaderBytes, so the broker checks the names it may send against this (core.cpp).
constexpr std::size_t max_delivers_header(std::size_t max_name) {
  return 32 + kMaxBatch * (kDeliverFields * 9 + max_name + 3);
}
struct Tasks {
  static constexpr Type kType = Type::Tasks;
  std::string function;
  std::vector<std::uint64_t> tasks;  // kTaskFields per task; job 0: no identity sent
};
struct Results {
  static constexpr Type kType = Type::Results;
  std::vector<std::uint64_t> results;  // kResultFields per task
};
struct Delivers {
  static constexpr Type kType = Type::Delivers;
  std::uint64_t job_id = 0;
  std::vector<std::uint64_t> delivers;  // kDeliverFields per chunk
  std::vector<std::string> workers;     // the names the chunks' `worker` fields index, 1 to 64
};
// first, count, size per chunk of a SUBMITS (§4.20)
inline constexpr std::size_t kSubmitFields = 3;
// The items one chunk may hold (§4.4, §12): a SUBMITS with a count outside 1..this is refused
// whole when decoded (a SUBMIT's is refused by the broker, FAILED bad_request).
inline constexpr std::uint64_t kMaxChunkItems = 1u << 20;
struct Submits {
  static constexpr Type kType = Type::Submits;
  std::uint64_t job_id = 0;
  std::string function;
  std::uint32_t wait_ms = 0;
  std::uint32_t item_timeout_ms = 0;
  std::vector<std::string> features;  // as SUBMIT's
  std::vector<std::uint64_t> chunks;  // kSubmitFields per chunk
};

using Message = std::variant<Ready, Task, Result, Submit, Deliver, Failed, Done, Heartbeat, Alive,
                             Resync, Bye, Error, StatusRequest, Status, Credit, Cancel, Return,
                             Tasks, Results, Delivers, Submits>;

// Each alternative sits at index kType - 1, and the last is the highest type: so type_of, the
// decoder's switch and the variant cannot drift apart without this failing to compile.
namespace detail {
template <std::size_t... I>
constexpr bool types_in_order(std::index_sequence<I...>) {
  return ((std::variant_alternative_t<I, Message>::kType == static_cast<Type>(I + 1)) && ...);
}
}  // namespace detail
static_assert(detail::types_in_order(std::make_index_sequence<std::variant_size_v<Message>>()));
// The highest type number: the decoder refuses any above it.
inline constexpr Type kLastType =
    std::variant_alternative_t<std::variant_size_v<Message> - 1, Message>::kType;

// Protocol features negotiated within version 1 (§13.1): a peer names those it speaks in READY
// (worker) and ALIVE (broker); a feature is used only when both sides named it.
// "adopt": tasks carry an identity that outlives the broker (TASK's job and first), a worker
// keeps running its tasks while no broker is there, lists them (`held`) to the next one, and
// that broker adopts them when their client resubmits (§9.1).
inline constexpr std::string_view kFeatureAdopt = "adopt";
// "batch": the broker may send TASKS instead of several TASKs, the worker RESULTS instead of
// several RESULTs, the broker DELIVERS instead of several DELIVERs (§4.17-§4.19); each only to
// a peer that named it (a client names it in SUBMIT).
inline constexpr std::string_view kFeatureBatch = "batch";
// "submits": the client may send SUBMITS instead of several SUBMITs (§4.20), once an ALIVE of
// its connection named it; the broker names it, a client does not need to.
inline constexpr std::string_view kFeatureSubmits = "submits";

// One part of a batched message, its payload a slice of the message's frame (no copy).
struct BatchedTask {
  Task task;
  Bytes payload;
};
struct BatchedResult {
  Result result;
  Bytes payload;
};
struct BatchedDeliver {
  Deliver deliver;
  Bytes payload;
};
// A TASKS or RESULTS message as its single messages, payloads sharing the frame's buffer.
// Throws seppo::ProtocolError when the sizes do not add up to the payload's.
std::vector<BatchedTask> split(const Tasks& tasks, const Bytes& payload);
std::vector<BatchedResult> split(const Results& results, const Bytes& payload);
std::vector<BatchedDeliver> split(const Delivers& delivers, const Bytes& payload);
// A SUBMITS as its SUBMITs, each with the message's job, function, waits and features.
struct BatchedSubmit {
  Submit submit;
  Bytes payload;
};
std::vector<BatchedSubmit> split(const Submits& submits, const Bytes& payload);
// What split() checks of a SUBMITS, without making its parts (the broker reads the chunks from
// `chunks` itself, issue 28): throws seppo::ProtocolError as split() does.
void check_split(const Submits& submits, const Bytes& payload);
// One task of a TASKS being built (the broker's hot path: views, no copies of names).
struct TaskPart {
  std::uint64_t task_id = 0;
  std::uint32_t count = 0;
  std::uint64_t job = 0, first = 0;
  const Bytes* payload = nullptr;
};
// The header and the payload frame of a TASKS, or of a RESULTS from its parts.
struct Batch {
  std::string header;
  std::string payload;
};
Batch encode_tasks(std::string_view function, const TaskPart* parts, std::size_t n);
Batch encode_results(const std::vector<BatchedResult>& parts);
// One chunk's results in a DELIVERS being built (the broker's hot path: views, no copies).
struct DeliverPart {
  std::uint64_t first = 0;
  std::uint32_t count = 0;
  std::string_view worker;
  std::uint64_t elapsed_us = 0, seq = 0;
  const Bytes* payload = nullptr;
};
// A DELIVERS of job_id's chunks, the worker names gathered into its table in order of first use.
Batch encode_delivers(std::uint64_t job_id, const DeliverPart* parts, std::size_t n);
// One chunk of a SUBMITS being built (the client's: views of the chunks it keeps).
struct SubmitPart {
  std::uint64_t first = 0;
  std::uint32_t count = 0;
  const Bytes* payload = nullptr;
};
// A SUBMITS of job_id's chunks, `submit` giving its other fields (its first and count unused).
Batch encode_submits(const Submit& submit, const SubmitPart* parts, std::size_t n);
bool has_feature(const std::vector<std::string>& features, std::string_view name);

// A task a worker kept from a broker it lost (READY's and HEARTBEAT's `held`, 4 numbers each).
struct HeldTask {
  std::uint64_t task_id = 0;
  std::uint64_t job = 0;    // TASK's job tag
  std::uint64_t first = 0;  // TASK's first item
  std::uint32_t count = 0;
};
// The flat array to records; a trailing incomplete group or a count over 2^32 is ignored.
std::vector<HeldTask> held_tasks(const std::vector<std::uint64_t>& flat);
void append_held(std::vector<std::uint64_t>& flat, const HeldTask& task);

// The tag of a client's job in a TASK's identity: a hash of the client's routing id and its
// job id, the same in every broker instance (not a secret, and not the id: STATUS shows a
// hash too). Never 0.
std::uint64_t job_tag(std::string_view client, std::uint64_t job_id);

// The wire name of a decoded code: "unknown" for one this program does not know.
constexpr std::string_view code_name(const std::optional<Code>& code) {
  return code ? to_wire(*code) : std::string_view("unknown");
}

// True for the types that carry a payload frame.
bool has_payload(Type type);
Type type_of(const Message& message);
const char* type_name(Type type);

// Encodes the header frame of a message.
std::string encode(const Message& message);

// An encoded header frame, kept in place when it is short: the TASK and DELIVER headers the
// broker sends for every task (35 to 60 bytes) then cost no allocation (issue 16). Longer
// ones are kept on the heap. Converts to std::string for code that keeps strings.
class Header {
 public:
  Header() = default;
  Header(std::string text) {  // NOLINT: implicit, encode() gives strings
    if (text.size() <= kInPlace) {
      assign(text.data(), text.size());
    } else {
      heap_ = std::move(text);
      on_heap_ = true;
    }
  }
  Header(const char* data, std::size_t size) {
    if (size <= kInPlace) {
      assign(data, size);
    } else {
      heap_.assign(data, size);
      on_heap_ = true;
    }
  }
  const char* data() const { return on_heap_ ? heap_.data() : in_place_; }
  std::size_t size() const { return on_heap_ ? heap_.size() : size_; }
  std::string_view view() const { return {data(), size()}; }
  operator std::string() const { return std::string(view()); }  // NOLINT: implicit
  friend bool operator==(const Header& a, std::string_view b) { return a.view() == b; }

 private:
  static constexpr std::size_t kInPlace = 64;
  void assign(const char* data, std::size_t size) {
    std::memcpy(in_place_, data, size);
    size_ = size;
  }
  char in_place_[kInPlace];
  std::size_t size_ = 0;
  bool on_heap_ = false;
  std::string heap_;
};

// The broker's hot path: the same bytes as encode(Task{...}) and encode(Deliver{...}), from
// views, so that no string is copied into a message just to be encoded (issue 16).
Header encode_task(std::uint64_t task_id, std::string_view function, std::uint32_t count,
                   std::uint64_t job = 0, std::uint64_t first = 0);
// The function a header from encode_task names, as a view into it (no decoding: the broker
// merges TASKs into TASKS by function, B58). Empty for anything else.
std::string_view task_function(const Header& task);
Header encode_deliver(std::uint64_t job_id, std::uint64_t first, std::uint32_t count,
                      std::string_view worker, std::uint64_t elapsed_us, std::uint64_t seq);
// The worker a header from encode_deliver names, as a view into it (the broker merges DELIVERs
// into DELIVERS, B59). Empty for anything else.
std::string_view deliver_worker(const Header& deliver);

// Decodes a header frame. Throws seppo::ProtocolError naming what is wrong: wrong version,
// unknown type, missing or mistyped field. Never trusts declared lengths.
Message decode(const void* data, std::size_t size);

}  // namespace seppo::wire
