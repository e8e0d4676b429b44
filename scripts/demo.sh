#!/usr/bin/env bash
# The main job, from a fresh Debian 12 machine: install what is missing, build, then run a local
# broker, two workers and the hello_world map of the 2008 original. It installs only what
# building and running need (no test bench: scripts/test.sh installs that) and builds without
# the tests and benchmarks. Usage: scripts/demo.sh
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh --build
[[ -d build ]] || meson setup build -Dtests=false -Dbench=false >/dev/null
meson compile -C build >/dev/null

workdir=$(mktemp -d)
endpoint="ipc://$workdir/broker"
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$workdir"
}
trap cleanup EXIT

build/broker/seppo-broker --bind "$endpoint" 2>"$workdir/broker.log" &
pids+=($!)
build/worker/seppo-worker --broker "$endpoint" -j 2 \
  --module build/examples/libexample_module.so 2>"$workdir/workers.log" &
pids+=($!)

# Ready when the broker reports both worker processes.
for _ in $(seq 1 100); do
  if build/cli/seppo --broker "$endpoint" status --json 2>/dev/null | grep -q '"pid".*"pid"'; then
    break
  fi
  sleep 0.1
done

SEPPO_BROKER="$endpoint" build/examples/hello_world
