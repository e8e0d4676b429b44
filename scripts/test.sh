#!/usr/bin/env bash
# The whole test suite, from a fresh Debian 12 machine: install what is missing, build with
# warnings as errors, run every test; then the same tests under AddressSanitizer and
# UndefinedBehaviorSanitizer; then each fuzz target for a bounded time.
# Usage: scripts/test.sh [--quick]   (--quick: the plain build's tests only)
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
# in_background NICENESS LOG COMMAND...: run COMMAND in a process group of its own, niced, so
# that it takes only the CPU time the tests leave idle while they wait on real processes.
in_background() {
  local niceness=$1 log=$2; shift 2
  setsid nice -n "$niceness" "$@" >"$log" 2>&1 </dev/null &
  background+=("$!")
}

stage "build (warnings are errors) and test"
mkdir -p build-test
scripts/install-deps.sh $($quick || echo --fuzz) >build-test/install-deps.log 2>&1 &
deps_pid=$!
# Optimised as users run it, with line tables only (-g1): full debug information costs a third
# of every compile, and a backtrace needs only the lines.
configure build-test --werror -Doptimization=2 -Ddebug=false -Dcpp_args=-g1
meson compile -C build-test
wait "$deps_pid" || { cat build-test/install-deps.log >&2; echo "installing the test bench failed" >&2; exit 1; }
# Three builds overlap the tests, which mostly wait on real processes: the packages (issue 14:
# the .deb build-install-remove test runs once, here, in CI: it is slow and root only), issue
# 22's `pip install .` into a new venv, and the sanitizer build of the next stage (the lowest
# priority: it is needed last). The deb and pip tests then check and use what was built.
# (Only this stage: the sanitizer stage below skips the deb and pip tests.)
deb=${SEPPO_TEST_DEB:-${CI:-false}}
debs=
deb_pid=
if [[ "$deb" == 1 || "$deb" == true ]]; then
  debs=$PWD/build-test/debs
  SEPPO_TEST_DEB=$deb in_background 10 build-test/deb-build.log \
    tests/ops/deb_package.sh --build-only "$PWD" "$debs"
  deb_pid=$!
fi
pip=$PWD/build-test/pip
in_background 10 build-test/pip-install.log \
  tests/python/pip_install.sh --install-only "$PWD" "$PWD/build-test/wheel-build" "$pip"
pip_pid=$!
sanitize_options=(--werror -Doptimization=0 -Ddebug=false -Dcpp_args=-g1
                  -Db_sanitize=address,undefined -Db_lundef=false -Dbench=false)
sanitize_pid=
if ! $quick; then
  configure build-sanitize "${sanitize_options[@]}"
  in_background 19 build-sanitize.log meson compile -C build-sanitize
  sanitize_pid=$!
fi
status=0
SEPPO_TEST_DEB=$deb SEPPO_DEB_PREBUILT=$debs SEPPO_PIP_PREINSTALLED=$pip \
  meson test -C build-test --print-errorlogs || status=$?
# Their outcomes are the deb-package and python-pip tests'.
[[ -z "$deb_pid" ]] || wait "$deb_pid" || true
wait "$pip_pid" || true
[[ $status -eq 0 ]] || exit $status

$quick && exit 0

stage "address and undefined-behaviour sanitizers"
wait "$sanitize_pid" || true
meson compile -C build-sanitize  # nothing left to do, or the errors of the background build
# The fuzz targets build meanwhile (clang, libFuzzer), to run after these tests.
FUZZ_BUILD_ONLY=1 in_background 10 build-fuzz.log fuzz/run.sh
fuzz_build_pid=$!
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
  meson test -C build-sanitize --print-errorlogs --timeout-multiplier 3

if [[ -x fuzz/run.sh ]]; then
  stage "fuzzing (bounded)"
  wait "$fuzz_build_pid" || true  # fuzz/run.sh builds again what failed, and says why
  fuzz/run.sh "${SEPPO_FUZZ_SECONDS:-20}"
fi
stage "done"
