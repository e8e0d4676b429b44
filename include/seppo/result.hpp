// One item's outcome as the caller sees it: Client::map_results, imap_results, Job::results.
#pragma once

#include <utility>
#include <variant>

#include "seppo/error.hpp"

namespace seppo {

// One item's outcome: its value, or the error its function raised.
template <class R>
class Result {
 public:
  Result(R value) : state_(std::move(value)) {}            // NOLINT: implicit on purpose
  Result(RemoteError error) : state_(std::move(error)) {}  // NOLINT
  bool ok() const noexcept { return state_.index() == 0; }
  explicit operator bool() const noexcept { return ok(); }
  // The value; throws the item's RemoteError if it failed.
  const R& value() const& {
    if (!ok()) throw std::get<1>(state_);
    return std::get<0>(state_);
  }
  R&& value() && {
    if (!ok()) throw std::get<1>(state_);
    return std::get<0>(std::move(state_));
  }
  const RemoteError& error() const { return std::get<1>(state_); }

 private:
  std::variant<R, RemoteError> state_;
};

}  // namespace seppo
