# Sourced by the tests/ops scripts that start processes: a scratch folder ($dir), the pids they
# start (append to pids), each stopped and reaped on exit, fail, and deadline_poll.
dir=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$dir"
}
trap cleanup EXIT
fail() { echo "FAIL (after ${SECONDS}s): $*"; exit 1; }
deadline_poll() {  # deadline_poll SECONDS COMMAND...: until COMMAND succeeds, or fail
  local end=$((SECONDS + $1)); shift
  until "$@"; do [[ $SECONDS -lt $end ]] || return 1; sleep 0.2; done
}
