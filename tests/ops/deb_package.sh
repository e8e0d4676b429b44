#!/usr/bin/env bash
# The Debian packages: dpkg-buildpackage -us -uc -b builds seppo, libseppo0, libseppo-dev and
# python3-seppo from a copy of the sources, lintian finds no errors, dpkg -i installs them, the
# installed seppo maps with its example module, Debian's python3 imports seppo and maps C++ and
# Python functions on a local cluster, and dpkg -P (purge) leaves the machine as it was.
# Root only and slow (a full build), so it runs when SEPPO_TEST_DEB=1 (scripts/test.sh sets
# it in CI). Usage: deb_package.sh SOURCE_DIR
set -uo pipefail
src=$1
[[ "${SEPPO_TEST_DEB:-}" == 1 || "${SEPPO_TEST_DEB:-}" == true ]] ||
  { echo "SKIP: set SEPPO_TEST_DEB=1 to build and install the .debs (scripts/test.sh does in CI)"; exit 77; }
[[ $(id -u) -eq 0 ]] || { echo "SKIP: installing .debs needs root"; exit 77; }
command -v dpkg-buildpackage >/dev/null && command -v dh >/dev/null ||
  { echo "SKIP: dpkg-dev and debhelper are not installed"; exit 77; }
for p in seppo libseppo0 libseppo-dev python3-seppo; do
  if dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed"; then
    echo "SKIP: $p is already installed here; this test would remove it"; exit 77
  fi
done
dir=$(mktemp -d)
installed=()
cleanup() {
  [[ ${#installed[@]} -gt 0 ]] && dpkg -P "${installed[@]}" >/dev/null 2>&1
  rm -rf "$dir"
}
trap cleanup EXIT
fail() { echo "FAIL (after ${SECONDS}s): $*"; exit 1; }

# A copy of the sources (committed and new files, not build folders): dpkg-buildpackage
# writes next to the source folder and into it.
mkdir -p "$dir/seppo"
if git -C "$src" rev-parse >/dev/null 2>&1; then
  (cd "$src" && git ls-files -z --cached --others --exclude-standard |
     xargs -0 -I{} sh -c 'test -e "{}" && printf "%s\0" "{}"' | tar --null -T - -cf -) |
    tar -xf - -C "$dir/seppo"
else
  tar -C "$src" --exclude='./build*' --exclude='./obj-*' -cf - . | tar -xf - -C "$dir/seppo"
fi
(cd "$dir/seppo" && dpkg-buildpackage -us -uc -b) >"$dir/build.log" 2>&1 ||
  fail "dpkg-buildpackage: $(tail -n 30 "$dir/build.log")"
echo "built in ${SECONDS}s: $(cd "$dir" && ls ./*.deb | tr '\n' ' ')"
if command -v lintian >/dev/null; then
  lintian --fail-on error "$dir"/*.changes >"$dir/lintian.log" 2>&1 ||
    fail "lintian: $(cat "$dir/lintian.log")"
  echo "lintian: $(grep -c '^E:' "$dir/lintian.log") errors, $(grep -c '^W:' "$dir/lintian.log") warnings"
else
  echo "lintian not installed: not run"
fi
installed=(python3-seppo libseppo-dev seppo libseppo0)
dpkg -i "$dir"/seppo_*.deb "$dir"/libseppo0_*.deb "$dir"/libseppo-dev_*.deb \
  "$dir"/python3-seppo_*.deb >"$dir/dpkg.log" 2>&1 ||
  fail "dpkg -i: $(cat "$dir/dpkg.log")"
[[ -f /etc/default/seppo ]] || fail "no /etc/default/seppo"
result=$(cd / && seq 1 5 | env -u SEPPO_MODULE_PATH /usr/bin/seppo map --local 2 example_module.square |
         tr '\n' ' ')
[[ "$result" == "1 4 9 16 25 " ]] || fail "installed seppo map --local gave '$result'"
# Debian's python3, no PYTHONPATH: the seed's Python example and a C++ module's function on a
# local cluster (no SEPPO_BROKER), its Python workers run by the installed seppo-worker.
result=$(cd / && env -u SEPPO_BROKER -u SEPPO_MODULE_PATH -u PYTHONPATH -u SEPPO_WORKER \
  PYTHONPATH=/usr/share/seppo/examples/python /usr/bin/python3 -c '
import seppo, example_module_py
print(seppo.map_parallel(example_module_py.square, [1, 2, 3]),
      seppo.map_parallel("example_module.square", [4, 5]),
      seppo.map_parallel(example_module_py.hello_world, [1])[0].startswith("hello world from"))
' 2>"$dir/python.log")
[[ "$result" == "[1, 4, 9] [16, 25] True" ]] ||
  fail "installed python3-seppo gave '$result': $(cat "$dir/python.log")"
[[ $(cd / && env -u PYTHONPATH /usr/bin/python3 -c 'import seppo; print(seppo.__file__)') == /usr/lib/python3/dist-packages/seppo/* ]] ||
  fail "python3 imports seppo from elsewhere than /usr/lib/python3/dist-packages"
man -w seppo-broker >/dev/null 2>&1 || [[ -f /usr/share/man/man8/seppo-broker.8.gz ]] ||
  fail "seppo-broker(8) is not installed"
pkg-config --exists seppo || fail "seppo.pc is not found by pkg-config"
dpkg -P "${installed[@]}" >"$dir/dpkg.log" 2>&1 || fail "dpkg -P: $(cat "$dir/dpkg.log")"
installed=()
[[ ! -e /usr/bin/seppo && ! -e /etc/default/seppo ]] || fail "files are left after dpkg -P"
echo "packages built, installed, used and removed in ${SECONDS}s"
