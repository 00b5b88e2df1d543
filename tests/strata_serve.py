"""Starts a real `strata serve` for the Python module's tests (shared by
python_client_test.py, python_device_array_test.py and python_cuda_test.py)."""
import os
import socket
import subprocess
import time

import strata

STRATA = os.environ["STRATA_BINARY"]
WORK = os.environ.get("STRATA_WORK", "/tmp")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve(name, args, procs=None, **connect_options):
    """Starts `strata serve ARGS` logging to WORK/NAME.log; yields its address
    once strata.connect(address, **connect_options) answers health(); stops it
    (SIGTERM, exit code 0) afterwards. The process is appended to `procs`
    when given (for tests that signal it)."""
    port = free_port()
    log = open(os.path.join(WORK, f"{name}.log"), "w")
    proc = subprocess.Popen([STRATA, "serve", f"--listen=127.0.0.1:{port}"] + args,
                            stdout=log, stderr=subprocess.STDOUT)
    if procs is not None:
        procs.append(proc)
    address = f"127.0.0.1:{port}"
    deadline = time.time() + 30
    while True:
        try:
            strata.connect(address, **connect_options).health()
            break
        except strata.Error:
            if time.time() > deadline or proc.poll() is not None:
                proc.kill()
                raise
            time.sleep(0.1)
    yield address
    proc.terminate()
    assert proc.wait(timeout=30) == 0
