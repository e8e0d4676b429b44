#!/usr/bin/env bash
# Issue 22: `pip install .` as a Python user runs it, offline. In a new virtual environment
# (--system-site-packages: Debian's meson-python, numpy...), pip builds the wheel from this source
# tree with meson-python (pyproject.toml, -Dwheel=true) and installs it; then, from another folder
# and with PATH not holding the venv's bin/, a script imports seppo and maps a Python function of
# its own on the default local cluster, whose seppo-worker must be the one pip installed.
# Usage:
#   pip_install.sh SOURCE_DIR WHEEL_BUILD_DIR              pip install SOURCE_DIR, then use it
#   pip_install.sh --build-only SOURCE_DIR WHEEL_BUILD_DIR OUT
#       only `pip wheel SOURCE_DIR` into OUT (the same PEP 517 build pip install runs);
#       OUT/status says how it went
#   WHEEL_BUILD_DIR is kept between runs (beside the build tree), so a rerun rebuilds only what
#   changed; ccache serves the first build's compiles.
# With SEPPO_WHEEL_PREBUILT=OUT, the first form waits (up to 20 min) for such a build and installs
# its wheel instead of building: scripts/test.sh starts the build in the background when the plain
# build is done, so that its compiling fills the time the other tests spend waiting on processes.
# The wheel is built unoptimised here (-O0 compiles about twice as fast; what is tested is what
# pip installs and where, not speed). Users' pip builds keep pyproject.toml's release build.
set -euo pipefail
build_only=false
if [[ "${1:-}" == --build-only ]]; then build_only=true; shift; fi
source_dir=$(cd "$1" && pwd)
wheel_build=$2
python=/usr/bin/python3  # Debian's interpreter: its site-packages hold python3-mesonpy
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# No index, no build isolation: nothing is fetched; pip needs only what Debian installed.
pip_offline() {
  env -u SEPPO_WORKER -u PYTHONPATH PIP_NO_INDEX=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \
    "$tmp/venv/bin/pip" "$@" --no-build-isolation --no-index --no-cache-dir --quiet
}
build_args=(--config-settings=builddir="$wheel_build"
            --config-settings=setup-args=-Doptimization=0 "$source_dir")

if $build_only; then
  out=$3
  mkdir -p "$out" && rm -f "$out"/status "$out"/*.whl
  say() { echo "$*" >"$out/status.tmp" && mv "$out/status.tmp" "$out/status"; echo "$*"; }
  "$python" -m venv --system-site-packages "$tmp/venv"
  if pip_offline wheel --wheel-dir "$out" "${build_args[@]}" >"$out/pip.log" 2>&1; then
    say "OK: built in ${SECONDS}s"
  else
    say "FAIL: pip wheel: $(tail -n 30 "$out/pip.log")"; exit 1
  fi
  exit 0
fi

start=$SECONDS
"$python" -m venv --system-site-packages "$tmp/venv"
if [[ -n "${SEPPO_WHEEL_PREBUILT:-}" ]]; then
  for ((i = 0; i < 1200 * 5; i++)); do [[ -f "$SEPPO_WHEEL_PREBUILT/status" ]] && break; sleep 0.2; done
  status=$(cat "$SEPPO_WHEEL_PREBUILT/status" 2>/dev/null) ||
    { echo "FAIL: no wheel built in $SEPPO_WHEEL_PREBUILT within 20 min" >&2; exit 1; }
  [[ "$status" == OK* ]] || { echo "FAIL: the background wheel build: $status" >&2; exit 1; }
  echo "wheel built in the background ($status)"
  wheels=("$SEPPO_WHEEL_PREBUILT"/seppo-*.whl)
  [[ ${#wheels[@]} -eq 1 && -f "${wheels[0]}" ]] ||
    { echo "FAIL: expected one wheel in $SEPPO_WHEEL_PREBUILT" >&2; exit 1; }
  pip_offline install "${wheels[0]}" >"$tmp/pip.log" 2>&1 ||
    { cat "$tmp/pip.log" >&2; echo "FAIL: pip install ${wheels[0]}" >&2; exit 1; }
else
  pip_offline install "${build_args[@]}" >"$tmp/pip.log" 2>&1 ||
    { cat "$tmp/pip.log" >&2; echo "FAIL: pip install" >&2; exit 1; }
fi
echo "pip install: $((SECONDS - start)) s"

[[ -x "$tmp/venv/bin/seppo-worker" ]] || { echo "FAIL: no venv/bin/seppo-worker" >&2; exit 1; }
# Only the package and the worker: no broker, CLI, headers or C++ library in the environment.
for unwanted in bin/seppo bin/seppo-broker bin/seppo-ssh-workers include/seppo lib/libseppo.so.0 \
    lib/x86_64-linux-gnu/libseppo.so.0; do
  if [[ -e "$tmp/venv/$unwanted" ]]; then
    echo "FAIL: the wheel installed $unwanted" >&2; exit 1
  fi
done

mkdir "$tmp/work"
cat >"$tmp/work/squares.py" <<'EOF'
def square(x):
    return x * x
EOF
cat >"$tmp/work/run.py" <<'EOF'
import os, sys
import seppo, squares
venv = sys.argv[1]
assert seppo.__file__.startswith(venv), seppo.__file__
assert os.path.exists(os.path.join(os.path.dirname(seppo.__file__), "py.typed"))
assert os.path.exists(os.path.join(os.path.dirname(seppo.__file__), "_seppo.pyi"))
assert seppo.__version__.count(".") == 2, seppo.__version__
assert os.path.samefile(os.environ["SEPPO_WORKER"], os.path.join(venv, "bin", "seppo-worker"))
assert seppo.map_parallel(squares.square, range(100)) == [x * x for x in range(100)]
assert seppo.map_parallel(squares.square, [1.5, (2, )[0]]) == [2.25, 4]
print("map ok", seppo.__version__)
EOF
# PATH without the venv's bin/: the package finds its worker itself.
(cd "$tmp/work" && env -u SEPPO_WORKER -u SEPPO_BROKER -u SEPPO_MODULE_PATH -u PYTHONPATH \
  PATH=/usr/bin:/bin timeout 120 "$tmp/venv/bin/python" run.py "$tmp/venv")
echo "total: $((SECONDS - start)) s"
