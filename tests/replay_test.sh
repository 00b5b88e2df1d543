#!/usr/bin/env bash
# A small replay end to end: `strata serve` with the scheduler-aware policy and
# a DRAM pool far smaller than the trace's working set, driven by
# `strata replay` (a generated multi-turn trace, scheduler hints on). Every
# load is verified by the client; the run must finish without errors, and
# the node must have prefetched hinted chunks that the jobs then read.
#
# usage: replay_test.sh STRATA_BINARY SERVE_HELPERS
set -euo pipefail

STRATA="$(cd "$(dirname "$1")" && pwd)/$(basename "$1")"
HELPERS="$(cd "$(dirname "$2")" && pwd)/$(basename "$2")"
WORK="${TEST_TMPDIR:-$(mktemp -d)}/replay_test"
rm -rf "$WORK"
mkdir -p "$WORK"
cd "$WORK"

LOG_FILES="replay.txt"
# shellcheck source=serve_helpers.sh
source "$HELPERS"
start_server --dram 4MiB --nvme 1GiB --dram_policy scheduler

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

stop_server
cat replay.txt
echo "PASS"
