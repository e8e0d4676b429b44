#!/usr/bin/env bash
# seppo.pc is enough to build against the installed headers: install into a temp dir
# (meson install --destdir), then compile and run a tiny client with only
# `pkg-config --cflags --libs seppo` and the program's own -std (msgpack's flag comes from the
# .pc; -std does not: a C++23 program must stay one, issue 27 §5).
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
grep -q -- '-std=' "$pc" && fail "Cflags forces a -std on the program"
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
cflags=$(pkg-config --cflags seppo)
for leak in pgm libxml2 krb5; do
  [[ "$cflags" == *"$leak"* ]] && fail "Cflags leaks libzmq's private include paths: $cflags"
done
"$cxx" -std=c++20 -o "$dir/tiny" "$dir/tiny.cpp" $flags 2>"$dir/cxx.log" ||
  fail "compile: $(head -n 20 "$dir/cxx.log")"
# A C++23 program stays C++23 (g++ 12 says 202100).
cat >"$dir/newer.cpp" <<'CPP'
#include <seppo/seppo.hpp>
static_assert(__cplusplus > 202002L, "the .pc changed the language version");
int main() { return 0; }
CPP
"$cxx" -std=c++23 -o "$dir/newer" "$dir/newer.cpp" $flags 2>"$dir/cxx23.log" ||
  fail "compile as C++23: $(head -n 20 "$dir/cxx23.log")"
# Below C++20: one line saying what to do, first.
if "$cxx" -std=c++17 -c -o "$dir/old.o" "$dir/tiny.cpp" $cflags 2>"$dir/cxx17.log"; then
  fail "compiled as C++17"
fi
grep -m1 'error' "$dir/cxx17.log" | grep -q 'need C++20' ||
  fail "C++17 does not say first that C++20 is needed: $(head -n 3 "$dir/cxx17.log")"
libdir=$(pkg-config --variable=libdir seppo)
LD_LIBRARY_PATH="$dir/root$libdir" "$dir/tiny" || fail "the tiny program does not run"
echo "compiled and ran a program against the installed seppo with pkg-config"
