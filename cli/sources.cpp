#include "cli/sources.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iostream>
#include <random>

#include <seppo/error.hpp>

#include "cli/input.hpp"

namespace seppo::cli {
std::vector<char*> split_sources(int argc, char** argv, std::vector<Source>& sources) {
  std::vector<char*> head;
  int i = 0;
  for (; i < argc; ++i) {
    const std::string_view a = argv[i];
    if (a == ":::" || a == "::::" || a == ":::+" || a == "::::+") break;
    head.push_back(argv[i]);
  }
  for (; i < argc; ++i) {
    const std::string_view a = argv[i];
    if (a == ":::" || a == ":::+") {
      sources.push_back(Source{Source::Kind::Values, {}, {}, a == ":::+" && !sources.empty()});
    } else if (a == "::::" || a == "::::+") {
      // The next word is the path.
      sources.push_back(Source{Source::Kind::File, {}, "\x01", a == "::::+" && !sources.empty()});
    } else if (sources.back().kind == Source::Kind::File && sources.back().path == "\x01") {
      sources.back().path = argv[i];
    } else if (sources.back().kind == Source::Kind::File) {
      sources.push_back(Source{Source::Kind::File, {}, argv[i]});  // `:::: a b`: two files
    } else {
      sources.back().values.emplace_back(argv[i]);
    }
  }
  for (const Source& s : sources) {
    if (s.kind == Source::Kind::File && s.path == "\x01") throw Error(":::: needs a file name");
  }
  return head;
}

std::size_t parse_block_size(const std::string& text) {
  const auto fail = [&text]() -> std::size_t {
    throw Error("--block " + text +
                ": expected a size in bytes, with K M G T P (powers of 1024) or k m g t p "
                "(powers of 1000): 1M, 512k, 65536");
  };
  std::size_t digits = 0;
  while (digits < text.size() &&
         (std::isdigit(static_cast<unsigned char>(text[digits])) != 0 || text[digits] == '.')) {
    ++digits;
  }
  if (digits == 0 || digits > 15 || std::count(text.begin(), text.begin() + digits, '.') > 1) {
    return fail();
  }
  double size = std::stod(text.substr(0, digits));
  std::string unit = text.substr(digits);
  if (unit.size() == 2 && (unit[1] == 'i' || unit[1] == 'I')) {
    unit = std::string(1, static_cast<char>(std::toupper(static_cast<unsigned char>(unit[0]))));
  }
  if (unit.size() > 1) return fail();
  if (!unit.empty()) {
    const std::string binary = "KMGTP", decimal = "kmgtp";
    const auto b = binary.find(unit[0]), d = decimal.find(unit[0]);
    if (b == std::string::npos && d == std::string::npos) return fail();
    const double base = b != std::string::npos ? 1024.0 : 1000.0;
    for (std::size_t k = 0; k <= (b != std::string::npos ? b : d); ++k) size *= base;
  }
  // parallel: at most 2G-1 (it warns and uses that).
  size = std::min(size, 2147483647.0);
  if (size < 1) return fail();
  return static_cast<std::size_t>(size);
}

std::string unescape_record_separator(const std::string& text) {
  std::string out;
  for (std::size_t i = 0; i < text.size(); ++i) {
    const std::string_view escapes = "0rnt'\"\\";
    if (text[i] == '\\' && i + 1 < text.size() && escapes.find(text[i + 1]) != std::string::npos) {
      const char c = text[++i];
      out += c == '0' ? '\0' : c == 'r' ? '\r' : c == 'n' ? '\n' : c == 't' ? '\t' : c;
    } else {
      out += text[i];
    }
  }
  return out;
}

JobSource::JobSource(SourcesOptions options) : options_(std::move(options)) {
  if (options_.shuffle || options_.fill) options_.read_whole = true;
  if (options_.sources.empty()) options_.sources.push_back(Source{Source::Kind::File, {}, "-"});
  if (options_.pipe) {
    // One stream, read with read(2) in blocks (the caller allows no other source).
    const std::string& path = options_.sources[0].path;
    pipe_fd_ =
        path.empty() || path == "-" ? STDIN_FILENO : ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (pipe_fd_ < 0) throw Error(path + ": " + std::strerror(errno));
    block_size_ = options_.pipe->block;
    return;
  }
  const auto open = [this](const std::string& path, bool keep_fd) -> std::istream* {
    OpenedInput opened = open_input(path, keep_fd);
    if (opened.regular_fd >= 0) regular_fd_ = opened.regular_fd;
    if (opened.owned) owned_ = std::move(opened.owned);
    return opened.in;
  };
  if (options_.sources.size() == 1 && options_.sources[0].kind == Source::Kind::File &&
      !options_.read_whole) {
    stream_ = open(options_.sources[0].path, options_.separator == '\n');
    std::string first;
    if (options_.header && read_one(*stream_, first)) header_ = split(std::move(first));
    return;
  }
  for (const Source& source : options_.sources) {
    std::vector<std::string> list;
    if (source.kind == Source::Kind::Values) {
      list = source.values;
    } else {
      std::istream* in = open(source.path, false);
      std::string value;
      while (read_one(*in, value)) list.push_back(value);
      owned_.reset();
    }
    if (options_.header && !list.empty()) {
      for (std::string& name : split(list.front())) header_.push_back(std::move(name));
      list.erase(list.begin());
    }
    lists_.push_back(std::move(list));
  }
  // Groups: a linked source joins the previous one's group; --link makes one group of all.
  for (std::size_t s = 0; s < lists_.size(); ++s) {
    if (s == 0 || !(options_.link || options_.sources[s].linked)) groups_.push_back(Group{});
    groups_.back().lists.push_back(s);
  }
  std::uint64_t total = 1;
  for (Group& group : groups_) {
    group.length = lists_[group.lists[0]].size();
    for (const std::size_t s : group.lists) {
      // parallel: --link wraps the shorter sources; :::+ stops at the shortest.
      group.length = options_.link ? std::max(group.length, lists_[s].size())
                                   : std::min(group.length, lists_[s].size());
    }
    for (const std::size_t s : group.lists) {
      if (lists_[s].empty()) group.length = 0;  // nothing to combine with
    }
    total *= group.length;
  }
  const std::uint64_t per_job = std::max<std::size_t>(1, options_.args_per_job);
  inputs_total_ = total;
  total_ = (total + per_job - 1) / per_job;
  if (options_.fill) total_.reset();  // known only as jobs are made
  odometer_.assign(groups_.size(), 0);
}

std::string with_column_numbers(std::string text, const std::vector<std::string>& names) {
  for (std::size_t i = 0; i < names.size(); ++i) {
    if (names[i].empty()) continue;
    for (const char* suffix : {"}", ".}", "/}", "//}", "/.}"}) {
      const std::string from = "{" + names[i] + suffix;
      const std::string to = "{" + std::to_string(i + 1) + suffix;
      for (auto at = text.find(from); at != std::string::npos;
           at = text.find(from, at + to.size())) {
        text.replace(at, from.size(), to);
      }
    }
  }
  return text;
}

JobSource::~JobSource() {
  if (regular_fd_ > STDIN_FILENO) ::close(regular_fd_);
  if (pipe_fd_ > STDIN_FILENO) ::close(pipe_fd_);
}

// As parallel's spreadstdin: read up to the next multiple of the block size (or the end), cut
// what holds whole records, and when nothing could be cut make the block 30% larger. Read in
// pieces of at most 64 KiB, so memory follows the data read, not --block (1G on a 2-byte input).
void JobSource::read_block() {
  constexpr std::size_t kPiece = std::size_t{64} << 10;
  std::size_t want = block_size_ - pipe_buffer_.size() % block_size_;
  ssize_t got = 0;
  do {
    const std::size_t at = pipe_buffer_.size();
    const std::size_t piece = std::min(want, kPiece);
    pipe_buffer_.resize(at + piece);
    got = ::read(pipe_fd_, pipe_buffer_.data() + at, piece);
    pipe_buffer_.resize(at + static_cast<std::size_t>(std::max<ssize_t>(got, 0)));
    if (got < 0 && errno == EINTR) {
      got = 1;  // read again
      continue;
    }
    if (got < 0) throw Error(std::string("cannot read the input: ") + std::strerror(errno));
    want -= static_cast<std::size_t>(got);
  } while (want > 0 && got > 0);
  pipe_eof_ = got == 0;
}

void JobSource::cut_blocks() {
  const PipeOptions& pipe = *options_.pipe;
  const std::string boundary = pipe.recend + pipe.recstart;
  const auto cut = [this](std::size_t end) {
    blocks_.push_back(pipe_buffer_.substr(0, end));
    pipe_buffer_.erase(0, end);
  };
  if (options_.args_per_job > 0) {
    // -N: N records a block. parallel's nindex: each search starts one past the previous match
    // (the first at 1), so a boundary at the very start is not a record's end.
    while (!pipe_buffer_.empty()) {
      std::size_t at = 0;
      for (std::size_t k = 0; k < options_.args_per_job && at != std::string::npos; ++k) {
        at = pipe_buffer_.find(boundary, at + 1);
      }
      if (at == std::string::npos) return;
      cut(at + pipe.recend.size());
    }
    return;
  }
  if (pipe_eof_) return;  // the rest goes whole
  const auto at = pipe_buffer_.rfind(boundary);
  if (at != std::string::npos && at + pipe.recend.size() > 0) cut(at + pipe.recend.size());
}

std::optional<Job> JobSource::next_block() {
  while (blocks_.empty() && !pipe_done_) {
    if (pipe_eof_) {
      pipe_done_ = true;
      if (!pipe_buffer_.empty()) blocks_.push_back(std::move(pipe_buffer_));
      pipe_buffer_.clear();
      break;
    }
    read_block();
    const std::size_t before = blocks_.size();
    cut_blocks();
    if (!pipe_eof_ && blocks_.size() == before && block_size_ < 2147483647) {
      const std::size_t old = block_size_;
      block_size_ = static_cast<std::size_t>(
          std::min(std::ceil(static_cast<double>(old) * 1.3 + 1), 2147483647.0));
      std::fprintf(stderr,
                   "seppo: Warning: A record was longer than %zu. Increasing to --blocksize "
                   "%zu.\n",
                   old, block_size_);
    }
  }
  if (blocks_.empty()) return std::nullopt;
  Job job;
  job.args = {std::string()};  // parallel: {} is an empty word
  job.stdin_data = std::move(blocks_.front());
  blocks_.pop_front();
  job.seq = ++jobs_;
  return job;
}

bool JobSource::read_one(std::istream& in, std::string& value) const {
  if (!std::getline(in, value, options_.separator)) return false;
  return true;
}

std::vector<std::string> JobSource::split(std::string value) const {
  if (!options_.colsep) return {std::move(value)};
  std::vector<std::string> columns;
  std::sregex_token_iterator it(value.begin(), value.end(), *options_.colsep, -1), end;
  for (; it != end; ++it) columns.push_back(*it);
  if (columns.empty()) columns.emplace_back();
  return columns;
}

std::optional<Job> JobSource::next() {
  if (!options_.shuffle) return next_in_order();
  if (!shuffled_filled_) {
    while (auto job = next_in_order()) shuffled_.push_back(std::move(*job));
    std::mt19937_64 random(std::random_device{}());
    std::shuffle(shuffled_.begin(), shuffled_.end(), random);
    shuffled_filled_ = true;
    jobs_ = 0;
  }
  if (shuffled_.empty()) return std::nullopt;
  Job job = std::move(shuffled_.back());
  shuffled_.pop_back();
  job.seq = ++jobs_;  // parallel numbers the jobs in their shuffled order
  return job;
}

std::optional<Job> JobSource::next_filled() {
  Job job;
  std::size_t bytes = 0;
  while (job.args.size() < (fill_cap_ > 0 ? fill_cap_ : kFillArgs)) {
    std::string arg;
    if (!returned_.empty()) {
      arg = std::move(returned_.front());
      returned_.pop_front();
    } else if (auto input = next_input()) {
      arg = std::move(input->args[0]);  // one column: -m and -X go with one source, no --colsep
    } else {
      break;
    }
    if (!job.args.empty() && bytes + arg.size() + 1 > kFillBytes) {
      returned_.push_front(std::move(arg));
      break;
    }
    bytes += arg.size() + 1;
    job.args.push_back(std::move(arg));
  }
  if (job.args.empty()) return std::nullopt;
  // parallel: the first job that takes the last input spreads its inputs over the job slots,
  // and no later job takes more than that.
  const bool rest = returned_.empty() && emitted_ >= inputs_total_;
  if (rest && fill_cap_ == 0 && job.args.size() > 1) {
    const std::size_t slots = std::max(1u, options_.spread);
    fill_cap_ = (job.args.size() + slots - 1) / slots;
    while (job.args.size() > fill_cap_) {
      returned_.push_front(std::move(job.args.back()));
      job.args.pop_back();
    }
  }
  job.seq = ++jobs_;
  return job;
}

std::optional<Job> JobSource::next_in_order() {
  if (options_.fill) return next_filled();
  if (options_.pipe) return next_block();
  const std::size_t per_job = std::max<std::size_t>(1, options_.args_per_job);
  std::optional<Job> job = next_input();
  if (!job) return std::nullopt;
  // -N: the next inputs join this job, each with its columns.
  for (std::size_t n = 1; n < per_job; ++n) {
    std::optional<Job> more = next_input();
    if (!more) break;
    for (std::string& arg : more->args) job->args.push_back(std::move(arg));
  }
  job->seq = ++jobs_;
  return job;
}

std::optional<Job> JobSource::next_input() {
  Job job;
  if (stream_ != nullptr) {
    std::string value;
    if (!read_one(*stream_, value)) return std::nullopt;
    job.args = split(std::move(value));
  } else {
    if (emitted_ >= inputs_total_) return std::nullopt;
    for (std::size_t g = 0; g < groups_.size(); ++g) {
      for (const std::size_t s : groups_[g].lists) {
        const auto& list = lists_[s];
        for (std::string& column : split(list[odometer_[g] % list.size()])) {
          job.args.push_back(std::move(column));
        }
      }
    }
    // The last source turns fastest, as in parallel: `::: a b ::: 1 2` is a 1, a 2, b 1, b 2.
    for (std::size_t g = groups_.size(); g-- > 0;) {
      if (++odometer_[g] < groups_[g].length) break;
      odometer_[g] = 0;
    }
  }
  job.seq = ++emitted_;
  return job;
}

}  // namespace seppo::cli
