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

[[ $failed -eq 0 ]] && echo "every --help option is in its man page"
exit $failed
