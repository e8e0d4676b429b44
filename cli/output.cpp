#include "cli/output.hpp"

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "cli/json.hpp"

namespace seppo::cli {
namespace {

constexpr std::size_t kSpillBytes = 64 << 10;

constexpr char kPairs[] =
    "00010203040506070809101112131415161718192021222324252627282930313233343536373839"
    "40414243444546474849505152535455565758596061626364656667686970717273747576777879"
    "8081828384858687888990919293949596979899";

// The decimal digits of `v`, written backwards ending at `end`; returns where they start.
// Eight digits at a time in 32-bit arithmetic, two per table lookup.
char* digits_before(char* end, std::uint64_t v) {
  while (v >= 100000000) {
    auto low = static_cast<std::uint32_t>(v % 100000000);
    v /= 100000000;
    for (int i = 0; i < 4; ++i) {
      end -= 2;
      std::memcpy(end, kPairs + 2 * (low % 100), 2);
      low /= 100;
    }
  }
  auto w = static_cast<std::uint32_t>(v);
  while (w >= 100) {
    end -= 2;
    std::memcpy(end, kPairs + 2 * (w % 100), 2);
    w /= 100;
  }
  if (w >= 10) {
    end -= 2;
    std::memcpy(end, kPairs + 2 * w, 2);
  } else {
    *--end = static_cast<char>('0' + w);
  }
  return end;
}

void append_unsigned(OutputBuffer& out, std::uint64_t v) {
  char text[20];
  char* const end = text + sizeof text;
  const char* begin = digits_before(end, v);
  out.append(begin, static_cast<std::size_t>(end - begin));
}

void append_signed(OutputBuffer& out, std::int64_t v) {
  if (v < 0) {
    out.push_back('-');
    append_unsigned(out, 0 - static_cast<std::uint64_t>(v));
  } else {
    append_unsigned(out, static_cast<std::uint64_t>(v));
  }
}

void append(OutputBuffer& out, const std::string& text) {
  out.append(text.data(), text.size());
}

}  // namespace

void OutputBuffer::grow(std::size_t n) {
  const std::size_t capacity = std::max(capacity_ * 2, std::max<std::size_t>(size_ + n, 4096));
  auto bigger = std::make_unique<char[]>(capacity);
  if (size_ > 0) std::memcpy(bigger.get(), data_.get(), size_);
  data_ = std::move(bigger);
  capacity_ = capacity;
}

void ResultPrinter::format(std::uint64_t line, const msgpack::object& value) {
  OutputBuffer& out = pending_;
  if (format_.json) {
    if (!format_.index) {
      append(out, to_json(value).dump());
    } else {
      append(out, nlohmann::json{{"line", line}, {"result", to_json(value)}}.dump());
    }
    return;
  }
  if (format_.index) {
    append_unsigned(out, line);
    out.push_back('\t');
  }
  // format_result's text, written in place: most results are numbers or strings.
  switch (value.type) {
    case msgpack::type::STR:
      out.append(value.via.str.ptr, value.via.str.size);
      return;
    case msgpack::type::POSITIVE_INTEGER:
      append_unsigned(out, value.via.u64);
      return;
    case msgpack::type::NEGATIVE_INTEGER:
      append_signed(out, value.via.i64);
      return;
    default:
      append(out, format_result(value));
      return;
  }
}

void ResultPrinter::end_line(std::size_t from) {
  if (pending_.size() == from && format_.skip_empty) return;
  pending_.push_back('\n');
}

void ResultPrinter::write(const std::string& text) {
  if (write_error_ != 0) return;
  const std::size_t from = pending_.size();
  pending_.append(text.data(), text.size());
  end_line(from);
}

void ResultPrinter::spill() {
  if (pending_.empty()) return;
  std::unique_lock<std::mutex> guard;
  if (before_write_) guard = before_write_();
  if (write_error_ == 0 &&
      std::fwrite(pending_.data(), 1, pending_.size(), out_) != pending_.size()) {
    write_error_ = errno != 0 ? errno : EIO;
  }
  if (guard.owns_lock()) std::fflush(out_);
  pending_.truncate(0);
}

void ResultPrinter::put(std::uint64_t index, std::uint64_t line, const msgpack::object* value) {
  const std::uint64_t slot = index - next_;
  if (!format_.ordered || (slot == 0 && waiting_.empty())) {
    // Unordered, or the next line in order: formatted straight into the output.
    if (value != nullptr && write_error_ == 0) {
      const std::size_t from = pending_.size();
      format(line, *value);
      end_line(from);
    }
    if (format_.ordered) ++next_;
    released_(index);
    if (pending_.size() >= kSpillBytes) spill();
    return;
  }
  if (slot >= waiting_.size()) waiting_.resize(slot + 1);
  // Outer optional: arrived yet; inner: the line, or nothing for a failed item.
  std::optional<std::string> text;
  if (value != nullptr) {
    // Formatted where in-order lines are, then moved out to wait.
    const std::size_t from = pending_.size();
    format(line, *value);
    text.emplace(pending_.data() + from, pending_.size() - from);
    pending_.truncate(from);
  }
  waiting_[slot].emplace(std::move(text));
  while (!waiting_.empty() && waiting_.front().has_value()) {
    if (*waiting_.front()) write(**waiting_.front());
    waiting_.pop_front();
    released_(next_++);
  }
  if (pending_.size() >= kSpillBytes) spill();
}

bool ResultPrinter::flush() {
  spill();
  if (write_error_ == 0 && std::fflush(out_) != 0) write_error_ = errno != 0 ? errno : EIO;
  return write_error_ == 0;
}

}  // namespace seppo::cli
