// The seppo::Error family: every failure a caller can meet, with the context needed to act on it.
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>

#include "seppo/export.hpp"

namespace seppo {

// Base of everything seppo throws; catch this to handle any seppo failure.
class SEPPO_API Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// The broker could not be reached, went away and did not come back within the timeout, or
// refused the connection: it did not accept this client's CurveZMQ key, or one side uses
// CurveZMQ and the other does not.
class SEPPO_API ConnectionError : public Error {
 public:
  using Error::Error;
};

// The broker answers but refuses the work: this client's key may not submit jobs (code
// "forbidden"), or a chunk alone exceeds the broker's per-client limit ("over_limit").
class SEPPO_API RefusedError : public Error {
 public:
  RefusedError(std::string code, const std::string& message)
      : Error(message), code_(std::move(code)) {}
  const std::string& code() const noexcept { return code_; }

 private:
  std::string code_;
};

// No worker announced the function within the wait the caller allowed.
class SEPPO_API UnknownFunctionError : public Error {
 public:
  UnknownFunctionError(std::string function, const std::string& message)
      : Error(message), function_(std::move(function)) {}
  const std::string& function() const noexcept { return function_; }

 private:
  std::string function_;
};

// A value could not be converted to or from the type the code asked for.
class SEPPO_API TypeError : public Error {
 public:
  using Error::Error;
};

// Bytes that do not follow the wire protocol, or msgpack that cannot be decoded safely.
// Job::get() and results() after the job was cancelled before it finished.
class SEPPO_API CancelledError : public Error {
 public:
  using Error::Error;
};

class SEPPO_API ProtocolError : public Error {
 public:
  using Error::Error;
};

// The function failed for one input: it threw or rejected its argument, or seppo failed the
// item for it (code() says why: its worker kept dying, it ran past its time limit, ...).
class SEPPO_API RemoteError : public Error {
 public:
  RemoteError(std::string function, std::uint64_t index, std::string remote_message,
              std::string worker, std::string code = {})
      : Error(describe(function, index, remote_message, worker)),
        function_(std::move(function)),
        index_(index),
        remote_message_(std::move(remote_message)),
        worker_(std::move(worker)),
        code_(std::move(code)) {}

  const std::string& function() const noexcept { return function_; }
  // Position of the failing input in the caller's input sequence, counting from 0.
  std::uint64_t index() const noexcept { return index_; }
  // What the function (or the broker, for lost workers) said, without seppo's context.
  const std::string& remote_message() const noexcept { return remote_message_; }
  // "host, process PID" of the worker that reported the failure; empty when no worker did.
  const std::string& worker() const noexcept { return worker_; }
  // Empty when the function itself raised the error. Otherwise seppo failed the item, and this
  // is the failure code of docs/protocol.md §6.1 saying why, to compare instead of the
  // message's wording: "timeout" (ran past ClientOptions::item_timeout or the broker's
  // --task-timeout), "worker_lost" (its worker died max_attempts times), "too_large" (it can
  // never fit a message), "bad_request"; "unknown" for a code this library does not know.
  const std::string& code() const noexcept { return code_; }

 private:
  // "example_module.square: argument: expected integer, got string (item 3, on host, process 42)"
  static std::string describe(const std::string& function, std::uint64_t index,
                              const std::string& message, const std::string& worker) {
    std::string text = function + ": " + message + " (item " + std::to_string(index);
    if (!worker.empty()) text += ", on " + worker;
    return text + ")";
  }

  std::string function_;
  std::uint64_t index_;
  std::string remote_message_;
  std::string worker_;
  std::string code_;
};

}  // namespace seppo
