// Named commands' request items and per-item records (docs/protocol.md §5.2, "Command requests
// and records"): what `seppo map` sends a worker's named command when it needs the job number,
// the command line without running it, or the run's exit status, times and both outputs. The
// one encoder and decoder of both shapes, shared by the worker and the seppo command.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "seppo/msgpack.hpp"

namespace seppo::wire {

// {"args": [str...], "seq": uint, "record": bool, "dry_run": bool, "cwd": str}; only `args` is
// required.
struct CommandRequest {
  const msgpack::object* args = nullptr;  // an array of arguments, or one argument
  std::optional<std::uint64_t> seq;       // fills {#}
  bool record = false;                    // answer with a CommandRecord, even for a failed run
  bool dry_run = false;                   // answer with the command line, run nothing
  std::string cwd;  // the client's folder (absolute), for workers that run commands there
  std::optional<std::string> stdin_data;  // "stdin": the command's stdin (seppo map --pipe)
  bool context_replace = false;           // each word with {} once per argument (seppo map -X)
  // "env": NAME -> value, the client's variables for the command (seppo map --env NAME).
  std::vector<std::pair<std::string, std::string>> env;
};

void pack_command_request(msgpack::packer<msgpack::sbuffer>& packer,
                          const std::vector<std::string>& args, std::uint64_t seq,
                          bool record = false, bool dry_run = false, const std::string& cwd = {},
                          const std::string* stdin_data = nullptr, bool context_replace = false,
                          const std::vector<std::pair<std::string, std::string>>& env = {});

// Null when `item` is not a map (a plain item: a string, a number, an array of them). Throws
// std::invalid_argument with a one-line reason for a map without `args` or with a key of the
// wrong type. Keys it does not know are ignored, so later clients may add some.
std::optional<CommandRequest> decode_command_request(const msgpack::object& item);

// How one run of a named command ended, when the request asked for a record.
struct CommandRecord {
  std::string out;               // all of stdout, its last newline included
  std::string err;               // stderr (its last MiB)
  int exit = 0;                  // the exit status; -1 when killed by a signal
  int signal = 0;                // the signal that killed it, 0 if none
  std::uint64_t start_us = 0;    // when it started, microseconds since the Unix epoch
  std::uint64_t runtime_us = 0;  // how long it ran
  std::string host;              // the worker's host name
  std::string command;           // the command line, as --dry-run prints it (for --joblog)
  std::string message;           // why the run failed, as a plain item's error; empty: success
  bool failed() const { return exit != 0 || signal != 0 || !message.empty(); }
};

void pack_command_record(msgpack::packer<msgpack::sbuffer>& packer, const CommandRecord& record);
// Null when `value` is not a record (a map holding at least "exit" and "stdout").
std::optional<CommandRecord> decode_command_record(const msgpack::object& value);

}  // namespace seppo::wire
