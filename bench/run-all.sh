#!/usr/bin/env bash
# Builds the optimised benchmarks and runs all of them, printing one Markdown table (stdout)
# preceded by the machine's load, the Python figures (bench/python_bench.py), the broker's and
# the relay's profiles per task, and last issue 28's target table (bench/targets.py): each
# target with seppo's figure, the baseline from the same run, the ratio and met / NOT met.
#
#   bench/run-all.sh            # everything: about 15-25 minutes on the 2-core machine
#   bench/run-all.sh --quick    # smaller sizes, no callgrind at the scale rows (a smoke run)
#   bench/run-all.sh --only m   # some scenarios (letters as in bench/README.md)
#   bench/run-all.sh --only n   # (n) alone: the broker core at 2 to 10,000 simulated workers
#                               # (bench/scale.sh, callgrind; a few minutes)
#   bench/run-all.sh --only p   # (p) alone: bench/python_bench.py, Python and the C++ client
#                               # against multiprocessing.Pool(2).map (needs python/ built)
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

# (n), the scale rows, are bench/scale.sh's and (p) bench/python_bench.py's, not seppo-bench's:
# taken out of --only's letters.
args=() scale=1 python=1 only=0 letters=0 quick=0 failed=0
for arg in "$@"; do
  if [[ $arg == --only ]]; then
    only=1 scale=0 python=0
  elif [[ $arg == --* ]]; then
    only=0
  elif ((only)) && [[ $arg == n ]]; then
    scale=1
    continue
  elif ((only)) && [[ $arg == p ]]; then
    python=1
    continue
  elif ((only)); then
    letters=1
  fi
  args+=("$arg")
done
[[ " $* " == *" --quick "* ]] && scale=0 quick=1

echo "$(date -u '+%Y-%m-%d %H:%M UTC'), load before: $(cut -d' ' -f1-3 /proc/loadavg)"
echo
if [[ " $* " != *" --only "* ]] || ((letters)); then
  "$build/bench/seppo-bench" --keep-callgrind "$keep" --results "$keep/bench.tsv" "${args[@]}" ||
    failed=1
  echo
fi
if ((scale)); then
  SCALE_RESULTS="$keep/scale.tsv" "$root/bench/scale.sh" "$build" || failed=1
  echo
fi
if ((python)); then
  # The Python package from the same build (meson builds python/ when pybind11 is installed).
  if compgen -G "$build/python/seppo/_seppo*.so" >/dev/null; then
    sizes=(--items "100000,1000000" --repeat 3)
    ((quick)) && sizes=(--items 100000 --repeat 1)
    PYTHONPATH="$build/python${PYTHONPATH:+:$PYTHONPATH}" SEPPO_BUILD_DIR="$build" \
      timeout 1800 python3 "$root/bench/python_bench.py" "${sizes[@]}" --json "$keep/python.json" ||
      failed=1
  else
    echo "python_bench: skipped, the Python package is not built in $build (pybind11-dev)"
  fi
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

echo
quick_flag=()
((quick)) && quick_flag=(--quick)
python3 "$root/bench/targets.py" --bench "$keep/bench.tsv" --scale "$keep/scale.tsv" \
  --python "$keep/python.json" "${quick_flag[@]}"
exit "$failed"
