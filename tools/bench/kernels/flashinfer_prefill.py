#!/usr/bin/env python3
"""FlashInfer baseline for prefill_bench: the same prefills with FlashInfer's
BatchPrefillWithPagedKVCacheWrapper over a paged KV cache.

For each config SHAPE:HISTORY:NEW (same syntax, shapes and inputs as
torch_prefill.py: same generator seeds, so the same random pools and
queries), one sequence of HISTORY cached tokens plus NEW new tokens whose K/V
sit in the pages after the history (last page partial), 64-token pages. The
pool is [page][k|v][kv_head][64][head_dim], the store's chunk-slice layout,
which is FlashInfer's "HND" paged layout: FlashInfer reads it in place, page
table = chunk indices, no gather. Mask: new token i sees KV tokens
0 .. HISTORY + i (FlashInfer's causal mask for qo_len < kv_len is aligned to
the end, which is this mask).

Backends (--backends):
  fa3       backend="fa3" (the sm_90 kernels), pos_encoding_mode="NONE";
  fa2       backend="fa2", pos_encoding_mode="NONE";
  fa2_rope  backend="fa2", pos_encoding_mode="ROPE_LLAMA" (rotate half,
            theta 500000): keys and queries rotated inside the kernel.
RoPE is OFF for fa3 and fa2: keys and queries are used as stored. The store
keeps keys unrotated, so a FlashInfer user with this store pays a separate
rotation pass that these rows do not include (fa2_rope shows FlashInfer's own
in-kernel rotation; FA3 has no in-kernel RoPE). Strata's prefill_bench times
RoPE on by default (--no-rope for the like-for-like comparison).

Time: CUDA events around CUDA-graph replays of wrapper.run() (one graph per
KV copy, captured on a wrapper built with use_cuda_graph=True), median of 5
repetitions of ITERS replays, rotating over up to 4 copies of the KV (as many
as reach 256 MiB, as prefill_bench) so that replays miss in L2. plan() is
host work done once per batch layout (shared by all layers) and is not in
the time; its host wall time is reported (plan_us). If capture fails, eager
back-to-back calls are timed instead and the row says "eager". The output of
the timed path (graph replay or eager call) on copy 0 is checked against
torch SDPA with an explicit boolean mask (rel err; nan where the mask does
not fit, as torch_prefill.py).

FlashInfer JIT-compiles each (backend, dtype, RoPE) module with nvcc at first
use (minutes). The cache goes under --workdir (FLASHINFER_WORKSPACE_BASE,
TVM_FFI_CACHE_DIR, TRITON_CACHE_DIR); a compile failure is reported for that
backend and dtype, whose rows get status "failed", and the run goes on.
"""
import argparse
import math
import os
import shutil
import sys
import time
import traceback

import torch

from torch_baseline import copies_for, median, time_launches
from torch_prefill import SHAPES, THETA, TPC, masked_sdpa, rope

BACKENDS = {
    # name: (FlashInfer backend, pos_encoding_mode)
    "fa3": ("fa3", "NONE"),
    "fa2": ("fa2", "NONE"),
    "fa2_rope": ("fa2", "ROPE_LLAMA"),
}
SHAPE_NAMES = ("gqa_bf16", "mha_fp16")
WORKSPACE_BYTES = 256 << 20
CSV_HEADER = ("shape,history,new,flashinfer_us,backend,pos_encoding,timing,tflops,plan_us,"
              "rel_err_vs_masked_sdpa,status\n")


def default_configs():
    return ",".join(f"{s}:{h}:{n}" for s in SHAPE_NAMES for h in (1024, 4096, 16384, 32768)
                    for n in (1, 128, 512, 2048))


def parse_configs(text):
    out = []
    for c in text.split(","):
        if not c:
            continue
        parts = c.split(":")
        if len(parts) != 3 or parts[0] not in SHAPE_NAMES:
            raise ValueError(f"bad config {c!r} (SHAPE:HISTORY:NEW, SHAPE one of "
                             f"{', '.join(SHAPE_NAMES)})")
        try:
            h, n = int(parts[1]), int(parts[2])
        except ValueError:
            raise ValueError(f"bad config {c!r}: HISTORY and NEW must be integers") from None
        if h < 0 or n < 1:
            raise ValueError(f"bad config {c!r}: HISTORY >= 0 and NEW >= 1")
        out.append((parts[0], h, n))
    if not out:
        raise ValueError("no configs")
    return out


def parse_backends(text):
    names = [b for b in text.split(",") if b]
    for b in names:
        if b not in BACKENDS:
            raise ValueError(f"unknown backend {b!r} (one of {', '.join(BACKENDS)})")
    if not names:
        raise ValueError("no backends")
    return names


def setup_environment(workdir):
    """Points every JIT cache at a writable place and makes nvcc and ninja
    findable; must run before flashinfer (and tvm_ffi) are imported."""
    os.makedirs(workdir, exist_ok=True)
    os.environ.setdefault("FLASHINFER_WORKSPACE_BASE", workdir)
    os.environ.setdefault("TVM_FFI_CACHE_DIR", os.path.join(workdir, "tvm-ffi"))
    os.environ.setdefault("TRITON_CACHE_DIR", os.path.join(workdir, "triton"))
    if "CUDA_HOME" not in os.environ and "CUDA_PATH" not in os.environ:
        if os.path.exists("/usr/local/cuda/bin/nvcc"):
            os.environ["CUDA_HOME"] = "/usr/local/cuda"
    cuda_bin = os.path.join(os.environ.get("CUDA_HOME", "/usr/local/cuda"), "bin")
    if shutil.which("nvcc") is None and os.path.isdir(cuda_bin):
        os.environ["PATH"] = cuda_bin + os.pathsep + os.environ.get("PATH", "")
    if shutil.which("ninja") is None:
        try:
            import ninja  # the PyPI package ships the binary
            os.environ["PATH"] = ninja.BIN_DIR + os.pathsep + os.environ.get("PATH", "")
        except ImportError:
            pass
    os.environ.setdefault("MAX_JOBS", str(os.cpu_count() or 8))


class ModuleFailures:
    """Which (backend, dtype) JIT modules were built, and which failed to
    build or load (later configs skip those with the same message)."""

    def __init__(self):
        self.failed = {}
        self.built = set()


def reference(pool, q, history, length, scale, with_rope, inv_freq):
    hkv, d = pool.shape[2], pool.shape[4]
    k = pool[:, 0].permute(1, 0, 2, 3).reshape(hkv, -1, d)[:, :length]
    v = pool[:, 1].permute(1, 0, 2, 3).reshape(hkv, -1, d)[:, :length]
    if with_rope:
        pos = torch.arange(length, device=q.device)
        k = rope(k, pos, inv_freq).to(q.dtype)
        q = rope(q.permute(1, 0, 2), pos[history:], inv_freq).to(q.dtype).permute(1, 0, 2)
    return masked_sdpa(q.contiguous(), k.contiguous(), v.contiguous(), history, scale)


def run_backend(flashinfer, name, shape, history, new, inputs, workspace, failures, iters):
    """Plans and times one backend on one config. Returns a dict of the row."""
    fi_backend, pos_mode = BACKENDS[name]
    hq, hkv, d, dtype = SHAPES[shape]
    length = history + new
    nchunks = -(-length // TPC)
    scale = 1.0 / math.sqrt(d)
    key = (name, str(dtype).replace("torch.", ""))
    row = {"backend": name, "pos_encoding": pos_mode, "timing": "", "us": float("nan"),
           "plan_us": float("nan"), "err": float("nan"), "status": "ok"}
    if key in failures.failed:
        row["status"] = "failed: " + failures.failed[key]
        return row
    dev = "cuda"
    qo_indptr = torch.tensor([0, new], dtype=torch.int32, device=dev)
    kv_indptr = torch.tensor([0, nchunks], dtype=torch.int32, device=dev)
    kv_indices = torch.arange(nchunks, dtype=torch.int32, device=dev)
    last_len = torch.tensor([length - (nchunks - 1) * TPC], dtype=torch.int32, device=dev)
    plan_kwargs = dict(causal=True, pos_encoding_mode=pos_mode, sm_scale=scale,
                       q_data_type=dtype, kv_data_type=dtype)
    if pos_mode == "ROPE_LLAMA":
        plan_kwargs.update(rope_theta=THETA, rope_scale=1.0)
    plan_args = (qo_indptr, kv_indptr, kv_indices, last_len, hq, hkv, d, TPC)
    try:
        wrapper = flashinfer.BatchPrefillWithPagedKVCacheWrapper(
            workspace, "HND", use_cuda_graph=True,
            qo_indptr_buf=torch.empty_like(qo_indptr),
            paged_kv_indptr_buf=torch.empty_like(kv_indptr),
            paged_kv_indices_buf=torch.empty_like(kv_indices),
            paged_kv_last_page_len_buf=torch.empty_like(last_len),
            backend=fi_backend)
        first = key not in failures.built
        if first:
            print(f"  FlashInfer {name} ({key[1]}, pos_encoding {pos_mode}): first use, "
                  f"JIT compile / load of its module...", flush=True)
        t0 = time.perf_counter()
        wrapper.plan(*plan_args, **plan_kwargs)
        torch.cuda.synchronize()
        if first:
            print(f"  FlashInfer {name} ({key[1]}): module ready in "
                  f"{time.perf_counter() - t0:.1f} s (compile + load + first plan)", flush=True)
            failures.built.add(key)
    except Exception as e:  # noqa: BLE001
        msg = f"{type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else ''}"
        print(f"  ERROR: FlashInfer backend {name} ({key[1]}) failed to build, load or "
              f"plan: {msg}", flush=True)
        log = os.path.join(os.environ["FLASHINFER_WORKSPACE_BASE"], f"error_{name}_{key[1]}.log")
        with open(log, "w") as f:
            traceback.print_exc(file=f)
        print(f"  (full traceback and compiler output in {log})", flush=True)
        failures.failed[key] = msg.replace(",", ";")[:200]
        row["status"] = "failed: " + failures.failed[key]
        return row
    try:
        # plan() host time (after the module is loaded): median of 3.
        ts = []
        for _ in range(3):
            t0 = time.perf_counter()
            wrapper.plan(*plan_args, **plan_kwargs)
            ts.append((time.perf_counter() - t0) * 1e6)
        row["plan_us"] = median(ts)
        outs = [torch.empty(new, hq, d, dtype=dtype, device=dev) for _ in inputs]
        timed = [(pool, q, o) for (pool, q), o in zip(inputs, outs)]
        us, mode, run, graphs = time_launches(
            lambda pool, q, o: wrapper.run(q, pool, out=o), timed, iters)
        row["us"], row["timing"] = us, mode
        if new * length * hq <= 2e8:
            outs[0].fill_(float("nan"))
            run(0)  # the timed path itself (graph replay of copy 0)
            torch.cuda.synchronize()
            inv_freq = (THETA ** (-2.0 * torch.arange(d // 2, dtype=torch.float64) / d)
                        ).float().to(dev)
            ref = reference(inputs[0][0], inputs[0][1], history, length, scale,
                            pos_mode == "ROPE_LLAMA", inv_freq).float()
            row["err"] = ((outs[0].float() - ref).norm() / ref.norm()).item()
        del graphs, run
    except Exception as e:  # noqa: BLE001
        msg = f"{type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else ''}"
        print(f"  ERROR: FlashInfer {name} on {shape}:{history}:{new}: {msg}", flush=True)
        traceback.print_exc()
        row["status"] = "failed: " + msg.replace(",", ";")[:200]
    return row


def run_all(flashinfer, configs, backends, iters, csv_path):
    dev = "cuda"
    print(f"{torch.cuda.get_device_name()}; backends {','.join(backends)}; "
          f"RoPE OFF for fa3/fa2 (keys and queries as stored; a user of the store pays a "
          f"separate rotation pass, not timed here); fa2_rope = in-kernel ROPE_LLAMA, "
          f"theta {THETA:g}; times: CUDA events around CUDA-graph replays of run(), median "
          f"of 5 x {iters}, rotating over KV copies; plan() not timed", flush=True)
    workspace = torch.empty(WORKSPACE_BYTES, dtype=torch.uint8, device=dev)
    failures = ModuleFailures()
    with open(csv_path, "w") as f:
        f.write(CSV_HEADER)
        for shape, history, new in configs:
            hq, hkv, d, dtype = SHAPES[shape]
            length = history + new
            nchunks = -(-length // TPC)
            chunk_bytes = 2 * hkv * TPC * d * 2
            copies = copies_for(nchunks * chunk_bytes)
            # Same generator, seed and order as torch_prefill.py: same inputs.
            gen = torch.Generator(device=dev).manual_seed(history * 7 + new)
            inputs = []
            for _ in range(copies):
                pool = torch.randn(nchunks, 2, hkv, TPC, d, device=dev, dtype=dtype,
                                   generator=gen)
                q = torch.randn(new, hq, d, device=dev, dtype=dtype, generator=gen)
                inputs.append((pool, q))
            flops = 4.0 * d * hq * (new * history + new * (new + 1) / 2)
            for name in backends:
                r = run_backend(flashinfer, name, shape, history, new, inputs, workspace,
                                failures, iters)
                tflops = flops / (r["us"] * 1e-6) / 1e12 if r["us"] == r["us"] else float("nan")
                print(f"{shape:9s} hist {history:6d} new {new:5d}  {name:8s} {r['us']:10.1f} us "
                      f"{tflops:6.1f} TFLOP/s [{r['timing'] or '-'}] plan {r['plan_us']:8.1f} us "
                      f"(rel err vs masked sdpa {r['err']:.1e}) {r['status']}", flush=True)
                f.write(f"{shape},{history},{new},{r['us']:.2f},{name},{r['pos_encoding']},"
                        f"{r['timing']},{tflops:.2f},{r['plan_us']:.1f},{r['err']:.3e},"
                        f"{r['status']}\n")
                f.flush()
            del inputs
            torch.cuda.empty_cache()
    failed = sorted(f"{b} ({dt})" for b, dt in failures.failed)
    if failed:
        print(f"backends that failed to build or load: {', '.join(failed)}", flush=True)
    return 0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--configs", default=default_configs(),
                    help="SHAPE:HISTORY:NEW,... (SHAPE gqa_bf16 | mha_fp16; default: both "
                         "shapes x history 1k/4k/16k/32k x new 1/128/512/2048)")
    ap.add_argument("--csv", required=True, help="write one row per config and backend here")
    ap.add_argument("--iters", type=int, default=20, help="graph replays per timed repetition")
    ap.add_argument("--backends", default="fa3,fa2",
                    help="comma-separated: fa3, fa2, fa2_rope (default fa3,fa2)")
    ap.add_argument("--workdir", default=os.path.join(os.getcwd(), ".flashinfer-work"),
                    help="JIT caches and generated sources (default ./.flashinfer-work)")
    args = ap.parse_args()
    try:
        configs = parse_configs(args.configs)
        backends = parse_backends(args.backends)
    except ValueError as e:
        ap.error(str(e))
    iters = max(1, args.iters)
    setup_environment(os.path.abspath(args.workdir))

    t0 = time.perf_counter()
    try:
        import flashinfer
    except Exception as e:  # noqa: BLE001
        print(f"error: cannot import flashinfer ({type(e).__name__}: {e}); unpack "
              ".devpack/flashinfer.tar.xz and put .devpack/flashinfer on PYTHONPATH",
              file=sys.stderr)
        return 2
    print(f"flashinfer {flashinfer.__version__} from {os.path.dirname(flashinfer.__file__)} "
          f"(import {time.perf_counter() - t0:.1f} s); torch {torch.__version__}; "
          f"JIT cache {os.environ['FLASHINFER_WORKSPACE_BASE']}; nvcc {shutil.which('nvcc')}; "
          f"ninja {shutil.which('ninja')}; MAX_JOBS {os.environ['MAX_JOBS']}", flush=True)
    if not torch.cuda.is_available():
        print("error: no CUDA device visible to torch; this benchmark needs the GPU",
              file=sys.stderr)
        return 1
    return run_all(flashinfer, configs, backends, iters, args.csv)


if __name__ == "__main__":
    sys.exit(main())
