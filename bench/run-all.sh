#!/usr/bin/env bash
# Builds the optimised benchmarks and runs all of them, printing one Markdown table (stdout)
# preceded by the machine's load, then the broker's and the relay's profiles per task.
#
#   bench/run-all.sh            # everything: about 15-25 minutes on the 2-core machine
#   bench/run-all.sh --quick    # smaller sizes, no callgrind at the scale rows (a smoke run)
#   bench/run-all.sh --only m   # some scenarios (letters as in bench/README.md)
#   bench/run-all.sh --only n   # (n) alone: the broker core at 2 to 10,000 simulated workers
#                               # (bench/scale.sh, callgrind; a few minutes)
#
# Other arguments go to seppo-bench. Needs valgrind for (j)'s and (m)'s instruction counts.
# Every process is started by seppo-bench and stopped by its pid; each step has a deadline.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
build=${SEPPO_BENCH_BUILD:-$root/build-bench}
if [[ ! -f $build/build.ninja ]]; then
  meson setup "$build" "$root" -Dbuildtype=release -Dtests=false >/dev/null
fi
meson compile -C "$build" >/dev/null

keep=$(mktemp -d /tmp/seppo-callgrind-XXXXXX)
trap 'rm -rf "$keep"' EXIT

# (n), the scale rows, are bench/scale.sh's, not seppo-bench's: taken out of --only's letters.
args=() scale=1 only=0 letters=0
for arg in "$@"; do
  if [[ $arg == --only ]]; then
    only=1 scale=0
  elif [[ $arg == --* ]]; then
    only=0
  elif ((only)) && [[ $arg == n ]]; then
    scale=1
    continue
  elif ((only)); then
    letters=1
  fi
  args+=("$arg")
done
[[ " $* " == *" --quick "* ]] && scale=0

echo "$(date -u '+%Y-%m-%d %H:%M UTC'), load before: $(cut -d' ' -f1-3 /proc/loadavg)"
echo
if [[ " $* " != *" --only "* ]] || ((letters)); then
  "$build/bench/seppo-bench" --keep-callgrind "$keep" "${args[@]}"
  echo
fi
if ((scale)); then
  "$root/bench/scale.sh" "$build"
  echo
fi
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"

# The profiles, when (m) ran.
if compgen -G "$keep/seppo-*" >/dev/null; then
  for role in broker relay; do
    echo
    "$root/bench/profile.py" "$keep" "$role" --top 25
  done
fi
