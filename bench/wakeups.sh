#!/bin/bash
# A worker's wake-ups per task with one task in flight (issue 28): one-item map_parallel round
# trips (bench/roundtrip.cpp) against one broker and one seppo-worker -j 1, counting the context
# switches, voluntary and not, of every thread of the worker's processes (the supervisor and its
# worker process: /proc/PID/task/TID/status) over the timed round trips, per round trip, with
# the round trip's p50 and the worker process's threads one by one.
#
#   bench/wakeups.sh [BUILD_DIR] [SAMPLES] [ROUNDS] [WORKER_BINARY...]
#
# Defaults: build-test, 2000 round trips, 1 round, BUILD_DIR's seppo-worker. With several
# worker binaries (an old build's copy and the new one, say) each round runs each of them in
# turn against a fresh broker, so that a shared machine's load falls on all of them alike.
# Each round ends with the raw ZeroMQ relay's worker (bench/zmq_baseline.cpp, --mode latency,
# one worker, 64-byte echo over loopback TCP): its threads' switches over the whole run (its
# 1000 warm-up round trips too) per round trip.
# seppo's processes run on ipc:// in a temporary folder.
set -euo pipefail

build=${1:-build-test}
samples=${2:-2000}
rounds=${3:-1}
shift $(($# < 3 ? $# : 3))
workers=("$@")
((${#workers[@]})) || workers=("$build/worker/seppo-worker")
broker=$build/broker/seppo-broker
roundtrip=$build/bench/seppo-roundtrip
baseline=$build/bench/zmq-baseline
module=$build/examples/libexample_module.so
for program in "$broker" "$roundtrip" "$baseline" "$module" "${workers[@]}"; do
  [[ -e $program ]] || { echo "wakeups.sh: $program not built (meson compile -C $build)" >&2; exit 2; }
done

dir=$(mktemp -d /tmp/seppo-wakeups-XXXXXX)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$dir"
}
trap cleanup EXIT

# The pids of PID and its descendants.
tree() {
  local pid=$1 child
  echo "$pid"
  # shellcheck disable=SC2013  # the file holds pids separated by spaces
  for child in $(cat /proc/"$pid"/task/*/children 2>/dev/null); do tree "$child"; done
}

# "PID/TID COMM VOLUNTARY NONVOLUNTARY CPU_NS" for every thread of PID's tree (the time on a CPU
# is the first field of /proc/PID/task/TID/schedstat).
switches() {
  local pid tid
  for pid in $(tree "$1"); do
    for tid in /proc/"$pid"/task/*; do
      awk -v t="${tid##*/}" -v c="$(cat "$tid"/comm 2>/dev/null)" -v p="$pid" \
        -v ns="$(cut -d' ' -f1 "$tid"/schedstat 2>/dev/null)" \
        '/^voluntary_ctxt_switches:/ { v = $2 } /^nonvoluntary_ctxt_switches:/ { n = $2 }
         END { print p "/" t, c, v + 0, n + 0, ns + 0 }' \
        "$tid"/status 2>/dev/null || true
    done
  done
}

wait_for() {
  local file=$1 pattern=$2 seconds=$3
  local deadline=$((SECONDS + seconds))
  until grep -qE "$pattern" "$file" 2>/dev/null; do
    if ((SECONDS >= deadline)); then
      echo "wakeups.sh: no \"$pattern\" in $file after $seconds s:" >&2
      cat "$file" >&2
      exit 1
    fi
    sleep 0.1
  done
}

run=0
for ((round = 1; round <= rounds; ++round)); do
  for worker in "${workers[@]}"; do
    run=$((run + 1))
    endpoint=ipc://$dir/broker-$run
    "$broker" --bind "$endpoint" --log-level info >"$dir/broker-$run.log" 2>&1 &
    broker_pid=$!
    pids+=("$broker_pid")
    wait_for "$dir/broker-$run.log" "listening" 10
    "$worker" -j 1 --broker "$endpoint" --module "$module" --log-level info \
      >"$dir/worker-$run.log" 2>&1 &
    worker_pid=$!
    pids+=("$worker_pid")
    wait_for "$dir/broker-$run.log" "worker .* joined" 20
    # Warm up (connections, the module's first call) before counting.
    "$roundtrip" "$endpoint" example_module.square 200 >/dev/null
    switches "$worker_pid" >"$dir/before"
    p50=$("$roundtrip" "$endpoint" example_module.square "$samples")
    switches "$worker_pid" >"$dir/after"
    # seppo-roundtrip makes samples + 20 round trips (its first 20 untimed).
    # Fields: pid/tid, then comm, voluntary, non-voluntary, CPU before and the same after.
    join <(sort "$dir/before") <(sort "$dir/after") >"$dir/both"
    per_thread=$(awk -v n=$((samples + 20)) \
      '{ printf "%s %s %.2f+%.2f; ", $1, $2, ($7 - $3) / n, ($8 - $4) / n }' "$dir/both")
    total=$(awk -v n=$((samples + 20)) '{ s += $7 - $3 + $8 - $4 } END { printf "%.2f", s / n }' \
      "$dir/both")
    cpu=$(awk -v n=$((samples + 20)) '{ s += $9 - $5 } END { printf "%.1f", s / 1e3 / n }' \
      "$dir/both")
    echo "round $round $worker: p50 ${p50} us, worker processes' CPU ${cpu} us and context switches $total per task ($per_thread)"
    kill "$worker_pid" "$broker_pid"
    wait "$worker_pid" 2>/dev/null || true
    wait "$broker_pid" 2>/dev/null || true
  done
  # The relay's worker exits with the run: its counters are read until it has gone.
  "$baseline" --mode latency --workers 1 --samples "$samples" --warmup 1000 --pids \
    >"$dir/relay.out" 2>&1 &
  relay_pid=$!
  pids+=("$relay_pid")
  wait_for "$dir/relay.out" "pids " 20
  relay_worker=$(grep -o 'workers=[0-9]*' "$dir/relay.out" | cut -d= -f2)
  : >"$dir/relay.samples"
  while [[ -d /proc/$relay_worker ]]; do
    switches "$relay_worker" >>"$dir/relay.samples" || true
    sleep 0.05
  done
  wait "$relay_pid" || true
  # Each thread's highest figures (its threads end one by one as it stops, and an exiting
  # thread's may read as zero).
  awk '{ c[$1] = $2; if ($3 > v[$1]) v[$1] = $3; if ($4 > n[$1]) n[$1] = $4
         if ($5 > ns[$1]) ns[$1] = $5 }
       END { for (t in c) print t, c[t], v[t] + 0, n[t] + 0, ns[t] + 0 }' \
    "$dir/relay.samples" >"$dir/relay.last"
  p50=$(grep -o 'p50_us=[0-9.]*' "$dir/relay.out" | cut -d= -f2 || true)
  if [[ -z $p50 ]]; then
    echo "round $round relay worker: the run failed:" "$(cat "$dir/relay.out")"
    continue
  fi
  echo "round $round relay worker: p50 ${p50} us, CPU" \
    "$(awk -v n=$((samples + 1000)) '{ s += $5 } END { printf "%.1f", s / 1e3 / n }' "$dir/relay.last") us" \
    "and context switches" \
    "$(awk -v n=$((samples + 1000)) '{ s += $3 + $4 } END { printf "%.2f", s / n }' "$dir/relay.last")" \
    "per round trip" \
    "($(awk -v n=$((samples + 1000)) '{ printf "%s %s %.2f+%.2f; ", $1, $2, $3 / n, $4 / n }' "$dir/relay.last"))"
done
