#!/bin/bash
# What seppo-broker --http costs the broker (issue 24), in instructions under callgrind, which
# unlike a timing does not move with the load of a shared machine. The same fixed job, N
# single-item `example_module.square` tasks from `seppo map --chunk-size 1` to one worker
# process, runs three times, each against a new broker under callgrind (all its threads, the
# HTTP server's included, in one count):
#
#   plain    seppo-broker without --http
#   http     --http 127.0.0.1:0, nobody asking (the task stream is recorded; no snapshot taken)
#   scraped  --http and one scraper fetching /metrics every 100 ms while the job runs
#
# and prints each broker's instructions per task and, for the scraper, per scrape: the third
# run's extra instructions over the second's, divided by the scrapes it answered (how many
# scrapes fit in the job depends on the machine's speed; the cost of one does not).
#
#   bench/http_cost.sh [BUILD_DIR] [TASKS]     # defaults: build-bench, 3000 tasks; about 1 min
#
# HTTP_COST_KEEP=FOLDER keeps the three callgrind files (plain, http, scraped.callgrind) for
# callgrind_annotate, e.g. --inclusive=yes to see what Core::status_payload costs the loop.
#
# BUILD_DIR is a meson build of this tree (bench/run-all.sh makes build-bench, optimised).
# Needs valgrind and python3. Everything runs on ipc:// and 127.0.0.1.
set -euo pipefail

build=${1:-build-bench}
tasks=${2:-3000}
broker=$build/broker/seppo-broker
worker=$build/worker/seppo-worker
cli=$build/cli/seppo
module=$build/examples/libexample_module.so
for program in "$broker" "$worker" "$cli" "$module"; do
  [[ -e $program ]] || { echo "http_cost.sh: $program not built (meson compile -C $build)" >&2; exit 2; }
done
command -v valgrind >/dev/null || { echo "http_cost.sh: valgrind is not installed" >&2; exit 2; }

dir=$(mktemp -d /tmp/seppo-http-cost-XXXXXX)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  rm -rf "$dir"
}
trap cleanup EXIT

# Waits up to SECONDS for PATTERN (a grep -E regex) in FILE.
wait_for() {
  local file=$1 pattern=$2 seconds=$3
  local deadline=$((SECONDS + seconds))
  until grep -qE "$pattern" "$file" 2>/dev/null; do
    if ((SECONDS >= deadline)); then
      echo "http_cost.sh: no \"$pattern\" in $file after $seconds s:" >&2
      cat "$file" >&2
      exit 1
    fi
    sleep 0.1
  done
}

# The scraper: GET /metrics every 100 ms until the stop file appears; creates the ready file
# after its first answer, and prints how many it got.
scraper() {
  python3 - "$1" "$2" "$3" <<'EOF'
import os, sys, time, urllib.request
port, ready, stop = sys.argv[1], sys.argv[2], sys.argv[3]
done = 0
while not os.path.exists(stop):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=30) as reply:
        if reply.status == 200 and b"seppo_items_finished_total" in reply.read():
            done += 1
    if done == 1:
        open(ready, "w").close()
    time.sleep(0.1)
print(done)
EOF
}

# run_case NAME HTTP SCRAPE: prints "instructions scrapes". Runs in a subshell ($(...)): it stops
# what it started when it ends, however it ends.
run_case() {
  local name=$1 http=$2 scrape=$3
  trap 'for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done' EXIT
  local endpoint=ipc://$dir/$name.sock log=$dir/$name.broker.log
  local args=(--bind "$endpoint" --heartbeat-ms 10000)
  ((http)) && args+=(--http 127.0.0.1:0)
  valgrind --tool=callgrind --callgrind-out-file="$dir/$name.callgrind" \
    "$broker" "${args[@]}" >"$log" 2>&1 &
  local broker_pid=$!
  pids+=("$broker_pid")
  wait_for "$log" "listening on" 120
  local port=
  if ((http)); then
    wait_for "$log" "serving HTTP on http://127\.0\.0\.1:[0-9]+/" 60
    port=$(grep -oE "serving HTTP on http://127\.0\.0\.1:[0-9]+/" "$log" | grep -oE "[0-9]+/$" | tr -d /)
  fi
  "$worker" --broker "$endpoint" --module "$module" -j 1 --heartbeat-ms 10000 \
    >"$dir/$name.worker.log" 2>&1 &
  local worker_pid=$!
  pids+=("$worker_pid")
  wait_for "$log" "worker .* joined" 120
  local scraper_pid= scrapes=0
  if ((scrape)); then
    scraper "$port" "$dir/$name.ready" "$dir/$name.stop" >"$dir/$name.scrapes" &
    scraper_pid=$!
    pids+=("$scraper_pid")
    local deadline=$((SECONDS + 60))
    until [[ -e $dir/$name.ready ]]; do
      ((SECONDS < deadline)) || { echo "http_cost.sh: no answer from /metrics in 60 s" >&2; exit 1; }
      sleep 0.1
    done
  fi
  seq 0 $((tasks - 1)) | "$cli" --broker "$endpoint" map --chunk-size 1 example_module.square \
    >"$dir/$name.out"
  [[ $(wc -l <"$dir/$name.out") == "$tasks" ]] || { echo "http_cost.sh: $name: short output" >&2; exit 1; }
  if [[ -n $scraper_pid ]]; then
    touch "$dir/$name.stop"
    wait "$scraper_pid"
    scrapes=$(cat "$dir/$name.scrapes")
  fi
  kill -TERM "$worker_pid"
  wait "$worker_pid" || true
  kill -TERM "$broker_pid"
  wait "$broker_pid" || true
  local total
  total=$(grep -E "^(summary|totals):" "$dir/$name.callgrind" | head -1 | awk '{print $2}')
  if [[ -n ${HTTP_COST_KEEP:-} ]]; then
    mkdir -p "$HTTP_COST_KEEP"
    cp "$dir/$name.callgrind" "$HTTP_COST_KEEP/"
  fi
  echo "$total $scrapes"
}

result=$(run_case plain 0 0)
plain=${result% *}
result=$(run_case http 1 0)
http=${result% *}
result=$(run_case scraped 1 1)
scraped=${result% *}
scrapes=${result#* }

python3 - "$tasks" "$plain" "$http" "$scraped" "$scrapes" <<'EOF'
import sys
tasks, plain, http, scraped, scrapes = (int(x) for x in sys.argv[1:])
print(f"broker instructions, {tasks} single-item square tasks to one worker (callgrind, all threads)")
print("| broker | instructions | per task | against plain |")
print("|---|---|---|---|")
for name, total in (("plain", plain), ("--http, no scraper", http),
                    (f"--http, /metrics every 100 ms ({scrapes} scrapes)", scraped)):
    print(f"| {name} | {total:,} | {total / tasks:,.0f} | {100 * (total - plain) / plain:+.1f} % |")
if scrapes:
    print(f"one /metrics scrape: {(scraped - http) / scrapes:,.0f} instructions "
          "(snapshot in the loop, rendering and HTTP on the server's thread)")
EOF
