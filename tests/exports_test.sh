#!/bin/sh
# libseppo exports its public API and nothing else (issue 11): every defined dynamic symbol is
# in seppo:: (or its typeinfo/vtable), and none of the internal namespaces shows. Usage: LIBSEPPO.
set -eu
lib=$1
symbols=$(nm -DC --defined-only "$lib" | cut -d' ' -f3-)
if [ -z "$symbols" ]; then
  echo "FAIL: $lib exports nothing"
  exit 1
fi
bad=$(printf '%s\n' "$symbols" |
  grep -Ev '^((typeinfo|typeinfo name|vtable) for )?seppo::' || true)
internal=$(printf '%s\n' "$symbols" |
  grep -E 'seppo::(wire|curve|log|broker|worker|local)::|seppo::[A-Za-z:]*Impl\b|seppo::ClientJob' ||
  true)
if [ -n "$bad$internal" ]; then
  echo "FAIL: $lib exports symbols outside the public API:"
  printf '%s\n' "$bad" "$internal" | grep -v '^$'
  exit 1
fi
echo "ok: $(printf '%s\n' "$symbols" | wc -l) symbols, all seppo:: public API"
