#!/usr/bin/env bash
# Builds the libFuzzer targets (into build-fuzz/ unless FUZZ_BUILD_DIR says otherwise) and runs
# each one for a bounded time. Exits non-zero if a target crashes on a seed or while fuzzing.
#
#   fuzz/run.sh [SECONDS_PER_TARGET] [TARGET...]     default: 30 s each, all three targets
#
# Safe for CI: reads no stdin, never prompts, leaves fuzz/corpus/ untouched (new inputs go to
# $FUZZ_BUILD_DIR/fuzz-corpus/<target>/), writes crash reproducers to
# $FUZZ_BUILD_DIR/fuzz-artifacts/<target>/ and full logs to $FUZZ_BUILD_DIR/fuzz-logs/.
# Environment: CXX (default clang++-14, else clang++), FUZZ_BUILD_DIR, FUZZ_RSS_LIMIT_MB (2048),
# FUZZ_BUILD_ONLY=1 to build the targets and stop (scripts/test.sh builds them in the background),
# FUZZ_CLEAN=1 to rebuild the fuzz targets from scratch (after sources changed with an mtime older
# than the last build, e.g. written from a machine whose clock is behind: a stale object next to
# a newer header gives link errors or false sanitizer reports).
set -euo pipefail
exec </dev/null

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"
build="${FUZZ_BUILD_DIR:-$root/build-fuzz}"
seconds="${1:-30}"
shift || true
targets=("$@")
[[ ${#targets[@]} -gt 0 ]] || targets=(fuzz_wire_decode fuzz_payload fuzz_broker)
rss_limit="${FUZZ_RSS_LIMIT_MB:-2048}"

if ! [[ "$seconds" =~ ^[0-9]+$ ]] || [[ "$seconds" -eq 0 ]]; then
  echo "run.sh: the time per target must be a positive number of seconds, not '$seconds'" >&2
  exit 2
fi

# Longest input the fuzzer makes up, per target (seed files longer than this are still run whole
# in the seed pass below).
max_len() {
  case "$1" in
    fuzz_wire_decode) echo 4096 ;;
    fuzz_payload) echo 8192 ;;
    fuzz_broker) echo 8192 ;;
    *) echo 4096 ;;
  esac
}

# --- build -------------------------------------------------------------------------------------
if [[ -z "${CXX:-}" ]]; then
  if command -v clang++-14 >/dev/null; then CXX=clang++-14; else CXX=clang++; fi
fi
export CXX
if [[ ! -f "$build/build.ninja" ]]; then
  echo "== configuring $build with CXX=$CXX"
  meson setup "$build" "$root" -Dfuzz=true -Dtests=false
elif ! meson introspect --buildoptions "$build" | python3 -c \
    'import json, sys; sys.exit(0 if any(o["name"] == "fuzz" and o["value"] for o in json.load(sys.stdin)) else 1)'; then
  echo "== enabling -Dfuzz=true in $build"
  meson configure "$build" -Dfuzz=true
fi
if [[ "${FUZZ_CLEAN:-0}" == 1 ]]; then
  echo "== cleaning the fuzz targets in $build"
  ninja -C "$build" -t clean fuzz >/dev/null
fi
echo "== building ${targets[*]}"
meson compile -C "$build" "${targets[@]}"
[[ "${FUZZ_BUILD_ONLY:-0}" == 1 ]] && exit 0

# --- run ---------------------------------------------------------------------------------------
mkdir -p "$build/fuzz-logs"
failed=()
for target in "${targets[@]}"; do
  binary="$build/fuzz/$target"
  seeds="$here/corpus/$target"
  work="$build/fuzz-corpus/$target"
  artifacts="$build/fuzz-artifacts/$target/"
  log="$build/fuzz-logs/$target.log"
  mkdir -p "$work" "$artifacts"
  common=(-rss_limit_mb="$rss_limit" -timeout=25 -artifact_prefix="$artifacts")

  # 1. Every committed seed, whole (regression inputs, including the huge hostile ones).
  if compgen -G "$seeds/*" >/dev/null; then
    echo "== $target: running the seeds in ${seeds#"$root"/}"
    if ! "$binary" "${common[@]}" "$seeds"/* >"$log.seeds" 2>&1; then
      echo "!! $target crashed on a seed; log: $log.seeds" >&2
      grep -E 'ERROR|SUMMARY|Running:|fuzz_' "$log.seeds" | tail -n 20 >&2 || true
      failed+=("$target")
      continue
    fi
  fi

  # 2. Fuzzing, bounded in time. New inputs go to $work; the seeds are read only.
  echo "== $target: fuzzing for ${seconds} s"
  status=0
  "$binary" "${common[@]}" -max_total_time="$seconds" -max_len="$(max_len "$target")" \
    -print_final_stats=1 "$work" "$seeds" >"$log" 2>&1 || status=$?
  execs="$(grep -E '^stat::number_of_executed_units' "$log" | awk '{print $2}')"
  rate="$(grep -E '^stat::average_exec_per_sec' "$log" | awk '{print $2}')"
  cov="$(grep -E '^#[0-9]+[[:space:]]+(DONE|NEW|REDUCE|pulse|INITED)' "$log" | tail -n 1 | grep -oE 'cov: [0-9]+' || true)"
  echo "   ${execs:-?} runs, ${rate:-?} exec/s, ${cov:-cov: ?}, exit status $status"
  if [[ $status -ne 0 ]]; then
    echo "!! $target failed (exit status $status); log: $log" >&2
    grep -E 'ERROR|SUMMARY|fuzz_[a-z_]+:|Test unit written|artifact_prefix' "$log" | tail -n 20 >&2 || true
    failed+=("$target")
  fi
done

if [[ ${#failed[@]} -gt 0 ]]; then
  echo "FAILED: ${failed[*]}. Reproduce with: $build/fuzz/<target> <file from $build/fuzz-artifacts/<target>/>" >&2
  exit 1
fi
echo "OK: ${targets[*]}"
