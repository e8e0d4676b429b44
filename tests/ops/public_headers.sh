#!/usr/bin/env bash
# The installed headers (include/seppo) form no include cycle (issue 27 §5: client.hpp and
# job.hpp/stream.hpp included each other, so neither could be read or included on its own), and
# each compiles on its own, as a user's first #include.
# Usage: public_headers.sh SOURCE_ROOT BUILD_ROOT CXX
set -uo pipefail
src=$1 build=$2 cxx=$3
cd "$src/include/seppo" || exit 2
# One "includer included" pair per line; tsort fails on a cycle and names it.
edges=$(for h in *.hpp *.h; do
  sed -n 's|^[[:space:]]*#[[:space:]]*include[[:space:]]*"seppo/\([^"]*\)".*|\1|p' "$h" |
    while read -r included; do echo "$h $included"; done
  echo "$h $h"
done)
if ! cycle=$(printf '%s\n' "$edges" | tsort 2>&1 >/dev/null) || [[ -n "$cycle" ]]; then
  echo "FAIL: the public headers include each other:"
  echo "$cycle"
  exit 1
fi
status=0
for h in *.hpp *.h; do
  if ! printf '#include <seppo/%s>\n' "$h" |
    "$cxx" -std=c++20 -fsyntax-only -Wall -Wextra -Werror -I"$src/include" -I"$build/include" \
      -x c++ - 2>"${TMPDIR:-/tmp}/seppo-header.$$"; then
    echo "FAIL: <seppo/$h> does not compile on its own:"
    head -20 "${TMPDIR:-/tmp}/seppo-header.$$"
    status=1
  fi
done
rm -f "${TMPDIR:-/tmp}/seppo-header.$$"
[[ $status -eq 0 ]] && echo "ok: no include cycle, and every public header compiles on its own"
exit $status
