#!/usr/bin/env bash
# A worker whose key the broker refuses keeps trying: it joins within seconds once its key is
# listed and the broker reloads its lists (SIGHUP), as README.md promises; and SIGTERM stops a
# worker in that state cleanly (exit 0, no "terminate called after throwing zmq::error_t").
# Real processes: a CurveZMQ broker on ipc://, workers, seppo status; each stopped by its pid.
# Usage: worker_key_retry.sh SEPPO SEPPO_BROKER SEPPO_WORKER MODULE
set -uo pipefail
seppo=$1 broker_program=$2 worker_program=$3 module=$4
source "$(dirname "$0")/harness.sh"

mkdir -m 0700 "$dir/keys"
for who in broker worker other client; do
  "$seppo" keygen "$dir/keys/$who" >/dev/null || fail "seppo keygen $dir/keys/$who"
done
mkdir -m 0755 "$dir/workers" "$dir/clients"
cp "$dir/keys/client.key" "$dir/clients/"
endpoint="ipc://$dir/broker"
"$broker_program" --bind "$endpoint" --curve-secret-key "$dir/keys/broker.key_secret" \
  --authorized-workers "$dir/workers" --authorized-clients "$dir/clients" 2>"$dir/broker.log" &
broker=$!
pids+=($broker)
status() {
  "$seppo" --broker "$endpoint" --curve-secret-key "$dir/keys/client.key_secret" \
    --curve-server-key "$dir/keys/broker.key" status --json 2>/dev/null
}
registered() { [[ $(status | grep -o '"pid"' | wc -l) -eq $1 ]]; }
deadline_poll 10 registered 0 || fail "broker did not start: $(cat "$dir/broker.log")"

start_worker() {  # start_worker KEY LOG: a worker of one process with KEY, not yet authorised
  "$worker_program" -j 1 --broker "$endpoint" --curve-secret-key "$dir/keys/$1.key_secret" \
    --curve-server-key "$dir/keys/broker.key" --module "$module" 2>"$2" &
  pids+=($!)
  worker=$!
}

# 1. Refused, then authorised: it joins within seconds.
start_worker worker "$dir/worker.log"
deadline_poll 10 grep -q "refused this worker's key" "$dir/worker.log" ||
  fail "the worker did not report its refused key: $(cat "$dir/worker.log")"
# Long enough for a worker that gave up to have done so (its broker expiry is 3 s).
sleep 4  # not a readiness wait: the refused state must last, as an operator's would
registered 0 || fail "an unauthorised worker registered"
cp "$dir/keys/worker.key" "$dir/workers/"
kill -HUP "$broker"
added=$SECONDS
deadline_poll 15 registered 1 ||
  fail "the worker did not join within 15 s of its key being authorised: $(tail -n 5 "$dir/worker.log")"
echo "the refused worker joined $((SECONDS - added)) s after its key was authorised"
result=$(seq 1 3 | "$seppo" --broker "$endpoint" --curve-secret-key "$dir/keys/client.key_secret" \
  --curve-server-key "$dir/keys/broker.key" map example_module.square | tr '\n' ' ')
[[ "$result" == "1 4 9 " ]] || fail "map through the joined worker gave '$result'"

# 2. SIGTERM to a worker whose key is refused: a clean stop.
start_worker other "$dir/other.log"
deadline_poll 10 grep -q "refused this worker's key" "$dir/other.log" ||
  fail "the second worker did not report its refused key: $(cat "$dir/other.log")"
sleep 4  # as above: in the state where it used to block in ZeroMQ
kill -TERM "$worker"
end=$((SECONDS + 10))
while kill -0 "$worker" 2>/dev/null && [[ $SECONDS -lt $end ]]; do sleep 0.1; done
kill -0 "$worker" 2>/dev/null && fail "SIGTERM did not stop a refused worker within 10 s"
wait "$worker"; code=$?
grep -q "terminate called" "$dir/other.log" && fail "the refused worker aborted: $(cat "$dir/other.log")"
[[ $code -eq 0 ]] || fail "the refused worker exited $code after SIGTERM: $(tail -n 5 "$dir/other.log")"
echo "worker key retry: joined after authorisation; SIGTERM while refused exits 0"
