#!/usr/bin/env bash
# Strata clusters of 1, 2 and 3 nodes on one machine (static --peers, no etcd):
#   1. aggregate GET throughput from PROCS `strata bench` processes at once
#      (each CLIENTS cluster clients, gets of single chunks of SIZE, every byte
#      verified), one row per cluster size;
#   2. a chain load: gets of CHAIN consecutive chunks (layer-wise, SLICES
#      layers) from one client, on 1 node and on 3, where the chain's chunks
#      spread over the nodes and each get fans out.
# Nodes keep data in DRAM only (--no_nvme). Prints markdown tables; raw
# outputs stay in $OUT.
#
# usage: tools/bench/cluster_bench.sh   (from the repository root)
# env:   PROCS=2  CLIENTS=2  SIZE=256KiB  KEYS=512  CHAIN=16  SLICES=4
#        DURATION=5s  WARMUP=1s  STRATA=path/to/strata (default: bazel build -c opt)
#        OUT=directory for raw outputs (default: a new temporary directory)
set -euo pipefail

PROCS="${PROCS:-2}"
CLIENTS="${CLIENTS:-2}"
SIZE="${SIZE:-256KiB}"
KEYS="${KEYS:-512}"
CHAIN="${CHAIN:-16}"
SLICES="${SLICES:-4}"
DURATION="${DURATION:-5s}"
WARMUP="${WARMUP:-1s}"
OUT="${OUT:-$(mktemp -d /tmp/strata-cluster-bench.XXXXXX)}"
mkdir -p "$OUT"
if [ -z "${STRATA:-}" ]; then
  bazel build -c opt //tools:strata >&2
  STRATA="$(bazel info -c opt bazel-bin 2>/dev/null)/tools/strata"
fi
cp "$STRATA" "$OUT/strata"
STRATA="$OUT/strata"

pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT

# Starts node i; prints its address.
start_node() {
  local i=$1
  rm -f "$OUT/port$i"
  "$STRATA" serve --listen 127.0.0.1:0 --port_file "$OUT/port$i" --node_id "n$i" \
    --no_nvme --dram 1GiB >"$OUT/node$i.log" 2>&1 &
  pids+=($!)
  for _ in $(seq 300); do [ -s "$OUT/port$i" ] && break; sleep 0.02; done
  [ -s "$OUT/port$i" ] || { echo "node $i did not start (see $OUT/node$i.log)" >&2; exit 1; }
  echo "127.0.0.1:$(cat "$OUT/port$i")"
}

# The ops/s and GB/s of the get row of a bench output.
get_row() { awk '$1 == "get" { print $3, $4, $5, $6 }' "$1"; }

addrs=()
echo "| nodes | get ops/s (sum of $PROCS processes) | GB/s | p50 ms (process 1) | p99 ms (process 1) |"
echo "|---|---|---|---|---|"
for n in 1 2 3; do
  addrs+=("$(start_node "$n")")
  peers=$(IFS=,; echo "${addrs[*]}")
  bench_pids=()
  for p in $(seq "$PROCS"); do
    "$STRATA" bench --peers "$peers" --clients "$CLIENTS" --chunk_bytes "$SIZE" \
      --keys "$KEYS" --get_ratio 1 --duration "$DURATION" --warmup "$WARMUP" --noprogress \
      --seed "$p" \
      >"$OUT/get-$n-$p.txt" 2>&1 &
    bench_pids+=($!)
  done
  for b in "${bench_pids[@]}"; do wait "$b" || { echo "a bench failed (see $OUT)" >&2; exit 1; }; done
  ops=0; gbs=0
  for p in $(seq "$PROCS"); do
    read -r o g _ _ < <(get_row "$OUT/get-$n-$p.txt")
    ops=$(awk -v a="$ops" -v b="$o" 'BEGIN { print a + b }')
    gbs=$(awk -v a="$gbs" -v b="$g" 'BEGIN { print a + b }')
  done
  read -r _ _ p50 p99 < <(get_row "$OUT/get-$n-1.txt")
  echo "| $n | $ops | $gbs | $p50 | $p99 |"
done

echo
echo "| chain load ($CHAIN x $SIZE, $SLICES layers, 1 client) | gets/s | GB/s | p50 ms | p99 ms | layer 0 p50 ms |"
echo "|---|---|---|---|---|---|"
for n in 1 3; do
  peers=$(IFS=,; echo "${addrs[*]:0:$n}")
  "$STRATA" bench --peers "$peers" --clients 1 --chunk_bytes "$SIZE" --slices "$SLICES" \
    --keys "$KEYS" --chunks_per_get "$CHAIN" --get_ratio 1 --duration "$DURATION" \
    --warmup "$WARMUP" --noprogress >"$OUT/chain-$n.txt" 2>&1 \
    || { echo "the chain bench failed (see $OUT/chain-$n.txt)" >&2; exit 1; }
  read -r o g p50 p99 < <(get_row "$OUT/chain-$n.txt")
  s50=$(awk '$1 == "get" && $2 == "slice0" { print $6 }' "$OUT/chain-$n.txt")
  echo "| $n node(s) | $o | $g | $p50 | $p99 | $s50 |"
done
echo
echo "raw outputs: $OUT"
