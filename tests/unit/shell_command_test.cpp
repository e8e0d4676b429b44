// Named shell commands: templates, quoting, and real runs of /bin/sh with hostile inputs.
#include <doctest/doctest.h>

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <thread>

#include "protocol/command_record.hpp"
#include "seppo/result_entry.hpp"
#include "worker/shell_command.hpp"

using namespace seppo::worker;

namespace {

// File names a user really has, and ones an attacker would send.
const std::vector<std::string> kNastyNames = {"plain.jpg",
                                              "with space.jpg",
                                              "it's.jpg",
                                              "say \"hi\".jpg",
                                              "$HOME",
                                              "`id`",
                                              "$(id)",
                                              "line\nbreak",
                                              "-n",
                                              "--",
                                              "*",
                                              "a;b|c&d>e",
                                              "",
                                              "back\\slash",
                                              "'",
                                              "''\"\"''",
                                              "tab\there",
                                              "trailing\n",
                                              "\xc3\xa9t\xc3\xa9.png"};

std::string chunk_of(const std::vector<msgpack::object>& items) {
  msgpack::sbuffer buffer;
  msgpack::packer<msgpack::sbuffer> p(buffer);
  p.pack_array(static_cast<std::uint32_t>(items.size()));
  for (const auto& item : items) p.pack(item);
  return std::string(buffer.data(), buffer.size());
}

std::string call(const ShellCommand& command, const std::string& input, int* status) {
  std::string output;
  seppo_sink sink{&output, [](void* c, const char* d, size_t n) {
                    static_cast<std::string*>(c)->append(d, n);
                  }};
  *status = command.call_chunk(input.data(), input.size(), &sink);
  return output;
}

std::string error_of(const ShellCommand& command, const std::string& input) {
  try {
    command.run_text(input);
  } catch (const std::runtime_error& e) {
    return e.what();
  }
  return "(no error)";
}

bool gone(pid_t pid) {
  if (::kill(pid, 0) != 0) return true;
  // A zombie nobody reaps (PID 1 of a container may not) is dead too.
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  std::string text((std::istreambuf_iterator<char>(stat)), std::istreambuf_iterator<char>());
  const auto paren = text.rfind(')');
  return paren == std::string::npos || text.substr(paren + 2, 1) == "Z";
}

}  // namespace

TEST_CASE("shell_quote makes one single-quoted word, quotes included") {
  CHECK(shell_quote("a b") == "'a b'");
  CHECK(shell_quote("") == "''");
  CHECK(shell_quote("it's") == "'it'\\''s'");
  CHECK(shell_quote("$HOME") == "'$HOME'");
}

TEST_CASE("replacement strings select parts of the input as GNU parallel does") {
  CHECK(without_extension("dir/sub/a.b.jpg") == "dir/sub/a.b");
  CHECK(without_extension("sub.dir/bar") == "sub.dir/bar");
  CHECK(without_extension("noext") == "noext");
  CHECK(without_extension(".bashrc") == "");
  CHECK(base_name("dir/sub/a.jpg") == "a.jpg");
  CHECK(base_name("a.jpg") == "a.jpg");
  CHECK(base_name("dir/") == "");
  CHECK(dir_name("dir/sub/a.jpg") == "dir/sub");
  CHECK(dir_name("a.jpg") == ".");
  CHECK(dir_name("/a.jpg") == "/");
  CHECK(dir_name("a/b/") == "a");
  CHECK(dir_name("a//b") == "a");
  CHECK(dir_name("") == ".");
  CHECK(dir_name("///") == "/");

  const CommandTemplate t("x {} {.} {/} {//} {/.}.png");
  CHECK(t.expand("my dir/a b.jpg") ==
        "x 'my dir/a b.jpg' 'my dir/a b' 'a b.jpg' 'my dir' 'a b'.png");
}

TEST_CASE("a template without a replacement string gets the input appended") {
  CHECK(CommandTemplate("wc -c").expand("a b") == "wc -c 'a b'");
  // Braces that are not replacement strings are the command's own.
  CHECK(CommandTemplate("awk '{print $1}'").expand("f") == "awk '{print $1}' 'f'");
  CHECK(CommandTemplate("echo {}{}").expand("x") == "echo 'x''x'");
  // Issue 23: {#} and {%} are replacement strings too: parallel appends nothing.
  CHECK(CommandTemplate("echo {#}").expand({"a"}, 7) == "echo 7");
  CHECK(CommandTemplate("echo {%}").expand({"a"}, 7, 2) == "echo 2");
}

TEST_CASE("Perl replacement strings are refused at start-up") {
  CHECK_THROWS_WITH_AS(CommandTemplate("echo {= s/a/b/ =}"), doctest::Contains("no Perl runs"),
                       std::invalid_argument);
}

TEST_CASE("a replacement string in any quoting context is a parameter reference, never code") {
  // Issue 26, defect 3: each context gets the reference the shell reads as data there.
  CHECK(CommandTemplate("echo {} {.}.png").script({"a.jpg"}).text == "echo \"${1}\" \"${2}\".png");
  CHECK(CommandTemplate("echo \"x {} y\"").script({"a"}).text == "echo \"x ${1} y\"");
  CHECK(CommandTemplate("echo 'x {} y'").script({"a"}).text == "echo 'x '\"${1}\"' y'");
  CHECK(CommandTemplate("echo $'x {} y'").script({"a"}).text == "echo $'x '\"${1}\"$' y'");
  CHECK(CommandTemplate("cat <<EOF\nnote: {}\nEOF\necho {}").script({"a"}).text ==
        "cat <<EOF\nnote: ${1}\nEOF\necho \"${2}\"");
  CHECK(CommandTemplate("echo \"$(basename {})\"").script({"a"}).text ==
        "echo \"$(basename \"${1}\")\"");
  const ShellScript two = CommandTemplate("printf '<%s>' {} '{1}'").script({"a", "b"});
  CHECK(two.text == "printf '<%s>' \"${1}\" \"${2}\" ''\"${3}\"''");
  CHECK(two.parameters == std::vector<std::string>{"a", "b", "a"});
  // The command line as shown puts each value in, quoted for where it stands.
  CHECK(CommandTemplate("echo \"x {}\" 'y {}'").expand("$a'b\"") ==
        "echo \"x \\$a'b\\\"\" 'y $a'\\''b\"'");

  // Where no reference would be data: refused at start-up, saying why.
  for (const auto& [text, why] : std::vector<std::pair<std::string, std::string>>{
           {"echo ${}", "right after $"},
           {"echo \"${1}\"", "right after $"},
           {"echo $(( {} + 1 ))", "inside $(( ))"},
           {"cat <<'EOF'\n{}\nEOF", "quoted here-document"},
           {"cat <<\\EOF\n{}\nEOF", "quoted here-document"}}) {
    CAPTURE(text);
    CHECK_THROWS_WITH_AS(CommandTemplate{text}, doctest::Contains(why.c_str()),
                         std::invalid_argument);
  }
  // Where bash reads the text as arithmetic or a variable name: refused, saying where.
  for (const auto& [text, why] :
       std::vector<std::pair<std::string, std::string>>{{"[[ {} -gt 3 ]]", "inside [[ ]] with -gt"},
                                                        {"(( 1 + {} ))", "inside (( ))"},
                                                        {"echo $[{}]", "inside $[ ]"},
                                                        {"echo ${s:{}}", "inside ${ }"},
                                                        {"a[{}]=x", "array subscript"},
                                                        {"let x={}", "let"},
                                                        {"printf -v {} x", "printf -v"},
                                                        {"$\\\n(( {} + 1 ))", "inside $(( ))"}}) {
    CAPTURE(text);
    CHECK_THROWS_WITH_AS(CommandTemplate{text}, doctest::Contains(why.c_str()),
                         std::invalid_argument);
  }
  // Strings, plain values and names with values stay allowed; numbers anywhere.
  CHECK_NOTHROW(CommandTemplate("[[ {} == a* ]] && echo yes"));
  CHECK_NOTHROW(CommandTemplate("declare x={}; export Y={}; read -r x <<< {}; printf -v x %s {}"));
  CHECK_NOTHROW(CommandTemplate("(( {#} > 1 )) && echo ${s:{%}} {}"));
  CHECK_NOTHROW(CommandTemplate("echo \"list[{}]\" '[{}]'"));
  CHECK_THROWS_AS(CommandTemplate("a[\"{}\"]=1"), std::invalid_argument);
  CHECK(CommandTemplate("echo a\\\nb {}").script({"x"}).text == "echo ab \"${1}\"");
  // Numbers seppo makes are no one's input: allowed anywhere.
  CHECK(CommandTemplate("echo $(( {#} * 2 )) {}").expand({"a"}, 3) == "echo $(( 3 * 2 )) 'a'");
  CHECK_THROWS_WITH_AS(CommandTemplate("echo 'open"), doctest::Contains("unterminated ' quote"),
                       std::invalid_argument);
  // Braces that are the command's own, quoted or escaped, stay as they are; so do quotes in a
  // comment or a here-document's body.
  CHECK(ShellCommand("t", "echo {} | awk '{print $2}'").run_text("a b") == "b");
  CHECK(ShellCommand("t", "echo \\{} {}").run_text("$(id)") == "{} $(id)");
  CHECK(ShellCommand("t", "echo \"it's\" {}").run_text("'") == "it's '");
  CHECK(ShellCommand("t", "printf %s {} # it's").run_text("x") == "x");
  CHECK(ShellCommand("t", "cat <<EOF\nit's \"{}\"\nEOF").run_text("x") == "it's \"x\"");
}

TEST_CASE("hostile inputs never run, whatever context the template puts them in") {
  // Issue 26, defect 3: `cat <<EOF ... {}` and quoted {} ran `$(touch F)` as code before.
  char folder[] = "/tmp/seppo-hostile-XXXXXX";
  REQUIRE(::mkdtemp(folder) != nullptr);
  const std::string f = std::string(folder) + "/F";
  const std::vector<std::string> inputs = {
      "$(touch " + f + ")",
      "`touch " + f + "`",
      "; touch " + f,
      "x\ntouch " + f + "\n",
      "'; touch " + f + "; '",
      "\"; touch " + f + "; \"",
      "'$(touch " + f + ")'",
      "\"$(touch " + f + ")\"",
      "$'\\x27'; touch " + f,
      "\\\"; touch " + f + " #",
      "EOF\ntouch " + f + "\nEOF",
      "${x:-$(touch " + f + ")}",
      "a[$(touch " + f + ")]",
      "*",
  };
  const std::vector<std::pair<std::string, std::string>> templates = {
      {"printf %s {}", "%"},
      {"printf %s \"{}\"", "%"},
      {"printf %s '{}'", "%"},
      {"printf '%s' \"<{}>\"", "<%>"},
      {"printf %s 'a'{}'b'", "a%b"},
      {"printf %s \"$(printf %s {})\"", "%"},
      {"printf %s \"`printf %s {}`\"", "%"},
      {"cat <<EOF\n{}\nEOF", "%\n"},
      {"cat <<-EOF\n\t[{}]\n\tEOF", "[%]\n"},
      {"x={}; printf %s \"$x\"", "%"},
      {"printf %s {1}{1.}", "%&"},
  };
  for (const std::string& shell : {std::string("/bin/sh"), std::string("/bin/bash")}) {
    CommandLimits limits;
    limits.shell = shell;
    for (const auto& [text, shape] : templates) {
      for (const std::string& input : inputs) {
        CAPTURE(shell);
        CAPTURE(text);
        CAPTURE(input);
        const ShellCommand command("t", text, limits);
        std::string expected;
        for (const char c : shape) {
          expected += c == '%' ? input : c == '&' ? without_extension(input) : std::string(1, c);
        }
        // The backquoted form loses trailing newlines, as command substitution does.
        if (text.find('`') != std::string::npos || text.find("$(printf") != std::string::npos) {
          while (!expected.empty() && expected.back() == '\n') expected.pop_back();
        }
        std::string out;
        try {
          out = command.run_text(input);
        } catch (const std::exception& e) {
          out = std::string("error: ") + e.what();
        }
        if (!expected.empty() && expected.back() == '\n') expected.pop_back();
        CHECK(out == expected);
        REQUIRE_FALSE(std::filesystem::exists(f));
      }
    }
  }
  // Bash evaluates a variable's value as arithmetic or as a name in these places, and a
  // subscript there runs command substitution: each refused at start-up, or nothing runs.
  CommandLimits bash;
  bash.shell = "/bin/bash";
  for (const std::string text :
       {"[[ {} -gt 3 ]]; echo ok", "(( 1 + {} )); echo x", "echo $[{}]", "s=abc; echo ${s:{}}",
        "echo ${a[{}]}", "a[{}]=x", "let x={}", "declare -i x={}", "test -v {}", "[ -v {} ]",
        "printf -v {} x", "read {} </dev/null", "unset {}", "export {}", "local -i x=\"{}\"",
        "$\\\n(( {} ))", "echo $\\\n(( {} ))", "(\\\n( {} ))"}) {
    CAPTURE(text);
    try {
      const ShellCommand command("t", text, bash);
      (void)command.run_text("a[$(touch " + f + ")]");
    } catch (const std::exception&) {
    }
    CHECK_FALSE(std::filesystem::exists(f));
    CHECK_THROWS_AS(CommandTemplate{text}, std::invalid_argument);
  }
  // A NUL cannot be a parameter: the item fails and nothing runs.
  CHECK(error_of(ShellCommand("t", "touch " + f + "; printf %s {}"), std::string("a\0b", 3))
            .find("NUL byte") != std::string::npos);
  CHECK_FALSE(std::filesystem::exists(f));
  std::filesystem::remove_all(folder);
}

TEST_CASE("the operator's shell runs the template: bash idioms behave as under GNU parallel") {
  // Issue 23, item 3: --shell for a worker, parallel's rule for seppo map --local.
  CommandLimits bash;
  bash.shell = "/bin/bash";
  CHECK(ShellCommand("t", "[[ {} == a* ]] && echo yes || echo no", bash).run_text("ab") == "yes");
  CHECK(ShellCommand("t", "[[ {} == a* ]] && echo yes || echo no", bash).run_text("a*") == "yes");
  CHECK(ShellCommand("t", "[[ {} == a* ]] && echo yes || echo no", bash).run_text("ba") == "no");
  CHECK(ShellCommand("t", "echo {1,2} {}", bash).run_text("x") == "1 2 x");
  CHECK(ShellCommand("t", "echo -e 'a\\tb' {}", bash).run_text("x") == "a\tb x");
  CHECK(ShellCommand("t", "echo {1,2} {}").run_text("x") == "{1,2} x");  // /bin/sh: dash
  CommandLimits missing;
  missing.shell = "/nonexistent/shell";
  CHECK(error_of(ShellCommand("t", "echo {}", missing), "x")
            .find("cannot run the shell "
                  "/nonexistent/shell") != std::string::npos);

  ::setenv("PARALLEL_SHELL", "/bin/bash", 1);
  CHECK(parallel_shell() == "/bin/bash");
  ::unsetenv("PARALLEL_SHELL");
  // Else the nearest ancestor that is a shell, else $SHELL, else /bin/sh: always one that runs.
  CHECK(::access(parallel_shell().c_str(), X_OK) == 0);
}

TEST_CASE("what a command leaves running in the background ends with its item") {
  // The background sleep holds stdout: without the group's end the item would wait for it.
  const CommandRun run = run_shell("sleep 600 & echo started");
  CHECK(run.wait_status == 0);
  CHECK(run.out == "started\n");
  // Issue 26, defect 10: nor does a process moved to a session of its own, which the group's
  // kill misses: it is killed too, and the item does not wait for the pipe it holds.
  CommandLimits limits;
  limits.timeout = std::chrono::seconds(60);
  const CommandRun escaped = run_shell("setsid sleep 600 & echo started", limits);
  CHECK_FALSE(escaped.timed_out);
  CHECK(escaped.wait_status == 0);
  CHECK(escaped.out == "started\n");
}

TEST_CASE("a chunk's results are bounded like one command's output") {
  CommandLimits limits;
  limits.max_stdout = 100;
  const ShellCommand command("big", "printf %080d {}", limits);
  msgpack::zone zone;
  const std::vector<msgpack::object> items = {msgpack::object(1, zone), msgpack::object(2, zone),
                                              msgpack::object(3, zone)};
  int status = -1;
  const std::string out = call(command, chunk_of(items), &status);
  REQUIRE(status == 0);
  msgpack::object_handle h = msgpack::unpack(out.data(), out.size());
  const auto results = h.get().as<std::vector<std::pair<int, std::string>>>();
  REQUIRE(results.size() == 3);
  CHECK(results[0].first == 0);  // 80 bytes: under the limit
  CHECK(results[1].first == 0);  // run while the results held 80
  CHECK(results[2].first == 1);
  CHECK(results[2].second.find("command big not run: its chunk's results already hold") == 0);
  CHECK(results[2].second.find("over the 100-byte limit; send fewer items a chunk") !=
        std::string::npos);
}

TEST_CASE("--command NAME=TEMPLATE is checked: name characters, length, an actual command") {
  const CommandSpec spec = parse_command_option("thumbnail=convert {} {.}.png");
  CHECK(spec.name == "thumbnail");
  CHECK(spec.command_template == "convert {} {.}.png");
  CHECK(parse_command_option("img.v2_thumb-nail=echo a=b").command_template == "echo a=b");
  CHECK_THROWS_WITH_AS(parse_command_option("convert {}"),
                       doctest::Contains("expected NAME=TEMPLATE"), std::invalid_argument);
  CHECK_THROWS_WITH_AS(parse_command_option("=echo"), doctest::Contains("the name must be"),
                       std::invalid_argument);
  CHECK_THROWS_AS(parse_command_option("two words=echo"), std::invalid_argument);
  CHECK_THROWS_AS(parse_command_option("a/b=echo"), std::invalid_argument);
  CHECK_THROWS_AS(parse_command_option(std::string(257, 'a') + "=echo"), std::invalid_argument);
  CHECK(parse_command_option(std::string(256, 'a') + "=echo").name.size() == 256);
  CHECK_THROWS_WITH_AS(parse_command_option("empty= "), doctest::Contains("empty"),
                       std::invalid_argument);
  CHECK_THROWS_WITH_AS(parse_command_option("n=echo {= 1 =}"),
                       doctest::Contains("--command n: {= =} is not supported"),
                       std::invalid_argument);
  CHECK(parse_command_option("n=echo {#} {%} {}").name == "n");
}

TEST_CASE("nasty file names reach the command as one argument, byte for byte") {
  for (const std::string& name : kNastyNames) {
    CAPTURE(name);
    const CommandRun run = run_shell(CommandTemplate("printf %s {}").expand(name));
    CHECK(run.wait_status == 0);
    CHECK(run.out == name);
    // And each replacement string stays one word too.
    const CommandRun parts =
        run_shell(CommandTemplate("printf '<%s>' {} {.} {/} {//} {/.}").expand(name));
    CHECK(parts.out == "<" + name + "><" + without_extension(name) + "><" + base_name(name) + "><" +
                           dir_name(name) + "><" + without_extension(base_name(name)) + ">");
  }
}

TEST_CASE("a command's result is its stdout less one trailing newline") {
  CHECK(ShellCommand("t", "printf 'a\\n\\n' {}").run_text("x") == "a\n");
  CHECK(ShellCommand("t", "echo {}").run_text("two words") == "two words");
  CHECK(ShellCommand("t", "printf %s {}").run_text("no newline") == "no newline");
  CHECK(ShellCommand("t", "true {}").run_text("x") == "");
}

TEST_CASE("a command's non-zero exit is an error naming the status and the end of stderr") {
  const ShellCommand t("check", "echo first line >&2; echo no {} >&2; exit 3");
  CHECK(error_of(t, "x y") == "command check exited with status 3: first line | no x y");
  CHECK(error_of(ShellCommand("quiet", "exit 1; : {}"), "x") ==
        "command quiet exited with status 1");
  CHECK(error_of(ShellCommand("nope", "/nonexistent/program {}"), "x")
            .starts_with("command nope exited with status 127: "));
}

TEST_CASE("a command killed by a signal is an error naming the signal") {
  const ShellCommand t("die", "echo dying {} >&2; kill -9 $$");
  CHECK(error_of(t, "now") == "command die killed by signal 9 (SIGKILL): dying now");
}

TEST_CASE("a chatty stderr cannot stall a command, and only its tail is kept") {
  // 1 MB on stderr and 1 MB on stdout, interleaved: far beyond both pipes' buffers.
  const ShellCommand t(
      "chatty",
      "i=0; while [ $i -lt 100 ]; do head -c 10000 /dev/zero | tr '\\0' e >&2; "
      "head -c 10000 /dev/zero | tr '\\0' o; i=$((i+1)); done; echo {} the end >&2; exit 2");
  const std::string message = error_of(t, "at");
  CHECK(message.starts_with("command chatty exited with status 2: ...eeee"));
  CHECK(message.ends_with("eeeat the end"));
  CHECK(message.size() < 2200);

  const CommandRun run =
      run_shell(CommandTemplate("head -c 1000000 /dev/zero >&2; echo ok").expand(""));
  CHECK(run.out == "ok \n");
}

TEST_CASE("a command writing more than the stdout limit is stopped and fails") {
  CommandLimits limits;
  limits.max_stdout = 100000;
  const auto started = std::chrono::steady_clock::now();
  const std::string message = error_of(ShellCommand("yes", "yes {}", limits), "y");
  CHECK(message == "command yes wrote more than 100000 bytes to stdout and was stopped");
  CHECK(std::chrono::steady_clock::now() - started < std::chrono::seconds(10));
}

TEST_CASE("a command's input is a string, a number or an array of them; others fail alone") {
  const ShellCommand echo("echo", "echo {}");
  msgpack::zone zone;
  const std::vector<msgpack::object> items = {msgpack::object(std::string("a b"), zone),
                                              msgpack::object(42, zone),
                                              msgpack::object(-7, zone),
                                              msgpack::object(2.5, zone),
                                              msgpack::object(true, zone),
                                              msgpack::object(std::vector<int>{1, 2}, zone),
                                              msgpack::object()};
  int status = -1;
  const std::string out = call(echo, chunk_of(items), &status);
  REQUIRE(status == 0);
  msgpack::object_handle h = msgpack::unpack(out.data(), out.size());
  const auto results = h.get().as<std::vector<std::pair<int, std::string>>>();
  REQUIRE(results.size() == 7);
  CHECK(results[0] == std::make_pair(0, std::string("a b")));
  CHECK(results[1].second == "42");
  CHECK(results[2].second == "-7");
  CHECK(results[3].second == "2.5");
  CHECK(results[4].second == "true");
  CHECK(results[5] == std::make_pair(0, std::string("1 2")));  // {} is every argument
  CHECK(results[6].second == "command echo: argument: expected string or number, got nil");

  // A chunk that is not an array fails as a whole, with a message.
  const std::string not_array = "\x01";
  CHECK(call(echo, not_array, &status).find("not an array") != std::string::npos);
  CHECK(status != 0);

  CHECK(error_of(echo, std::string("nul\0byte", 8)).find("NUL byte") != std::string::npos);
}

TEST_CASE("a command's process tree dies with the process that runs it") {
  const std::filesystem::path pids =
      std::filesystem::temp_directory_path() / ("seppo-pids-" + std::to_string(::getpid()));
  std::filesystem::remove(pids);
  // A shell that started a background job: both are the command's, neither may be orphaned.
  const std::string file = shell_quote(pids.string());
  const std::string line =
      "sleep 60 & echo $$ $! > " + file + ".new && mv " + file + ".new " + file + "; wait";
  const pid_t runner = ::fork();
  REQUIRE(runner >= 0);
  if (runner == 0) {
    run_shell(line);
    ::_exit(0);
  }
  pid_t shell = 0, sleeper = 0;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (std::chrono::steady_clock::now() < deadline) {
    std::ifstream in(pids);
    if (in >> shell >> sleeper) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  ::kill(runner, SIGKILL);
  int status = 0;
  ::waitpid(runner, &status, 0);
  REQUIRE(shell > 0);
  REQUIRE(sleeper > 0);
  bool both_gone = false;
  const auto patience = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (!(both_gone = gone(shell) && gone(sleeper)) &&
         std::chrono::steady_clock::now() < patience) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  CHECK(both_gone);
  if (!both_gone) {
    ::kill(sleeper, SIGKILL);
    ::kill(shell, SIGKILL);
  }
  std::filesystem::remove(pids);
}

TEST_CASE("templates that run their input as code are refused unless allowed, with the reason") {
  for (const char* bad :
       {"run=sh -c {}", "run=bash -c {}", "run=eval {}", "run={}", "run={} --version",
        "run=env A=1 bash -lc {}", "run=cd /tmp; {}", "run=python3 -c {}", "run=. {}",
        "run=timeout 10 sh -c {}", "run=env -i sh -c {}", "run=nice -n 5 sh -c {}",
        "run=sh -c -- {}", "run=sh -c -x {}", "run=perl -E {}", "run=node --eval {}",
        "run=node -p {}", "run=awk {}", "run=ssh host cat {}", "run=sed -n {} file",
        "run=xargs -0 sh -c {}",
        // Issue 26: quoted and here-document values are the code of the
        // program they go to.
        "run=sh -c 'echo {}'", "run=bash -c \"echo {}\"", "run=sh -c 'x; echo {}'",
        "run=awk '{print \"{}\"}'", "run=trap {} EXIT", "run=trap 'echo {}' EXIT",
        "run=if true; then sh -c {}; fi", "run=sh <<EOF\n{}\nEOF",
        "run=python3 - <<EOF\nprint({})\nEOF", "run=ssh host <<EOF\ncat {}\nEOF",
        "run=echo \"$(eval {})\""}) {
    CAPTURE(bad);
    CHECK_THROWS_WITH_AS(parse_command_option(bad), doctest::Contains("--allow-any-command"),
                         std::invalid_argument);
    CHECK(parse_command_option(bad, true).name == "run");
  }
  CHECK_THROWS_WITH_AS(parse_command_option("run=sh -c {}"),
                       doctest::Contains("sh -c {} runs the input as code"), std::invalid_argument);
  // The input as data of a script, not the script: allowed.
  for (const char* good :
       {"ok=sh -c 'wc -c \"$1\"' sh {}", "ok=gzip {}", "ok=echo eval {}", "ok=bash script.sh {}",
        "ok=convert {} {.}.png", "ok=timeout 10 gzip {}", "ok=awk '{print}' {}", "ok=sed -n 1p {}",
        "ok=python3 -c 'import sys' {}", "ok=cat <<EOF\n{}\nEOF", "ok=printf '%s' \"[{}]\"",
        "ok=echo 'x {}'", "ok=bash script.sh <<EOF\n{}\nEOF", "ok=if [ -f {} ]; then cat {}; fi",
        "ok=echo \"$(basename {})\""}) {
    CAPTURE(good);
    CHECK(parse_command_option(good).name == "ok");
  }
}

TEST_CASE("positional, job-number and slot replacement strings") {
  const CommandTemplate t("echo {2} {1.} {#} {%} {}");
  CHECK(t.expand({"a.txt", "b c"}, 7, 2) == "echo 'b c' 'a' 7 2 'a.txt' 'b c'");
  CHECK(t.expand({"a.txt", "b c"}, 7, 2, true) == "echo 'b c' a 7 2 a.txt 'b c'");
  CHECK(t.uses_seq());
  CHECK_FALSE(CommandTemplate("echo {%} {}").uses_seq());
  CHECK(CommandTemplate("echo {3}").expand(std::vector<std::string>{"a"}) == "echo ''");
}

namespace {

std::string request_chunk(const std::vector<std::string>& args, std::uint64_t seq, bool record,
                          bool dry_run) {
  msgpack::sbuffer buffer;
  msgpack::packer<msgpack::sbuffer> p(buffer);
  p.pack_array(1);
  seppo::wire::pack_command_request(p, args, seq, record, dry_run);
  return std::string(buffer.data(), buffer.size());
}

// The one entry of a one-item RESULT payload: [status, value].
msgpack::object_handle only_entry(const std::string& payload) {
  msgpack::object_handle h = msgpack::unpack(payload.data(), payload.size());
  REQUIRE(h.get().type == msgpack::type::ARRAY);
  REQUIRE(h.get().via.array.size == 1);
  return h;
}

}  // namespace

TEST_CASE("a request item fills {#} with its job number and {%} with the worker's slot") {
  ::setenv("SEPPO_WORKER_SLOT", "3", 1);
  const ShellCommand t("t", "echo {#} {%} {}");
  int status = -1;
  const msgpack::object_handle h =
      only_entry(call(t, request_chunk({"a b"}, 42, false, false), &status));
  CHECK(status == 0);
  const seppo::entry::Decoded d = seppo::entry::decode(h.get().via.array.ptr[0]);
  REQUIRE(d.value != nullptr);
  CHECK(d.value->as<std::string>() == "42 3 a b");
  ::unsetenv("SEPPO_WORKER_SLOT");
  CHECK(worker_slot() == 1);
  // A plain item has no job number: the item fails, saying what to send.
  CHECK(error_of(t, "x").find("{#}, the job number") != std::string::npos);
}

TEST_CASE("a request's folder is where the command runs only when the worker allows it") {
  msgpack::sbuffer buffer;
  msgpack::packer<msgpack::sbuffer> p(buffer);
  p.pack_array(1);
  seppo::wire::pack_command_request(p, {"x"}, 1, false, false, "/tmp");
  const std::string chunk(buffer.data(), buffer.size());
  CommandLimits allowed;
  allowed.client_folders = true;
  int status = -1;
  msgpack::object_handle h =
      only_entry(call(ShellCommand("t", "pwd; : {}", allowed), chunk, &status));
  CHECK(seppo::entry::decode(h.get().via.array.ptr[0]).value->as<std::string>() == "/tmp");
  h = only_entry(call(ShellCommand("t", "pwd; : {}"), chunk, &status));
  CHECK(seppo::entry::decode(h.get().via.array.ptr[0]).value->as<std::string>() ==
        std::filesystem::current_path().string());
  msgpack::sbuffer missing;
  msgpack::packer<msgpack::sbuffer> q(missing);
  q.pack_array(1);
  seppo::wire::pack_command_request(q, {"x"}, 1, false, false, "/nonexistent/folder");
  h = only_entry(call(ShellCommand("t", "pwd; : {}", allowed),
                      std::string(missing.data(), missing.size()), &status));
  CHECK(seppo::entry::decode(h.get().via.array.ptr[0])
            .error.find("cannot enter the client's folder /nonexistent/folder") !=
        std::string::npos);
}

TEST_CASE("a request's stdin block is its command's stdin, only when the worker allows it") {
  // seppo map --pipe: nothing appended to the template ({} is an empty word), the block on stdin.
  msgpack::sbuffer buffer;
  msgpack::packer<msgpack::sbuffer> p(buffer);
  p.pack_array(1);
  const std::string block("a\0b\nc\n", 6);
  seppo::wire::pack_command_request(p, {""}, 7, false, false, {}, &block);
  const std::string chunk(buffer.data(), buffer.size());
  CommandLimits allowed;
  allowed.allow_stdin = true;
  int status = -1;
  msgpack::object_handle h =
      only_entry(call(ShellCommand("t", "echo {#}; wc -c", allowed), chunk, &status));
  CHECK(seppo::entry::decode(h.get().via.array.ptr[0]).value->as<std::string>() == "7\n6");
  // By default a worker refuses it: a command reading stdin as code would run the client's.
  h = only_entry(call(ShellCommand("t", "wc -c"), chunk, &status));
  CHECK(seppo::entry::decode(h.get().via.array.ptr[0]).error.find("seppo-worker --allow-stdin") !=
        std::string::npos);
  CHECK(CommandTemplate("wc -c", false).expand(std::vector<std::string>{""}) == "wc -c");
  CHECK(CommandTemplate("echo {}", false).expand(std::vector<std::string>{""}) == "echo ''");
}

TEST_CASE("context replace (-X) repeats each word holding {} once per argument") {
  CHECK(seppo::worker::context_replaced("echo pic{}.jpg", 2) == "echo pic{1}.jpg pic{2}.jpg");
  CHECK(seppo::worker::context_replaced("echo x{}y{.}z {#}", 2) ==
        "echo x{1}y{1.}z x{2}y{2.}z {#}");
  CHECK(seppo::worker::context_replaced("echo", 3) == "echo {1} {2} {3}");  // {} appended first
  CHECK(seppo::worker::context_replaced("echo {/} {//}", 1) == "echo {1/} {1//}");
  // Through a broker: a request item asking for it.
  msgpack::sbuffer buffer;
  msgpack::packer<msgpack::sbuffer> p(buffer);
  p.pack_array(1);
  seppo::wire::pack_command_request(p, {"a", "b c"}, 1, false, false, {}, nullptr, true);
  int status = -1;
  CommandLimits allowed;
  allowed.allow_context_replace = true;
  msgpack::object_handle h = only_entry(call(ShellCommand("t", "echo x{}y", allowed),
                                             std::string(buffer.data(), buffer.size()), &status));
  CHECK(seppo::entry::decode(h.get().via.array.ptr[0]).value->as<std::string>() == "xay xb cy");
  // By default a worker refuses it: `cp {} /out/{/}` would copy more than its operator wrote.
  h = only_entry(
      call(ShellCommand("t", "echo x{}y"), std::string(buffer.data(), buffer.size()), &status));
  CHECK(seppo::entry::decode(h.get().via.array.ptr[0])
            .error.find("seppo-worker --allow-context-replace") != std::string::npos);
}

TEST_CASE("a request's env sets the variables its worker allows, and fails for any other") {
  msgpack::sbuffer buffer;
  msgpack::packer<msgpack::sbuffer> p(buffer);
  p.pack_array(1);
  seppo::wire::pack_command_request(p, {"a"}, 1, false, false, {}, nullptr, false,
                                    {{"SEPPO_TEST_FOO", "x y"}});
  const std::string chunk(buffer.data(), buffer.size());
  ::setenv("SEPPO_TEST_FOO", "the worker's", 1);
  CommandLimits allowed;
  allowed.allow_env = {"SEPPO_TEST_FOO"};
  int status = -1;
  msgpack::object_handle h =
      only_entry(call(ShellCommand("t", "echo \"$SEPPO_TEST_FOO\" {}", allowed), chunk, &status));
  CHECK(seppo::entry::decode(h.get().via.array.ptr[0]).value->as<std::string>() == "x y a");
  // Not allowed: the item fails, naming the option; the worker's own value is not used.
  h = only_entry(call(ShellCommand("t", "echo \"$SEPPO_TEST_FOO\" {}"), chunk, &status));
  CHECK(seppo::entry::decode(h.get().via.array.ptr[0])
            .error.find("seppo-worker --allow-env SEPPO_TEST_FOO") != std::string::npos);
  ::unsetenv("SEPPO_TEST_FOO");
  // A request whose env is not a map of strings fails as a bad request.
  msgpack::sbuffer bad;
  msgpack::packer<msgpack::sbuffer> q(bad);
  q.pack_array(1);
  q.pack_map(2);
  q.pack("args").pack(std::vector<std::string>{"a"});
  q.pack("env").pack(std::vector<std::string>{"X=1"});
  h = only_entry(
      call(ShellCommand("t", "echo {}", allowed), std::string(bad.data(), bad.size()), &status));
  CHECK(seppo::entry::decode(h.get().via.array.ptr[0]).error.find("\"env\" must be a map") !=
        std::string::npos);
}

TEST_CASE("a dry-run request answers the command line and runs nothing") {
  const ShellCommand t("t", "touch {}; echo {#}");
  int status = -1;
  const msgpack::object_handle h =
      only_entry(call(t, request_chunk({"never made", "x"}, 5, false, true), &status));
  const seppo::entry::Decoded d = seppo::entry::decode(h.get().via.array.ptr[0]);
  REQUIRE(d.value != nullptr);
  CHECK(d.value->as<std::string>() == "touch 'never made' x; echo 5");
  CHECK_FALSE(std::filesystem::exists("never made"));
}

TEST_CASE("a record request answers exit status, signal, both outputs and times, failed or not") {
  const ShellCommand t("t", "echo out {}; echo err >&2; exit {1}");
  for (const auto& [code, failed] : {std::pair{"0", false}, std::pair{"3", true}}) {
    int status = -1;
    const msgpack::object_handle h =
        only_entry(call(t, request_chunk({code}, 1, true, false), &status));
    const seppo::entry::Decoded d = seppo::entry::decode(h.get().via.array.ptr[0]);
    REQUIRE(d.value != nullptr);
    const auto record = seppo::wire::decode_command_record(*d.value);
    REQUIRE(record.has_value());
    CHECK(record->out == std::string("out ") + code + "\n");
    CHECK(record->err == "err\n");
    CHECK(record->exit == std::stoi(code));
    CHECK(record->signal == 0);
    CHECK(record->failed() == failed);
    CHECK(record->start_us > 1'600'000'000'000'000ULL);
    CHECK_FALSE(record->host.empty());
    CHECK(record->command == std::string("echo out ") + code + "; echo err >&2; exit " + code);
    if (failed) CHECK(record->message == "command t exited with status 3: err");
  }
  int status = -1;
  const msgpack::object_handle h = only_entry(
      call(ShellCommand("k", "kill -9 $$; : {}"), request_chunk({"x"}, 1, true, false), &status));
  const auto record =
      seppo::wire::decode_command_record(*seppo::entry::decode(h.get().via.array.ptr[0]).value);
  REQUIRE(record.has_value());
  CHECK(record->exit == -1);
  CHECK(record->signal == 9);
}

TEST_CASE("a request item's bytes are those of protocol.md's example, and decode back") {
  msgpack::sbuffer buffer;
  msgpack::packer<msgpack::sbuffer> p(buffer);
  seppo::wire::pack_command_request(p, {"a.txt"}, 3, true);
  const std::string expected =
      "\x83\xa4"
      "args\x91\xa5"
      "a.txt\xa3"
      "seq\x03\xa6"
      "record\xc3";
  CHECK(std::string(buffer.data(), buffer.size()) == expected);
  const msgpack::object_handle h = msgpack::unpack(buffer.data(), buffer.size());
  const auto request = seppo::wire::decode_command_request(h.get());
  REQUIRE(request.has_value());
  CHECK(request->seq == 3u);
  CHECK(request->record);
  CHECK_FALSE(request->dry_run);
  // A plain item is no request; a map without args, or with a mistyped key, is refused.
  msgpack::zone zone;
  CHECK_FALSE(seppo::wire::decode_command_request(msgpack::object("x", zone)).has_value());
  std::map<std::string, int> no_args{{"seq", 1}};
  CHECK_THROWS_AS(seppo::wire::decode_command_request(msgpack::object(no_args, zone)),
                  std::invalid_argument);
  // A key this worker does not know is refused, not ignored: its answer would be wrong.
  std::map<std::string, std::vector<int>> later{{"args", {1}}, {"umask", {}}};
  CHECK_THROWS_WITH_AS(seppo::wire::decode_command_request(msgpack::object(later, zone)),
                       doctest::Contains("unknown key \"umask\""), std::invalid_argument);
}

TEST_CASE("kill_orphans takes only whole pids from a /proc children read: a cut one waits") {
  using seppo::worker::whole_pids;
  int out[8] = {};
  // The buffer ended inside "123456": acting on "1234" would kill an unrelated process.
  const std::string cut = "101 202 1234";
  REQUIRE(whole_pids(cut.data(), cut.size(), false, out, 8) == 2);
  CHECK(out[0] == 101);
  CHECK(out[1] == 202);
  // At the end of the file the last pid is whole, with or without its separator.
  CHECK(whole_pids(cut.data(), cut.size(), true, out, 8) == 3);
  CHECK(out[2] == 1234);
  const std::string kernel = "101 202 ";
  CHECK(whole_pids(kernel.data(), kernel.size(), false, out, 8) == 2);
  CHECK(whole_pids(kernel.data(), kernel.size(), false, out, 1) == 1);
}
