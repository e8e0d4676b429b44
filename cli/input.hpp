// The input side of `seppo map`: lines from stdin or a file, each packed as an argument.
#pragma once

#include <atomic>
#include <cstdint>
#include <istream>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "seppo/msgpack.hpp"

namespace seppo::cli {

enum class InputFormat {
  Auto,  // a line that parses as JSON is that value, any other line is a string
  Raw,   // every line is a string, as is
  Json,  // every line must be JSON (JSON Lines); one that is not fails as an item
  // A worker's named command: every line is text, sent as a request item with its job number
  // for {#} and this folder ({"args": [line], "seq": N, "cwd": ...}, docs/protocol.md §5.2).
  CommandRequest,
};

// An input file (or standard input for "" and "-") opened for reading, with a second descriptor
// when it is a regular file, so its lines can be counted for a progress total without
// disturbing the reader (std::ifstream does not expose its own).
struct OpenedInput {
  std::unique_ptr<std::istream> owned;  // null for standard input
  std::istream* in = nullptr;
  int regular_fd = -1;  // the caller closes it when it is not STDIN_FILENO
};
// Throws seppo::Error naming the file when it cannot be read.
OpenedInput open_input(const std::string& path, bool want_regular_fd = true);

class LineInput {
 public:
  // `path` empty or "-": standard input.
  LineInput(const std::string& path, InputFormat format);
  ~LineInput();
  LineInput(const LineInput&) = delete;
  LineInput& operator=(const LineInput&) = delete;

  // Reads the next usable line and packs it; returns false at the end of the input. A line that
  // cannot be packed (--json and not JSON) is skipped: it gets no index, and rejected() says why.
  // Throws seppo::Error when the input cannot be read.
  bool next(msgpack::packer<msgpack::sbuffer>& packer);

  // The 1-based line number of the item with this 0-based index.
  std::uint64_t line_of(std::uint64_t index) const;

  struct Rejected {
    std::uint64_t line;
    std::string why;
  };
  // Lines skipped since the last call, to be reported and counted as failures.
  std::vector<Rejected> take_rejected();

  // The file descriptor when the input is a regular file, so its lines can be counted for a
  // progress total without disturbing the reader; -1 otherwise.
  int regular_file_fd() const { return regular_fd_; }

 private:
  // The next line, without its newline, as a view into buffer_ valid until the next call;
  // false at the end. Lines as std::getline splits them, without a string or a stream per line.
  bool read_line(std::string_view& line);

  std::string name_;  // for error messages
  int fd_ = -1;
  bool owns_fd_ = false;
  std::vector<char> buffer_;
  std::size_t begin_ = 0, end_ = 0;  // the unread bytes in buffer_
  std::size_t scanned_ = 0;          // bytes from begin_ known to hold no newline
  bool eof_ = false;
  InputFormat format_;
  std::string cwd_;  // for CommandRequest
  std::uint64_t line_number_ = 0;
  // Line numbers of rejected lines, ascending: they map item indexes back to line numbers.
  std::vector<std::uint64_t> skipped_;
  std::vector<Rejected> rejected_;
  int regular_fd_ = -1;
};

// The absolute current folder, sent with a named command's items (seppo-worker
// --client-folders runs them there); empty when it cannot be known.
std::string current_folder();

// Counts the lines of a regular file with pread, leaving its offset alone: the progress total.
// Gives up (nullopt) once `stop` is set: a huge file must not hold up the end of the command.
std::optional<std::uint64_t> count_lines(int fd, const std::atomic<bool>& stop);

}  // namespace seppo::cli
