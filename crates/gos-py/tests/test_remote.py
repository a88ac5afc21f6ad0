"""RemoteStore against a real gateway: `gos certs` and `gos serve` (the CLI binary that
`cargo test --workspace` builds; set GOS_BIN to use another) on 127.0.0.1, the server stopped
by its pid at the end. Skips when the binary is not built."""

import asyncio
import os
import re
import select
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

import gos
from gos.aio import AsyncStore

ROOT = Path(__file__).resolve().parents[3]


def gos_bin():
    env = os.environ.get("GOS_BIN")
    if env:
        return env
    target = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
    for profile in ("debug", "release"):
        path = target / profile / "gos"
        if path.exists():
            return str(path)
    pytest.skip("the gos binary is not built (cargo build -p gos-cli)")


@pytest.fixture(scope="module")
def gateway(tmp_path_factory):
    exe = gos_bin()
    work = tmp_path_factory.mktemp("gateway")
    subprocess.run(
        [exe, "certs", "--out", str(work / "certs"), "--cluster", "py-cluster", "--cluster", "py-client"],
        check=True, capture_output=True, timeout=60,
    )
    (work / "cluster.toml").write_text(
        """
fed_id = "pytest"
cluster_id = "py-cluster"
[store]
backend = "memory"
capacity = "64MiB"
max_entries = 256
[topology]
kind = "ring"
nodes = 3
[gateway]
listen = "127.0.0.1:0"
ca = "certs/ca.pem"
cert = "certs/py-cluster.pem"
key = "certs/py-cluster.key"
allow = ["py-client"]
[gateway.roles]
py-client = "admin"
"""
    )
    proc = subprocess.Popen(
        [exe, "serve", "--config", str(work / "cluster.toml")],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        deadline = time.monotonic() + 30
        addr = None
        seen = []
        while addr is None and time.monotonic() < deadline:
            ready, _, _ = select.select([proc.stdout], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                break
            line = proc.stdout.readline()
            if not line:
                break
            seen.append(line)
            m = re.search(r"listening on (\S+),", line)
            if m:
                addr = m.group(1)
        if addr is None:
            pytest.fail(f"gos serve did not start (exit {proc.poll()}): {''.join(seen)}")
        yield addr, work / "certs"
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def test_remote_store_round(gateway):
    addr, certs = gateway
    store = gos.RemoteStore.connect(addr, "py-cluster", certs, "py-client", timeout=10)
    assert store.kind == "remote"
    a = np.arange(1 << 18, dtype=np.float32)
    store.put("pytest/a/round_1", a)
    got = np.frombuffer(store.get("pytest/a/round_1"), dtype=np.float32)
    assert np.array_equal(got, a) and not got.flags.writeable
    assert store.keys("pytest") == ["pytest/a/round_1"]
    r = store.reserve("pytest/a/round_2", 16)
    memoryview(r)[:] = b"0123456789abcdef"
    r.commit()
    assert bytes(store.get("pytest/a/round_2")) == b"0123456789abcdef"
    assert store.delete_prefix("pytest") == 2
    assert store.get("pytest/a/round_1") is None
    with pytest.raises(gos.InvalidKeyError):
        store.put("a//b", b"x")


def test_asyncio_variants_over_the_remote_store(gateway):
    addr, certs = gateway
    store = AsyncStore(gos.RemoteStore.connect(addr, "py-cluster", certs, "py-client"))

    async def main():
        await asyncio.gather(*(store.put(f"pytest/n{i}/round_1", bytes([i]) * 1000) for i in range(8)))
        values = await asyncio.gather(*(store.get(f"pytest/n{i}/round_1") for i in range(8)))
        assert [bytes(v)[0] for v in values] == list(range(8))
        assert len(await store.keys("pytest")) == 8
        assert all(await asyncio.gather(*(store.delete(f"pytest/n{i}/round_1") for i in range(8))))

    asyncio.run(main())


def test_connect_errors(gateway, tmp_path):
    addr, certs = gateway
    with pytest.raises(ValueError, match="certificates"):
        gos.RemoteStore.connect(addr, "py-cluster", tmp_path, "py-client")
    with pytest.raises(ValueError):
        gos.RemoteStore.connect("not an address", "py-cluster", certs, "py-client")
    with pytest.raises(gos.UnavailableError):
        # The gateway's certificate names py-cluster, not another-cluster.
        gos.RemoteStore.connect(addr, "another-cluster", certs, "py-client", timeout=3)
