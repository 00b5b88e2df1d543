#!/usr/bin/env python3
"""Recomputes Strata's key chains with Python's hashlib and compares them with
the C++ implementation (store/common:key_vectors) and with the test vectors
published in README.md.

Usage: key_vectors_test.py KEY_VECTORS_BINARY README_MD
"""
import hashlib
import random
import re
import struct
import subprocess
import sys

DTYPES = {"fp16": 1, "bf16": 2}


def canonical(model, layers, kv_heads, head_dim, dtype, tpc, extra):
    out = bytearray([1])
    m = model.encode()
    out += struct.pack("<I", len(m)) + m
    out += struct.pack("<III", layers, kv_heads, head_dim)
    out += bytes([DTYPES[dtype]])
    out += struct.pack("<I", tpc)
    items = sorted((k.encode(), v.encode()) for k, v in extra)
    out += struct.pack("<I", len(items))
    for k, v in items:
        out += struct.pack("<I", len(k)) + k + struct.pack("<I", len(v)) + v
    return bytes(out)


def chain(spec, salt, tokens):
    canon = canonical(*spec)
    root = hashlib.sha256(b"strata-kv-v1" + canon + salt).digest()
    tpc = spec[5]
    keys, prev = [], root
    for i in range(len(tokens) // tpc):
        chunk = tokens[i * tpc:(i + 1) * tpc]
        prev = hashlib.sha256(prev + struct.pack("<%dI" % len(chunk), *chunk)).digest()
        keys.append(prev)
    return canon, root, keys


def run_cpp(binary, spec, salt, tokens):
    model, layers, kv_heads, head_dim, dtype, tpc, extra = spec
    args = [binary, model, str(layers), str(kv_heads), str(head_dim), dtype, str(tpc),
            salt.hex() or "-",
            ",".join("%s=%s" % kv for kv in extra) or "-",
            ",".join(str(t) for t in tokens) or "-"]
    out = subprocess.run(args, check=True, capture_output=True, text=True).stdout.split("\n")
    canon = bytes.fromhex(out[0].split()[1])
    root = bytes.fromhex(out[1].split()[1])
    keys = [bytes.fromhex(line.split()[2]) for line in out[2:] if line]
    return canon, root, keys


def parse_tokens(text):
    if text == "-":
        return []
    m = re.fullmatch(r"(\d+)\.\.(\d+)", text)
    if m:
        return list(range(int(m.group(1)), int(m.group(2)) + 1))
    return [int(t) for t in text.split(",")]


def readme_vectors(path):
    """Yields (name, spec, salt, tokens, expected dict) from README.md."""
    text = open(path, encoding="utf-8").read()
    blocks = re.findall(r"^vector (\d+): (.*)\n((?:  \S+ *= *[0-9a-f]+\n)+)", text, re.M)
    for num, params, body in blocks:
        p = dict(kv.split("=", 1) for kv in params.split())
        extra = [] if p["extra"] == "-" else [tuple(kv.split(":", 1)) for kv in p["extra"].split(",")]
        spec = (p["model"], int(p["layers"]), int(p["kv_heads"]), int(p["head_dim"]), p["dtype"],
                int(p["tokens_per_chunk"]), extra)
        salt = b"" if p["salt_hex"] == "-" else bytes.fromhex(p["salt_hex"])
        expected = dict(re.findall(r"^  (\S+) *= *([0-9a-f]+)$", body, re.M))
        yield "README vector " + num, spec, salt, parse_tokens(p["tokens"]), expected


def main():
    binary, readme = sys.argv[1], sys.argv[2]
    failures, checked = 0, 0

    def compare(name, spec, salt, tokens, expected=None):
        nonlocal failures, checked
        py = chain(spec, salt, tokens)
        cpp = run_cpp(binary, spec, salt, tokens)
        checked += 1
        if py != cpp:
            failures += 1
            print("MISMATCH python vs C++:", name, file=sys.stderr)
        if expected is not None:
            got = {"canonical": py[0].hex(), "root": py[1].hex()}
            for i, k in enumerate(py[2]):
                got["key[%d]" % i] = k.hex()
            for field, value in expected.items():
                if got.get(field) != value:
                    failures += 1
                    print("MISMATCH README vs python: %s %s: README %s, computed %s" %
                          (name, field, value, got.get(field)), file=sys.stderr)

    vectors = list(readme_vectors(readme))
    if len(vectors) < 3:
        print("README.md has %d test vectors; expected at least 3" % len(vectors), file=sys.stderr)
        return 1
    for v in vectors:
        compare(*v)

    rng = random.Random(20261122)
    for i in range(40):
        tpc = rng.choice([1, 2, 3, 16, 64])
        extra = [("k%d" % j, "v%d" % rng.randrange(100)) for j in rng.sample(range(9), rng.randrange(4))]
        spec = ("model-%d" % rng.randrange(10**6), rng.randrange(1, 81), rng.randrange(1, 65),
                rng.choice([64, 80, 128]), rng.choice(["fp16", "bf16"]), tpc, extra)
        salt = bytes(rng.randrange(256) for _ in range(rng.randrange(0, 20)))
        tokens = [rng.randrange(2**32) for _ in range(rng.randrange(0, 5 * tpc + 3))]
        compare("random case %d" % i, spec, salt, tokens)

    print("%d passed, %d failed" % (checked - min(failures, checked), min(failures, checked)))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
