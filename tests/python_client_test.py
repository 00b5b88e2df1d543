"""Tests of the `strata` Python module against a real `strata serve`."""
import os
import random
import socket
import subprocess
import threading
import time

import numpy as np
import pytest

import strata

STRATA = os.environ["STRATA_BINARY"]
WORK = os.environ.get("STRATA_WORK", "/tmp")


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def node():
    port = _free_port()
    log = open(os.path.join(WORK, "serve.log"), "w")
    proc = subprocess.Popen(
        [STRATA, "serve", f"--listen=127.0.0.1:{port}", "--dram=128MiB", "--nvme=512MiB",
         f"--data_dir={os.path.join(WORK, 'data')}"],
        stdout=log, stderr=subprocess.STDOUT)
    address = f"127.0.0.1:{port}"
    deadline = time.time() + 30
    while True:
        try:
            strata.connect(address).health()
            break
        except strata.Error:
            if time.time() > deadline or proc.poll() is not None:
                proc.kill()
                raise
            time.sleep(0.1)
    yield address
    proc.terminate()
    assert proc.wait(timeout=30) == 0


@pytest.fixture
def client(node):
    return strata.connect(node)


def _namespace(client, tenant="py"):
    # 2 layers x (k|v) x 2 KV heads x 16 tokens x 64 dims x 2 bytes = 16 KiB chunks.
    return client.register_namespace("py-test", layers=2, kv_heads=2, head_dim=64,
                                     dtype="bf16", tokens_per_chunk=16, tenant=tenant)


def _conversation(ns, chunks, seed):
    rng = random.Random(seed)
    tokens = [rng.randrange(32000) for _ in range(chunks * ns.tokens_per_chunk + 5)]
    keys = ns.keys(tokens)
    assert len(keys) == chunks and all(isinstance(k, bytes) and len(k) == 32 for k in keys)
    data = np.random.default_rng(seed).integers(0, 256, size=chunks * ns.chunk_bytes,
                                                dtype=np.uint8)
    return keys, data


def test_keys_are_deterministic_and_namespaced(client):
    ns = _namespace(client)
    assert ns.chunk_bytes == 16384 and ns.layer_bytes == 8192 and ns.layers == 2
    tokens = list(range(48))
    assert ns.keys(tokens) == ns.keys(tokens)
    other = _namespace(client, tenant="someone-else")
    assert other.keys(tokens) != ns.keys(tokens)
    assert ns.keys(tokens[:15]) == []  # only full chunks are keyed


def test_save_then_load_into_every_buffer_kind(client):
    ns = _namespace(client)
    keys, data = _conversation(ns, 4, seed=1)
    client.save(ns, keys, data).wait()
    hit = client.lookup(ns, keys)
    assert hit["prefix_chunks"] == 4
    assert hit["tiers"] == ["dram"] * 4
    assert len(hit["persisted"]) == 4
    out = np.zeros_like(data)
    t = client.load(ns, keys, out)
    t.wait_layer(0)
    t.wait()
    assert t.done
    assert np.array_equal(out, data)
    ba = bytearray(len(data))
    client.load(ns, keys, ba).wait()
    assert bytes(ba) == data.tobytes()
    mv = memoryview(bytearray(ns.chunk_bytes))
    client.load(ns, keys[2:3], mv).wait()
    assert mv.tobytes() == data[2 * ns.chunk_bytes:3 * ns.chunk_bytes].tobytes()
    # A multi-dimensional, C-contiguous array of another dtype.
    arr = np.zeros((4, 2, ns.layer_bytes // 2), dtype=np.uint16)
    client.load(ns, keys, arr).wait()
    assert arr.tobytes() == data.tobytes()


def test_save_with_parent_and_lookup_prefix(client):
    ns = _namespace(client)
    keys, data = _conversation(ns, 3, seed=2)
    client.save(ns, keys[:2], data[:2 * ns.chunk_bytes]).wait()
    client.save(ns, keys[2:], data[2 * ns.chunk_bytes:], parent=keys[1]).wait()
    missing = bytes(32)
    hit = client.lookup(ns, keys[:2] + [missing] + keys[2:])
    assert hit["prefix_chunks"] == 2
    assert hit["tiers"][2] == "missing"


def test_errors_carry_the_status_code(client):
    ns = _namespace(client)
    keys, data = _conversation(ns, 2, seed=3)
    with pytest.raises(strata.Error) as e:
        client.load(ns, keys, np.zeros_like(data))
    assert e.value.code == "NOT_FOUND"
    client.save(ns, keys, data).wait()
    with pytest.raises(strata.Error) as e:  # wrong size
        client.load(ns, keys, np.zeros(len(data) - 1, dtype=np.uint8))
    assert e.value.code == "INVALID_ARGUMENT"
    with pytest.raises(strata.Error) as e:  # read-only destination
        client.load(ns, keys, bytes(len(data)))
    assert e.value.code == "INVALID_ARGUMENT"
    with pytest.raises(strata.Error) as e:  # not contiguous
        client.load(ns, keys, np.zeros(2 * len(data), dtype=np.uint8)[::2])
    assert e.value.code == "INVALID_ARGUMENT"
    with pytest.raises(strata.Error) as e:
        client.lookup(ns, [b"short"])
    assert e.value.code == "INVALID_ARGUMENT"
    with pytest.raises(strata.Error) as e:
        client.register_namespace("m", layers=0, kv_heads=1, head_dim=64)
    assert e.value.code == "INVALID_ARGUMENT"
    with pytest.raises(strata.Error) as e:
        client.register_namespace("m", layers=1, kv_heads=1, head_dim=64, dtype="fp8")
    assert e.value.code == "INVALID_ARGUMENT"
    with pytest.raises(strata.Error) as e:
        strata.connect("127.0.0.1:1", rpc_timeout=2.0)
    assert e.value.code == "UNAVAILABLE"
    # Nothing stored was lost.
    out = np.zeros_like(data)
    client.load(ns, keys, out).wait()
    assert np.array_equal(out, data)


def test_hints_and_stats(client):
    ns = _namespace(client)
    keys, data = _conversation(ns, 2, seed=4)
    client.save(ns, keys, data).wait()
    client.hint(ns, "py-scheduler", [(keys[-1], 0)], ttl=10.0)
    stats = client.stats()
    assert stats["hint_jobs"] >= 1
    assert stats["puts_committed"] >= 2
    with pytest.raises(strata.Error) as e:
        client.hint(ns, "", [(keys[-1], 0)])
    assert e.value.code == "INVALID_ARGUMENT"
    client.hint(ns, "py-scheduler", [])  # withdraws


def test_waiting_releases_the_gil(client):
    ns = _namespace(client)
    keys, data = _conversation(ns, 64, seed=5)  # 1 MiB
    client.save(ns, keys, data).wait()
    ticks = []
    stop = threading.Event()

    def ticker():
        while not stop.is_set():
            ticks.append(1)
            time.sleep(0.0005)

    thread = threading.Thread(target=ticker)
    thread.start()
    out = np.zeros_like(data)
    for _ in range(20):
        client.load(ns, keys, out).wait()
    stop.set()
    thread.join()
    assert np.array_equal(out, data)
    assert len(ticks) > 0
