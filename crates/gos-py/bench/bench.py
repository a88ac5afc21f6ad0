"""GOS from Python against the usual ways of moving a model between Python processes, measured
in one run on this machine: a "round" is what the seed does every round, a producer hands a
model of SIZE bytes to a consumer process that ends up with a usable numpy array, and the value
is deleted.

    python crates/gos-py/bench/bench.py            # 64 KiB, 1 MiB, 100 MiB
    python crates/gos-py/bench/bench.py --quick    # small sizes, few repetitions (a smoke test)

Rows (median of the repetitions, wall time of the producer from start to the consumer's ack):
  gos memory          in one process: put(array), get, numpy.frombuffer, delete
  gos shm             two processes: put(array) into a ShmStore, key over a pipe, the peer
                      opens the same store, get + numpy.frombuffer (no copy), delete, ack
  pickle              in one process: pickle.dumps + pickle.loads of {"w": array} (protocol 5)
  shared_memory       two processes: multiprocessing.shared_memory segment created, array
                      copied in, name over a pipe, peer attaches + numpy view + ack, unlink
  seed stand-in       two processes + an actor process holding a dict (the seed's design,
                      multiprocessing.managers in place of a Ray actor): pickle, put, key over
                      a pipe, peer get + unpickle + delete, ack
  ray actor           the seed itself when ray is importable: a Ray actor with put/get/delete
  redis-py            when redis (the package) and redis-server are installed: SET/GET/DEL of
                      the pickle against a redis-server this script starts on 127.0.0.1
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import pickle
import shutil
import socket
import statistics
import subprocess
import sys
import time
from multiprocessing import shared_memory
from multiprocessing.managers import BaseManager

import numpy as np

import gos

KIB, MIB = 1 << 10, 1 << 20


# ---------------------------------------------------------------- the seed's actor, stand-in
class DictActor:
    """The seed's GlobalObjectStore: a dict in its own process."""

    def __init__(self):
        self.d = {}

    def put(self, key, value):
        if not isinstance(value, bytes):
            raise TypeError("bytes only")
        self.d[key] = value
        return True

    def get(self, key):
        return self.d.get(key)

    def delete(self, key):
        return self.d.pop(key, None) is not None


class ActorManager(BaseManager):
    pass


ActorManager.register("DictActor", DictActor)


# ---------------------------------------------------------------- the consumer process
def consumer(conn, shm_name, redis_port):
    store = gos.ShmStore.open(shm_name) if shm_name else None
    actor = None
    # The actor's proxy arrives over the pipe and authenticates with our process's key.
    mp.current_process().authkey = b"gos-bench"
    rds = None
    if redis_port:
        import redis

        rds = redis.Redis(host="127.0.0.1", port=redis_port)
    while True:
        msg = conn.recv()
        if msg is None:
            return
        kind, key, extra = msg
        if kind == "actor-handle":
            actor = extra
            conn.send("ok")
            continue
        if kind == "gos-shm":
            arr = np.frombuffer(store.get(key), dtype=np.uint8)
            n = arr.nbytes
            del arr
            store.delete(key)
        elif kind == "shared_memory":
            seg = shared_memory.SharedMemory(name=key)
            arr = np.ndarray((extra,), dtype=np.uint8, buffer=seg.buf)
            n = arr.nbytes
            del arr
            seg.close()
        elif kind == "seed":
            w = pickle.loads(actor.get(key))["w"]
            n = w.nbytes
            actor.delete(key)
        elif kind == "redis":
            w = pickle.loads(rds.get(key))["w"]
            n = w.nbytes
            rds.delete(key)
        else:
            raise ValueError(kind)
        conn.send(n)


def timed(reps, fn):
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Redis:
    """A redis-server of our own on 127.0.0.1, stopped by its pid."""

    def __init__(self):
        self.proc = None
        self.port = None
        try:
            import redis  # noqa: F401
        except ImportError:
            self.why = "the redis package is not installed"
            return
        exe = shutil.which("redis-server")
        if exe is None:
            self.why = "redis-server is not installed"
            return
        self.port = free_port()
        self.proc = subprocess.Popen(
            [exe, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--proto-max-bulk-len", "1gb"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        import redis

        client = redis.Redis(host="127.0.0.1", port=self.port)
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline:
                    self.stop()
                    self.why = "redis-server did not start"
                    return
                time.sleep(0.05)
        self.why = None

    def stop(self):
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
            self.proc = None


def ray_rounds(sizes):
    """The seed itself: a Ray actor holding a dict, a remote task as the peer; one Ray
    instance for every size."""
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, ignore_reinit_error=True)

    GlobalObjectStore = ray.remote(DictActor)  # the seed's actor: a dict, bytes only

    @ray.remote
    def peer(store, key):
        raw = ray.get(store.get.remote(key))
        w = pickle.loads(raw)["w"]
        ray.get(store.delete.remote(key))
        return w.nbytes

    store = GlobalObjectStore.remote()
    rows = []
    try:
        for size, reps in sizes:
            payload = np.random.default_rng(0).integers(0, 255, size, dtype=np.uint8)

            def one():
                ray.get(store.put.remote("fed/n/round_1", pickle.dumps({"w": payload})))
                assert ray.get(peer.remote(store, "fed/n/round_1")) == size

            one()
            rows.append((size, "ray actor + pickle (the seed, Ray " + ray.__version__ + ")", timed(max(3, reps // 4), one)))
    finally:
        ray.shutdown()
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small sizes, few repetitions")
    ap.add_argument("--no-ray", action="store_true", help="do not start Ray even if importable")
    args = ap.parse_args()
    sizes = [(64 * KIB, 20), (1 * MIB, 5)] if args.quick else [(64 * KIB, 200), (1 * MIB, 50), (100 * MIB, 7)]
    biggest = max(s for s, _ in sizes)

    name = f"bench-{os.getpid()}"
    shm = gos.ShmStore.create(name, 2 * biggest + 16 * MIB, max_entries=64)
    mem = gos.MemoryStore()
    manager = ActorManager(address=("127.0.0.1", 0), authkey=b"gos-bench")
    manager.start()
    actor = manager.DictActor()
    rds = Redis()
    ctx = mp.get_context("spawn")
    here, there = ctx.Pipe()
    child = ctx.Process(target=consumer, args=(there, name, rds.port if rds.why is None else None))
    child.start()
    here.send(("actor-handle", None, actor))
    assert here.recv() == "ok"

    has_ray = False
    ray_note = "not importable (not measured)"
    try:
        import ray  # noqa: F401

        has_ray = True
        ray_note = "not measured (--quick or --no-ray)"
    except ImportError:
        pass

    rows = []
    try:
        for size, reps in sizes:
            payload = np.random.default_rng(size).integers(0, 255, size, dtype=np.uint8)
            key = "fed/node_3/round_5"

            def gos_memory():
                mem.put(key, payload)
                assert np.frombuffer(mem.get(key), dtype=np.uint8).nbytes == size
                mem.delete(key)

            def gos_shm():
                shm.put(key, payload)
                here.send(("gos-shm", key, None))
                assert here.recv() == size

            def pickled():
                w = pickle.loads(pickle.dumps({"w": payload}, protocol=5))["w"]
                assert w.nbytes == size

            def shared_mem():
                seg = shared_memory.SharedMemory(create=True, size=size)
                np.ndarray((size,), dtype=np.uint8, buffer=seg.buf)[:] = payload
                here.send(("shared_memory", seg.name, size))
                assert here.recv() == size
                seg.close()
                seg.unlink()

            def seed():
                assert actor.put(key, pickle.dumps({"w": payload}))
                here.send(("seed", key, None))
                assert here.recv() == size

            def redis_round():
                import redis

                r = redis_round.client
                r.set(key, pickle.dumps({"w": payload}))
                here.send(("redis", key, None))
                assert here.recv() == size

            if rds.why is None:
                import redis

                redis_round.client = redis.Redis(host="127.0.0.1", port=rds.port)

            cases = [
                ("gos memory (one process)", gos_memory),
                ("gos shm (two processes)", gos_shm),
                ("pickle dumps+loads (one process)", pickled),
                ("multiprocessing.shared_memory (two processes)", shared_mem),
                ("seed stand-in: actor process + pickle (multiprocessing.managers)", seed),
            ]
            if rds.why is None:
                cases.append(("redis-py + pickle (two processes)", redis_round))
            for label, fn in cases:
                fn()  # warm up
                rows.append((size, label, timed(reps, fn)))
        if has_ray and not args.quick and not args.no_ray:
            try:
                rows.extend(ray_rounds(sizes))
                ray_note = "measured"
            except Exception as e:  # Ray's own startup can fail on a loaded machine
                ray_note = f"importable, but failed: {str(e).splitlines()[0]}"
    finally:
        here.send(None)
        child.join(30)
        if child.is_alive():
            child.kill()
        rds.stop()
        manager.shutdown()
        gos.ShmStore.remove(name)

    print(f"\nPython {sys.version.split()[0]}, numpy {np.__version__}, gos {gos.__version__}; "
          f"median wall time of a round; 'vs gos shm' = that row's time / the gos shm row's")
    print("ray: " + ray_note)
    print("redis: " + ("measured" if rds.why is None else f"not measured ({rds.why})"))
    print()
    print("| size | path | round | vs gos shm |")
    print("|---|---|---:|---:|")
    for size, label, t in sorted(rows, key=lambda r: r[0]):
        base = next(t2 for s2, l2, t2 in rows if s2 == size and l2.startswith("gos shm"))
        size_s = f"{size // MIB} MiB" if size >= MIB else f"{size // KIB} KiB"
        shown = f"{t * 1e3:.2f} ms" if t >= 1e-3 else f"{t * 1e6:.0f} us"
        print(f"| {size_s} | {label} | {shown} | {t / base:.1f}x |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
