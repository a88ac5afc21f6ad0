"""The seed's round across two Python processes over shared memory, with the seed's own API
(gos.compat.GlobalObjectStore): pickle the state dict, put, publish the key on a bus, the peer
gets, unpickles, aggregates and deletes.

    python examples/seed_round.py
"""

import multiprocessing as mp
import os
import pickle
import sys

import numpy as np

import gos
from gos.compat import GlobalObjectStore


def peer(store_name, bus, replies):
    # The peer opens the same host-wide store by name (never a handle from its parent).
    store = GlobalObjectStore(gos.ShmStore.open(store_name))
    key = bus.get(timeout=30)                      # the message body is the key
    raw = store.get(key)                           # bytes, as the seed returns
    state_dict = pickle.loads(raw)
    mine = {k: np.zeros_like(v) for k, v in state_dict.items()}
    aggregate = {k: (state_dict[k] + mine[k]) / 2 for k in state_dict}
    store.delete(key)                              # the reader deletes, as in the seed
    replies.put((key, float(sum(v.sum() for v in aggregate.values())), store.size()))


def main():
    name = f"seed-round-{os.getpid()}"
    gos.ShmStore.create(name, 512 << 20)
    try:
        store = GlobalObjectStore(gos.ShmStore.open(name))
        ctx = mp.get_context("spawn")
        bus, replies = ctx.Queue(), ctx.Queue()
        child = ctx.Process(target=peer, args=(name, bus, replies))
        child.start()

        state_dict = {"layer1.weight": np.ones((256, 256), np.float32), "layer1.bias": np.ones(256, np.float32)}
        key = "my_experiment/node_3/round_5"
        pickled = pickle.dumps(state_dict)         # pre-serialize: the store takes bytes only
        assert store.put(key, pickled) is True
        bus.put(key)                               # publish only the key
        got_key, total, left = replies.get(timeout=60)
        child.join(timeout=30)
        expected = sum(v.sum() for v in state_dict.values()) / 2
        print(f"peer read {got_key}, aggregate sum {total} (expected {expected}), keys left {left}")
        ok = child.exitcode == 0 and got_key == key and total == expected and left == 0 and store.size() == 0
        return 0 if ok else 1
    finally:
        gos.ShmStore.remove(name)


if __name__ == "__main__":
    sys.exit(main())
