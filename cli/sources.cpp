#include "cli/sources.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <iostream>

#include <seppo/error.hpp>

#include "cli/input.hpp"

namespace seppo::cli {
std::vector<char*> split_sources(int argc, char** argv, std::vector<Source>& sources) {
  std::vector<char*> head;
  int i = 0;
  for (; i < argc; ++i) {
    const std::string_view a = argv[i];
    if (a == ":::" || a == "::::") break;
    head.push_back(argv[i]);
  }
  for (; i < argc; ++i) {
    const std::string_view a = argv[i];
    if (a == ":::") {
      sources.push_back(Source{Source::Kind::Values, {}, {}});
    } else if (a == "::::") {
      sources.push_back(Source{Source::Kind::File, {}, "\x01"});  // the next word is the path
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

JobSource::JobSource(SourcesOptions options) : options_(std::move(options)) {
  if (options_.sources.empty()) options_.sources.push_back(Source{Source::Kind::File, {}, "-"});
  const auto open = [this](const std::string& path, bool keep_fd) -> std::istream* {
    OpenedInput opened = open_input(path, keep_fd);
    if (opened.regular_fd >= 0) regular_fd_ = opened.regular_fd;
    if (opened.owned) owned_ = std::move(opened.owned);
    return opened.in;
  };
  if (options_.sources.size() == 1 && options_.sources[0].kind == Source::Kind::File &&
      !options_.read_whole) {
    stream_ = open(options_.sources[0].path, options_.separator == '\n');
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
    lists_.push_back(std::move(list));
  }
  std::uint64_t total = options_.link ? 0 : 1;
  for (const auto& list : lists_) {
    if (options_.link) {
      total = std::max<std::uint64_t>(total, list.size());
    } else {
      total *= list.size();
    }
  }
  for (const auto& list : lists_) {
    if (list.empty()) total = 0;  // nothing to combine with
  }
  total_ = total;
  odometer_.assign(lists_.size(), 0);
}

JobSource::~JobSource() {
  if (regular_fd_ > STDIN_FILENO) ::close(regular_fd_);
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
  Job job;
  if (stream_ != nullptr) {
    std::string value;
    if (!read_one(*stream_, value)) return std::nullopt;
    job.args = split(std::move(value));
  } else {
    if (emitted_ >= *total_) return std::nullopt;
    for (std::size_t s = 0; s < lists_.size(); ++s) {
      const auto& list = lists_[s];
      const std::size_t i = options_.link ? emitted_ % list.size() : odometer_[s];
      for (std::string& column : split(list[i])) job.args.push_back(std::move(column));
    }
    // The last source turns fastest, as in parallel: `::: a b ::: 1 2` is a 1, a 2, b 1, b 2.
    for (std::size_t s = lists_.size(); !options_.link && s-- > 0;) {
      if (++odometer_[s] < lists_[s].size()) break;
      odometer_[s] = 0;
    }
  }
  job.seq = ++emitted_;
  return job;
}

}  // namespace seppo::cli
