// `seppo map FUNCTION`: one input per line in, one result per line out, in input order.
#pragma once

#include <cstdio>
#include <iosfwd>
#include <string>

#include <seppo/client.hpp>

namespace seppo::cli {

struct MapOptions {
  std::string function;
  bool fail_fast = false;
};

// Exit status as GNU parallel reports it: 0 when every item succeeded, 1-100 the number of
// failed items, 101 for more than 100.
int run_map(Client& client, const MapOptions& options, std::istream& in, std::FILE* out);

}  // namespace seppo::cli
