// `seppo map FUNCTION`: one input per line in, one result per line out.
#pragma once

#include <cstdio>
#include <string>

#include <seppo/client.hpp>

#include "cli/input.hpp"
#include "cli/output.hpp"

namespace seppo::cli {

enum class ProgressMode { Auto, On, Off };

struct MapOptions {
  std::string function;
  std::string input;  // a file, or empty / "-" for stdin
  InputFormat input_format = InputFormat::Auto;
  OutputFormat output;
  bool fail_fast = false;
  ProgressMode progress = ProgressMode::Auto;
};

// Thrown when stdout's reader went away: the caller closes the connection, then dies of SIGPIPE
// as other filters in a pipeline do.
struct OutputClosed {};

// Exit status as GNU parallel reports it: 0 when every item succeeded, 1-100 the number of
// failed items, 101 for more than 100. When the reader of stdout goes away (`| head`), the job is
// cancelled and OutputClosed thrown.
int run_map(Client& client, const MapOptions& options, std::FILE* out);

}  // namespace seppo::cli
