#!/usr/bin/env bash
# Under journald, the broker's and the worker's lines go to the journal with their fields
# (SEPPO_JOB=, SEPPO_FUNCTION=, SEPPO_WORKER=) besides the text, through sd-journal. journald
# is stood in for by a datagram socket at /run/systemd/journal/socket in a mount namespace of
# this test's own (a tmpfs over /run/systemd), so the machine's journal is never touched.
# Usage: journal_fields.sh SEPPO SEPPO_BROKER SEPPO_WORKER MODULE. Root only (unshare -m).
set -uo pipefail
if [[ "${SEPPO_IN_NAMESPACE:-}" != 1 ]]; then
  [[ $(id -u) -eq 0 ]] || { echo "SKIP: needs root for a mount namespace"; exit 77; }
  command -v unshare >/dev/null && unshare -m true 2>/dev/null ||
    { echo "SKIP: unshare -m does not work here"; exit 77; }
  exec unshare -m env SEPPO_IN_NAMESPACE=1 "$0" "$@"
fi
seppo=$1 broker_program=$2 worker_program=$3 module=$4
source "$(dirname "$0")/harness.sh"
mount --make-rprivate / && mkdir -p /run/systemd && mount -t tmpfs none /run/systemd &&
  mkdir -p /run/systemd/journal || fail "cannot make a private /run/systemd"

# The stand-in journal: every datagram, one entry, ends with a line "--".
python3 -c '
import os, socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind("/run/systemd/journal/socket")
with open(sys.argv[1], "ab", buffering=0) as out:
    while True:
        out.write(s.recv(1 << 20) + b"--\n")
' "$dir/journal" &
pids+=($!)
deadline_poll 10 test -S /run/systemd/journal/socket || fail "the stand-in journal did not start"

journal_env() {  # JOURNAL_STREAM for stderr going to FILE: as systemd sets it
  : >"$1"; echo "JOURNAL_STREAM=$(stat -c '%d:%i' "$1")"
}
endpoint="ipc://$dir/broker"
env "$(journal_env "$dir/broker.err")" "$broker_program" --bind "$endpoint" 2>>"$dir/broker.err" &
pids+=($!)
env "$(journal_env "$dir/worker.err")" "$worker_program" -j 1 --broker "$endpoint" \
  --module "$module" 2>>"$dir/worker.err" &
pids+=($!)
deadline_poll 20 grep -q "SEPPO_WORKER=.*process" "$dir/journal" 2>/dev/null ||
  fail "no worker line with SEPPO_WORKER in the journal: $(cat "$dir/journal" "$dir"/*.err)"
result=$(seq 1 3 | "$seppo" --broker "$endpoint" map example_module.square | tr '\n' ' ')
[[ "$result" == "1 4 9 " ]] || fail "map gave '$result'"
finished() { grep -q "MESSAGE=job [0-9]* of client .* (example_module.square) finished" "$dir/journal"; }
deadline_poll 10 finished || fail "the job's finished line is not in the journal: $(cat "$dir/journal")"

# The finished line's entry carries the job and the function.
entry=$(awk -v RS='--\n' '/finished/' "$dir/journal")
grep -qx "SEPPO_FUNCTION=example_module.square" <<<"$entry" &&
  grep -qE "^SEPPO_JOB=[0-9a-f]{8}/[0-9]+$" <<<"$entry" && grep -qx "PRIORITY=6" <<<"$entry" &&
  grep -qx "SYSLOG_IDENTIFIER=seppo-broker" <<<"$entry" ||
  fail "the finished line lacks its fields: $entry"
grep -q "MESSAGE=seppo-broker .* (protocol 1), process" "$dir/journal" ||
  fail "the broker's first line (its version) is not in the journal"
grep -q "^SEPPO_WORKER=.*, process [0-9]*$" "$dir/journal" || fail "no SEPPO_WORKER field"
# Nothing went to stderr instead: the journal had every line.
[[ ! -s "$dir/broker.err" ]] || fail "the broker wrote to stderr under journald: $(cat "$dir/broker.err")"
echo "journal fields: SEPPO_JOB, SEPPO_FUNCTION, SEPPO_WORKER, priority and identifier sent"
