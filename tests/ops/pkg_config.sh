#!/usr/bin/env bash
# seppo.pc is enough to build against the installed headers: install into a temp dir
# (meson install --destdir), then compile and run a tiny client with only
# `pkg-config --cflags --libs seppo` (C++20 and msgpack's flag come from the .pc).
# Usage: pkg_config.sh BUILD_DIR CXX
set -uo pipefail
build=$1 cxx=${2:-c++}
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
fail() { echo "FAIL: $*"; exit 1; }
meson install -C "$build" --no-rebuild --destdir "$dir/root" >"$dir/install.log" 2>&1 ||
  fail "meson install: $(tail -n 5 "$dir/install.log")"
pc=$(find "$dir/root" -name seppo.pc | head -n 1)
[[ -n "$pc" ]] || fail "no seppo.pc installed"
cat "$pc"
grep -q '^Requires:.*libzmq' "$pc" && fail "libzmq is in Requires, but no public header includes zmq.hpp"
grep -q -- '-std=c++20' "$pc" || fail "Cflags does not state C++20"
grep -rq 'zmq.hpp' "$(dirname "$pc")/../../../include/seppo" 2>/dev/null &&
  fail "a public header includes zmq.hpp: then libzmq must be in Requires"
cat >"$dir/tiny.cpp" <<'CPP'
#include <seppo/seppo.hpp>
#include <cstdio>
int main() {
  std::printf("%s\n", seppo::version);
  return 0;
}
CPP
export PKG_CONFIG_PATH="$(dirname "$pc")" PKG_CONFIG_SYSROOT_DIR="$dir/root"
flags=$(pkg-config --cflags --libs seppo) || fail "pkg-config --cflags --libs seppo"
echo "flags: $flags"
# No -std here: the .pc must bring it.
"$cxx" -o "$dir/tiny" "$dir/tiny.cpp" $flags 2>"$dir/cxx.log" || fail "compile: $(head -n 20 "$dir/cxx.log")"
libdir=$(pkg-config --variable=libdir seppo)
LD_LIBRARY_PATH="$dir/root$libdir" "$dir/tiny" || fail "the tiny program does not run"
echo "compiled and ran a program against the installed seppo with pkg-config"
