#!/usr/bin/env bash
# Scheduler-aware caching on the real store: replays one generated
# multi-turn trace (`strata replay`) against a fresh `strata serve` per
# eviction policy, with DRAM at given fractions of the trace's working set and
# NVMe holding everything, and prints a markdown table.
#
# usage: tools/bench/replay_compare.sh   (from the repository root)
# env:   SESSIONS=200  FRACTIONS="10 25"  STRATA=path/to/strata
#        REPLAY_FLAGS="..." extra flags for strata replay
set -euo pipefail
SESSIONS="${SESSIONS:-200}"
FRACTIONS="${FRACTIONS:-10 25}"
REPLAY_FLAGS="${REPLAY_FLAGS:-}"
if [[ -z "${STRATA:-}" ]]; then
  bazel build //tools:strata >&2
  STRATA="$(bazel info bazel-bin)/tools/strata"
fi
work="$(mktemp -d /tmp/strata-replay.XXXXXX)"
trap 'pkill -TERM -f "port_file $work/" 2>/dev/null || true; rm -rf "$work"' EXIT
CHUNK=16384  # strata replay's default namespace: 64 tokens x 1 layer x 1 head x d64 fp16

serve() {  # serve NAME DRAM_BYTES POLICY -> prints the port
  rm -f "$work/$1.port"
  "$STRATA" serve --listen 127.0.0.1:0 --port_file "$work/$1.port" --data_dir "$work/$1.db" \
    --dram "$2" --nvme 4GiB --dram_policy "$3" > "$work/$1.serve.log" 2>&1 &
  for _ in $(seq 100); do [[ -s "$work/$1.port" ]] && break; sleep 0.1; done
  cat "$work/$1.port"
}
stop() { pkill -TERM -f "port_file $work/$1.port" || true; sleep 0.5; }

# The working set: every chunk the trace stores, with DRAM large enough.
port=$(serve ws 1GiB lru)
"$STRATA" replay --server "127.0.0.1:$port" --sessions "$SESSIONS" --hints=false $REPLAY_FLAGS > "$work/ws.log"
chunks=$("$STRATA" stats --server "127.0.0.1:$port" | awk '/^index_entries:/ {print $2}')
stop ws
echo "working set: $chunks chunks of $CHUNK bytes ($SESSIONS sessions)" >&2

echo "| DRAM (% of working set) | policy | hints | DRAM hit | NVMe hit | miss | NVMe bytes read | prefetch precision | TTFT mean ms | TTFT p99 ms |"
echo "|---|---|---|---|---|---|---|---|---|---|"
for frac in $FRACTIONS; do
  dram=$(( chunks * CHUNK * frac / 100 ))
  for run in "lru false" "prefix-lru false" "scheduler false" "scheduler true"; do
    set -- $run
    name="${1}-${2}-${frac}"
    port=$(serve "$name" "$dram" "$1")
    "$STRATA" replay --server "127.0.0.1:$port" --sessions "$SESSIONS" --hints="$2" $REPLAY_FLAGS \
      > "$work/$name.log"
    stop "$name"
    awk -v frac="$frac" -v pol="$1" -v hints="$2" '
      /chunks needed/ { gsub(/[:,%]/, " "); dram=$5; nvme=$7; miss=$9 }
      /bytes read from NVMe/ { for (i = 1; i <= NF; ++i) if ($i == "NVMe") nv=$(i+1) }
      /prefetch precision/ { p=$3 }
      /TTFT ms/ { gsub(/,/, ""); mean=$4; p99=$8 }
      END { printf "| %s%% | %s | %s | %s%% | %s%% | %s%% | %s | %s | %s | %s |\n", frac, pol, hints, dram, nvme, miss, nv, (hints == "true" ? p : "-"), mean, p99 }
    ' "$work/$name.log"
  done
done
