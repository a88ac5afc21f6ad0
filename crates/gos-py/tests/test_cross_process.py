"""Two processes over one shm store: values, reservations and views cross the process boundary
without a copy, and a value read by the other process survives the writer's delete."""

import multiprocessing as mp

import numpy as np

import gos


def reader(name, key, conn):
    store = gos.ShmStore.open(name)
    value = store.get(key)
    view = np.frombuffer(value, dtype=np.float64)
    conn.send(("read", float(view.sum()), view.flags.writeable))
    assert conn.recv() == "deleted"
    # The writer deleted the key; the view we hold still pins the value.
    conn.send(("after delete", float(view.sum()), store.get(key) is None))
    r = store.reserve("fed/reader/round_1", view.nbytes)
    np.frombuffer(r, dtype=np.float64)[:] = view * 2
    r.commit()
    conn.send(("replied", None, None))


def test_a_round_across_two_processes(shm_name):
    store = gos.ShmStore.create(shm_name, 64 << 20)
    a = np.random.default_rng(7).standard_normal(1 << 20)
    store.put("fed/writer/round_1", a)
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe()
    p = ctx.Process(target=reader, args=(shm_name, "fed/writer/round_1", child))
    p.start()
    try:
        assert parent.poll(60)
        tag, total, writeable = parent.recv()
        assert tag == "read" and total == float(a.sum()) and writeable is False
        assert store.delete("fed/writer/round_1")
        parent.send("deleted")
        assert parent.poll(60)
        tag, total, gone = parent.recv()
        assert tag == "after delete" and total == float(a.sum()) and gone
        assert parent.poll(60)
        assert parent.recv()[0] == "replied"
        reply = np.frombuffer(store.get("fed/reader/round_1"), dtype=np.float64)
        assert np.array_equal(reply, a * 2)
    finally:
        p.join(30)
        if p.is_alive():
            p.kill()
    assert p.exitcode == 0
