#!/usr/bin/env python3
"""The worker runtime against transformers' LlamaForCausalLM, on a GPU machine.

A small Llama (4 layers, hidden 1024, 8 query / 2 KV heads of 128,
intermediate 2816, vocabulary 32000, bf16) with seeded weights is written in
Hugging Face format (config.json + model.safetensors). Then, against a
`strata serve` started here:
  (a) a full prefill: every row of the runtime's logits against transformers';
  (b) a conversation: turn 1 (prompt + 24 greedy tokens) runs on the runtime,
      which saves its chunks to the node; turn 2 (history + a new prompt) runs
      on a fresh runtime that loads the history from the node's DRAM, again
      after a node restart (from NVMe), and recomputing it: the last token's
      logits and 32 greedy tokens against transformers' on the same text.
transformers' LM head is evaluated in fp32 over its bf16 hidden states (as
the runtime's is; see head()). Tolerance (bf16 end to end, written down here
and in the README): per row,
max |logit difference| <= 0.03 x max |logit| of transformers' row; every
decoded token is transformers' choice for the same text or within that
tolerance of it (teacher-forced: near-ties may flip under bf16 rounding, so
free-running greedy sequences are compared but only reported); the tokens
decoded after loading the history from DRAM and from NVMe are the same (the
same bytes); and those decoded after recomputing it equal them up to their
first difference, where the two tokens' logits (transformers', on the same
text) must be within the tolerance of each other: a near-tie. (The loaded
history's K/V are turn 1's, computed by a prefill and decode steps of other
sizes than the recompute's, so they are not the same bits.)

usage: llama_check.py --bin DIR --out DIR   (DIR/strata, DIR/strata_worker)
"""
import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch
from transformers import LlamaConfig, LlamaForCausalLM

TOL = 0.03
TPC = 16


def seeded_model(seed):
    cfg = LlamaConfig(
        vocab_size=32000, hidden_size=1024, intermediate_size=2816, num_hidden_layers=4,
        num_attention_heads=8, num_key_value_heads=2, head_dim=128, rms_norm_eps=1e-5,
        rope_theta=500000.0, max_position_embeddings=8192, tie_word_embeddings=False,
        attention_bias=False, mlp_bias=False)
    torch.manual_seed(seed)
    model = LlamaForCausalLM(cfg)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):
                p.fill_(1.0)
            elif "embed_tokens" in name:
                p.normal_(0.0, 1.0)
            elif name == "lm_head.weight":
                p.normal_(0.0, 4.0 / p.shape[1] ** 0.5)
            else:
                p.normal_(0.0, 1.0 / p.shape[1] ** 0.5)
    return model.to(torch.bfloat16).cuda().eval()


def head(model, hidden):
    """The LM head in fp32 over transformers' bf16 hidden states: the bf16
    logits of LlamaForCausalLM tie often (their spacing is 1/128 of the
    largest), which would make greedy decoding depend on rounding; the
    runtime's head accumulates and returns fp32 the same way."""
    return torch.nn.functional.linear(hidden.float(), model.lm_head.weight.float())


@torch.no_grad()
def hf_logits(model, tokens):
    out = model.model(torch.tensor([tokens], device="cuda"), use_cache=False)
    return head(model, out.last_hidden_state[0]).cpu().numpy()


@torch.no_grad()
def hf_greedy(model, tokens, n):
    """Greedy decoding through transformers' KV cache."""
    ids = torch.tensor([tokens], device="cuda")
    out = model.model(ids, use_cache=True)
    past = out.past_key_values
    logits = head(model, out.last_hidden_state[0, -1])
    gen, margins = [], []
    for _ in range(n):
        top2 = torch.topk(logits, 2).values
        margins.append(float(top2[0] - top2[1]))
        t = int(torch.argmax(logits))
        gen.append(t)
        out = model.model(torch.tensor([[t]], device="cuda"), past_key_values=past, use_cache=True)
        past = out.past_key_values
        logits = head(model, out.last_hidden_state[0, -1])
    return gen, margins


class Node:
    def __init__(self, strata, data_dir, env):
        self.strata, self.data_dir, self.env, self.proc = strata, data_dir, env, None

    def start(self):
        port_file = os.path.join(self.data_dir, "port")
        if os.path.exists(port_file):
            os.remove(port_file)
        self.proc = subprocess.Popen(
            [self.strata, "serve", "--listen=127.0.0.1:0", "--port_file=" + port_file,
             "--data_dir=" + os.path.join(self.data_dir, "data"), "--dram=1GiB", "--nvme=4GiB"],
            env=self.env, stdout=subprocess.DEVNULL, stderr=open(os.path.join(self.data_dir, "serve.log"), "a"))
        for _ in range(600):
            if os.path.exists(port_file) and open(port_file).read().strip():
                self.address = "127.0.0.1:" + open(port_file).read().strip()
                return
            time.sleep(0.01)
        raise RuntimeError("strata serve did not start")

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=60)


def worker_run(args, env, node, model_dir, tokens, work, tag, extra):
    tok_file = os.path.join(work, tag + ".tokens")
    with open(tok_file, "w") as f:
        f.write(" ".join(map(str, tokens)))
    logits_file = os.path.join(work, tag + ".logits")
    gen_file = os.path.join(work, tag + ".gen")
    cmd = [os.path.join(args.bin, "strata_worker"), "run", "--server=" + node.address,
           "--model_dir=" + model_dir, "--tokens_per_chunk=%d" % TPC, "--tokens=" + tok_file,
           "--out_logits=" + logits_file, "--out_tokens=" + gen_file, "--pool=256MiB"] + extra
    r = subprocess.run(cmd, env=env, capture_output=True, text=True)
    print("  [%s] %s" % (tag, (r.stdout.strip() or r.stderr.strip())[-400:]))
    if r.returncode != 0:
        raise RuntimeError("strata_worker run failed: " + r.stderr)
    stats = dict(kv.split("=", 1) for kv in r.stdout.split() if "=" in kv)
    logits = np.fromfile(logits_file, dtype=np.float32).reshape(-1, 32000)
    gen = [int(x) for x in open(gen_file).read().split()]
    return logits, gen, stats


def compare(name, ours, ref, results):
    worst = 0.0
    argmax_same = 0
    for r in range(ref.shape[0]):
        scale = np.abs(ref[r]).max()
        worst = max(worst, float(np.abs(ours[r] - ref[r]).max() / scale))
        argmax_same += int(np.argmax(ours[r]) == np.argmax(ref[r]))
    ok = worst <= TOL
    print("  %-34s rows %4d  max|diff|/max|logit| %.4f  argmax agree %d/%d  %s" % (
        name, ref.shape[0], worst, argmax_same, ref.shape[0], "ok" if ok else "FAIL"))
    results.append((name, ok, worst))


def check_steps(name, model, prompt, gen, results):
    """Every token the runtime decoded against transformers' logits for the
    same text (teacher-forced, so a near-tie earlier cannot derail the
    rest): it must be transformers' choice or within the logit tolerance of
    it."""
    rows = hf_logits(model, prompt + gen)[len(prompt) - 1:len(prompt) - 1 + len(gen)]
    worst, exact = 0.0, 0
    for i, t in enumerate(gen):
        gap = float(rows[i].max() - rows[i][t]) / float(np.abs(rows[i]).max())
        worst = max(worst, gap)
        exact += int(np.argmax(rows[i]) == t)
    ok = worst <= TOL
    print("  %-34s %d steps, %d transformers' argmax, worst gap %.4f of max|logit|  %s" % (
        name, len(gen), exact, worst, "ok" if ok else "FAIL"))
    results.append((name, ok, worst))


def check_loaded_vs_recomputed(model, conv, dram, nvme, recomputed, results):
    """DRAM and NVMe loads decode the same tokens; the recompute the same up
    to a first difference at a near-tie (see the module doc)."""
    ok = dram == nvme
    msg = "DRAM and NVMe loads %s" % ("agree" if ok else "differ")
    if recomputed != dram:
        i = next((i for i, (a, b) in enumerate(zip(dram, recomputed)) if a != b),
                 min(len(dram), len(recomputed)))
        if i < min(len(dram), len(recomputed)):
            row = hf_logits(model, conv + dram[:i])[-1]
            gap = float(abs(row[dram[i]] - row[recomputed[i]])) / float(np.abs(row).max())
            ok = ok and gap <= TOL
            msg += "; recompute differs at %d, where transformers' logits of the two tokens are %.4f of max|logit| apart" % (i, gap)
        else:
            ok = False
            msg += "; recompute decoded %d tokens, loads %d" % (len(recomputed), len(dram))
    else:
        msg += "; recompute the same %d tokens" % len(dram)
    print("  %-34s %s  %s" % ("(b) loaded vs recomputed tokens", msg, "ok" if ok else "FAIL"))
    results.append(("loaded vs recomputed tokens", ok, 0.0))


def compare_tokens(name, ours, ref, margins, results, required=True):
    ok = ours == ref
    msg = "same %d tokens" % len(ref)
    if not ok:
        i = next(i for i in range(min(len(ours), len(ref))) if ours[i] != ref[i]) \
            if any(a != b for a, b in zip(ours, ref)) else min(len(ours), len(ref))
        msg = "differ at %d (transformers' top-2 margin there %.4f)" % (i, margins[i] if i < len(margins) else -1)
    print("  %-34s %s  %s" % (name, msg, "ok" if ok else ("FAIL" if required else "(near-tie; see steps)")))
    results.append((name, ok or not required, 0.0))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    work = tempfile.mkdtemp(prefix="llama_check_")
    env = dict(os.environ)
    env["LD_LIBRARY_PATH"] = os.environ.get("STRATA_LIBS", "")  # our binaries' libraries
    model_dir = os.path.join(work, "small-llama")
    model = seeded_model(args.seed)
    model.save_pretrained(model_dir, safe_serialization=True)
    print("model written:", sorted(os.listdir(model_dir)))
    print(json.load(open(os.path.join(model_dir, "config.json"))))
    rng = np.random.default_rng(args.seed)
    results = []
    node = Node(os.path.join(args.bin, "strata"), work, env)
    node.start()
    try:
        # (a) full prefill, every row.
        tokens = rng.integers(0, 32000, 203).tolist()
        ours, _, _ = worker_run(args, env, node, model_dir, tokens, work, "full",
                                ["--source=none", "--all_logits", "--nosave"])
        compare("(a) full prefill, all rows", ours, hf_logits(model, tokens), results)

        # (b) a conversation: turn 1 on the runtime (its chunks saved).
        prompt1 = rng.integers(0, 32000, 150).tolist()
        ref1, m1 = hf_greedy(model, prompt1, 24)
        ours1, gen1, st1 = worker_run(args, env, node, model_dir, prompt1, work, "turn1",
                                      ["--source=store", "--decode=24"])
        compare("(b) turn 1 last-token logits", ours1, hf_logits(model, prompt1)[-1:], results)
        check_steps("(b) turn 1 decode steps", model, prompt1, gen1, results)
        compare_tokens("(b) turn 1 greedy 24 vs transformers'", gen1, ref1, m1, results, required=False)
        conv = prompt1 + ref1 + rng.integers(0, 32000, 37).tolist()
        want = hf_logits(model, conv)[-1:]
        want_gen, margins = hf_greedy(model, conv, 32)
        gens = {}
        for tag, extra in (("turn2-dram", ["--source=store"]), ("turn2-recompute", ["--source=none"])):
            ours2, gen2, st2 = worker_run(args, env, node, model_dir, conv, work, tag,
                                          extra + ["--decode=32", "--nosave"])
            if tag == "turn2-dram" and int(st2["loaded_tokens"]) == 0:
                results.append((tag + " loaded nothing", False, 0.0))
            compare("(b) %s last-token logits" % tag, ours2, want, results)
            check_steps("(b) %s decode steps" % tag, model, conv, gen2, results)
            compare_tokens("(b) %s greedy 32 vs transformers'" % tag, gen2, want_gen, margins, results,
                           required=False)
            gens[tag] = gen2
        node.stop()
        node.start()
        ours3, gen3, st3 = worker_run(args, env, node, model_dir, conv, work, "turn2-nvme",
                                      ["--source=store", "--decode=32", "--nosave"])
        if int(st3["loaded_tokens"]) == 0:
            results.append(("turn2-nvme loaded nothing", False, 0.0))
        compare("(b) turn2-nvme last-token logits", ours3, want, results)
        check_steps("(b) turn2-nvme decode steps", model, conv, gen3, results)
        check_loaded_vs_recomputed(model, conv, gens["turn2-dram"], gen3,
                                   gens["turn2-recompute"], results)
    finally:
        node.stop()
    failed = [r for r in results if not r[1]]
    with open(os.path.join(args.out, "llama_check.json"), "w") as f:
        json.dump([{"check": n, "ok": ok, "max_rel_diff": d} for n, ok, d in results], f, indent=1)
    print("llama_check: %d checks, %d failed" % (len(results), len(failed)))
    shutil.rmtree(work, ignore_errors=True)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
