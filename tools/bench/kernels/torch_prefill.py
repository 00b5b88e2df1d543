#!/usr/bin/env python3
"""PyTorch baseline for prefill_bench: the same prefills with torch SDPA.

For each config SHAPE:HISTORY:NEW (same syntax and shapes as prefill_bench),
the KV sits in chunk slices of the store's layout ([chunk][k|v][kv_head]
[64][head_dim], unrotated keys), as the kernel reads it. PyTorch needs it
contiguous, so the timed function does what a runtime built on SDPA would:
  1. gather: index_select the sequence's chunks by its page table and copy K
     and V to [kv_head][token][head_dim];
  2. RoPE (rotate half, theta 500000, fp32 math) on the gathered keys and the
     queries;
  3. attention with PyTorch's flash attention, split so that the flash
     backend handles the mask: the queries over the history (no mask; GQA
     group folded into the query rows, so K/V are read once per KV head),
     and the queries over the new tokens (is_causal on the square block, K/V
     of the new tokens repeated per query head), both returning their
     log-sum-exp, merged exactly in fp32.
total_us times 1-3, attn_us times 3 alone on pre-gathered, pre-rotated
inputs. Times: CUDA-graph replays (median of 5 repetitions of ITERS replays,
rotating over copies of the KV, as torch_baseline.py). The result is checked
against SDPA with an explicit boolean mask where that fits in memory.
"""
import argparse
import math
import sys

import torch
import torch.nn.functional as F

from torch_baseline import copies_for, flash, time_us

SHAPES = {
    "mha_fp16": (32, 32, 128, torch.float16),
    "gqa_bf16": (32, 8, 128, torch.bfloat16),
}
TPC = 64
THETA = 500000.0


def rope(x, pos, inv_freq):
    # x [..., L, d] (any dtype), pos [L] int: rotate half in fp32.
    f = pos.float()[:, None] * inv_freq[None, :]
    cos, sin = torch.cos(f), torch.sin(f)
    x = x.float()
    h = x.shape[-1] // 2
    x1, x2 = x[..., :h], x[..., h:]
    return torch.cat([x1 * cos - x2 * sin, x2 * cos + x1 * sin], dim=-1)


def attend(q, k, v, history, group, scale):
    # q [N, hq, d] (rotated); k, v [hkv, L, d] (rotated keys). Returns [N, hq, d].
    n, hq, d = q.shape
    hkv = k.shape[0]
    qn = q.permute(1, 0, 2).unsqueeze(0)  # [1, hq, N, d]
    kn = k[:, history:].repeat_interleave(group, dim=0).unsqueeze(0)
    vn = v[:, history:].repeat_interleave(group, dim=0).unsqueeze(0)
    r = torch.ops.aten._scaled_dot_product_flash_attention(qn, kn, vn, 0.0, True, False, scale=scale)
    o_n, lse_n = r[0][0], r[1][0]  # [hq, N, d], [hq, N]
    if history == 0:
        return o_n.permute(1, 0, 2)
    qh = q.view(n, hkv, group, d).permute(1, 0, 2, 3).reshape(1, hkv, n * group, d)
    o_h, lse_h = flash(qh, k[None, :, :history], v[None, :, :history], scale)
    o_h = o_h[0].view(hkv, n, group, d).permute(0, 2, 1, 3).reshape(hq, n, d)
    lse_h = lse_h[0].view(hkv, n, group).permute(0, 2, 1).reshape(hq, n)
    m = torch.maximum(lse_h, lse_n)
    wh = torch.exp(lse_h - m).unsqueeze(-1)
    wn = torch.exp(lse_n - m).unsqueeze(-1)
    out = (o_h.float() * wh + o_n.float() * wn) / (wh + wn)
    return out.to(q.dtype).permute(1, 0, 2)


def gather_rope_attend(pool, pages, q, length, history, group, scale, inv_freq):
    hkv, d = pool.shape[2], pool.shape[4]
    kv = pool.index_select(0, pages)  # [C, 2, hkv, 64, d]
    k = kv[:, 0].permute(1, 0, 2, 3).reshape(hkv, -1, d)[:, :length]
    v = kv[:, 1].permute(1, 0, 2, 3).reshape(hkv, -1, d)[:, :length].contiguous()
    pos = torch.arange(length, device=q.device)
    k = rope(k, pos, inv_freq).to(q.dtype)
    qr = rope(q.permute(1, 0, 2), pos[history:], inv_freq).to(q.dtype).permute(1, 0, 2).contiguous()
    return attend(qr, k, v, history, group, scale)


def masked_sdpa(q, k, v, history, scale):
    # Reference: SDPA with an explicit mask (math / efficient backends).
    n = q.shape[0]
    length = k.shape[1]
    i = torch.arange(n, device=q.device)[:, None]
    j = torch.arange(length, device=q.device)[None, :]
    mask = j <= history + i
    o = F.scaled_dot_product_attention(q.permute(1, 0, 2)[None], k[None], v[None], attn_mask=mask,
                                       scale=scale, enable_gqa=k.shape[0] != q.shape[1])
    return o[0].permute(1, 0, 2)


def run_config(shape, history, new, iters):
    hq, hkv, d, dtype = SHAPES[shape]
    group = hq // hkv
    scale = 1.0 / math.sqrt(d)
    dev = "cuda"
    length = history + new
    nchunks = -(-length // TPC)
    inv_freq = (THETA ** (-2.0 * torch.arange(d // 2, dtype=torch.float64) / d)).float().to(dev)
    chunk_bytes = 2 * hkv * TPC * d * 2
    copies = copies_for(nchunks * chunk_bytes)
    gen = torch.Generator(device=dev).manual_seed(history * 7 + new)
    pages = torch.arange(nchunks, device=dev)
    inputs, pre = [], []
    for _ in range(copies):
        pool = torch.randn(nchunks, 2, hkv, TPC, d, device=dev, dtype=dtype, generator=gen)
        q = torch.randn(new, hq, d, device=dev, dtype=dtype, generator=gen)
        inputs.append((pool, q))
    total_us, mode = time_us(
        lambda pool, q: gather_rope_attend(pool, pages, q, length, history, group, scale, inv_freq),
        inputs, iters)
    # Attention alone on gathered, rotated inputs.
    for pool, q in inputs:
        kv = pool.index_select(0, pages)
        k = kv[:, 0].permute(1, 0, 2, 3).reshape(hkv, -1, d)[:, :length]
        v = kv[:, 1].permute(1, 0, 2, 3).reshape(hkv, -1, d)[:, :length].contiguous()
        pos = torch.arange(length, device=dev)
        k = rope(k, pos, inv_freq).to(dtype)
        qr = rope(q.permute(1, 0, 2), pos[history:], inv_freq).to(dtype).permute(1, 0, 2).contiguous()
        pre.append((qr, k, v))
    attn_us, _ = time_us(lambda q, k, v: attend(q, k, v, history, group, scale), pre, iters)
    err = float("nan")
    if new * length * hq <= 2e8:
        qr, k, v = pre[0]
        got = gather_rope_attend(inputs[0][0], pages, inputs[0][1], length, history, group, scale, inv_freq)
        ref = masked_sdpa(qr, k, v, history, scale)
        err = ((got.float() - ref.float()).norm() / ref.float().norm()).item()
    del inputs, pre
    torch.cuda.empty_cache()
    return total_us, attn_us, err, mode


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--configs", required=True)
    ap.add_argument("--csv", required=True)
    ap.add_argument("--iters", type=int, default=20)
    args = ap.parse_args()
    print(f"torch {torch.__version__}, {torch.cuda.get_device_name()}", flush=True)
    with open(args.csv, "w") as f:
        f.write("shape,history,new,torch_total_us,torch_attn_us,rel_err_vs_masked_sdpa\n")
        for c in args.configs.split(","):
            if not c:
                continue
            shape, h, n = c.split(":")
            total, attn, err, mode = run_config(shape, int(h), int(n), args.iters)
            print(f"{shape:9s} hist {h:>6s} new {n:>5s}  gather+rope+flash {total:10.1f} us  "
                  f"flash only {attn:10.1f} us [{mode}] (rel err vs masked sdpa {err:.1e})", flush=True)
            f.write(f"{shape},{h},{n},{total:.2f},{attn:.2f},{err:.3e}\n")
            f.flush()


if __name__ == "__main__":
    sys.exit(main())
