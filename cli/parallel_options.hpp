// GNU parallel's options that `seppo map` does not take: each is refused by name, with why and a
// pointer to docs/parallel.md, before the option parser could give a generic message.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace seppo::cli {

struct RefusedOption {
  std::string_view names;  // "--pipe|--spreadstdin": every spelling parallel accepts
  std::string_view why;
};
// The table (also what tests/integration/cli_test.cpp walks through).
const std::vector<RefusedOption>& refused_parallel_options();

// The one-line refusal for `word` when it is (or starts, as -N2 or --pipe=x) a refused parallel
// option; nothing otherwise.
std::optional<std::string> refusal_for(std::string_view word);

// The message for an option nobody knows (neither seppo nor parallel).
std::string unknown_option_message(std::string_view word);

// parallel's -j: N, N% of the cores, +N / -N cores plus or minus N (at least 1), 0 as many as
// possible (seppo: 256 at once). Throws seppo::Error for anything else.
unsigned parse_jobs(const std::string& text, unsigned cores);

}  // namespace seppo::cli
