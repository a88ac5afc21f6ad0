"""Safetensors: byte-identical to the safetensors package, zero-copy read-only views out, a
file written by the package loads through the store and back."""

import numpy as np
import pytest
import safetensors.numpy as stn

import gos
from conftest import mapping_of


def sample():
    rng = np.random.default_rng(3)
    return {
        "embed.weight": rng.standard_normal((64, 32)).astype(np.float32),
        "layer.0.bias": rng.standard_normal(32).astype(np.float16),
        "layer.0.weight": rng.standard_normal((32, 32)),
        "steps": np.array(1234, dtype=np.int64),
        "mask": rng.integers(0, 2, 17).astype(bool),
        "ids": np.arange(9, dtype=np.int32).reshape(3, 3),
        "bytes": np.arange(5, dtype=np.uint8),
        "empty": np.zeros((0, 4), dtype=np.float32),
        "u16": np.arange(3, dtype=np.uint16),
    }


def test_byte_identical_to_the_safetensors_package(store):
    tensors = sample()
    n = gos.put_tensors(store, "fed/a/round_1", tensors)
    ours = bytes(store.get("fed/a/round_1"))
    assert n == len(ours)
    assert ours == stn.save(tensors)
    gos.put_tensors(store, "fed/a/round_2", tensors, metadata={"format": "np"})
    assert bytes(store.get("fed/a/round_2")) == stn.save(tensors, metadata={"format": "np"})


def test_get_tensors_are_read_only_views_of_the_value(store):
    tensors = sample()
    gos.put_tensors(store, "k", tensors)
    value = store.get("k")
    got = gos.get_tensors(store, "k")
    assert set(got) == set(tensors)
    for name, arr in tensors.items():
        assert got[name].dtype == arr.dtype and got[name].shape == arr.shape
        assert np.array_equal(got[name], arr)
        assert not got[name].flags.writeable
        if arr.size:
            addr = got[name].ctypes.data
            assert value.address <= addr < value.address + len(value), name
    if store.kind == "shm":
        ranges = mapping_of(f"gos-{store.name}")
        w = got["embed.weight"]
        assert any(lo <= w.ctypes.data < hi for lo, hi in ranges)
    with pytest.raises(ValueError):
        got["embed.weight"][0, 0] = 1
    store.delete("k")
    assert np.array_equal(got["layer.0.weight"], tensors["layer.0.weight"]), "pinned after delete"
    assert gos.get_tensors(store, "k") is None


def test_a_package_file_loads_through_the_store_and_back(store, tmp_path):
    tensors = sample()
    src = tmp_path / "model.safetensors"
    stn.save_file(tensors, str(src))
    size = gos.load_file(store, "fed/m/round_1", src)
    assert size == src.stat().st_size
    got = gos.get_tensors(store, "fed/m/round_1")
    for name, arr in tensors.items():
        assert np.array_equal(got[name], arr)
    out = tmp_path / "back.safetensors"
    assert gos.save_file(store, "fed/m/round_1", out) == size
    assert out.read_bytes() == src.read_bytes()
    loaded = stn.load_file(str(out))
    assert np.array_equal(loaded["ids"], tensors["ids"])


def test_bad_tensor_inputs(store, tmp_path):
    with pytest.raises(TypeError):
        gos.put_tensors(store, "k", {"a": [1, 2, 3]})
    with pytest.raises(TypeError):
        gos.put_tensors(store, "k", [np.zeros(3)])
    with pytest.raises(BufferError):
        gos.put_tensors(store, "k", {"a": np.zeros((4, 4))[:, 1]})
    with pytest.raises(gos.InvalidArgumentError):
        gos.put_tensors(store, "k", {"a": np.zeros(3, dtype=">f4")})
    with pytest.raises(gos.InvalidArgumentError):
        gos.put_tensors(store, "k", {"a": np.zeros(3, dtype=object)})
    with pytest.raises(gos.InvalidKeyError):
        gos.put_tensors(store, "a//b", {"a": np.zeros(3)})
    store.put("junk", b"not safetensors at all")
    with pytest.raises(gos.CorruptedError):
        gos.get_tensors(store, "junk")
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\xff" * 64)
    with pytest.raises(gos.CorruptedError):
        gos.load_file(store, "bad", bad)
    assert store.get("bad") is None and store.stats()["reserved"] == 0
    with pytest.raises(gos.NotFoundError):
        gos.save_file(store, "missing", tmp_path / "x")
    assert store.keys() == ["junk"]


def test_torch_views_when_torch_is_installed(store):
    torch = pytest.importorskip("torch")
    tensors = sample()
    gos.put_tensors(store, "k", tensors)
    got = gos.get_tensors(store, "k", framework="torch")
    assert torch.equal(got["ids"], torch.from_numpy(tensors["ids"]))
