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

LineInput::LineInput(const std::string& path, InputFormat format) : format_(format) {
  OpenedInput opened = open_input(path);
  owned_ = std::move(opened.owned);
  in_ = opened.in;
  regular_fd_ = opened.regular_fd;
  if (format_ == InputFormat::CommandRequest) cwd_ = current_folder();
}

LineInput::~LineInput() {
  if (owned_ && regular_fd_ >= 0) ::close(regular_fd_);
}

bool LineInput::next(msgpack::packer<msgpack::sbuffer>& packer) {
  while (std::getline(*in_, line_)) {
    ++line_number_;
    switch (format_) {
      case InputFormat::Auto:
        pack_line(packer, line_);
        return true;
      case InputFormat::Raw:
        packer.pack(line_);
        return true;
      case InputFormat::CommandRequest:
        wire::pack_command_request(packer, {line_}, line_number_, false, false, cwd_);
        return true;
      case InputFormat::Json: {
        const nlohmann::json value = nlohmann::json::parse(line_, nullptr, false);
        if (!value.is_discarded()) {
          pack_json(packer, value);
          return true;
        }
        skipped_.push_back(line_number_);
        rejected_.push_back(
            {line_number_, "not a JSON value (--json): " +
                               (line_.size() > 60 ? line_.substr(0, 60) + "..." : line_)});
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
