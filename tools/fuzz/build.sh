#!/usr/bin/env bash
# Builds the libFuzzer targets with clang (ASan + UBSan + libFuzzer) into
# .fuzz/ at the repository root (or $FUZZ_OUT). Incremental: only what
# changed is compiled again. Usage: tools/fuzz/build.sh [TARGET...]
# (targets: trace namespace envelope safetensors llama_config server tenants
# data_message isolated).
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
out="${FUZZ_OUT:-$root/.fuzz}"
if ! command -v clang++ >/dev/null; then
  echo "fuzz: clang++ not found; run tools/setup.sh (packages clang, libclang-rt-14-dev)" >&2
  exit 1
fi
mkdir -p "$out"
exec make --no-print-directory -f "$root/tools/fuzz/Makefile" ROOT="$root" OUT="$out" \
  -j"$(nproc)" "${@:-all}"
