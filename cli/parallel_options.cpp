#include "cli/parallel_options.hpp"

#include <seppo/error.hpp>

namespace seppo::cli {
namespace {

constexpr std::string_view kDocs = "see docs/parallel.md";
constexpr std::string_view kCluster =
    "seppo runs on a broker's workers instead (seppo-worker on each host, or -S for one job), "
    "and copies no files";

}  // namespace

const std::vector<RefusedOption>& refused_parallel_options() {
  static const std::vector<RefusedOption> table = {
      {"--pipe-part|--pipepart", "--pipe reads stdin; give the file on stdin (< FILE)"},
      {"--block-timeout|--blocktimeout|--bt", "--pipe blocks end at a size or a record count"},
      {"--regexp|--regex|--remove-rec-sep|--removerecsep|--rrs",
       "--recstart and --recend are plain strings, kept in the blocks"},
      {"--round-robin|--roundrobin|--round|--tee|--shard|--bin|--group-by|--groupby|--cat|--fifo",
       "each --pipe block is one command's stdin"},
      {"-L|--max-lines|--maxlines|-l", "--pipe -N N counts records; use --recend"},
      {"--xargs|-s|--max-chars|--maxchars",
       "-m and -X fill a command line up to seppo's own limit; use -N N for a fixed number"},
      {"--controlmaster|-M|--ssh-delay|--sshdelay|"
       "--filter-hosts|--filterhosts|--onall|--nonall|--basefile|--bf|--transferfile|--tf|"
       "--transfer-file|--transfer|--return|--trc|--cleanup|--workdir|--wd|--work-dir|"
       "--rsync-opts|--hgrp|--hostgroups|--template|--tmpl",
       kCluster},
      {"--recordenv|--record-env", "a worker's commands run in the worker's environment"},
      {"-q|--quote", "a --command template is one string: quote inside it"},
      {"--retry-failed|--retryfailed",
       "the commands are not read back from the job log: use --resume-failed with the same "
       "inputs"},
      {"--ctag|--ctagstring|--ctag-string|--color|--colour|"
       "--color-failed|--colour-failed|--cf",
       "no colours"},
      {"-i|--extensionreplace|--er|-U|--basenamereplace|--bnr|--dirnamereplace|--dnr|"
       "--basenameextensionreplace|--bner|--seqreplace|--slotreplace|--plus|--parens",
       "the replacement strings are {} {.} {/} {//} {/.} {N} {#} {%}"},
      {"-u|--ungroup|--line-buffer|--line-buffered|--linebuffer|--lb|--latest-line|--ll|--files|"
       "--output-as-files|--outputasfiles|--tmux|--tmuxpane|--tmux-pane",
       "each item's output prints whole, in order"},
      {"--ssh-delay|--load|--noswap|--memfree|--memsuspend|--term-seq|--termseq|"
       "--limit",
       "a worker's operator sets how it runs its commands"},
      {"--sql|--sqlmaster|--sql-master|--sqlworker|--sql-worker|--sqlandworker|--sql-and-worker",
       "seppo's broker is the queue"},
      {"--semaphore|--sem|--semaphore-timeout|--st|--semaphore-name|--id|--fg|--bg|--wait",
       "seppo map is not a semaphore"},
      {"-p|--interactive|-o|--open-tty|--tty|-t|--verbose|-v|-E|--eof|-e|-d|--delimiter|-r|"
       "--no-run-if-empty|-x|--exit|--show-limits|--number-of-cpus|--number-of-cores|"
       "--number-of-sockets|--number-of-threads|--csv|--shebang|--hashbang|--embed|--profile|-J|"
       "--total-jobs|--total|--arg-sep|--argsep|--arg-file-sep|--argfilesep|--trim|-T|--tollef|"
       "--gnu|--skip-first-line|--filter|--ctrl-c|--no-ctrl-c|-W|-B|-D|--debug|-H|--compress|"
       "--compress-program|--decompress-program|--process-slot-var|-Y|--citation|--bibtex|"
       "--silent|--max-line-length-allowed|--use-cpus-instead-of-cores|"
       "--use-sockets-instead-of-threads|--use-cores-instead-of-threads|--shell-quote|"
       "--shellquote|--linkinputsource|--xapplyinputsource",
       "not supported by seppo map"},
  };
  return table;
}

std::optional<std::string> refusal_for(std::string_view word) {
  if (word.size() < 2 || word[0] != '-' || word == "--") return std::nullopt;
  std::string_view name = word;
  if (word[1] == '-') {
    name = word.substr(0, word.find('='));
  } else {
    name = word.substr(0, 2);  // -N2, -X: the letter
  }
  for (const RefusedOption& option : refused_parallel_options()) {
    std::string_view names = option.names;
    while (!names.empty()) {
      const auto bar = names.find('|');
      const std::string_view one = names.substr(0, bar);
      if (one == name) {
        return "seppo map does not support " + std::string(name) + ": " + std::string(option.why) +
               "; " + std::string(kDocs);
      }
      if (bar == std::string_view::npos) break;
      names.remove_prefix(bar + 1);
    }
  }
  return std::nullopt;
}

std::string unknown_option_message(std::string_view word) {
  return "seppo map: no option " + std::string(word) +
         " (seppo map --help lists its options; GNU parallel's are in docs/parallel.md)";
}

unsigned parse_jobs(const std::string& text, unsigned cores) {
  const auto fail = [&text]() -> unsigned {
    throw Error("-j " + text + ": expected N, N% (of the cores), +N or -N (cores plus or minus " +
                "N) or 0 (as many as possible)");
  };
  if (text.empty()) return fail();
  std::string digits = text;
  char sign = 0;
  bool percent = false;
  if (digits[0] == '+' || digits[0] == '-') {
    sign = digits[0];
    digits.erase(0, 1);
  }
  if (!digits.empty() && digits.back() == '%') {
    percent = true;
    digits.pop_back();
  }
  if (digits.empty() || digits.size() > 6 ||
      digits.find_first_not_of("0123456789") != std::string::npos || (sign != 0 && percent)) {
    return fail();
  }
  const long n = std::stol(digits);
  long jobs = n;
  if (percent) jobs = static_cast<long>(cores) * n / 100;
  if (sign == '+') jobs = static_cast<long>(cores) + n;
  if (sign == '-') jobs = static_cast<long>(cores) - n;
  if (sign == 0 && !percent && n == 0) jobs = 256;  // parallel: as many as it can
  if (jobs < 1) jobs = 1;
  if (jobs > 4096) jobs = 4096;
  return static_cast<unsigned>(jobs);
}

}  // namespace seppo::cli
