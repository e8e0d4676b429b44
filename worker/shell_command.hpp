// Named shell commands: an operator's `seppo-worker --command thumbnail='convert {} {.}.png'`
// served like a module function. Clients send only inputs; the command line is the operator's,
// with each input substituted through GNU parallel's replacement strings, shell-quoted.
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
#include "worker/module_loader.hpp"

namespace seppo::worker {

inline constexpr std::size_t kMaxCommandName = 256;

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
};

// The shell GNU parallel would run commands with: $PARALLEL_SHELL, else the nearest ancestor
// process that is a shell (bash, dash, zsh...; found on PATH by name, as parallel does), else
// $SHELL, else /bin/sh.
std::string parallel_shell();

// `NAME=TEMPLATE` as given to --command. Throws std::invalid_argument with a one-line message
// when NAME is not 1..256 letters, digits, `_`, `-`, `.`, or the template is empty or uses a
// replacement string a worker cannot fill.
struct CommandSpec {
  std::string name;
  std::string command_template;
};
// A template that runs its input as code (CommandTemplate::runs_input_as_code) is refused too,
// unless `allow_any_command`.
CommandSpec parse_command_option(std::string_view option, bool allow_any_command = false);
bool valid_command_name(std::string_view name);

// One single-quoted shell word, whatever bytes `value` holds ('\'' for embedded quotes).
std::string shell_quote(std::string_view value);

// GNU parallel's replacement strings, applied to the input text.
std::string without_extension(std::string_view path);  // {.}: "dir/a.jpg" -> "dir/a"
std::string base_name(std::string_view path);          // {/}: "dir/a.jpg" -> "a.jpg"
std::string dir_name(std::string_view path);           // {//}: as dirname(1), "a.jpg" -> "."

// What a shell runs for one item: the script (the template with each replacement string
// rewritten as a quoted reference to a positional parameter) and the parameters' values, which
// the shell receives as $1, $2, ... and never parses (see CommandTemplate).
struct ShellScript {
  std::string text;
  std::vector<std::string> parameters;
  std::optional<std::string>
      stdin_data;  // the command's stdin (seppo map --pipe); unset: /dev/null
};

// A command template split into literal text and replacement strings: {} {.} {/} {//} {/.},
// and the positional {N} {N.} {N/} {N//} {N/.} for the N-th argument of an item with several
// (`seppo map ... ::: a b ::: 1 2`, --colsep). Other braces are literal (awk '{print $1}' stays
// as written). {#} is the job number (seppo map sends it with each item, §5.2 of
// docs/protocol.md), {%} the job slot (a worker process's number, 1..-j). {= =} is refused: no
// Perl runs. A template without any replacement string ({#} and {%} count) gets " {}" appended,
// as GNU parallel does.
//
// Input is never code: the template is read as the shell reads its quoting, and each
// replacement string becomes a quoted reference to a positional parameter, written for the
// context it stands in: "${1}" bare, ${1} inside double quotes or an unquoted here-document's
// body, '"${1}"' (close, reference, reopen) inside single quotes. The shell expands it once, as
// data, whatever the input holds. Refused, because no reference there is data: a replacement
// string right after $, inside $(( )), or in the body of a quoted here-document (<<'END').
// What a command does with its argument is the operator's: `eval {}`, `trap {} EXIT`,
// `sh -c {}` hand the input to a shell as code because the template says so.
class CommandTemplate {
 public:
  // Where a replacement string stands, as the shell's quoting goes.
  enum class Context : unsigned char {
    Bare,
    Double,          // "..."
    Single,          // '...'
    Ansi,            // $'...'
    Heredoc,         // the body of <<END
    HeredocLiteral,  // the body of <<'END'
    Arithmetic,      // $(( ))
  };
  // `append_input` false: nothing is appended to a template without replacement strings (GNU
  // parallel's --pipe, where the input is stdin).
  explicit CommandTemplate(std::string text, bool append_input = true);
  const std::string& text() const { return text_; }
  // The command line with each value written in, quoted for its context: what `seppo map
  // --dry-run` prints (GNU parallel's form where parallel accepts the template), and a line
  // that runs like script() does. Throws std::invalid_argument for an input with a NUL byte.
  std::string expand(std::string_view input) const;
  // Several arguments: {} and {.} etc. stand for all of them, each one word, space-separated
  // (GNU parallel's meaning); {N} for the N-th (empty beyond the last). `seq` fills {#}, `slot`
  // {%}. `for_display` quotes only words that need it, as `parallel --dry-run` prints them; the
  // line runs the same either way.
  std::string expand(const std::vector<std::string>& args, std::uint64_t seq = 0, unsigned slot = 0,
                     bool for_display = false) const;
  // What runs: the values as parameters. Throws std::invalid_argument for a NUL byte (no
  // argument vector can carry one).
  ShellScript script(const std::vector<std::string>& args, std::uint64_t seq = 0,
                     unsigned slot = 0) const;

  // Why this template hands an input to a program that runs it as code (`sh -c {}`,
  // `eval {}`, `{}` as the command word), or empty when it does not. A lint for the usual
  // mistakes, not a proof: a worker refuses such templates unless started with
  // --allow-any-command.
  std::string runs_input_as_code() const;
  // Whether {#} appears: such a template needs each item's job number.
  bool uses_seq() const;

 private:
  enum class Kind : unsigned char {
    Literal,
    Input,
    NoExtension,
    Base,
    Dir,
    BaseNoExtension,
    Seq,
    Slot
  };
  struct Piece {
    Kind kind;
    std::string literal;
    unsigned position = 0;  // 0: every argument; N: the N-th
    Context context = Context::Bare;
    // For the lint: the template text of the simple command it stands in, up to it; for a
    // here-document's body, the command that reads the body instead (`reader`).
    std::string command;
    std::string reader;
  };
  template <class Emit>
  void fill(const std::vector<std::string>& args, std::uint64_t seq, unsigned slot, Emit&& emit,
            std::string& line) const;
  std::string text_;
  std::vector<Piece> pieces_;
};

// GNU parallel's -X (context replace) for an item of `args` arguments: each blank-separated word
// of `text` holding {} {.} {/} {//} {/.} is repeated once per argument, the k-th copy's with {k}
// {k.}...; a template without replacement strings gets " {}" first, as CommandTemplate appends
// it. Throws std::invalid_argument as CommandTemplate does.
std::string context_replaced(const std::string& text, std::size_t args);

// One word for a command line shown to a person: bare when the shell would read it unchanged.
std::string display_quote(std::string_view value);

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
                       const std::string& cwd = {}, const std::string* stdin_data = nullptr) const;
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
