// One readable line per message, for seppo-sim --trace.
#pragma once

#include <string>

#include "protocol/wire.hpp"

namespace seppo::sim {

std::string describe(const wire::Message& message);
// The same from an encoded header frame (what the broker's outbox holds).
std::string describe_header(const std::string& header);
// A routing id as text.
std::string printable(const std::string& id);
bool is_over_limit(const wire::Failed& failed);

}  // namespace seppo::sim
