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
# <seppo/seppo.hpp> brings only the msgpack-cxx adaptors a user's types need (seppo/msgpack.hpp):
# 137,406 preprocessed lines with all of <msgpack.hpp> (g++ 12, -DMSGPACK_NO_BOOST), 126,482
# without the ones named here. <seppo/msgpack_all.hpp> has them.
pp=$(printf '#include <seppo/seppo.hpp>\n' |
  "$cxx" -std=c++20 -E -I"$src/include" -I"$build/include" -x c++ - 2>/dev/null)
heavy=$(printf '%s\n' "$pp" |
  grep -oE '^# [0-9]+ "[^"]*/(c\+\+/[0-9]+/(complex)|msgpack(/adaptor/boost/[^"]*|\.hpp|/vrefbuffer\.hpp))"' |
  sed 's/^# [0-9]* //' | grep -v '/seppo/msgpack\.hpp"$' | sort -u)
if [[ -n "$heavy" ]]; then
  echo "FAIL: <seppo/seppo.hpp> includes what it leaves to <seppo/msgpack_all.hpp>:"
  echo "$heavy"
  status=1
fi
[[ $status -eq 0 ]] && echo "ok: no include cycle, every public header compiles on its own," \
  "<seppo/seppo.hpp> is $(printf '%s\n' "$pp" | wc -l) preprocessed lines"
exit $status
