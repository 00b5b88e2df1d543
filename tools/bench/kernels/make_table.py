#!/usr/bin/env python3
"""Joins attention_bench and torch_baseline CSVs into a markdown table.

usage: make_table.py OURS.csv TORCH.csv [OURS.csv.tree]
Ratios: x floor = time / floor (unique KV bytes over the measured copy
bandwidth; the paged kernel against all of its sequences' bytes).
"""
import csv
import math
import sys


def main():
    ours = {(r["shape"], r["prefix"], r["batch"], r["private"]): r for r in csv.DictReader(open(sys.argv[1]))}
    torch_rows = {(r["shape"], r["prefix"], r["batch"], r["private"]): r for r in csv.DictReader(open(sys.argv[2]))}
    print("| shape | prefix | batch | private | paged us (x own floor) | prefix-aware us (x floor) "
          "| relay us (x floor) | SDPA per request us | PyTorch relay us | floor us "
          "| PyTorch relay / best ours | SDPA / best ours |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for key, r in ours.items():
        t = torch_rows.get(key, {})
        f = float(r["floor_unique_us"])
        fp = float(r["floor_paged_us"])
        pa, tr, rl = float(r["paged_us"]), float(r["prefix_aware_us"]), float(r["relay_us"])
        sd = float(t.get("sdpa_us", "nan"))
        trl = float(t.get("torch_relay_us", "nan"))
        best = min(tr, rl)
        fmt = lambda x: "n/a" if math.isnan(x) else f"{x:.1f}"
        print(f"| {key[0]} | {key[1]} | {key[2]} | {key[3]} | {pa:.1f} ({pa / fp:.2f}x) | {tr:.1f} ({tr / f:.2f}x) "
              f"| {rl:.1f} ({rl / f:.2f}x) | {fmt(sd)} | {fmt(trl)} | {f:.1f} "
              f"| {fmt(trl / best)} | {fmt(sd / best)} |")
    if len(sys.argv) > 3:
        print()
        print("| tree workload | paged us | paged MB read (planned) | prefix-aware us | prefix-aware MB read (planned) | floor us | speed-up |")
        print("|---|---|---|---|---|---|---|")
        for r in csv.DictReader(open(sys.argv[3])):
            print(f"| {r['shape']} | {float(r['paged_us']):.1f} | {float(r['paged_MB']):.0f} | {float(r['prefix_aware_us']):.1f} "
                  f"| {float(r['prefix_aware_MB']):.0f} | {float(r['floor_us']):.1f} "
                  f"| {float(r['paged_us']) / float(r['prefix_aware_us']):.2f}x |")


if __name__ == "__main__":
    main()
