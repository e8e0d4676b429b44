#include "worker/shell_command.hpp"

#include <algorithm>
#include <array>
#include <cctype>
#include <charconv>
#include <chrono>
#include <cstdlib>
#include <initializer_list>
#include <optional>
#include <stdexcept>

#include <sys/wait.h>
#include <unistd.h>

#include "protocol/command_record.hpp"
#include "seppo/convert.hpp"
#include "seppo/module.hpp"

namespace seppo::worker {

bool valid_command_name(std::string_view name) {
  if (name.empty() || name.size() > kMaxCommandName) return false;
  for (const char c : name) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '_' || c == '-' || c == '.';
    if (!ok) return false;
  }
  return true;
}

CommandSpec parse_command_option(std::string_view option, bool allow_any_command) {
  const auto equals = option.find('=');
  if (equals == std::string_view::npos) {
    throw std::invalid_argument("--command " + std::string(option) +
                                ": expected NAME=TEMPLATE, e.g. thumbnail='convert {} {.}.png'");
  }
  CommandSpec spec{std::string(option.substr(0, equals)), std::string(option.substr(equals + 1))};
  if (!valid_command_name(spec.name)) {
    throw std::invalid_argument("--command " + std::string(option) + ": the name must be 1 to " +
                                std::to_string(kMaxCommandName) +
                                " letters, digits, '_', '-' or '.'");
  }
  if (spec.command_template.find_first_not_of(" \t") == std::string::npos) {
    throw std::invalid_argument("--command " + spec.name + ": the command is empty");
  }
  std::string code;
  try {
    code = CommandTemplate(spec.command_template).runs_input_as_code();
  } catch (const std::invalid_argument& e) {
    throw std::invalid_argument("--command " + spec.name + ": " + e.what());
  }
  if (!code.empty() && !allow_any_command) {
    throw std::invalid_argument("--command " + spec.name + ": refused: " + code +
                                ", so any client could run anything as this worker's user "
                                "(start the worker with --allow-any-command to allow it)");
  }
  return spec;
}

std::string shell_quote(std::string_view value) {
  std::string quoted = "'";
  for (const char c : value) {
    if (c == '\'')
      quoted += "'\\''";  // close, an escaped quote, reopen
    else
      quoted += c;
  }
  quoted += '\'';
  return quoted;
}

// GNU parallel's definition, s:\.[^/.]*$::, so command lines carry over unchanged: the last dot
// after the last slash starts the extension, even a leading one (".bashrc" -> "").
std::string without_extension(std::string_view path) {
  const auto dot = path.find_last_of('.');
  if (dot == std::string_view::npos) return std::string(path);
  const auto slash = path.find_last_of('/');
  if (slash != std::string_view::npos && slash > dot) return std::string(path);
  return std::string(path.substr(0, dot));
}

// GNU parallel's s:.*/::, so "dir/" has the empty basename.
std::string base_name(std::string_view path) {
  const auto slash = path.find_last_of('/');
  return std::string(slash == std::string_view::npos ? path : path.substr(slash + 1));
}

// dirname(1), as GNU parallel's {//} uses it.
std::string dir_name(std::string_view path) {
  auto end = path.find_last_not_of('/');
  if (end == std::string_view::npos) return path.empty() ? "." : "/";
  const auto slash = path.find_last_of('/', end);
  if (slash == std::string_view::npos) return ".";
  end = path.find_last_not_of('/', slash);
  if (end == std::string_view::npos) return "/";
  return std::string(path.substr(0, end + 1));
}

namespace {

// A replacement string at the start of `rest`: its kind, argument position and length.
struct Found {
  int kind = -1;  // a CommandTemplate Kind, or -1 for none
  unsigned position = 0;
  std::size_t length = 0;
};

}  // namespace

CommandTemplate::CommandTemplate(std::string text) : text_(std::move(text)) {
  // {N} before the suffixes, longest suffix first: "{//}" before "{/}".
  const auto find_token = [](std::string_view rest) {
    Found found;
    if (rest.starts_with("{#}")) return Found{static_cast<int>(Kind::Seq), 0, 3};
    if (rest.starts_with("{%}")) return Found{static_cast<int>(Kind::Slot), 0, 3};
    std::size_t i = 1;
    unsigned position = 0;
    while (i < rest.size() && i < 6 && rest[i] >= '0' && rest[i] <= '9') {
      position = position * 10 + static_cast<unsigned>(rest[i] - '0');
      ++i;
    }
    if (i > 1 && position == 0) return found;  // {0} is the command's own text
    static constexpr std::array<std::pair<std::string_view, Kind>, 5> suffixes = {{
        {"//}", Kind::Dir},
        {"/.}", Kind::BaseNoExtension},
        {"/}", Kind::Base},
        {".}", Kind::NoExtension},
        {"}", Kind::Input},
    }};
    for (const auto& [suffix, kind] : suffixes) {
      if (rest.substr(i).starts_with(suffix)) {
        return Found{static_cast<int>(kind), position, i + suffix.size()};
      }
    }
    return found;
  };
  const std::string_view all = text_;
  std::string literal;
  bool replaced = false;
  // The shell's quoting state: a value is one single-quoted word only where the shell reads a
  // new word. Inside the operator's own quotes, or after a $, an input's quote characters would
  // end the quoting and run as code; after a backslash the brace is the command's own.
  char quote = 0;        // ' or " while inside such quotes
  bool escaped = false;  // the previous character was a backslash outside single quotes
  for (std::size_t i = 0; i < all.size();) {
    if (all[i] == '{' && !escaped) {
      const std::string_view rest = all.substr(i);
      const Found found = find_token(rest);
      if (rest.starts_with("{=")) {
        throw std::invalid_argument(
            "{= =} is not supported: no Perl runs; use {} {.} {/} {//} {/.} {N} {#} {%}");
      }
      if (found.kind >= 0) {
        const std::string_view token = rest.substr(0, found.length);
        if (quote != 0 || (i > 0 && all[i - 1] == '$')) {
          throw std::invalid_argument(
              std::string(token) +
              " inside quotes or after $ would let an input end the quoting and run as shell "
              "code: write it bare, each value is passed as one quoted word already");
        }
        if (!literal.empty()) pieces_.push_back(Piece{Kind::Literal, std::move(literal)});
        literal.clear();
        pieces_.push_back(Piece{static_cast<Kind>(found.kind), {}, found.position});
        replaced = true;  // any replacement string, {#} and {%} too: parallel appends nothing
        i += found.length;
        continue;
      }
    }
    const char c = all[i];
    if (escaped) {
      escaped = false;
    } else if (quote == '\'') {
      if (c == '\'') quote = 0;
    } else if (c == '\\') {
      escaped = true;
    } else if (quote == '"') {
      if (c == '"') quote = 0;
    } else if (c == '\'' || c == '"') {
      quote = c;
    }
    literal += all[i++];
  }
  if (quote != 0) {
    throw std::invalid_argument(std::string("the command has an unterminated ") + quote + " quote");
  }
  if (!literal.empty()) pieces_.push_back(Piece{Kind::Literal, std::move(literal)});
  if (!replaced) {
    pieces_.push_back(Piece{Kind::Literal, " "});
    pieces_.push_back(Piece{Kind::Input, {}});
  }
}

bool CommandTemplate::uses_seq() const {
  return std::any_of(pieces_.begin(), pieces_.end(),
                     [](const Piece& piece) { return piece.kind == Kind::Seq; });
}

std::string CommandTemplate::expand(std::string_view input) const {
  return expand(std::vector<std::string>{std::string(input)});
}

std::string display_quote(std::string_view value) {
  const bool plain = !value.empty() && value.find_first_not_of(
                                           "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                           "0123456789_-./:=+,@%") == std::string_view::npos;
  return plain ? std::string(value) : shell_quote(value);
}

std::string CommandTemplate::expand(const std::vector<std::string>& args, std::uint64_t seq,
                                    unsigned slot, bool for_display) const {
  for (const std::string& arg : args) {
    if (arg.find('\0') != std::string::npos) {
      throw std::invalid_argument("argument contains a NUL byte, which no command line can carry");
    }
  }
  const auto quote = [for_display](std::string_view v) {
    return for_display ? display_quote(v) : shell_quote(v);
  };
  const auto transform = [](Kind kind, const std::string& input) -> std::string {
    switch (kind) {
      case Kind::NoExtension:
        return without_extension(input);
      case Kind::Base:
        return base_name(input);
      case Kind::Dir:
        return dir_name(input);
      case Kind::BaseNoExtension:
        return without_extension(base_name(input));
      default:
        return input;
    }
  };
  std::string line;
  for (const Piece& piece : pieces_) {
    switch (piece.kind) {
      case Kind::Literal:
        line += piece.literal;
        break;
      case Kind::Seq:
        line += std::to_string(seq);
        break;
      case Kind::Slot:
        line += std::to_string(slot);
        break;
      default:
        if (piece.position > 0) {
          line +=
              quote(piece.position <= args.size() ? transform(piece.kind, args[piece.position - 1])
                                                  : std::string());
        } else {
          for (std::size_t a = 0; a < args.size(); ++a) {
            if (a > 0) line += ' ';
            line += quote(transform(piece.kind, args[a]));
          }
        }
    }
  }
  return line;
}

namespace {

bool one_of(std::string_view word, std::initializer_list<std::string_view> names) {
  for (const std::string_view name : names) {
    if (word == name) return true;
  }
  return false;
}

// Programs that run their argument after -c or -e (or --eval) as code.
bool is_interpreter(std::string_view program) {
  return one_of(program,
                {"sh",      "bash", "dash", "zsh",     "ksh",     "mksh",     "ash",  "fish",
                 "csh",     "tcsh", "perl", "ruby",    "python3", "python",   "node", "nodejs",
                 "busybox", "php",  "lua",  "Rscript", "tclsh",   "osascript"});
}

// Programs whose first operand is their script.
bool takes_script_first(std::string_view program) {
  return one_of(program, {"awk", "gawk", "mawk", "nawk", "sed", "jq"});
}

// Programs that only start another one (with their own options and arguments): `timeout 10
// sh -c {}` is `sh -c {}`.
bool is_wrapper(std::string_view program) {
  return one_of(program,
                {"env",     "exec",   "nice",   "nohup",    "command", "time",    "builtin",
                 "timeout", "stdbuf", "setsid", "ionice",   "chrt",    "taskset", "flock",
                 "sudo",    "doas",   "xargs",  "unbuffer", "chroot",  "runuser"});
}

// -c, -e, -lc, -ec, -E, --eval, --command, -p (node): the next operand is code.
bool is_code_option(std::string_view word) {
  if (one_of(word, {"--eval", "--command", "--print", "-p"})) return true;
  if (word.size() < 2 || word.size() > 5 || word[0] != '-' || word[1] == '-') return false;
  return word.find_first_of("ceE") != std::string_view::npos;
}

// The words of `text` as the shell would split them, roughly: quotes removed, enough to name a
// program and its options.
std::vector<std::string> rough_words(std::string_view text) {
  std::vector<std::string> words;
  std::string word;
  bool in_word = false;
  char quote = 0;
  for (const char c : text) {
    if (quote != 0) {
      if (c == quote) {
        quote = 0;
      } else {
        word += c;
      }
    } else if (c == '\'' || c == '"') {
      quote = c;
      in_word = true;
    } else if (c == ' ' || c == '\t' || c == '\n') {
      if (in_word) words.push_back(std::move(word));
      word.clear();
      in_word = false;
    } else {
      word += c;
      in_word = true;
    }
  }
  if (in_word) words.push_back(std::move(word));
  return words;
}

}  // namespace

std::string CommandTemplate::runs_input_as_code() const {
  // The literal text of the current simple command: what follows the last ; | & ( or newline.
  std::string command;
  for (const Piece& piece : pieces_) {
    if (piece.kind == Kind::Literal) {
      for (const char c : piece.literal) {
        if (c == ';' || c == '|' || c == '&' || c == '(' || c == '\n' || c == '`') {
          command.clear();
        } else {
          command += c;
        }
      }
      continue;
    }
    if (piece.kind == Kind::Seq || piece.kind == Kind::Slot) {
      command += '0';
      continue;
    }
    const std::vector<std::string> words = rough_words(command);
    // `env X=1 sh -c {}`, `timeout 10 nice -n 5 sh -c {}`, `exec {}`: look past what only
    // starts a program, with its options and their values (words that are options, numbers or
    // assignments).
    std::size_t first = 0;
    while (first < words.size()) {
      const std::string& word = words[first];
      if (word.find('=') != std::string::npos && word[0] != '-') {
        ++first;
      } else if (is_wrapper(base_name(word))) {
        ++first;
        while (
            first < words.size() &&
            (words[first][0] == '-' || std::isdigit(static_cast<unsigned char>(words[first][0])))) {
          ++first;
        }
      } else {
        break;
      }
    }
    if (first == words.size()) {
      return "a replacement string is the command word: the input would name the program to run";
    }
    const std::string program = base_name(words[first]);
    if (program == "eval" || program == "source" || program == ".") {
      return program + " runs the input as shell code";
    }
    if (program == "ssh" || program == "su") {
      return program + " hands its arguments to a shell, which would run the input as code";
    }
    // Only options between the program (or its code option) and the value: the value is the
    // script. `sh -c 'cmd "$1"' sh {}` passes it as data and stays allowed.
    std::size_t operands_after_code = words.size();  // none seen: no code option yet
    bool code_option = false;
    for (std::size_t i = first + 1; i < words.size(); ++i) {
      if (is_code_option(words[i])) {
        code_option = true;
        operands_after_code = 0;
      } else if (words[i][0] != '-') {
        ++operands_after_code;
      }
    }
    if (is_interpreter(program) && code_option && operands_after_code == 0) {
      return program + " " + words.back() + " {} runs the input as code";
    }
    if (takes_script_first(program) &&
        std::all_of(words.begin() + static_cast<std::ptrdiff_t>(first) + 1, words.end(),
                    [](const std::string& w) { return w[0] == '-'; })) {
      return program + " {} runs the input as its script";
    }
    command += "x";  // the value: one word
  }
  return {};
}

namespace {

// Numbers print as a shell user would type them: shortest round-trip text, 2 not 2.000000.
template <class T>
std::string number_text(T value) {
  std::array<char, 64> buffer{};
  const auto [end, error] = std::to_chars(buffer.data(), buffer.data() + buffer.size(), value);
  return std::string(buffer.data(), error == std::errc{} ? end : buffer.data());
}

std::string argument_text(const msgpack::object& item) {
  switch (item.type) {
    case msgpack::type::STR:
      return std::string(item.via.str.ptr, item.via.str.size);
    case msgpack::type::BIN:
      return std::string(item.via.bin.ptr, item.via.bin.size);
    case msgpack::type::POSITIVE_INTEGER:
      return number_text(item.via.u64);
    case msgpack::type::NEGATIVE_INTEGER:
      return number_text(item.via.i64);
    case msgpack::type::FLOAT32:
      return number_text(static_cast<float>(item.via.f64));
    case msgpack::type::FLOAT64:
      return number_text(item.via.f64);
    case msgpack::type::BOOLEAN:
      return item.via.boolean ? "true" : "false";
    default:
      throw std::invalid_argument(std::string("argument: expected string or number, got ") +
                                  type_name(item.type));
  }
}

// The stderr tail as one line: error messages are printed one per item.
std::string one_line(std::string_view tail, bool cut) {
  // A tail cut mid-character starts at the next UTF-8 character.
  while (cut && !tail.empty() && (static_cast<unsigned char>(tail.front()) & 0xC0) == 0x80) {
    tail.remove_prefix(1);
  }
  const auto first = tail.find_first_not_of(" \t\r\n");
  if (first == std::string_view::npos) return "";
  tail = tail.substr(first, tail.find_last_not_of(" \t\r\n") - first + 1);
  std::string text = cut ? "..." : "";
  for (std::size_t i = 0; i < tail.size(); ++i) {
    if (tail[i] == '\n' || tail[i] == '\r') {
      while (i + 1 < tail.size() && (tail[i + 1] == '\n' || tail[i + 1] == '\r')) ++i;
      text += " | ";
    } else {
      text += tail[i];
    }
  }
  return text;
}

}  // namespace

ShellCommand::ShellCommand(std::string name, std::string command_template, CommandLimits limits)
    : name_(std::move(name)), template_(std::move(command_template)), limits_(limits) {}

std::vector<std::string> ShellCommand::arguments(const msgpack::object& input) const {
  std::vector<std::string> args;
  try {
    // An array is an item of several arguments ({1} {2}, `seppo map ... ::: a b ::: 1 2`).
    if (input.type == msgpack::type::ARRAY) {
      for (std::uint32_t i = 0; i < input.via.array.size; ++i) {
        args.push_back(argument_text(input.via.array.ptr[i]));
      }
    } else {
      args.push_back(argument_text(input));
    }
  } catch (const std::invalid_argument& e) {
    throw std::runtime_error("command " + name_ + ": " + e.what());
  }
  return args;
}

std::string ShellCommand::line_for(const std::vector<std::string>& args, std::uint64_t seq,
                                   bool for_display) const {
  // Job numbers start at 1: 0 is an item that came without one (a plain item).
  if (seq == 0 && template_.uses_seq()) {
    throw std::runtime_error("command " + name_ +
                             ": its template uses {#}, the job number, which this item does not "
                             "carry (send {\"args\": [...], \"seq\": N} as seppo map does)");
  }
  try {
    return template_.expand(args, seq, worker_slot(), for_display);
  } catch (const std::invalid_argument& e) {
    throw std::runtime_error("command " + name_ + ": " + e.what());
  }
}

namespace {

CommandRun start_run(const std::string& name, const std::string& line,
                     const CommandLimits& limits) {
  try {
    return run_shell(line, limits);
  } catch (const std::exception& e) {
    throw std::runtime_error("command " + name + " could not start: " + e.what());
  }
}

// Why a run failed, as the item's error message; empty when it succeeded.
std::string failure(const std::string& name, const CommandRun& outcome,
                    const CommandLimits& limits) {
  if (outcome.out_over_limit) {
    return "command " + name + " wrote more than " + std::to_string(limits.max_stdout) +
           " bytes to stdout and was stopped";
  }
  if (outcome.wait_status == 0) return {};
  const bool cut = outcome.err_tail.size() >= limits.stderr_tail;
  const std::string err = one_line(outcome.err_tail, cut);
  return "command " + name + " " + describe_wait_status(outcome.wait_status) +
         (err.empty() ? "" : ": " + err);
}

const std::string& host_name() {
  static const std::string name = [] {
    char buffer[256] = {};
    return ::gethostname(buffer, sizeof buffer - 1) == 0 ? std::string(buffer) : std::string();
  }();
  return name;
}

}  // namespace

std::string ShellCommand::run(const msgpack::object& input) const {
  return run_args(arguments(input));
}

std::string ShellCommand::run_text(std::string_view input) const {
  return run_args({std::string(input)});
}

std::string ShellCommand::run_args(const std::vector<std::string>& args, std::uint64_t seq,
                                   const std::string& cwd) const {
  CommandLimits limits = limits_;
  if (limits.client_folders && !cwd.empty()) limits.cwd = cwd;
  CommandRun outcome = start_run(name_, line_for(args, seq), limits);
  const std::string why = failure(name_, outcome, limits_);
  if (!why.empty()) throw std::runtime_error(why);
  // One line per result in `seppo map`: the line's own newline is not part of the value.
  if (!outcome.out.empty() && outcome.out.back() == '\n') outcome.out.pop_back();
  return std::move(outcome.out);
}

void ShellCommand::run_item(msgpack::packer<msgpack::sbuffer>& packer,
                            const msgpack::object& input) const {
  std::optional<wire::CommandRequest> request;
  try {
    request = wire::decode_command_request(input);
  } catch (const std::invalid_argument& e) {
    throw std::runtime_error("command " + name_ + ": " + e.what());
  }
  if (!request) {
    packer.pack(run(input));
    return;
  }
  const std::vector<std::string> args = arguments(*request->args);
  const std::uint64_t seq = request->seq.value_or(0);
  if (request->dry_run) {
    packer.pack(line_for(args, seq, true));
    return;
  }
  if (!request->record) {
    packer.pack(run_args(args, seq, request->cwd));
    return;
  }
  // A record keeps stderr too (for --results), and a failed run is a record as well: the
  // client wants its exit status and output, as parallel's --joblog and --results show them.
  const std::string line = line_for(args, seq);
  CommandLimits limits = limits_;
  limits.stderr_tail = std::max<std::size_t>(limits.stderr_tail, std::size_t{1} << 20);
  if (limits.client_folders && !request->cwd.empty()) limits.cwd = request->cwd;
  wire::CommandRecord record;
  record.start_us =
      static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::microseconds>(
                                     std::chrono::system_clock::now().time_since_epoch())
                                     .count());
  const auto started = std::chrono::steady_clock::now();
  CommandRun outcome = start_run(name_, line, limits);
  record.runtime_us =
      static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::microseconds>(
                                     std::chrono::steady_clock::now() - started)
                                     .count());
  record.message = failure(name_, outcome, limits_);
  if (outcome.out.size() > limits_.max_stdout) outcome.out.resize(limits_.max_stdout);
  record.out = std::move(outcome.out);
  record.err = std::move(outcome.err_tail);
  record.exit = WIFEXITED(outcome.wait_status) ? WEXITSTATUS(outcome.wait_status) : -1;
  record.signal = WIFSIGNALED(outcome.wait_status) ? WTERMSIG(outcome.wait_status) : 0;
  record.host = host_name();
  record.command = line_for(args, seq, true);
  wire::pack_command_record(packer, record);
}

int ShellCommand::call_chunk(const char* input, std::size_t size,
                             seppo_sink* output) const noexcept {
  return detail::call_each_item(
      input, size, output,
      [this](msgpack::packer<msgpack::sbuffer>& packer, msgpack::sbuffer& buffer,
             const msgpack::object& item) {
        // The results travel as one message: bounded like one command's output, so a chunk of
        // many chatty commands can neither exhaust the worker nor exceed the broker's limit.
        if (buffer.size() > limits_.max_stdout) {
          throw std::runtime_error("command " + name_ +
                                   " not run: its chunk's results already hold " +
                                   std::to_string(buffer.size()) + " bytes, over the " +
                                   std::to_string(limits_.max_stdout) +
                                   "-byte limit; send fewer items a chunk "
                                   "(seppo map --chunk-size)");
        }
        // Packed apart, so an item that throws cannot leave half an entry.
        msgpack::sbuffer one;
        msgpack::packer<msgpack::sbuffer> value(one);
        run_item(value, item);
        entry::begin_value(packer);
        buffer.write(one.data(), one.size());
      });
}

unsigned worker_slot() {
  const char* text = std::getenv("SEPPO_WORKER_SLOT");
  if (text == nullptr) return 1;
  char* end = nullptr;
  const unsigned long slot = std::strtoul(text, &end, 10);
  return end != text && *end == '\0' && slot >= 1 && slot <= 1u << 20 ? static_cast<unsigned>(slot)
                                                                      : 1;
}

Function command_function(const CommandSpec& spec, CommandLimits limits) {
  auto command = std::make_shared<const ShellCommand>(spec.name, spec.command_template, limits);
  Function function;
  function.name = spec.name;
  function.signature = "(string) -> string";
  function.interruptible = limits.cancel != nullptr;
  function.call = [command](const char* input, std::size_t size, seppo_sink* output) {
    return command->call_chunk(input, size, output);
  };
  return function;
}

}  // namespace seppo::worker
