#!/usr/bin/env bash
# Strata vs Redis on one machine: GET and SET throughput and p99 latency for
# values of 64 KiB, 1 MiB and 8 MiB at the same concurrency, then a single
# client stream of 8 MiB gets and the fetch latency of 256 KiB slices.
#
#   redis-benchmark -t set,get -d SIZE -c CLIENTS -n N --csv   (one key, so every
#       GET returns the full value; SET overwrites it)
#   strata bench --clients CLIENTS --chunk_bytes SIZE --get_ratio 1 / 0
#       (gets of random prefilled chunks, every byte verified; puts of distinct
#       new keys, so every put moves its bytes), over UCX's default transports
#       (shared memory on one host) and over tcp.
# Both servers keep data in memory only: redis-server with persistence off,
# strata serve --no_nvme. Prints a markdown table; raw outputs stay in $OUT.
#
# usage: tools/bench/redis_compare.sh   (from the repository root)
# env:   CLIENTS=4  SIZES="64KiB 1MiB 8MiB"  DURATION=3s  WARMUP=1s
#        REDIS_BYTES=6GiB (bytes each redis-benchmark test moves; sets -n)
#        STRATA=path/to/strata (default: bazel build //tools:strata)
#        MEMCPY=1 also runs the store benchmark's memcpy figures
#        OUT=directory for raw outputs (default: a new temporary directory)
# Needs redis-server and redis-benchmark (Debian: redis-server, redis-tools).
set -euo pipefail

CLIENTS="${CLIENTS:-4}"
SIZES="${SIZES:-64KiB 1MiB 8MiB}"
DURATION="${DURATION:-3s}"
WARMUP="${WARMUP:-1s}"
REDIS_BYTES="${REDIS_BYTES:-6442450944}"
MEMCPY="${MEMCPY:-0}"
OUT="${OUT:-$(mktemp -d /tmp/strata-redis-compare.XXXXXX)}"
mkdir -p "$OUT"

for tool in redis-server redis-benchmark; do
  command -v "$tool" >/dev/null || { echo "missing $tool: run tools/setup.sh" >&2; exit 1; }
done
if [ -z "${STRATA:-}" ]; then
  bazel build //tools:strata >&2
  STRATA="$(bazel info bazel-bin 2>/dev/null)/tools/strata"
fi
# A private copy, so that a concurrent build cannot replace it mid-run.
cp "$STRATA" "$OUT/strata"
STRATA="$OUT/strata"

bytes() {  # 64KiB -> 65536
  local n="${1%[KMG]iB}"
  case "$1" in
    *KiB) echo $((n << 10)) ;; *MiB) echo $((n << 20)) ;; *GiB) echo $((n << 30)) ;;
    *) echo "$1" ;;
  esac
}

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

REDIS_PID=""
SERVER_PID=""
cleanup() {
  for pid in $REDIS_PID $SERVER_PID; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT

REDIS_PORT="$(free_port)"
redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no \
  --dir "$OUT" --daemonize no >"$OUT/redis-server.log" 2>&1 &
REDIS_PID=$!
"$STRATA" serve --listen 127.0.0.1:0 --port_file "$OUT/port" --no_nvme --dram 2GiB \
  >"$OUT/strata-serve.log" 2>&1 &
SERVER_PID=$!
for _ in $(seq 300); do
  [ -s "$OUT/port" ] && redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 && break
  sleep 0.1
done
[ -s "$OUT/port" ] || { echo "strata serve did not start" >&2; cat "$OUT/strata-serve.log" >&2; exit 1; }
SERVER="127.0.0.1:$(cat "$OUT/port")"

# redis NAME SIZE: "set_rps set_p99 get_rps get_p99"
redis() {
  local size n
  size="$(bytes "$2")"
  n=$((REDIS_BYTES / size))
  [ "$n" -lt 600 ] && n=600
  [ "$n" -gt 100000 ] && n=100000
  redis-benchmark -p "$REDIS_PORT" -t set,get -d "$size" -c "$CLIENTS" -n "$n" --csv \
    >"$OUT/redis-$1.csv" 2>&1
  awk -F'"' '$2=="SET"{s=$4" "$14} $2=="GET"{g=$4" "$14} END{print s" "g}' "$OUT/redis-$1.csv"
}

# strata NAME OP(get|put) FLAGS...: "ops_per_s p99_ms"
strata() {
  local name="$1" op="$2"
  shift 2
  "$STRATA" bench --server "$SERVER" --duration "$DURATION" --warmup "$WARMUP" --noprogress "$@" \
    >"$OUT/strata-$name.txt" 2>&1 || { echo "strata bench $* failed:" >&2; cat "$OUT/strata-$name.txt" >&2; exit 1; }
  awk -v op="$op" '$1==op{print $3" "$6; exit}' "$OUT/strata-$name.txt"
}

ratio() { awk -v a="$1" -v b="$2" 'BEGIN{ if (b > 0) printf "%.2fx", a / b; else print "-" }'; }

echo "## Strata vs Redis, $CLIENTS clients, $(nproc) cores, $(date -u +%Y-%m-%d)"
echo
echo "| value | op | Redis ops/s | Redis p99 ms | Strata shm ops/s | shm p99 ms | shm vs Redis | Strata tcp ops/s | tcp p99 ms | tcp vs Redis |"
echo "|---|---|---|---|---|---|---|---|---|---|"
for size in $SIZES; do
  read -r r_set r_set99 r_get r_get99 <<<"$(redis "$size" "$size")"
  read -r g_shm g_shm99 <<<"$(strata "get-$size-shm" get --clients "$CLIENTS" --chunk_bytes "$size" --get_ratio 1)"
  read -r p_shm p_shm99 <<<"$(strata "put-$size-shm" put --clients "$CLIENTS" --chunk_bytes "$size" --get_ratio 0)"
  read -r g_tcp g_tcp99 <<<"$(strata "get-$size-tcp" get --clients "$CLIENTS" --chunk_bytes "$size" --get_ratio 1 --ucx_transports tcp)"
  read -r p_tcp p_tcp99 <<<"$(strata "put-$size-tcp" put --clients "$CLIENTS" --chunk_bytes "$size" --get_ratio 0 --ucx_transports tcp)"
  echo "| $size | GET | $r_get | $r_get99 | $g_shm | $g_shm99 | $(ratio "$g_shm" "$r_get") | $g_tcp | $g_tcp99 | $(ratio "$g_tcp" "$r_get") |"
  echo "| $size | SET / put | $r_set | $r_set99 | $p_shm | $p_shm99 | $(ratio "$p_shm" "$r_set") | $p_tcp | $p_tcp99 | $(ratio "$p_tcp" "$r_set") |"
done

echo
echo "## Single stream and slices (Strata, default transports)"
echo
echo "| measurement | ops/s | GB/s | p50 ms | p99 ms | p999 ms |"
echo "|---|---|---|---|---|---|"
row() {  # row LABEL NAME OP FLAGS...
  local label="$1" name="$2" op="$3"
  shift 3
  strata "$name" "$op" "$@" >/dev/null
  awk -v op="$op" -v label="$label" \
    '$0 ~ "^"op" " {print "| "label" | "$(NF-5)" | "$(NF-4)" | "$(NF-3)" | "$(NF-2)" | "$(NF-1)" |"; exit}' \
    "$OUT/strata-$name.txt"
}
row "1 client, 8 MiB gets, bytes verified" single-8MiB get --clients 1 --chunk_bytes 8MiB --get_ratio 1
row "1 client, 8 MiB gets, checksum only" single-8MiB-noverify get --clients 1 --chunk_bytes 8MiB --get_ratio 1 --noverify
row "1 client, 256 KiB chunk gets" slice-256KiB get --clients 1 --chunk_bytes 256KiB --get_ratio 1
row "1 client, layer 0 of an 8 MiB chunk in 32 slices of 256 KiB" slice0-8MiB "get slice0" --clients 1 --chunk_bytes 8MiB --slices 32 --get_ratio 1
row "$CLIENTS clients, 256 KiB chunk gets" slice-256KiB-n get --clients "$CLIENTS" --chunk_bytes 256KiB --get_ratio 1

if [ "$MEMCPY" = "1" ]; then
  echo
  echo "## memcpy on this machine (store benchmark)"
  echo
  bazel run //tools/bench/store:store_bench -- --benchmark_filter=Memcpy 2>/dev/null \
    | awk '/Memcpy/ {print "    "$0}'
fi
echo
echo "raw outputs: $OUT"
