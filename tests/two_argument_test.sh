#!/bin/sh
# A module function of two arguments fails to compile with one error that says what to do
# (issue 27 §5), not screens of function_traits substitution failures. Usage: CXX INCLUDE_DIR.
set -eu
cxx=$1 include=$2
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
cat >"$dir/two.cpp" <<'CPP'
#include <seppo/module.hpp>
#include <cstdint>
std::int64_t add(std::int64_t a, std::int64_t b) { return a + b; }
SEPPO_MODULE(SEPPO_FUNCTION(add))
CPP
if "$cxx" -std=c++20 -DMSGPACK_NO_BOOST -I"$include" -fsyntax-only "$dir/two.cpp" \
    >"$dir/log" 2>&1; then
  echo "FAIL: a two-argument function compiled"
  exit 1
fi
errors=$(grep -c 'error:' "$dir/log" || true)
if ! grep -q 'exactly one argument' "$dir/log" || [ "$errors" -ne 1 ]; then
  echo "FAIL: expected one error naming the fix, got $errors:"
  head -n 40 "$dir/log"
  exit 1
fi
echo "ok: one error: $(grep 'error:' "$dir/log" | sed 's/.*error: //')"
