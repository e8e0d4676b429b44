// `seppo map FUNCTION`: one input per line in, one result per line out.
#pragma once

#include <chrono>
#include <cstdio>
#include <optional>
#include <string>

#include <seppo/client.hpp>

#include "cli/input.hpp"
#include "cli/local_commands.hpp"
#include "cli/output.hpp"
#include "cli/sources.hpp"

namespace seppo::cli {

enum class ProgressMode { Auto, On, Off };

struct MapOptions {
  std::string function;
  std::string input;  // a file, or empty / "-" for stdin
  InputFormat input_format = InputFormat::Auto;
  OutputFormat output;
  bool fail_fast = false;
  ProgressMode progress = ProgressMode::Auto;
  // GNU parallel's sources (`:::`, `::::`, -a, -0, --colsep, --link); unset: lines of `input`.
  std::optional<SourcesOptions> sources;
  bool tag = false;                    // prefix each output line with the item's arguments
  unsigned retries = 0;                // resubmit a failed item up to this many times
  std::optional<Halt> halt;            // --halt soon (through a broker: `now` is refused)
  std::optional<std::string> command;  // --local --command: the template of `function`
  // `function` is a worker's named command: items go as request items (docs/protocol.md §5.2)
  // carrying the job number, and with parallel's options each answers with its run's record.
  bool command_requests = false;
  JobControl control;  // --local commands; joblog, results and dry_run also through a broker
};

// How many worker processes serve `function` (the broker's STATUS, asked on a second connection
// so that a job's is not disturbed); nullopt when the broker does not answer within a second.
std::optional<std::size_t> workers_serving(const Client& client, const std::string& function);

// --timeout: common/duration.hpp's grammar, positive; empty is 0 (none). Throws seppo::Error.
std::chrono::milliseconds parse_duration(const std::string& text);

// Thrown when stdout's reader went away: the caller closes the connection, then dies of SIGPIPE
// as other filters in a pipeline do.
struct OutputClosed {};

// Exit status as GNU parallel reports it: 0 when every item succeeded, 1-100 the number of
// failed items, 101 for more than 100. When the reader of stdout goes away (`| head`), the job is
// cancelled and OutputClosed thrown.
int run_map(Client& client, const MapOptions& options, std::FILE* out);

}  // namespace seppo::cli
