"""Tests of the `strata` Python module against a real `strata serve`."""
import contextlib
import os
import random
import signal
import subprocess
import threading
import time

import numpy as np
import pytest

import strata

from strata_serve import STRATA, WORK, serve as _serve


@pytest.fixture(scope="module")
def node():
    yield from _serve("serve", ["--dram=128MiB", "--nvme=512MiB",
                                f"--data_dir={os.path.join(WORK, 'data')}"])


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
    # An address without a port is refused before any connection attempt,
    # under this module's name for it.
    for bad in ("127.0.0.1", "127.0.0.1:0", "127.0.0.1:65536"):
        with pytest.raises(strata.Error) as e:
            strata.connect(bad)
        assert e.value.code == "INVALID_ARGUMENT", (bad, str(e.value))
        assert str(e.value).startswith(f"address '{bad}'"), (bad, str(e.value))
        assert "expected host:port" in str(e.value), (bad, str(e.value))
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


@contextlib.contextmanager
def _ticking():
    """A thread that counts while the block runs (it runs only while the
    block's calls let go of the GIL); yields the list of its ticks."""
    ticks = []
    stop = threading.Event()

    def ticker():
        while not stop.is_set():
            ticks.append(1)
            time.sleep(0.0005)

    thread = threading.Thread(target=ticker)
    thread.start()
    try:
        yield ticks
    finally:
        stop.set()
        thread.join()


def test_waiting_releases_the_gil(client):
    ns = _namespace(client)
    keys, data = _conversation(ns, 64, seed=5)  # 1 MiB
    client.save(ns, keys, data).wait()
    out = np.zeros_like(data)
    with _ticking() as ticks:
        for _ in range(20):
            client.load(ns, keys, out).wait()
    assert np.array_equal(out, data)
    assert len(ticks) > 0


def test_a_call_waiting_on_the_node_releases_the_gil():
    # A node that stops answering (SIGSTOP): the first load of a namespace
    # waits for its Get until rpc_timeout; other Python threads run meanwhile.
    procs = []
    gen = _serve("stopped", ["--dram=64MiB", "--no_nvme"], procs=procs)
    address = next(gen)
    try:
        c = strata.connect(address, rpc_timeout=1.0)
        ns = _namespace(c)
        keys, data = _conversation(ns, 4, seed=9)
        c.save(ns, keys, data).wait()
        os.kill(procs[0].pid, signal.SIGSTOP)
        with _ticking() as ticks:
            time.sleep(0.05)
            before = len(ticks)
            with pytest.raises(strata.Error) as e:
                c.load(ns, keys, np.zeros_like(data)).wait()
            during = len(ticks) - before
        assert e.value.code in ("DEADLINE_EXCEEDED", "UNAVAILABLE")
        assert during > 50, f"{during} ticks while the load waited about a second"
    finally:
        os.kill(procs[0].pid, signal.SIGCONT)
        for _ in gen:  # stops the node
            pass


# --- TLS, mutual TLS and tenants ----------------------------------------------

@pytest.fixture(scope="module")
def pki():
    """A CA, a node certificate for 127.0.0.1 and "strata-node", a client
    certificate, and a second CA that signed neither; made by openssl here."""
    d = os.path.join(WORK, "pki")
    os.makedirs(d)
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]

    def openssl(*args):
        subprocess.run(["openssl", *args], cwd=d, check=True, capture_output=True)

    with open(os.path.join(d, "server.ext"), "w") as f:
        f.write("subjectAltName=IP:127.0.0.1,DNS:strata-node\nextendedKeyUsage=serverAuth\n")
    with open(os.path.join(d, "client.ext"), "w") as f:
        f.write("extendedKeyUsage=clientAuth\n")
    for ca in ("ca", "other-ca"):
        openssl("req", "-x509", *ec, "-keyout", f"{ca}.key", "-out", f"{ca}.pem", "-days", "2",
                "-subj", f"/CN={ca}")
    for serial, who in ((1, "server"), (2, "client")):
        openssl("req", *ec, "-keyout", f"{who}.key", "-out", f"{who}.csr", "-subj", f"/CN={who}")
        openssl("x509", "-req", "-in", f"{who}.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
                "-set_serial", str(serial), "-days", "2", "-extfile", f"{who}.ext",
                "-out", f"{who}.pem")
    return lambda name: os.path.join(d, name)


@pytest.fixture(scope="module")
def tls_node(pki):
    yield from _serve("tls", ["--dram=32MiB", "--no_nvme", f"--tls_cert={pki('server.pem')}",
                              f"--tls_key={pki('server.key')}"],
                      tls_ca_file=pki("ca.pem"))


def _roundtrip(client, tenant, seed):
    ns = _namespace(client, tenant=tenant)
    keys, data = _conversation(ns, 2, seed=seed)
    client.save(ns, keys, data).wait()
    out = np.zeros_like(data)
    client.load(ns, keys, out).wait()
    assert np.array_equal(out, data)
    return ns, keys, data


def test_tls_with_the_ca(tls_node, pki):
    c = strata.connect(tls_node, tls_ca_file=pki("ca.pem"))
    _roundtrip(c, "py", seed=10)
    # Reached by a name other than the address's host.
    c = strata.connect(tls_node, tls_ca_file=pki("ca.pem"), tls_server_name="strata-node")
    c.health()


def test_tls_refusals_name_the_options(tls_node, pki):
    cases = [
        ({}, "UNAVAILABLE", "tls_ca_file"),  # plaintext against TLS
        ({"tls_ca_file": pki("other-ca.pem")}, "UNAVAILABLE", "tls_ca_file"),
        ({"tls_ca_file": pki("ca.pem"), "tls_server_name": "another-node"}, "UNAVAILABLE",
         "tls_server_name"),
        ({"tls_ca_file": pki("missing.pem")}, "NOT_FOUND", "missing.pem"),
        ({"tls_ca_file": pki("server.ext")}, "INVALID_ARGUMENT", ""),  # not PEM
        ({"tls_ca_file": pki("ca.pem"), "tls_cert_file": pki("client.pem")}, "INVALID_ARGUMENT",
         "tls_key_file"),
        ({"tls_cert_file": pki("client.pem"), "tls_key_file": pki("client.key")},
         "INVALID_ARGUMENT", "tls_ca_file"),
    ]
    for options, code, words in cases:
        with pytest.raises(strata.Error) as e:
            strata.connect(tls_node, rpc_timeout=5.0, **options).health()
        assert e.value.code == code, (options, str(e.value))
        assert words in str(e.value), (options, str(e.value))


def test_connect_options_are_keyword_only(tls_node, pki):
    with pytest.raises(TypeError):
        strata.connect(tls_node, "", "", 10.0, 30.0, pki("ca.pem"))


@pytest.fixture(scope="module")
def tokens():
    """Tokens of tenants a and b (`strata token`) and the tenants file of both."""
    d = os.path.join(WORK, "tokens")
    os.makedirs(d)
    lines = []
    for tenant in ("a", "b"):
        out = subprocess.run([STRATA, "token", "--tenant", tenant, "--out",
                              os.path.join(d, f"{tenant}.token")],
                             check=True, capture_output=True, text=True).stdout
        lines.append(out)
    with open(os.path.join(d, "tenants"), "w") as f:
        f.write("".join(lines))
    return lambda name: os.path.join(d, name)


@pytest.fixture(scope="module")
def secure_node(pki, tokens):
    """Mutual TLS and tenants."""
    yield from _serve("secure", ["--dram=32MiB", "--no_nvme", f"--tls_cert={pki('server.pem')}",
                                 f"--tls_key={pki('server.key')}",
                                 f"--tls_client_ca={pki('ca.pem')}",
                                 f"--tenants={tokens('tenants')}"],
                      **_mtls(pki), token_file=tokens("a.token"))


def _mtls(pki):
    return {"tls_ca_file": pki("ca.pem"), "tls_cert_file": pki("client.pem"),
            "tls_key_file": pki("client.key")}


def test_tenant_with_its_token(secure_node, pki, tokens):
    a = strata.connect(secure_node, **_mtls(pki), token_file=tokens("a.token"))
    _roundtrip(a, "a", seed=11)
    assert a.stats()["tenant_namespaces_registered"] >= 1
    # The token itself rather than its file.
    with open(tokens("b.token")) as f:
        b = strata.connect(secure_node, **_mtls(pki), token=f.read().strip())
    _roundtrip(b, "b", seed=12)


def test_tenant_refusals(secure_node, pki, tokens):
    a = strata.connect(secure_node, **_mtls(pki), token_file=tokens("a.token"))
    ns, keys, data = _roundtrip(a, "a", seed=13)
    # No token, a wrong one.
    with pytest.raises(strata.Error) as e:
        strata.connect(secure_node, **_mtls(pki)).health()
    assert e.value.code == "UNAUTHENTICATED", str(e.value)
    with open(tokens("a.token")) as f:
        token = f.read().strip()
    forged = token[:-1] + ("1" if token.endswith("0") else "0")
    with pytest.raises(strata.Error) as e:
        strata.connect(secure_node, **_mtls(pki), token=forged).health()
    assert e.value.code == "UNAUTHENTICATED", str(e.value)
    # Another tenant's namespace.
    b = strata.connect(secure_node, **_mtls(pki), token_file=tokens("b.token"))
    with pytest.raises(strata.Error) as e:
        b.lookup(ns, keys)
    assert e.value.code == "PERMISSION_DENIED", str(e.value)
    with pytest.raises(strata.Error) as e:
        b.load(ns, keys, np.zeros_like(data))
    assert e.value.code == "PERMISSION_DENIED", str(e.value)
    with pytest.raises(strata.Error) as e:
        b.save(ns, keys, data).wait()
    assert e.value.code == "PERMISSION_DENIED", str(e.value)
    with pytest.raises(strata.Error) as e:
        b.register_namespace("py-test", layers=2, kv_heads=2, head_dim=64, tenant="a")
    assert e.value.code == "PERMISSION_DENIED", str(e.value)
    # Mutual TLS: no client certificate.
    with pytest.raises(strata.Error) as e:
        strata.connect(secure_node, tls_ca_file=pki("ca.pem"), token_file=tokens("a.token"),
                       rpc_timeout=5.0).health()
    assert e.value.code == "UNAVAILABLE", str(e.value)
    assert "tls_cert_file" in str(e.value)
    # Token options that cannot be used.
    for options, code in (({"token": "x:y", "token_file": tokens("a.token")}, "INVALID_ARGUMENT"),
                          ({"token_file": tokens("missing.token")}, "NOT_FOUND")):
        with pytest.raises(strata.Error) as e:
            strata.connect(secure_node, **_mtls(pki), **options).health()
        assert e.value.code == code, (options, str(e.value))
    # Nothing of a's was lost.
    out = np.zeros_like(data)
    a.load(ns, keys, out).wait()
    assert np.array_equal(out, data)
