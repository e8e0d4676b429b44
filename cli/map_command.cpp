#include "cli/map_command.hpp"

#include <iostream>
#include <map>
#include <optional>

#include "cli/json.hpp"

namespace seppo::cli {
namespace {

// Holds results that arrived early until every earlier line is printed: the output streams in
// input order with memory bounded by the client's window, not by the input's length.
class OrderedPrinter {
 public:
  explicit OrderedPrinter(std::FILE* out) : out_(out) {}

  void put(std::uint64_t index, std::string line) { put_optional(index, std::move(line)); }
  void skip(std::uint64_t index) { put_optional(index, std::nullopt); }

 private:
  void put_optional(std::uint64_t index, std::optional<std::string> line) {
    waiting_.emplace(index, std::move(line));
    put_pending();
  }
  void put_pending() {
    bool wrote = false;
    for (auto it = waiting_.begin(); it != waiting_.end() && it->first == next_;
         it = waiting_.erase(it), ++next_) {
      if (it->second.has_value()) {
        std::fwrite(it->second->data(), 1, it->second->size(), out_);
        std::fputc('\n', out_);
        wrote = true;
      }
    }
    if (wrote) std::fflush(out_);
  }

  std::FILE* out_;
  std::map<std::uint64_t, std::optional<std::string>> waiting_;
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
        pack_json(packer, parse_line(line));
        return true;
      },
      [&](const Client::Item& item) {
        if (item.error != nullptr) {
          ++failed;
          std::cerr << "seppo: line " << item.index + 1 << ": " << options.function << ": "
                    << *item.error;
          if (!item.worker->empty()) std::cerr << " (on " << *item.worker << ")";
          std::cerr << "\n";
          printer.skip(item.index);
          return !options.fail_fast;
        }
        printer.put(item.index, format_result(*item.value));
        return true;
      });
  return failed > 100 ? 101 : static_cast<int>(failed);
}

}  // namespace seppo::cli
