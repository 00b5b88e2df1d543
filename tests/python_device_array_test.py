"""GPU memory handed to the `strata` module, checked on any machine: how the
module reads a CUDA tensor's attributes and __cuda_array_interface__
(versions 2 and 3), and what each build does with them. The objects here
describe host memory or nothing; neither build dereferences them before the
CUDA build's pointer check, which refuses host memory. Loads and saves of
real GPU memory: python_cuda_test.py (on a GPU machine)."""
import os

import numpy as np
import pytest

import strata

from strata_serve import WORK, serve

CUDA = strata.cuda_supported


class CudaArray:
    """An object exposing __cuda_array_interface__ with the given fields."""

    def __init__(self, **fields):
        self.__cuda_array_interface__ = fields


class FakeCudaTensor:
    """The attributes the module reads from a torch CUDA tensor."""

    class device:
        index = 0

    is_cuda = True

    def __init__(self, ptr, nbytes, contiguous=True):
        self._ptr, self.nbytes, self._contiguous = ptr, nbytes, contiguous

    def data_ptr(self):
        return self._ptr

    def is_contiguous(self):
        return self._contiguous


@pytest.fixture(scope="module")
def node():
    yield from serve("serve", ["--dram=64MiB", "--nvme=256MiB",
                               f"--data_dir={os.path.join(WORK, 'data')}"])


@pytest.fixture(scope="module")
def stored(node):
    """A client, a namespace and two stored chunks with their bytes."""
    c = strata.connect(node)
    # 2 layers x (k|v) x 2 KV heads x 16 tokens x 64 dims x 2 bytes = 16 KiB chunks.
    ns = c.register_namespace("device-array", layers=2, kv_heads=2, head_dim=64,
                              dtype="bf16", tokens_per_chunk=16, tenant="t")
    keys = ns.keys(list(range(2 * ns.tokens_per_chunk)))
    data = np.random.default_rng(7).integers(0, 256, 2 * ns.chunk_bytes, dtype=np.uint8)
    c.save(ns, keys, data).wait()
    return c, ns, keys, data


def _interface(host, **changes):
    """A well-formed version 2 description of `host` (a numpy array)."""
    fields = dict(shape=(host.nbytes // 2,), typestr="<u2", data=(host.ctypes.data, False),
                  version=2, strides=None)
    fields.update(changes)
    return fields


def _raises(code, call, *words):
    with pytest.raises(strata.Error) as e:
        call()
    assert e.value.code == code, str(e.value)
    for w in words:
        assert w in str(e.value)
    return e.value


def test_the_build_says_whether_it_moves_gpu_memory():
    assert CUDA == (os.environ["STRATA_EXPECT_CUDA"] == "1")


@pytest.mark.parametrize("changes, words", [
    (dict(version=1), ["version 1", "2 or 3"]),
    (dict(version=4), ["version 4"]),
    (dict(version="2"), ["`version`"]),
    (dict(mask=(0, False)), ["masked"]),
    (dict(typestr="f2"), ["typestr"]),
    (dict(typestr="<f0"), ["typestr"]),
    (dict(typestr=2), ["typestr"]),
    (dict(shape=[16384]), ["`shape`"]),
    (dict(shape=(-1,)), ["negative"]),
    (dict(data=12345), ["`data`"]),
    (dict(data=(12345, 0)), ["`data`"]),
    (dict(data=(0, False)), ["null pointer"]),
    (dict(shape=(64, 128), typestr="<u2", strides=(512, 4)), ["not C-contiguous"]),
    (dict(shape=(64, 128), typestr="<u2", strides=(2, 128)), ["not C-contiguous"]),
    (dict(shape=(64, 128), strides=(256,)), ["differ in length"]),
    (dict(version=3, stream=0), ["`stream` 0"]),
    (dict(version=3, stream="s"), ["`stream`"]),
])
def test_malformed_interfaces_are_invalid_in_both_builds(stored, changes, words):
    c, ns, keys, data = stored
    host = np.zeros_like(data)
    bad = CudaArray(**_interface(host, **changes))
    _raises("INVALID_ARGUMENT", lambda: c.load(ns, keys, bad), *words)
    _raises("INVALID_ARGUMENT", lambda: c.save(ns, keys, bad), *words)


def test_missing_fields_and_non_dicts_are_invalid(stored):
    c, ns, keys, data = stored
    host = np.zeros_like(data)
    for field in ("shape", "typestr", "data", "version"):
        fields = _interface(host)
        del fields[field]
        _raises("INVALID_ARGUMENT", lambda: c.load(ns, keys, CudaArray(**fields)), f"`{field}`")
    not_a_dict = CudaArray()
    not_a_dict.__cuda_array_interface__ = [1, 2]
    _raises("INVALID_ARGUMENT", lambda: c.load(ns, keys, not_a_dict), "not a dict")


def test_a_non_contiguous_cuda_tensor_is_invalid(stored):
    c, ns, keys, data = stored
    t = FakeCudaTensor(data.ctypes.data, data.nbytes, contiguous=False)
    _raises("INVALID_ARGUMENT", lambda: c.load(ns, keys, t), "not contiguous")
    _raises("INVALID_ARGUMENT", lambda: c.save(ns, keys, t), "not contiguous")


def _well_formed(host):
    """Descriptions the module accepts, of every form: version 2 and 3,
    explicit packed strides, a version 3 stream (none, the default streams)."""
    out = [
        CudaArray(**_interface(host)),
        CudaArray(**_interface(host, shape=(2, 2, 4096), strides=(16384, 8192, 2))),
        CudaArray(**_interface(host, shape=(1, host.nbytes), typestr="|u1", strides=(7, 1))),
        CudaArray(**_interface(host, version=3)),
        CudaArray(**_interface(host, version=3, stream=None)),
    ]
    if not CUDA:
        # The CUDA build would wait on these streams (and ask torch for the
        # fake tensor's): it checks the pointer first only without them.
        out += [CudaArray(**_interface(host, version=3, stream=1)),
                CudaArray(**_interface(host, version=3, stream=2)),
                FakeCudaTensor(host.ctypes.data, host.nbytes)]
    return out


def test_well_formed_gpu_memory_in_each_build(stored):
    c, ns, keys, data = stored
    host = np.zeros_like(data)
    for obj in _well_formed(host):
        for call in (lambda: c.load(ns, keys, obj), lambda: c.save(ns, keys, obj)):
            if not CUDA:
                _raises("UNIMPLEMENTED", call, "no CUDA support", "cuda/")
            else:
                # Host memory is not device memory: the driver says so, or
                # without a driver (CI) CUDA says it has none.
                e = _raises(e_code := ("INVALID_ARGUMENT" if _has_driver() else "UNAVAILABLE"),
                            call)
                assert ("not device memory" if e_code == "INVALID_ARGUMENT"
                        else "cudaPointerGetAttributes") in str(e)
    assert not host.any()  # nothing was written


def test_cuda_build_checks_size_and_read_only_before_the_pointer(stored):
    c, ns, keys, data = stored
    host = np.zeros_like(data)
    short = CudaArray(**_interface(host, shape=(host.nbytes // 2 - 1,)))
    read_only = CudaArray(**_interface(host, data=(host.ctypes.data, True)))
    no_keys = CudaArray(**_interface(host))
    if not CUDA:
        for call in (lambda: c.load(ns, keys, short), lambda: c.load(ns, keys, read_only)):
            _raises("UNIMPLEMENTED", call)
        return
    _raises("INVALID_ARGUMENT", lambda: c.load(ns, keys, short), "32766 bytes", "32768 bytes")
    _raises("INVALID_ARGUMENT", lambda: c.save(ns, keys, short), "32766 bytes")
    _raises("INVALID_ARGUMENT", lambda: c.load(ns, keys, read_only), "read-only")
    _raises("INVALID_ARGUMENT", lambda: c.load(ns, [], no_keys), "no keys")


def test_nothing_stored_was_lost(stored):
    c, ns, keys, data = stored
    out = np.zeros_like(data)
    c.load(ns, keys, out).wait()
    assert np.array_equal(out, data)
    assert c.lookup(ns, keys)["prefix_chunks"] == 2


def _has_driver():
    return any(os.path.exists(p) for p in ("/dev/nvidiactl", "/dev/nvidia0"))
