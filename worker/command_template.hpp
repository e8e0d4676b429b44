// Command templates and their safety analysis (issue 27 §3 split it from running them, in
// shell_command.hpp): GNU parallel's replacement strings, read as the shell reads the template's
// quoting, so that an input is always data; and the refusal of templates that run their input
// as code. No process is started here: `seppo` (the CLI) parses, checks and shows templates
// with this alone.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace seppo::worker {

inline constexpr std::size_t kMaxCommandName = 256;

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
  // NAME=VALUE set for the command (seppo map --env NAME), over the worker's own.
  std::vector<std::string> environment = {};
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

}  // namespace seppo::worker
