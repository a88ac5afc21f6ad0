"""The seed drop-in: gos.compat.GlobalObjectStore used exactly as FedPilot uses its store."""

import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import gos
from gos.compat import GlobalObjectStore


@pytest.fixture(params=["default", "memory", "shm"])
def seed_store(request, shm_name):
    if request.param == "default":
        return GlobalObjectStore()
    if request.param == "memory":
        return GlobalObjectStore(gos.MemoryStore(64 << 20))
    return GlobalObjectStore(gos.ShmStore.create(shm_name, 64 << 20))


def test_the_seed_usage(seed_store):
    store = seed_store
    state_dict = {"fc.weight": np.arange(20.0).reshape(4, 5), "fc.bias": np.zeros(4)}
    # ✅ CORRECT — pre-pickle before storing
    pickled = pickle.dumps(state_dict)
    assert store.put("node_3_round_5", pickled) is True
    assert store.put("my_experiment/client_7/round_42", pickled) is True
    raw = store.get("node_3_round_5")
    assert type(raw) is bytes and raw == pickled
    back = pickle.loads(raw)
    assert np.array_equal(back["fc.weight"], state_dict["fc.weight"])
    assert sorted(store.keys()) == ["my_experiment/client_7/round_42", "node_3_round_5"]
    assert store.size() == 2
    assert store.delete("node_3_round_5") is True
    assert store.delete("node_3_round_5") is False
    assert store.get("node_3_round_5") is None
    assert store.size() == 1
    view = store.get_view("my_experiment/client_7/round_42")
    assert pickle.loads(view)["fc.bias"].shape == (4,)


def test_the_seed_rejects_what_is_not_bytes(seed_store):
    store = seed_store
    # ❌ WRONG — passing a raw dict raises TypeError
    for value in [{"w": 1}, "text", bytearray(b"x"), memoryview(b"x"), np.zeros(3), None, 5]:
        with pytest.raises(TypeError, match="bytes"):
            store.put("key", value)
    with pytest.raises(TypeError):
        store.put(5, b"x")
    with pytest.raises(TypeError):
        store.get(None)
    assert store.size() == 0 and store.keys() == []


def test_store_must_be_a_gos_store():
    with pytest.raises(TypeError):
        GlobalObjectStore({})


def test_the_seed_round_across_two_processes_over_shm():
    example = Path(__file__).resolve().parent.parent / "examples" / "seed_round.py"
    out = subprocess.run(
        [sys.executable, str(example)], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "keys left 0" in out.stdout
