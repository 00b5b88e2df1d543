#!/usr/bin/env python3
"""Writes the seed corpus of isolated_fuzzer (tools/fuzz/corpus/isolated/).

Each seed is a sequence of the attacker's operations in the fuzzer's input
format (see isolated_fuzzer.cc): an op byte and its operands.
"""
import os
import struct
import sys

PUT_BEGIN, SEND, RAW_SEND, COMMIT, ABORT, WAIT = range(6)
HONEST = 0x81          # ref: the honest writer's lease
GET_KIND, ID_EMPTY, ID_INPUT, ID_PLUS, LAYER, CHUNK_SIZED = 1, 2, 4, 6, 8, 16

def put_begin(chunks, keys, foreign=False, lease_ms=None):
    b = (chunks - 1) | (4 if foreign else 0) | (8 if lease_ms else 0)
    return bytes([PUT_BEGIN, b] + ([lease_ms - 1] if lease_ms else []) + keys)

def send(ref, index, flags, length=0, fill=0, client_id=None, layer=None):
    out = bytes([SEND, ref, index, flags]) + struct.pack("<H", length) + bytes([fill])
    if (flags >> 1) & 3 == 2:
        out += bytes([len(client_id)]) + client_id
    if flags & LAYER:
        out += bytes([layer])
    return out

def header(kind, lease_id, index, layer, client_id=b""):
    return struct.pack("<IB3xQII", 0x314D4453, kind, lease_id, index, layer) + client_id

def raw_send(hdr, length, fill=0):
    return bytes([RAW_SEND, len(hdr)]) + hdr + struct.pack("<H", length) + bytes([fill])

def seeds():
    yield "own-put-commit", (put_begin(2, [1, 2]) +
                             send(0, 0, CHUNK_SIZED, fill=0x11) +
                             send(0, 1, CHUNK_SIZED, fill=0x22) + bytes([COMMIT, 0]))
    yield "forge-honest-lease", (send(HONEST, 0, CHUNK_SIZED, fill=0x33) +
                                 send(HONEST, 1, CHUNK_SIZED | ID_INPUT, fill=0x34,
                                      client_id=b"writer-00") +
                                 bytes([COMMIT, HONEST, ABORT, HONEST, WAIT]))
    yield "wrong-sizes", (put_begin(1, [3]) +
                          send(0, 0, 0, length=65535, fill=0x44) +
                          send(0, 0, 0, length=1, fill=0x45) +
                          send(0, 0, CHUNK_SIZED, fill=0x46) + bytes([WAIT, ABORT, 0]))
    yield "raw-headers", (raw_send(header(2, 1, 0, 0, b"mallory"), 2048, 0x55) +
                          raw_send(header(2, 2**64 - 1, 2**32 - 1, 0), 65535) +
                          raw_send(b"", 0) + raw_send(b"SDM1", 100) + bytes([WAIT]))
    yield "get-slice-and-other-tenant", (put_begin(1, [4], foreign=True) + put_begin(4, [5, 6, 7, 8]) +
                                         send(0, 0, GET_KIND | LAYER | CHUNK_SIZED, layer=1) +
                                         send(0, 3, ID_PLUS | CHUNK_SIZED, client_id=None) +
                                         bytes([0]) + send(0, 2, ID_EMPTY | CHUNK_SIZED) +
                                         bytes([ABORT, 0]))

    yield "short-leases", (put_begin(2, [9, 10], lease_ms=2) + put_begin(1, [11], lease_ms=8) +
                           send(0, 0, CHUNK_SIZED, fill=0x66) + send(1, 0, CHUNK_SIZED, fill=0x67) +
                           bytes([COMMIT, 1]))

def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__),
                                                             "corpus", "isolated")
    os.makedirs(out, exist_ok=True)
    for name, data in seeds():
        with open(os.path.join(out, name), "wb") as f:
            f.write(data)

if __name__ == "__main__":
    main()
