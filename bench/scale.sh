#!/bin/bash
# The broker core's cost per task at 2, 200, 2,000 and 10,000 workers (issue 28, "Scale beyond
# this machine"), in instructions under callgrind: exact, and unmoved by the load of a shared
# machine. Each size is one run of the simulator's scale world (seppo-sim --workers N --clients
# 100 --items K, chunks of 1 item, seed 1, no faults), which drives the real broker::Core,
# broker::flush and broker::Admission with simulated workers and clients. callgrind counts only
# inside the simulator's seppo_sim_core_* frames (sim/network.cpp), that is the core's own work
# and its flush, not the simulator's pipes (seppo_sim_transport) nor its workers and clients:
#
#   per task        SUBMIT, RESULT, DONE, CREDIT, RETURN and what they dispatch, / TASKs sent
#   worker HB       one worker's HEARTBEAT (and the ALIVE it is answered)
#   client HB       one client's HEARTBEAT
#   per tick        one on_tick (expiry, time limits): a cost per time, not per task
#   STATUS          one STATUS snapshot, taken when half the items are in (the task stream
#                   holds its 2,000 latest tasks, as under --http)
#   /metrics        the snapshot the loop takes for a /metrics scrape, and rendering the text
#                   from it on the HTTP server's thread; "from STATUS": rendering it from the
#                   full map instead, as every scrape did before issue 28
#
# The last column is each size's cost per task against the 2-worker figure of the same run.
#
#   bench/scale.sh [BUILD_DIR] [ITEMS] [SIZES...]   # defaults: build-bench, 20000 items,
#                                                   # 2 200 2000 10000 workers; a few minutes
#   SCALE_KEEP=FOLDER keeps the callgrind files (callgrind_annotate --inclusive=yes FILE).
#   SCALE_RESULTS=FILE also writes each size's cost per task there for bench/targets.py, one a
#   line, tab-separated: n.per_task.WORKERS, the figure, the 2-worker (first size's) figure.
set -euo pipefail

build=${1:-build-bench}
items=${2:-20000}
shift $(($# > 2 ? 2 : $#))
sizes=("$@")
((${#sizes[@]})) || sizes=(2 200 2000 10000)
clients=100
sim=$build/sim/seppo-sim
[[ -x $sim ]] || { echo "scale.sh: $sim not built (meson compile -C $build)" >&2; exit 2; }
command -v valgrind >/dev/null || { echo "scale.sh: valgrind is not installed" >&2; exit 2; }

dir=$(mktemp -d /tmp/seppo-scale-XXXXXX)
trap 'rm -rf "$dir"' EXIT

for n in "${sizes[@]}"; do
  # A run at 10,000 workers takes about a minute natively under a loaded machine's share; under
  # callgrind, with collection only inside the frames, a few times that.
  timeout 3600 valgrind --tool=callgrind --collect-atstart=no \
    --toggle-collect='seppo_sim_core_*' --toggle-collect=seppo_sim_transport \
    --callgrind-out-file="$dir/$n.callgrind" \
    "$sim" --workers "$n" --clients "$clients" --items "$items" --seed 1 \
    >"$dir/$n.out" 2>"$dir/$n.err" || {
    echo "scale.sh: the run with $n workers failed:" >&2
    cat "$dir/$n.out" "$dir/$n.err" >&2
    exit 1
  }
  callgrind_annotate --inclusive=yes --threshold=100 "$dir/$n.callgrind" >"$dir/$n.annotate" 2>/dev/null
  if [[ -n ${SCALE_KEEP:-} ]]; then
    mkdir -p "$SCALE_KEEP"
    cp "$dir/$n.callgrind" "$dir/$n.out" "$SCALE_KEEP/"
  fi
done

python3 - "$dir" "$items" "$clients" "${sizes[@]}" <<'EOF'
import os, re, sys
folder, items, clients, sizes = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4:]

def frames(n):
    costs = {}
    for line in open(f"{folder}/{n}.annotate"):
        m = re.match(r"\s*([\d,]+)\s.*\b(seppo_sim_core_\w+)", line)
        if m:
            costs.setdefault(m.group(2)[len("seppo_sim_core_"):], int(m.group(1).replace(",", "")))
    counts = {}
    for line in open(f"{folder}/{n}.out"):
        if line.startswith("counts "):
            counts = {k: int(v) for k, v in (kv.split("=") for kv in line.split()[1:])}
    return costs, counts

rows = []
for n in sizes:
    costs, counts = frames(n)
    per = lambda frame, count: costs.get(frame, 0) / counts[count] if counts.get(count) else 0
    rows.append((int(n), per("task", "tasks"), per("worker_heartbeat", "worker_heartbeats"),
                 per("client_heartbeat", "client_heartbeats"), per("tick", "ticks"),
                 costs.get("status", 0), costs.get("metrics_snapshot", 0), costs.get("metrics", 0),
                 costs.get("metrics_full", 0), counts))
base = rows[0][1]
if os.environ.get("SCALE_RESULTS"):
    with open(os.environ["SCALE_RESULTS"], "w") as f:
        for row in rows:
            f.write(f"n.per_task.{row[0]}\t{row[1]:.6g}\t{base:.6g}\n")
print(f"broker core instructions, seppo-sim scale world: {clients} clients, {items} items in "
      f"chunks of 1 (callgrind, inside the core's frames only)")
print("| workers | per task | vs 2 workers | worker HB | client HB | per tick | STATUS | "
      "/metrics snapshot | /metrics render | render from STATUS |")
print("|---|---|---|---|---|---|---|---|---|---|")
for n, task, whb, chb, tick, status, msnap, render, full, counts in rows:
    print(f"| {n:,} | {task:,.0f} | {task / base:.2f}x | {whb:,.0f} | {chb:,.0f} | {tick:,.0f} | "
          f"{status:,} | {msnap:,} | {render:,} | {full:,} |")
print(f"(tasks sent: {', '.join(str(r[-1].get('tasks')) for r in rows)}; "
      f"STATUS sizes: {', '.join(str(r[-1].get('status_bytes')) for r in rows)} bytes; "
      f"/metrics snapshot sizes: {', '.join(str(r[-1].get('metrics_snapshot_bytes')) for r in rows)} bytes)")
EOF
