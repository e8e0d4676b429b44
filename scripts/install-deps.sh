#!/usr/bin/env bash
# Installs the Debian 12 packages seppo needs, and nothing when all are present. Runs apt-get as
# root, through sudo when not root.
# Usage: scripts/install-deps.sh [--build | --configure] [--fuzz]
#   --build      only what building and running seppo needs (scripts/demo.sh): compilers, meson
#                and the libraries. Without it, the test bench too (scripts/test.sh): GNU
#                parallel, an ssh server, single-node Slurm and munge, debhelper and lintian...
#   --configure  what configuring the test build needs (the build set, and what meson looks for:
#                doctest, pytest, systemd's unit folder): scripts/test.sh installs the rest of the
#                test bench while it compiles.
#   --fuzz       also clang for the fuzz targets.
set -euo pipefail

build_only=false configure_only=false fuzz=false
for arg in "$@"; do
  case "$arg" in
    --build) build_only=true ;;
    --configure) configure_only=true ;;
    --fuzz) fuzz=true ;;
    *) echo "usage: scripts/install-deps.sh [--build | --configure] [--fuzz]" >&2; exit 2 ;;
  esac
done

# Building and running: the programs, the library, the Python package, the man pages.
packages=(g++ meson ninja-build pkg-config cmake libzmq3-dev cppzmq-dev libmsgpack-cxx-dev
          libcli11-dev nlohmann-json3-dev)
packages+=(python3-dev pybind11-dev)  # issue 13: the seppo Python package, seppo-worker --python
packages+=(libsystemd-dev)  # issue 14: sd_notify; issue 24: journal fields
packages+=(scdoc)  # issue 14: man pages from man/*.scd

# Testing: what configuring the tests looks for (tests/meson.build, broker/meson.build)...
configure=(doctest-dev python3-pytest)
configure+=(systemd)  # issue 14: systemd.pc's unit folder; systemd-analyze for the unit test
# ...and what the test suite (meson test) and the package build exercise.
tests=()
tests+=(parallel)  # issue 15: tests compare seppo map with GNU parallel
tests+=(slurmd slurmctld slurm-client munge)  # issue 14: the single-node Slurm test
tests+=(iproute2)  # issue 14: tests across hosts in network namespaces
tests+=(openssh-server openssh-client jq)  # issue 14: seppo-ssh-workers and its sshd test
tests+=(debhelper dpkg-dev lintian)  # issue 14: dpkg-buildpackage and lintian for debian/
tests+=(valgrind)  # issue 16: bench/ counts instructions per task under callgrind
tests+=(dh-python)  # issue 13: the python3-seppo Debian package (dh_python3)
tests+=(chromium)  # issue 24: the dashboard in a real browser (tests/ops/dashboard_browser.sh)
tests+=(prometheus)  # issue 24: its promtool checks seppo-broker --http's /metrics
tests+=(python3-hypothesis)  # issue 22: the property test of values crossing the wire
tests+=(python3-numpy)  # issue 22: numpy arrays and scalars cross the wire (tests/python)
tests+=(python3-mesonpy python3-venv python3-pip)  # issue 22: pip install . in a venv, offline
$build_only || packages+=("${configure[@]}")
$build_only || $configure_only || packages+=("${tests[@]}")
if $fuzz && ! $configure_only; then packages+=(clang-14 libclang-rt-14-dev); fi

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[[ ${#missing[@]} -eq 0 ]] && exit 0

echo "installing: ${missing[*]}" >&2
sudo=()
[[ $(id -u) -ne 0 ]] && sudo=(sudo)
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update -qq
"${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
