// GNU parallel's input sources for `seppo map`: `::: a b c`, `:::: FILE`, `-a FILE` (repeatable),
// stdin; several sources combined (every combination, or --link), -0 and --colsep.
#pragma once

#include <cstdint>
#include <deque>
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
  bool linked = false;  // `:::+`, `::::+`: the i-th value goes with the previous source's i-th
};

// GNU parallel's --pipe: stdin cut into blocks of about `block` bytes at record boundaries (a
// `recend` followed by a `recstart`), or of `args_per_job` records each (-N); each block is one
// job's stdin.
struct PipeOptions {
  std::size_t block = std::size_t{1} << 20;  // --block, parallel's default 1M
  std::string recstart;                      // --recstart
  std::string recend = "\n";                 // --recend (empty when only --recstart is given)
};

struct SourcesOptions {
  std::vector<Source> sources;  // none: stdin
  bool link = false;            // --link: the i-th of each source together, shorter ones wrap
  char separator = '\n';        // -0: '\0'
  std::optional<std::regex> colsep;
  std::size_t args_per_job = 0;  // -N: that many inputs per job (0 or 1: one)
  bool header = false;           // --header : : each source's first value names its columns
  bool shuffle = false;     // --shuf: every job first, in a random order, numbered in that order
  bool read_whole = false;  // read a single stream whole first, so total() is known (--halt 30%)
  std::optional<PipeOptions> pipe;  // --pipe: blocks of the single stream, not its lines
  // -m, -X: as many inputs a job as fit (kFillArgs, kFillBytes); once the rest fits in one
  // job, it is spread over `spread` jobs (-j), as GNU parallel does.
  bool fill = false;
  unsigned spread = 1;
};

// -m, -X: at most this many arguments, of at most this many bytes (each plus a space), a job.
inline constexpr std::size_t kFillArgs = 1024;
inline constexpr std::size_t kFillBytes = 64 << 10;

// One job: its 1-based number ({#}) and its arguments ({1} {2}...; {} is all of them).
struct Job {
  std::uint64_t seq = 0;
  std::vector<std::string> args;
  std::optional<std::string> stdin_data;  // --pipe: the block, the command's stdin
};

// --block SIZE as parallel reads it: a number with an optional unit, K M G T P (powers of 1024,
// also Ki Mi... in either case) or k m g t p (powers of 1000). Throws seppo::Error.
std::size_t parse_block_size(const std::string& text);
// --recstart/--recend: parallel's escapes \0 \r \n \t \' \" \\ are bytes.
std::string unescape_record_separator(const std::string& text);

// Splits `argv` at the first `:::`/`::::`/`:::+`/`::::+`: what comes before is for the option
// parser, what comes after becomes sources (appended to `sources`, in order).
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
  // --header :: the column names, in the order of {1} {2}...
  const std::vector<std::string>& header() const { return header_; }
  // A regular file the single streamed source reads, to count lines for progress; else -1.
  int regular_file_fd() const { return regular_fd_; }

 private:
  std::optional<Job> next_filled();   // -m, -X
  std::deque<std::string> returned_;  // -m, -X: inputs given back by the spreading job
  std::size_t fill_cap_ = 0;          // -m, -X: the spread's arguments a job, 0 before it
  std::optional<Job> next_block();    // --pipe
  void read_block();                  // --pipe: adds up to the next multiple of the block size
  void cut_blocks();                  // --pipe: moves whole blocks from pipe_buffer_ to blocks_
  std::string pipe_buffer_;
  std::deque<std::string> blocks_;
  std::size_t block_size_ = 0;
  int pipe_fd_ = -1;
  bool pipe_eof_ = false, pipe_done_ = false;
  std::optional<Job> next_input();     // one input's job, before -N groups them
  std::optional<Job> next_in_order();  // the next job before --shuf
  std::vector<Job> shuffled_;          // --shuf: the jobs left, last first
  bool shuffled_filled_ = false;
  std::vector<std::string> split(std::string value) const;
  bool read_one(std::istream& in, std::string& value) const;

  SourcesOptions options_;
  std::unique_ptr<std::istream> owned_;
  std::istream* stream_ = nullptr;  // the streamed single source, or null
  std::vector<std::vector<std::string>> lists_;
  // Sources linked together (`:::+`, or all of them with --link) turn as one: each group is a
  // list of indexes into lists_, with its length (the shortest list, or the longest with --link,
  // whose shorter lists wrap).
  struct Group {
    std::vector<std::size_t> lists;
    std::size_t length = 0;
  };
  std::vector<Group> groups_;
  std::vector<std::size_t> odometer_;  // per group
  std::uint64_t emitted_ = 0;          // inputs
  std::uint64_t jobs_ = 0;             // jobs (-N: groups of inputs)
  std::uint64_t inputs_total_ = 0;     // inputs from lists_
  std::optional<std::uint64_t> total_;
  int regular_fd_ = -1;
  std::vector<std::string> header_;
};

// --header :: `text` with {NAME} (and {NAME.} {NAME/} {NAME//} {NAME/.}) as {N}, N the
// column's place among `names`.
std::string with_column_numbers(std::string text, const std::vector<std::string>& names);

}  // namespace seppo::cli
