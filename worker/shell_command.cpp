#include "worker/shell_command.hpp"

#include <algorithm>
#include <array>
#include <cctype>
#include <charconv>
#include <chrono>
#include <cstdlib>
#include <fstream>
#include <initializer_list>
#include <optional>
#include <sstream>
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

// {N} before the suffixes, longest suffix first: "{//}" before "{/}".
Found find_token(std::string_view rest, int seq_kind, int slot_kind,
                 const std::array<std::pair<std::string_view, int>, 5>& suffixes) {
  if (rest.starts_with("{#}")) return Found{seq_kind, 0, 3};
  if (rest.starts_with("{%}")) return Found{slot_kind, 0, 3};
  std::size_t i = 1;
  unsigned position = 0;
  while (i < rest.size() && i < 6 && rest[i] >= '0' && rest[i] <= '9') {
    position = position * 10 + static_cast<unsigned>(rest[i] - '0');
    ++i;
  }
  if (i > 1 && position == 0) return {};  // {0} is the command's own text
  for (const auto& [suffix, kind] : suffixes) {
    if (rest.substr(i).starts_with(suffix)) return Found{kind, position, i + suffix.size()};
  }
  return {};
}

bool is_blank(char c) {
  return c == ' ' || c == '\t';
}

// Where a shell word may start, so `#` begins a comment.
bool starts_word_after(char previous) {
  return is_blank(previous) || previous == '\n' || previous == ';' || previous == '&' ||
         previous == '|' || previous == '(' || previous == ')';
}

std::vector<std::string> rough_words(std::string_view text, bool* open);
bool one_of(std::string_view word, std::initializer_list<std::string_view> names);

bool is_name_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
}

// Why a replacement string that ends `command` (the simple command's text before it) would
// reach bash, ksh or zsh as a variable name or an arithmetic expression, where a value like
// `a[$(cmd)]` runs cmd; empty when it is a plain word.
std::string operand_refusal(std::string_view command) {
  const std::vector<std::string> words = rough_words(command, nullptr);
  const bool attached = !command.empty() && !is_blank(command.back()) && command.back() != '\n';
  std::size_t p = 0;
  while (p < words.size()) {
    const std::string& w = words[p];
    const std::size_t eq = w.find('=');
    const bool assignment =
        eq != std::string::npos && eq > 0 &&
        std::all_of(w.begin(), w.begin() + static_cast<std::ptrdiff_t>(eq),
                    [](char c) { return is_name_char(c) || c == '[' || c == ']'; });
    if (assignment || w == "builtin" || w == "command") {
      ++p;
    } else {
      break;
    }
  }
  if (p >= words.size() || (attached && p + 1 == words.size())) return {};
  const std::string& program = words[p];
  const std::size_t own = attached ? words.size() - 1 : words.size();  // the token's word starts
  const std::string previous = own > p + 1 ? words[own - 1] : std::string();
  const std::string current = attached ? words.back() : std::string();
  const bool redirection = !previous.empty() && (previous.back() == '<' || previous.back() == '>');
  if (program == "let") return "as an operand of let (an arithmetic expression)";
  if (program == "declare" || program == "typeset" || program == "local" || program == "readonly" ||
      program == "export") {
    for (std::size_t k = p + 1; k < own; ++k) {
      if (words[k].starts_with('-') && words[k].find('i') != std::string::npos) {
        return "as an operand of " + program + " -i (an arithmetic expression)";
      }
    }
    if (current.find('=') == std::string::npos && !redirection) {
      return "as a name for " + program;
    }
    return {};
  }
  if ((program == "test" || program == "[" || program == "[[") && previous == "-v") {
    return "after " + program + " -v (a variable name)";
  }
  if (program == "printf" && previous == "-v") return "after printf -v (a variable name)";
  if (program == "read" && previous != "-p" && previous != "-d" && !redirection) {
    return "as an operand of read (a variable name)";
  }
  if (program == "unset" && !redirection) return "as an operand of unset (a variable name)";
  return {};
}

// Inside `name[ ]` in the word that ends at `i`: an array subscript, arithmetic in bash.
// `quoted` when `i` is inside double quotes, whose own brackets are text (`"a[{}]"`).
bool in_subscript(std::string_view all, std::size_t i, bool quoted) {
  unsigned depth = 0;
  for (std::size_t k = i; k > 0; --k) {
    const char d = all[k - 1];
    if (d == '"' && (k < 2 || all[k - 2] != '\\')) {
      quoted = !quoted;
      continue;
    }
    if (quoted) continue;
    if (is_blank(d) || d == '\n' || d == ';' || d == '&' || d == '|' || d == '(' || d == ')') {
      return false;
    }
    if (d == ']') {
      ++depth;
    } else if (d == '[') {
      if (depth == 0) return k >= 2 && is_name_char(all[k - 2]);
      --depth;
    }
  }
  return false;
}

// The index of the `close` that matches an `open` before `from` (nesting counted, backslash
// pairs skipped); all.size() when there is none.
std::size_t matching(std::string_view all, std::size_t from, char open, char close) {
  unsigned depth = 1;
  for (std::size_t k = from; k < all.size(); ++k) {
    if (all[k] == '\\') {
      ++k;
    } else if (all[k] == open) {
      ++depth;
    } else if (all[k] == close && --depth == 0) {
      return k;
    }
  }
  return all.size();
}

}  // namespace

// The template is read as the shell reads it, as far as quoting goes: the context of each
// replacement string decides how its parameter reference is written (see script()). Contexts
// are a stack: $( ) and ` ` open a new command inside quotes or a here-document's body.
CommandTemplate::CommandTemplate(std::string text) : text_(std::move(text)) {
  static constexpr std::array<std::pair<std::string_view, int>, 5> suffixes = {{
      {"//}", static_cast<int>(Kind::Dir)},
      {"/.}", static_cast<int>(Kind::BaseNoExtension)},
      {"/}", static_cast<int>(Kind::Base)},
      {".}", static_cast<int>(Kind::NoExtension)},
      {"}", static_cast<int>(Kind::Input)},
  }};
  struct Frame {
    Context context;
    char closer = 0;      // ')' for $( ), '`' for backquotes, 0 for the whole template
    unsigned parens = 0;  // unmatched ( inside this frame
    std::string delimiter;
    bool strip_tabs = false;  // <<-
    // Bare frames: where the current simple command starts. Here-documents: the command that
    // reads the body (the text before its <<).
    std::size_t command_start = 0;
    std::string reader;
  };
  struct PendingHeredoc {
    std::string delimiter;
    bool strip_tabs;
    bool quoted;
    std::string reader;
  };
  std::vector<Frame> stack{Frame{Context::Bare, 0, 0, {}, false, 0, {}}};
  // The text is read after the shell's own first step: line continuations (backslash-newline)
  // outside single quotes are removed, so `$\<newline>((` is seen as the `$((` it is.
  std::string source = text_;
  std::string_view all = source;
  // The text of the simple command a replacement string at `i` stands in, for the lint
  // (runs_input_as_code): from its innermost enclosing bare frame's command start.
  const auto command_at = [&](std::size_t i) -> std::pair<std::string, std::string> {
    for (auto frame = stack.rbegin(); frame != stack.rend(); ++frame) {
      if (frame->context == Context::Heredoc || frame->context == Context::HeredocLiteral) {
        return {std::string(), frame->reader};
      }
      if (frame->context == Context::Bare) {
        return {std::string(all.substr(frame->command_start, i - frame->command_start)), {}};
      }
    }
    return {};
  };
  std::vector<PendingHeredoc> pending;  // here-documents whose bodies start at the next newline
  // Removes the line continuations among the next few characters from `i`, up to a quote, a
  // comment or a newline (where they may not be continuations).
  const auto join_lines = [&](std::size_t i) {
    std::size_t j = i;
    for (int seen = 0; j + 1 < source.size() && seen < 4;) {
      const char d = source[j];
      if (d == '\\' && source[j + 1] == '\n') {
        source.erase(j, 2);
        all = source;
        continue;
      }
      if (d == '\'' || d == '#' || d == '\n') break;
      j += d == '\\' ? 2 : 1;
      ++seen;
    }
  };
  // A replacement string other than {#} and {%} in all[from, to): refused, saying where.
  const auto refuse_in = [&](std::size_t from, std::size_t to, const std::string& where) {
    for (std::size_t k = from; k < to && k < all.size(); ++k) {
      if (all[k] == '\\') {
        ++k;
        continue;
      }
      if (all[k] != '{') continue;
      const Found found = find_token(all.substr(k), static_cast<int>(Kind::Seq),
                                     static_cast<int>(Kind::Slot), suffixes);
      if (found.kind < 0 || found.kind == static_cast<int>(Kind::Seq) ||
          found.kind == static_cast<int>(Kind::Slot)) {
        continue;
      }
      throw std::invalid_argument(std::string(all.substr(k, found.length)) + " " + where +
                                  " is refused: bash, ksh and zsh evaluate that text as " +
                                  "arithmetic or a variable name, so an input there would be code");
    }
  };
  std::string literal;
  bool replaced = false;
  const auto flush = [&] {
    if (!literal.empty())
      pieces_.push_back(Piece{Kind::Literal, std::move(literal), 0, Context::Bare, {}, {}});
    literal.clear();
  };
  const auto copy = [&](std::size_t& i, std::size_t n) {
    n = std::min(n, all.size() - i);
    literal.append(all.substr(i, n));
    i += n;
  };
  const auto start_heredoc = [&] {
    const PendingHeredoc next = pending.front();
    pending.erase(pending.begin());
    stack.push_back(Frame{next.quoted ? Context::HeredocLiteral : Context::Heredoc, 0, 0,
                          next.delimiter, next.strip_tabs, 0, next.reader});
  };
  // At the start of a line of a here-document's body: its end, when the line is the delimiter.
  const auto at_heredoc_end = [&](std::size_t i) {
    const Frame& frame = stack.back();
    if (frame.strip_tabs) {
      while (i < all.size() && all[i] == '\t') ++i;
    }
    const std::string_view rest = all.substr(i);
    return rest.starts_with(frame.delimiter) &&
           (rest.size() == frame.delimiter.size() || rest[frame.delimiter.size()] == '\n');
  };
  bool line_start = false;  // inside a here-document's body, at the start of a line
  for (std::size_t i = 0; i < all.size();) {
    Frame& frame = stack.back();
    const Context context = frame.context;
    if (context == Context::Bare || context == Context::Double || context == Context::Arithmetic) {
      join_lines(i);
      if (i >= all.size()) break;
    }
    const bool in_heredoc = context == Context::Heredoc || context == Context::HeredocLiteral;
    if (in_heredoc && line_start) {
      line_start = false;
      if (at_heredoc_end(i)) {
        const std::size_t end = all.find('\n', i);
        copy(i, end == std::string_view::npos ? all.size() : end - i + 1);
        stack.pop_back();
        if (!pending.empty()) {
          start_heredoc();
          line_start = true;
        }
        continue;
      }
    }
    const char c = all[i];
    if (c == '{') {
      const std::string_view rest = all.substr(i);
      if (rest.starts_with("{=")) {
        throw std::invalid_argument(
            "{= =} is not supported: no Perl runs; use {} {.} {/} {//} {/.} {N} {#} {%}");
      }
      const Found found =
          find_token(rest, static_cast<int>(Kind::Seq), static_cast<int>(Kind::Slot), suffixes);
      if (found.kind >= 0) {
        const std::string token(rest.substr(0, found.length));
        const bool number =
            found.kind == static_cast<int>(Kind::Seq) || found.kind == static_cast<int>(Kind::Slot);
        if (i > 0 && all[i - 1] == '$' && context != Context::Single && context != Context::Ansi) {
          throw std::invalid_argument(token + " right after $ is refused: the shell would read " +
                                      "$" + token + " as its own expansion");
        }
        if (!number && context == Context::Arithmetic) {
          throw std::invalid_argument(
              token +
              " inside $(( )) is refused: the shell evaluates the text of an "
              "arithmetic expression, so an input there would be code");
        }
        if (!number && (context == Context::Bare || context == Context::Double)) {
          if (in_subscript(all, i, context == Context::Double)) {
            throw std::invalid_argument(token +
                                        " in an array subscript name[ ] is refused: bash "
                                        "evaluates a subscript as arithmetic, so an input there "
                                        "would be code");
          }
          const std::string why = operand_refusal(command_at(i).first);
          if (!why.empty()) {
            throw std::invalid_argument(token + " " + why +
                                        " is refused: bash evaluates that text as code when it "
                                        "holds a subscript like a[$(cmd)]");
          }
        }
        if (!number && context == Context::HeredocLiteral) {
          throw std::invalid_argument(
              token +
              " in the body of a quoted here-document (<<'END') is refused: the "
              "shell expands nothing there; quote no part of the delimiter (<<END)");
        }
        flush();
        auto [command, reader] = command_at(i);
        pieces_.push_back(Piece{static_cast<Kind>(found.kind),
                                {},
                                found.position,
                                context,
                                std::move(command),
                                std::move(reader)});
        replaced = true;  // any replacement string, {#} and {%} too: parallel appends nothing
        i += found.length;
        continue;
      }
    }
    const std::string_view rest = all.substr(i);
    switch (context) {
      case Context::Single:
        if (c == '\'') stack.pop_back();
        copy(i, 1);
        continue;
      case Context::Ansi:
        if (c == '\\') {
          copy(i, 2);
          continue;
        }
        if (c == '\'') stack.pop_back();
        copy(i, 1);
        continue;
      case Context::HeredocLiteral:
        if (c == '\n') line_start = true;
        copy(i, 1);
        continue;
      case Context::Arithmetic:
        if (c == '(') {
          ++frame.parens;
        } else if (c == ')' && frame.parens > 0) {
          --frame.parens;
        } else if (rest.starts_with("))")) {
          stack.pop_back();
          copy(i, 2);
          continue;
        }
        copy(i, 1);
        continue;
      default:
        break;
    }
    // Bare, Double and Heredoc: backslashes, command substitutions and their ends.
    if (c == '\\') {
      if (context == Context::Heredoc && i + 1 < all.size() && all[i + 1] == '\n') {
        line_start = true;
      }
      copy(i, 2);
      continue;
    }
    if (rest.starts_with("${")) {
      refuse_in(i + 2, matching(all, i + 2, '{', '}'), "inside ${ }");
    } else if (rest.starts_with("$[")) {
      refuse_in(i + 2, matching(all, i + 2, '[', ']'), "inside $[ ]");
    } else if (context == Context::Bare && rest.starts_with("((") &&
               (i == 0 || all[i - 1] != '$')) {
      refuse_in(i + 2, matching(all, i + 1, '(', ')'), "inside (( ))");
    } else if (context == Context::Bare && rest.starts_with("[[") &&
               (i == 0 || !is_name_char(all[i - 1]))) {
      const std::size_t end = std::min(all.find("]]", i + 2), all.size());
      for (const std::string& word : rough_words(all.substr(i + 2, end - i - 2), nullptr)) {
        if (one_of(word, {"-eq", "-ne", "-lt", "-le", "-gt", "-ge"})) {
          refuse_in(i + 2, end, "inside [[ ]] with " + word);
          break;
        }
      }
    }
    if (rest.starts_with("$((")) {
      stack.push_back(Frame{Context::Arithmetic, 0, 0, {}, false, 0, {}});
      copy(i, 3);
      continue;
    }
    if (rest.starts_with("$(")) {
      stack.push_back(Frame{Context::Bare, ')', 0, {}, false, i + 2, {}});
      copy(i, 2);
      continue;
    }
    if (c == '`') {
      if (frame.closer == '`') {
        stack.pop_back();
      } else {
        stack.push_back(Frame{Context::Bare, '`', 0, {}, false, i + 1, {}});
      }
      copy(i, 1);
      continue;
    }
    if (context == Context::Double) {
      if (c == '"') stack.pop_back();
      copy(i, 1);
      continue;
    }
    if (context == Context::Heredoc) {
      if (c == '\n') line_start = true;
      copy(i, 1);
      continue;
    }
    // Bare.
    if (c == '\'') {
      stack.push_back(Frame{Context::Single, 0, 0, {}, false, 0, {}});
    } else if (rest.starts_with("$'")) {
      stack.push_back(Frame{Context::Ansi, 0, 0, {}, false, 0, {}});
      copy(i, 2);
      continue;
    } else if (c == '"') {
      stack.push_back(Frame{Context::Double, 0, 0, {}, false, 0, {}});
    } else if (c == ';' || c == '|' || c == '&' || c == '\n') {
      frame.command_start = i + 1;  // the next simple command (or a group's first) starts
      if (c == '\n' && !pending.empty()) {
        copy(i, 1);
        start_heredoc();
        line_start = true;
        continue;
      }
    } else if (c == '(') {
      ++frame.parens;
      frame.command_start = i + 1;
    } else if (c == ')') {
      if (frame.parens > 0) {
        --frame.parens;
      } else if (frame.closer == ')') {
        stack.pop_back();
      }
    } else if (c == '#' && (i == 0 || starts_word_after(all[i - 1]))) {
      const std::size_t end = all.find('\n', i);
      copy(i, end == std::string_view::npos ? all.size() : end - i);
      continue;
    } else if (rest.starts_with("<<") && !rest.starts_with("<<<")) {
      // A here-document: its delimiter word, quoted in any part or not.
      std::size_t j = i + 2;
      const bool strip_tabs = j < all.size() && all[j] == '-';
      if (strip_tabs) ++j;
      while (j < all.size() && is_blank(all[j])) ++j;
      std::string delimiter;
      bool quoted = false;
      char quote = 0;
      for (; j < all.size(); ++j) {
        const char d = all[j];
        if (quote != 0) {
          if (d == quote) {
            quote = 0;
          } else {
            delimiter += d;
          }
        } else if (d == '\'' || d == '"') {
          quote = d;
          quoted = true;
        } else if (d == '\\' && j + 1 < all.size()) {
          quoted = true;
          delimiter += all[++j];
        } else if (is_blank(d) || d == '\n' || d == ';' || d == '&' || d == '|' || d == '<' ||
                   d == '>' || d == '(' || d == ')') {
          break;
        } else {
          delimiter += d;
        }
      }
      if (!delimiter.empty()) {
        pending.push_back(
            PendingHeredoc{delimiter, strip_tabs, quoted,
                           std::string(all.substr(frame.command_start, i - frame.command_start))});
      }
      copy(i, j - i);
      continue;
    }
    copy(i, 1);
  }
  for (const Frame& frame : stack) {
    if (frame.context == Context::Single || frame.context == Context::Ansi) {
      throw std::invalid_argument("the command has an unterminated ' quote");
    }
    if (frame.context == Context::Double) {
      throw std::invalid_argument("the command has an unterminated \" quote");
    }
  }
  flush();
  if (!replaced) {
    auto [command, reader] = command_at(all.size());
    pieces_.push_back(Piece{Kind::Literal, " ", 0, Context::Bare, {}, {}});
    pieces_.push_back(
        Piece{Kind::Input, {}, 0, Context::Bare, std::move(command) + " ", std::move(reader)});
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

namespace {

void reject_nul(const std::vector<std::string>& args) {
  for (const std::string& arg : args) {
    if (arg.find('\0') != std::string::npos) {
      throw std::invalid_argument("argument contains a NUL byte, which no command line can carry");
    }
  }
}

// `value` written so that the shell, in `context`, reads it back unchanged and as data.
std::string quote_in(CommandTemplate::Context context, std::string_view value, bool for_display) {
  std::string out;
  switch (context) {
    case CommandTemplate::Context::Double:
    case CommandTemplate::Context::Heredoc:
      for (const char c : value) {
        if (c == '\\' || c == '$' || c == '`' ||
            (c == '"' && context == CommandTemplate::Context::Double)) {
          out += '\\';
        }
        out += c;
      }
      return out;
    case CommandTemplate::Context::Single:
      return shell_quote(value).substr(1, shell_quote(value).size() - 2);
    case CommandTemplate::Context::Ansi:
      for (const char c : value) {
        if (c == '\\' || c == '\'') out += '\\';
        out += c;
      }
      return out;
    default:
      return for_display ? display_quote(value) : shell_quote(value);
  }
}

// References to positional parameters `first`.. `first + count - 1`, one word each (several
// separated by spaces), written for `context`: the shell expands them once, as data.
std::string references_in(CommandTemplate::Context context, std::size_t first, std::size_t count) {
  std::string refs;
  for (std::size_t k = first; k < first + count; ++k) {
    if (k > first) refs += ' ';
    const std::string ref = "${" + std::to_string(k) + "}";
    refs += context == CommandTemplate::Context::Bare ? "\"" + ref + "\"" : ref;
  }
  if (count == 0) return refs;
  switch (context) {
    case CommandTemplate::Context::Single:
      return "'\"" + refs + "\"'";  // close, the references in double quotes, reopen
    case CommandTemplate::Context::Ansi:
      return "'\"" + refs + "\"$'";
    default:
      return refs;
  }
}

}  // namespace

template <class Emit>
void CommandTemplate::fill(const std::vector<std::string>& args, std::uint64_t seq, unsigned slot,
                           Emit&& emit, std::string& line) const {
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
      default: {
        std::vector<std::string> values;
        if (piece.position > 0) {
          values.push_back(piece.position <= args.size()
                               ? transform(piece.kind, args[piece.position - 1])
                               : std::string());
        } else {
          for (const std::string& arg : args) values.push_back(transform(piece.kind, arg));
        }
        emit(piece.context, std::move(values));
      }
    }
  }
}

std::string CommandTemplate::expand(const std::vector<std::string>& args, std::uint64_t seq,
                                    unsigned slot, bool for_display) const {
  reject_nul(args);
  std::string line;
  fill(
      args, seq, slot,
      [&](Context context, std::vector<std::string> values) {
        for (std::size_t v = 0; v < values.size(); ++v) {
          if (v > 0) line += ' ';
          line += quote_in(context, values[v], for_display);
        }
      },
      line);
  return line;
}

ShellScript CommandTemplate::script(const std::vector<std::string>& args, std::uint64_t seq,
                                    unsigned slot) const {
  reject_nul(args);
  ShellScript out;
  fill(
      args, seq, slot,
      [&](Context context, std::vector<std::string> values) {
        out.text += references_in(context, out.parameters.size() + 1, values.size());
        for (std::string& value : values) out.parameters.push_back(std::move(value));
      },
      out.text);
  return out;
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
  return one_of(
      program, {"env",    "exec",     "nice",   "nohup",   "command", "time",  "builtin", "timeout",
                "stdbuf", "setsid",   "ionice", "chrt",    "taskset", "flock", "sudo",    "doas",
                "xargs",  "unbuffer", "chroot", "runuser", "then",    "do",    "else",    "elif",
                "if",     "while",    "until",  "!",       "{"});
}

// -c, -e, -lc, -ec, -E, --eval, --command, -p (node): the next operand is code.
bool is_code_option(std::string_view word) {
  if (one_of(word, {"--eval", "--command", "--print", "-p"})) return true;
  if (word.size() < 2 || word.size() > 5 || word[0] != '-' || word[1] == '-') return false;
  return word.find_first_of("ceE") != std::string_view::npos;
}

// The words of `text` as the shell would split them, roughly: quotes removed, enough to name a
// program and its options.
std::vector<std::string> rough_words(std::string_view text, bool* open) {
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
  if (open != nullptr) *open = in_word || quote != 0;
  return words;
}

}  // namespace

std::string CommandTemplate::runs_input_as_code() const {
  for (const Piece& piece : pieces_) {
    if (piece.kind == Kind::Literal || piece.kind == Kind::Seq || piece.kind == Kind::Slot) {
      continue;
    }
    if (piece.context == Context::Heredoc) {
      // The body is the reader's stdin: code when the reader is an interpreter reading its
      // script from there (`sh <<EOF`, `python3 - <<EOF`), not with `-c` or a script file.
      std::vector<std::string> words = rough_words(piece.reader, nullptr);
      std::size_t first = 0;
      while (first < words.size() &&
             (is_wrapper(base_name(words[first])) || words[first].find('=') != std::string::npos)) {
        ++first;
      }
      if (first == words.size()) continue;
      const std::string program = base_name(words[first]);
      const bool script_named =
          std::any_of(words.begin() + static_cast<std::ptrdiff_t>(first) + 1, words.end(),
                      [](const std::string& w) { return w != "-" && w[0] != '-'; });
      if ((is_interpreter(program) && !script_named) || program == "eval" || program == "source" ||
          program == "." || program == "ssh" || program == "su") {
        return program + " reads the here-document holding the input as its script";
      }
      continue;
    }
    bool open = false;  // the value joins the word before it (`'echo {}'`, `x{}`)
    std::vector<std::string> words = rough_words(piece.command, &open);
    if (open && !words.empty()) words.pop_back();

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
    if (program == "eval" || program == "source" || program == "." || program == "trap") {
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
    // An array is an item of several arguments ({1} {2}, `seppo map ... ::: a b ::: 1 2`);
    // so is a Python tuple (ext 2).
    if (input.type == msgpack::type::EXT && input.via.ext.type() == kTupleExt) {
      msgpack::zone zone;
      return arguments(as_plain(input, zone));
    }
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

void ShellCommand::check_seq(std::uint64_t seq) const {
  // Job numbers start at 1: 0 is an item that came without one (a plain item).
  if (seq == 0 && template_.uses_seq()) {
    throw std::runtime_error("command " + name_ +
                             ": its template uses {#}, the job number, which this item does not "
                             "carry (send {\"args\": [...], \"seq\": N} as seppo map does)");
  }
}

std::string ShellCommand::line_for(const std::vector<std::string>& args, std::uint64_t seq) const {
  check_seq(seq);
  try {
    return template_.expand(args, seq, worker_slot(), true);
  } catch (const std::invalid_argument& e) {
    throw std::runtime_error("command " + name_ + ": " + e.what());
  }
}

ShellScript ShellCommand::script_for(const std::vector<std::string>& args,
                                     std::uint64_t seq) const {
  check_seq(seq);
  try {
    return template_.script(args, seq, worker_slot());
  } catch (const std::invalid_argument& e) {
    throw std::runtime_error("command " + name_ + ": " + e.what());
  }
}

CommandLimits ShellCommand::limits_for(const std::string& cwd) const {
  CommandLimits limits = limits_;
  if (!limits.client_folders || cwd.empty()) return limits;
  // docs/protocol.md §5.2: an absolute path. Anything else (a relative path would mean the
  // worker's own folder, a NUL would cut the path short) is the item's error.
  if (cwd.front() != '/' || cwd.find('\0') != std::string::npos) {
    throw std::runtime_error("command " + name_ + ": the item's cwd " +
                             (cwd.find('\0') != std::string::npos ? std::string("holds a NUL byte")
                                                                  : "\"" + cwd + "\" is relative") +
                             "; it must be an absolute path");
  }
  limits.cwd = cwd;
  return limits;
}

namespace {

CommandRun start_run(const std::string& name, const ShellScript& script,
                     const CommandLimits& limits) {
  try {
    return run_shell(script, limits);
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
  const CommandLimits limits = limits_for(cwd);
  CommandRun outcome = start_run(name_, script_for(args, seq), limits);
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
    packer.pack(line_for(args, seq));
    return;
  }
  if (!request->record) {
    packer.pack(run_args(args, seq, request->cwd));
    return;
  }
  // A record keeps stderr too (for --results), and a failed run is a record as well: the
  // client wants its exit status and output, as parallel's --joblog and --results show them.
  const ShellScript script = script_for(args, seq);
  CommandLimits limits = limits_for(request->cwd);
  limits.stderr_tail = std::max<std::size_t>(limits.stderr_tail, std::size_t{1} << 20);
  wire::CommandRecord record;
  record.start_us =
      static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::microseconds>(
                                     std::chrono::system_clock::now().time_since_epoch())
                                     .count());
  const auto started = std::chrono::steady_clock::now();
  CommandRun outcome = start_run(name_, script, limits);
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
  record.command = line_for(args, seq);
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

namespace {

// `name` found as an executable on PATH, as which(1) would; empty when not found.
std::string on_path(const std::string& name) {
  const char* path = std::getenv("PATH");
  std::string_view folders = path != nullptr ? path : "/usr/local/bin:/usr/bin:/bin";
  while (true) {
    const auto colon = folders.find(':');
    std::string folder(folders.substr(0, colon));
    if (folder.empty()) folder = ".";
    const std::string candidate = folder + "/" + name;
    if (::access(candidate.c_str(), X_OK) == 0) return candidate;
    if (colon == std::string_view::npos) return {};
    folders.remove_prefix(colon + 1);
  }
}

// The shell `pid` runs, when its argv[0] names one ("-bash", "/bin/zsh", "dash"), as parallel
// recognises a parent shell; empty otherwise.
std::string shell_of(pid_t pid) {
  std::ifstream cmdline("/proc/" + std::to_string(pid) + "/cmdline", std::ios::binary);
  std::string first;
  if (!std::getline(cmdline, first, '\0')) return {};
  if (first.starts_with("-")) first.erase(0, 1);
  std::string name = base_name(first);
  if (!one_of(name, {"ash",  "bash",  "bsd-csh", "csh",  "dash",      "fdsh", "fish",  "fizsh",
                     "ksh",  "ksh93", "lksh",    "mksh", "pdksh",     "posh", "rbash", "rc",
                     "rush", "rzsh",  "sash",    "sh",   "static-sh", "tcsh", "yash",  "zsh"})) {
    return {};
  }
  return on_path(name);
}

pid_t parent_of(pid_t pid) {
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  std::string text;
  std::getline(stat, text);
  // pid (comm) state ppid ...: comm may hold spaces and parentheses, so after the last ')'.
  const auto close = text.rfind(')');
  if (close == std::string::npos) return 0;
  std::istringstream rest(text.substr(close + 1));
  std::string state;
  long ppid = 0;
  rest >> state >> ppid;
  return static_cast<pid_t>(ppid);
}

}  // namespace

std::string parallel_shell() {
  if (const char* shell = std::getenv("PARALLEL_SHELL"); shell != nullptr && *shell != '\0') {
    return shell;
  }
  // Bounded: a process tree is not deeper than this in practice, and /proc could change under us.
  pid_t pid = ::getppid();
  for (int depth = 0; pid > 1 && depth < 64; ++depth) {
    if (std::string shell = shell_of(pid); !shell.empty()) return shell;
    pid = parent_of(pid);
  }
  if (const char* shell = std::getenv("SHELL"); shell != nullptr && *shell != '\0') return shell;
  return "/bin/sh";
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
