#!/usr/bin/env bash
# `seppo map --pipe --block 1G` on a small input: memory follows the data, not the flag (the
# whole block was allocated before reading), checked in 400 MB of address space. Uninstrumented
# builds only: AddressSanitizer reserves terabytes of address space.
# Usage: pipe_block_memory.sh SEPPO
set -u
seppo=$1
if out=$(printf 'ab\ncd\n' | (ulimit -v 400000; "$seppo" map --local --pipe --block 1G \
    --command wc='wc -c' wc) 2>&1) && [[ $out == 6 ]]; then
  echo "ok   --pipe --block 1G in 400 MB of address space"
else
  echo "FAIL --pipe --block 1G in 400 MB of address space: $out"
  exit 1
fi
