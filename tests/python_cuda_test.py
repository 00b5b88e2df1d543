"""The `strata` module's CUDA build on a GPU machine: loads into and saves
from CUDA tensors (and __cuda_array_interface__ objects) against a real
`strata serve`, compared on the GPU. Skipped without a CUDA build of torch;
run by `ONLY=python tools/gpu/run_gpu.sh run`."""
import os
import threading
import time

import numpy as np
import pytest

# The module (and the Debian libraries it carries) before torch, so that
# its gRPC, Protobuf and Abseil are the ones bound.
import strata

from strata_serve import WORK, serve

if os.environ.get("STRATA_REQUIRE_CUDA") == "1":  # run_gpu.sh: a skip would hide a failure
    import torch
    assert torch.cuda.is_available(), "torch sees no CUDA device"
else:
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device for torch", allow_module_level=True)

LAYERS = 4


@pytest.fixture(scope="module")
def node():
    yield from serve("serve", ["--dram=256MiB", "--nvme=512MiB",
                               f"--data_dir={os.path.join(WORK, 'data')}"])


@pytest.fixture(scope="module")
def client(node):
    return strata.connect(node)


@pytest.fixture(scope="module")
def ns(client):
    # 4 layers x (k|v) x 2 KV heads x 16 tokens x 64 dims x 2 bytes = 32 KiB chunks.
    return client.register_namespace("cuda-test", layers=LAYERS, kv_heads=2, head_dim=64,
                                     dtype="bf16", tokens_per_chunk=16, tenant="gpu")


_seed = [100]


def _keys(ns, chunks):
    _seed[0] += 1
    rng = np.random.default_rng(_seed[0])
    return ns.keys(rng.integers(0, 32000, chunks * ns.tokens_per_chunk).tolist())


def _random_bytes(n, device="cuda"):
    return torch.randint(0, 256, (n,), dtype=torch.uint8, device=device)


class CudaArray:
    """A __cuda_array_interface__ (version 3) view of a CUDA tensor's bytes."""

    def __init__(self, t, readonly=False, stream=None):
        self.t = t  # keeps the memory alive
        self.__cuda_array_interface__ = dict(
            shape=(t.nbytes,), typestr="|u1", data=(t.data_ptr(), readonly), version=3,
            strides=None, stream=stream)


def test_the_cuda_build_is_loaded():
    assert strata.cuda_supported, "the CPU-only module was imported"


def test_host_save_then_layerwise_load_into_a_cuda_tensor(client, ns):
    keys = _keys(ns, 8)
    data = np.random.default_rng(1).integers(0, 256, 8 * ns.chunk_bytes, dtype=np.uint8)
    client.save(ns, keys, data).wait()
    out = torch.full((8 * ns.chunk_bytes,), 0xAB, dtype=torch.uint8, device="cuda")
    t = client.load(ns, keys, out)
    expected = torch.from_numpy(data).cuda()
    view = out.view(8, LAYERS, ns.layer_bytes)
    for layer in range(LAYERS):
        t.wait_layer(layer)
        # Layer `layer` of every chunk is on the device once wait_layer returned.
        assert torch.equal(view[:, layer], expected.view(8, LAYERS, ns.layer_bytes)[:, layer])
    t.wait()
    assert t.done
    assert torch.equal(out, expected)
    with pytest.raises(strata.Error) as e:
        t.wait_layer(LAYERS)
    assert e.value.code == "INVALID_ARGUMENT"


def test_save_from_a_cuda_tensor_and_load_back_in_kv_shape(client, ns):
    keys = _keys(ns, 5)
    src = _random_bytes(5 * ns.chunk_bytes)
    client.save(ns, keys, src).wait()
    assert client.lookup(ns, keys)["prefix_chunks"] == 5
    # A bf16 tensor in the chunk layout [chunk][layer][k|v][head][token][dim]
    # (torch's own __cuda_array_interface__ refuses bf16; the module does not).
    kv = torch.zeros((5, LAYERS, 2, 2, 16, 64), dtype=torch.bfloat16, device="cuda")
    client.load(ns, keys, kv).wait()
    assert torch.equal(kv.view(torch.uint8).flatten(), src)
    host = np.zeros(5 * ns.chunk_bytes, dtype=np.uint8)
    client.load(ns, keys, host).wait()
    assert np.array_equal(host, src.cpu().numpy())
    # A tail of the chain, after its parent.
    more = _keys(ns, 2)
    tail = _random_bytes(2 * ns.chunk_bytes)
    client.save(ns, more, tail, parent=keys[-1]).wait()
    back = torch.empty_like(tail)
    client.load(ns, more, back).wait()
    assert torch.equal(back, tail)


def test_work_on_the_tensors_stream_is_waited_for(client, ns):
    keys = _keys(ns, 16)
    stream = torch.cuda.Stream()
    src = torch.zeros(16 * ns.chunk_bytes, dtype=torch.uint8, device="cuda")
    pattern = _random_bytes(16 * ns.chunk_bytes)
    torch.cuda.synchronize()
    with torch.cuda.stream(stream):
        torch.cuda._sleep(50_000_000)  # keeps the stream busy before the copy
        src.copy_(pattern)
        # The module asks torch for the current stream and waits for it.
        client.save(ns, keys, src).wait()
    dest = torch.empty_like(src)
    client.load(ns, keys, dest).wait()
    assert torch.equal(dest, pattern)
    # The same through __cuda_array_interface__ version 3 naming the stream.
    keys2 = _keys(ns, 16)
    with torch.cuda.stream(stream):
        torch.cuda._sleep(50_000_000)
        src.copy_(pattern.flip(0))
    client.save(ns, keys2, CudaArray(src, stream=stream.cuda_stream)).wait()
    dest2 = torch.empty_like(src)
    client.load(ns, keys2, CudaArray(dest2, stream=1)).wait()
    assert torch.equal(dest2, pattern.flip(0))


def test_concurrent_and_growing_loads_share_the_device_staging(client, ns):
    small, large = _keys(ns, 2), _keys(ns, 64)  # 64 KiB, then 2 MiB of staging
    a, b = _random_bytes(2 * ns.chunk_bytes), _random_bytes(64 * ns.chunk_bytes)
    client.save(ns, small, a).wait()
    client.save(ns, large, b).wait()
    outs = [torch.empty_like(a), torch.empty_like(b), torch.empty_like(a)]
    transfers = [client.load(ns, small, outs[0]), client.load(ns, large, outs[1]),
                 client.load(ns, small, outs[2])]
    for t in transfers:
        t.wait()
    assert torch.equal(outs[0], a) and torch.equal(outs[1], b) and torch.equal(outs[2], a)
    # A transfer dropped unwaited finishes before its tensor is let go.
    out = torch.empty_like(b)
    client.load(ns, large, out)
    torch.cuda.synchronize()
    client.load(ns, large, out).wait()
    assert torch.equal(out, b)


def test_waiting_releases_the_gil(client, ns):
    keys = _keys(ns, 64)
    src = _random_bytes(64 * ns.chunk_bytes)
    client.save(ns, keys, src).wait()
    ticks, stop = [], threading.Event()

    def ticker():
        while not stop.is_set():
            ticks.append(1)
            time.sleep(0.0005)

    thread = threading.Thread(target=ticker)
    thread.start()
    out = torch.empty_like(src)
    for _ in range(10):
        client.load(ns, keys, out).wait()
    stop.set()
    thread.join()
    assert torch.equal(out, src) and len(ticks) > 0


def _raises(code, call, *words):
    with pytest.raises(strata.Error) as e:
        call()
    assert e.value.code == code, str(e.value)
    for w in words:
        assert w in str(e.value), str(e.value)


def test_refusals(client, ns):
    keys = _keys(ns, 3)
    src = _random_bytes(3 * ns.chunk_bytes)
    client.save(ns, keys, src).wait()
    n = 3 * ns.chunk_bytes
    # Not contiguous.
    wide = torch.zeros((n, 2), dtype=torch.uint8, device="cuda")
    _raises("INVALID_ARGUMENT", lambda: client.load(ns, keys, wide[:, 0]), "not contiguous")
    _raises("INVALID_ARGUMENT", lambda: client.save(ns, keys, wide[:, 0]), "not contiguous")
    # Too small, too large.
    for size in (n - 1, n + ns.chunk_bytes):
        t = torch.zeros(size, dtype=torch.uint8, device="cuda")
        _raises("INVALID_ARGUMENT", lambda: client.load(ns, keys, t), f"{size} bytes")
        _raises("INVALID_ARGUMENT", lambda: client.save(ns, keys, t), f"{size} bytes")
    # Read-only device memory as a destination.
    dest = torch.zeros(n, dtype=torch.uint8, device="cuda")
    _raises("INVALID_ARGUMENT", lambda: client.load(ns, keys, CudaArray(dest, readonly=True)),
            "read-only")
    # Host memory described as device memory.
    host = torch.zeros(n, dtype=torch.uint8).pin_memory()
    _raises("INVALID_ARGUMENT", lambda: client.load(ns, keys, CudaArray(host)),
            "not device memory")
    # A key not stored: nothing is written.
    missing = _keys(ns, 3)
    _raises("NOT_FOUND", lambda: client.load(ns, missing, dest).wait())
    assert not dest.any()
    # Nothing stored was lost; a pinned host tensor is host memory.
    client.load(ns, keys, host).wait()
    assert torch.equal(host.cuda(), src)
    client.load(ns, keys, dest).wait()
    assert torch.equal(dest, src)
