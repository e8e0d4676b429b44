#!/usr/bin/env bash
# seppo-ssh-workers against a real sshd on 127.0.0.1 and 127.0.0.2, started here on a free port with its own
# host key and an authorised key made in a temp dir, killed by PID after. A broker on ipc://.
# Usage: ssh_workers.sh SSH_WORKERS SEPPO SEPPO_BROKER SEPPO_WORKER MODULE
set -uo pipefail
tool=$1 seppo=$2 broker_program=$3 worker_program=$4 module=$5
sshd=$(command -v sshd || echo /usr/sbin/sshd)
if [[ ! -x "$sshd" ]] || ! command -v ssh >/dev/null; then
  echo "SKIP: sshd or ssh not installed (apt-get install openssh-server openssh-client)"; exit 77
fi
dir=$(mktemp -d)
sshd_pid="" broker_pid="" common=()
cleanup() {
  "$tool" "${common[@]}" stop "$dir/hosts" >/dev/null 2>&1
  # Should stop have failed (a failing test), the workers this test started name its broker
  # endpoint, a path under its own temp dir: stop those processes by pid.
  for cmdline in /proc/[0-9]*/cmdline; do
    if tr '\0' ' ' 2>/dev/null <"$cmdline" | grep -qF -- "--broker ipc://$dir/broker"; then
      p=${cmdline#/proc/}; kill "${p%/cmdline}" 2>/dev/null
    fi
  done
  [[ -n "$broker_pid" ]] && kill "$broker_pid" 2>/dev/null && wait "$broker_pid" 2>/dev/null
  [[ -n "$sshd_pid" ]] && kill "$sshd_pid" 2>/dev/null && wait "$sshd_pid" 2>/dev/null
  rm -rf "$dir"
}
trap cleanup EXIT
fail() { echo "FAIL (after ${SECONDS}s): $*"; exit 1; }
deadline_poll() {  # deadline_poll SECONDS COMMAND...: until COMMAND succeeds, or fail
  local end=$((SECONDS + $1)); shift
  until "$@"; do [[ $SECONDS -lt $end ]] || return 1; sleep 0.2; done
}

ssh-keygen -q -t ed25519 -N '' -f "$dir/host_key" || fail "ssh-keygen"
ssh-keygen -q -t ed25519 -N '' -f "$dir/user_key" || fail "ssh-keygen"
cp "$dir/user_key.pub" "$dir/authorized_keys"
[[ $(id -u) -eq 0 ]] && mkdir -p /run/sshd  # privilege separation directory
user=$(id -un)

# A free port: try random ones until sshd says it listens (bounded).
for attempt in $(seq 1 20); do
  port=$((20000 + RANDOM % 20000))
  cat >"$dir/sshd_config" <<CONF
Port $port
ListenAddress 127.0.0.1
ListenAddress 127.0.0.2
HostKey $dir/host_key
AuthorizedKeysFile $dir/authorized_keys
PidFile $dir/sshd.pid
StrictModes no
UsePAM no
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
AcceptEnv none
CONF
  "$sshd" -D -e -f "$dir/sshd_config" 2>"$dir/sshd.log" &
  sshd_pid=$!
  if deadline_poll 5 grep -q "Server listening" "$dir/sshd.log"; then break; fi
  kill "$sshd_pid" 2>/dev/null; wait "$sshd_pid" 2>/dev/null; sshd_pid=""
done
[[ -n "$sshd_pid" ]] || fail "sshd did not start: $(cat "$dir/sshd.log")"

cat >"$dir/ssh_config" <<CONF
Host 127.0.0.1 127.0.0.2
  Port $port
Host deadhost
  HostName 127.0.0.1
  Port 1
Host *
  User $user
  IdentityFile $dir/user_key
  IdentitiesOnly yes
  UserKnownHostsFile /dev/null
  StrictHostKeyChecking no
  LogLevel ERROR
CONF
# An ssh in front of the real one that counts logins and the most at once (for --fanout).
mkdir -p "$dir/bin" "$dir/inflight"
real_ssh=$(command -v ssh)
cat >"$dir/bin/ssh" <<SH
#!/bin/bash
mkdir "$dir/inflight/\$\$"
{ printf "%q " "\$@"; echo; } >>"$dir/ssh-calls"  # one line each
now=\$(ls "$dir/inflight" | wc -l)
max=\$(cat "$dir/ssh-max" 2>/dev/null || echo 0)
[[ \$now -gt \$max ]] && echo "\$now" >"$dir/ssh-max"
"$real_ssh" "\$@"; status=\$?
rmdir "$dir/inflight/\$\$"
exit \$status
SH
chmod +x "$dir/bin/ssh"
export PATH=$dir/bin:$PATH
endpoint="ipc://$dir/broker"
common=(--broker "$endpoint" -F "$dir/ssh_config" --state "$dir/state" --timeout 20
        --worker-program "$worker_program" --seppo-program "$seppo")
ssh -F "$dir/ssh_config" 127.0.0.1 true </dev/null || fail "ssh to the test sshd does not work"

"$tool" --help >/dev/null || fail "--help exits $?"
"$tool" --version | grep -q '^seppo-ssh-workers [0-9]' || fail "--version"
"$tool" bogus "$dir/x" 2>/dev/null; [[ $? -eq 2 ]] || fail "bad usage should exit 2"
# No default broker: seppo-broker's default socket is this host's alone (the worker hosts'
# /tmp is another), so start without --broker or SEPPO_BROKER is a usage error naming both.
echo 127.0.0.1 >"$dir/one_host"
out=$(env -u SEPPO_BROKER "$tool" start "$dir/one_host" 2>&1); status=$?
[[ $status -eq 2 && "$out" == *"--broker ENDPOINT or set SEPPO_BROKER"* ]] ||
  fail "start without a broker should exit 2 naming --broker (got $status: $out)"

"$broker_program" --bind "$endpoint" 2>"$dir/broker.log" &
broker_pid=$!
deadline_poll 10 "$seppo" --broker "$endpoint" ping >/dev/null 2>&1 || fail "broker did not start"

workers() { "$seppo" --broker "$endpoint" status --json | jq '.workers | length'; }
# Two lines for the same host: two workers, each its own entry.
printf '# test hosts\n2/127.0.0.1\n\n1/127.0.0.1\n' >"$dir/hosts"
"$tool" "${common[@]}" start "$dir/hosts" -- --module "$module" >"$dir/out" 2>&1 ||
  fail "start: $(cat "$dir/out")"
[[ $(workers) -eq 3 ]] || fail "expected 3 registered worker processes, got $(workers)"
grep -q 'line 2' "$dir/out" && grep -q 'line 4' "$dir/out" || fail "lines not named: $(cat "$dir/out")"

"$tool" "${common[@]}" start "$dir/hosts" -- --module "$module" >"$dir/out" 2>&1 ||
  fail "second start: $(cat "$dir/out")"
grep -q 'already running' "$dir/out" || fail "second start did not see the workers: $(cat "$dir/out")"
[[ $(workers) -eq 3 ]] || fail "a second start duplicated workers: $(workers)"

"$tool" "${common[@]}" status "$dir/hosts" >"$dir/out" 2>&1 || fail "status: $(cat "$dir/out")"
grep -q '2 of 2 processes registered' "$dir/out" || fail "status: $(cat "$dir/out")"

result=$(seq 1 5 | "$seppo" --broker "$endpoint" map example_module.square | tr '\n' ' ')
[[ "$result" == "1 4 9 16 25 " ]] || fail "map gave '$result'"

"$tool" "${common[@]}" restart "$dir/hosts" -- --module "$module" >"$dir/out" 2>&1 ||
  fail "restart: $(cat "$dir/out")"
[[ $(workers) -eq 3 ]] || fail "after restart: $(workers) workers"

"$tool" "${common[@]}" stop "$dir/hosts" >"$dir/out" 2>&1 || fail "stop: $(cat "$dir/out")"
deadline_poll 10 test "$(workers)" -eq 0 || fail "workers still registered after stop"
"$tool" "${common[@]}" status "$dir/hosts" >"$dir/out" 2>&1 && fail "status after stop should fail"
grep -q 'No such file' "$dir/out" && fail "status of stopped workers is noisy: $(cat "$dir/out")"
grep -q '127.0.0.1 (line 2): not started by seppo-ssh-workers' "$dir/out" ||
  fail "status does not say the workers are not started: $(cat "$dir/out")"

# Hostlists as pdsh/clush/Slurm write them, and at most --fanout ssh sessions at once: four
# workers on two addresses, one ssh login each for start (the wait for registration asks the
# broker only), never two at once.
printf '1/127.0.0.[1-2]\n1/127.0.0.2,127.0.0.1\n' >"$dir/hostlist"
rm -f "$dir/ssh-calls" "$dir/ssh-max"
"$tool" "${common[@]}" --fanout 1 start "$dir/hostlist" -- --module "$module" >"$dir/out" 2>&1 ||
  fail "start of a hostlist: $(cat "$dir/out")"
[[ $(workers) -eq 4 ]] || fail "a hostlist of 4 workers registered $(workers)"
for w in '127.0.0.1 (line 1)' '127.0.0.2 (line 1)' '127.0.0.2 (line 2)' '127.0.0.1 (line 2)'; do
  grep -qF "$w: started" "$dir/out" || fail "$w not started: $(cat "$dir/out")"
done
[[ $(wc -l <"$dir/ssh-calls") -eq 4 ]] ||
  fail "start of 4 workers made $(wc -l <"$dir/ssh-calls") ssh logins, not 4: $(cat "$dir/ssh-calls")"
[[ $(cat "$dir/ssh-max") -eq 1 ]] || fail "--fanout 1 ran $(cat "$dir/ssh-max") ssh at once"
grep -v -- ' -- 127.0.0.[12] ' "$dir/ssh-calls" && fail "ssh called without -- before the host"
"$tool" "${common[@]}" stop "$dir/hostlist" >"$dir/out" 2>&1 || fail "stop: $(cat "$dir/out")"
deadline_poll 10 test "$(workers)" -eq 0 || fail "hostlist workers still registered after stop"
printf 'node[3-1]\n' >"$dir/badlist"
"$tool" "${common[@]}" start "$dir/badlist" >"$dir/out" 2>&1; status=$?
[[ $status -eq 2 ]] && grep -q 'line 1.*not a host list' "$dir/out" ||
  fail "a bad hostlist should exit 2 naming its line (got $status: $(cat "$dir/out"))"
# A host name is never an ssh option: a line "-oProxyCommand=..." would otherwise run a command.
printf -- '-oProxyCommand=touch%s\n' "$dir/pwned" >"$dir/evil"
"$tool" "${common[@]}" start "$dir/evil" >"$dir/out" 2>&1; status=$?
[[ $status -eq 2 && ! -e "$dir/pwned" ]] ||
  fail "a host name like an ssh option was not refused (got $status: $(cat "$dir/out"))"

# A start that fails (no broker listens there) stops the workers it started: none is left.
rm -f "$dir/ssh-calls"
"$tool" "${common[@]}" --broker "ipc://$dir/nobroker" --timeout 3 start "$dir/one_host" -- \
  --module "$module" >"$dir/out" 2>&1 && fail "start against a missing broker succeeded"
grep -q '127.0.0.1 (line 1): FAILED' "$dir/out" || fail "no FAILED line: $(cat "$dir/out")"
grep -q 'stopped (pid [0-9]*) again' "$dir/out" || fail "the failed worker was not stopped: $(cat "$dir/out")"
for cmdline in /proc/[0-9]*/cmdline; do
  tr '\0' ' ' 2>/dev/null <"$cmdline" | grep -qF -- "--broker ipc://$dir/nobroker" &&
    fail "a worker of the failed start still runs: $cmdline"
done

# A worker that dies at once, and a host that cannot be reached: start fails and says where.
printf '1/127.0.0.1\ndeadhost\n' >"$dir/bad-hosts"
"$tool" "${common[@]}" start "$dir/bad-hosts" -- --module /nonexistent/libnothing.so \
  >"$dir/out" 2>&1 && fail "start of a dying worker succeeded: $(cat "$dir/out")"
grep -q '127.0.0.1 (line 1): FAILED.*not running' "$dir/out" || fail "no reason for line 1: $(cat "$dir/out")"
grep -q 'nothing' "$dir/out" || fail "the worker's log is not shown: $(cat "$dir/out")"
grep -q 'deadhost (line 2): FAILED: ssh failed' "$dir/out" || fail "no reason for line 2: $(cat "$dir/out")"
"$tool" "${common[@]}" stop "$dir/bad-hosts" >/dev/null 2>&1

# seppo map -S / --slf (GNU parallel's --sshlogin): the job starts its own broker and a worker on
# each host over ssh, each reaching the broker through a reverse tunnel of its session, and stops
# them at its end. The same bytes as parallel -S with the same ssh (or, without parallel, as
# seppo map --local).
export SEPPO_WORKER_PROGRAM=$worker_program SEPPO_SSH_WORKERS=$tool
sshcmd="ssh -F $dir/ssh_config"
have_parallel=0
command -v parallel >/dev/null && command -v perl >/dev/null && have_parallel=1
leftover() {  # the -S workers, runners and brokers of this test that still run
  grep -laE 'seppo-S\.[A-Za-z0-9]+/broker|ipc:///tmp/seppo-[0-9a-f-]+\.sock' /proc/[0-9]*/cmdline 2>/dev/null
}
printf '# two hosts\n1/127.0.0.1\n\n2/127.0.0.2\n' >"$dir/slf"
# compare NAME 'parallel options and command' 'seppo map options' 'template' INPUT-OPTIONS...
compare() {
  local name=$1 popts=$2 sopts=$3 template=$4; shift 4
  if [[ $have_parallel -eq 1 ]]; then
    eval "parallel --will-cite -k --ssh \"\$sshcmd\" $popts \"\$template\" \"\$@\"" \
      >"$dir/expected" 2>"$dir/expected.err" </dev/null
  else
    eval "\"\$seppo\" map --local --command n=\"\$template\" n \"\$@\"" >"$dir/expected" \
      2>"$dir/expected.err" </dev/null
  fi
  local e=$?
  eval "\"\$seppo\" map --ssh \"\$sshcmd\" $sopts --command n=\"\$template\" n \"\$@\"" \
    >"$dir/actual" 2>"$dir/actual.err" </dev/null
  local a=$?
  cmp -s "$dir/expected" "$dir/actual" ||
    fail "-S $name: not the same bytes: $(diff "$dir/expected" "$dir/actual" | head -5) $(cat "$dir/actual.err")"
  [[ $e -eq $a ]] || fail "-S $name: exit status $a, expected $e: $(cat "$dir/actual.err")"
  [[ -z "$(leftover)" ]] || fail "-S $name: workers left running: $(leftover)"
  echo "ok   -S $name"
}
compare "--slf: two hosts, a failing item" "--slf $dir/slf" "--slf $dir/slf" \
  'test {} != 3 && echo {#} {} $(( {#} * 2 ))' ::: 1 2 3 4 'b c'
export FOO='a b'
compare "-S : (this host) and a host, --env carried to both" "-S :,1/127.0.0.2 --env FOO" \
  "-S :,1/127.0.0.2 --env FOO" 'echo "$FOO" {}' ::: x y z
unset FOO
# ":" with a host: each session its own stdin. ssh makes its stdin non-blocking (as this ssh
# does at once, before the ":" session reads its stdin): a shared one passed that to the ":"
# session, whose reader then failed with EAGAIN and stopped its worker ("0 of 2 registered").
printf '#!/bin/sh\nperl -e %s\nexec ssh -F %s "$@"\n' \
  "'use Fcntl; fcntl(STDIN, F_SETFL, fcntl(STDIN, F_GETFL, 0) | O_NONBLOCK) or die'" \
  "$dir/ssh_config" >"$dir/nonblocking-ssh"
chmod +x "$dir/nonblocking-ssh"
for try in 1 2 3; do
  out=$(timeout 60 "$seppo" map --ssh "$dir/nonblocking-ssh" -S 1/127.0.0.1,1/: --command n='echo {}' n \
    ::: a b c 2>&1) || fail "-S 1/127.0.0.1,1/: (try $try): status $?: $out"
  [[ "$out" == $'a\nb\nc' ]] || fail "-S 1/127.0.0.1,1/: (try $try) printed $out"
done
echo "ok   -S 1/127.0.0.1,1/: with an ssh that makes its stdin non-blocking"
# The worker's arguments reach sh -c (dash) in POSIX quotes: a newline in the template.
out=$(timeout 60 "$seppo" map --ssh "$sshcmd" -S 1/127.0.0.1,1/: --command $'f=echo {}\necho done' f \
  ::: a b 2>&1) || fail "-S with a newline in the template: status $?: $out"
[[ "$out" == $'a\ndone\nb\ndone' ]] || fail "-S with a newline in the template printed $out"
echo "ok   -S a template with a newline"
seq 1 400 >"$dir/lines"
compare "--pipe" "-S 1/127.0.0.1,1/127.0.0.2 --pipe --block 500" \
  "-S 1/127.0.0.1,1/127.0.0.2 --pipe --block 500" 'wc -l' <"$dir/lines"
# -X spreads the last inputs over the job slots of the hosts (2 + 3), not over this host's cores
compare "-X over the hosts' job slots" "-S 2/127.0.0.1,3/127.0.0.2 -X" \
  "-S 2/127.0.0.1,3/127.0.0.2 -X" 'echo {}' ::: $(seq 1 13)
# ...in the folder parallel's run in: the login's home folder
compare "-X, the home folder" "-S 127.0.0.1 -j1 -X" "-S 127.0.0.1 -j1 -X" 'echo pic{}.jpg ; pwd' \
  ::: 1 2 3
# A host that cannot be reached fails the command before anything runs, naming it; nothing of
# the job is left running (its other host's worker, its broker).
out=$("$seppo" map --ssh "$sshcmd" -S 127.0.0.1,deadhost --command n='echo {}' n ::: a 2>&1)
status=$?
[[ $status -eq 255 && "$out" == *"deadhost"*"FAILED"* && "$out" != *"a"$'\n'* ]] ||
  fail "-S with an unreachable host: status $status: $out"
# The started worker stops as its session is closed, a moment after seppo map returns.
no_leftover() { [[ -z "$(leftover)" ]]; }
deadline_poll 20 no_leftover || fail "-S with an unreachable host left workers: $(leftover)"
for login in 'ssh -p 2222 host' '@group/host' '-' 'x/host' ":,no'such" ':,a"b' ':,a\b'; do
  "$seppo" map -S "$login" --command n='echo {}' n ::: a >"$dir/out" 2>&1
  [[ $? -eq 255 ]] && grep -q -- "-S" "$dir/out" ||
    fail "-S $login should be refused with a reason: $(cat "$dir/out")"
done
# -S .. reads ~/.parallel/sshloginfile, as parallel
mkdir -p "$dir/home/.parallel" && echo 1/127.0.0.2 >"$dir/home/.parallel/sshloginfile"
out=$(HOME=$dir/home "$seppo" map --ssh "$sshcmd" -S .. --command n='echo {} $(hostname)' n ::: a 2>&1) ||
  fail "-S ..: $out"
[[ "$out" == "a $(hostname)" ]] || fail "-S .. printed $out"
[[ -z "$(leftover)" ]] || fail "-S .. left workers: $(leftover)"
echo "seppo-ssh-workers: start, idempotent start, status, map, restart, stop, failures, seppo map -S: ok"
