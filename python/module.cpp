// seppo._seppo: the C++ client under the `seppo` Python package (python/seppo/__init__.py).
// Windows, chunking, resync and heartbeats stay in libseppo; this file only moves values
// between Python and msgpack and keeps Python responsive while waiting:
//   - the GIL is released while the engine waits for the broker, and taken back only to read
//     a batch of inputs or to turn arrived results into Python objects;
//   - signals are checked after every engine step (at most half a heartbeat), so Ctrl-C ends
//     the job: the engine's destructor tells the broker, which drops the job's queued tasks.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cmath>
#include <condition_variable>
#include <cstdint>
#include <cstring>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "python/convert.hpp"
#include "seppo/seppo.hpp"
#include "seppo/version.hpp"

namespace py = pybind11;

namespace seppo::python {
namespace {

// Inputs are read this many at a time (or up to kBatchBytes) under one taking of the GIL.
constexpr std::size_t kBatchItems = 1024;
constexpr std::size_t kBatchBytes = 1u << 20;

std::string item_name(std::uint64_t index) {
  return "item " + std::to_string(index);
}

// The Python exception classes live in seppo/_errors.py, where users can read them.
py::object error_class(const char* name) {
  return py::module_::import("seppo._errors").attr(name);
}

// "host, process 42" -> ("host", 42); anything else -> (text, None).
std::pair<py::object, py::object> host_and_pid(const std::string& worker) {
  const std::string marker = ", process ";
  const auto at = worker.rfind(marker);
  if (worker.empty()) return {py::none(), py::none()};
  if (at == std::string::npos) return {py::str(worker), py::none()};
  try {
    return {py::str(worker.substr(0, at)), py::int_(std::stol(worker.substr(at + marker.size())))};
  } catch (const std::exception&) {
    return {py::str(worker), py::none()};
  }
}

// `code`: RemoteError::code(), None in Python when empty (the function raised the error).
py::object remote_error(const std::string& function, std::uint64_t index,
                        const std::string& message, const std::string& worker,
                        std::string_view code) {
  const RemoteError cpp(function, index, message, worker);
  auto [host, pid] = host_and_pid(worker);
  py::object py_code = code.empty() ? py::object(py::none()) : py::object(py::str(code));
  return error_class("RemoteError")(cpp.what(), function, index, message, host, pid, py_code);
}

// A Python exception raised by the caller's iterable while the engine pulled inputs: kept
// here and raised again once the engine has unwound, with the GIL held.
struct InputFailed : std::exception {};

// One item's outcome: a view into the Batch that holds it.
struct Arrived {
  std::uint64_t index = 0;
  const msgpack::object* value = nullptr;  // set on success
  const std::string* error = nullptr;      // set on failure
  const std::string* worker = nullptr;     // set on failure
  std::string_view code;                   // on failure: Client::Item::code
  const detail::Block* block = nullptr;    // or several items' answer, unread (map)
};

// Outcomes copied out of the engine's buffers without the GIL, for conversion with it. Compact
// on purpose: tens of thousands arrive per step, and this copy is per-item work of every map.
class Batch {
 public:
  std::size_t size() const { return entries_.size(); }
  Arrived operator[](std::size_t i) const {
    const Entry& e = entries_[i];
    if (e.failure == kNone) return {e.index, &e.value, nullptr, nullptr, {}};
    if (e.failure == kBlock) {
      const detail::Block& b = blocks_[e.index];
      return {b.first, nullptr, nullptr, nullptr, {}, &b};
    }
    const Failure& f = failures_[e.failure];
    return {e.index, nullptr, &f.error, &f.worker, f.code};
  }

  // Emptied, keeping its vectors' room: batches are swapped back and forth, not reallocated.
  void clear() {
    entries_.clear();
    failures_.clear();
    blocks_.clear();
    zone_.reset();
  }

  // In arrival order among the items: a map raises the first failure that arrived.
  void add(const detail::Block& block) {
    blocks_.push_back(block);
    entries_.push_back({blocks_.size() - 1, {}, kBlock});
  }

  void add(const Client::Item& item) {
    if (item.error != nullptr) {
      failures_.push_back({*item.error, item.worker != nullptr ? *item.worker : std::string(),
                           std::string(item.code)});
      entries_.push_back({item.index, {}, static_cast<std::uint32_t>(failures_.size() - 1)});
      return;
    }
    const msgpack::object& v = *item.value;
    switch (v.type) {
      case msgpack::type::STR:
      case msgpack::type::BIN:
      case msgpack::type::EXT:
      case msgpack::type::ARRAY:
      case msgpack::type::MAP:
        // Points into the engine's buffer: a deep copy. Scalars hold no pointer (most results).
        if (!zone_) zone_ = std::make_unique<msgpack::zone>();
        entries_.push_back({item.index, msgpack::object(v, *zone_), kNone});
        break;
      default:
        entries_.push_back({item.index, v, kNone});
    }
  }

 private:
  static constexpr std::uint32_t kNone = UINT32_MAX;
  static constexpr std::uint32_t kBlock = UINT32_MAX - 1;
  struct Entry {
    std::uint64_t index;  // with kBlock: into blocks_
    msgpack::object value;
    std::uint32_t failure;  // into failures_, or kNone
  };
  struct Failure {
    std::string error;
    std::string worker;
    std::string code;
  };
  std::vector<Entry> entries_;
  std::vector<Failure> failures_;
  std::vector<detail::Block> blocks_;
  std::unique_ptr<msgpack::zone> zone_;  // owns the values' strings, arrays and maps
};

// Packed values gathered in a block on the stack and appended to the buffer a block at a time:
// one buffer write per few hundred values, for loops where a write per value costs more than
// the value.
class BlockWriter {
 public:
  explicit BlockWriter(msgpack::sbuffer& buffer) : buffer_(buffer), size_(buffer.size()) {}
  // The buffer's size with what the block holds.
  std::size_t size() const { return size_ + used_; }
  // Where the next value goes, with room for `most` bytes; then wrote() says how many it took.
  unsigned char* room(std::size_t most) {
    if (used_ > sizeof block_ - most) flush();
    return block_ + used_;
  }
  void wrote(std::size_t bytes) { used_ += bytes; }
  // Appends what the block holds: call before the buffer is read.
  void flush() {
    buffer_.write(reinterpret_cast<const char*>(block_), used_);
    size_ += used_;
    used_ = 0;
  }

 private:
  msgpack::sbuffer& buffer_;
  std::size_t size_;
  std::size_t used_ = 0;
  unsigned char block_[4096];
};

// The inputs: a Python iterator read in batches, converted to msgpack with the GIL held.
class Inputs {
 public:
  // A list, a tuple or a range of 64-bit ints (the usual inputs) is read by position, a range
  // without making its ints at all; anything else through its iterator.
  explicit Inputs(py::object iterable) : open_(true) {
    PyObject* p = iterable.ptr();
    if (PyList_CheckExact(p) || PyTuple_CheckExact(p)) {
      sequence_ = std::move(iterable);
    } else if (!(PyRange_Check(p) && read_range(p))) {
      iterator_ = py::iter(iterable);
    }
  }
  // Pre-converted inputs (submit): no Python is touched afterwards.
  Inputs() = default;

  // Reads everything now (submit's job runs on a thread of its own).
  void read_all() {
    while (refill(SIZE_MAX, SIZE_MAX)) {
    }
    range_ = false;  // read: next() takes them from items_
    iterator_ = py::object();
    sequence_ = py::object();
    open_ = false;
  }

  // The engine's Next: packs one input. Called with or without the GIL.
  bool next(Client::Packer& packer) {
    if (range_) {
      // A range's ints are computed, not read: no GIL, no batch to hold them.
      if (range_left_ == 0) {
        done_ = true;
        return false;
      }
      // Signed or not, msgpack-c writes a value in its shortest form: the bytes to_msgpack's
      // object would make.
      const long long v = range_next_;
      if (--range_left_ > 0) range_next_ += range_step_;
      packer.pack_int64(v);
      ++read_;
      return true;
    }
    if (pos_ == items_.size()) {
      if (done_) return false;
      py::gil_scoped_acquire gil;
      if (!refill(kBatchItems, kBatchBytes)) return false;
    }
    pack_converted(packer, items_[pos_++]);
    return true;
  }

  // The engine's Fill (map): a range's ints written in a tight loop, no call per item (the
  // per-item Next, its packer and msgpack-c's buffer write were a quarter of the calling
  // process's work per item); a list's or tuple's ints and floats likewise (fill_scalars), each
  // value of another kind converted alone in its place; any other input one next() at a time.
  std::uint32_t fill(Client::Packer& packer, std::uint32_t max_items, std::size_t max_bytes,
                     bool& ended) {
    std::uint32_t count = 0;
    if (!range_) {
      while (!ended && count < max_items && packer.buffer().size() < max_bytes) {
        if (sequence_ && pos_ == items_.size() && !done_) {
          count += fill_scalars(packer.buffer(), max_items - count, max_bytes, ended);
          if (ended || count == max_items || packer.buffer().size() >= max_bytes) break;
          // Stopped at a value of another kind: a batch of those the generic way, up to the
          // next number (which the loop above then takes).
          py::gil_scoped_acquire gil;
          refill(kBatchItems, kBatchBytes, true);
        }
        if (!next(packer)) {
          ended = true;
          break;
        }
        ++count;
      }
      return count;
    }
    BlockWriter out(packer.buffer());
    while (count < max_items && out.size() < max_bytes) {
      if (range_left_ == 0) {
        done_ = true;
        ended = true;
        break;
      }
      out.wrote(write_int(out.room(kMaxIntBytes), range_next_));
      // The value after is computed only if it exists, so within 64 bits.
      if (--range_left_ > 0) range_next_ += range_step_;
      ++count;
    }
    out.flush();
    read_ += count;
    return count;
  }

  std::optional<py::error_already_set> failure;

 private:
  // A list's or tuple's exact ints and floats written straight from its objects, under one
  // taking of the GIL per chunk: no msgpack::object per item and no second pass (the two were
  // a tenth of the calling thread's time in a 100,000-int map). Stops at the end, at the
  // limits, or at the first other value, which next() converts as any other.
  std::uint32_t fill_scalars(msgpack::sbuffer& buffer, std::uint32_t max_items,
                             std::size_t max_bytes, bool& ended) {
    py::gil_scoped_acquire gil;
    PyObject* p = sequence_.ptr();
    BlockWriter out(buffer);
    std::uint32_t count = 0;
    while (count < max_items && out.size() < max_bytes) {
      // Read anew each time, as next_object() does: the list may change between chunks.
      const Py_ssize_t length = PyList_Check(p) ? PyList_GET_SIZE(p) : PyTuple_GET_SIZE(p);
      if (at_ >= length) {
        done_ = true;
        ended = true;
        break;
      }
      PyObject* item = PyList_Check(p) ? PyList_GET_ITEM(p, at_) : PyTuple_GET_ITEM(p, at_);
      const std::size_t written = write_scalar(out.room(kMaxScalarBytes), item);
      if (written == 0) break;
      out.wrote(written);
      ++at_;
      ++read_;
      ++count;
    }
    out.flush();
    return count;
  }

  // Replaces the consumed batch by the next one; false at the end. With `until_number`, the
  // batch ends before an exact int or float of a list or tuple (fill_scalars' values).
  // Needs the GIL.
  bool refill(std::size_t max_items, std::size_t max_bytes, bool until_number = false) {
    if (done_ || !open_) return false;
    if (max_items != SIZE_MAX) {  // streaming: the previous batch was packed, drop it
      items_.clear();
      pos_ = 0;
      zones_.clear();
    }
    zones_.push_back(std::make_unique<msgpack::zone>());
    std::size_t bytes = 0;
    std::size_t count = 0;
    try {
      while (count < max_items && bytes < max_bytes) {
        if (range_) {
          if (range_left_ == 0) {
            done_ = true;
            break;
          }
          items_.push_back(range_item());
          ++read_;
          ++count;
          continue;
        }
        if (until_number && count > 0 && sequence_ && next_is_number()) break;
        PyObject* next = next_object();
        if (next == nullptr) {
          if (PyErr_Occurred()) throw py::error_already_set();
          done_ = true;
          break;
        }
        const py::object value = py::reinterpret_steal<py::object>(next);
        items_.push_back(to_msgpack(
            value, *zones_.back(), [this] { return item_name(read_); }, bytes));
        ++read_;
        ++count;
      }
    } catch (py::error_already_set& e) {
      done_ = true;
      failure.emplace(std::move(e));
      throw InputFailed();
    }
    return count > 0;
  }

  // Whether the list's or tuple's next item is one fill_scalars writes (an exact int or float).
  bool next_is_number() const {
    PyObject* p = sequence_.ptr();
    const Py_ssize_t size = PyList_Check(p) ? PyList_GET_SIZE(p) : PyTuple_GET_SIZE(p);
    if (at_ >= size) return false;
    PyObject* item = PyList_Check(p) ? PyList_GET_ITEM(p, at_) : PyTuple_GET_ITEM(p, at_);
    return PyLong_CheckExact(item) || PyFloat_CheckExact(item);
  }

  // The next item of the list, tuple or iterator (a new reference), or null at its end or on
  // an error (set). A list is read as its iterator would: by position, its length read anew.
  PyObject* next_object() {
    if (!sequence_) return PyIter_Next(iterator_.ptr());
    PyObject* p = sequence_.ptr();
    const Py_ssize_t size = PyList_Check(p) ? PyList_GET_SIZE(p) : PyTuple_GET_SIZE(p);
    if (at_ >= size) return nullptr;
    PyObject* item = PyList_Check(p) ? PyList_GET_ITEM(p, at_) : PyTuple_GET_ITEM(p, at_);
    ++at_;
    Py_INCREF(item);
    return item;
  }

  // A range whose bounds and length fit in 64 bits; false (no error set) for any other.
  bool read_range(PyObject* p) {
    long long bounds[3] = {};
    const char* names[3] = {"start", "stop", "step"};
    for (int i = 0; i < 3; ++i) {
      PyObject* v = PyObject_GetAttrString(p, names[i]);
      if (v == nullptr) {
        PyErr_Clear();
        return false;
      }
      int overflow = 0;
      bounds[i] = PyLong_AsLongLongAndOverflow(v, &overflow);
      Py_DECREF(v);
      if (overflow != 0 || (bounds[i] == -1 && PyErr_Occurred())) {
        PyErr_Clear();
        return false;
      }
    }
    const Py_ssize_t length = PyObject_Size(p);
    if (length < 0) {  // longer than sys.maxsize
      PyErr_Clear();
      return false;
    }
    range_next_ = bounds[0];
    range_step_ = bounds[2];
    range_left_ = static_cast<std::uint64_t>(length);
    range_ = true;
    return true;
  }

  // The range's next value; the one after is computed only if it exists, so within 64 bits.
  msgpack::object range_item() {
    msgpack::object out;
    const long long v = range_next_;
    if (v < 0) {
      out.type = msgpack::type::NEGATIVE_INTEGER;
      out.via.i64 = v;
    } else {
      out.type = msgpack::type::POSITIVE_INTEGER;
      out.via.u64 = static_cast<std::uint64_t>(v);
    }
    if (--range_left_ > 0) range_next_ += range_step_;
    return out;
  }

  bool open_ = false;    // some input is left to read (not pre-converted)
  py::object iterator_;  // the input's iterator, when it is not read by position
  py::object sequence_;  // a list or tuple, read by position
  Py_ssize_t at_ = 0;
  bool range_ = false;                         // the input is a range, read by arithmetic
  long long range_next_ = 0, range_step_ = 0;  // a range's next value and step
  std::uint64_t range_left_ = 0;               // and how many values are left
  std::vector<msgpack::object> items_;
  std::vector<std::unique_ptr<msgpack::zone>> zones_;
  std::size_t pos_ = 0;
  std::uint64_t read_ = 0;
  bool done_ = false;
};

// Results as the engine hands them over; filled without the GIL, drained with it. Locked only
// when the engine runs on a thread of its own (submit): a map's engine steps on the caller's
// thread, and a lock per item is a good part of what an item costs there.
class Outcomes {
 public:
  explicit Outcomes(bool threaded) : threaded_(threaded) {}

  bool accept(const Client::Item& item) {
    Lock lock(*this);
    arrived_.add(item);
    ++count_;
    return true;
  }
  bool accept(const detail::Block& block) {
    Lock lock(*this);
    arrived_.add(block);
    count_ += block.count;
    return true;
  }
  // Everything that arrived since the last call, into `into` (whose room is reused).
  void take(Batch& into) {
    Lock lock(*this);
    into.clear();
    std::swap(into, arrived_);
  }
  std::uint64_t count() {
    Lock lock(*this);
    return count_;
  }

 private:
  struct Lock {
    explicit Lock(Outcomes& o) : o_(o) {
      if (o_.threaded_) o_.mutex_.lock();
    }
    ~Lock() {
      if (o_.threaded_) o_.mutex_.unlock();
    }
    Outcomes& o_;
  };
  const bool threaded_;
  std::mutex mutex_;  // only contended by submit's thread
  Batch arrived_;
  std::uint64_t count_ = 0;
};

// A Python item's value, or the RemoteError instance that stands for it.
struct Outcome {
  py::object value;
  bool failed = false;
};

Outcome to_outcome(const std::string& function, const Arrived& a) {
  if (a.error) return {remote_error(function, a.index, *a.error, *a.worker, a.code), true};
  return {from_msgpack(*a.value), false};
}

// One job on a Client, stepped from Python.
class Run {
 public:
  // Two batches' room, kept by a client from one map to the next: tens of thousands of
  // entries each, which fresh vectors would page in again for every call.
  struct Room {
    Batch a, b;
  };

  // With `blocks` (map), a chunk's answer may arrive whole and unread (Arrived::block).
  Run(Client& client, std::string function, py::object iterable, bool hold, Room* room = nullptr,
      bool blocks = false)
      : function_(std::move(function)), inputs_(std::move(iterable)), room_(room) {
    auto next = [this](Client::Packer& p) { return inputs_.next(p); };
    auto sink = [this](const Client::Item& item) { return outcomes_.accept(item); };
    if (blocks) {
      engine_.emplace(
          client, function_,
          detail::Engine::Fill(
              [this](Client::Packer& p, std::uint32_t max_items, std::size_t max_bytes,
                     bool& ended) { return inputs_.fill(p, max_items, max_bytes, ended); }),
          sink, [this](const detail::Block& block) { return outcomes_.accept(block); }, hold);
    } else {
      engine_.emplace(client, function_, next, sink, hold);
    }
    // Once the engine stands (its constructor throws when the client runs a job already).
    if (room_) {
      std::swap(batch_, room_->a);
      outcomes_.take(room_->b);  // the outcomes take its room, it gets theirs (empty)
    }
  }
  Run(const Run&) = delete;
  Run& operator=(const Run&) = delete;

  const std::string& function() const { return function_; }
  bool finished() const { return finished_; }

  // One engine step without the GIL, then a check for Ctrl-C. Returns what arrived. Raises
  // (and ends the job) on the engine's errors, the iterable's, and KeyboardInterrupt.
  const Batch& step() {
    if (!finished_) {
      try {
        bool more = false;
        {
          py::gil_scoped_release release;
          more = engine_->step();
        }
        finished_ = !more;
      } catch (const InputFailed&) {
        end();
        throw std::move(*inputs_.failure);
      } catch (...) {
        end();
        throw;
      }
      if (PyErr_CheckSignals() != 0) {
        end();  // the engine's destructor sends DONE: the broker drops the job
        throw py::error_already_set();
      }
    }
    outcomes_.take(batch_);
    return batch_;
  }

  // The consumer took item `index` (streams hold their window until then).
  void consumed(std::uint64_t index, std::uint32_t count = 1) {
    if (!engine_) return;
    try {
      if (count == 1) {
        engine_->consumed(index);
      } else {
        engine_->consumed(index, count);
      }
    } catch (const InputFailed&) {
      end();
      throw std::move(*inputs_.failure);
    } catch (...) {
      end();
      throw;
    }
  }

  void end() {
    finished_ = true;
    if (engine_) {
      py::gil_scoped_release release;  // DONE may wait briefly for the socket
      engine_.reset();
    }
  }

  ~Run() {
    if (engine_) {
      py::gil_scoped_release release;
      engine_.reset();
    }
    if (room_) {
      batch_.clear();
      std::swap(batch_, room_->a);
      outcomes_.take(room_->b);
      room_->b.clear();
    }
  }

 private:
  std::string function_;
  Inputs inputs_;
  Outcomes outcomes_{false};  // the engine steps on the caller's thread
  Batch batch_;               // what the last step() returned
  Room* room_;
  bool finished_ = false;
  std::optional<detail::Engine> engine_;  // last: goes first
};

// Per-call options (Pool's chunksize=, a per-item timeout=): chunk_size in items (0: adaptive),
// item_timeout_s in seconds (0: none).
struct CallOptions {
  std::optional<std::size_t> chunk_size;
  std::optional<double> item_timeout_s;
  bool any() const { return chunk_size || item_timeout_s; }
  ClientOptions applied(ClientOptions options) const {
    if (chunk_size) options.chunk_size = *chunk_size;
    if (item_timeout_s) {
      options.item_timeout =
          std::chrono::milliseconds(static_cast<long>(std::ceil(*item_timeout_s * 1000)));
    }
    return options;
  }
};

// Python-facing client: seppo.Client in python/seppo/__init__.py wraps it.
class PyClient {
 public:
  explicit PyClient(Client client) : client_(std::move(client)) {}

  // A sibling connection with the call's options, or nothing when there are none.
  std::optional<Client> with(const CallOptions& call) const {
    if (!call.any()) return std::nullopt;
    return client_.sibling(call.applied(client_.options()));
  }

  // Every result in input order; fail_fast raises the first failed item's RemoteError,
  // otherwise failed items are RemoteError instances in the list.
  // chunk_size (items per chunk, 0: adaptive) and item_timeout_s (per-item time limit, 0:
  // none) when given run the map on a sibling connection with those options.
  py::list map(const std::string& function, py::object iterable, bool fail_fast,
               std::optional<std::size_t> chunk_size, std::optional<double> item_timeout_s) {
    std::optional<Client> other = with({chunk_size, item_timeout_s});
    // Results go straight into the list when the input's length is known (most calls): no
    // second array of as many references to fill, page in and copy.
    const std::size_t expected =
        py::hasattr(iterable, "__len__") ? static_cast<std::size_t>(py::len(iterable)) : 0;
    py::list out(expected);
    // Out of the garbage collector's sight while it has empty slots: Python code runs meanwhile
    // (the iterable, __del__, other threads) and gc.get_objects() would hand it out half made.
    PyObject_GC_UnTrack(out.ptr());
    std::vector<py::object> beyond;  // items past a length that was wrong, or not known
    std::size_t count = 0;
    // Held windows, released item by item (a chunk answered whole: at once) as results are
    // converted: submissions keep going while this thread turns results into Python objects,
    // so workers are not left idle.
    Run run(other ? *other : client_, function, std::move(iterable), true, &room_, true);
    auto place = [&](const Arrived& a) {
      if (a.error && fail_fast) {
        run.end();
        PyErr_SetObject(error_class("RemoteError").ptr(),
                        remote_error(function, a.index, *a.error, *a.worker, a.code).ptr());
        throw py::error_already_set();
      }
      count = std::max<std::size_t>(count, a.index + 1);
      py::object value = to_outcome(function, a).value;
      if (a.index < expected) {
        // Each index arrives once (the engine drops duplicates): the slot is still empty.
        PyList_SET_ITEM(out.ptr(), static_cast<Py_ssize_t>(a.index), value.release().ptr());
      } else {
        const std::size_t at = a.index - expected;
        if (beyond.size() <= at) beyond.resize(at + 1);
        beyond[at] = std::move(value);
      }
    };
    PyObject** slots = reinterpret_cast<PyListObject*>(out.ptr())->ob_item;
    while (!run.finished()) {
      const Batch& batch = run.step();
      for (std::size_t i = 0; i < batch.size(); ++i) {
        const Arrived a = batch[i];
        if (const detail::Block* b = a.block) {
          run.consumed(b->first, b->count);
          // The usual answer, all scalars, decoded straight into its slots; else item by item.
          if (b->first + b->count <= expected &&
              scalar_entries_to_python(b->data, b->size, b->count, slots + b->first)) {
            count = std::max<std::size_t>(count, b->first + b->count);
          } else {
            detail::Engine::each_item(*b, [&](const Client::Item& item) {
              // Releases nothing (the block's place went above): keeps heartbeats going while
              // a long answer of large values converts, as the per-item path's consumed() did.
              run.consumed(item.index, 0);
              place({item.index, item.value, item.error, item.worker, item.code});
            });
          }
          continue;
        }
        run.consumed(a.index);
        place(a);
      }
    }
    if (count < expected &&  // the iterable gave fewer items than its length said
        PyList_SetSlice(out.ptr(), static_cast<Py_ssize_t>(count),
                        static_cast<Py_ssize_t>(expected), nullptr) != 0) {
      throw py::error_already_set();
    }
    PyObject_GC_Track(out.ptr());  // every slot filled
    for (py::object& value : beyond) out.append(std::move(value));
    return out;
  }

  py::dict status(double timeout_s) {
    msgpack::object_handle h;
    {
      py::gil_scoped_release release;
      h = client_.status(std::chrono::milliseconds(static_cast<long>(timeout_s * 1000)));
    }
    return from_msgpack(h.get());
  }

  Client& client() { return client_; }
  std::string endpoint() const { return client_.endpoint(); }

 private:
  Client client_;
  Run::Room room_;  // map's batches, kept for the next call
};

// imap / imap_unordered: a Python iterator over a Run with held windows.
class PyStream {
 public:
  PyStream(PyClient& client, std::string function, py::object iterable, bool ordered, bool results,
           const CallOptions& call)
      : own_(client.with(call)),
        run_(std::make_unique<Run>(own_ ? *own_ : client.client(), std::move(function),
                                   std::move(iterable), true)),
        ordered_(ordered),
        results_(results) {}

  // The next result; raises StopIteration at the end, RemoteError for a failed item (unless
  // results were asked for), after which the next call goes on with the following items.
  py::object next() {
    if (!run_) throw py::stop_iteration();
    while (true) {
      if (auto out = take_ready()) return *out;
      if (run_->finished()) {
        run_.reset();
        throw py::stop_iteration();
      }
      const Batch& batch = run_->step();
      for (std::size_t i = 0; i < batch.size(); ++i) {
        const Arrived a = batch[i];
        Outcome o = to_outcome(run_->function(), a);
        if (ordered_) {
          const std::uint64_t offset = a.index - base_;
          if (slots_.size() <= offset) slots_.resize(offset + 1);
          slots_[offset] = std::move(o);
        } else {
          ready_.push_back({a.index, std::move(o)});
        }
      }
    }
  }

  void close() {
    if (run_) run_.reset();
  }

 private:
  std::optional<py::object> take_ready() {
    std::uint64_t index = 0;
    Outcome o;
    if (ordered_) {
      if (slots_.empty() || !slots_.front().value) return std::nullopt;
      o = std::move(slots_.front());
      slots_.pop_front();
      index = base_++;
    } else {
      if (ready_.empty()) return std::nullopt;
      index = ready_.front().first;
      o = std::move(ready_.front().second);
      ready_.pop_front();
    }
    run_->consumed(index);
    if (o.failed && !results_) {
      // Raised at its position; the job goes on, so iterating further yields the items after
      // it, as multiprocessing.Pool's imap does. Dropping the iterator cancels the job.
      PyErr_SetObject(o.value.get_type().ptr(), o.value.ptr());
      throw py::error_already_set();
    }
    if (!ordered_ && results_) return py::make_tuple(index, o.value);
    return o.value;
  }

  std::optional<Client> own_;  // the connection with the call's options, if any
  std::unique_ptr<Run> run_;
  bool ordered_;
  bool results_;
  std::uint64_t base_ = 0;
  std::deque<Outcome> slots_;
  std::deque<std::pair<std::uint64_t, Outcome>> ready_;
};

// submit: the map runs on a thread of its own (libseppo's JobThread) over inputs read now.
class PyJob {
 public:
  PyJob(PyClient& client, std::string function, py::object iterable, const CallOptions& call)
      : function_(std::move(function)),
        inputs_(std::make_unique<Inputs>(std::move(iterable))),
        outcomes_(std::make_unique<Outcomes>(true)) {
    try {
      inputs_->read_all();
    } catch (const InputFailed&) {
      throw std::move(*inputs_->failure);
    }
    Inputs* in = inputs_.get();
    Outcomes* out = outcomes_.get();
    // sibling(): a local cluster's client loads the function's module first, as map does.
    thread_ = std::make_unique<detail::JobThread>(
        client.client().sibling(call.applied(client.client().options())), function_,
        [in](Client::Packer& p) { return in->next(p); },
        [out](const Client::Item& item) { return out->accept(item); });
  }
  ~PyJob() {
    py::gil_scoped_release release;
    thread_.reset();
  }

  bool done(double timeout_s) {
    py::gil_scoped_release release;
    return thread_->wait_for(std::chrono::milliseconds(static_cast<long>(timeout_s * 1000)));
  }

  void cancel() {
    py::gil_scoped_release release;
    thread_->cancel();
  }

  std::uint64_t completed() { return outcomes_->count(); }

  // Waits (Ctrl-C cancels the job), then every result in order; fail_fast raises the
  // lowest-indexed failure.
  py::list result(bool fail_fast, double timeout_s) {
    const auto deadline = std::chrono::steady_clock::now() +
                          std::chrono::milliseconds(static_cast<long>(timeout_s * 1000));
    while (true) {
      bool ended = false;
      {
        py::gil_scoped_release release;
        ended = thread_->wait_for(std::chrono::milliseconds(100));
      }
      if (ended) break;
      if (PyErr_CheckSignals() != 0) {
        cancel();
        throw py::error_already_set();
      }
      if (timeout_s >= 0 && std::chrono::steady_clock::now() >= deadline) {
        PyErr_SetString(PyExc_TimeoutError, "the seppo job has not finished yet");
        throw py::error_already_set();
      }
    }
    thread_->rethrow_failure();
    Batch batch;
    outcomes_->take(batch);
    for (std::size_t i = 0; i < batch.size(); ++i) {
      const Arrived a = batch[i];
      if (slots_.size() <= a.index) slots_.resize(a.index + 1);
      slots_[a.index] = to_outcome(function_, a);
    }
    if (fail_fast) {
      for (const Outcome& o : slots_) {
        if (o.failed) {
          PyErr_SetObject(o.value.get_type().ptr(), o.value.ptr());
          throw py::error_already_set();
        }
      }
    }
    py::list out(slots_.size());
    for (std::size_t i = 0; i < slots_.size(); ++i) out[i] = slots_[i].value;
    return out;
  }

 private:
  std::string function_;
  std::unique_ptr<Inputs> inputs_;
  std::unique_ptr<Outcomes> outcomes_;
  std::vector<Outcome> slots_;
  std::unique_ptr<detail::JobThread> thread_;  // last: stops first
};

// seppo.LocalCluster: the C++ cluster, which close() stops before Python lets go of it (its
// clients then throw ConnectionError: they hold it weakly).
class PyLocalCluster {
 public:
  PyLocalCluster(unsigned workers, LocalClusterOptions options) {
    cluster_.emplace(workers, std::move(options));
  }
  LocalCluster& get() {
    if (!cluster_) throw ConnectionError("this seppo.LocalCluster was closed");
    return *cluster_;
  }
  void close() {
    py::gil_scoped_release release;  // its workers get stop_grace to finish their tasks
    cluster_.reset();
  }

 private:
  std::optional<LocalCluster> cluster_;
};

ClientOptions make_options(const std::optional<std::string>& secret,
                           const std::optional<std::string>& server, bool insecure,
                           std::optional<double> timeout_s, std::optional<double> worker_wait_s) {
  ClientOptions options = ClientOptions::from_env();
  if (secret) options.curve_secret_key_file = *secret;
  if (server) options.curve_server_key_file = *server;
  options.insecure = insecure;
  if (timeout_s) options.timeout = std::chrono::milliseconds(static_cast<long>(*timeout_s * 1000));
  if (worker_wait_s) {
    options.worker_wait = std::chrono::milliseconds(static_cast<long>(*worker_wait_s * 1000));
  }
  return options;
}

void raise_as(const char* name, const std::string& message) {
  PyErr_SetObject(error_class(name).ptr(), py::str(message).ptr());
}

}  // namespace
}  // namespace seppo::python

PYBIND11_MODULE(_seppo, m) {
  using namespace seppo::python;
  m.doc() = "seppo's C++ client, bound for the seppo package; use `import seppo`.";
  m.attr("__version__") = seppo::version;
  // The wire's value conversion alone, for tests (tests/python/test_values.py): what a value
  // becomes as msgpack bytes, and what msgpack bytes (from a peer) become here.
  m.def(
      "_pack",
      [](py::handle value) {
        msgpack::zone zone;
        std::size_t bytes = 0;
        const msgpack::object object = to_msgpack(
            value, zone, [] { return std::string("value"); }, bytes);
        msgpack::sbuffer buffer;
        msgpack::pack(buffer, object);
        return py::bytes(buffer.data(), buffer.size());
      },
      py::arg("value"));
  m.def(
      "_unpack",
      [](const py::bytes& data) {
        const std::string_view view = data;
        const msgpack::object_handle handle = seppo::unpack_untrusted(view.data(), view.size());
        return from_msgpack(handle.get());
      },
      py::arg("data"));

  py::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const seppo::RemoteError& e) {
      PyErr_SetObject(
          error_class("RemoteError").ptr(),
          remote_error(e.function(), e.index(), e.remote_message(), e.worker(), e.code()).ptr());
    } catch (const seppo::UnknownFunctionError& e) {
      PyErr_SetObject(error_class("UnknownFunctionError").ptr(),
                      py::make_tuple(e.what(), e.function()).ptr());
    } catch (const seppo::RefusedError& e) {
      PyErr_SetObject(error_class("RefusedError").ptr(), py::make_tuple(e.what(), e.code()).ptr());
    } catch (const seppo::ConnectionError& e) {
      raise_as("ConnectionError", e.what());
    } catch (const seppo::TypeError& e) {
      raise_as("TypeError", e.what());
    } catch (const seppo::CancelledError& e) {
      raise_as("CancelledError", e.what());
    } catch (const seppo::Error& e) {
      raise_as("Error", e.what());
    }
  });

  py::class_<PyClient>(m, "Client")
      .def(py::init([](std::optional<std::string> endpoint, std::optional<std::string> secret,
                       std::optional<std::string> server, bool insecure,
                       std::optional<double> timeout, std::optional<double> worker_wait) {
             const bool defaults = !secret && !server && !insecure && !timeout && !worker_wait;
             if (!endpoint && defaults) return PyClient(seppo::default_client());
             return PyClient(
                 seppo::Client(endpoint ? *endpoint : seppo::default_endpoint(),
                               make_options(secret, server, insecure, timeout, worker_wait)));
           }),
           py::arg("endpoint") = py::none(), py::arg("curve_secret_key_file") = py::none(),
           py::arg("curve_server_key_file") = py::none(), py::arg("insecure") = false,
           py::arg("timeout") = py::none(), py::arg("worker_wait") = py::none())
      .def("map", &PyClient::map, py::arg("function"), py::arg("iterable"), py::arg("fail_fast"),
           py::arg("chunk_size") = py::none(), py::arg("item_timeout") = py::none())
      .def("status", &PyClient::status, py::arg("timeout") = 5.0)
      .def_property_readonly("endpoint", &PyClient::endpoint)
      .def(
          "stream",
          [](PyClient& c, const std::string& function, py::object iterable, bool ordered,
             bool results, std::optional<std::size_t> chunk_size,
             std::optional<double> item_timeout) {
            return std::make_unique<PyStream>(c, function, std::move(iterable), ordered, results,
                                              CallOptions{chunk_size, item_timeout});
          },
          py::arg("function"), py::arg("iterable"), py::arg("ordered"), py::arg("results"),
          py::arg("chunk_size") = py::none(), py::arg("item_timeout") = py::none(),
          py::keep_alive<0, 1>())
      .def(
          "submit",
          [](PyClient& c, const std::string& function, py::object iterable,
             std::optional<std::size_t> chunk_size, std::optional<double> item_timeout) {
            return std::make_unique<PyJob>(c, function, std::move(iterable),
                                           CallOptions{chunk_size, item_timeout});
          },
          py::arg("function"), py::arg("iterable"), py::arg("chunk_size") = py::none(),
          py::arg("item_timeout") = py::none());

  py::class_<PyStream>(m, "Stream")
      .def("__iter__", [](py::object self) { return self; })
      .def("__next__", &PyStream::next)
      .def("close", &PyStream::close);

  py::class_<PyJob>(m, "Job")
      .def("result", &PyJob::result, py::arg("fail_fast") = true, py::arg("timeout") = -1.0)
      .def("done", [](PyJob& j) { return j.done(0); })
      .def("wait", &PyJob::done, py::arg("timeout"))
      .def("cancel", &PyJob::cancel)
      .def_property_readonly("completed", &PyJob::completed);

  py::class_<PyLocalCluster>(m, "LocalCluster")
      .def(py::init([](unsigned workers, std::vector<std::string> modules,
                       std::optional<std::string> module_path) {
             seppo::LocalClusterOptions options = seppo::LocalClusterOptions::from_env();
             options.modules = std::move(modules);
             if (module_path) options.module_path = *module_path;
             py::gil_scoped_release release;
             return std::make_unique<PyLocalCluster>(workers, std::move(options));
           }),
           py::arg("workers") = 0, py::arg("modules") = std::vector<std::string>{},
           py::arg("module_path") = py::none())
      .def(
          "client", [](PyLocalCluster& c) { return PyClient(c.get().client()); },
          py::keep_alive<0, 1>())
      .def("close", &PyLocalCluster::close)
      .def_property_readonly("endpoint", [](PyLocalCluster& c) { return c.get().endpoint(); })
      .def_property_readonly("workers", [](PyLocalCluster& c) { return c.get().workers(); })
      .def("worker_pids", [](PyLocalCluster& c) { return c.get().worker_pids(); });
}
