#!/usr/bin/env python3
"""Mooncake Store load driver for tools/bench/mooncake_compare.sh.

Two roles, both clients of one mooncake_master (transfer engine over tcp):

  holder  contributes the store's memory (--segment bytes), like the single
          `strata serve` node the Strata side reads from, then waits until it
          is sent SIGTERM. It serves no requests of its own.
  bench   prefills a working set, then runs --clients processes of GETs or PUTs
          for --duration seconds after --warmup seconds, timing every op with
          time.perf_counter_ns, and prints one line:
            RESULT op ops_per_s p50_ms p99_ms p999_ms samples errors
          Bench processes contribute no memory, so every byte of a get and a put
          moves between a client and the holder.

Gets load a random working-set object into a registered buffer (get_into) and,
like `strata bench`, compare every byte with what was stored outside the timed
part; puts store a never-used key from a registered buffer (put_from).
Latency is exact (every op timed); percentiles are nearest-rank.
"""

import argparse
import ctypes
import math
import multiprocessing as mp
import os
import random
import re
import signal
import sys
import time

try:
    from mooncake.store import MooncakeDistributedStore
except ImportError as e:  # reported by the shell script too
    sys.exit("mooncake_driver: cannot import mooncake.store (%s); install it with "
             "`pip install mooncake-transfer-engine-non-cuda` (hosts without CUDA) or "
             "`pip install mooncake-transfer-engine`" % e)


def parse_bytes(s):
    units = {"KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30}
    for u, m in units.items():
        if s.endswith(u):
            return int(s[: -len(u)]) * m
    return int(s)


def connect(args, segment, local_buffer):
    store = MooncakeDistributedStore()
    rc = store.setup("127.0.0.1", args.metadata, segment, local_buffer, "tcp", "", args.master)
    if rc != 0:
        sys.exit("mooncake_driver: setup against master %s failed (%d)" % (args.master, rc))
    return store


def pattern(size):
    # The same bytes in every process: a fixed-seed random pattern.
    return bytearray(random.Random(12345).randbytes(size))


def value_for(base, index):
    v = bytearray(base)
    v[0:8] = index.to_bytes(8, "little")
    return v


def address_of(buf):
    return ctypes.addressof((ctypes.c_char * len(buf)).from_buffer(buf))


def percentile_ms(sorted_ns, p):
    if not sorted_ns:
        return 0.0
    rank = min(max(int(math.ceil(p * len(sorted_ns))), 1), len(sorted_ns))
    return sorted_ns[rank - 1] / 1e6


def worker(args, wid, size, start_ns, end_ns, queue):
    store = connect(args, 0, 16 << 20)
    buf = bytearray(size)
    addr = address_of(buf)
    if store.register_buffer(addr, size) != 0:
        sys.exit("mooncake_driver: register_buffer failed")
    base = pattern(size)
    rng = random.Random(1000003 * args.seed + wid)
    samples, errors, corrupt, counter = [], 0, 0, 0
    while True:
        t0 = time.perf_counter_ns()
        if t0 >= end_ns:
            break
        if args.op == "get":
            i = rng.randrange(args.keys)
            n = store.get_into("%s-%d" % (args.prefix, i), addr, size)
            t1 = time.perf_counter_ns()
            ok = n == size
            if ok and buf != value_for(base, i):  # bench's check, not timed
                corrupt += 1
                ok = False
        else:
            index = (1 << 63) | (wid << 32) | counter
            buf[0:8] = index.to_bytes(8, "little")
            if counter == 0:
                buf[8:] = base[8:]
            rc = store.put_from("%s-put-%d-%d" % (args.prefix, wid, counter), addr, size)
            counter += 1
            t1 = time.perf_counter_ns()
            ok = rc == 0
        if not ok:
            errors += 1
        elif t0 >= start_ns and t1 <= end_ns:
            samples.append(t1 - t0)
    store.unregister_buffer(addr)
    store.close()
    queue.put((samples, errors, corrupt))


def bench(args):
    size = parse_bytes(args.size)
    store = connect(args, 0, 16 << 20)
    buf = bytearray(size)
    addr = address_of(buf)
    store.register_buffer(addr, size)
    base = pattern(size)
    if args.op == "get":
        for i in range(args.keys):
            buf[:] = value_for(base, i)
            rc = store.put_from("%s-%d" % (args.prefix, i), addr, size)
            if rc != 0:
                sys.exit("mooncake_driver: prefill of key %d failed (%d)" % (i, rc))
    store.unregister_buffer(addr)

    ctx = mp.get_context("spawn")  # no fork: the store runs threads
    queue = ctx.Queue()
    start_ns = time.perf_counter_ns() + int((2.0 + args.warmup) * 1e9)  # 2 s to connect
    end_ns = start_ns + int(args.duration * 1e9)
    procs = [ctx.Process(target=worker, args=(args, w, size, start_ns, end_ns, queue))
             for w in range(args.clients)]
    for p in procs:
        p.start()
    results = [queue.get() for _ in procs]
    for p in procs:
        p.join()
        if p.exitcode != 0:
            sys.exit("mooncake_driver: a client process failed (exit %d)" % p.exitcode)
    # Remove what this run stored, so that every run starts with the same free
    # memory (otherwise the puts of earlier runs fill the segment and later puts
    # fail or wait on eviction).
    removed = store.remove_by_regex("^" + re.escape(args.prefix) + "-", True)
    if removed < 0:
        print("mooncake_driver: removing the run's keys failed (%d)" % removed, file=sys.stderr)
    store.close()
    samples = sorted(s for r in results for s in r[0])
    errors = sum(r[1] for r in results)
    corrupt = sum(r[2] for r in results)
    if corrupt:
        print("mooncake_driver: %d gets returned wrong bytes" % corrupt, file=sys.stderr)
    ops = len(samples) / args.duration
    print("RESULT %s %.1f %.3f %.3f %.3f %d %d" % (
        args.op, ops, percentile_ms(samples, 0.5), percentile_ms(samples, 0.99),
        percentile_ms(samples, 0.999), len(samples), errors))


def holder(args):
    store = connect(args, parse_bytes(args.segment), 16 << 20)
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    print("holder ready", flush=True)
    while not stop:
        signal.pause()
    store.close()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("role", choices=["holder", "bench"])
    ap.add_argument("--master", default="127.0.0.1:50051", help="mooncake_master RPC address")
    ap.add_argument("--metadata", default="http://127.0.0.1:8080/metadata",
                    help="the master's HTTP metadata server")
    ap.add_argument("--segment", default="2GiB", help="holder: memory contributed to the store")
    ap.add_argument("--op", choices=["get", "put"], default="get")
    ap.add_argument("--size", default="1MiB", help="value bytes")
    ap.add_argument("--clients", type=int, default=4, help="client processes")
    ap.add_argument("--keys", type=int, default=0,
                    help="working-set objects (0: as `strata bench`: 256MiB worth, "
                         "at least 4 per client, at most 1024)")
    ap.add_argument("--duration", type=float, default=3.0, help="measured seconds")
    ap.add_argument("--warmup", type=float, default=1.0, help="seconds before measuring")
    ap.add_argument("--prefix", default="mc", help="key prefix (distinct per run)")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    if args.role == "holder":
        holder(args)
        return
    if args.keys == 0:
        args.keys = min(max((256 << 20) // parse_bytes(args.size), 4 * args.clients), 1024)
    bench(args)


if __name__ == "__main__":
    main()
