// seppo: the command line of seppo. Submit from shell scripts, ask the broker how it is.
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <csignal>
#include <cstdio>
#include <iostream>
#include <optional>
#include <sstream>
#include <thread>

#include <CLI/CLI.hpp>
#include <seppo/seppo.hpp>

#include "cli/interrupt.hpp"
#include "cli/json.hpp"
#include "cli/keygen_command.hpp"
#include "cli/local_commands.hpp"
#include "cli/map_command.hpp"
#include "cli/parallel_options.hpp"
#include "cli/sources.hpp"
#include "cli/ssh_logins.hpp"
#include "cli/status_command.hpp"
#include "common/curve.hpp"
#include "common/duration.hpp"
#include "common/endpoint.hpp"
#include "common/version.hpp"
#include "protocol/wire.hpp"
#include "worker/shell_command.hpp"

namespace {

// Any failure that is not an item's own: unreachable broker, unknown function, bad usage.
constexpr int kExitError = 255;

// `seppo map` with an option it does not take: GNU parallel's are refused by name, with why
// (cli/parallel_options.cpp), any other by name too: never the option parser's generic text.
// Throws seppo::Error.
void refuse_unknown_options(CLI::App& app, CLI::App& map, const std::vector<char*>& head) {
  std::size_t i = 1;
  while (i < head.size() && std::string_view(head[i]) != "map") {
    // Global options before the subcommand: skip their values.
    const std::string_view word = head[i++];
    const CLI::Option* opt = app.get_option_no_throw(std::string(word.substr(0, word.find('='))));
    if (opt != nullptr && word.find('=') == std::string_view::npos && opt->get_expected_min() > 0)
      ++i;
  }
  for (++i; i < head.size(); ++i) {
    const std::string_view word = head[i];
    if (word.size() < 2 || word[0] != '-' || word == "--") continue;
    if (word == "-h" || word == "--help") continue;
    if (const auto refused = seppo::cli::refusal_for(word)) throw seppo::Error(*refused);
    const bool long_name = word[1] == '-';
    const std::string name(long_name ? word.substr(0, word.find('=')) : word.substr(0, 2));
    const CLI::Option* opt = map.get_option_no_throw(name);
    if (opt == nullptr) opt = app.get_option_no_throw(name);
    if (opt == nullptr) throw seppo::Error(seppo::cli::unknown_option_message(word));
    // An option's value may start with a dash (-j -1, --halt -1): not an option.
    const bool value_attached =
        long_name ? word.find('=') != std::string_view::npos : word.size() > 2;
    if (!value_attached && opt->get_expected_min() > 0) ++i;
  }
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{
      "seppo: simple embarrassingly parallel. Map a function over inputs on a cluster\n"
      "of seppo workers, or ask the broker about its workers and jobs."};
  app.footer(
      "Examples:\n"
      "  seq 1 5 | seppo map example_module.hello_world\n"
      "  seppo map example_module.square < numbers.txt > squares.txt\n"
      "  seppo status --json | jq '.workers | length'\n"
      "  seppo ping || systemctl start seppo-broker\n"
      "  seppo keygen alice        # alice.key_secret (keep it) and alice.key (give it away)\n\n"
      "Environment: SEPPO_BROKER is the default for --broker, SEPPO_CURVE_SECRET_KEY for\n"
      "--curve-secret-key, SEPPO_CURVE_SERVER_KEY for --curve-server-key; SEPPO_MODULE_PATH\n"
      "lists the folders where seppo map --local finds modules.");
  app.set_version_flag("--version", seppo::version_line("seppo", seppo::wire::kVersion));
  app.require_subcommand(1);
  app.fallthrough();  // seppo map --broker X works as well as seppo --broker X map

  std::string endpoint = seppo::default_endpoint();
  double timeout_s = 30;
  app.add_option("-b,--broker", endpoint,
                 "broker endpoint, or a pair's two comma-separated, the primary first (default "
                 "$SEPPO_BROKER or " +
                     std::string(seppo::kDefaultEndpointHelp) + ")");
  app.add_option("--broker-timeout", timeout_s,
                 "seconds of broker silence after which the command fails (for a per-item "
                 "limit see seppo map --timeout)")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  seppo::ClientOptions options = seppo::ClientOptions::from_env();  // keys: $SEPPO_CURVE_*
  app.add_option("--curve-secret-key", options.curve_secret_key_file,
                 "this user's secret key file: talk to the broker over CurveZMQ "
                 "(default $SEPPO_CURVE_SECRET_KEY)");
  app.add_option("--curve-server-key", options.curve_server_key_file,
                 "the broker's public key file (default $SEPPO_CURVE_SERVER_KEY)");
  app.add_flag("--insecure", options.insecure,
               "allow a broker on another host without CurveZMQ keys (plaintext)");

  seppo::cli::MapOptions map;
  double wait_s = 0;
  std::size_t chunk_size = 0;
  bool unordered = false;
  CLI::App* map_cmd = app.add_subcommand(
      "map", "call FUNCTION on every input line; print one result per line in input order");
  map_cmd->footer(
      "Inputs: one per line from stdin or --input, or as GNU parallel's sources after the\n"
      "options: ::: a b c (values), :::: FILE; several sources give every combination (or the\n"
      "i-th of each with --link), -0 splits at NUL bytes, --colsep REGEX splits each input into\n"
      "{1} {2}... (an array for a function). For MODULE.FUNCTION a line that is valid JSON is "
      "that\n"
      "value (42, 2.5, \"text\", [1,2], {\"a\":1}, true, null) and any other line is a string;\n"
      "a named command (a name without a dot) gets every input as text (007 stays 007) and\n"
      "its job number for {#} ({%} is the worker process's slot).\n"
      "--raw makes every line a string, --json reads JSON Lines (a line that is not JSON fails\n"
      "as an item). Results print raw when they are strings, as compact JSON otherwise; with\n"
      "--json every result is JSON. A command without output prints nothing; with parallel's\n"
      "options (sources, --tag, --joblog...) its stdout prints as written, its stderr on stderr.\n"
      "Local commands: --local --command NAME=TEMPLATE NAME runs the template here, -j N at a\n"
      "time, in this folder, quoted as workers quote it; {#} is the job number, {%} the slot.\n"
      "--joblog, --results and --dry-run work for --local commands and workers' named\n"
      "commands. --timeout limits each item (a command is killed, a module function's worker\n"
      "process restarted); --halt now cancels the running items the same way.\n"
      "GNU parallel's options side by side: docs/parallel.md.\n"
      "Output streams: a line appears as soon as it and all earlier lines are ready, so\n"
      "`seppo map ... | head` and endless inputs work in bounded memory. A failed item is "
      "reported\n"
      "on stderr (\"seppo: line N: FUNCTION: message (on host, process PID)\"); the other items\n"
      "still run unless --fail-fast.\n"
      "Exit status: 0 all succeeded; 1-100 that many items failed; 101 more than 100 failed;\n"
      "255 the command could not run (broker unreachable, unknown function, bad usage);\n"
      "killed by SIGPIPE (141 in the shell) when the reader of stdout went away.\n\n"
      "Examples:\n"
      "  seq 1 1000 | seppo map example_module.square > squares.txt\n"
      "  seppo map --input points.jsonl --json --unordered --index physics.simulate\n"
      "  seq 1 1000 | SEPPO_MODULE_PATH=build/examples seppo map --local example_module.square\n"
      "  ls *.jpg | seppo map thumbnail            # a command named by the workers' operator\n"
      "  seppo map --local --command gz='gzip {}' -j 4 --joblog log gz ::: *.txt\n"
      "  seppo map --joblog log --results out thumbnail ::: /data/*.jpg  # through a broker\n"
      "  seppo map --local --command t='convert {1} -resize {2} {1.}-{2}.png' t ::: *.jpg ::: 50% "
      "25%");
  map_cmd->add_option("function", map.function, "MODULE.FUNCTION (or a worker's named command)")
      ->required();
  std::vector<std::string> input_files;
  map_cmd
      ->add_option("-a,--input,--arg-file,--argfile", input_files,
                   "read inputs from FILE instead of stdin (repeatable: every combination, as "
                   "with ::::)")
      ->check(CLI::ExistingFile | CLI::IsMember({"-"}))
      ->type_name("FILE");
  bool null_separated = false, link = false, dry_run = false, keep_order = false;
  std::string colsep, halt_text, timeout_text;
  std::vector<std::string> local_commands;
  std::string jobs_text;
  unsigned jobs = 0;
  map_cmd->add_flag("-0,--null", null_separated, "inputs end with a NUL byte, not a newline");
  map_cmd
      ->add_option("-C,--colsep,--col-sep", colsep,
                   "split each input at REGEX (Perl-like: \\t, \\s+, [,;]) into {1} {2}... (a "
                   "function gets an array)")
      ->type_name("REGEX");
  map_cmd->add_flag("--link,--xapply", link,
                    "with several sources: the i-th of each together, not "
                    "every combination");
  map_cmd->add_flag("--tag", map.tag, "prefix each output line with its input and a tab");
  map_cmd
      ->add_option("--tagstring,--tag-string", map.control.tagstring,
                   "prefix each output line with STR and a tab, its replacement strings ({} {1} "
                   "{.} {#}...) filled in as text")
      ->type_name("STR");
  map_cmd->add_flag("-k,--keep-order,--keeporder", keep_order,
                    "accepted for parallel: order is the default");
  bool ignored = false;
  map_cmd->add_flag("--will-cite,--willcite,--nn,--nonotice,--no-notice,-g,--group", ignored,
                    "accepted for parallel, and ignored: seppo prints no notice, and each item's "
                    "output prints whole");
  std::string tmpdir;
  map_cmd
      ->add_option("--tmpdir,--tempdir", tmpdir,
                   "accepted for parallel, and ignored: seppo map writes no temporary files")
      ->type_name("DIR");
  std::string header;
  map_cmd
      ->add_option("--header", header,
                   "with --local: ':' makes the first value of each source (with --colsep, its "
                   "columns) the names of its columns: {NAME} in the --command template")
      ->type_name(":");
  bool shuffle = false;
  map_cmd->add_flag("--shuf", shuffle,
                    "run the jobs in a random order, numbered ({#}) in that order (the input is "
                    "read whole first)");
  bool resume = false, resume_failed = false;
  map_cmd->add_flag("--resume", resume,
                    "with --joblog: skip the jobs the log lists, run the others, append to it");
  map_cmd->add_flag("--resume-failed,--resumefailed", resume_failed,
                    "with --joblog: skip the jobs the log lists as succeeded, run the others "
                    "(failed ones again), append to it");
  std::string replace_string, delay_text;
  int nice_value = 0;
  map_cmd
      ->add_option("-I,--replace", replace_string,
                   "with --local: R stands for the input in the --command template ({} then "
                   "works too)")
      ->type_name("R");
  map_cmd
      ->add_option("--delay", delay_text,
                   "with --local: start commands at least DURATION apart (2, 0.5, 500ms, 1m)")
      ->type_name("DURATION");
  CLI::Option* nice_opt =
      map_cmd
          ->add_option("--nice", nice_value,
                       "with --local: run the commands at this niceness (as nice -n N)")
          ->check(CLI::Range(-20, 19))
          ->type_name("N");
  bool pipe = false;
  std::string block_text, recstart, recend;
  map_cmd->add_flag("--pipe,--spreadstdin", pipe,
                    "stdin in blocks (of about --block bytes, cut at record ends): each block is "
                    "one command's stdin; -N N: N records a block");
  CLI::Option* block_opt =
      map_cmd
          ->add_option("--block,--block-size,--blocksize", block_text,
                       "with --pipe: the block size (default 1M; K M G T powers of 1024, k m g t "
                       "of 1000)")
          ->type_name("SIZE");
  CLI::Option* recstart_opt =
      map_cmd
          ->add_option("--recstart", recstart,
                       "with --pipe: a record starts with STR (\\n \\t \\0 escapes)")
          ->type_name("STR");
  CLI::Option* recend_opt =
      map_cmd
          ->add_option("--recend", recend,
                       "with --pipe: a record ends with STR (default \\n; with --recstart "
                       "alone, none)")
          ->type_name("STR");
  std::vector<std::string> env_names;
  map_cmd
      ->add_option("--env", env_names,
                   "give the command variable NAME as set here: --local commands run in this "
                   "environment; through a broker each item carries it to a worker's named "
                   "command, whose operator must allow it (seppo-worker --allow-env NAME)")
      ->expected(1)
      ->type_name("NAME");
  std::vector<std::string> sshlogins, sshloginfiles;
  std::string ssh_program;
  map_cmd
      ->add_option("-S,--sshlogin", sshlogins,
                   "run the --command NAME=TEMPLATE on these hosts ([N/][user@]host, "
                   "comma-separated, : for this one): seppo-worker started there over ssh for "
                   "this job, reaching its private broker through the ssh session")
      ->expected(1)
      ->type_name("LOGINS");
  map_cmd
      ->add_option("--slf,--sshloginfile", sshloginfiles,
                   "as -S, the logins one a line in FILE (.. is ~/.parallel/sshloginfile)")
      ->expected(1)
      ->type_name("FILE");
  map_cmd
      ->add_option("--ssh", ssh_program,
                   "with -S: the ssh program and its options (default $PARALLEL_SSH, else ssh)")
      ->type_name("COMMAND");
  bool fill_words = false, fill_context = false;
  map_cmd->add_flag("-m", fill_words,
                    "as many inputs a command as fit (at most 1024, 64 KiB), {} all of them; the "
                    "last ones spread over -j commands");
  map_cmd->add_flag("-X", fill_context,
                    "as -m, and each word holding {} is repeated once per input (pic{}.jpg: "
                    "pic1.jpg pic2.jpg)");
  std::size_t args_per_job = 0;
  map_cmd
      ->add_option("-N,-n,--max-replace-args,--max-args", args_per_job,
                   "N inputs per command: {} is all of them, {1}..{N} each (the last job may get "
                   "fewer)")
      ->check(CLI::Range(std::size_t{1}, std::size_t{65536}))
      ->type_name("N");
  map_cmd
      ->add_option("--retries", map.retries,
                   "run a failed item up to N more times (also through a broker: resubmitted)")
      ->type_name("N");
  map_cmd
      ->add_option("--timeout", timeout_text,
                   "per item: kill an item's command (or restart its module function's "
                   "worker process) after DURATION (2, 1.5, 500ms, 30s, 2m, 1h; below 1 ms is "
                   "1 ms); for the broker's silence see --broker-timeout")
      ->type_name("DURATION");
  map_cmd
      ->add_option("--halt", halt_text,
                   "now|soon,fail=N|success=N|done=N (N or N%): stop after N such items; now "
                   "also cancels the running ones (commands killed, also on a broker's workers)")
      ->type_name("WHEN,WHAT=N");
  map_cmd
      ->add_option("--joblog,--jl", map.control.joblog,
                   "write parallel's job log (Seq Host Starttime JobRuntime Send Receive "
                   "Exitval Signal Command) to FILE: --local commands and workers' named commands")
      ->type_name("FILE");
  map_cmd
      ->add_option("--results,--res,--result", map.control.results,
                   "keep each item's stdout, stderr and seq in DIR/1/ARG/..., or one CSV (TSV) "
                   "file for a name ending in .csv (.tsv), as parallel, and print nothing: --local "
                   "commands and workers' named commands")
      ->type_name("DIR");
  map_cmd->add_flag("--dry-run,--dryrun,--dr", dry_run,
                    "print the command lines instead of running them: --local commands and "
                    "workers' named commands (the worker expands its template)");
  map_cmd
      ->add_option("--command", local_commands,
                   "with --local: NAME=TEMPLATE, a shell command this command runs itself, in "
                   "this folder (e.g. gz='gzip {}'); with -S: on those hosts")
      ->type_name("NAME=TEMPLATE");
  map_cmd
      ->add_option("-j,-P,--jobs,--max-procs", jobs_text,
                   "N items at once (default: one per core with --local, as many as the workers "
                   "take through a broker); N% of the cores, +N or -N cores plus or minus N, 0 as "
                   "many as possible (256)")
      ->type_name("N");
  bool raw = false, json_lines = false;
  auto* raw_flag = map_cmd->add_flag("--raw", raw, "every input line is a string, never JSON");
  map_cmd->add_flag("--json", json_lines, "JSON Lines: every input line and every result is JSON")
      ->excludes(raw_flag);
  map_cmd->add_flag("--unordered,--no-keep-order,--nok,--no-k", unordered,
                    "print results as they complete, not in input order");
  map_cmd->add_flag("--index", map.output.index,
                    "prefix each result with its input line number and a tab (with --json: "
                    "print {\"line\": N, \"result\": R})");
  map_cmd->add_flag("--fail-fast", map.fail_fast,
                    "stop at the first failed item and cancel the running ones");
  bool progress = false, no_progress = false;
  auto* progress_flag =
      map_cmd->add_flag("--progress,--bar,--eta", progress,
                        "show a progress line on stderr (default: when stderr is a terminal)");
  map_cmd->add_flag("--no-progress", no_progress, "never show the progress line")
      ->excludes(progress_flag);
  unsigned local_workers = 0;
  CLI::Option* local_opt =
      map_cmd
          ->add_option("--local", local_workers,
                       "run on N worker processes of this machine instead of a broker, started "
                       "and stopped by this command (default N: one per core); modules are found "
                       "in $SEPPO_MODULE_PATH, then the installed module folder")
          ->expected(0, 1)
          ->default_str("0")
          ->type_name("N")
          ->check(CLI::Range(0u, 4096u));
  map_cmd
      ->add_option("--worker-wait", wait_s, "seconds to wait for a worker providing the function")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  map_cmd->add_option("--chunk-size", chunk_size, "items per task (default: adaptive)")
      ->check(CLI::Range(std::size_t{1}, std::size_t{65536}));

  bool json = false;
  CLI::App* status_cmd =
      app.add_subcommand("status", "show the broker's workers, functions and jobs");
  status_cmd->add_flag("--json", json, "print the status as one JSON object");
  seppo::cli::StatusOptions status_options;
  double watch_interval = 2;
  status_cmd->add_flag("-w,--watch", status_options.watch,
                       "redraw the status in place every --interval seconds, as top does, until "
                       "q or Ctrl-C");
  status_cmd->add_option("--interval", watch_interval, "seconds between redraws with --watch")
      ->capture_default_str()
      ->check(CLI::Range(0.1, 3600.0));
  status_cmd
      ->add_option("--count", status_options.count,
                   "with --watch, stop after this many redraws (default: until q)")
      ->type_name("N");
  CLI::App* ping_cmd = app.add_subcommand(
      "ping", "check that the broker answers (exit status 0 if it does, 1 if not)");

  std::string key_name;
  bool force = false;
  CLI::App* keygen_cmd = app.add_subcommand(
      "keygen", "make a CurveZMQ key pair: NAME.key_secret (mode 0600) and NAME.key");
  keygen_cmd->footer(
      "NAME.key_secret stays with its owner (a broker, a worker host, a user); NAME.key is the\n"
      "public half: workers' and clients' go into the broker's --authorized-workers and\n"
      "--authorized-clients lists, the broker's goes to every worker and client as\n"
      "--curve-server-key. Existing files are kept unless --force. Missing folders of NAME are\n"
      "made, mode 0700 (they hold a secret key): seppo keygen /etc/seppo/broker works on a\n"
      "fresh machine.");
  keygen_cmd->add_option("name", key_name, "path and name of the pair, e.g. keys/alice")
      ->required();
  keygen_cmd->add_flag("--force", force, "replace existing files");

  std::vector<seppo::cli::Source> sources;
  try {
    std::vector<char*> head = seppo::cli::split_sources(argc, argv, sources);
    refuse_unknown_options(app, *map_cmd, head);
    app.parse(static_cast<int>(head.size()), head.data());
  } catch (const seppo::Error& e) {
    std::cerr << "seppo: " << e.what() << "\n";
    return kExitError;
  } catch (const CLI::ParseError& e) {
    const int code = app.exit(e);
    return code == 0 ? 0 : kExitError;
  }

  if (*keygen_cmd) {
    try {
      seppo::cli::run_keygen(key_name, force, stdout);
      return 0;
    } catch (const std::exception& e) {
      std::cerr << "seppo: " << e.what() << "\n";
      return kExitError;
    }
  }

  std::optional<seppo::cli::SourcesOptions> job_sources;
  // -S, --slf: the hosts' login lines and the workers' options, started below.
  std::optional<std::pair<std::string, seppo::cli::SshWorkersOptions>> ssh_setup;
  const bool ssh = !sshlogins.empty() || !sshloginfiles.empty();
  if (*map_cmd) {
    try {
      seppo::cli::SourcesOptions so;
      for (const std::string& file : input_files) {
        so.sources.push_back(seppo::cli::Source{seppo::cli::Source::Kind::File, {}, file});
      }
      for (auto& source : sources) so.sources.push_back(std::move(source));
      so.link = link;
      if (null_separated) so.separator = '\0';
      // ECMAScript regular expressions are the closest to parallel's Perl ones: \t, \s, \d.
      if (!colsep.empty()) {
        try {
          so.colsep.emplace(colsep, std::regex::ECMAScript);
        } catch (const std::regex_error& e) {
          throw seppo::Error("--colsep " + colsep + ": not a regular expression: " + e.what());
        }
      }
      so.args_per_job = args_per_job;
      // --pipe, -X and -m are checked with these of parallel's options: the rest are refused
      // rather than guessed. The first one given, or null.
      const auto untested = [&]() -> const char* {
        return !colsep.empty()                               ? "--colsep"
               : link                                        ? "--link"
               : !header.empty()                             ? "--header"
               : shuffle                                     ? "--shuf"
               : map.tag                                     ? "--tag"
               : !map.control.tagstring.empty()              ? "--tagstring"
               : !map.control.results.empty()                ? "--results"
               : resume || resume_failed                     ? "--resume"
               : !replace_string.empty()                     ? "-I"
               : map.function.find('.') != std::string::npos ? "a module function"
                                                             : nullptr;
      };
      if (fill_words || fill_context) {
        const char* name = fill_context ? "-X" : "-m";
        const char* with = fill_words && fill_context ? "-m and -X together"
                           : args_per_job > 0         ? "-N"
                           : pipe                     ? "--pipe"
                           : so.sources.size() > 1    ? "several sources"
                           : !halt_text.empty()       ? "--halt"
                                                      : untested();
        if (with != nullptr) {
          throw seppo::Error(std::string("seppo map does not support ") + name + " with " + with +
                             "; see docs/parallel.md");
        }
        for (const std::string& option : local_commands) {
          const auto equals = option.find('=');
          if (option.substr(0, equals) != map.function) continue;
          if (std::regex_search(option.substr(equals + 1), std::regex("\\{-?[0-9]+[./]*\\}"))) {
            throw seppo::Error(std::string("seppo map does not support ") + name +
                               " with positional replacement strings ({1}); see "
                               "docs/parallel.md");
          }
        }
        so.fill = true;
        map.control.context_replace = fill_context;
      }
      if (!pipe && block_opt->count() + recstart_opt->count() + recend_opt->count() > 0) {
        throw seppo::Error("--block, --recstart and --recend go with --pipe; see docs/parallel.md");
      }
      if (pipe) {
        seppo::cli::PipeOptions blocks;
        if (block_opt->count() > 0) blocks.block = seppo::cli::parse_block_size(block_text);
        if (recstart_opt->count() + recend_opt->count() > 0) {
          // parallel: with only one of them given, the other is empty.
          blocks.recstart = seppo::cli::unescape_record_separator(recstart);
          blocks.recend = seppo::cli::unescape_record_separator(recend);
        }
        so.pipe = blocks;
        map.control.pipe = true;
        const char* with = !so.sources.empty() ? "::: or :::: or -a sources"
                           : null_separated    ? "-0"
                                               : untested();
        if (with != nullptr) {
          throw seppo::Error(std::string("seppo map does not support --pipe with ") + with +
                             ": each block is a command's stdin; see docs/parallel.md");
        }
      }
      map.control.timeout = seppo::cli::parse_duration(timeout_text);
      if (!halt_text.empty()) map.control.halt = seppo::cli::parse_halt(halt_text);
      map.control.dry_run = dry_run;
      const unsigned cores = std::max(1u, std::thread::hardware_concurrency());
      jobs = jobs_text.empty() ? 0 : seppo::cli::parse_jobs(jobs_text, cores);
      map.control.jobs = jobs > 0 ? jobs : local_workers > 0 ? local_workers : cores;
      so.spread = map.control.jobs;  // -m, -X: the last inputs over this many jobs
      // --local with module functions: -j is the number of worker processes.
      if (local_opt->count() > 0 && local_workers == 0 && jobs > 0) local_workers = jobs;
      for (const std::string& option : local_commands) {
        const auto equals = option.find('=');
        if (equals == std::string::npos) {
          throw seppo::Error("--command " + option + ": expected NAME=TEMPLATE");
        }
        if (option.substr(0, equals) == map.function) map.command = option.substr(equals + 1);
      }
      {
        // parallel's --results -.csv (the table on stdout) and x.json are not written: refused
        // rather than made into a folder or a file of that name.
        std::string lower = map.control.results;
        for (char& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
        const bool json = lower.size() >= 5 && lower.compare(lower.size() - 5, 5, ".json") == 0;
        if (json || lower == "-.csv" || lower == "-.tsv") {
          throw seppo::Error("--results " + map.control.results +
                             ": not supported (a folder, or a FILE.csv or FILE.tsv table); see "
                             "docs/parallel.md");
        }
      }
      if (!header.empty() && header != ":") {
        throw seppo::Error("--header " + header +
                           ": only --header : (the first value of each source) is supported; "
                           "see docs/parallel.md");
      }
      if (!header.empty() && !map.control.results.empty()) {
        throw seppo::Error("--header with --results is not supported; see docs/parallel.md");
      }
      so.header = !header.empty();
      so.shuffle = shuffle;
      const char* local_only = !header.empty()           ? "--header"
                               : !replace_string.empty() ? "-I"
                               : !delay_text.empty()     ? "--delay"
                               : nice_opt->count() > 0   ? "--nice"
                                                         : nullptr;
      if (local_only != nullptr && local_commands.empty()) {
        throw seppo::Error(std::string("seppo map does not support ") + local_only +
                           " through a broker: a worker's operator sets its commands and how "
                           "they run; it works with --local --command; see docs/parallel.md");
      }
      if (!replace_string.empty() && map.command) {
        std::string& t = *map.command;
        for (auto at = t.find(replace_string); at != std::string::npos;
             at = t.find(replace_string, at + 2)) {
          t.replace(at, replace_string.size(), "{}");
        }
      }
      if (!delay_text.empty()) {
        const auto delay = seppo::parse_duration(delay_text);
        if (!delay) {
          throw seppo::Error("--delay " + delay_text + ": not a duration (" +
                             seppo::kDurationForms + ")");
        }
        map.control.delay = *delay;
      }
      if (nice_opt->count() > 0) map.control.nice = nice_value;
      if (!env_names.empty() && local_opt->count() == 0) {
        // Through a broker each item carries the variables to a worker's named command, which
        // sets them only if its operator allows those names (seppo-worker --allow-env).
        if (map.function.find('.') != std::string::npos) {
          throw seppo::Error(
              "--env is for commands: a worker's named command, or --local "
              "--command; see docs/parallel.md");
        }
        for (const std::string& name : env_names) {
          const bool ok = !name.empty() &&
                          (std::isalpha(static_cast<unsigned char>(name[0])) || name[0] == '_') &&
                          name != "_" && std::all_of(name.begin(), name.end(), [](char c) {
                            return std::isalnum(static_cast<unsigned char>(c)) || c == '_';
                          });
          if (!ok) {
            throw seppo::Error("--env " + name +
                               ": expected a variable's name (parallel's --env _ and patterns "
                               "are not supported); see docs/parallel.md");
          }
          if (const char* value = std::getenv(name.c_str()); value != nullptr) {
            map.control.env.emplace_back(name, value);
          }
        }
      }
      if ((resume || resume_failed) && map.control.joblog.empty()) {
        throw seppo::Error(std::string(resume ? "--resume" : "--resume-failed") +
                           " needs --joblog FILE: the log of the earlier run");
      }
      map.control.resume = resume_failed ? seppo::cli::Resume::Mode::Succeeded
                           : resume      ? seppo::cli::Resume::Mode::Done
                                         : seppo::cli::Resume::Mode::Off;
      if (!local_commands.empty() && local_opt->count() == 0 && !ssh) {
        throw seppo::Error(
            "seppo map --command needs --local or -S: a broker's workers run only the commands "
            "their operator gave them");
      }
      if (!local_commands.empty() && !map.command) {
        throw seppo::Error(map.function + " is none of the --command names given");
      }
      if (local_opt->count() > 0 && !map.command && map.function.find('.') == std::string::npos) {
        throw seppo::Error(
            "seppo map --local runs module functions (MODULE.FUNCTION) and the "
            "commands given with --command NAME=TEMPLATE: to run " +
            map.function + ", say seppo map --local --command " + map.function + "='" +
            map.function + " {}' " + map.function);
      }
      if (!map.command && map.control.tagstring.find("{%}") != std::string::npos) {
        throw seppo::Error("--tagstring " + map.control.tagstring +
                           ": through a broker {%} is a worker's slot, which seppo map does not "
                           "know; see docs/parallel.md");
      }
      if (map.command) {
        // Checked before anything runs: a template that cannot be used fails the command with
        // one line (the worker's own check, docs/parallel.md "Safety" and "Templates").
        try {
          seppo::worker::CommandTemplate check(*map.command);
        } catch (const std::exception& e) {
          throw seppo::Error("--command " + map.function + "=" + *map.command + ": " + e.what());
        }
      }
      const bool local_command = map.command.has_value();
      if (!local_command) {
        // A worker's named command (no dot) can be asked for its run's record or its command
        // line; a module function has neither.
        const bool command_name = map.function.find('.') == std::string::npos;
        const char* needs = !map.control.joblog.empty()    ? "--joblog"
                            : !map.control.results.empty() ? "--results"
                            : dry_run                      ? "--dry-run"
                                                           : nullptr;
        if (needs != nullptr && (!command_name || local_opt->count() > 0)) {
          throw seppo::Error(std::string(needs) +
                             " is for commands: a worker's named command (a name without a dot) "
                             "through a broker, or seppo map --local --command NAME=TEMPLATE NAME");
        }
      }
      if (ssh) {
        // -S: this job's own workers on those hosts serve the --command template as a worker's
        // named command; from here on it is a job through a broker.
        const char* with = local_opt->count() > 0  ? "--local"
                           : !map.command          ? "a module function or a name without "
                                                     "--command NAME=TEMPLATE"
                           : !header.empty()       ? "--header"
                           : !delay_text.empty()   ? "--delay"
                           : nice_opt->count() > 0 ? "--nice"
                                                   : nullptr;
        if (with != nullptr) {
          throw seppo::Error(std::string("seppo map does not support -S with ") + with +
                             "; see docs/parallel.md");
        }
        seppo::cli::SshWorkersOptions workers;
        workers.ssh = ssh_program;
        if (workers.ssh.empty()) {
          if (const char* env = std::getenv("PARALLEL_SSH"); env != nullptr) workers.ssh = env;
        }
        // The user starts these workers for their own job, as parallel runs the command itself:
        // the template is theirs (as with --local). Here (":") the shell parallel would choose;
        // a remote worker keeps its own default, as this host's shell path may not exist there.
        workers.worker_args = {"--command", map.function + "=" + *map.command,
                               "--allow-any-command"};
        workers.local_shell = seppo::worker::parallel_shell();
        if (pipe) workers.worker_args.push_back("--allow-stdin");
        if (fill_context) workers.worker_args.push_back("--allow-context-replace");
        for (const std::string& name : env_names) {
          workers.worker_args.insert(workers.worker_args.end(), {"--allow-env", name});
        }
        ssh_setup.emplace(seppo::cli::ssh_login_lines(sshlogins, sshloginfiles, jobs), workers);
        // -m, -X: as parallel, the last inputs spread over the job slots of all the logins (the
        // sum of their N/), not over this host's. A login without N/ (no -j) keeps the old count.
        unsigned slots = 0;
        std::stringstream login_lines(ssh_setup->first);
        for (std::string line; std::getline(login_lines, line) && slots != 0u - 1;) {
          const auto slash = line.find('/');
          slots = slash == std::string::npos ? 0u - 1 : slots + std::stoul(line.substr(0, slash));
        }
        if (slots > 0 && slots != 0u - 1) so.spread = slots;
        map.command.reset();
      }
      if (map.control.halt.percent > 0) so.read_whole = true;  // the total comes first
      job_sources = std::move(so);
    } catch (const std::exception& e) {
      std::cerr << "seppo: " << e.what() << "\n";
      return kExitError;
    }
  }

  options.timeout = std::chrono::milliseconds(static_cast<long>(timeout_s * 1000));
  options.worker_wait = std::chrono::milliseconds(static_cast<long>(wait_s * 1000));
  options.chunk_size = chunk_size;
  if (*map_cmd) {
    // SUBMIT's item_timeout_ms: the broker cancels an item at its worker past the limit.
    options.item_timeout = map.control.timeout;
    // A chunk over its limit is split and its items run again one by one (docs/protocol.md
    // §10.1): a command must run once and be killed at its own limit, as with parallel.
    if (options.item_timeout.count() > 0 && chunk_size == 0 &&
        map.function.find('.') == std::string::npos) {
      options.chunk_size = 1;
    }
    // -j N through a broker: at most N items of this job at once (in flight: queued or running).
    // With -S, -j N is each host's number of commands at once, as parallel's.
    if (!map.command && local_opt->count() == 0 && jobs > 0 && !ssh) {
      if (options.chunk_size == 0) options.chunk_size = 1;
      options.window = std::max<std::size_t>(1, jobs / options.chunk_size);
    }
  }
  if (*map_cmd) seppo::cli::interrupt::install();  // Ctrl-C, SIGTERM: cancel the job first
  try {
    // A local cluster lives as long as its client: declared first, it goes last.
    std::optional<seppo::LocalCluster> local;
    std::optional<seppo::cli::SshWorkers> ssh_workers;
    if (ssh_setup) {
      ssh_workers.emplace(ssh_setup->first, ssh_setup->second);
      endpoint = ssh_workers->endpoint();
    }
    if (*map_cmd && map.command) {
      // No cluster, no broker: this process runs the commands, in this folder.
      seppo::cli::JobSource source(std::move(*job_sources));
      if (!source.header().empty()) {
        map.command = seppo::cli::with_column_numbers(*map.command, source.header());
      }
      map.control.tag = map.tag;
      map.control.ordered = !unordered;
      map.control.retries = map.retries;
      map.control.progress = progress || (!no_progress && !dry_run && ::isatty(STDERR_FILENO) == 1);
      if (map.fail_fast) map.control.halt = seppo::cli::Halt{seppo::cli::Halt::When::Now};
      std::ios::sync_with_stdio(false);
      return seppo::cli::run_local_command(source, map.function, *map.command, map.control, stdout);
    }
    if (*map_cmd && local_opt->count() > 0) {
      seppo::LocalClusterOptions cluster = seppo::LocalClusterOptions::from_env();
      cluster.worker_stdout_to_stderr = true;  // stdout carries results only
      // A timed-out or cancelled module function's worker process is replaced on purpose and
      // seppo map reports each such item: the broker's and worker's warnings would repeat it.
      if (options.item_timeout.count() > 0 ||
          map.control.halt.when == seppo::cli::Halt::When::Now || map.fail_fast) {
        cluster.log_level = "error";
      }
      local.emplace(local_workers, cluster);
    }
    seppo::Client client = local ? local->client(options) : seppo::Client(endpoint, options);
    if (*map_cmd && map.control.halt.when == seppo::cli::Halt::When::Soon) {
      // --halt soon lets what runs finish and starts nothing more, but every chunk submitted
      // runs: so only as many are in flight as there are worker processes to run them (those
      // serving the function now; later ones are not used).
      const std::optional<std::size_t> slots =
          local
              ? std::optional<std::size_t>(local_workers > 0
                                               ? local_workers
                                               : std::max(1u, std::thread::hardware_concurrency()))
              : seppo::cli::workers_serving(client, map.function);
      if (slots && *slots > 0) {
        options.window = std::min(options.window, *slots);
        client = local ? local->client(options) : seppo::Client(endpoint, options);
      }
    }
    if (*map_cmd) {
      std::ios::sync_with_stdio(false);
      // A module function is MODULE.FUNCTION; a name without a dot is a worker's named command,
      // whose inputs are text: 007 stays 007.
      const bool command_name = map.function.find('.') == std::string::npos;
      map.input_format = json_lines     ? seppo::cli::InputFormat::Json
                         : command_name ? seppo::cli::InputFormat::CommandRequest
                         : raw          ? seppo::cli::InputFormat::Raw
                                        : seppo::cli::InputFormat::Auto;
      map.command_requests = command_name && !json_lines;
      map.output.skip_empty = command_name && !json_lines;
      map.sources = std::move(job_sources);
      if (map.control.halt.when != seppo::cli::Halt::When::Never) map.halt = map.control.halt;
      map.output.json = json_lines;
      map.output.ordered = !unordered;
      if (progress) map.progress = seppo::cli::ProgressMode::On;
      if (no_progress) map.progress = seppo::cli::ProgressMode::Off;
      return seppo::cli::run_map(client, map, stdout);
    }
    if (*status_cmd) {
      status_options.timeout = options.timeout;
      status_options.json = json;
      status_options.interval = std::chrono::milliseconds(static_cast<long>(watch_interval * 1000));
      return seppo::cli::run_status(client, status_options, stdout);
    }
    if (*ping_cmd) {
      const auto ping_timeout = std::min(options.timeout, std::chrono::milliseconds(5000));
      try {
        return seppo::cli::run_ping(client, ping_timeout, stdout);
      } catch (const seppo::ConnectionError& e) {
        std::cerr << "seppo: " << e.what() << "\n";
        return 1;
      }
    }
  } catch (const seppo::cli::Interrupted& interrupted) {
    // The job is cancelled (the broker told, local commands killed): die of the signal.
    seppo::cli::interrupt::die(interrupted.signal);
  } catch (const std::exception& e) {
    std::cerr << "seppo: " << e.what() << "\n";
    return kExitError;
  } catch (const seppo::cli::OutputClosed&) {
    // The client is gone, its goodbye sent: now die of SIGPIPE like any filter whose reader left.
    std::signal(SIGPIPE, SIG_DFL);
    std::raise(SIGPIPE);
    return 128 + SIGPIPE;
  }
  return 0;
}
