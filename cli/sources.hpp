// GNU parallel's input sources for `seppo map`: `::: a b c`, `:::: FILE`, `-a FILE` (repeatable),
// stdin; several sources combined (every combination, or --link), -0 and --colsep.
#pragma once

#include <cstdint>
#include <istream>
#include <memory>
#include <optional>
#include <regex>
#include <string>
#include <vector>

namespace seppo::cli {

struct Source {
  enum class Kind { Values, File };  // `:::` values, or a file (`::::`, -a; "-" is stdin)
  Kind kind = Kind::File;
  std::vector<std::string> values;
  std::string path;
};

struct SourcesOptions {
  std::vector<Source> sources;  // none: stdin
  bool link = false;            // --link: the i-th of each source together, shorter ones wrap
  char separator = '\n';        // -0: '\0'
  std::optional<std::regex> colsep;
  bool read_whole = false;  // read a single stream whole first, so total() is known (--halt 30%)
};

// One job: its 1-based number ({#}) and its arguments ({1} {2}...; {} is all of them).
struct Job {
  std::uint64_t seq = 0;
  std::vector<std::string> args;
};

// Splits `argv` at the first `:::`/`::::`: what comes before is for the option parser, what
// comes after becomes sources (appended to `sources`, in order).
std::vector<char*> split_sources(int argc, char** argv, std::vector<Source>& sources);

class JobSource {
 public:
  // Throws seppo::Error when a file cannot be read. A single file source is read as jobs are
  // asked for (an endless pipe works); several are read whole first, as their combinations need.
  explicit JobSource(SourcesOptions options);
  ~JobSource();
  JobSource(const JobSource&) = delete;
  JobSource& operator=(const JobSource&) = delete;

  std::optional<Job> next();
  // The number of jobs when known in advance (sources read whole), for the progress line.
  std::optional<std::uint64_t> total() const { return total_; }
  // A regular file the single streamed source reads, to count lines for progress; else -1.
  int regular_file_fd() const { return regular_fd_; }

 private:
  std::vector<std::string> split(std::string value) const;
  bool read_one(std::istream& in, std::string& value) const;

  SourcesOptions options_;
  std::unique_ptr<std::istream> owned_;
  std::istream* stream_ = nullptr;  // the streamed single source, or null
  std::vector<std::vector<std::string>> lists_;
  std::vector<std::size_t> odometer_;
  std::uint64_t emitted_ = 0;
  std::optional<std::uint64_t> total_;
  int regular_fd_ = -1;
};

}  // namespace seppo::cli
