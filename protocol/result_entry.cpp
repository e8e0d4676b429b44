#include "protocol/result_entry.hpp"

#include <exception>

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
  bool visit_negative_integer(std::int64_t) { return tag(false); }
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

}  // namespace

std::string all_failed(std::uint32_t count, const std::string& message) {
  msgpack::sbuffer buffer;
  msgpack::packer<msgpack::sbuffer> packer(buffer);
  packer.pack_array(count);
  for (std::uint32_t i = 0; i < count; ++i) entry::pack_error(packer, message);
  return std::string(buffer.data(), buffer.size());
}

std::uint32_t count_failed(const char* data, std::size_t size, std::uint32_t count) {
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
