#!/usr/bin/env bash
# Runs the GPU tests (attention and prefill kernels; the client's GPU loads
# and saves; the worker runtime's device fetch) and the kernel benchmarks on a
# GPU machine, from binaries built elsewhere with static cudart.
#
# Here (with a CUDA toolkit):
#   tools/gpu/run_gpu.sh package          # bazel build, copy binaries to .devbin/
# On the GPU machine (repository root; PyTorch for the baselines):
#   tools/gpu/run_gpu.sh run [OUTDIR]     # tests, then benchmark + PyTorch
#   tools/gpu/run_gpu.sh sanitize         # GPU tests (a subset) under
#                                         # compute-sanitizer memcheck, racecheck,
#                                         # synccheck and initcheck
# Environment: CONFIGS (SHAPE:PREFIX:BATCH:PRIVATE,...), ITERS, SKIP_TESTS=1,
# VARIANTS (decode plan variants for attention_bench --papers, e.g.
# default,nomerge,interleave,fused,fused+interleave),
# SKIP_BENCH=1, SKIP_NCU=1, GTEST_FILTER; PREFILL_CONFIGS
# (SHAPE:HISTORY:NEW,...; default: the prefill grid of prefill_bench),
# PREFILL_VARIANTS (prefill kernel variants timed side by side; default
# base,r128,w128,g128,g128x128,g128p); ONLY=prefill runs only the prefill test
# (every variant; the wgmma ones, g128, g128x128 and g128p, in a second process),
# benchmark and baseline (about three minutes; `ONLY=prefill
# tools/gpu/run_gpu.sh package` builds and carries just those two binaries),
# ONLY=decode everything but those (`ONLY=decode ... package` builds
# and carries just the decode test and benchmark; then run with SKIP_TESTS or
# GTEST_FILTER as needed: the client tests are not carried), ONLY=runtime only the worker
# runtime's device fetch test (tests/runtime_device_fetch_test: layer-by-layer
# fetch into an HBM chunk pool, and its bandwidth beside a pinned H2D copy)
# under UCX_TLS default and tcp. `ONLY=runtime tools/gpu/run_gpu.sh package`
# builds and carries just that test. ONLY=worker: the worker runtime end to
# end: that test, the model step's decode kernels against its prefill kernel
# and the CPU model (client/runtime/llama_cuda_test), the check against
# transformers (tools/gpu/llama_check.py: logits and greedy tokens of a
# seeded small Llama, full prefill and a conversation loaded back from DRAM
# and NVMe), `strata worker bench` (TTFT; WORKER_BENCH_FLAGS adds flags) and
# `strata worker decode-bench` (decode tokens/s per attention kernel;
# DECODE_BENCH_FLAGS, SKIP_DECODE_BENCH=1); cuBLAS is the GPU machine's.
# ONLY=python: the `strata` Python module's CUDA build against the GPU
# machine's Python, torch and pytest (tests/python_cuda_test.py: loads into
# and saves from CUDA tensors against a real `strata serve`), under UCX_TLS
# default and tcp. Its package step builds the module for that Python from
# its headers, copied here: PY_HEADERS (default /work/py312) holds include/
# (its /usr/include/python3.X) and arch/pyconfig.h (its
# /usr/include/<multiarch>/python3.X/pyconfig.h); PY_EXT_SUFFIX (default
# .cpython-312-x86_64-linux-gnu.so) is its sysconfig EXT_SUFFIX.
set -uo pipefail
cd "$(dirname "$0")/../.."

# Copies a client test binary (an in-process store node, gRPC and UCX) to
# .devbin/ with every Debian library it links and UCX's transport modules.
carry_client_test() {
  local bin="$1" target="$2"
  cp -Lf "$bin/tests/$target" .devbin/ 2>/dev/null || cp -Lf "$bin/$target" .devbin/
  target="$(basename "$target")"
  chmod u+w ".devbin/$target"
  mkdir -p .devbin/lib .devbin/ucx
  # cuBLAS is the GPU machine's own (its toolkit or the nvidia-cublas wheel).
  ldd ".devbin/$target" | awk '/=> \// {print $3}' |
    grep -vE '/(libc|libm|libpthread|libdl|librt|ld-linux[^/]*)\.so|libcublas' |
    xargs -r -I{} cp -Lf {} .devbin/lib/
  cp -Lf /usr/lib/x86_64-linux-gnu/ucx/*.so.0 .devbin/ucx/
}

# Copies the Debian libraries `file` links into `dir`, for a process of the
# GPU machine's (its Python) to load: not glibc, and not libstdc++ and
# libgcc_s, whose newer versions there serve Debian's libraries too and
# would otherwise be shadowed for torch.
carry_libs_for_python() {
  local file="$1" dir="$2"
  mkdir -p "$dir"
  ldd "$file" | awk '/=> \// {print $3}' |
    grep -vE '/(libc|libm|libpthread|libdl|librt|ld-linux[^/]*|libstdc\+\+|libgcc_s)\.so|libcublas' |
    xargs -r -I{} cp -Lf {} "$dir/"
}

# Runs a client test binary under UCX_TLS default and tcp; sets rc=1 on a
# failure.
run_client_test() {
  local target="$1" out="$2" libs="$3" tls test_rc
  for tls in "" tcp; do
    echo "== $target (UCX_TLS=${tls:-default})" >> "$out/$target.log"
    LD_LIBRARY_PATH="$libs" UCX_MODULE_DIR="$PWD/.devbin/ucx" UCX_TLS="$tls" \
      "./.devbin/$target" 2>&1 | tee -a "$out/$target.log" |
      grep -E "^\[  (PASSED|FAILED) |Failure|^fetch|^pinned|^device fetch"
    test_rc=${PIPESTATUS[0]}
    echo "$target (UCX_TLS=${tls:-default}) exit code: $test_rc"
    [[ $test_rc == 0 ]] || rc=1
  done
}

# The full grid of the issue: 2 shapes x prefix 1024..16384 x batch 16..128 x
# private 128 and 512 (80 configs), plus 4096:128:256 of PAPERS.md.
DEFAULT_CONFIGS=""
for shape in mha_fp16 gqa_bf16; do
  for prefix in 1024 2048 4096 8192 16384; do
    for batch in 16 32 64 128; do
      for priv in 128 512; do
        DEFAULT_CONFIGS="${DEFAULT_CONFIGS}${shape}:${prefix}:${batch}:${priv},"
      done
    done
  done
  DEFAULT_CONFIGS="${DEFAULT_CONFIGS}${shape}:4096:128:256,"
done

case "${1:-}" in
  package)
    mkdir -p .devbin
    bin="$(bazel info -c opt bazel-bin)"
    if [[ "${ONLY:-}" == python ]]; then
      headers="${PY_HEADERS:-/work/py312}"
      suffix="${PY_EXT_SUFFIX:-.cpython-312-x86_64-linux-gnu.so}"
      pyenv=(--repo_env=STRATA_PYTHON_INCLUDE="$headers/include"
             --repo_env=STRATA_PYTHON_EXT_SUFFIX="$suffix")
      [[ -e "$headers/arch/pyconfig.h" ]] &&
        pyenv+=(--repo_env=STRATA_PYTHON_PYCONFIG="$headers/arch/pyconfig.h")
      bazel build -c opt "${pyenv[@]}" "//client/python:cuda/strata$suffix" //tools:strata ||
        exit 1
      rm -rf .devbin/python .devbin/pylib
      mkdir -p .devbin/python .devbin/ucx
      cp -Lf "$bin/client/python/cuda/strata$suffix" .devbin/python/
      cp -Lf "$bin/tools/strata" .devbin/
      chmod u+w .devbin/python/* .devbin/strata
      carry_libs_for_python ".devbin/python/strata$suffix" .devbin/pylib
      carry_libs_for_python .devbin/strata .devbin/pylib
      cp -Lf /usr/lib/x86_64-linux-gnu/ucx/*.so.0 .devbin/ucx/
      ls -l .devbin/python .devbin/pylib
      exit 0
    fi
    if [[ "${ONLY:-}" == runtime || "${ONLY:-}" == worker ]]; then
      bazel build -c opt //tests:runtime_device_fetch_test || exit 1
      carry_client_test "$bin" runtime_device_fetch_test
      if [[ "${ONLY:-}" == worker ]]; then
        bazel build -c opt //tools:strata //tools/worker:strata_worker \
          //client/runtime:llama_cuda_test || exit 1
        carry_client_test "$bin" client/runtime/llama_cuda_test
        carry_client_test "$bin" tools/strata
        carry_client_test "$bin" tools/worker/strata_worker
      fi
      ls -l .devbin
      exit 0
    fi
    if [[ "${ONLY:-}" == prefill ]]; then
      # The prefill kernels' test and benchmark alone.
      bazel build -c opt //kernels:prefill_gpu_test //tools/bench/kernels:prefill_bench || exit 1
      cp -Lf "$bin/kernels/prefill_gpu_test" "$bin/tools/bench/kernels/prefill_bench" .devbin/
      chmod u+w .devbin/*
      mkdir -p .devbin/lib
      for b in .devbin/prefill_gpu_test .devbin/prefill_bench; do
        ldd "$b" | awk '/=> \// {print $3}' | grep -E 'libabsl|libgtest|libgmock|libatomic' |
          xargs -r -I{} cp -Lf {} .devbin/lib/
      done
      ls -l .devbin
      exit 0
    fi
    if [[ "${ONLY:-}" == decode ]]; then
      # The decode kernels' test and benchmark alone.
      bazel build -c opt //kernels:attention_gpu_test //tools/bench/kernels:attention_bench || exit 1
      cp -Lf "$bin/kernels/attention_gpu_test" "$bin/tools/bench/kernels/attention_bench" .devbin/
      chmod u+w .devbin/*
      mkdir -p .devbin/lib
      for b in .devbin/attention_gpu_test .devbin/attention_bench; do
        ldd "$b" | awk '/=> \// {print $3}' | grep -E 'libabsl|libgtest|libgmock|libatomic' |
          xargs -r -I{} cp -Lf {} .devbin/lib/
      done
      ls -l .devbin
      exit 0
    fi
    bazel build -c opt //kernels:attention_gpu_test //tools/bench/kernels:attention_bench \
      //kernels:prefill_gpu_test //tools/bench/kernels:prefill_bench || exit 1
    cp -Lf "$bin/kernels/attention_gpu_test" "$bin/tools/bench/kernels/attention_bench" \
      "$bin/kernels/prefill_gpu_test" "$bin/tools/bench/kernels/prefill_bench" .devbin/
    chmod u+w .devbin/*
    # Debian's shared Abseil / GoogleTest are not on the GPU machine: carry them.
    mkdir -p .devbin/lib
    for b in .devbin/attention_gpu_test .devbin/attention_bench .devbin/prefill_gpu_test \
        .devbin/prefill_bench; do
      ldd "$b" | awk '/=> \// {print $3}' | grep -E 'libabsl|libgtest|libgmock|libatomic' |
        xargs -r -I{} cp -Lf {} .devbin/lib/
    done
    # The client's GPU loads and saves (tests/gpu_client_test) and the worker
    # runtime's device fetch (tests/runtime_device_fetch_test): an in-process
    # store node, gRPC and UCX, so every Debian library they link and UCX's
    # transport modules go with them.
    bazel build -c opt //tests:gpu_client_test //tests:runtime_device_fetch_test || exit 1
    carry_client_test "$bin" gpu_client_test
    carry_client_test "$bin" runtime_device_fetch_test
    ls -l .devbin
    ;;
  run)
    out="${2:-${OUT:-/tmp/strata_gpu}}"
    libs="$PWD/.devbin/lib"  # only for our binaries, not for python
    mkdir -p "$out"
    nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.mem --format=csv
    rc=0
    only="${ONLY:-}"
    if [[ "$only" == python ]]; then
      # The machine's python3 with the module and the Debian libraries it
      # carries; the module is imported before torch (see the test).
      python3 -c 'import sys, numpy, pytest, torch; print("python", sys.version.split()[0],
        "torch", torch.__version__, "cuda", torch.cuda.is_available())' || exit 1
      for tls in "" tcp; do
        work="$out/python_cuda_${tls:-default}"
        rm -rf "$work"
        mkdir -p "$work"
        echo "== python_cuda_test (UCX_TLS=${tls:-default})" | tee -a "$out/python_cuda_test.log"
        LD_LIBRARY_PATH="$PWD/.devbin/pylib" UCX_MODULE_DIR="$PWD/.devbin/ucx" UCX_TLS="$tls" \
          PYTHONPATH="$PWD/.devbin/python:$PWD/tests" STRATA_BINARY="$PWD/.devbin/strata" \
          STRATA_WORK="$work" STRATA_REQUIRE_CUDA=1 python3 -m pytest -v -p no:cacheprovider tests/python_cuda_test.py 2>&1 |
          tee -a "$out/python_cuda_test.log" | grep -E "PASSED|FAILED|SKIPPED|ERROR|Error|passed|failed"
        [[ ${PIPESTATUS[0]} == 0 ]] || rc=1
      done
      exit $rc
    fi
    if [[ "$only" == runtime ]]; then
      run_client_test runtime_device_fetch_test "$out" "$libs"
      exit $rc
    fi
    if [[ "$only" == worker ]]; then
      # cuBLAS from the machine's CUDA toolkit or the nvidia-cublas wheel.
      cublas=""
      for d in /usr/local/cuda/lib64 \
          "$(python3 -c 'import nvidia.cublas, os; print(os.path.join(list(nvidia.cublas.__path__)[0], "lib"))' 2>/dev/null)"; do
        if [[ -n "$d" && -e "$d/libcublas.so.13" ]]; then cublas="$d"; break; fi
      done
      echo "cuBLAS from: ${cublas:-not found}"
      export LD_LIBRARY_PATH="$libs${cublas:+:$cublas}" UCX_MODULE_DIR="$PWD/.devbin/ucx"
      if [[ "${SKIP_TESTS:-0}" != 1 ]]; then
        ./.devbin/runtime_device_fetch_test 2>&1 | tee "$out/runtime_device_fetch_test.log" |
          grep -E "^\[  (PASSED|FAILED) |Failure|^fetch|^pinned|^device fetch"
        [[ ${PIPESTATUS[0]} == 0 ]] || rc=1
        ./.devbin/llama_cuda_test 2>&1 | tee "$out/llama_cuda_test.log" |
          grep -E "^\[  (PASSED|FAILED) |Failure|^llama_cuda|worst row|near-tie|[A-Z_]{6,}: "
        [[ ${PIPESTATUS[0]} == 0 ]] || rc=1
        # Python is the machine's own: our libraries only for our binaries.
        ourlibs="$LD_LIBRARY_PATH"
        LD_LIBRARY_PATH= PYTHONUNBUFFERED=1 STRATA_LIBS="$ourlibs" \
          python3 tools/gpu/llama_check.py --bin "$PWD/.devbin" --out "$out" 2>&1 |
          tee "$out/llama_check.log" || rc=1
      fi
      if [[ "${SKIP_BENCH:-0}" != 1 ]]; then
        ./.devbin/strata_worker bench --strata="$PWD/.devbin/strata" ${WORKER_BENCH_FLAGS:-} 2>&1 |
          tee "$out/worker_bench.md" || rc=1
      fi
      if [[ "${SKIP_DECODE_BENCH:-0}" != 1 ]]; then
        ./.devbin/strata_worker decode-bench --strata="$PWD/.devbin/strata" \
          ${DECODE_BENCH_FLAGS:-} 2>&1 | tee "$out/decode_bench.md" || rc=1
      fi
      exit $rc
    fi
    decode=1 prefill=1
    [[ "$only" == prefill ]] && decode=0
    [[ "$only" == decode ]] && prefill=0
    if [[ "${SKIP_TESTS:-0}" != 1 && $prefill == 1 ]]; then
      # The mma.sync variants, then the wgmma ones in a process of their own
      # (a device fault there cannot take the others' results with it).
      for group in base,r128,w128:prefill_gpu_test g128,g128x128,g128p:prefill_gpu_test_wgmma; do
        # The whole log first, then a summary (a pipe into head would end
        # the test early).
        PREFILL_VARIANTS="${group%%:*}" LD_LIBRARY_PATH="$libs" timeout 300 \
          ./.devbin/prefill_gpu_test --gtest_filter="${GTEST_FILTER:-*}" \
          > "$out/${group##*:}.log" 2>&1
        test_rc=$?
        grep -E "^\[  (PASSED|FAILED) |^\[  FAILED|Failure" "$out/${group##*:}.log" | head -80
        echo "prefill_gpu_test (variants ${group%%:*}) exit code: $test_rc"
        [[ $test_rc == 0 ]] || rc=1
      done
    fi
    if [[ "${SKIP_BENCH:-0}" != 1 && $prefill == 1 ]]; then
      pconfigs=()
      [[ -n "${PREFILL_CONFIGS:-}" ]] && pconfigs=(--configs="$PREFILL_CONFIGS")
      pvariants="${PREFILL_VARIANTS:-base,r128,w128,g128,g128x128,g128p}"
      if ! LD_LIBRARY_PATH="$libs" timeout 400 ./.devbin/prefill_bench "${pconfigs[@]}" \
          --iters="${ITERS:-20}" --variants="$pvariants" \
          --csv="$out/prefill.csv" 2>&1 | tee "$out/prefill_bench.log"; then
        rc=1
        mvariants="$(echo "$pvariants" | tr ',' '\n' | grep -v '^g128' | paste -sd,)"
        if [[ "$mvariants" != "$pvariants" && -n "$mvariants" ]]; then  # without wgmma
          LD_LIBRARY_PATH="$libs" timeout 400 ./.devbin/prefill_bench "${pconfigs[@]}" \
            --iters="${ITERS:-20}" --variants="$mvariants" \
            --csv="$out/prefill_mma.csv" 2>&1 | tee "$out/prefill_bench_mma.log"
        fi
      fi
      pdefault="$(LD_LIBRARY_PATH="$libs" ./.devbin/prefill_bench --print-configs)"
      PYTHONUNBUFFERED=1 python3 tools/bench/kernels/torch_prefill.py \
        --configs="${PREFILL_CONFIGS:-$pdefault}" --iters="${ITERS:-20}" \
        --csv="$out/torch_prefill.csv" 2>&1 | tee "$out/torch_prefill.log" || rc=1
    fi
    [[ $decode == 1 ]] || exit $rc
    if [[ "${SKIP_TESTS:-0}" != 1 ]]; then
      # The whole log first, then a summary (a pipe into head would end the
      # test early).
      LD_LIBRARY_PATH="$libs" ./.devbin/attention_gpu_test --gtest_filter="${GTEST_FILTER:-*}" \
        > "$out/gpu_test.log" 2>&1
      test_rc=$?
      grep -E "^\[  (PASSED|FAILED) |^\[  FAILED|Failure|Expected|Which is" "$out/gpu_test.log" |
        head -80
      echo "attention_gpu_test exit code: $test_rc"
      [[ $test_rc == 0 ]] || rc=1
    fi
    if [[ "${SKIP_TESTS:-0}" != 1 && -x .devbin/gpu_client_test ]]; then
      run_client_test gpu_client_test "$out" "$libs"
      run_client_test runtime_device_fetch_test "$out" "$libs"
    fi
    if [[ -n "${VARIANTS:-}" ]]; then
      # The decode variants side by side on the 16 configs of the H200 table
      # and the tree workload (attention_bench --papers).
      LD_LIBRARY_PATH="$libs" ./.devbin/attention_bench --papers --variants="$VARIANTS" \
        --iters="${ITERS:-30}" --csv="$out/variants.csv" 2>&1 | tee "$out/variants.log" || rc=1
    fi
    if [[ "${SKIP_BENCH:-0}" != 1 ]]; then
      configs="${CONFIGS:-$DEFAULT_CONFIGS}"
      LD_LIBRARY_PATH="$libs" ./.devbin/attention_bench --configs="$configs" --tree --iters="${ITERS:-30}" \
        --csv="$out/ours.csv" 2>&1 | tee "$out/bench.log" || rc=1
      PYTHONUNBUFFERED=1 python3 tools/bench/kernels/torch_baseline.py --configs="$configs" \
        --iters="${ITERS:-30}" --csv="$out/torch.csv" 2>&1 || rc=1
      python3 tools/bench/kernels/make_table.py "$out/ours.csv" "$out/torch.csv" \
        "$out/ours.csv.tree" | tee "$out/table.md"
    fi
    if [[ "${SKIP_NCU:-0}" != 1 ]]; then
      # DRAM bytes and duration of each partial-attention launch (cold caches:
      # ncu flushes them before every profiled kernel). In order: the config
      # below (paged, prefix-aware, relay), then the tree workload (mha_fp16
      # paged, prefix-aware; gqa_bf16 paged, prefix-aware).
      ncu_bin="$(command -v ncu || ls /opt/nvidia/nsight-compute/*/ncu 2>/dev/null | head -1)"
      if [[ -n "$ncu_bin" ]]; then
        LD_LIBRARY_PATH="$libs" "$ncu_bin" --kernel-name regex:'PartialAttention|MergePartials' \
          --metrics gpu__time_duration.sum,dram__bytes_read.sum,dram__throughput.avg.pct_of_peak_sustained_elapsed,sm__pipe_tensor_op_hmma_cycles_active.avg.pct_of_peak_sustained_active \
          ./.devbin/attention_bench --configs="${NCU_CONFIG:-gqa_bf16:4096:32:128}" --tree --profile \
          > "$out/ncu.txt" 2>&1 || rc=1
        grep -E "PartialAttention|MergePartials|gpu__time|dram__bytes|dram__throughput|hmma" "$out/ncu.txt" | \
          sed -E 's/\(int, int, int\)//' | cut -c1-150 | tail -60
      else
        echo "ncu not found"
      fi
    fi
    exit $rc
    ;;
  sanitize)
    libs="$PWD/.devbin/lib"
    cs="$(command -v compute-sanitizer || echo /usr/local/cuda/bin/compute-sanitizer)"
    filter='Shapes/GpuDecodeTest.*/fp16_d128_kv8_q32_tpc64:Shapes/GpuDecodeTest.*/bf16_d64_kv2_q14_tpc256:Shapes/GpuDecodeTest.*/fp16_d64_kv3_q3_tpc48_rope:GpuMergeStateTest.*:GpuApiTest.*'
    rc=0
    for tool in memcheck racecheck synccheck initcheck; do
      echo "== $tool"
      LD_LIBRARY_PATH="$libs" "$cs" --tool "$tool" --error-exitcode 7 ./.devbin/attention_gpu_test \
        --gtest_filter="$filter" 2>&1 | grep -E "PASSED|FAILED|SUMMARY|=========" | tail -4
      [[ ${PIPESTATUS[0]} == 0 ]] || rc=1
    done
    exit $rc
    ;;
  *)
    echo "usage: $0 package | run [OUTDIR] | sanitize" >&2
    exit 2
    ;;
esac
