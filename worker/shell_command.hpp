// Named shell commands: an operator's `seppo-worker --command thumbnail='convert {} {.}.png'`
// served like a module function. Clients send only inputs; the command line is the operator's,
// with each input substituted through GNU parallel's replacement strings, shell-quoted. Running a
// command is here (and in run_shell.cpp); its template, and the analysis of what the template
// lets an input do, in command_template.hpp.
#pragma once

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "seppo/msgpack.hpp"

#include "seppo/module_abi.h"
#include "worker/command_template.hpp"
#include "worker/module_loader.hpp"

namespace seppo::worker {

// What one run may produce. Output beyond max_stdout stops the command (a runaway `yes` must not
// take the worker's memory); of stderr only the tail is kept, for the error message.
struct CommandLimits {
  std::size_t max_stdout = std::size_t{64} << 20;
  std::size_t stderr_tail = 2048;
  // Per run (`seppo map --local --timeout`): the process group is killed after this long. 0: none.
  std::chrono::milliseconds timeout{0};
  // Set by another thread to kill the run now (`seppo map --local --halt now`); null: never.
  const std::atomic<bool>* cancel = nullptr;
  // The folder the command runs in; empty: this process's own.
  std::string cwd;
  // seppo-worker --client-folders: a request item's "cwd" (the client's folder) is where its
  // command runs, so relative file names mean what they mean to the client (shared file
  // systems). Off by default: a client choosing the folder chooses what `./tool` or a
  // Makefile there runs.
  bool client_folders = false;
  // The shell that runs the script: seppo-worker --shell, or GNU parallel's choice for
  // `seppo map --local` (parallel_shell()). Run as SHELL -c SCRIPT SHELL PARAMETERS...
  std::string shell = "/bin/sh";
  // seppo-worker --allow-stdin: a request item may carry a block for its command's stdin
  // (`seppo map --pipe`, docs/protocol.md §5.2). Off by default: a command that reads stdin as
  // code (`python3` with no file) would run the client's block.
  bool allow_stdin = false;
  // seppo-worker --allow-context-replace: a request item may ask for GNU parallel's -X
  // ("context_replace"), which repeats each word holding {} once per argument: `cp {} /out/{/}`
  // then copies every argument's file to /out/ and more. Off by default: the template's
  // meaning is the operator's.
  bool allow_context_replace = false;
  // seppo-worker --allow-env NAME,...: the variables a request item's "env" may set for its
  // command (seppo map --env NAME). Only these names: none by default.
  std::vector<std::string> allow_env;
};

// The shell GNU parallel would run commands with: $PARALLEL_SHELL, else the nearest ancestor
// process that is a shell (bash, dash, zsh...; found on PATH by name, as parallel does), else
// $SHELL, else /bin/sh.
std::string parallel_shell();

// How one run of a script ended.
struct CommandRun {
  std::string out;
  std::string err_tail;         // the last CommandLimits::stderr_tail bytes of stderr
  int wait_status = 0;          // as waitpid reports it
  bool out_over_limit = false;  // stopped for writing more than CommandLimits::max_stdout
  bool timed_out = false;       // killed after CommandLimits::timeout
  bool cancelled = false;       // killed because CommandLimits::cancel was set
};

// Runs the script with limits.shell (SHELL -c TEXT SHELL PARAMETERS...), stdin from /dev/null,
// stdout and stderr captured through poll so neither can fill up and stall the other. The command's
// whole process tree runs in a process group of its own under a small guard process that kills the
// group when this process dies, by any signal, so no command outlives its worker. Throws
// std::runtime_error when it cannot start.
// The pids in `text` (a /proc/<pid>/task/<tid>/children read of `size` bytes) into `out`, at
// most `capacity`; `at_end` when the read reached the end of the file. A pid is taken only when
// its separator follows, or the file ended: one cut by the buffer's end is left for the next
// read. Async-signal-safe. Returns how many were stored.
std::size_t whole_pids(const char* text, std::size_t size, bool at_end, int* out,
                       std::size_t capacity);

CommandRun run_shell(const ShellScript& script, const CommandLimits& limits = {});
// A whole command line, no parameters.
CommandRun run_shell(const std::string& line, const CommandLimits& limits = {});

// "exited with status 3", "killed by signal 9 (SIGKILL)".
std::string describe_wait_status(int wait_status);

class ShellCommand {
 public:
  ShellCommand(std::string name, std::string command_template, CommandLimits limits = {});
  const std::string& name() const { return name_; }
  const std::string& command_template() const { return template_.text(); }

  // One item: its stdout, less one trailing newline. Throws std::runtime_error with the item's
  // message: a non-zero exit or a signal (with the stderr tail), a bad argument type, too much
  // output, or a failure to start.
  std::string run(const msgpack::object& input) const;
  std::string run_text(std::string_view input) const;
  std::string run_args(const std::vector<std::string>& args, std::uint64_t seq = 0,
                       const std::string& cwd = {}, const std::string* stdin_data = nullptr,
                       const std::vector<std::pair<std::string, std::string>>* env = nullptr) const;
  // One item as a result entry's value: `input` is a plain item (as run) or a request map
  // (docs/protocol.md §5.2), which may ask for the command line only (dry_run) or for a
  // wire::CommandRecord, packed even when the command fails. Throws std::runtime_error as run.
  void run_item(msgpack::packer<msgpack::sbuffer>& packer, const msgpack::object& input) const;

  // The module ABI's contract (seppo_call_chunk): each item runs in turn, failing alone.
  int call_chunk(const char* input, std::size_t size, seppo_sink* output) const noexcept;

 private:
  std::vector<std::string> arguments(const msgpack::object& input) const;
  void check_seq(std::uint64_t seq) const;
  // The command line as shown (dry runs, records), and the script that runs.
  // `stdin_data`: a piped item (seppo map --pipe), run by the template without an appended {}.
  std::string line_for(const std::vector<std::string>& args, std::uint64_t seq,
                       bool piped = false) const;
  ShellScript script_for(const std::vector<std::string>& args, std::uint64_t seq,
                         const std::string* stdin_data = nullptr) const;
  // The limits for one item, in the client's folder `cwd` under --client-folders. Throws
  // std::runtime_error when `cwd` is not an absolute path.
  CommandLimits limits_for(const std::string& cwd) const;

  std::string name_;
  CommandTemplate template_;
  CommandTemplate piped_template_;  // the same, nothing appended
  CommandLimits limits_;
  bool context_replaced_ = false;  // made for one item's "context_replace" request
};

// This process's job slot, {%}: SEPPO_WORKER_SLOT as seppo-worker's supervisor sets it for each
// of its -j processes (1..N, a restarted process takes the slot of the one it replaces); 1 when
// unset.
unsigned worker_slot();

// A worker function that runs `spec`: announced as spec.name exactly.
Function command_function(const CommandSpec& spec, CommandLimits limits = {});

}  // namespace seppo::worker
