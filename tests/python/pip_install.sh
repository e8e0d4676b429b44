#!/usr/bin/env bash
# Issue 22: `pip install .` as a Python user runs it, offline. In a new virtual environment
# (--system-site-packages: Debian's meson-python, numpy...), pip builds the wheel from this source
# tree with meson-python (pyproject.toml, -Dwheel=true) and installs it; then, from another folder
# and with PATH not holding the venv's bin/, a script imports seppo and maps a Python function of
# its own on the default local cluster, whose seppo-worker must be the one pip installed.
# Usage:
#   pip_install.sh SOURCE_DIR WHEEL_BUILD_DIR    pip install SOURCE_DIR into a new venv, use it
#   pip_install.sh --install-only SOURCE_DIR WHEEL_BUILD_DIR OUT
#       only make OUT/venv and pip install SOURCE_DIR into it; OUT/status says how it went
#   WHEEL_BUILD_DIR is kept between runs (beside the build tree), so a rerun rebuilds only what
#   changed; ccache serves the first build's compiles.
# With SEPPO_PIP_PREINSTALLED=OUT, the first form waits (up to 20 min) for such an install and
# checks and uses OUT/venv: scripts/test.sh runs the install in the background when the plain
# build is done, so that its compiling fills the time the other tests spend waiting on processes.
# The wheel is built unoptimised here (-O0 compiles about twice as fast; what is tested is what
# pip installs and where, not speed). Users' pip builds keep pyproject.toml's release build.
set -euo pipefail
install_only=false
if [[ "${1:-}" == --install-only ]]; then install_only=true; shift; fi
source_dir=$(cd "$1" && pwd)
wheel_build=$2
python=/usr/bin/python3  # Debian's interpreter: its site-packages hold python3-mesonpy
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# pip_install VENV LOG: in a new venv, pip install SOURCE_DIR as a user does. No index, no build
# isolation: nothing is fetched; pip needs only what Debian installed.
pip_install() {
  local venv=$1 log=$2
  rm -rf "$venv"
  "$python" -m venv --system-site-packages "$venv"
  env -u SEPPO_WORKER -u PYTHONPATH PIP_NO_INDEX=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \
    "$venv/bin/pip" install --no-build-isolation --no-index --no-cache-dir --quiet \
    --config-settings=builddir="$wheel_build" \
    --config-settings=setup-args=-Doptimization=0 "$source_dir" >"$log" 2>&1
}

if $install_only; then
  out=$3
  mkdir -p "$out" && rm -f "$out"/status
  say() { echo "$*" >"$out/status.tmp" && mv "$out/status.tmp" "$out/status"; echo "$*"; }
  if pip_install "$out/venv" "$out/pip.log"; then
    say "OK: installed in ${SECONDS}s"
  else
    say "FAIL: pip install: $(tail -n 30 "$out/pip.log")"; exit 1
  fi
  exit 0
fi

start=$SECONDS
if [[ -n "${SEPPO_PIP_PREINSTALLED:-}" ]]; then
  for ((i = 0; i < 1200 * 5; i++)); do [[ -f "$SEPPO_PIP_PREINSTALLED/status" ]] && break; sleep 0.2; done
  status=$(cat "$SEPPO_PIP_PREINSTALLED/status" 2>/dev/null) ||
    { echo "FAIL: no install in $SEPPO_PIP_PREINSTALLED within 20 min" >&2; exit 1; }
  [[ "$status" == OK* ]] || { echo "FAIL: the background pip install: $status" >&2; exit 1; }
  echo "pip install ran in the background ($status)"
  venv=$SEPPO_PIP_PREINSTALLED/venv
else
  venv=$tmp/venv
  pip_install "$venv" "$tmp/pip.log" ||
    { cat "$tmp/pip.log" >&2; echo "FAIL: pip install" >&2; exit 1; }
  echo "pip install: $((SECONDS - start)) s"
fi

[[ -x "$venv/bin/seppo-worker" ]] || { echo "FAIL: no venv/bin/seppo-worker" >&2; exit 1; }
# Only the package and the worker: no broker, CLI, headers or C++ library in the environment.
for unwanted in bin/seppo bin/seppo-broker bin/seppo-ssh-workers include/seppo lib/libseppo.so.0 \
    lib/x86_64-linux-gnu/libseppo.so.0; do
  if [[ -e "$venv/$unwanted" ]]; then
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
  PATH=/usr/bin:/bin timeout 120 "$venv/bin/python" run.py "$venv")
echo "total: $((SECONDS - start)) s"
