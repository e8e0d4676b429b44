#include "cli/input.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>

#include <seppo/error.hpp>

#include "cli/json.hpp"
#include "protocol/command_record.hpp"

namespace seppo::cli {
namespace {

// What one read() asks for; the buffer doubles for a longer line.
constexpr std::size_t kReadSize = 64 << 10;

bool is_regular(int fd) {
  struct stat st {};
  return ::fstat(fd, &st) == 0 && S_ISREG(st.st_mode);
}

}  // namespace

OpenedInput open_input(const std::string& path, bool want_regular_fd) {
  OpenedInput opened;
  if (path.empty() || path == "-") {
    opened.in = &std::cin;
    if (want_regular_fd && is_regular(STDIN_FILENO)) opened.regular_fd = STDIN_FILENO;
    return opened;
  }
  auto file = std::make_unique<std::ifstream>(path, std::ios::binary);
  if (!*file) throw Error("cannot read " + path + ": " + std::strerror(errno));
  if (want_regular_fd) {
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd >= 0 && is_regular(fd)) {
      opened.regular_fd = fd;
    } else if (fd >= 0) {
      ::close(fd);
    }
  }
  opened.in = file.get();
  opened.owned = std::move(file);
  return opened;
}

std::string current_folder() {
  std::error_code error;
  const std::filesystem::path here = std::filesystem::current_path(error);
  return error ? std::string() : here.string();
}

LineInput::LineInput(const std::string& path, InputFormat format)
    : name_(path.empty() || path == "-" ? "standard input" : path),
      buffer_(kReadSize),
      format_(format) {
  if (path.empty() || path == "-") {
    fd_ = STDIN_FILENO;
  } else {
    fd_ = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd_ < 0) throw Error("cannot read " + path + ": " + std::strerror(errno));
    owns_fd_ = true;
  }
  // pread leaves the offset alone, so the progress count can share the reader's descriptor.
  if (is_regular(fd_)) regular_fd_ = fd_;
  if (format_ == InputFormat::CommandRequest) cwd_ = current_folder();
}

LineInput::~LineInput() {
  if (owns_fd_) ::close(fd_);
}

bool LineInput::read_line(std::string_view& line) {
  while (true) {
    const char* from = buffer_.data() + begin_;
    if (const void* nl = std::memchr(from + scanned_, '\n', end_ - begin_ - scanned_)) {
      const std::size_t length = static_cast<std::size_t>(static_cast<const char*>(nl) - from);
      line = std::string_view(from, length);
      begin_ += length + 1;
      scanned_ = 0;
      return true;
    }
    scanned_ = end_ - begin_;
    if (eof_) {
      if (begin_ == end_) return false;
      line = std::string_view(from, end_ - begin_);  // the last line, without its newline
      begin_ = end_;
      scanned_ = 0;
      return true;
    }
    if (begin_ > 0) {  // the partial line to the front, so the buffer grows only for long lines
      std::memmove(buffer_.data(), from, end_ - begin_);
      end_ -= begin_;
      begin_ = 0;
    }
    if (end_ == buffer_.size()) buffer_.resize(buffer_.size() * 2);
    const ssize_t n = ::read(fd_, buffer_.data() + end_, buffer_.size() - end_);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) throw Error("cannot read " + name_ + ": " + std::strerror(errno));
    if (n == 0) eof_ = true;
    end_ += static_cast<std::size_t>(n);
  }
}

bool LineInput::next(msgpack::packer<msgpack::sbuffer>& packer) {
  std::string_view line;
  while (read_line(line)) {
    ++line_number_;
    switch (format_) {
      case InputFormat::Auto:
        pack_line(packer, line);
        return true;
      case InputFormat::Raw:
        packer.pack_str(static_cast<std::uint32_t>(line.size()));
        packer.pack_str_body(line.data(), static_cast<std::uint32_t>(line.size()));
        return true;
      case InputFormat::CommandRequest:
        wire::pack_command_request(packer, {std::string(line)}, line_number_, false, false, cwd_);
        return true;
      case InputFormat::Json: {
        const nlohmann::json value = nlohmann::json::parse(line, nullptr, false);
        if (!value.is_discarded()) {
          pack_json(packer, value);
          return true;
        }
        skipped_.push_back(line_number_);
        rejected_.push_back(
            {line_number_,
             "not a JSON value (--json): " +
                 (line.size() > 60 ? std::string(line.substr(0, 60)) + "..." : std::string(line))});
        break;
      }
    }
  }
  return false;
}

std::uint64_t LineInput::line_of(std::uint64_t index) const {
  // Item `index` is line index + 1 + k, where k counts the skipped lines before it; skipped_[i]
  // - i grows with i, so k is found by binary search.
  std::uint64_t lo = 0, hi = skipped_.size();
  while (lo < hi) {
    const std::uint64_t mid = (lo + hi) / 2;
    if (skipped_[mid] - mid <= index + 1) {
      lo = mid + 1;
    } else {
      hi = mid;
    }
  }
  return index + 1 + lo;
}

std::vector<LineInput::Rejected> LineInput::take_rejected() {
  std::vector<Rejected> out;
  out.swap(rejected_);
  return out;
}

std::optional<std::uint64_t> count_lines(int fd, const std::atomic<bool>& stop) {
  std::vector<char> buffer(1 << 20);
  std::uint64_t lines = 0;
  off_t offset = 0;
  char last = '\n';
  while (!stop) {
    const ssize_t n = ::pread(fd, buffer.data(), buffer.size(), offset);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return std::nullopt;
    if (n == 0) break;
    lines += static_cast<std::uint64_t>(std::count(buffer.data(), buffer.data() + n, '\n'));
    last = buffer[static_cast<std::size_t>(n) - 1];
    offset += n;
  }
  if (stop) return std::nullopt;
  return lines + (last != '\n' ? 1 : 0);
}

}  // namespace seppo::cli
