#!/usr/bin/env bash
# End-to-end test of the `strata` CLI against a real `strata serve` on
# 127.0.0.1: put/get round trip of a file with a partial last chunk, lookup,
# stats, a short bench (and one stopped with SIGINT), error cases and their
# exit codes, and a clean SIGTERM shutdown.
#
# usage: cli_test.sh STRATA_BINARY SERVE_HELPERS
set -euo pipefail

STRATA="$(cd "$(dirname "$1")" && pwd)/$(basename "$1")"
HELPERS="$(cd "$(dirname "$2")" && pwd)/$(basename "$2")"
WORK="${TEST_TMPDIR:-$(mktemp -d)}/cli_test"
rm -rf "$WORK"
mkdir -p "$WORK"
cd "$WORK"

LOG_FILES="out.txt err.txt"
# shellcheck source=serve_helpers.sh
source "$HELPERS"

# run EXPECTED_RC CMD...: runs a strata command with a time limit, keeping
# stdout in out.txt and stderr in err.txt.
run() {
  local want="$1"
  shift
  local rc=0
  timeout 60 "$STRATA" "$@" >out.txt 2>err.txt || rc=$?
  [ "$rc" -eq "$want" ] || fail "strata $* exited $rc, expected $want"
}
expect_out() { grep -q -- "$1" out.txt || fail "stdout lacks '$1'"; }
expect_err() { grep -q -- "$1" err.txt || fail "stderr lacks '$1'"; }

# --- server -----------------------------------------------------------------
start_server --dram 256MiB --nvme 1GiB

# --- help and usage errors --------------------------------------------------
for cmd in put get lookup stats bench remove-namespace; do
  run 0 "$cmd" --help
  expect_out "strata $cmd"
  expect_out "--server"
done
run 0 help
expect_out "bench"
for cmd in serve local put get lookup stats cluster remove-namespace replay bench worker token; do
  grep -q "^  $cmd " out.txt || fail "strata help does not list $cmd"
done
run 0 serve --help
expect_out "lru, prefix-lru or scheduler"
run 0 local --help
expect_out "lru, prefix-lru or scheduler"
run 2 put --no_such_flag "$WORK/x"
expect_err "unknown flag --no_such_flag"
run 2 put --server "$SERVER"
expect_err "no FILE given"
run 2 get --server "$SERVER" somefile
expect_err "--out is required"
run 2 bench --server "$SERVER" --chunk_bytes 1000
expect_err "not a multiple of 256"
run 2 bench --server "$SERVER" --get_ratio 1.5
expect_err "get_ratio"
run 2 lookup --layers 0 somefile
expect_err "layers"
run 2 frobnicate
run 2
expect_err "usage: strata"
# A node address without a port (or with port 0, or out of range) is a usage
# error naming --server and the form it takes, before any connection attempt.
for cmd in put get lookup stats bench remove-namespace replay; do
  for bad in 127.0.0.1 127.0.0.1:0 127.0.0.1:65536; do
    case "$cmd" in put | get | lookup) args=(file.bin) ;; *) args=() ;; esac
    run 2 "$cmd" --server "$bad" "${args[@]}"
    expect_err "strata $cmd: --server '$bad'"
    expect_err "expected host:port"
  done
done
run 2 stats --server localhost
expect_err "'localhost' has no port"
run 2 serve --shutdown_grace -1s
expect_err "shutdown_grace must be >= 0"
run 2 serve --lease_ttl 0s
expect_err "lease_ttl must be positive"

# With --etcd, the banner says the node serves only once it is registered:
# an etcd that cannot be reached (nothing listens on port 1) stops the node
# without a "listening on" line.
run 1 serve --listen 127.0.0.1:0 --node_id unregistered --etcd 127.0.0.1:1 --no_nvme --dram 16MiB
expect_err "cannot register in etcd 127.0.0.1:1, so the node stops"
grep -q "listening on" out.txt && fail "serve printed its banner before etcd registration failed"

# --- put / get round trip: 3 full chunks (1 MiB each by default) + 1234 bytes
CHUNK=$((4 * 2 * 8 * 64 * 128 * 2))
SIZE=$((3 * CHUNK + 1234))
PAD=$((CHUNK - 1234))
head -c "$SIZE" /dev/urandom >file.bin
run 0 put --server "$SERVER" file.bin
expect_out "file.bin: $SIZE bytes -> 4 chunks of 1MiB, last chunk zero-padded by $PAD bytes; 4 stored, 0 already present"
[ "$(grep -c 'file.bin#' out.txt)" -eq 4 ] || fail "put did not print 4 keys"
awk '/file.bin#/ {print $1}' out.txt >keys.txt
grep -qvE '^[0-9a-f]{64}$' keys.txt && fail "a key is not 64 hex digits"

# --summary_only reports progress on stderr while a file is stored: 256-byte
# chunks make 3 batches of at most 4096 chunks; --progress_every 0s reports
# after each batch but the last (the summary line follows it).
head -c 3000000 /dev/urandom >many.bin
SMALL=(--layers 1 --kv_heads 1 --head_dim 64 --tokens_per_chunk 1 --tenant small)
run 0 put --server "$SERVER" "${SMALL[@]}" --summary_only --progress_every 0s many.bin
expect_err "strata put: many.bin: 4096 of 11719 chunks, 1MiB of 2.9MiB"
expect_err "strata put: many.bin: 8192 of 11719 chunks, 2MiB of 2.9MiB"
[ "$(grep -c 'of 11719 chunks' err.txt)" -eq 2 ] || fail "put --summary_only: not 2 progress lines"
expect_out "many.bin: 3000000 bytes -> 11719 chunks of 256B"
[ "$(wc -l <out.txt)" -eq 1 ] || fail "put --summary_only printed more than its summary on stdout"
run 0 put --server "$SERVER" "${SMALL[@]}" --progress_every 0s many.bin
grep -q "of 11719 chunks" err.txt && fail "put without --summary_only printed progress lines"
run 2 put --server "$SERVER" --summary_only --progress_every -1s file.bin
expect_err "progress_every must not be negative"

# The same file again: every chunk already present, same keys.
run 0 put --server "$SERVER" file.bin
expect_out "0 stored, 4 already present"
awk '/file.bin#/ {print $1}' out.txt | cmp -s - keys.txt || fail "keys differ between puts"

run 0 get --server "$SERVER" file.bin --out copy.bin
expect_out "$SIZE bytes from 4 chunks, verified"
cmp file.bin copy.bin || fail "get returned different bytes"

# By keys: whole chunks, so the copy carries the zero padding.
run 0 get --server "$SERVER" $(cat keys.txt) --out chunks.bin
[ "$(stat -c %s chunks.bin)" -eq $((4 * CHUNK)) ] || fail "get by keys: wrong size"
cmp -n "$SIZE" file.bin chunks.bin || fail "get by keys: different bytes"
tail -c "$PAD" chunks.bin | cmp -s - <(head -c "$PAD" /dev/zero) || fail "padding is not zeros"

# --out DIR with one FILE writes DIR/<its name>, as cp does.
mkdir -p outdir
run 0 get --server "$SERVER" file.bin --out outdir
expect_out "outdir/file.bin: $SIZE bytes from 4 chunks, verified"
cmp file.bin outdir/file.bin || fail "get into a directory returned different bytes"
run 0 get --server "$SERVER" "$WORK/file.bin" --out outdir/
cmp file.bin outdir/file.bin || fail "get into DIR/ returned different bytes"
# A directory without a name to take (KEYs, several sources), a path ending
# in / that is no directory, or the source itself: usage errors, before any
# connection (the unreachable port 1 shows that nothing was tried).
run 2 get --server 127.0.0.1:1 $(head -n 1 keys.txt) --out outdir
expect_err "outdir is a directory"
run 2 get --server 127.0.0.1:1 file.bin file.bin --out outdir
expect_err "outdir is a directory"
run 2 get --server 127.0.0.1:1 file.bin --out nodir/
expect_err "ends in '/' but is not a directory"
run 2 get --server 127.0.0.1:1 file.bin --out file.bin
expect_err "is file.bin itself"
run 2 get --server 127.0.0.1:1 file.bin --out .
expect_err "is file.bin itself"
mkdir -p outdir2/file.bin
run 2 get --server 127.0.0.1:1 file.bin --out outdir2
expect_err "outdir2/file.bin is a directory"
ls outdir | grep -q strata-tmp && fail "a get into a directory left a temporary file"
[ "$(ls outdir)" = "file.bin" ] || fail "outdir holds more than file.bin"

# Another namespace keys the same file differently: nothing stored there.
run 1 get --server "$SERVER" --tenant other file.bin --out other.bin
expect_err "NotFound"
[ ! -e other.bin ] || fail "a failed get left its output file"

# --- lookup -----------------------------------------------------------------
run 0 lookup --server "$SERVER" file.bin
expect_out "file.bin: cached prefix 4 of 4 chunks (4MiB)"
[ "$(grep -cE '^ +[0-9]+  [0-9a-f]{64}  (dram|nvme)$' out.txt)" -eq 4 ] || fail "lookup lines"
MISSING=$(printf 'ab%.0s' $(seq 32))
run 0 lookup --server "$SERVER" $(head -n 2 keys.txt) "$MISSING" $(tail -n 1 keys.txt)
expect_out "cached prefix 2 of 4 chunks"
expect_out "$MISSING  missing"

# --- error cases ------------------------------------------------------------
head -c 5000 /dev/urandom >never.bin
run 1 get --server "$SERVER" never.bin --out never.out
expect_err "NotFound"
expect_err "never.bin"
run 1 get --server "$SERVER" no_such_file --out x.out
expect_err "no_such_file: no such file"
: >empty.bin
run 1 put --server "$SERVER" empty.bin
expect_err "empty file"
# Port 1 on loopback: nothing listens there.
run 1 put --server 127.0.0.1:1 file.bin
expect_err "cannot connect to 127.0.0.1:1"
expect_err "Unavailable"
expect_err "nothing listens there"
grep -q "TLS" err.txt && fail "a refused connection is blamed on TLS"
run 1 stats --server 127.0.0.1:1
expect_err "cannot connect"

# --- stats ------------------------------------------------------------------
run 0 stats --server "$SERVER"
sort -c out.txt || fail "stats are not sorted"
grep -qE '^puts_committed: [0-9]+$' out.txt || fail "stats lack puts_committed"
[ "$(awk '/^puts_committed:/ {print $2}' out.txt)" -ge 4 ] || fail "puts_committed < 4"
grep -qvE '^[a-z0-9_]+: [0-9]+$' out.txt && fail "a stats line is not 'key: value'"

# --- bench ------------------------------------------------------------------
run 0 bench --server "$SERVER" --clients 2 --chunk_bytes 64KiB --keys 32 --duration 2s \
  --warmup 200ms --get_ratio 0.5
for want in "measured 2.00 s" "p999" "^get " "^put " "verified byte for byte" "0 corrupt, 0 errors"; do
  grep -q -- "$want" out.txt || fail "bench output lacks '$want'"
done
# A chunk past 65536 tokens of one KV head (a Llama-3-8B chunk of 256 tokens is
# 32 MiB) benches as it is; past what a namespace allows is a usage error.
run 0 bench --server "$SERVER" --clients 1 --chunk_bytes 32MiB --keys 2 --duration 1s \
  --warmup 0s --get_ratio 0.5
expect_out "0 corrupt, 0 errors"
run 2 bench --server "$SERVER" --chunk_bytes 4GiB
expect_err "at most 2GiB"
# Sliced chunks report the first slice's latency too.
run 0 bench --server "$SERVER" --clients 1 --chunk_bytes 256KiB --slices 4 --keys 8 \
  --duration 1s --warmup 0s --get_ratio 1
expect_out "get slice0"
# The memcpy reference is timed beside the gets; without gets it is a usage error.
run 0 bench --server "$SERVER" --clients 1 --chunk_bytes 256KiB --keys 8 --duration 1s \
  --warmup 0s --get_ratio 1 --memcpy_reference
expect_out "memcpy reference (--memcpy_reference): [0-9]* copies of 256KiB"
expect_out "0 corrupt, 0 errors"
run 2 bench --server "$SERVER" --get_ratio 0 --memcpy_reference
expect_err "needs --get_ratio above 0"

# With several chunks per get, the mix's GB/s counts every chunk a get moves:
# a gets-only run's "all" row equals its "get" row.
run 0 bench --server "$SERVER" --clients 1 --chunk_bytes 64KiB --keys 16 --chunks_per_get 4 \
  --duration 1s --warmup 0s --get_ratio 1
[ "$(awk '$1 == "get" {print $4}' out.txt)" = "$(awk '$1 == "all" {print $4}' out.txt)" ] ||
  fail "bench: the all row's GB/s differs from the get row's in a gets-only run"

# A node that dies under bench and comes back: the progress lines count failed
# operations as errors, not as gets and puts (they once showed tens of GB/s of
# failures), and say that the node is unreachable; each client backs off (10 ms
# doubling to 1 s) instead of retrying tens of thousands of times a second;
# the clients reconnect to the restarted node (empty: no NVMe), whose lost
# chunks show as misses, and bench goes on.
rm -f "$WORK/port2"
"$STRATA" serve --listen 127.0.0.1:0 --port_file "$WORK/port2" --no_nvme --dram 64MiB \
  >serve2.log 2>&1 &
VICTIM_PID=$!
for _ in $(seq 300); do [ -s "$WORK/port2" ] && break; sleep 0.1; done
[ -s "$WORK/port2" ] || fail "the second strata serve did not write --port_file"
PORT2=$(cat "$WORK/port2")
"$STRATA" bench --server "127.0.0.1:$PORT2" --clients 2 --chunk_bytes 64KiB \
  --keys 16 --duration 10s --warmup 0s --get_ratio 0.5 >out.txt 2>err.txt &
BENCH_PID=$!
for _ in $(seq 300); do grep -q "^prefill:" out.txt && break; sleep 0.1; done
sleep 1.5
kill -KILL "$VICTIM_PID"
wait "$VICTIM_PID" 2>/dev/null || true
for _ in $(seq 100); do grep -q "node unreachable" out.txt && break; sleep 0.1; done
grep -q '\] gets .* errors .* node unreachable: [12] of 2 clients backing off' out.txt ||
  fail "no progress line says that the node is unreachable"
"$STRATA" serve --listen "127.0.0.1:$PORT2" --no_nvme --dram 64MiB >serve3.log 2>&1 &
VICTIM_PID=$!
for _ in $(seq 300); do
  kill -0 "$BENCH_PID" 2>/dev/null || break
  sleep 0.1
done
kill -0 "$BENCH_PID" 2>/dev/null && { kill -KILL "$BENCH_PID"; fail "bench did not end"; }
rc=0
wait "$BENCH_PID" || rc=$?
kill -TERM "$VICTIM_PID"
wait "$VICTIM_PID" 2>/dev/null || true
[ "$rc" -eq 1 ] || fail "bench against a killed node exited $rc, expected 1"
grep -q "listening on 127.0.0.1:$PORT2" serve3.log || fail "the node did not restart on its port"
progress() { awk -v op="$1" '/\] gets / { for (i = 1; i < NF; i++) if ($i == op) n += $(i + 1) + 0 }
                            END { print n + 0 }' out.txt; }
table() { awk -v op="$1" '$1 == op { print $2 }' out.txt; }
[ "$(progress gets)" -le "$(table get)" ] ||
  fail "progress lines count $(progress gets) gets, the summary $(table get) that succeeded"
[ "$(progress puts)" -le "$(table put)" ] ||
  fail "progress lines count $(progress puts) puts, the summary $(table put) that succeeded"
errors=$(awk '/^gets: / { n += $(NF - 1) } /^puts: / { n += $2 } END { print n + 0 }' out.txt)
[ "$errors" -ge 1 ] || fail "bench counted no errors while the node was down"
# Without backoff, 2 clients failed about 60,000 operations a second; with it,
# each fails at most about a dozen times over the whole run.
[ "$errors" -le 100 ] || fail "bench failed $errors operations: no backoff?"
grep -q "reconnected to a restarted node" out.txt || fail "no progress line shows the reconnect"
after=$(awk '/reconnected to a restarted node/ { on = 1 }
             on && /\] gets / { for (i = 1; i < NF; i++) if ($i == "puts") n += $(i + 1) + 0 }
             END { print n + 0 }' out.txt)
[ "$after" -gt 0 ] || fail "no puts succeeded after the node came back"
grep -q '\] gets .* misses ' out.txt || fail "the restarted node's misses are not shown"
expect_out "lost in the node's restart"
expect_out "the node restarted during the run"

# Ctrl-C stops early and still prints the summary.
# (Started directly, not under timeout(1), so that SIGINT reaches it; the
# loop below bounds the wait.)
"$STRATA" bench --server "$SERVER" --clients 2 --chunk_bytes 64KiB --keys 16 \
  --duration 60s --warmup 0s --get_ratio 0.9 >out.txt 2>err.txt &
BENCH_PID=$!
sleep 3
kill -INT "$BENCH_PID"
for _ in $(seq 300); do
  kill -0 "$BENCH_PID" 2>/dev/null || break
  sleep 0.1
done
if kill -0 "$BENCH_PID" 2>/dev/null; then
  kill -KILL "$BENCH_PID"
  fail "bench did not stop within 30 s of SIGINT"
fi
rc=0
wait "$BENCH_PID" || rc=$?
[ "$rc" -eq 0 ] || fail "interrupted bench exited $rc"
expect_out "interrupted"
expect_out "^get "

# --- remove-namespace -------------------------------------------------------
run 0 remove-namespace --help
expect_out "strata remove-namespace"
# file.bin again in the default namespace (the benches' puts above may have
# evicted it), so that the last check below sees only what the removal did.
run 0 put --server "$SERVER" file.bin
run 0 put --server "$SERVER" --tenant scratch file.bin
run 0 remove-namespace --server "$SERVER" --tenant scratch
expect_out "removed namespace of model demo-model for tenant scratch: 4 chunks"
run 1 get --server "$SERVER" --tenant scratch file.bin --out scratch.bin
expect_err "NotFound"
# (get registered the namespace again, empty.)
run 0 remove-namespace --server "$SERVER" --tenant scratch
expect_out "tenant scratch: 0 chunks"
run 1 remove-namespace --server "$SERVER" --tenant scratch
expect_err "NotFound"
# The default namespace is untouched.
run 0 get --server "$SERVER" file.bin --out copy2.bin
cmp file.bin copy2.bin || fail "remove-namespace touched another namespace"

# --- shutdown ---------------------------------------------------------------
stop_server
echo "PASS"
