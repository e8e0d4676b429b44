#!/usr/bin/env bash
# Every long option a program's --help prints is documented in its man page (the scdoc source),
# and so is every subcommand of seppo and each subcommand's options. When scdoc was found at
# configure time, the generated pages must exist too.
# Usage: man_options.sh MAN_SOURCE_DIR MAN_BUILD_DIR SEPPO SEPPO_BROKER SEPPO_WORKER SSH_WORKERS
set -uo pipefail
src=$1 built=$2 seppo=$3 broker=$4 worker=$5 ssh_workers=$6
failed=0

# Long options from the option lines of a --help text (not from the prose of its footer).
options_of() { grep -E '^[[:space:]]+-' | grep -oE -- '--[a-z][a-z0-9-]+' | sort -u; }

check() {  # check PAGE DESCRIPTION < options
  local page=$1 what=$2 option
  [[ -r "$src/$page.scd" ]] || { echo "FAIL: $src/$page.scd is missing"; failed=1; return; }
  while read -r option; do
    if ! grep -qE -- "(^|[^a-z-])$option([^a-z-]|\$)" "$src/$page.scd"; then
      echo "FAIL: $what prints $option in --help, but $page.scd does not mention it"; failed=1
    fi
  done
  if [[ -d "$built" && -n "$(ls "$built"/*.[178] 2>/dev/null)" && ! -s "$built/$page" ]]; then
    echo "FAIL: $built/$page was not generated"; failed=1
  fi
}

check seppo.1 seppo < <("$seppo" --help | options_of)
for sub in map status ping keygen; do
  grep -qE -- "^## $sub\$" "$src/seppo.1.scd" || { echo "FAIL: seppo.1.scd has no '## $sub'"; failed=1; }
  check seppo.1 "seppo $sub" < <("$seppo" "$sub" --help | options_of)
done
check seppo-broker.8 seppo-broker < <("$broker" --help | options_of)
check seppo-worker.8 seppo-worker < <("$worker" --help | options_of)
check seppo-ssh-workers.1 seppo-ssh-workers < <("$ssh_workers" --help | options_of)
[[ -r "$src/seppo-module.7.scd" ]] || { echo "FAIL: seppo-module.7.scd is missing"; failed=1; }

# issue 24: the exit statuses seppo(1) states are the ones status, keygen and bad usage have.
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
expect() {  # expect STATUS DESCRIPTION COMMAND...
  local want=$1 what=$2; shift 2
  "$@" >/dev/null 2>&1
  local got=$?
  [[ $got -eq $want ]] || { echo "FAIL: $what exits $got, seppo.1 says $want"; failed=1; }
}
mkdir -m 0700 "$tmp/run"
expect 255 "seppo status without a broker" env SEPPO_RUNTIME_DIR="$tmp/run" "$seppo" \
  --broker-timeout 2 status
expect 255 "seppo status --no-such-option" "$seppo" status --no-such-option
expect 255 "seppo with no subcommand" "$seppo"
expect 0 "seppo keygen into missing folders" "$seppo" keygen "$tmp/keys/deeper/alice"
[[ $(stat -c %a "$tmp/keys") == 700 && $(stat -c %a "$tmp/keys/deeper") == 700 ]] ||
  { echo "FAIL: seppo keygen made its folders with modes $(stat -c %a "$tmp/keys" "$tmp/keys/deeper")"; failed=1; }
expect 255 "seppo keygen over an existing pair" "$seppo" keygen "$tmp/keys/deeper/alice"
for page in seppo.1 seppo-broker.8 seppo-worker.8; do
  grep -q SEPPO_RUNTIME_DIR "$src/$page.scd" || { echo "FAIL: $page.scd does not name SEPPO_RUNTIME_DIR"; failed=1; }
done
grep -q '^\*SIGHUP\*' "$src/seppo-worker.8.scd" || { echo "FAIL: seppo-worker.8.scd has no SIGHUP"; failed=1; }

[[ $failed -eq 0 ]] && echo "every --help option is in its man page"
exit $failed
