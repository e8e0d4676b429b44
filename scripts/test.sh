#!/usr/bin/env bash
# The whole test suite, from a fresh Debian 12 machine: install what is missing, build with
# warnings as errors, run every test under AddressSanitizer and UndefinedBehaviorSanitizer (and
# in the uninstrumented build those that cannot run instrumented); then each fuzz target for a
# bounded time.
# Usage: scripts/test.sh [--quick]   (--quick: every test, in the uninstrumented build only)
set -euo pipefail
cd "$(dirname "$0")/.."

quick=false
[[ "${1:-}" == "--quick" ]] && quick=true

# What configuring needs now; the rest of the test bench (Slurm, sshd, Chromium, clang...)
# installs while the first build compiles (apt is mostly downloading and unpacking).
scripts/install-deps.sh --configure

stage() { echo "== $* (at ${SECONDS}s)"; }

configure() {  # configure DIR OPTIONS...: set up once, reconfigure after that
  local dir=$1; shift
  if [[ -d "$dir/meson-private" ]]; then meson setup --reconfigure "$dir" "$@" >/dev/null
  else meson setup "$dir" "$@" >/dev/null; fi
}

# Builds started in the background (below) are stopped with this script, whatever ends it.
background=()
stop_background() {
  local pid
  for pid in "${background[@]}"; do kill -- "-$pid" 2>/dev/null || true; done
}
trap stop_background EXIT
# in_background NICENESS LOG COMMAND...: run COMMAND in a session of its own (so that it is
# stopped whole), niced, so that it takes only the CPU time the tests leave idle while they wait
# on real processes. A new session is a new scheduling autogroup (sched(7)), across which a
# process's own nice value counts for nothing: the group's is set too, from inside it.
in_background() {
  local niceness=$1 log=$2; shift 2
  setsid bash -c 'echo "$1" >/proc/self/autogroup 2>/dev/null || true
                  n=$1; shift; exec nice -n "$n" "$@"' in_background "$niceness" "$@" \
    >"$log" 2>&1 </dev/null &
  background+=("$!")
}

stage "build (warnings are errors)"
mkdir -p build-test
scripts/install-deps.sh $($quick || echo --fuzz) >build-test/install-deps.log 2>&1 &
deps_pid=$!
# Optimised as users run it, with line tables only (-g1): full debug information costs a third
# of every compile, and a backtrace needs only the lines.
configure build-test --werror -Doptimization=2 -Ddebug=false -Dcpp_args=-g1
meson compile -C build-test
wait "$deps_pid" || { cat build-test/install-deps.log >&2; echo "installing the test bench failed" >&2; exit 1; }

if $quick; then
  stage "test"
  meson test -C build-test --print-errorlogs
  stage "done"
  exit 0
fi

# The whole suite runs once, under the sanitizers; the uninstrumented build runs only what cannot
# run instrumented or what only it shows (suite 'plain', tests/meson.build), then the packages.
# The CPU is the limit on a 2-core machine (the project compiles five times: here, sanitizers,
# .deb, pip's wheel, fuzz), so the other builds run in the background while tests wait on real
# processes: the sanitizer build first (it is needed next), then, at lower priority, the .deb
# (issue 14: built, installed and removed once, here: slow and root only) and issue 22's
# `pip install .` into a new venv, which the 'packages' tests check and use at the end.
sanitize_options=(--werror -Doptimization=0 -Ddebug=false -Dcpp_args=-g1
                  -Db_sanitize=address,undefined -Db_lundef=false -Dbench=false)
configure build-sanitize "${sanitize_options[@]}"
in_background 5 build-sanitize.log meson compile -C build-sanitize
sanitize_pid=$!
deb=${SEPPO_TEST_DEB:-${CI:-false}}
debs=
if [[ "$deb" == 1 || "$deb" == true ]]; then
  debs=$PWD/build-test/debs
  SEPPO_TEST_DEB=$deb in_background 15 build-test/deb-build.log \
    tests/ops/deb_package.sh --build-only "$PWD" "$debs"
fi
pip=$PWD/build-test/pip
in_background 15 build-test/pip-install.log \
  tests/python/pip_install.sh --install-only "$PWD" "$PWD/build-test/wheel-build" "$pip"

# A failing stage does not hide the later ones: the status is the last thing said.
status=0
stage "uninstrumented-only tests"
meson test -C build-test --no-rebuild --print-errorlogs --suite plain || status=1

stage "address and undefined-behaviour sanitizers: the whole suite"
wait "$sanitize_pid" || true
meson compile -C build-sanitize  # nothing left to do, or the errors of the background build
# The fuzz targets build meanwhile (clang, libFuzzer), to run last.
fuzz_build_pid=
if [[ -x fuzz/run.sh ]]; then
  FUZZ_BUILD_ONLY=1 in_background 10 build-fuzz.log fuzz/run.sh
  fuzz_build_pid=$!
fi
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
  meson test -C build-sanitize --print-errorlogs --timeout-multiplier 3 --no-suite packages ||
  status=1

stage "packages (.deb build-install-remove, pip install) and fuzzing (bounded)"
# The fuzz targets run beside the package tests, which mostly wait on dpkg and pip.
fuzz_run_pid=
if [[ -n "$fuzz_build_pid" ]]; then
  wait "$fuzz_build_pid" || true  # fuzz/run.sh builds again what failed, and says why
  in_background 0 fuzz-run.log fuzz/run.sh "${SEPPO_FUZZ_SECONDS:-20}"
  fuzz_run_pid=$!
fi
# The package tests wait (bounded) for the background builds and report how they went.
SEPPO_TEST_DEB=$deb SEPPO_DEB_PREBUILT=$debs SEPPO_PIP_PREINSTALLED=$pip \
  meson test -C build-test --no-rebuild --print-errorlogs --suite packages || status=1
if [[ -n "$fuzz_run_pid" ]]; then
  fuzz_status=0
  wait "$fuzz_run_pid" || fuzz_status=$?
  cat fuzz-run.log
  [[ $fuzz_status -eq 0 ]] || { echo "fuzzing failed (status $fuzz_status)" >&2; status=1; }
fi
stage "done"
[[ $status -eq 0 ]] || echo "FAILED: see the stages above" >&2
exit $status
