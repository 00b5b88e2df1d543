#!/usr/bin/env bash
# A small replay end to end: `strata serve` with the scheduler-aware policy and
# a DRAM pool far smaller than the trace's working set, driven by
# `strata replay` (a generated multi-turn trace, scheduler hints on). Every
# load is verified by the client; the run must finish without errors, and
# the node must have prefetched hinted chunks that the jobs then read.
#
# usage: replay_test.sh STRATA_BINARY
set -euo pipefail

STRATA="$(cd "$(dirname "$1")" && pwd)/$(basename "$1")"
WORK="${TEST_TMPDIR:-$(mktemp -d)}/replay_test"
rm -rf "$WORK"
mkdir -p "$WORK"
cd "$WORK"

SERVER_PID=""
cleanup() {
  if [ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2>/dev/null; then
    kill -KILL "$SERVER_PID" 2>/dev/null || true
  fi
}
trap cleanup EXIT
fail() {
  echo "FAIL: $*" >&2
  for f in serve.log replay.txt; do
    [ -f "$f" ] && { echo "--- $f" >&2; tail -n 40 "$f" >&2; }
  done
  exit 1
}

"$STRATA" serve --listen 127.0.0.1:0 --port_file "$WORK/port" --data_dir "$WORK/data" \
  --dram 4MiB --nvme 1GiB --dram_policy scheduler >serve.log 2>&1 &
SERVER_PID=$!
for _ in $(seq 300); do
  [ -s "$WORK/port" ] && break
  kill -0 "$SERVER_PID" 2>/dev/null || fail "strata serve exited early"
  sleep 0.1
done
[ -s "$WORK/port" ] || fail "strata serve did not start"
SERVER="127.0.0.1:$(cat "$WORK/port")"

# Bad input first: each is a usage error.
for bad in "--lookahead=-1" "--prefill_tps=0" "--trace=/nonexistent/trace" "extra"; do
  rc=0
  timeout 60 "$STRATA" replay --server "$SERVER" $bad >replay.txt 2>&1 || rc=$?
  [ "$rc" -eq 2 ] || fail "strata replay $bad exited $rc, expected 2"
done

rc=0
timeout 120 "$STRATA" replay --server "$SERVER" --sessions 30 --hints --label e2e >replay.txt 2>&1 || rc=$?
[ "$rc" -eq 0 ] || fail "strata replay exited $rc"
grep -q "errors 0" replay.txt || fail "the replay reported errors"
issued=$(sed -n 's/.*prefetch precision [0-9.]*% ([0-9]* used of \([0-9]*\) issued.*/\1/p' replay.txt)
used=$(sed -n 's/.*prefetch precision [0-9.]*% (\([0-9]*\) used of.*/\1/p' replay.txt)
[ -n "$issued" ] && [ "$issued" -gt 0 ] || fail "no chunk was prefetched"
[ "$used" -gt 0 ] || fail "no prefetched chunk was read"
grep -q "TTFT ms: mean" replay.txt || fail "no TTFT summary"

kill -TERM "$SERVER_PID"
rc=0
wait "$SERVER_PID" || rc=$?
SERVER_PID=""
[ "$rc" -eq 0 ] || fail "strata serve exited $rc after SIGTERM"
cat replay.txt
echo "PASS"
