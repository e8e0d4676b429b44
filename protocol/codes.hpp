// The codes of FAILED and ERROR messages (docs/protocol.md §6), with their wire names: the one
// list every sender and receiver compares against, so a misspelt code does not compile.
#pragma once

#include <array>
#include <optional>
#include <string_view>
#include <utility>

namespace seppo::wire {

enum class Code : unsigned char {
  // FAILED (§6.1): items that will not run.
  UnknownFunction,  // no worker provided the function within the job's wait: the whole job
  WorkerLost,       // the task's worker was lost max_attempts times
  BadRequest,       // a SUBMIT (or a task to split) the broker cannot take
  OverLimit,        // the client's queued payload bytes would exceed the broker's limit
  TooLarge,         // an item larger than any limit lets through: it can never run
  Timeout,          // an item ran longer than its time limit (item_timeout / --task-timeout)
  // ERROR (§6.2): the last message was refused.
  BadMessage,  // undecodable, misframed or not acceptable: it had no effect
  NotReady,    // from a peer that is not a registered worker: send READY
  Forbidden,   // with CurveZMQ: the sender's key is not authorised for that message
  NotActive,   // a broker of a pair that is not the active one: go to the next endpoint (§15)
};

inline constexpr std::array<std::pair<Code, std::string_view>, 10> kCodeNames = {{
    {Code::UnknownFunction, "unknown_function"},
    {Code::WorkerLost, "worker_lost"},
    {Code::BadRequest, "bad_request"},
    {Code::OverLimit, "over_limit"},
    {Code::TooLarge, "too_large"},
    {Code::Timeout, "timeout"},
    {Code::BadMessage, "bad_message"},
    {Code::NotReady, "not_ready"},
    {Code::Forbidden, "forbidden"},
    {Code::NotActive, "not_active"},
}};

constexpr std::string_view to_wire(Code code) {
  for (const auto& [c, name] : kCodeNames) {
    if (c == code) return name;
  }
  return "unknown";
}

// Empty for a code this program does not know: a later peer may send new ones, which a
// receiver treats as a failure of unspecified kind.
constexpr std::optional<Code> code_from_wire(std::string_view name) {
  for (const auto& [c, n] : kCodeNames) {
    if (n == name) return c;
  }
  return std::nullopt;
}

// True when a wire code names `code`; an unknown name matches nothing.
constexpr bool is(std::string_view name, Code code) {
  return code_from_wire(name) == code;
}

static_assert(code_from_wire(to_wire(Code::Forbidden)) == Code::Forbidden);
static_assert(!code_from_wire("over-limit"));

}  // namespace seppo::wire
