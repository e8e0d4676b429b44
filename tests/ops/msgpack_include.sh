#!/usr/bin/env bash
# Every seppo source includes msgpack-cxx through include/seppo/msgpack.hpp, whose explicit
# specializations keep whole-number floats floats on the wire (docs/protocol.md §5). A file that
# included <msgpack.hpp> first would pack 2.0 as the integer 2, and could even give the linker
# two different definitions of packer<sbuffer>::pack_double to choose from.
# bench/zmq_baseline.cpp is exempt: the bare ZeroMQ + msgpack baseline, built without seppo.
# Usage: msgpack_include.sh SOURCE_ROOT
set -uo pipefail
cd "$1" || exit 2
found=$(grep -rnE '^[[:space:]]*#[[:space:]]*include[[:space:]]*[<"]msgpack(\.hpp|/)' \
  --include='*.cpp' --include='*.hpp' --include='*.h' --include='*.cc' \
  broker cli common examples fuzz include libclient localcluster protocol python sim tests worker bench \
  2>/dev/null | grep -v -e '^include/seppo/msgpack.hpp:' -e '^include/seppo/msgpack_all.hpp:' \
    -e '^bench/zmq_baseline.cpp:')
if [[ -n "$found" ]]; then
  echo "FAIL: include \"seppo/msgpack.hpp\" instead of msgpack-cxx's own headers:"
  echo "$found"
  exit 1
fi
echo "ok: msgpack-cxx is included only through include/seppo/msgpack.hpp"
