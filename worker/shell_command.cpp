#include "worker/shell_command.hpp"

#include <array>
#include <charconv>
#include <stdexcept>

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

CommandSpec parse_command_option(std::string_view option) {
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
  try {
    CommandTemplate check(spec.command_template);
  } catch (const std::invalid_argument& e) {
    throw std::invalid_argument("--command " + spec.name + ": " + e.what());
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

CommandTemplate::CommandTemplate(std::string text) : text_(std::move(text)) {
  struct Token {
    std::string_view text;
    Kind kind;
  };
  // Longest first: "{//}" before "{/}".
  static constexpr std::array<Token, 5> tokens = {{{"{//}", Kind::Dir},
                                                   {"{/.}", Kind::BaseNoExtension},
                                                   {"{/}", Kind::Base},
                                                   {"{.}", Kind::NoExtension},
                                                   {"{}", Kind::Input}}};
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
      if (rest.starts_with("{#}") || rest.starts_with("{%}") || rest.starts_with("{=")) {
        throw std::invalid_argument(
            std::string(rest.substr(0, 3)) +
            " is not supported: a worker knows neither an item's position nor a job slot; "
            "use {} {.} {/} {//} {/.}");
      }
      const Token* found = nullptr;
      for (const Token& t : tokens) {
        if (rest.starts_with(t.text)) {
          found = &t;
          break;
        }
      }
      if (found != nullptr) {
        if (quote != 0 || (i > 0 && all[i - 1] == '$')) {
          throw std::invalid_argument(
              std::string(found->text) +
              " inside quotes or after $ would let an input end the quoting and run as shell "
              "code: write it bare, each value is passed as one quoted word already");
        }
        if (!literal.empty()) pieces_.push_back(Piece{Kind::Literal, std::move(literal)});
        literal.clear();
        pieces_.push_back(Piece{found->kind, {}});
        replaced = true;
        i += found->text.size();
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
  if (!replaced) {
    literal += " ";
    pieces_.push_back(Piece{Kind::Literal, std::move(literal)});
    pieces_.push_back(Piece{Kind::Input, {}});
  } else if (!literal.empty()) {
    pieces_.push_back(Piece{Kind::Literal, std::move(literal)});
  }
}

std::string CommandTemplate::expand(std::string_view input) const {
  if (input.find('\0') != std::string_view::npos) {
    throw std::invalid_argument("argument contains a NUL byte, which no command line can carry");
  }
  std::string line;
  for (const Piece& piece : pieces_) {
    switch (piece.kind) {
      case Kind::Literal:
        line += piece.literal;
        break;
      case Kind::Input:
        line += shell_quote(input);
        break;
      case Kind::NoExtension:
        line += shell_quote(without_extension(input));
        break;
      case Kind::Base:
        line += shell_quote(base_name(input));
        break;
      case Kind::Dir:
        line += shell_quote(dir_name(input));
        break;
      case Kind::BaseNoExtension:
        line += shell_quote(without_extension(base_name(input)));
        break;
    }
  }
  return line;
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

std::string ShellCommand::run(const msgpack::object& input) const {
  std::string text;
  try {
    text = argument_text(input);
  } catch (const std::invalid_argument& e) {
    throw std::runtime_error("command " + name_ + ": " + e.what());
  }
  return run_text(text);
}

std::string ShellCommand::run_text(std::string_view input) const {
  std::string line;
  try {
    line = template_.expand(input);
  } catch (const std::invalid_argument& e) {
    throw std::runtime_error("command " + name_ + ": " + e.what());
  }
  CommandRun outcome;
  try {
    outcome = run_shell(line, limits_);
  } catch (const std::exception& e) {
    throw std::runtime_error("command " + name_ + " could not start: " + e.what());
  }
  if (outcome.out_over_limit) {
    throw std::runtime_error("command " + name_ + " wrote more than " +
                             std::to_string(limits_.max_stdout) +
                             " bytes to stdout and was stopped");
  }
  if (outcome.wait_status != 0) {
    const bool cut = outcome.err_tail.size() >= limits_.stderr_tail;
    const std::string err = one_line(outcome.err_tail, cut);
    throw std::runtime_error("command " + name_ + " " + describe_wait_status(outcome.wait_status) +
                             (err.empty() ? "" : ": " + err));
  }
  // One line per result in `seppo map`: the line's own newline is not part of the value.
  if (!outcome.out.empty() && outcome.out.back() == '\n') outcome.out.pop_back();
  return std::move(outcome.out);
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
        const std::string result = run(item);
        packer.pack_array(2).pack(0).pack(result);
      });
}

Function command_function(const CommandSpec& spec, CommandLimits limits) {
  auto command = std::make_shared<const ShellCommand>(spec.name, spec.command_template, limits);
  Function function;
  function.name = spec.name;
  function.signature = "(string) -> string";
  function.call = [command](const char* input, std::size_t size, seppo_sink* output) {
    return command->call_chunk(input, size, output);
  };
  return function;
}

}  // namespace seppo::worker
