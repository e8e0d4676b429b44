#!/bin/bash
# Issue 25's figure: what a broker restart costs the work running at that moment. 4 items of
# ITEM seconds on 2 worker processes (one seppo-worker -j 2 serving a named command that appends
# its item to a file when it starts, then sleeps), submitted one item per chunk by `seppo map`;
# the broker is sent SIGNAL (TERM or KILL) at half an item's time and started again on the same
# endpoint. Prints the job's time (ideal: 2 x ITEM) and how often each item started.
#
#   bench/restart_figure.sh [BUILD_DIR] [ITEM_SECONDS] [SIGNAL]   # defaults: build-test, 6, TERM
#
# The broker runs with its defaults (--heartbeat-ms 1000, --liveness 3). Loopback only.
set -euo pipefail

build=${1:-build-test}
item=${2:-6}
signal=${3:-TERM}
broker=$build/broker/seppo-broker
worker=$build/worker/seppo-worker
cli=$build/cli/seppo
for program in "$broker" "$worker" "$cli"; do
  [[ -x $program ]] || { echo "restart_figure.sh: $program not built" >&2; exit 2; }
done

dir=$(mktemp -d /tmp/seppo-restart-XXXXXX)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  rm -rf "$dir"
}
trap cleanup EXIT

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
endpoint=tcp://127.0.0.1:$port

start_broker() {
  "$broker" --bind "$endpoint" --log-level debug >>"$dir/broker.log" 2>&1 &
  broker_pid=$!
  pids+=("$broker_pid")
}
wait_for() {  # a condition, polled every 50 ms for at most 20 s
  for _ in $(seq 400); do
    if eval "$1"; then return 0; fi
    sleep 0.05
  done
  echo "restart_figure.sh: timed out waiting for: $1" >&2
  exit 1
}

start_broker
"$worker" --broker "$endpoint" -j 2 --log-level debug \
  --command "item=echo {} >> '$dir/starts'; sleep $item; echo {}" >"$dir/worker.log" 2>&1 &
pids+=($!)
wait_for "'$cli' --broker '$endpoint' status 2>/dev/null | grep -q 'workers: 2\\|2 workers'"

began=$(date +%s.%N)
printf 'a\nb\nc\nd\n' | "$cli" --broker "$endpoint" map --chunk-size 1 item >"$dir/out" &
map_pid=$!
pids+=("$map_pid")
wait_for "[[ -e '$dir/starts' ]] && [[ \$(wc -l < '$dir/starts') -ge 2 ]]"
python3 -c "import time; time.sleep(max(0, $began + $item / 2 - time.time()))"
kill -"$signal" "$broker_pid"
wait "$broker_pid" || true
start_broker
wait "$map_pid"
ended=$(date +%s.%N)

echo "items of ${item} s, broker SIG$signal at $(python3 -c "print($item / 2)") s:" \
  "job took $(python3 -c "print(round($ended - $began, 2))") s (ideal $((2 * item)) s)"
echo "starts per item: $(sort "$dir/starts" | uniq -c | awk '{printf "%s=%s ", $2, $1}')"
echo "results: $(tr '\n' ' ' <"$dir/out")"
