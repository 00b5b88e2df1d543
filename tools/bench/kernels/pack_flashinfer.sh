#!/usr/bin/env bash
# Packs FlashInfer (flashinfer-python 0.7.4) and its FFI runtime
# (apache-tvm-ffi, cp312 manylinux x86_64) into .devpack/flashinfer.tar.xz, a
# tree usable through PYTHONPATH on a machine without pip or network, for
# tools/bench/kernels/flashinfer_prefill.py.
#
#   tools/bench/kernels/pack_flashinfer.sh            # here (needs pip, unzip, xz)
#   tar -xJf .devpack/flashinfer.tar.xz               # there, in the repo root:
#                                                     # makes .devpack/flashinfer/
#   PYTHONPATH=.devpack/flashinfer python3 tools/bench/kernels/flashinfer_prefill.py ...
#
# WHEEL_DIR (default /work/.whl-flashinfer) holds the two wheels; missing ones
# are fetched there with `pip download`. What is dropped from the wheel:
#   - every subfolder of flashinfer/data/csrc/ (sources of other kernels: MoE,
#     GEMM, comm, trtllm-gen, ...). The batch prefill JIT
#     (flashinfer/jit/attention/modules.py, gen_customize_batch_prefill_module)
#     reads only top-level files of data/csrc/: batch_prefill{,_paged,_sm90}*.cu,
#     *_jit_binding.cu, batch_prefill_paged.cuh, the batch_prefill*.jinja
#     templates and tvm_ffi_utils.h, plus the headers of data/include,
#     data/cutlass, data/cccl and data/spdlog (include paths from
#     flashinfer/jit/cpp_ext.py), all kept; the script checks that each named
#     file is in the pack;
#   - flashinfer/experimental (Python kernels of unrelated ops, 80 MB), the
#     largest Python-only folder, only when nothing that `import flashinfer`
#     runs imports it (checked by grep below; kept otherwise);
#   - __pycache__ folders.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/../../.." && pwd)"
WHEEL_DIR="${WHEEL_DIR:-/work/.whl-flashinfer}"
FI_VERSION="0.7.4"
OUT_DIR="$ROOT/.devpack"
OUT="$OUT_DIR/flashinfer.tar.xz"
MAX_BYTES=$((40 * 1024 * 1024))

mkdir -p "$WHEEL_DIR" "$OUT_DIR"
fi_whl=$(ls "$WHEEL_DIR"/flashinfer_python-"$FI_VERSION"-*.whl 2>/dev/null | head -1 || true)
if [[ -z "$fi_whl" ]]; then
  python3 -m pip download --no-deps -d "$WHEEL_DIR" "flashinfer-python==$FI_VERSION"
  fi_whl=$(ls "$WHEEL_DIR"/flashinfer_python-"$FI_VERSION"-*.whl | head -1)
fi
# The tvm-ffi range flashinfer asks for (Requires-Dist, without extras).
tvm_req=$(unzip -p "$fi_whl" '*/METADATA' | sed -n 's/^Requires-Dist: \(apache-tvm-ffi[^;]*\)$/\1/p' | head -1)
tvm_req="${tvm_req:-apache-tvm-ffi}"
tvm_whl=$(ls "$WHEEL_DIR"/apache_tvm_ffi-*-cp312-*manylinux*x86_64*.whl 2>/dev/null | head -1 || true)
if [[ -z "$tvm_whl" ]]; then
  python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
    --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_24_x86_64 \
    --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d "$WHEEL_DIR" "$tvm_req"
  tvm_whl=$(ls "$WHEEL_DIR"/apache_tvm_ffi-*-cp312-*manylinux*x86_64*.whl | head -1)
fi
echo "flashinfer wheel: $fi_whl"
echo "tvm-ffi wheel:    $tvm_whl (flashinfer requires $tvm_req)"

STAGE=$(mktemp -d)
trap 'rm -rf "$STAGE"' EXIT
TREE="$STAGE/.devpack/flashinfer"   # unpacks (in the repo root) as .devpack/flashinfer
mkdir -p "$TREE"
unzip -q -o "$fi_whl" -d "$TREE"
unzip -q -o "$tvm_whl" -d "$TREE"

CSRC="$TREE/flashinfer/data/csrc"
find "$CSRC" -mindepth 1 -maxdepth 1 -type d -exec rm -rf {} +
# flashinfer/experimental: drop only if no module outside it imports it.
if ! grep -rqE '(from|import) +(flashinfer\.|\.+)experimental' \
     --include='*.py' --exclude-dir=experimental "$TREE/flashinfer"; then
  rm -rf "$TREE/flashinfer/experimental"
  echo "dropped flashinfer/experimental (not imported elsewhere)"
else
  echo "kept flashinfer/experimental (imported by other modules)"
fi
find "$TREE" -name __pycache__ -type d -prune -exec rm -rf {} +

# The sources the FA2 / FA3 batch prefill JIT copies or includes.
needed=(
  batch_prefill.cu batch_prefill_jit_binding.cu
  batch_prefill_paged.cu batch_prefill_paged_jit_binding.cu batch_prefill_paged.cuh
  batch_prefill_customize_config.jinja batch_prefill_paged_kernel_inst.jinja
  batch_prefill_ragged_kernel_inst.jinja
  batch_prefill_sm90.cu batch_prefill_sm90_jit_binding.cu
  batch_prefill_sm90_customize_config.jinja batch_prefill_paged_sm90_kernel_inst.jinja
  batch_prefill_ragged_sm90_kernel_inst.jinja tvm_ffi_utils.h
)
for f in "${needed[@]}"; do
  [[ -f "$CSRC/$f" ]] || { echo "missing data/csrc/$f in the pack" >&2; exit 1; }
done
for d in include cutlass/include spdlog/include cccl/cub cccl/libcudacxx/include cccl/thrust; do
  [[ -d "$TREE/flashinfer/data/$d" ]] || { echo "missing data/$d in the pack" >&2; exit 1; }
done

echo "tree: $(du -sh "$TREE" | cut -f1); compressing (xz -9, 2 threads)..."
tar -C "$STAGE" -cf - .devpack/flashinfer | xz -9 -T2 > "$OUT.tmp"
mv "$OUT.tmp" "$OUT"
size=$(stat -c %s "$OUT")
echo "wrote $OUT: $size bytes ($((size / 1024 / 1024)) MiB)"
if (( size > MAX_BYTES )); then
  echo "error: $OUT is over 40 MiB" >&2
  exit 1
fi
