#include "cli/output.hpp"

#include <cerrno>
#include <charconv>

#include "cli/json.hpp"

namespace seppo::cli {
namespace {

constexpr std::size_t kSpillBytes = 64 << 10;

template <class Integer>
void append_number(std::string& out, Integer value) {
  char text[24];
  const auto [end, ec] = std::to_chars(text, text + sizeof text, value);
  out.append(text, end);
}

}  // namespace

void ResultPrinter::format(std::string& out, std::uint64_t line,
                           const msgpack::object& value) const {
  if (format_.json) {
    if (!format_.index) {
      out += to_json(value).dump();
    } else {
      out += nlohmann::json{{"line", line}, {"result", to_json(value)}}.dump();
    }
    return;
  }
  if (format_.index) {
    append_number(out, line);
    out += '\t';
  }
  // format_result's text, written in place: most results are numbers or strings.
  switch (value.type) {
    case msgpack::type::STR:
      out.append(value.via.str.ptr, value.via.str.size);
      return;
    case msgpack::type::POSITIVE_INTEGER:
      append_number(out, value.via.u64);
      return;
    case msgpack::type::NEGATIVE_INTEGER:
      append_number(out, value.via.i64);
      return;
    default:
      out += format_result(value);
      return;
  }
}

void ResultPrinter::end_line(std::size_t from) {
  if (pending_.size() == from && format_.skip_empty) return;
  pending_ += '\n';
}

void ResultPrinter::write(const std::string& text) {
  if (write_error_ != 0) return;
  const std::size_t from = pending_.size();
  pending_ += text;
  end_line(from);
}

void ResultPrinter::spill() {
  if (pending_.empty()) return;
  if (write_error_ == 0 &&
      std::fwrite(pending_.data(), 1, pending_.size(), out_) != pending_.size()) {
    write_error_ = errno != 0 ? errno : EIO;
  }
  pending_.clear();
}

void ResultPrinter::put(std::uint64_t index, std::uint64_t line, const msgpack::object* value) {
  const std::uint64_t slot = index - next_;
  if (!format_.ordered || (slot == 0 && waiting_.empty())) {
    // Unordered, or the next line in order: formatted straight into the output.
    if (value != nullptr && write_error_ == 0) {
      const std::size_t from = pending_.size();
      format(pending_, line, *value);
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
  if (value != nullptr) format(text.emplace(), line, *value);
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
