#!/usr/bin/env bash
# Issue 24: seppo-broker --http's dashboard in a real browser (Debian's chromium, headless):
# a broker with two workers runs finished, running and timed-out items; the page's DOM after its
# scripts ran must show them, and a screenshot must be a picture, not a blank page. The
# screenshot is left at $SEPPO_DASHBOARD_PNG (default BUILD/dashboard.png): docs/dashboard.png
# is one of them.
# Usage: dashboard_browser.sh BROKER WORKER CLI EXAMPLE_MODULE BUILD_DIR
# Exit 77 (skipped) only when chromium is missing or cannot start.
set -euo pipefail
broker=$1 worker=$2 cli=$3 module=$4 build=$5
png_out=${SEPPO_DASHBOARD_PNG:-$build/dashboard.png}

chromium=$(command -v chromium || true)
if [[ -z $chromium ]]; then
  echo "SKIP: chromium is not installed (scripts/install-deps.sh installs it)"
  exit 77
fi
source "$(dirname "$0")/harness.sh"
browser() {
  timeout 90 "$chromium" --headless --no-sandbox --disable-gpu --no-first-run \
    --user-data-dir="$dir/profile" "$@"
}
# Polls `condition` every 0.1 s for at most $1 seconds.
wait_for() {
  local limit=$1; shift
  for ((i = 0; i < limit * 10; ++i)); do "$@" && return 0; sleep 0.1; done
  return 1
}

if ! browser --dump-dom about:blank >"$dir/blank.html" 2>"$dir/blank.err"; then
  echo "SKIP: chromium cannot start here: $(tail -n 3 "$dir/blank.err")"
  exit 77
fi

endpoint="ipc://$dir/broker"
"$broker" --bind "$endpoint" --http 127.0.0.1:0 --heartbeat-ms 200 >"$dir/broker.log" 2>&1 &
pids+=($!)
port_known() { grep -q 'serving HTTP on http://127.0.0.1:[0-9]*/' "$dir/broker.log"; }
wait_for 20 port_known || fail "the broker did not serve HTTP: $(cat "$dir/broker.log")"
url=$(grep -o 'http://127.0.0.1:[0-9]*/' "$dir/broker.log" | head -n 1)
for i in 1 2; do
  "$worker" --broker "$endpoint" --module "$module" -j 2 --heartbeat-ms 200 \
    >"$dir/worker-$i.log" 2>&1 &
  pids+=($!)
done
get() { python3 -c 'import sys, urllib.request; sys.stdout.write(urllib.request.urlopen(sys.argv[1], timeout=10).read().decode())' "$1"; }
workers_joined() { [[ $(get "${url}api/status" | grep -o '"pid":' | wc -l) -eq 4 ]]; }
wait_for 30 workers_joined || fail "the workers did not join: $(get "${url}api/status")"

# Finished tasks for the task stream, one item that overruns its time limit (a red bar), then
# a job still running while the browser looks.
seq 1 200 | "$cli" --broker "$endpoint" map --chunk-size 5 example_module.square >/dev/null
echo 5000 | "$cli" --broker "$endpoint" map --timeout 0.3 example_module.sleep_ms >/dev/null 2>&1 &&
  fail "the item over its time limit did not fail"
seq 1 12 | sed 's/.*/400/' | "$cli" --broker "$endpoint" map --chunk-size 1 example_module.sleep_ms >/dev/null
# Items that outlast the browser's visits (the job is stopped with the test).
seq 1 8 | sed 's/.*/120000/' >"$dir/items"
"$cli" --broker "$endpoint" map --chunk-size 1 example_module.sleep_ms <"$dir/items" >/dev/null 2>&1 &
pids+=($!)
running() { get "${url}api/status" | grep -q '"running":\[{'; }
wait_for 30 running || fail "the job did not start: $(get "${url}api/status")"

browser --virtual-time-budget=3000 --dump-dom "$url" >"$dir/dom.html" 2>"$dir/dom.err" ||
  fail "chromium --dump-dom failed: $(tail -n 5 "$dir/dom.err")"
expect() {
  grep -q -- "$1" "$dir/dom.html" || fail "the dashboard does not show $2 ($1); its DOM: $(cat "$dir/dom.html")"
}
expect 'version [0-9]' "the broker's version"
expect '<td>example_module.sleep_ms</td>' "the function table"
expect 'example_module.sleep_ms job [0-9a-f]*/[0-9]* item [0-9]* for ' "what a worker runs now"
expect 'class="progress"' "the jobs' progress bars"
expect "uid $(id -u)" "the job's owner"
expect '<rect class="task"' "the task stream's bars"
expect 'fill="#d9453b"' "the failed item in the task stream"
expect '/s</td>' "each job's rate"
[[ $(grep -o 'process [0-9]*' "$dir/dom.html" | sort -u | wc -l) -ge 4 ]] ||
  fail "the dashboard does not list the four worker processes"
grep -q '<div id="error"></div>' "$dir/dom.html" || fail "the page could not read /api/status: $(grep -o '<div id="error">[^<]*' "$dir/dom.html")"

browser --virtual-time-budget=3000 --window-size=1280,900 --hide-scrollbars \
  --screenshot="$dir/dashboard.png" "$url" >"$dir/shot.out" 2>&1 ||
  fail "chromium --screenshot failed: $(tail -n 5 "$dir/shot.out")"
# Not blank: a 1280x900 PNG whose pixels have many colours and whose non-background pixels
# cover a fair part of it.
python3 - "$dir/dashboard.png" <<'EOF' || fail "the screenshot looks blank"
import struct, sys, zlib
data = open(sys.argv[1], "rb").read()
assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
pos, idat, width = 8, b"", 0
while pos < len(data):
    length, kind = struct.unpack(">I4s", data[pos:pos + 8])
    body = data[pos + 8:pos + 8 + length]
    if kind == b"IHDR":
        width, height, depth, colour = struct.unpack(">IIBB", body[:10])
        assert depth == 8 and colour in (2, 6), "unexpected PNG format"
        channels = 3 if colour == 2 else 4
    elif kind == b"IDAT":
        idat += body
    pos += 12 + length
raw = zlib.decompress(idat)
stride = width * channels
previous = bytearray(stride)
colours, counts = set(), {}
for y in range(height):
    line = raw[y * (stride + 1):(y + 1) * (stride + 1)]
    kind, row = line[0], bytearray(line[1:])
    for i in range(stride):
        a = row[i - channels] if i >= channels else 0
        b = previous[i]
        c = previous[i - channels] if i >= channels else 0
        if kind == 1: row[i] = (row[i] + a) & 255
        elif kind == 2: row[i] = (row[i] + b) & 255
        elif kind == 3: row[i] = (row[i] + (a + b) // 2) & 255
        elif kind == 4:
            p = a + b - c
            pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
            row[i] = (row[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
    previous = row
    if y % 4 == 0:
        for x in range(0, width, 4):
            pixel = bytes(row[x * channels:x * channels + 3])
            colours.add(pixel)
            counts[pixel] = counts.get(pixel, 0) + 1
total = sum(counts.values())
background = max(counts.values()) / total
print(f"screenshot {width}x{height}: {len(colours)} colours sampled, background {background:.0%}")
assert (width, height) == (1280, 900), "unexpected size"
assert len(colours) >= 30, "too few colours"
assert background <= 0.85, "mostly one colour"
EOF
mkdir -p "$(dirname "$png_out")"
cp "$dir/dashboard.png" "$png_out"
echo "PASS: the dashboard shows workers, running items, jobs and the task stream; screenshot in $png_out"
