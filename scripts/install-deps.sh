#!/usr/bin/env bash
# Installs the Debian 12 packages seppo needs to build and test, and nothing when all are present.
# Runs apt-get as root, through sudo when not root. Usage: scripts/install-deps.sh [--fuzz]
set -euo pipefail

packages=(g++ meson ninja-build pkg-config cmake libzmq3-dev cppzmq-dev libmsgpack-cxx-dev
          doctest-dev libcli11-dev nlohmann-json3-dev)
packages+=(python3-dev pybind11-dev python3-pytest)  # issue 13: the seppo Python package, its tests
packages+=(parallel)  # issue 15: tests compare seppo map with GNU parallel
packages+=(slurmd slurmctld slurm-client munge)  # issue 14: the single-node Slurm test
packages+=(iproute2)  # issue 14: tests across hosts in network namespaces
packages+=(scdoc)  # issue 14: man pages from man/*.scd
packages+=(openssh-server openssh-client jq)  # issue 14: seppo-ssh-workers and its sshd test
packages+=(libsystemd-dev systemd)  # issue 14: sd_notify; systemd-analyze for the unit test
packages+=(debhelper dpkg-dev lintian)  # issue 14: dpkg-buildpackage and lintian for debian/
packages+=(valgrind)  # issue 16: bench/ counts instructions per task under callgrind
packages+=(dh-python)  # issue 13: the python3-seppo Debian package (dh_python3)
packages+=(python3-hypothesis)  # issue 22: the property test of values crossing the wire
if [[ "${1:-}" == "--fuzz" ]]; then packages+=(clang-14 libclang-rt-14-dev); fi

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
