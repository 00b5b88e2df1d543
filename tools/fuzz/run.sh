#!/usr/bin/env bash
# Builds the fuzz targets and runs each for a bounded time on its seed corpus
# (tools/fuzz/corpus/TARGET/, left unchanged: new inputs go to a scratch
# directory). Exits non-zero on the first crash, leak, timeout or sanitizer
# report, leaving the input in .fuzz/artifacts/ to be reproduced with
#   .fuzz/TARGET_fuzzer .fuzz/artifacts/crash-...
# and prints per target the executions run and the coverage reached
# (libFuzzer's cov: edges, ft: features).
#
# Usage: tools/fuzz/run.sh [-t SECONDS_PER_TARGET] [TARGET...]
#   (default 25 s each; targets: trace namespace envelope safetensors
#   llama_config server tenants data_message isolated)
set -uo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
out="${FUZZ_OUT:-$root/.fuzz}"
seconds=25
if [ "${1:-}" = "-t" ]; then seconds="$2"; shift 2; fi
targets=("$@")
[ "${#targets[@]}" -gt 0 ] ||
  targets=(trace namespace envelope safetensors llama_config server tenants data_message isolated)

mkdir -p "$out"
mkdir -p "$out"
"$root/tools/fuzz/build.sh" "${targets[@]}" >"$out/build.log" 2>&1 || {
  cat "$out/build.log"; echo "fuzz: build failed" >&2; exit 1; }

mkdir -p "$out/artifacts"
rc=0
summary=()
for t in "${targets[@]}"; do
  scratch="$out/scratch/$t"
  rm -rf "$scratch" && mkdir -p "$scratch"
  opts=(-max_total_time="$seconds" -timeout=20 -rss_limit_mb=4096 -print_final_stats=1
        -artifact_prefix="$out/artifacts/$t-")
  [ -f "$root/tools/fuzz/$t.dict" ] && opts+=(-dict="$root/tools/fuzz/$t.dict")
  # The node keeps gRPC and UCX state across inputs, which libFuzzer's
  # per-input leak check takes for leaks (and runs every input twice).
  case "$t" in server | isolated) opts+=(-detect_leaks=0) ;; esac
  log="$out/$t.log"
  echo "fuzz: $t for ${seconds}s"
  "$out/${t}_fuzzer" "${opts[@]}" "$scratch" "$root/tools/fuzz/corpus/$t" >"$log" 2>&1
  status=$?
  execs=$(grep -oP 'stat::number_of_executed_units: *\K[0-9]+' "$log" | tail -1)
  cov=$(grep -oP '#[0-9]+\s+DONE\s+cov: \K[0-9]+ ft: [0-9]+' "$log" | tail -1)
  summary+=("$(printf '%-13s execs %-9s cov %s' "$t" "${execs:-?}" "${cov:-?}")")
  if [ "$status" -ne 0 ]; then
    echo "fuzz: $t FAILED (exit $status); the end of its log ($log):" >&2
    grep -v '^#[0-9]' "$log" | tail -40 >&2
    rc=1
    break
  fi
done
printf 'fuzz: %s\n' "${summary[@]}"
exit "$rc"
