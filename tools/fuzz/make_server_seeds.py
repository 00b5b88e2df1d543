#!/usr/bin/env python3
"""Writes the seed corpus of server_fuzzer (tools/fuzz/corpus/server/).

Each seed is a sequence of calls in the fuzzer's input format (see
server_fuzzer.cc): a node byte, then per call a method byte (RPC index in
strata.proto's order, caller in bits 4-5), a little-endian u16 length and the
request message, encoded here by hand (protobuf wire format).
"""
import os
import struct
import sys

def varint(n):
    out = b""
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out += bytes([b | 0x80])
        else:
            return out + bytes([b])

def f_varint(field, n):
    return varint(field << 3) + varint(n)

def f_bytes(field, b):
    if isinstance(b, str):
        b = b.encode()
    return varint(field << 3 | 2) + varint(len(b)) + b

def f_fixed64(field, n):
    return varint(field << 3 | 1) + struct.pack("<Q", n)

RPC = ["GetNodeInfo", "RegisterNamespace", "Lookup", "Get", "Release", "PutBegin",
       "PutCommit", "PutAbort", "Hint", "Stats", "Health", "RemoveNamespace",
       "AttachDataPlane"]
TENANT_A, TENANT_B, NO_TOKEN, BAD_TOKEN = range(4)

def call(rpc, msg=b"", caller=TENANT_A):
    return bytes([RPC.index(rpc) | caller << 4]) + struct.pack("<H", len(msg)) + msg

def spec(model="m", extra=()):
    s = (f_bytes(1, model) + f_varint(2, 2) + f_varint(3, 1) + f_varint(4, 8) +
         f_varint(5, 1) + f_varint(6, 16))
    for name, value in extra:
        s += f_bytes(7, f_bytes(1, name) + f_bytes(2, value))
    return s

def register(tenant="a", **kw):
    return f_bytes(1, spec(**kw)) + f_bytes(2, tenant)

KEY = [bytes([i + 1]) * 32 for i in range(4)]

def put_begin(ns, keys, client="c"):
    m = f_bytes(1, client) + f_varint(2, ns)
    for i, k in enumerate(keys):
        item = f_bytes(1, k) + (f_bytes(2, keys[i - 1]) if i else b"")
        m += f_bytes(3, item)
    return m

def commit(lease, n, client="c"):
    return f_bytes(1, client) + f_fixed64(2, lease) + b"".join(f_fixed64(3, 1) for _ in range(n))

def keys_msg(ns, keys, client=None):
    m = (f_bytes(1, client) if client else b"") + f_varint(2 if client else 1, ns)
    return m + b"".join(f_bytes(3 if client else 2, k) for k in keys)

def seeds():
    full = (call("RegisterNamespace", register()) +
            call("PutBegin", put_begin(1, KEY[:2])) +
            call("PutCommit", commit(1, 2)) +
            call("Lookup", keys_msg(1, KEY[:3])) +
            call("Get", keys_msg(1, KEY[:2], client="c")) +
            call("Release", f_bytes(1, "c") + f_fixed64(2, 2)) +
            call("Hint", f_bytes(1, "s") + f_varint(2, 1) +
                 f_bytes(3, f_bytes(1, KEY[1]) + f_varint(2, 0))) +
            call("Stats") + call("Health") +
            call("RemoveNamespace", register()))
    yield "put-get-plain", b"\x00" + full
    yield "put-get-tenants", b"\x01" + full
    yield "abort", b"\x01" + (call("RegisterNamespace", register(extra=[("lora", "x")])) +
                              call("PutBegin", put_begin(1, KEY[:3])) +
                              call("PutAbort", f_bytes(1, "c") + f_fixed64(2, 1)))
    yield "other-tenant", b"\x01" + (call("RegisterNamespace", register()) +
                                     call("Get", keys_msg(1, KEY[:1], client="c"), TENANT_B) +
                                     call("PutBegin", put_begin(1, KEY[:1]), TENANT_B) +
                                     call("RegisterNamespace", register(), TENANT_B) +
                                     call("Lookup", keys_msg(1, KEY[:1]), NO_TOKEN) +
                                     call("Stats", b"", BAD_TOKEN))
    yield "lease-of-another-client", b"\x00" + (
        call("RegisterNamespace", register(tenant="")) +
        call("PutBegin", put_begin(1, KEY[:1])) +
        call("PutCommit", commit(1, 1, client="d")) +
        call("PutCommit", commit(1, 1)) +
        call("Get", keys_msg(1, KEY[:1], client="c") + f_fixed64(5, 1)))
    yield "node-info", b"\x00" + call("GetNodeInfo") + call("AttachDataPlane", f_bytes(1, "c"))

def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__),
                                                             "corpus", "server")
    os.makedirs(out, exist_ok=True)
    for name, data in seeds():
        with open(os.path.join(out, name), "wb") as f:
            f.write(data)

if __name__ == "__main__":
    main()
