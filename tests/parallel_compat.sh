#!/usr/bin/env bash
# GNU parallel's everyday idioms, run through `parallel` and through `seppo map` (locally, and
# through a broker where the idiom applies); their stdout must match byte for byte.
# Usage: parallel_compat.sh SEPPO SEPPO_BROKER SEPPO_WORKER
set -u
seppo=$(realpath "$1") broker_bin=$(realpath "$2") worker_bin=$(realpath "$3")
if ! command -v parallel >/dev/null; then
  echo "SKIP: GNU parallel is not installed (scripts/install-deps.sh installs it)"
  exit 77
fi
par() { parallel --will-cite -k "$@"; }
work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null; done
  rm -rf "$work"
}
trap cleanup EXIT
cd "$work" || exit 1
failures=0 checks=0

# same NAME EXPECTED_FILE ACTUAL_FILE
same() {
  checks=$((checks + 1))
  if cmp -s "$2" "$3"; then
    echo "ok   $1 (${SECONDS}s)"
  else
    echo "FAIL $1"
    diff <(od -c "$2") <(od -c "$3") | head -20
    failures=$((failures + 1))
  fi
}
# both NAME 'parallel args' 'seppo args' : runs both through eval, compares stdout and status
# (and stderr too when BOTH_STDERR=1: parallel's is deterministic for that idiom).
# parallel's side runs once per distinct command line (its start-up is most of this test's time):
# the --local and the broker variant of an idiom compare with the same run.
declare -A expected_file=() expected_status=()
runs=0
both() {
  local name=$1
  if [[ -z ${expected_status[$2]+set} ]]; then
    runs=$((runs + 1))
    expected_file[$2]=expected.$runs
    eval "$2" >"${expected_file[$2]}" 2>"${expected_file[$2]}.err"
    expected_status[$2]=$?
  fi
  local e=${expected_status[$2]}
  eval "$3" >actual 2>actual.err
  local a=$?
  same "$name" "${expected_file[$2]}" actual
  if [[ ${BOTH_STDERR:-0} == 1 ]]; then same "$name: stderr" "${expected_file[$2]}.err" actual.err; fi
  if [[ $e -ne $a ]]; then
    echo "FAIL $name: exit status parallel $e, seppo $a"; cat actual.err
    failures=$((failures + 1))
  fi
}

L() { "$seppo" map --local "$@"; }            # --local commands: this process runs them
B() { "$seppo" --broker "$endpoint" map "$@"; }  # through a broker and a worker

# A broker and a worker serving the named commands the broker idioms use.
endpoint="ipc://$work/broker"
"$broker_bin" --bind "$endpoint" --log-level error &
pids+=($!)
cat >flaky.sh <<'SH'
# Fails twice for each input, then succeeds: attempts counted in a state file per input.
f="$STATE/$1"; n=$(cat "$f" 2>/dev/null || echo 0); n=$((n + 1)); echo "$n" >"$f"
[ "$n" -ge 3 ] && echo "ok $1 after $n" || exit 1
SH
cat >halt.sh <<'SH'
# "fail" fails at once (status 3: parallel exits with it); anything else would run for a
# minute unless killed.
if [ "$1" = fail ]; then echo failing; exit 3; fi
sleep 60; echo "not killed $1"
SH
cat >sleepy.sh <<'SH'
# Sleeps for $1 seconds, then says so: killed by a --timeout, it prints nothing.
sleep "$1"; echo "slept $1"
SH
cat >soon.sh <<'SH'
# "fail" fails at once, "slow" takes a second, anything else is quick.
case $1 in fail) exit 3 ;; slow) sleep 1; echo slow ;; *) echo "$1" ;; esac
SH
export STATE=$work/state-broker
mkdir -p state-broker state-parallel state-local
"$worker_bin" --broker "$endpoint" -j 2 --log-level error --client-folders \
  --command e='echo {}' --command swap='echo {2} {1}' --command nothing='true {}' \
  --command num='echo {#} {}' --command x='exit {}' --command gz='gzip {}' \
  --command slot='echo {%} {}' --command wc='wc -c' \
  --command flaky="sh $work/flaky.sh {}" --command halt="sh $work/halt.sh {}" \
  --command sleepy="sh $work/sleepy.sh {}" --command soon="sh $work/soon.sh {}" \
  --command seqonly='echo {#}' --command err='echo out {}; echo err {} >&2' \
  --command e3='echo {1}-{2}-{3}' --command e12='echo {1}-{2}' \
  --command blk='echo "#{#}"; cat' --allow-stdin --command wcp='wc' --command hw='head -n1; wc -l' \
  --command pic='echo pic{}.jpg' --command xyz='echo x{}y{}z {#}' --allow-context-replace \
  --command ev='echo "$FOO" {}' --allow-env FOO &
pids+=($!)
for _ in $(seq 1 100); do
  "$seppo" --broker "$endpoint" status --json 2>/dev/null | grep -q '"sleepy"' && break
  sleep 0.1
done

# 1. ::: values
both ":::" "par echo ::: a 'b c' 007 1.50" "L --command e='echo {}' e ::: a 'b c' 007 1.50"
both "::: through a broker (raw text: 007 stays 007)" "par echo ::: a 'b c' 007 1.50" \
  "B e ::: a 'b c' 007 1.50"
# 2. every combination of several sources, last one fastest
both "::: ::: combinations" "par echo ::: a b ::: 1 2 3" "L --command e=echo e ::: a b ::: 1 2 3"
both "::: ::: combinations through a broker" "par echo ::: a b ::: 1 2 3" "B e ::: a b ::: 1 2 3"
# 3. --link, the shorter source wrapping
both "--link" "par --link echo ::: a b c ::: 1 2" "L --link --command e=echo e ::: a b c ::: 1 2"
both "--link through a broker" "par --link echo ::: a b c ::: 1 2" "B --link e ::: a b c ::: 1 2"
# 4. {#} job number (and {%} slot with one slot)
both "{#} {%}" "par -j1 echo {#} {%} {} ::: x y z" "L -j1 --command e='echo {#} {%} {}' e ::: x y z"
both "{#} through a broker" "par echo {#} {} ::: x y z" "B num ::: x y z"
both "{#} through a broker, lines on stdin" "printf 'x\ny\n' | par echo {#} {}" \
  "printf 'x\ny\n' | B num"
# {%} through a broker: the worker process's slot, 1 or 2 for `-j 2`
B slot ::: a b c d e f | cut -d' ' -f1 | sort -u | tr '\n' ' ' >actual
checks=$((checks + 1))
if [[ $(cat actual) == "1 " || $(cat actual) == "1 2 " || $(cat actual) == "2 " ]]; then
  echo "ok   {%} through a broker is a worker slot: $(cat actual)"
else
  echo "FAIL {%} through a broker: slots $(cat actual)"; failures=$((failures + 1))
fi
# 5. --tag
both "--tag" "par --tag echo ::: a b ::: 1 2" "L --tag --command e=echo e ::: a b ::: 1 2"
both "--tag through a broker" "par --tag echo ::: a b ::: 1 2" "B --tag e ::: a b ::: 1 2"
# 6. :::: files and -a repeated
printf 'a\nb\n' >f1; printf '1\n2\n' >f2
both ":::: files" "par echo :::: f1 f2" "L --command e=echo e :::: f1 f2"
both ":::: files through a broker" "par echo :::: f1 f2" "B e :::: f1 f2"
both "-a repeated" "par -a f1 -a f2 echo" "L -a f1 -a f2 --command e=echo e"
both "-a repeated through a broker" "par -a f1 -a f2 echo" "B -a f1 -a f2 e"
# 7. -0: NUL-separated input, newlines inside an input
printf 'a b\0c\nd\0' >nul
both "-0" "par -0 echo <nul" "L -0 --command e=echo e <nul"
both "-0 through a broker" "par -0 echo <nul" "B -0 e <nul"
# 8. --colsep into {1} {2}
both "--colsep" "par --colsep , echo {2} {1} ::: a,b c,d" \
  "L --colsep , --command e='echo {2} {1}' e ::: a,b c,d"
both "--colsep through a broker" "par --colsep , echo {2} {1} ::: a,b c,d" \
  "B --colsep , swap ::: a,b c,d"
# 9. --joblog: parallel's header, and its deterministic columns (Seq, Send, Receive, Exitval,
# Signal, Command; Host is ':' here and the worker's host through a broker)
both "--joblog run" "par --joblog jl.par echo ::: a 'b c'; par --joblog jl.par exit ::: 0 3" \
  "L --joblog jl.seppo --command e=echo e ::: a 'b c'; L --joblog jl.seppo --command x=exit x ::: 0 3"
both "--joblog run through a broker" "par --joblog jl.par echo ::: a 'b c'; par --joblog jl.par exit ::: 0 3" \
  "B --joblog jl.broker e ::: a 'b c'; B --joblog jl.broker x ::: 0 3"
# Lines are in completion order: sorted by Seq under the header.
joblog_columns() { cut -f"$2" "$1" | { IFS= read -r header; echo "$header"; sort -n; }; }
joblog_columns jl.par 1,2,5-9 >expected; joblog_columns jl.seppo 1,2,5-9 >actual
same "--joblog columns" expected actual
joblog_columns jl.par 1,5-9 >expected; joblog_columns jl.broker 1,5-9 >actual
same "--joblog columns through a broker" expected actual
# 10. --results tree: the same files with the same contents
tree_of() { (cd "$1" && find . -type f | sort | while read -r f; do echo "$f"; cat "$f"; echo; done); }
par --results res.par echo ::: a 'b/c' ::: 1 2 >/dev/null
L --results res.seppo --command e=echo e ::: a 'b/c' ::: 1 2 >/dev/null
B --results res.broker e ::: a 'b/c' ::: 1 2 >/dev/null
tree_of res.par >expected; tree_of res.seppo >actual
same "--results tree" expected actual
tree_of res.broker >actual
same "--results tree through a broker" expected actual
# 11. --retries: a command failing twice, then succeeding
both "--retries 2" "STATE=$work/state-parallel par --retries 3 sh flaky.sh ::: p q" \
  "STATE=$work/state-local L --retries 2 --command f='sh flaky.sh' f ::: p q"
both "--retries 2 through a broker" "STATE=$work/state-parallel par --retries 3 sh flaky.sh ::: p q" \
  "B --retries 2 flaky ::: p q"
# 12. --timeout kills a `sleep 60` (its process group), the others run on
both "--timeout" "par --timeout 1 'echo {}; sleep {}' ::: 0 60 0" \
  "L --timeout 1 --command t='echo {}; sleep {}' t ::: 0 60 0"
# gone PATTERN: no process's command line matches PATTERN within 5 s.
gone() {
  for _ in $(seq 1 50); do
    pgrep -f "$1" >/dev/null || return 0
    sleep 0.1
  done
  return 1
}
# ... and through a broker: the broker cancels the item at the worker, which kills the command
# (parallel's joblog says Exitval -1, Signal 15; seppo's Signal is 9, its kill is SIGKILL)
both "--timeout 2 through a broker" "par --timeout 2 --joblog jl.t.par sh sleepy.sh ::: 0 60 0" \
  "B --timeout 2 --joblog jl.t.broker sleepy ::: 0 60 0"
joblog_columns jl.t.par 1,5-7 >expected; joblog_columns jl.t.broker 1,5-7 >actual
same "--timeout 2 through a broker: joblog columns" expected actual
checks=$((checks + 1))
if [[ $(awk -F'\t' '$1 == 2 { print $7 " " $8 }' jl.t.broker) == "-1 9" ]] &&
  gone "$work/sleepy.sh 60"; then
  echo "ok   --timeout 2 through a broker: Exitval -1, Signal 9, the sleep is gone"
else
  echo "FAIL --timeout through a broker: joblog or process"; cat jl.t.broker
  pgrep -af "$work/sleepy.sh 60"; failures=$((failures + 1))
fi
# 13. --halt now,fail=1 kills what runs (the sleep 60 would print "not killed")
both "--halt now,fail=1" "par -j2 --halt now,fail=1 sh halt.sh ::: fail slow" \
  "L -j2 --halt now,fail=1 --command h='sh halt.sh' h ::: fail slow"
both "--halt now,fail=1 through a broker" "par -j2 --halt now,fail=1 sh halt.sh ::: fail slow" \
  "B --halt now,fail=1 halt ::: fail slow"
checks=$((checks + 1))
if gone "$work/halt.sh slow"; then
  echo "ok   --halt now,fail=1 through a broker: the running command was killed"
else
  echo "FAIL --halt now through a broker: still running:"; pgrep -af "$work/halt.sh slow"
  failures=$((failures + 1))
fi
# --halt soon,fail=1: "slow", running, finishes; x and y never start. Through a broker only as
# many items are in flight as there are worker processes (two, as parallel's -j2). "slow" comes
# first: parallel starts jobs one by one, and "fail" could end before "slow" started.
both "--halt soon,fail=1 through a broker" "par -j2 --halt soon,fail=1 sh soon.sh ::: slow fail x y" \
  "B --halt soon,fail=1 soon ::: slow fail x y"
# 14. --halt with a percentage: one job at a time, 2 of 4 failed is 50%
both "--halt soon,fail=50%" "par -j1 --halt soon,fail=50% exit ::: 1 0 1 0" \
  "L -j1 --halt soon,fail=50% --command x=exit x ::: 1 0 1 0"
# 15. relative paths from another folder: commands run in the caller's folder
mkdir -p data/sub other; printf 'x\n' >data/one.txt; printf 'yy\n' >data/sub/two.txt
both "relative paths" "(cd data && find . -name '*.txt' | sort | par wc -c)" \
  "(cd data && find . -name '*.txt' | sort | L --command wc='wc -c' wc)"
both "relative paths through a broker (worker --client-folders)" \
  "(cd data && find . -name '*.txt' | sort | par wc -c)" "(cd data && find . -name '*.txt' | sort | B wc)"
both "relative paths through a broker, with :::" "(cd data && par wc -c ::: one.txt sub/two.txt)" \
  "(cd data && B wc ::: one.txt sub/two.txt)"
# 16. a command with no output prints no blank line
both "no output, no blank line" "par true ::: a b" "L --command t=true t ::: a b"
both "no output through a broker" "par true ::: a b" "B nothing ::: a b"
# 17. --dry-run prints the command lines; through a broker the worker expands its template
both "--dry-run" "par --dry-run gzip {} ::: a 'b c'" "L --dry-run --command gz='gzip {}' gz ::: a 'b c'"
both "--dry-run through a broker" "par --dry-run gzip {} ::: a 'b c'" "B --dry-run gz ::: a 'b c'"
# Issue 23: never silently different.
# 18. :::+ and ::::+ link a source to the one before; the others still combine
both ":::+" "par echo ::: a b c :::+ 1 2 ::: x y" "L --command e=echo e ::: a b c :::+ 1 2 ::: x y"
both ":::+ through a broker" "par echo ::: a b c :::+ 1 2 ::: x y" "B e ::: a b c :::+ 1 2 ::: x y"
both "::::+" "par echo :::: f1 ::::+ f2 ::: z" "L --command e=echo e :::: f1 ::::+ f2 ::: z"
both "::::+ through a broker" "par echo :::: f1 ::::+ f2 ::: z" "B e :::: f1 ::::+ f2 ::: z"
# 19. {#} or {%} alone: nothing appended
both "{#} alone" "par echo {#} ::: a b" "L --command n='echo {#}' n ::: a b"
both "{#} alone through a broker" "par echo {#} ::: a b" "B seqonly ::: a b"
both "{%} alone" "par -j1 echo {%} ::: a b" "L -j1 --command s='echo {%}' s ::: a b"
# 20. a named command's stderr with lines on stdin, through a broker too
BOTH_STDERR=1 both "stdout and stderr, lines on stdin" "echo a | par 'echo out {}; echo err {} >&2'" \
  "echo a | L --command err='echo out {}; echo err {} >&2' err"
BOTH_STDERR=1 both "stdout and stderr, lines on stdin, through a broker" \
  "echo a | par 'echo out {}; echo err {} >&2'" "echo a | B err"
# 21. --results DIR prints nothing; --results FILE.csv / .tsv is parallel's table
both "--results DIR prints nothing" "par --results rq.par 'echo out {}; echo err {} >&2' ::: a b" \
  "L --results rq.seppo --command err='echo out {}; echo err {} >&2' err ::: a b"
both "--results DIR prints nothing through a broker" \
  "par --results rq.par 'echo out {}; echo err {} >&2' ::: a b" "B --results rq.broker err ::: a b"
tree_of rq.par >expected; tree_of rq.seppo >actual
same "--results DIR with stderr: tree" expected actual
# Host, Starttime and JobRuntime (columns 2-4) vary; rows sorted by Seq under the header.
table_of() {
  python3 -c '
import csv, sys
rows = list(csv.reader(open(sys.argv[1], newline=""), delimiter=sys.argv[2]))
print(rows[0])
for r in sorted(rows[1:], key=lambda r: int(r[0])): print([r[0]] + r[4:])' "$1" "$2"
}
for kind in csv tsv; do
  sep=,; [[ $kind == tsv ]] && sep=$'\t'
  both "--results x.$kind" "par --results r.par.$kind echo ::: a 'b,\"c' ::: 1 'x y'" \
    "L --results r.seppo.$kind --command e=echo e ::: a 'b,\"c' ::: 1 'x y'"
  both "--results x.$kind through a broker" "par --results r.par.$kind echo ::: a 'b,\"c' ::: 1 'x y'" \
    "B --results r.broker.$kind e ::: a 'b,\"c' ::: 1 'x y'"
  table_of "r.par.$kind" "$sep" >expected; table_of "r.seppo.$kind" "$sep" >actual
  same "--results x.$kind: the table" expected actual
  table_of "r.broker.$kind" "$sep" >actual
  same "--results x.$kind through a broker: the table" expected actual
  # Quoted as parallel quotes: the header and a row's fixed columns byte for byte.
  head -1 "r.par.$kind" >expected; head -1 "r.seppo.$kind" >actual
  same "--results x.$kind: the header line" expected actual
done
# 22. --colsep as a Perl-like regular expression
printf 'a\tb\nc\td\n' >tabs
both "--colsep '\\t'" "par --colsep '\t' echo {2} {1} :::: tabs" \
  "L --colsep '\t' --command e='echo {2} {1}' e :::: tabs"
both "--colsep '\\t' through a broker" "par --colsep '\t' echo {2} {1} :::: tabs" \
  "B --colsep '\t' swap :::: tabs"
both "--colsep with empty columns" "par --colsep , echo {1}-{2}-{3} ::: a,b, ,x a,,b" \
  "L --colsep , --command e='echo {1}-{2}-{3}' e ::: a,b, ,x a,,b"
both "--colsep with empty columns through a broker" \
  "par --colsep , echo {1}-{2}-{3} ::: a,b, ,x a,,b" "B --colsep , e3 ::: a,b, ,x a,,b"
# 23. -j forms
for j in 50% +0 -1 0 1; do
  both "-j $j" "par -j $j echo ::: a b c" "L -j $j --command e=echo e ::: a b c"
  both "-j $j through a broker" "par -j $j echo ::: a b c" "B -j $j e ::: a b c"
done
# 24. -N / -n: several inputs per command
both "-N2" "par -N2 echo {1}-{2} ::: a b c" "L -N2 --command e='echo {1}-{2}' e ::: a b c"
both "-N2 through a broker" "par -N2 echo {1}-{2} ::: a b c" "B -N2 e12 ::: a b c"
both "-n2" "par -n2 echo ::: a b c" "L -n2 --command e=echo e ::: a b c"
both "-n2 through a broker" "par -n2 echo ::: a b c" "B -n2 e ::: a b c"
both "-N2 lines on stdin" "printf '1\n2\n3\n' | par -N2 echo" "printf '1\n2\n3\n' | L -N2 --command e=echo e"
# 25. parallel's spellings: --will-cite, -P, -C, --jl, --res, --xapply, --tmpdir, --eta
both "--will-cite -P1 -C" "par --will-cite -P1 -C , echo {2} ::: a,b" \
  "L --will-cite -P1 -C , --command e='echo {2}' e ::: a,b"
both "--xapply --tmpdir" "par --xapply --tmpdir /tmp echo ::: a b ::: 1 2" \
  "L --xapply --tmpdir /tmp --command e=echo e ::: a b ::: 1 2"
both "--eta" "par --eta echo ::: a b" "L --eta --command e=echo e ::: a b"
# 26. --tagstring
both "--tagstring" "par --tagstring '{}-{#}-{1.}' echo ::: a.x b" \
  "L --tagstring '{}-{#}-{1.}' --command e=echo e ::: a.x b"
both "--tagstring through a broker" "par --tagstring '{}-{#}-{1.}' echo ::: a.x b" \
  "B --tagstring '{}-{#}-{1.}' e ::: a.x b"
# 27. -I, --delay, --nice with --local
both "-I" "par -I ,, echo ,,-x ::: a b" "L -I ,, --command e='echo ,,-x' e ::: a b"
both "--delay --nice" "par --delay 0.1 --nice 5 echo ::: a b" "L --delay 0.1 --nice 5 --command e=echo e ::: a b"
both "--delay 100ms" "par --delay 0.1 echo ::: a b" "L --delay 100ms --command e=echo e ::: a b"
# 28. --resume and --resume-failed with --joblog: what the log lists is not run again
both "--resume" "par --joblog jr.par echo ::: a b; par --resume --joblog jr.par echo ::: a b c d" \
  "L --joblog jr.seppo --command e=echo e ::: a b; L --resume --joblog jr.seppo --command e=echo e ::: a b c d"
both "--resume through a broker" "par --joblog jr.par2 echo ::: a b; par --resume --joblog jr.par2 echo ::: a b c d" \
  "B --joblog jr.broker e ::: a b; B --resume --joblog jr.broker e ::: a b c d"
both "--resume-failed" "par --joblog jf.par exit ::: 0 1 0; par --resume-failed --joblog jf.par echo ::: 0 1 0 5" \
  "L --joblog jf.seppo --command x=exit x ::: 0 1 0; L --resume-failed --joblog jf.seppo --command e=echo e ::: 0 1 0 5"
both "--resume-failed through a broker" \
  "par --joblog jf.par2 exit ::: 0 1 0; par --resume-failed --joblog jf.par2 echo ::: 0 1 0 5" \
  "B --joblog jf.broker x ::: 0 1 0; B --resume-failed --joblog jf.broker e ::: 0 1 0 5"
joblog_columns jf.par 1,5-7 >expected; joblog_columns jf.seppo 1,5-7 >actual
same "--resume-failed: the job log appended" expected actual
# 29. --header : names columns
printf 'a,b\n1,2\n3,4\n' >hc
both "--header : --colsep" "par --header : --colsep , echo {b}-{a}-{#}-{b.} :::: hc" \
  "L --header : --colsep , --command e='echo {b}-{a}-{#}-{b.}' e :::: hc"
both "--header : with sources" "par --header : echo {x}-{y} ::: x 1 2 ::: y 3" \
  "L --header : --command e='echo {x}-{y}' e ::: x 1 2 ::: y 3"
# 30. --shuf: the same jobs in a random order, numbered in that order
both "--shuf: {#} in output order" "par --shuf echo {#} ::: a b c d" \
  "L --shuf --command e='echo {#}' e ::: a b c d"
both "--shuf through a broker: {#} in output order" "par --shuf echo {#} ::: a b c d" \
  "B --shuf seqonly ::: a b c d"
both "--shuf: the same jobs" "par --shuf echo ::: a b c d ::: 1 2 | sort" \
  "L --shuf --command e=echo e ::: a b c d ::: 1 2 | sort"
both "--shuf through a broker: the same jobs" "par --shuf echo ::: a b c d ::: 1 2 | sort" \
  "B --shuf e ::: a b c d ::: 1 2 | sort"
# 31. --pipe: stdin in blocks, each one command's stdin ({#} the block's number, {} empty)
seq 1 30 >lines
printf '>a\nACGT\n>b\nGG\nTT\n>c\nA\n' >fasta
printf 'a;b;c;d;e' >semi
seq 1 1000 >lines1000  # a pipe, never a file: wc pads its counts, head cannot seek back
# IDIOM (options, then the command's name) : INPUT FILE
for pair in "--block 20 wc:lines" "-N7 wc:lines" "--block 8 --recstart '>' blk:fasta" \
  "-N1 --recstart '>' blk:fasta" "--recend ';' -N2 blk:semi" "--block 3 --recend '\\n' blk:lines" \
  "--block 10 blk:fasta" "--dry-run e:semi" "e:semi" "--block 2k wcp:lines1000" \
  "--block 2k hw:lines1000"; do
  idiom=${pair%:*} input=${pair##*:}
  cmd=${idiom##* } opts=
  [[ $idiom == *" "* ]] && opts=${idiom% *}
  case $cmd in wc) t='wc -c' ;; wcp) t='wc' ;; hw) t='head -n1; wc -l' ;; blk) t='echo "#{#}"; cat' ;; e) t='echo {}' ;; esac
  both "--pipe $idiom <$input" "par --pipe $opts '$t' <$input" \
    "L --pipe $opts --command $cmd='$t' $cmd <$input"
  both "--pipe $idiom <$input through a broker" "par --pipe $opts '$t' <$input" \
    "B --pipe $opts $cmd <$input"
done
both "--pipe, no input: no job" "par --pipe wc -c </dev/null" "L --pipe --command wc='wc -c' wc </dev/null"
both "--pipe --joblog" "par --pipe -N10 --joblog jp.par wc -c <lines" \
  "L --pipe -N10 --joblog jp.seppo --command wc='wc -c' wc <lines"
both "--pipe --joblog through a broker" "par --pipe -N10 --joblog jp.par wc -c <lines" \
  "B --pipe -N10 --joblog jp.broker wc <lines"
joblog_columns jp.par 1,5-9 >expected; joblog_columns jp.seppo 1,5-9 >actual
same "--pipe --joblog: the log" expected actual
joblog_columns jp.broker 1,5-9 >actual
same "--pipe --joblog through a broker: the log" expected actual
# 32. -X and -m: as many arguments as fit, the last ones spread over the -j job slots; -X
# repeats each word holding {} once per argument
for f in X m; do
  for j in 1 3; do
    both "-$f -j$j" "par -j$j -$f echo pic{}.jpg ::: 1 2 3 4 5 6 7" \
      "L -j$j -$f --command pic='echo pic{}.jpg' pic ::: 1 2 3 4 5 6 7"
    both "-$f -j$j through a broker" "par -j$j -$f echo pic{}.jpg ::: 1 2 3 4 5 6 7" \
      "B -j$j -$f pic ::: 1 2 3 4 5 6 7"
  done
  both "-$f, lines on stdin, -j as the cores" "seq 1 5 | par -$f echo" "seq 1 5 | L -$f --command e=echo e"
  both "-$f, lines on stdin, through a broker" "seq 1 5 | par -$f echo" "seq 1 5 | B -$f e"
  both "-$f --dry-run" "par -j2 -$f --dry-run 'echo x{}y{}z {#}' ::: 1 'a b' 3" \
    "L -j2 -$f --dry-run --command xyz='echo x{}y{}z {#}' xyz ::: 1 'a b' 3"
  both "-$f --dry-run through a broker" "par -j2 -$f --dry-run 'echo x{}y{}z {#}' ::: 1 'a b' 3" \
    "B -j2 -$f --dry-run xyz ::: 1 'a b' 3"
done
# 33. --env NAME with --local: the commands have the variable (they run in this environment)
both "--env" "FOO='x y' par --env FOO 'echo \"\$FOO\" {}' ::: a" \
  "FOO='x y' L --env FOO --command e='echo \"\$FOO\" {}' e ::: a"
# ...and through a broker: each item carries FOO to a worker that allows it (--allow-env FOO)
both "--env through a broker" "FOO='x y' par --env FOO 'echo \"\$FOO\" {}' ::: a b" \
  "FOO='x y' B --env FOO ev ::: a b"
# 34. --pipe --block 1G in bounded memory: tests/pipe_block_memory.sh (uninstrumented builds).
echo "$checks checks, $failures failed"
[[ $failures -eq 0 ]]
