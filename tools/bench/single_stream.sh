#!/usr/bin/env bash
# One client stream of 8 MiB same-host gets against memcpy of 8 MiB out of a
# source that is not in the caches, side by side in one run. Each of ROUNDS
# rounds starts one `strata serve --no_nvme --dram 2GiB` and runs
#   strata bench --clients 1 --chunk_bytes 8MiB --get_ratio 1 --duration 5s
#     --warmup 1s --memcpy_reference
# (gets lease-free out of the node's shared pool, each checked against its
# XXH3 by the client; working set 256 MiB worth of chunks; after each get the
# bench times a memcpy of 8 MiB out of a 256 MiB shared memfd into the same
# destination, so both see the same load), once with the bench's
# byte-for-byte comparison (the default) and once with --noverify (the
# client's checksum check only). Then store_bench, in its own process:
#   BM_MemcpyFromSharedPool/8388608  memcpy out of a 256 MiB shared memfd
#   BM_Memcpy/8388608                memcpy out of a 128 MiB heap buffer
#   BM_CopyAndChecksum/8388608       the get's copy + XXH3 alone
# With BEFORE=path/to/another/strata, each round also runs both benches with
# that binary (the two alternating first). "get alone" is 8 MiB / the get's
# p50 latency; "stream" is the bench's GB/s (every op, reference copies and
# byte comparisons between ops included).
#
# usage: tools/bench/single_stream.sh   (from the repository root)
# env:   ROUNDS=3  DURATION=5s  WARMUP=1s
#        STRATA=path/to/strata (default: bazel build //tools:strata)
#        STORE_BENCH=path/to/store_bench (default: bazel build
#          //tools/bench/store:store_bench)
#        BEFORE=path/to/an/earlier/strata with --memcpy_reference (optional)
#        OUT=directory for raw outputs (default: a new temporary directory)
set -euo pipefail

ROUNDS="${ROUNDS:-3}"
DURATION="${DURATION:-5s}"
WARMUP="${WARMUP:-1s}"
OUT="${OUT:-$(mktemp -d /tmp/strata-single-stream.XXXXXX)}"
mkdir -p "$OUT"
if [ -z "${STRATA:-}" ]; then
  bazel build //tools:strata >&2
  STRATA="$(bazel info bazel-bin 2>/dev/null)/tools/strata"
fi
if [ -z "${STORE_BENCH:-}" ]; then
  bazel build //tools/bench/store:store_bench >&2
  STORE_BENCH="$(bazel info bazel-bin 2>/dev/null)/tools/bench/store/store_bench"
fi
# Private copies, so that a concurrent build cannot replace them mid-run.
cp "$STRATA" "$OUT/strata"
cp "$STORE_BENCH" "$OUT/store_bench"
BINS="after"
if [ -n "${BEFORE:-}" ]; then cp "$BEFORE" "$OUT/strata-before"; BINS="before after"; fi

SERVER_PID=""
trap '[ -n "$SERVER_PID" ] && kill "$SERVER_PID" 2>/dev/null; wait 2>/dev/null || true' EXIT

# bench NAME BINARY FLAGS...: "stream_GB/s get_p50_ms memcpy_p50_ms"
bench() {
  local name="$1" bin="$2"
  shift 2
  rm -f "$OUT/port"
  "$bin" serve --listen 127.0.0.1:0 --port_file "$OUT/port" --no_nvme --dram 2GiB \
    >"$OUT/serve-$name.log" 2>&1 &
  SERVER_PID=$!
  for _ in $(seq 100); do [ -s "$OUT/port" ] && break; sleep 0.1; done
  [ -s "$OUT/port" ] || { echo "strata serve did not start" >&2; cat "$OUT/serve-$name.log" >&2; exit 1; }
  "$bin" bench --server "127.0.0.1:$(cat "$OUT/port")" --clients 1 --chunk_bytes 8MiB \
    --get_ratio 1 --duration "$DURATION" --warmup "$WARMUP" --noprogress --memcpy_reference "$@" \
    >"$OUT/bench-$name.txt" 2>&1 || { echo "strata bench failed:" >&2; cat "$OUT/bench-$name.txt" >&2; exit 1; }
  kill "$SERVER_PID"; wait "$SERVER_PID" 2>/dev/null || true
  SERVER_PID=""
  awk '$1=="get" && !g {g=$4" "$5} /^memcpy reference/ {for (i=1; i<=NF; i++) if ($i=="p50") {m=$(i+1); break}}
       END{print g" "m}' "$OUT/bench-$name.txt"
}

# gbs FILE BENCHMARK: its bytes_per_second (printed in GiB/s etc.) in GB/s
gbs() {
  awk -v b="$2" '$1==b"/real_time" {v=$NF; u=substr(v, length(v)-2, 1); sub(/[KMG]\/s$/, "", v); sub(/.*=/, "", v);
    m = (u=="G") ? 1.073741824 : (u=="M") ? 0.001048576 : 0.000001024; printf "%.2f\n", v*m; exit}' "$1"
}

echo "# single 8 MiB stream vs memcpy, $(nproc) cores, $(date -u +%Y-%m-%d), $ROUNDS rounds"
echo
echo "| round | load | binary | stream GB/s | get p50 ms | get alone GB/s | memcpy p50 ms | memcpy GB/s | get / memcpy | --noverify: stream GB/s | get p50 ms | memcpy p50 ms | get / memcpy |"
echo "|---|---|---|---|---|---|---|---|---|---|---|---|---|"
REFS=""
for round in $(seq "$ROUNDS"); do
  load="$(cut -d' ' -f1 /proc/loadavg)"
  order="$BINS"
  if [ $((round % 2)) = 0 ]; then order="$(echo "$BINS" | awk '{for (i=NF; i>0; i--) printf "%s ", $i}')"; fi
  declare -A row=()
  for b in $order; do
    bin="$OUT/strata"; [ "$b" = "before" ] && bin="$OUT/strata-before"
    row[$b]="$(bench "$b-r$round" "$bin") $(bench "$b-noverify-r$round" "$bin" --noverify)"
  done
  "$OUT/store_bench" --benchmark_filter='BM_MemcpyFromSharedPool/8388608|BM_Memcpy/8388608|BM_CopyAndChecksum/8388608' \
    --benchmark_min_time=1 >"$OUT/store_bench-r$round.txt" 2>&1 ||
    { echo "store_bench failed:" >&2; cat "$OUT/store_bench-r$round.txt" >&2; exit 1; }
  REFS="$REFS
| $round | $(gbs "$OUT/store_bench-r$round.txt" BM_MemcpyFromSharedPool/8388608) | $(gbs "$OUT/store_bench-r$round.txt" BM_Memcpy/8388608) | $(gbs "$OUT/store_bench-r$round.txt" BM_CopyAndChecksum/8388608) |"
  for b in $BINS; do
    echo "${row[$b]}" | awk -v r="$round" -v l="$load" -v b="$b" '{
      printf "| %s | %s | %s | %s | %s | %.2f | %s | %.2f | %.0f%% | %s | %s | %s | %.0f%% |\n",
        r, l, b, $1, $2, 8.388608 / $2, $3, 8.388608 / $3, 100 * $3 / $2, $4, $5, $6, 100 * $6 / $5 }'
  done
done
echo
echo "store_bench in its own process after each round (GB/s):"
echo
echo "| round | memcpy out of a 256 MiB shared memfd | memcpy out of a 128 MiB heap buffer | CopyAndChecksum, same source as the first |"
echo "|---|---|---|---|$REFS"
echo
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg); raw outputs: $OUT"
