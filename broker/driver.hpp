// The one way to drive broker::Core outside its socket loop, shared by the unit tests
// (tests/unit/broker_harness.hpp), the simulator (sim/) and the fuzzer (fuzz/fuzz_broker.cpp):
// frames in as received, the outbox out (issue 27 §4). A change of how the core takes or gives
// payloads touches this file, not three drivers.
#pragma once

#include <optional>
#include <string_view>
#include <utility>
#include <vector>

#include "broker/core.hpp"
#include "protocol/bytes.hpp"

namespace seppo::broker {

// One message as the socket loop receives it: the header frame's bytes and, when the message
// has one, its payload frame. `role` and `key` are what the sender's key allows, and names it.
inline void feed(Core& core, const PeerId& from, std::string_view header,
                 std::optional<Bytes> payload, TimePoint now, Role role = Role::Any,
                 std::string_view key = {}) {
  core.on_message(from, header.data(), header.size(), payload ? &*payload : nullptr, now, role,
                  key);
}

// What the core queued since the last drain, in order.
inline std::vector<Outgoing> drain(Core& core) {
  std::vector<Outgoing> out;
  core.take_outbox(out);
  return out;
}

}  // namespace seppo::broker
