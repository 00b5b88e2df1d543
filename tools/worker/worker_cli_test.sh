#!/usr/bin/env bash
# strata_worker's flag checks that need no GPU: a bad --server is refused
# before the model loads (and before any CUDA call).
set -u
worker="$1"
tokens="${TEST_TMPDIR:-/tmp}/tokens.txt"
echo "1 2 3" >"$tokens"
fail=0
for server in 127.0.0.1 127.0.0.1:0 127.0.0.1:70000 :7400; do
  out=$("$worker" run --tokens "$tokens" --server "$server" 2>&1)
  rc=$?
  if [ "$rc" -ne 1 ] || ! grep -q "INVALID_ARGUMENT: --server" <<<"$out"; then
    echo "--server $server: exit $rc, output: $out"
    fail=1
  fi
done
out=$("$worker" run --server 127.0.0.1:7400 2>&1)
if [ $? -ne 1 ] || ! grep -q "tokens is required" <<<"$out"; then
  echo "no --tokens: $out"
  fail=1
fi
[ "$fail" -eq 0 ] && echo PASS
exit "$fail"
