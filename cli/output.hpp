// The output side of `seppo map`: one line per result, in input order or as they complete.
#pragma once

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>

#include "seppo/msgpack.hpp"

namespace seppo::cli {

struct OutputFormat {
  bool ordered = true;
  bool json = false;        // every result as JSON (strings quoted), one per line: JSON Lines
  bool index = false;       // prefix each result with its input's line number
  bool skip_empty = false;  // an empty string prints nothing (a named command with no output)
};

// Bytes appended without std::string's out-of-line append per piece: lines are a few bytes.
class OutputBuffer {
 public:
  // Room for `n` more bytes, to be written at the pointer and then commit()ed.
  char* reserve(std::size_t n) {
    if (capacity_ - size_ < n) grow(n);
    return data_.get() + size_;
  }
  void commit(std::size_t n) { size_ += n; }
  void append(const char* bytes, std::size_t n) {
    if (n == 0) return;
    std::memcpy(reserve(n), bytes, n);
    size_ += n;
  }
  void push_back(char c) {
    *reserve(1) = c;
    ++size_;
  }
  void truncate(std::size_t size) { size_ = size; }
  const char* data() const { return data_.get(); }
  std::size_t size() const { return size_; }
  bool empty() const { return size_ == 0; }

 private:
  void grow(std::size_t n);

  std::unique_ptr<char[]> data_;
  std::size_t size_ = 0, capacity_ = 0;
};

class ResultPrinter {
 public:
  // `released` hears of each item once it is written (or dropped, failed): only then may the
  // client submit more in its place, so results held back for order are bounded too.
  ResultPrinter(std::FILE* out, OutputFormat format,
                std::function<void(std::uint64_t index)> released)
      : out_(out), format_(format), released_(std::move(released)) {}
  // Hands what is formatted to the FILE, as stdio's own buffer would have held it: a job that
  // ends with an error still prints the results it got.
  ~ResultPrinter() { spill(); }
  ResultPrinter(const ResultPrinter&) = delete;
  ResultPrinter& operator=(const ResultPrinter&) = delete;

  // Item `index` (0-based, in submission order) from input line `line`; `value` is null for a
  // failed item, which prints nothing but lets later lines through.
  void put(std::uint64_t index, std::uint64_t line, const msgpack::object* value);
  // Once per message from the broker, not per line: `seppo map | head` sees lines promptly
  // without a syscall for each. Returns false once the output cannot be written.
  bool flush();
  // The errno of the first failed write (EPIPE when the reader went away), or 0.
  int write_error() const { return write_error_; }
  // Called before each write to the FILE, holding what it returns until the bytes are flushed:
  // the progress line is cleared first (Progress::before_output).
  void before_write(std::function<std::unique_lock<std::mutex>()> hook) {
    before_write_ = std::move(hook);
  }

 private:
  // Appends the result's line, without its newline, to pending_.
  void format(std::uint64_t line, const msgpack::object& value);
  // Ends the line that starts at `from` in pending_ (or drops it: an empty one with skip_empty).
  void end_line(std::size_t from);
  void write(const std::string& text);
  // Hands pending_ to the FILE once it is large: its memory stays bounded between flushes.
  void spill();

  std::FILE* out_;
  OutputFormat format_;
  std::function<void(std::uint64_t)> released_;
  // Ordered output holds results that arrived early until every earlier line is printed: memory
  // is bounded by the client's window, not by the input's length.
  std::deque<std::optional<std::optional<std::string>>> waiting_;
  std::uint64_t next_ = 0;
  // Lines formatted and not yet handed to the FILE: one fwrite per message (or 64 KiB) rather
  // than two stdio calls per line.
  OutputBuffer pending_;
  int write_error_ = 0;
  std::function<std::unique_lock<std::mutex>()> before_write_;
};

}  // namespace seppo::cli
