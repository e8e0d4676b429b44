#include "cli/output.hpp"

#include <cerrno>

#include "cli/json.hpp"

namespace seppo::cli {

std::string ResultPrinter::format(std::uint64_t line, const msgpack::object& value) const {
  if (format_.json) {
    if (!format_.index) return to_json(value).dump();
    return nlohmann::json{{"line", line}, {"result", to_json(value)}}.dump();
  }
  if (!format_.index) return format_result(value);
  return std::to_string(line) + "\t" + format_result(value);
}

void ResultPrinter::write(const std::string& text) {
  if (write_error_ != 0) return;
  if (text.empty() && format_.skip_empty) return;
  if (std::fwrite(text.data(), 1, text.size(), out_) != text.size() ||
      std::fputc('\n', out_) == EOF) {
    write_error_ = errno != 0 ? errno : EIO;
  }
}

void ResultPrinter::put(std::uint64_t index, std::uint64_t line, const msgpack::object* value) {
  if (!format_.ordered) {
    if (value != nullptr) write(format(line, *value));
    released_(index);
    return;
  }
  const std::uint64_t slot = index - next_;
  if (slot >= waiting_.size()) waiting_.resize(slot + 1);
  // Outer optional: arrived yet; inner: the line, or nothing for a failed item.
  waiting_[slot].emplace(value != nullptr ? std::optional<std::string>(format(line, *value))
                                          : std::nullopt);
  while (!waiting_.empty() && waiting_.front().has_value()) {
    if (*waiting_.front()) write(**waiting_.front());
    waiting_.pop_front();
    released_(next_++);
  }
}

bool ResultPrinter::flush() {
  if (write_error_ == 0 && std::fflush(out_) != 0) write_error_ = errno != 0 ? errno : EIO;
  return write_error_ == 0;
}

}  // namespace seppo::cli
