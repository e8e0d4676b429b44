#!/usr/bin/env bash
# The systemd units as meson configured them: `systemd-analyze verify` is clean and
# `systemd-analyze security --offline=true` rates the broker at most 4.0 and the worker at most
# 5.0; both are Type=notify and name the settings file meson installs. Skips (77) without
# systemd-analyze. Usage: systemd_units.sh BUILD_DIR
set -uo pipefail
build=$1
if ! command -v systemd-analyze >/dev/null; then
  echo "SKIP: systemd-analyze is not installed (apt-get install systemd)"; exit 77
fi
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
fail() { echo "FAIL: $*"; exit 1; }
# The units name the installed programs; verify wants them to exist, so point at the build's.
sed -e "s|^ExecStart=[^ ]*/seppo-broker|ExecStart=$build/broker/seppo-broker|" \
  "$build/broker/seppo-broker.service" >"$dir/seppo-broker.service"
sed -e "s|^ExecStart=[^ ]*/seppo-worker|ExecStart=$build/worker/seppo-worker|" \
  "$build/worker/seppo-worker@.service" >"$dir/seppo-worker@.service"
cp "$dir/seppo-worker@.service" "$dir/seppo-worker@test.service"

settings=$(grep -m1 -oE 'EnvironmentFile=-[^ ]+' "$build/broker/seppo-broker.service" | cut -d- -f2-)
prefix=$(meson introspect "$build" --buildoptions | jq -r '.[] | select(.name=="prefix") | .value')
sysconfdir=$(meson introspect "$build" --buildoptions | jq -r '.[] | select(.name=="sysconfdir") | .value')
[[ "$sysconfdir" == /* ]] || sysconfdir="$prefix/$sysconfdir"
[[ "$settings" == "$sysconfdir/default/seppo" ]] ||
  fail "the unit reads $settings but meson installs the settings to $sysconfdir/default/seppo"

for unit in seppo-broker.service seppo-worker@test.service; do
  grep -q '^Type=notify' "$dir/$unit" || fail "$unit is not Type=notify"
  out=$(systemd-analyze verify --man=no "$dir/$unit" 2>&1) || fail "systemd-analyze verify $unit: $out"
  [[ -z "$out" ]] || fail "systemd-analyze verify $unit is not clean: $out"
done

score() {  # prints the overall exposure of a unit file
  systemd-analyze security --offline=true "$1" 2>/dev/null |
    sed -n 's/.*Overall exposure level for .*: \([0-9.]*\).*/\1/p'
}
broker=$(score "$dir/seppo-broker.service")
worker=$(score "$dir/seppo-worker@test.service")
[[ -n "$broker" && -n "$worker" ]] || { echo "SKIP: systemd-analyze security --offline cannot run here"; exit 77; }
echo "systemd-analyze security: broker $broker, worker $worker"
awk -v b="$broker" -v w="$worker" 'BEGIN { exit !(b <= 4.0 && w <= 5.0) }' ||
  fail "exposure too high: broker $broker (at most 4.0), worker $worker (at most 5.0)"
# The programs behind Type=notify: READY=1 when serving, STOPPING=1 on SIGTERM.
here=$(dirname "$0")
"$here/sd_notify_check.py" "$build/broker/seppo-broker" --bind "ipc://$dir/broker" || exit 1
# The unit's way: no --bind; SEPPO_BROKER_BIND wins over SEPPO_BROKER (here a wildcard the
# broker would refuse without keys, as workers' connect endpoint it would be a hostname).
out=$(SEPPO_BROKER_BIND="ipc://$dir/bind" SEPPO_BROKER='tcp://*:5555' \
      "$here/sd_notify_check.py" "$build/broker/seppo-broker") || exit 1
echo "$out"
[[ "$out" == *"listening on ipc://$dir/bind"* ]] || fail "the broker did not listen on \$SEPPO_BROKER_BIND"
"$build/broker/seppo-broker" --bind "ipc://$dir/broker" 2>/dev/null &
broker_pid=$!
"$here/sd_notify_check.py" "$build/worker/seppo-worker" -j 1 --broker "ipc://$dir/broker" \
  --module "$build/examples/libexample_module.so" || { kill "$broker_pid"; exit 1; }
kill "$broker_pid"; wait "$broker_pid"
echo "units verified"
