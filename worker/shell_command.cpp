// Running a named shell command for an item (shell_command.hpp); its template is
// command_template.cpp's.
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
    : name_(std::move(name)),
      template_(command_template),
      piped_template_(std::move(command_template), false),
      limits_(limits) {}

std::vector<std::string> ShellCommand::arguments(const msgpack::object& input) const {
  std::vector<std::string> args;
  try {
    // An array is an item of several arguments ({1} {2}, `seppo map ... ::: a b ::: 1 2`);
    // so is a Python tuple (ext 2).
    if (input.type == msgpack::type::EXT &&
        (input.via.ext.type() == kTupleExt || input.via.ext.type() == kNamedTupleExt)) {
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

std::string ShellCommand::line_for(const std::vector<std::string>& args, std::uint64_t seq,
                                   bool piped) const {
  check_seq(seq);
  try {
    return (piped ? piped_template_ : template_).expand(args, seq, worker_slot(), true);
  } catch (const std::invalid_argument& e) {
    throw std::runtime_error("command " + name_ + ": " + e.what());
  }
}

ShellScript ShellCommand::script_for(const std::vector<std::string>& args, std::uint64_t seq,
                                     const std::string* stdin_data) const {
  check_seq(seq);
  if (stdin_data != nullptr && !limits_.allow_stdin) {
    throw std::runtime_error("command " + name_ +
                             ": this worker takes no stdin blocks (seppo map --pipe); its "
                             "operator allows them with seppo-worker --allow-stdin");
  }
  try {
    if (stdin_data == nullptr) return template_.script(args, seq, worker_slot());
    ShellScript script = piped_template_.script(args, seq, worker_slot());
    script.stdin_data = *stdin_data;
    return script;
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

std::string ShellCommand::run_args(
    const std::vector<std::string>& args, std::uint64_t seq, const std::string& cwd,
    const std::string* stdin_data,
    const std::vector<std::pair<std::string, std::string>>* env) const {
  const CommandLimits limits = limits_for(cwd);
  ShellScript script = script_for(args, seq, stdin_data);
  if (env != nullptr) {
    for (const auto& [variable, value] : *env) script.environment.push_back(variable + "=" + value);
  }
  CommandRun outcome = start_run(name_, script, limits);
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
  if (request->context_replace && !limits_.allow_context_replace) {
    throw std::runtime_error("command " + name_ +
                             ": this worker does not repeat the template's words per argument "
                             "(seppo map -X); its operator allows it with seppo-worker "
                             "--allow-context-replace");
  }
  for (const auto& [variable, value] : request->env) {
    if (std::find(limits_.allow_env.begin(), limits_.allow_env.end(), variable) ==
        limits_.allow_env.end()) {
      throw std::runtime_error("command " + name_ + ": this worker does not take the variable " +
                               variable +
                               " from clients (seppo map --env); its operator allows "
                               "it with seppo-worker --allow-env " +
                               variable);
    }
    if (value.find('\0') != std::string::npos) {
      throw std::runtime_error("command " + name_ + ": the value of " + variable +
                               " holds a NUL byte");
    }
  }
  if (request->context_replace && !context_replaced_) {  // seppo map -X: this item's template
    std::optional<ShellCommand> replaced;
    try {
      replaced.emplace(name_, context_replaced(template_.text(), args.size()), limits_);
    } catch (const std::invalid_argument& e) {
      throw std::runtime_error("command " + name_ + ": " + e.what());
    }
    replaced->context_replaced_ = true;
    replaced->run_item(packer, input);
    return;
  }
  const std::string* stdin_data = request->stdin_data ? &*request->stdin_data : nullptr;
  if (request->dry_run) {
    packer.pack(line_for(args, seq, stdin_data != nullptr));
    return;
  }
  if (!request->record) {
    packer.pack(run_args(args, seq, request->cwd, stdin_data, &request->env));
    return;
  }
  // A record keeps stderr too (for --results), and a failed run is a record as well: the
  // client wants its exit status and output, as parallel's --joblog and --results show them.
  ShellScript script = script_for(args, seq, stdin_data);
  for (const auto& [variable, value] : request->env)
    script.environment.push_back(variable + "=" + value);
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
  record.command = line_for(args, seq, stdin_data != nullptr);
  wire::pack_command_record(packer, record);
}

int ShellCommand::call_chunk(const char* input, std::size_t size,
                             seppo_sink* output) const noexcept {
  return detail::call_each_item(
      input, size, output,
      [this](msgpack::packer<msgpack::sbuffer>& packer, msgpack::sbuffer& buffer,
             msgpack::sbuffer& scratch, const msgpack::object& item) {
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
        msgpack::packer<msgpack::sbuffer> value(scratch);
        run_item(value, item);
        entry::begin_value(packer);
        buffer.write(scratch.data(), scratch.size());
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
  static constexpr std::string_view kShells[] = {
      "ash",  "bash",  "bsd-csh", "csh",  "dash",      "fdsh", "fish",  "fizsh",
      "ksh",  "ksh93", "lksh",    "mksh", "pdksh",     "posh", "rbash", "rc",
      "rush", "rzsh",  "sash",    "sh",   "static-sh", "tcsh", "yash",  "zsh"};
  if (std::find(std::begin(kShells), std::end(kShells), name) == std::end(kShells)) return {};
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
