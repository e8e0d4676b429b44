#!/usr/bin/env bash
# The Debian packages: dpkg-buildpackage -us -uc -b builds seppo, libseppo0, libseppo-dev and
# python3-seppo from a copy of the sources, lintian finds no errors, dpkg -i installs them, the
# installed seppo maps with its example module, Debian's python3 imports seppo and maps C++ and
# Python functions on a local cluster, /etc/seppo's folders, docs, versions and maintainer
# scripts are as docs/operating.md says, and dpkg -P (purge) leaves the machine as it was, the
# broker's keys included.
# Root only and slow (a full build), so it runs when SEPPO_TEST_DEB=1 (scripts/test.sh sets
# it in CI). Usage:
#   deb_package.sh SOURCE_DIR                     build, then install, use and remove
#   deb_package.sh --build-only SOURCE_DIR OUT    only build, into OUT; OUT/status says how it went
# With SEPPO_DEB_PREBUILT=OUT, the first form waits for such a build (up to 30 min) instead of
# building: scripts/test.sh starts the build in the background when the plain build is done, so
# that its compiling overlaps the other tests (which mostly wait on real processes) and only
# the install checks, which change the machine, run alone.
# The packages are built with DEB_BUILD_OPTIONS=noopt: what is checked here is the packaging,
# and -O0 compiles about twice as fast.
set -uo pipefail
build_only=false
if [[ "${1:-}" == --build-only ]]; then
  build_only=true
  src=$2 out=$3
  mkdir -p "$out" && rm -f "$out"/status "$out"/*.deb "$out"/*.changes "$out"/*.buildinfo
  say() { echo "$*" >"$out/status.tmp" && mv "$out/status.tmp" "$out/status"; echo "$*"; }
else
  src=$1
fi
skip() { $build_only && say "SKIP: $*"; echo "SKIP: $*"; exit 77; }
[[ "${SEPPO_TEST_DEB:-}" == 1 || "${SEPPO_TEST_DEB:-}" == true ]] ||
  skip "set SEPPO_TEST_DEB=1 to build and install the .debs (scripts/test.sh does in CI)"
[[ $(id -u) -eq 0 ]] || skip "installing .debs needs root"
command -v dpkg-buildpackage >/dev/null && command -v dh >/dev/null ||
  skip "dpkg-dev and debhelper are not installed"
for p in seppo libseppo0 libseppo-dev python3-seppo; do
  if dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed"; then
    skip "$p is already installed here; this test would remove it"
  fi
done
dir=$(mktemp -d)
installed=()
cleanup() {
  if $build_only && [[ ! -f "$out/status" ]]; then say "FAIL: the build stopped before it ended"; fi
  [[ ${#installed[@]} -gt 0 ]] && dpkg -P "${installed[@]}" >/dev/null 2>&1
  rm -rf "$dir"
}
trap cleanup EXIT
fail() { echo "FAIL (after ${SECONDS}s): $*"; exit 1; }

build_debs() {  # into $dir: a copy of the sources (committed and new files, not build
  # folders), built there, since dpkg-buildpackage writes next to the source folder and into it
  mkdir -p "$dir/seppo"
  if git -C "$src" rev-parse >/dev/null 2>&1; then
    (cd "$src" && git ls-files -z --cached --others --exclude-standard |
       xargs -0 -I{} sh -c 'test -e "{}" && printf "%s\0" "{}"' | tar --null -T - -cf -) |
      tar -xf - -C "$dir/seppo"
  else
    tar -C "$src" --exclude='./build*' --exclude='./obj-*' -cf - . | tar -xf - -C "$dir/seppo"
  fi
  (cd "$dir/seppo" && DEB_BUILD_OPTIONS="noopt ${DEB_BUILD_OPTIONS:-}" dpkg-buildpackage -us -uc -b) \
    >"$dir/build.log" 2>&1
}

if $build_only; then
  build_debs || { say "FAIL: dpkg-buildpackage: $(tail -n 30 "$dir/build.log")"; exit 1; }
  cp "$dir"/*.deb "$dir"/*.changes "$dir"/*.buildinfo "$out"/
  say "OK: built in ${SECONDS}s"
  exit 0
elif [[ -n "${SEPPO_DEB_PREBUILT:-}" ]]; then
  for ((i = 0; i < 1800 * 5; i++)); do [[ -f "$SEPPO_DEB_PREBUILT/status" ]] && break; sleep 0.2; done
  status=$(cat "$SEPPO_DEB_PREBUILT/status" 2>/dev/null) ||
    fail "no build in $SEPPO_DEB_PREBUILT within 30 min"
  case "$status" in
    OK*) cp "$SEPPO_DEB_PREBUILT"/*.deb "$SEPPO_DEB_PREBUILT"/*.changes \
            "$SEPPO_DEB_PREBUILT"/*.buildinfo "$dir"/ ;;
    SKIP*) echo "$status"; exit 77 ;;
    *) fail "the background build: $status" ;;
  esac
  echo "built in the background ($status)"
else
  build_debs || fail "dpkg-buildpackage: $(tail -n 30 "$dir/build.log")"
fi
echo "packages (at ${SECONDS}s): $(cd "$dir" && ls ./*.deb | tr '\n' ' ')"
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

# issue 24: the folders of /etc/seppo, the documented first step, the docs, the version.
for folder in /etc/seppo /etc/seppo/workers /etc/seppo/clients /etc/seppo/worker.d; do
  [[ -d $folder ]] || fail "the package does not ship $folder"
done
seppo keygen /etc/seppo/broker >"$dir/keygen.log" 2>&1 || fail "seppo keygen /etc/seppo/broker: $(cat "$dir/keygen.log")"
[[ $(stat -c %a /etc/seppo/broker.key_secret) == 600 ]] || fail "broker.key_secret is not mode 0600"
for doc in operating.md slurm.md; do
  [[ -e /usr/share/doc/seppo/$doc || -e /usr/share/doc/seppo/$doc.gz ]] ||
    fail "docs/$doc is not installed in /usr/share/doc/seppo: $(ls /usr/share/doc/seppo)"
done
version=$(dpkg-query -W -f='${Version}' seppo)
for program in seppo seppo-broker seppo-worker; do
  [[ $("$program" --version) == "$program $version (protocol "* ]] ||
    fail "$program --version does not give the package version $version: $("$program" --version)"
done
# The maintainer scripts' policy (docs/operating.md), run against a stand-in systemd in a
# mount namespace of their own (a tmpfs /run with /run/systemd/system, and systemctl,
# deb-systemd-invoke and deb-systemd-helper that log what they are asked): stop the broker and
# the worker instances on remove, nothing on upgrade's prerm, try-restart after an upgrade,
# start nothing on a first install.
if command -v unshare >/dev/null && unshare -m true 2>/dev/null; then
  mkdir -p "$dir/fake"
  for tool in systemctl deb-systemd-invoke deb-systemd-helper; do
    cat >"$dir/fake/$tool" <<SH
#!/bin/sh
echo "$tool \$*" >>"$dir/calls"
case "$tool \$*" in
  "systemctl list-units"*) echo "seppo-worker@a.service loaded active running seppo worker a" ;;
  deb-systemd-helper*) exit 1 ;;
esac
exit 0
SH
    chmod +x "$dir/fake/$tool"
  done
  script() {  # script NAME ARGS...: runs /var/lib/dpkg/info/seppo.NAME in the stand-in
    rm -f "$dir/calls"; touch "$dir/calls"
    unshare -m sh -c 'mount --make-rprivate / && mount -t tmpfs none /run &&
      mkdir -p /run/systemd/system && PATH="$0:$PATH" exec sh "$@"' "$dir/fake" \
      "/var/lib/dpkg/info/seppo.$@" || fail "seppo.$1 $2 failed"
  }
  script prerm remove
  grep -q "deb-systemd-invoke stop seppo-broker.service" "$dir/calls" &&
    grep -q "deb-systemd-invoke stop seppo-worker@a.service" "$dir/calls" ||
    fail "prerm remove does not stop the broker and the workers: $(cat "$dir/calls")"
  script prerm upgrade 0.1.1
  grep -q "deb-systemd-invoke" "$dir/calls" && fail "prerm upgrade stops units: $(cat "$dir/calls")"
  script postinst configure 0.0.9
  grep -q "deb-systemd-invoke try-restart .*seppo-broker.service" "$dir/calls" &&
    grep -q "deb-systemd-invoke try-restart seppo-worker@a.service" "$dir/calls" ||
    fail "postinst after an upgrade does not try-restart: $(cat "$dir/calls")"
  script postinst configure
  grep -E -q "deb-systemd-invoke (start|restart|try-restart)" "$dir/calls" &&
    fail "a first install starts units: $(cat "$dir/calls")"
else
  echo "unshare -m is not available: the maintainer scripts were not run"
fi

dpkg -P "${installed[@]}" >"$dir/dpkg.log" 2>&1 || fail "dpkg -P: $(cat "$dir/dpkg.log")"
installed=()
[[ ! -e /usr/bin/seppo && ! -e /etc/default/seppo ]] || fail "files are left after dpkg -P"
[[ ! -e /etc/seppo/broker.key_secret && ! -e /etc/seppo/broker.key ]] ||
  fail "dpkg -P left the broker's keys in /etc/seppo"
[[ ! -e /etc/seppo ]] || fail "dpkg -P left /etc/seppo: $(ls -R /etc/seppo)"
echo "packages built, installed, used and removed in ${SECONDS}s"
