#!/bin/sh
# libseppo exports its public API and nothing else (issue 11): every defined dynamic symbol is
# in seppo:: (or its typeinfo/vtable), and none of the internal namespaces shows. No exported
# signature names a msgpack or ZeroMQ type, or the engine's own types (issue 27 §5): the ABI does
# not depend on msgpack-c's version namespace; nor does the engine take a raw descriptor. With
# SYMBOLS (debian/libseppo0.symbols), the exported names are exactly the ones listed there, so an
# ABI change is seen before packaging.
# Usage: LIBSEPPO [SYMBOLS].
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
  grep -E 'seppo::(wire|curve|log|broker|worker|local|client)::|seppo::[A-Za-z:]*Impl\b|ClientJob|JobCore' ||
  true)
foreign=$(printf '%s\n' "$symbols" | grep -Ei 'msgpack|zmq' || true)
# The engine is woken through a detail::Waker, not a raw descriptor (issue 27 §5).
# A plain int parameter (an unsigned int is a count, never a descriptor).
raw_fd=$(printf '%s\n' "$symbols" | grep -E 'Engine::[A-Za-z_]+\((.*[(,] ?)?int[,)]' || true)
if [ -n "$bad$internal" ]; then
  echo "FAIL: $lib exports symbols outside the public API:"
  printf '%s\n' "$bad" "$internal" | grep -v '^$'
  exit 1
fi
if [ -n "$foreign" ]; then
  echo "FAIL: $lib exports signatures naming msgpack or ZeroMQ types:"
  printf '%s\n' "$foreign"
  exit 1
fi
if [ -n "$raw_fd" ]; then
  echo "FAIL: $lib exports an engine call that takes a raw descriptor:"
  printf '%s\n' "$raw_fd"
  exit 1
fi
if [ $# -ge 2 ]; then
  listed=$(sed -n 's/^ (c++)"\(.*\)@Base" .*/\1/p' "$2" | sort -u)
  exported=$(printf '%s\n' "$symbols" | sort -u)
  if [ "$listed" != "$exported" ]; then
    echo "FAIL: the exported symbols differ from $2 (< listed only, > exported only):"
    printf '%s\n' "$listed" >"${TMPDIR:-/tmp}/seppo-listed.$$"
    printf '%s\n' "$exported" | diff "${TMPDIR:-/tmp}/seppo-listed.$$" - | grep '^[<>]' || true
    rm -f "${TMPDIR:-/tmp}/seppo-listed.$$"
    echo "(an intended change: update $2, and the package version for additions)"
    exit 1
  fi
fi
echo "ok: $(printf '%s\n' "$symbols" | wc -l) symbols, all seppo:: public API"
