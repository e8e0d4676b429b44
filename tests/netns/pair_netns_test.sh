#!/bin/bash
# A pair of brokers across hosts (issue 25 §2, docs/protocol.md §15): network namespaces made
# here stand for three machines: broker hosts a (primary) and b (backup) and a host w running a
# worker and the clients, on a private subnet through a bridge in a "switch" namespace
# (10.213.1.0/24), and a second, direct link between a and b (10.214.1.0/30) that carries only
# the brokers' HA link. Checks that
#   1. cutting the link between the two brokers only (longer than its expiry) makes no second
#      active broker, and a job running meanwhile completes on the primary;
#   2. cutting the primary's host off entirely fails over: the job completes on the backup,
#      every item once, in order;
#   3. healing that partition leaves one active broker (the backup stands down, exit status 3,
#      and started again it stands by), with nothing lost.
# Usage: pair_netns_test.sh BUILD_DIR. Exit 77 (skipped) without root or `ip netns`.
set -euo pipefail
build=$(realpath "$1")

skip() { echo "SKIP: $*" >&2; exit 77; }
[[ $(id -u) -eq 0 ]] || skip "the namespace test needs root (ip netns add)"
command -v ip >/dev/null || skip "ip (iproute2) is missing: run scripts/install-deps.sh"

tag=p$$
sw=$tag-sw
hosts=(a b w)
declare -A address=([a]=10.213.1.1 [b]=10.213.1.2 [w]=10.213.1.11)
declare -A halink=([a]=10.214.1.1 [b]=10.214.1.2)
tmp=$(mktemp -d /tmp/seppo-pair-netns-test.XXXXXX)
pids=()
made=()
cleanup() {
  local status=$?
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null && echo "pair-netns: killed $pid, which did not stop in 5 s" >&2
  done
  for ns in "${made[@]}"; do ip netns delete "$ns" 2>/dev/null || true; done
  if [[ $status -ne 0 ]]; then
    for f in "$tmp"/*.log; do [[ -f $f ]] && { echo "---- $f" >&2; tail -n 25 "$f" >&2; }; done
  fi
  rm -rf "$tmp"
  exit "$status"
}
trap cleanup EXIT

source "$(dirname "$0")/hosts.sh"
make_hosts
# The brokers' own link, a to b directly.
ip -n "$tag-a" link add ha0 type veth peer name ha0 netns "$tag-b"
for h in a b; do
  ip -n "$tag-$h" addr add "${halink[$h]}/30" dev ha0
  ip -n "$tag-$h" link set ha0 up
done

in_ns() { local h=$1; shift; ip netns exec "$tag-$h" "$@"; }
ep() { echo "tcp://${address[$1]}:5555"; }
both="$(ep a),$(ep b)"
seppo() { in_ns w "$build/cli/seppo" --broker "$both" --insecure "$@"; }
state_of() {  # state_of a|b: the broker's "pair: ROLE, STATE" line, asked from host w
  in_ns w "$build/cli/seppo" --broker "$(ep "$1")" --insecure status 2>/dev/null |
    sed -n 's/^pair: \([a-z]*\), \([a-z]*\);.*/\1 \2/p' || true
}
start_broker() {  # start_broker a|b
  local h=$1 role=primary other=b
  [[ $h == b ]] && role=backup other=a
  # Heartbeats every 200 ms: the HA link's expiry is 200 ms, clients and workers move after 300.
  ip netns exec "$tag-$h" "$build/broker/seppo-broker" --bind "$(ep "$h")" --insecure \
    --heartbeat-ms 200 --ha-role "$role" --ha-bind "tcp://${halink[$h]}:5556" \
    --ha-peer "tcp://${halink[$other]}:5556" >>"$tmp/broker-$h.log" 2>&1 &
  pids+=($!)
  eval "broker_$h=$!"
}
wait_for() {  # wait_for SECONDS COMMAND...: polls until COMMAND succeeds
  local deadline=$((SECONDS + $1)); shift
  until "$@"; do
    ((SECONDS < deadline)) || return 1
    sleep 0.1
  done
}
is() { [[ $(state_of "$1") == "$2" ]]; }  # is a "primary active"
at_least() { [[ -f $1 && $(wc -l <"$1") -ge $2 ]]; }
check() {  # check FILE N: every item once, in order (line i is "i")
  local bad
  bad=$(awk -v n="$2" '{ if ($1 != NR) { print "line " NR ": " $0; exit } } END { if (NR != n) print NR " lines, not " n }' "$1")
  [[ -z $bad ]] || { echo "results wrong: $bad" >&2; exit 1; }
}

start_broker a
start_broker b
wait_for 20 is a "primary active" || { echo "the primary did not become active" >&2; exit 1; }
wait_for 20 is b "backup passive" || { echo "the backup did not stand by" >&2; exit 1; }
ip netns exec "$tag-w" "$build/worker/seppo-worker" --broker "$both" --insecure -j 2 \
  --heartbeat-ms 200 --command 'item=sleep 0.05; echo {}' >"$tmp/worker.log" 2>&1 &
pids+=($!)
workers_at() { in_ns w "$build/cli/seppo" --broker "$(ep "$1")" --insecure status 2>/dev/null | grep -c "process" || true; }
joined() { [[ $(workers_at "$1") -ge 2 ]]; }
wait_for 20 joined a || { echo "the worker did not join the primary" >&2; exit 1; }

# 1. The link between the brokers alone is cut for 2 s mid-job: no second active broker.
seq 1 100 | seppo map --broker-timeout 60 item >"$tmp/link.out" 2>"$tmp/link.err" &
job=$!; pids+=("$job")
wait_for 20 at_least "$tmp/link.out" 5 || { echo "the job did not start" >&2; exit 1; }
ip -n "$tag-a" link set ha0 down
for _ in $(seq 1 10); do
  sleep 0.2
  [[ $(state_of b) == "backup passive" ]] || { echo "the backup left passive: $(state_of b)" >&2; exit 1; }
done
ip -n "$tag-a" link set ha0 up
wait "$job" || { echo "the job across the brokers' partition failed: $(cat "$tmp/link.err")" >&2; exit 1; }
check "$tmp/link.out" 100
is a "primary active" && is b "backup passive" || { echo "states after the partition: a $(state_of a), b $(state_of b)" >&2; exit 1; }
echo "pair-netns: link between the brokers cut for 2 s mid-job: the backup stayed passive, 100 items complete (at ${SECONDS} s)" >&2

# 2. The primary's host is cut off entirely mid-job: the backup takes over.
seq 1 150 | seppo map --broker-timeout 60 item >"$tmp/cut.out" 2>"$tmp/cut.err" &
job=$!; pids+=("$job")
wait_for 20 at_least "$tmp/cut.out" 5 || { echo "the job did not start" >&2; exit 1; }
ip -n "$tag-a" link set eth0 down
ip -n "$tag-a" link set ha0 down
wait "$job" || { echo "the job with the primary's host cut off failed: $(cat "$tmp/cut.err")" >&2; exit 1; }
check "$tmp/cut.out" 150
is b "backup active" || { echo "the backup is $(state_of b), not active" >&2; exit 1; }
echo "pair-netns: primary host cut off mid-job: the backup took over, 150 items complete, once each, in order (at ${SECONDS} s)" >&2

# 3. The partition heals: the backup sees the primary active too and stands down (exit 3);
# started again, it stands by. One active broker, and jobs run.
ip -n "$tag-a" link set eth0 up
ip -n "$tag-a" link set ha0 up
backup_stopped() { ! kill -0 "$broker_b" 2>/dev/null; }
wait_for 20 backup_stopped || { echo "the backup did not stand down" >&2; exit 1; }
wait "$broker_b" && status=0 || status=$?
[[ $status -eq 3 ]] || { echo "the backup exited $status, not 3" >&2; exit 1; }
start_broker b
wait_for 20 is b "backup passive" || { echo "the backup started again is $(state_of b)" >&2; exit 1; }
is a "primary active" || { echo "the primary is $(state_of a)" >&2; exit 1; }
seq 1 50 | seppo map --broker-timeout 60 item >"$tmp/healed.out"
check "$tmp/healed.out" 50
echo "pair-netns: partition healed: the backup stood down (exit 3), stands by again; one active broker (at ${SECONDS} s)" >&2
