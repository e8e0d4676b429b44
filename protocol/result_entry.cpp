#include "protocol/result_entry.hpp"

#include <exception>

#include "protocol/msgpack_reader.hpp"

namespace seppo::wire {
namespace {

// Walks the payload once; `depth` counts arrays and maps entered, so the outer array is depth 1
// and an entry's own elements are at depth 2.
struct FailedCounter : msgpack::null_visitor {
  std::uint32_t depth = 0;
  std::uint32_t entries = 0;  // the outer array's declared size
  std::uint32_t element = 0;  // index within the current entry
  bool two = false;           // the current entry has two elements
  bool ok = false;            // the current entry is [0, value]
  std::uint32_t failed = 0;

  bool tag(bool zero) {
    if (depth == 2 && element == 0) ok = two && zero;
    return true;
  }
  bool visit_nil() { return tag(false); }
  bool visit_boolean(bool) { return tag(false); }
  bool visit_positive_integer(std::uint64_t v) { return tag(v == entry::kValue); }
  // msgpack-c calls this for every signed encoding (0xd0..0xd3), zero and positive values
  // included: a tag 0 packed as int8 is a success, as entry::decode reads it.
  bool visit_negative_integer(std::int64_t v) {
    return tag(v == static_cast<std::int64_t>(entry::kValue));
  }
  bool visit_float32(float) { return tag(false); }
  bool visit_float64(double) { return tag(false); }
  bool visit_str(const char*, std::uint32_t) { return tag(false); }
  bool visit_bin(const char*, std::uint32_t) { return tag(false); }
  bool visit_ext(const char*, std::uint32_t) { return tag(false); }
  bool start_array(std::uint32_t n) {
    tag(false);
    ++depth;
    if (depth == 1) entries = n;
    if (depth == 2) {
      two = n == 2;
      element = 0;
    }
    return true;
  }
  bool start_array_item() {
    if (depth == 1) ok = false;
    return true;
  }
  bool end_array_item() {
    if (depth == 1 && !ok) ++failed;
    if (depth == 2) ++element;
    return true;
  }
  bool end_array() {
    --depth;
    return true;
  }
  bool start_map(std::uint32_t) {
    tag(false);
    ++depth;
    return true;
  }
  bool end_map() {
    --depth;
    return true;
  }
};

// The usual payload, every entry a success with a scalar value ([0, scalar]), read with the fast
// reader: true when it is one. Anything else (a failure, a list, a map...) is for the full walk.
// msgpack-c's parser, even with a visitor that keeps nothing, costs about 200 instructions per
// entry: as much as a trivial function's whole run on the worker.
bool all_scalar_successes(const char* data, std::size_t size, std::uint32_t count) {
  MsgpackReader in(data, size);
  std::uint32_t n = 0;
  if (!in.array_header(n) || n != count || !in.has(std::size_t{n} * 3)) return false;
  for (std::uint32_t i = 0; i < n; ++i) {
    unsigned char array = 0, success = 0, first = 0;
    // [0, value]: a fixarray of two whose first element is the positive fixint 0.
    if (!in.byte(array) || array != 0x92 || !in.byte(success) || success != 0x00) return false;
    if (!in.byte(first) || !in.skip_scalar(first)) return false;
  }
  return in.at_end();
}

}  // namespace

std::string all_failed(std::uint32_t count, const std::string& message) {
  msgpack::sbuffer buffer;
  msgpack::packer<msgpack::sbuffer> packer(buffer);
  packer.pack_array(count);
  for (std::uint32_t i = 0; i < count; ++i) entry::pack_error(packer, message);
  return std::string(buffer.data(), buffer.size());
}

std::uint32_t count_failed(const char* data, std::size_t size, std::uint32_t count) {
  if (all_scalar_successes(data, size, count)) return 0;
  FailedCounter counter;
  std::size_t offset = 0;
  bool parsed = false;
  try {
    parsed = msgpack::parse(data, size, offset, counter);
  } catch (const std::exception&) {  // msgpack's own limits (depth, sizes)
    parsed = false;
  }
  if (!parsed || offset != size || counter.entries != count) return count;
  return counter.failed;
}

}  // namespace seppo::wire
