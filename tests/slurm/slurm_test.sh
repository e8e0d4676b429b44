#!/bin/bash
# A seppo job through a real single-node Slurm: munged, slurmctld and slurmd started here (in a
# temp folder, on ports of their own), examples/slurm/seppo-job.sbatch submitted with the build
# tree's programs, its results checked, everything stopped by pid afterwards, also on failure.
# Usage: slurm_test.sh BUILD_DIR SOURCE_DIR. Exit 77 (skipped) when not root or Slurm is absent.
set -euo pipefail
build=$(realpath "$1")
source=$(realpath "$2")

skip() { echo "SKIP: $*" >&2; exit 77; }
[[ $(id -u) -eq 0 ]] || skip "the Slurm test needs root (it starts munged, slurmctld, slurmd)"
for program in munged slurmctld slurmd sbatch squeue sinfo; do
  command -v "$program" >/dev/null || skip "$program is missing: run scripts/install-deps.sh"
done

tmp=$(mktemp -d /tmp/seppo-slurm-test.XXXXXX)
chmod 0755 "$tmp"
pids=()
munge_started=
cleanup() {
  local status=$?
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
  done
  if [[ -n $munge_started ]]; then
    kill "$munge_started" 2>/dev/null || true
  fi
  if [[ $status -ne 0 ]]; then
    for f in "$tmp"/log/* "$tmp"/job/seppo-*.out "$tmp"/job/seppo-*/*.log; do
      [[ -f $f ]] && { echo "---- $f" >&2; tail -n 30 "$f" >&2; }
    done
  fi
  rm -rf "$tmp"
  exit "$status"
}
trap cleanup EXIT

# munge: reuse a munged that already runs (a previous test, or the machine's own), else start one.
# Its socket is the one every Slurm program uses, so it cannot be private to this test.
if ! munge -n </dev/null >/dev/null 2>&1; then
  mkdir -p /etc/munge /run/munge /var/lib/munge /var/log/munge
  if [[ ! -s /etc/munge/munge.key ]]; then
    head -c 1024 /dev/urandom >/etc/munge/munge.key
  fi
  chown munge:munge /etc/munge/munge.key /run/munge /var/lib/munge /var/log/munge 2>/dev/null ||
    true
  chmod 0400 /etc/munge/munge.key
  rm -f /run/munge/munged.pid
  munged --force 2>"$tmp/munged.err" || skip "munged does not start: $(cat "$tmp/munged.err")"
  for _ in $(seq 1 50); do [[ -s /run/munge/munged.pid ]] && break; sleep 0.1; done
  munge_started=$(cat /run/munge/munged.pid)
  for _ in $(seq 1 50); do munge -n </dev/null >/dev/null 2>&1 && break; sleep 0.1; done
fi
munge -n </dev/null >/dev/null || { echo "munge does not work" >&2; exit 1; }

host=$(hostname -s)
cpus=$(nproc)
# Ports of our own, so a Slurm left running by someone else is not disturbed.
port=$((20000 + $$ % 20000))
mkdir -p "$tmp/state" "$tmp/spool" "$tmp/log" "$tmp/job"
export SLURM_CONF=$tmp/slurm.conf
cat >"$SLURM_CONF" <<CONF
ClusterName=seppotest
SlurmctldHost=$host
SlurmctldPort=$port
SlurmdPort=$((port + 1))
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=$tmp/state
SlurmdSpoolDir=$tmp/spool
SlurmctldPidFile=$tmp/slurmctld.pid
SlurmdPidFile=$tmp/slurmd.pid
SlurmctldLogFile=$tmp/log/ctld.log
SlurmdLogFile=$tmp/log/d.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
SchedulerType=sched/builtin
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
MpiDefault=none
NodeName=$host CPUs=$cpus State=UNKNOWN
PartitionName=seppotest Nodes=$host Default=YES MaxTime=INFINITE State=UP
CONF

slurmctld -D -i -f "$SLURM_CONF" >"$tmp/log/ctld.out" 2>&1 &
pids+=($!)
slurmd -D -f "$SLURM_CONF" >"$tmp/log/d.out" 2>&1 &
pids+=($!)

# The node is idle once both daemons talk (bounded).
for _ in $(seq 1 150); do
  state=$(sinfo -h -n "$host" -o %T 2>/dev/null || true)
  [[ $state == idle ]] && break
  sleep 0.2
done
[[ $state == idle ]] || { echo "the Slurm node never became idle (state: $state)" >&2; exit 1; }

export PATH=$build/broker:$build/worker:$build/cli:$PATH
export SEPPO_MODULES=$build/examples/libexample_module.so
export SEPPO_IDLE=3s
seq 1 100 >"$tmp/job/input"
cd "$tmp/job"

submit() {  # submit SBATCH-ARGS...: prints the job id
  sbatch --parsable --nodes=1 --exclusive --chdir="$tmp/job" \
    "$source/examples/slurm/seppo-job.sbatch" "$@"
}
wait_job() {  # wait_job JOB SECONDS: until squeue no longer lists it, or fail
  local end=$((SECONDS + $2))
  while [[ -n $(squeue -h -j "$1" 2>/dev/null) ]]; do
    [[ $SECONDS -lt $end ]] || { echo "job $1 did not finish in $2 s" >&2; exit 1; }
    sleep 0.2
  done
}
no_secret_keys() {  # no_secret_keys JOB: the job deleted its secret keys when it ended
  local left
  left=$(find "$tmp/job/seppo-$1" -name '*.key_secret' 2>/dev/null)
  [[ -z $left ]] || { echo "job $1 left its secret keys: $left" >&2; exit 1; }
  [[ -s $tmp/job/seppo-$1/broker.key ]] || { echo "job $1 made no keys at all" >&2; exit 1; }
}

job=$(submit example_module.square "$tmp/job/input" "$tmp/job/output")
echo "submitted job $job" >&2
wait_job "$job" 120

[[ -f $tmp/job/output ]] || { echo "job $job wrote no output" >&2; exit 1; }
lines=$(wc -l <"$tmp/job/output")
sum=$(awk '{ s += $1 } END { print s }' "$tmp/job/output")
expected=$(seq 1 100 | awk '{ s += $1 * $1 } END { print s }')
[[ $lines -eq 100 && $sum -eq $expected ]] ||
  { echo "expected 100 squares summing to $expected, got $lines lines summing to $sum" >&2; exit 1; }
[[ $(head -n 3 "$tmp/job/output" | paste -sd,) == 1,4,9 ]] || { echo "results out of order" >&2; exit 1; }
# The workers left on their own (the broker's BYE, or idle), and so the job step ended cleanly.
grep -q "results in" "$tmp/job/seppo-$job.out" || { echo "the batch script did not finish" >&2; exit 1; }
grep -q "started $cpus worker processes" "$tmp/job/seppo-$job/workers.log" ||
  { echo "seppo-worker did not start one process per allocated CPU ($cpus)" >&2; exit 1; }
grep -q "broker is shutting down; stopping" "$tmp/job/seppo-$job/workers.log" ||
  { echo "the workers did not leave on the broker's BYE" >&2; exit 1; }
[[ ! -e $tmp/job/seppo-$job/endpoint ]] || { echo "the broker left its endpoint file" >&2; exit 1; }
no_secret_keys "$job"
echo "slurm test: job $job mapped 100 items through Slurm, squares sum to $sum" >&2

# Worker options with quotes, as docs/slurm.md shows them: SEPPO_WORKER_ARGS is split into
# arguments as xargs does (size='wc -c < {}' is one), and options after -- go through as they are.
mkdir -p "$tmp/job/files"
printf 'abc' >"$tmp/job/files/three bytes"
printf 'one two\n' >"$tmp/job/files/it's two words"
printf '%s\n' "$tmp/job/files/three bytes" "$tmp/job/files/it's two words" >"$tmp/job/names"
job=$(SEPPO_WORKER_ARGS="--command size='wc -c < {}'" \
  submit size "$tmp/job/names" "$tmp/job/sizes" -- --command "words=wc -w < {}")
wait_job "$job" 120
[[ $(paste -sd, "$tmp/job/sizes" 2>/dev/null) == 3,8 ]] ||
  { echo "job $job (SEPPO_WORKER_ARGS with quotes) gave '$(cat "$tmp/job/sizes" 2>&1)'" >&2; exit 1; }
grep -q "command words: wc -w < {}" "$tmp/job/seppo-$job/workers.log" ||
  { echo "job $job: the option after -- did not reach the workers" >&2; exit 1; }
no_secret_keys "$job"
echo "slurm test: job $job ran a quoted --command from SEPPO_WORKER_ARGS and one after --" >&2

# A worker step that ends at once (a bad option): the job fails at once, saying why, instead of
# waiting SEPPO_WORKER_WAIT (300 s) for workers that never come.
start=$SECONDS
job=$(SEPPO_WORKER_ARGS="--no-such-option" submit example_module.square "$tmp/job/input" \
  "$tmp/job/never")
wait_job "$job" 60
grep -q "the worker step (srun seppo-worker) ended with status" "$tmp/job/seppo-$job.out" ||
  { echo "job $job: no word of the worker step's end: $(cat "$tmp/job/seppo-$job.out")" >&2; exit 1; }
grep -q "no-such-option" "$tmp/job/seppo-$job.out" ||
  { echo "job $job: the workers' log is not shown: $(cat "$tmp/job/seppo-$job.out")" >&2; exit 1; }
no_secret_keys "$job"
echo "slurm test: job $job with a failing worker step ended after $((SECONDS - start)) s" >&2
