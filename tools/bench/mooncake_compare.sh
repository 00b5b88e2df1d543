#!/usr/bin/env bash
# Strata vs Mooncake Store on one machine, side by side in one run: GETs and
# PUTs of 64 KiB, 1 MiB and 8 MiB values with CLIENTS concurrent clients
# (ops/s and p50/p99/p999 per op and size), then a single client stream of
# 8 MiB verified gets against memcpy of 8 MiB from a non-cache-resident source.
# Each figure is the median of ROUNDS rounds (each column's median on its own);
# within a round the systems alternate, so load on the machine hits both.
#
# Strata: `strata serve --no_nvme --dram 2GiB` on this host and
#   strata bench --clients CLIENTS --chunk_bytes SIZE --get_ratio 1 / 0
#   (gets of random prefilled chunks, every byte verified; puts of distinct
#   keys), once with the default transports (same host: gets copy out of the
#   shared pool, lease-free) and once as a client on another host would run:
#   --ucx_transports tcp --nosame_host --nolease_free (every byte over tcp).
# Mooncake Store: mooncake_master (HTTP metadata server built in), one holder
#   process that contributes the store's 2 GiB (as the Strata node does) and
#   tools/bench/mooncake_driver.py with CLIENTS processes over the transfer
#   engine's tcp protocol (get_into / put_from with registered buffers, every
#   byte of a get compared, every op timed with time.perf_counter_ns).
# Prints markdown tables; raw outputs stay in $OUT.
#
# usage: tools/bench/mooncake_compare.sh   (from the repository root)
# env:   CLIENTS=4  SIZES="64KiB 1MiB 8MiB"  OPS="get put"  DURATION=3s  WARMUP=1s  ROUNDS=3
#        OPS=put: PUTs only (no GET rows; with SINGLE=0 also no single stream)
#        STRATA=path/to/strata (default: bazel build //tools:strata)
#        STORE_BENCH=path/to/store_bench (default: bazel build
#          //tools/bench/store:store_bench); SINGLE=0 skips the single stream
#        OUT=directory for raw outputs (default: a new temporary directory)
# Needs Mooncake Store's Python package (not installed by tools/setup.sh):
#   pip install mooncake-transfer-engine-non-cuda   (hosts without CUDA)
#   pip install mooncake-transfer-engine            (hosts with CUDA 12)
set -euo pipefail

CLIENTS="${CLIENTS:-4}"
SIZES="${SIZES:-64KiB 1MiB 8MiB}"
OPS="${OPS:-get put}"
for op in $OPS; do
  case "$op" in get|put) ;; *) echo "mooncake_compare: OPS takes get and/or put, not '$op'" >&2; exit 2 ;; esac
done
has_op() { case " $OPS " in *" $1 "*) return 0 ;; *) return 1 ;; esac; }
DURATION="${DURATION:-3s}"
WARMUP="${WARMUP:-1s}"
ROUNDS="${ROUNDS:-3}"
SINGLE="${SINGLE:-1}"
OUT="${OUT:-$(mktemp -d /tmp/strata-mooncake-compare.XXXXXX)}"
mkdir -p "$OUT"
HERE="$(cd "$(dirname "$0")" && pwd)"
PY="${PYTHON:-python3}"

if ! command -v mooncake_master >/dev/null; then
  echo "mooncake_compare: mooncake_master not found. Install Mooncake Store with" >&2
  echo "  pip install mooncake-transfer-engine-non-cuda   (or mooncake-transfer-engine with CUDA 12)" >&2
  exit 1
fi
if ! err="$("$PY" -c 'import mooncake.store' 2>&1)"; then
  echo "mooncake_compare: $PY cannot import mooncake.store:" >&2
  echo "$err" | tail -1 >&2
  echo "  pip install mooncake-transfer-engine-non-cuda   (the CUDA build needs libcuda)" >&2
  exit 1
fi
if [ -z "${STRATA:-}" ]; then
  bazel build //tools:strata >&2
  STRATA="$(bazel info bazel-bin 2>/dev/null)/tools/strata"
fi
if [ "$SINGLE" = "1" ] && [ -z "${STORE_BENCH:-}" ]; then
  bazel build //tools/bench/store:store_bench >&2
  STORE_BENCH="$(bazel info bazel-bin 2>/dev/null)/tools/bench/store/store_bench"
fi
# Private copies, so that a concurrent build cannot replace them mid-run.
cp "$STRATA" "$OUT/strata"
STRATA="$OUT/strata"
if [ "$SINGLE" = "1" ]; then cp "$STORE_BENCH" "$OUT/store_bench"; STORE_BENCH="$OUT/store_bench"; fi

free_port() { "$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
secs() { echo "${1%s}"; }

SERVER_PID=""
MASTER_PID=""
HOLDER_PID=""
cleanup() {
  for pid in $HOLDER_PID $SERVER_PID $MASTER_PID; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT

"$STRATA" serve --listen 127.0.0.1:0 --port_file "$OUT/port" --no_nvme --dram 2GiB \
  >"$OUT/strata-serve.log" 2>&1 &
SERVER_PID=$!
RPC_PORT="$(free_port)"
META_PORT="$(free_port)"
METRICS_PORT="$(free_port)"
mooncake_master --rpc_port "$RPC_PORT" --rpc_address 127.0.0.1 --enable_http_metadata_server=true \
  --http_metadata_server_host 127.0.0.1 --http_metadata_server_port "$META_PORT" \
  --metrics_port "$METRICS_PORT" >"$OUT/mooncake-master.log" 2>&1 &
MASTER_PID=$!
MC=(--master "127.0.0.1:$RPC_PORT" --metadata "http://127.0.0.1:$META_PORT/metadata")
for _ in $(seq 100); do
  "$PY" -c "import socket; socket.create_connection(('127.0.0.1', $META_PORT), 1)" 2>/dev/null && break
  sleep 0.1
done
"$PY" "$HERE/mooncake_driver.py" holder "${MC[@]}" --segment 2GiB >"$OUT/mooncake-holder.log" 2>&1 &
HOLDER_PID=$!
for _ in $(seq 300); do
  [ -s "$OUT/port" ] && grep -q "holder ready" "$OUT/mooncake-holder.log" && break
  kill -0 "$HOLDER_PID" 2>/dev/null || break
  sleep 0.1
done
[ -s "$OUT/port" ] || { echo "strata serve did not start" >&2; cat "$OUT/strata-serve.log" >&2; exit 1; }
grep -q "holder ready" "$OUT/mooncake-holder.log" ||
  { echo "the Mooncake holder did not start" >&2; tail "$OUT/mooncake-holder.log" "$OUT/mooncake-master.log" >&2; exit 1; }
SERVER="127.0.0.1:$(cat "$OUT/port")"

# strata NAME OP(get|put) FLAGS...: "ops_per_s p50_ms p99_ms p999_ms"
strata() {
  local name="$1" op="$2"
  shift 2
  "$STRATA" bench --server "$SERVER" --duration "$DURATION" --warmup "$WARMUP" --noprogress "$@" \
    >"$OUT/strata-$name.txt" 2>&1 || { echo "strata bench $* failed:" >&2; cat "$OUT/strata-$name.txt" >&2; exit 1; }
  awk -v op="$op" '$1==op{print $3" "$5" "$6" "$7; exit}' "$OUT/strata-$name.txt"
}

# mooncake NAME OP SIZE: "ops_per_s p50_ms p99_ms p999_ms"
mooncake() {
  "$PY" "$HERE/mooncake_driver.py" bench "${MC[@]}" --op "$2" --size "$3" --clients "$CLIENTS" \
    --duration "$(secs "$DURATION")" --warmup "$(secs "$WARMUP")" --prefix "$1" \
    >"$OUT/mooncake-$1.txt" 2>&1 || { echo "mooncake_driver $1 failed:" >&2; tail "$OUT/mooncake-$1.txt" >&2; exit 1; }
  awk '$1=="RESULT"{print $3" "$4" "$5" "$6; if ($8 > 0) print "mooncake " FILENAME ": " $8 " failed ops" > "/dev/stderr"; exit}' \
    "$OUT/mooncake-$1.txt"
}

# One line per (system, op, size) and round: "key ops p50 p99 p999" in $OUT/rows.
: >"$OUT/rows"
record() { echo "$1 $2" >>"$OUT/rows"; }

ACROSS=(--ucx_transports tcp --nosame_host --nolease_free)
LOAD_BEFORE="$(cut -d' ' -f1-3 /proc/loadavg)"
LOADS=""
for round in $(seq "$ROUNDS"); do
  LOADS="$LOADS $(cut -d' ' -f1 /proc/loadavg)"
  for size in $SIZES; do
    if has_op get; then
      record "get-$size-strata" "$(strata "get-$size-r$round" get --clients "$CLIENTS" --chunk_bytes "$size" --get_ratio 1)"
      record "get-$size-mooncake" "$(mooncake "get-$size-r$round" get "$size")"
      record "get-$size-tcp" "$(strata "get-$size-tcp-r$round" get --clients "$CLIENTS" --chunk_bytes "$size" --get_ratio 1 "${ACROSS[@]}")"
    fi
    if has_op put; then
      record "put-$size-strata" "$(strata "put-$size-r$round" put --clients "$CLIENTS" --chunk_bytes "$size" --get_ratio 0)"
      record "put-$size-mooncake" "$(mooncake "put-$size-r$round" put "$size")"
      record "put-$size-tcp" "$(strata "put-$size-tcp-r$round" put --clients "$CLIENTS" --chunk_bytes "$size" --get_ratio 0 "${ACROSS[@]}")"
    fi
  done
  if [ "$SINGLE" = "1" ]; then
    record "single-8MiB" "$(strata "single-8MiB-r$round" get --clients 1 --chunk_bytes 8MiB --get_ratio 1)"
    "$STORE_BENCH" --benchmark_filter='BM_Memcpy/8388608' --benchmark_min_time=1 \
      >"$OUT/memcpy-r$round.txt" 2>&1 || { echo "store_bench failed:" >&2; cat "$OUT/memcpy-r$round.txt" >&2; exit 1; }
    # bytes_per_second as printed (e.g. 9.1G/s, GiB) -> GB/s
    record "memcpy-8MiB" "$(awk '/BM_Memcpy\/8388608/ {v=$NF; u=substr(v, length(v)-2, 1); sub(/[KMG]\/s$/, "", v); sub(/.*=/, "", v);
      m = (u=="G") ? 1.073741824 : (u=="M") ? 0.001048576 : 0.000001024; printf "%.2f 0 0 0\n", v*m; exit}' "$OUT/memcpy-r$round.txt")"
  fi
done
LOAD_AFTER="$(cut -d' ' -f1-3 /proc/loadavg)"
LOADS="$LOADS $(cut -d' ' -f1 /proc/loadavg)"

# med KEY COLUMN(2..5): the median over rounds
med() {
  awk -v k="$1" -v c="$2" '$1==k{v[n++]=$c} END{
    for (i=0;i<n;i++) for (j=i+1;j<n;j++) if (v[j]<v[i]) {t=v[i]; v[i]=v[j]; v[j]=t}
    if (n==0) print "-"; else if (n%2) print v[int(n/2)]; else printf "%.3f\n", (v[n/2-1]+v[n/2])/2 }' "$OUT/rows"
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN{ if (b > 0) printf "%.2fx", a / b; else print "-" }'; }
cell() { echo "$(med "$1" 2) | $(med "$1" 3) | $(med "$1" 4) | $(med "$1" 5)"; }

echo "## Strata vs Mooncake Store, $CLIENTS clients, $(nproc) cores, $(date -u +%Y-%m-%d), medians of $ROUNDS rounds"
echo
echo "load average (1/5/15 min) before: $LOAD_BEFORE, after: $LOAD_AFTER; 1-min load at each round's start and at the end:$LOADS"
echo
echo "| value | op | Mooncake ops/s | p50 ms | p99 ms | p999 ms | Strata same-host ops/s | p50 ms | p99 ms | p999 ms | vs Mooncake | Strata over tcp ops/s | p50 ms | p99 ms | p999 ms | vs Mooncake |"
echo "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
for size in $SIZES; do
  for op in $OPS; do
    echo "| $size | ${op^^} | $(cell "$op-$size-mooncake") | $(cell "$op-$size-strata") | $(ratio "$(med "$op-$size-strata" 2)" "$(med "$op-$size-mooncake" 2)") | $(cell "$op-$size-tcp") | $(ratio "$(med "$op-$size-tcp" 2)" "$(med "$op-$size-mooncake" 2)") |"
  done
done

if [ "$SINGLE" = "1" ]; then
  echo
  echo "## Single stream: 1 client, 8 MiB gets, bytes verified (default transports) vs memcpy"
  echo
  s_ops="$(med single-8MiB 2)"
  s_gbs="$(awk -v o="$s_ops" 'BEGIN{printf "%.2f", o * 8388608 / 1e9}')"
  m_gbs="$(med memcpy-8MiB 2)"
  echo "| measurement | ops/s | GB/s | p50 ms | p99 ms | p999 ms |"
  echo "|---|---|---|---|---|---|"
  echo "| strata bench --clients 1 --chunk_bytes 8MiB --get_ratio 1 (working set 256 MiB) | $s_ops | $s_gbs | $(med single-8MiB 3) | $(med single-8MiB 4) | $(med single-8MiB 5) |"
  echo "| memcpy 8 MiB, source cycling over 128 MiB (store_bench BM_Memcpy/8388608) | - | $m_gbs | - | - | - |"
  echo
  echo "single stream / memcpy: $(awk -v a="$s_gbs" -v b="$m_gbs" 'BEGIN{ if (b > 0) printf "%.0f%%", 100 * a / b; else print "-" }')"
fi
echo
echo "raw outputs: $OUT"
