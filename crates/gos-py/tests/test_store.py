"""The store API from Python: buffers in, zero-copy values out, reservations, limits, errors."""

import array
import ctypes
import os
import pickle
import threading
import time

import numpy as np
import pytest

import gos
from conftest import mapping_of


@pytest.mark.parametrize(
    "make",
    [
        lambda: b"hello",
        lambda: bytearray(b"hello"),
        lambda: memoryview(b"hello"),
        lambda: array.array("i", [1, 2, 3]),
        lambda: np.arange(7, dtype=np.int8),
        lambda: np.arange(12, dtype=np.float64).reshape(3, 4),
        lambda: np.array([True, False]),
        lambda: np.arange(6, dtype=np.complex64),
        lambda: np.zeros(0, dtype=np.float32),
    ],
)
def test_put_accepts_any_contiguous_buffer(store, make):
    value = make()
    store.put("fed/n/round_1", value)
    got = store.get("fed/n/round_1")
    assert bytes(got) == memoryview(value).tobytes()
    assert len(got) == memoryview(value).nbytes


def test_get_is_a_read_only_view_without_a_copy(store):
    a = np.arange(1 << 16, dtype=np.float32)
    store.put("k", a)
    v = store.get("k")
    view = np.frombuffer(v, dtype=np.float32)
    assert view.ctypes.data == v.address
    assert np.array_equal(view, a)
    assert not view.flags.writeable
    with pytest.raises(ValueError):
        view.flags.writeable = True
    with pytest.raises(ValueError):
        view[0] = 1.0
    m = memoryview(v)
    assert m.readonly
    with pytest.raises(TypeError):
        m[0] = 1
    with pytest.raises((TypeError, BufferError)):
        ctypes.c_char.from_buffer(v)  # asks for a writable buffer
    # A second get of the same value shows the same bytes, not a copy.
    assert store.get("k").address == v.address


def test_shm_values_point_into_the_mapping(shm_store):
    a = np.random.default_rng(1).standard_normal(1 << 18)
    shm_store.put("fed/a/round_1", a)
    view = np.frombuffer(shm_store.get("fed/a/round_1"), dtype=a.dtype)
    ranges = mapping_of(f"gos-{shm_store.name}")
    assert ranges, "the store file is mapped"
    addr = view.ctypes.data
    assert any(lo <= addr and addr + view.nbytes <= hi for lo, hi in ranges)
    assert np.array_equal(view, a)


def test_a_100_mib_get_costs_far_less_than_a_copy(big_store):
    store = big_store
    size = 100 << 20
    store.put("big", np.ones(size, dtype=np.uint8))
    best_get = best_copy = float("inf")
    for _ in range(3):
        t = time.perf_counter()
        view = np.frombuffer(store.get("big"), dtype=np.uint8)
        best_get = min(best_get, time.perf_counter() - t)
        t = time.perf_counter()
        copied = view.copy()
        best_copy = min(best_copy, time.perf_counter() - t)
        assert copied.nbytes == size and view.nbytes == size
        del view, copied
    # A zero-copy get of 100 MiB is microseconds; a copy is milliseconds.
    assert best_get * 50 < best_copy, (best_get, best_copy)


def test_views_stay_valid_after_delete_and_overwrite(store):
    store.put("k", np.full(1000, 7, dtype=np.int64))
    view = np.frombuffer(store.get("k"), dtype=np.int64)
    assert store.delete("k")
    assert store.get("k") is None
    store.put("k", np.full(1000, 9, dtype=np.int64))
    store.put("other", np.full(1000, 5, dtype=np.int64))
    assert (view == 7).all()
    assert (np.frombuffer(store.get("k"), dtype=np.int64) == 9).all()


def test_pickle_loads_straight_from_a_value(store):
    state = {"w": np.arange(10.0), "round": 3}
    store.put("fed/node_3/round_5", pickle.dumps(state, protocol=5))
    back = pickle.loads(store.get("fed/node_3/round_5"))
    assert back["round"] == 3 and np.array_equal(back["w"], state["w"])


def test_reserve_fill_commit(store):
    r = store.reserve("fed/r/round_1", 4096)
    assert len(r) == 4096 and r.key == "fed/r/round_1" and r.open
    arr = np.frombuffer(r, dtype=np.uint32)
    assert arr.flags.writeable
    arr[:] = np.arange(1024, dtype=np.uint32)
    assert store.get("fed/r/round_1") is None, "nothing visible before the commit"
    with pytest.raises(gos.BusyError, match="still exported"):
        r.commit()
    del arr
    with memoryview(r) as m:
        m[0:4] = b"\xff\xff\xff\xff"
        with pytest.raises(gos.BusyError):
            r.abort()
    r.commit()
    assert not r.open
    got = np.frombuffer(store.get("fed/r/round_1"), dtype=np.uint32)
    assert got[0] == 0xFFFFFFFF and np.array_equal(got[1:], np.arange(1, 1024))
    with pytest.raises(gos.UnavailableError):
        r.commit()
    with pytest.raises(BufferError):
        memoryview(r)


def test_an_aborted_reservation_gives_its_bytes_back(store):
    r = store.reserve("k", 1 << 20)
    assert store.stats()["reserved"] >= 1 << 20
    r.abort()
    assert store.stats()["reserved"] == 0
    assert store.get("k") is None


def test_keys_stats_delete_prefix_and_rounds(store):
    for node in ("a", "b"):
        for rnd in range(4):
            store.put(f"fed/{node}/round_{rnd}", b"x" * 10)
    store.put("other/a/round_0", b"y")
    assert store.keys("fed/a") == [f"fed/a/round_{r}" for r in range(4)]
    assert len(store.keys()) == 9 and len(store) == 9
    st = store.stats()
    assert st["entries"] == 9 and st["bytes"] == 81
    assert store.delete_rounds_before("fed", 2) == 4
    assert store.keys("fed") == ["fed/a/round_2", "fed/a/round_3", "fed/b/round_2", "fed/b/round_3"]
    assert store.delete_prefix("fed") == 4
    assert store.keys() == ["other/a/round_0"]
    assert "other/a/round_0" in store and "nope" not in store
    assert store.delete("other/a/round_0") and not store.delete("other/a/round_0")
    assert store.limits()["max_entries"] == 256


def test_create_refuses_an_existing_key(store):
    store.put("k", b"1")
    with pytest.raises(gos.AlreadyExistsError):
        store.put("k", b"2", create=True)
    assert bytes(store.get("k")) == b"1"


@pytest.mark.parametrize("bad", ["", "a//b", "/a", "a/", "x" * 5000, "a\x00b"])
def test_invalid_keys_raise_invalid_key_error(store, bad):
    with pytest.raises(gos.InvalidKeyError):
        store.put(bad, b"x")
    with pytest.raises(gos.InvalidKeyError):
        store.get(bad)


def test_wrong_types_raise_type_error(store):
    for value in ["text", {"a": 1}, 3, None, [1, 2]]:
        with pytest.raises(TypeError):
            store.put("k", value)
    with pytest.raises(TypeError):
        store.put(3, b"x")
    with pytest.raises(TypeError):
        store.get(b"k")
    assert store.keys() == []


def test_non_contiguous_arrays_raise_buffer_error(store):
    a = np.arange(100, dtype=np.float32)
    with pytest.raises(BufferError, match="contiguous"):
        store.put("k", a[::2])
    with pytest.raises(BufferError):
        store.put("k", np.arange(12).reshape(3, 4).T)
    store.put("k", np.ascontiguousarray(a[::2]))
    assert len(store.get("k")) == 200


def test_huge_sizes_and_full_stores():
    small = gos.MemoryStore(1000, max_entries=2, max_value=600)
    with pytest.raises(gos.TooLargeError):
        small.reserve("k", 1 << 62)
    with pytest.raises(OverflowError):
        small.reserve("k", 2**64 + 5)
    with pytest.raises(OverflowError):
        small.reserve("k", -1)
    with pytest.raises(gos.TooLargeError):
        small.put("k", bytes(601))
    small.put("a", bytes(500))
    with pytest.raises(gos.StoreFullError) as e:
        small.put("b", bytes(600))
    assert isinstance(e.value, gos.LimitError) and isinstance(e.value, gos.GosError)
    assert "store full" in str(e.value)
    small.put("b", bytes(10))
    with pytest.raises(gos.StoreFullError):
        small.put("c", bytes(1))
    assert small.keys() == ["a", "b"]


def test_bad_options_raise_invalid_argument(store):
    with pytest.raises(gos.InvalidArgumentError):
        store.put("k", b"x", readers=0)
    for lease in (0, -1, float("nan"), float("inf")):
        with pytest.raises(gos.InvalidArgumentError):
            store.put("k", b"x", lease=lease)
    with pytest.raises(OverflowError):
        store.put("k", b"x", readers=-1)


def test_shm_open_remove_and_errors(shm_name):
    with pytest.raises(gos.NotFoundError):
        gos.ShmStore.open(shm_name)
    s = gos.ShmStore.create(shm_name, 1 << 20)
    with pytest.raises(gos.StoreExistsError):
        gos.ShmStore.create(shm_name, 1 << 20)
    s.put("k", b"shared")
    other = gos.ShmStore.open(shm_name)
    assert bytes(other.get("k")) == b"shared" and other.name == shm_name
    with pytest.raises(gos.InvalidArgumentError):
        gos.ShmStore.create("bad/name", 1 << 20)
    assert gos.ShmStore.remove(shm_name)
    assert not gos.ShmStore.remove(shm_name)
    assert bytes(s.get("k")) == b"shared", "open handles keep working after remove"


def test_calls_release_the_gil(big_store):
    store = big_store
    # While one thread copies 100 MiB in and out, another thread keeps running Python code.
    big = np.ones(100 << 20, dtype=np.uint8)
    ticks = []
    done = threading.Event()

    def ticker():
        while not done.is_set():
            ticks.append(time.perf_counter())
            time.sleep(0)

    t = threading.Thread(target=ticker)
    t.start()
    try:
        time.sleep(0.01)
        before = len(ticks)
        for i in range(5):
            store.put("big", big)
        during = len(ticks) - before
    finally:
        done.set()
        t.join()
    assert during > 5, during


def test_a_forked_child_gets_a_clear_error(store):
    store.put("k", b"parent")
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never return into pytest
        code = 1
        try:
            try:
                store.get("k")
            except gos.ForkedHandleError as e:
                code = 0 if "forked child" in str(e) else 2
        finally:
            os.write(w, bytes([code]))
            os._exit(0)
    os.close(w)
    got = os.read(r, 1)
    os.close(r)
    os.waitpid(pid, 0)
    assert got == b"\x00"
    assert bytes(store.get("k")) == b"parent"


def test_a_forked_child_dropping_inherited_objects_leaves_the_parent_alone(shm_name):
    # The child inherits the parent's handle, values and reservations; dropping them there
    # must not unpin, free or give back anything that is the parent's.
    store = gos.ShmStore.create(shm_name, 1 << 20, arena_bytes=1 << 20)
    store.put("a", np.full(1 << 18, 1, dtype=np.uint8))
    held = store.get("a")
    res = store.reserve("r", 1 << 16)
    pid = os.fork()
    if pid == 0:
        try:
            del held, res, store
            import gc

            gc.collect()
        finally:
            os._exit(0)
    os.waitpid(pid, 0)
    # Were the child's drops real, the pin on `a` would be gone: its bytes would be freed at
    # the delete and reused by the next put, under our view.
    assert store.delete("a")
    for i in range(3):
        store.put(f"b{i}", np.full(1 << 18, 2, dtype=np.uint8))
        store.delete(f"b{i}")
    assert (np.frombuffer(held, dtype=np.uint8) == 1).all()
    memoryview(res)[:4] = b"abcd"
    res.commit()
    assert bytes(store.get("r"))[:4] == b"abcd"
    assert store.stats()["reserved"] == 0
