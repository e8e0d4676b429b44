#include "cli/map_command.hpp"

#include <iostream>
#include <deque>
#include <optional>

#include "cli/json.hpp"

namespace seppo::cli {
namespace {

// Holds results that arrived early until every earlier line is printed: the output streams in
// input order with memory bounded by the client's window, not by the input's length.
class OrderedPrinter {
 public:
  explicit OrderedPrinter(std::FILE* out) : out_(out) {}

  void put(std::uint64_t index, std::optional<std::string> line) {
    const std::uint64_t slot = index - next_;
    if (slot >= waiting_.size()) waiting_.resize(slot + 1);
    waiting_[slot] = Slot{true, std::move(line)};
    while (!waiting_.empty() && waiting_.front().arrived) {
      if (waiting_.front().line) {
        std::fwrite(waiting_.front().line->data(), 1, waiting_.front().line->size(), out_);
        std::fputc('\n', out_);
      }
      waiting_.pop_front();
      ++next_;
    }
  }
  // Once per message from the broker, not per line: `seppo map | head` sees lines promptly
  // without a syscall for each.
  void flush() { std::fflush(out_); }

 private:
  struct Slot {
    bool arrived = false;
    std::optional<std::string> line;  // nullopt: a failed item, reported on stderr instead
  };
  std::FILE* out_;
  std::deque<Slot> waiting_;
  std::uint64_t next_ = 0;
};

}  // namespace

int run_map(Client& client, const MapOptions& options, std::istream& in, std::FILE* out) {
  OrderedPrinter printer(out);
  std::string line;
  std::uint64_t failed = 0;
  client.run(
      options.function,
      [&](Client::Packer& packer) {
        if (!std::getline(in, line)) return false;
        pack_line(packer, line);
        return true;
      },
      [&](const Client::Item& item) {
        if (item.error != nullptr) {
          ++failed;
          std::cerr << "seppo: line " << item.index + 1 << ": " << options.function << ": "
                    << *item.error;
          if (!item.worker->empty()) std::cerr << " (on " << *item.worker << ")";
          std::cerr << "\n";
          printer.put(item.index, std::nullopt);
          if (item.last_in_message) printer.flush();
          return !options.fail_fast;
        }
        printer.put(item.index, format_result(*item.value));
        if (item.last_in_message) printer.flush();
        return true;
      });
  return failed > 100 ? 101 : static_cast<int>(failed);
}

}  // namespace seppo::cli
