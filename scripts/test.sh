#!/usr/bin/env bash
# The whole test suite, from a fresh Debian 12 machine: install what is missing, build with
# warnings as errors, run every test; then the same tests under AddressSanitizer and
# UndefinedBehaviorSanitizer; then each fuzz target for a bounded time.
# Usage: scripts/test.sh [--quick]   (--quick: the plain build's tests only)
set -euo pipefail
cd "$(dirname "$0")/.."

quick=false
[[ "${1:-}" == "--quick" ]] && quick=true

scripts/install-deps.sh $($quick || echo --fuzz)  # the build set and the test set

stage() { echo "== $* (at ${SECONDS}s)"; }

configure() {  # configure DIR OPTIONS...: set up once, reconfigure after that
  local dir=$1; shift
  if [[ -d "$dir" ]]; then meson setup --reconfigure "$dir" "$@" >/dev/null
  else meson setup "$dir" "$@" >/dev/null; fi
}

stage "build (warnings are errors) and test"
configure build-test --werror -Dbuildtype=debugoptimized
meson compile -C build-test
# issue 14: the .deb build-install-remove test runs once, here, in CI (it is slow and root only).
# Its package build runs in the background while the other tests run (they mostly wait on real
# processes); the deb-package test then only installs, uses and removes what it built.
# (Only this stage: the sanitizer stage below skips it, as it has nothing to add there.)
deb=${SEPPO_TEST_DEB:-${CI:-false}}
debs=
deb_pid=
if [[ "$deb" == 1 || "$deb" == true ]]; then
  debs=$PWD/build-test/debs
  SEPPO_TEST_DEB=$deb tests/ops/deb_package.sh --build-only "$PWD" "$debs" \
    >build-test/deb-build.log 2>&1 &
  deb_pid=$!
fi
status=0
SEPPO_TEST_DEB=$deb SEPPO_DEB_PREBUILT=$debs meson test -C build-test --print-errorlogs || status=$?
[[ -z "$deb_pid" ]] || wait "$deb_pid" || true  # its outcome is the deb-package test's
[[ $status -eq 0 ]] || exit $status

$quick && exit 0

stage "address and undefined-behaviour sanitizers"
configure build-sanitize --werror -Dbuildtype=debug -Db_sanitize=address,undefined -Db_lundef=false \
  -Dbench=false
meson compile -C build-sanitize
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
  meson test -C build-sanitize --print-errorlogs --timeout-multiplier 3

if [[ -x fuzz/run.sh ]]; then
  stage "fuzzing (bounded)"
  fuzz/run.sh "${SEPPO_FUZZ_SECONDS:-20}"
fi
stage "done"
