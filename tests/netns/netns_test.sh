#!/bin/bash
# seppo across hosts: network namespaces made here stand for four machines on a private subnet
# (10.213.0.0/24, which exists only inside them): a broker host and three worker hosts, wired
# through a bridge in a fifth "switch" namespace, each worker host with its own host name (UTS
# namespace). Checks that a job spreads over the three hosts, that a host cut off for longer
# than the liveness has its tasks re-run elsewhere (nothing lost, nothing twice, in order) and
# rejoins, and that a job survives the broker host's link going down and up.
# Usage: netns_test.sh BUILD_DIR. Exit 77 (skipped) without root or `ip netns`.
set -euo pipefail
build=$(realpath "$1")

skip() { echo "SKIP: $*" >&2; exit 77; }
[[ $(id -u) -eq 0 ]] || skip "the namespace test needs root (ip netns add)"
command -v ip >/dev/null || skip "ip (iproute2) is missing: run scripts/install-deps.sh"
command -v unshare >/dev/null || skip "unshare (util-linux) is missing"

tag=s$$
sw=$tag-sw
hosts=(b h1 h2 h3)
declare -A address=([b]=10.213.0.1 [h1]=10.213.0.11 [h2]=10.213.0.12 [h3]=10.213.0.13)
tmp=$(mktemp -d /tmp/seppo-netns-test.XXXXXX)
pids=()
made=()
cleanup() {
  local status=$?
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null && echo "netns: killed $pid, which did not stop in 5 s" >&2
  done
  echo "netns: stopped (at ${SECONDS} s)" >&2
  for ns in "${made[@]}"; do ip netns delete "$ns" 2>/dev/null || true; done
  if [[ $status -ne 0 ]]; then
    for f in "$tmp"/*.log; do [[ -f $f ]] && { echo "---- $f" >&2; tail -n 20 "$f" >&2; }; done
  fi
  rm -rf "$tmp"
  echo "netns: cleaned up (at ${SECONDS} s)" >&2
  exit "$status"
}
trap cleanup EXIT

source "$(dirname "$0")/hosts.sh"
make_hosts

broker=tcp://${address[b]}:5555
in_ns() { local h=$1; shift; ip netns exec "$tag-$h" "$@"; }
seppo() { in_ns b "$build/cli/seppo" --broker "$broker" --insecure "$@"; }

# Heartbeats every 200 ms, presumed dead after 5 missed: a cut longer than 1 s counts.
# Started with exec-ing commands only (no shell function, no subshell), so $! is the program's
# own pid and the cleanup's kill reaches it.
ip netns exec "$tag-b" "$build/broker/seppo-broker" --bind "$broker" --insecure --heartbeat-ms 200 \
  --liveness 5 >"$tmp/broker.log" 2>&1 &
pids+=($!)
for h in h1 h2 h3; do
  # Each worker host has its own host name, which the command below prints with its result.
  # shellcheck disable=SC2016  # $(hostname) is for the worker's shell, per item
  ip netns exec "$tag-$h" unshare --uts sh -c "hostname $h && exec \"\$0\" \"\$@\"" \
    "$build/worker/seppo-worker" --broker "$broker" --insecure -j 2 --heartbeat-ms 200 \
    --command 'where=sleep 0.1; echo "$(hostname)"' >"$tmp/worker-$h.log" 2>&1 &
  pids+=($!)
done

workers() { seppo status --json 2>/dev/null | grep -o "\"$1\"" | wc -l || true; }
wait_for() {  # wait_for SECONDS COMMAND...: polls until COMMAND succeeds
  local deadline=$((SECONDS + $1)); shift
  until "$@"; do
    ((SECONDS < deadline)) || return 1
    sleep 0.1
  done
}
all_joined() { [[ $(seppo status --json 2>/dev/null | grep -o '"h[123]"' | sort -u | wc -l) -eq 3 ]] &&
               [[ $(seppo status 2>/dev/null | grep -c "process") -ge 6 ]]; }
wait_for 20 all_joined || { echo "the workers of three hosts did not all join" >&2; seppo status >&2 || true; exit 1; }

at_least() { [[ -f $1 && $(wc -l <"$1") -ge $2 ]]; }  # at_least FILE LINES

# Every item once, in order: line i is "HOST i".
check() {  # check FILE N
  local bad
  bad=$(awk -v n="$2" '{ if ($2 != NR) { print "line " NR ": " $0; exit } } END { if (NR != n) print NR " lines, not " n }' "$1")
  [[ -z $bad ]] || { echo "results wrong: $bad" >&2; exit 1; }
}

# 1. A job spreads over the three hosts.
seq 1 60 | seppo map --broker-timeout 60 where >"$tmp/spread.out"
check "$tmp/spread.out" 60
used=$(awk '{ print $1 }' "$tmp/spread.out" | sort -u | paste -sd,)
[[ $used == h1,h2,h3 ]] || { echo "the job ran on $used, not on h1,h2,h3" >&2; exit 1; }
echo "netns: 60 items spread over $used (at ${SECONDS} s)" >&2

# 2. Host h1 is cut off mid-job for longer than the liveness, then comes back.
seq 1 150 | seppo map --broker-timeout 60 where >"$tmp/cut.out" 2>"$tmp/cut.err" &
job=$!; pids+=("$job")
wait_for 20 at_least "$tmp/cut.out" 10 || { echo "the job did not start" >&2; exit 1; }
ip -n "$tag-h1" link set eth0 down
sleep 2.5  # the outage: longer than the 1 s liveness
ip -n "$tag-h1" link set eth0 up
wait "$job" || { echo "the job with h1 cut off failed: $(cat "$tmp/cut.err")" >&2; exit 1; }
check "$tmp/cut.out" 150
grep -q "worker h1, process [0-9]* lost: no heartbeat.*requeued" "$tmp/broker.log" ||
  { echo "the broker did not requeue tasks of h1's workers" >&2; exit 1; }
grep "worker h1, process [0-9]* lost" "$tmp/broker.log" | sed 's/^/netns: broker: /' >&2
wait_for 20 all_joined || { echo "h1's workers did not rejoin" >&2; seppo status >&2 || true; exit 1; }
echo "netns: h1 cut off for 2.5 s mid-job: 150 items complete, in order, once each; h1 rejoined (at ${SECONDS} s)" >&2

# 3. The broker host's link goes down and up mid-job: the job completes.
seq 1 150 | seppo map --broker-timeout 60 where >"$tmp/broker-cut.out" 2>"$tmp/broker-cut.err" &
job=$!; pids+=("$job")
wait_for 20 at_least "$tmp/broker-cut.out" 10 || { echo "the job did not start" >&2; exit 1; }
ip -n "$tag-b" link set eth0 down
sleep 2.5
ip -n "$tag-b" link set eth0 up
wait "$job" || { echo "the job with the broker cut off failed: $(cat "$tmp/broker-cut.err")" >&2; exit 1; }
check "$tmp/broker-cut.out" 150
[[ $(awk '$1 == "h1" || $1 == "h2" || $1 == "h3"' "$tmp/broker-cut.out" | wc -l) -eq 150 ]] ||
  { echo "results from unknown hosts" >&2; exit 1; }
wait_for 20 all_joined || { echo "the workers did not come back to the broker" >&2; exit 1; }
echo "netns: broker host cut off for 2.5 s mid-job: 150 items complete; all workers back (at ${SECONDS} s)" >&2
