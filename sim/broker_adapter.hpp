// The few lines that know how broker::Core takes and gives payloads, so that a change of its
// payload type touches only this file.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "broker/core.hpp"
#include "protocol/bytes.hpp"

namespace seppo::sim {

inline std::unique_ptr<broker::Core> make_broker(const broker::Config& config,
                                                 std::uint64_t instance,
                                                 std::function<void(const std::string&)> log) {
  broker::Core::LogSink sink;
  if (log) sink = [log](log::Level, const std::string& line) { log(line); };
  return std::make_unique<broker::Core>(config, instance, sink);
}

inline void feed_broker(broker::Core& core, const std::string& from, const std::string& header,
                        const std::optional<Bytes>& payload, broker::TimePoint now,
                        broker::Role role = broker::Role::Any, std::string_view key = {}) {
  if (payload) {
    Bytes frame = *payload;
    core.on_message(from, header.data(), header.size(), &frame, now, role, key);
  } else {
    core.on_message(from, header.data(), header.size(), nullptr, now, role, key);
  }
}

inline std::uint64_t broker_queued_bytes(const broker::Core& core, const std::string& client) {
  return core.queued_bytes(client);
}

inline std::size_t broker_client_count(const broker::Core& core) {
  return core.client_count();
}

}  // namespace seppo::sim
