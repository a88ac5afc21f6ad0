"""A drop-in for FedPilot's ``GlobalObjectStore`` (the seed): the same method names and
behaviour (bytes in, bytes out, ``TypeError`` on anything else), over any GOS backend.

    # before: store = GlobalObjectStore.remote(); ray.get(store.put.remote(key, pickled))
    from gos.compat import GlobalObjectStore
    store = GlobalObjectStore(gos.ShmStore.open("fed"))   # or no argument: a MemoryStore
    store.put(key, pickled)                               # no .remote(), no ray.get()
"""

from __future__ import annotations

from typing import List, Optional

from . import _gos


class GlobalObjectStore:
    """The seed's API over a GOS store (a fresh ``MemoryStore`` when none is given).

    Differences from the seed, all deliberate: keys must be valid GOS keys
    (``InvalidKeyError`` otherwise; the seed's ``fed/node/round_n`` keys are); the store has
    limits (``StoreFullError``/``TooLargeError`` instead of growing until the actor dies);
    calls are direct (no ``.remote()``, no ``ray.get``). ``get_view`` is the zero-copy variant
    of ``get``."""

    def __init__(self, store: Optional[_gos.Store] = None) -> None:
        if store is None:
            store = _gos.MemoryStore()
        if not isinstance(store, _gos.Store):
            raise TypeError(f"store must be a gos store, not {type(store).__name__}")
        self._store = store

    @property
    def store(self) -> _gos.Store:
        """The GOS store underneath."""
        return self._store

    @staticmethod
    def _check_key(key: object) -> str:
        if not isinstance(key, str):
            raise TypeError(f"keys must be str, not {type(key).__name__}")
        return key

    def put(self, key: str, value: bytes) -> bool:
        """Stores pre-serialized bytes; True on success. ``TypeError`` for anything but
        bytes (pickle it first: the store never serializes for you)."""
        self._check_key(key)
        if not isinstance(value, bytes):
            raise TypeError(
                f"GlobalObjectStore values must be bytes, not {type(value).__name__}: "
                "pre-serialize with pickle.dumps(...)"
            )
        self._store.put(key, value)
        return True

    def get(self, key: str) -> Optional[bytes]:
        """The stored bytes (a copy, as the seed returns), or None if the key is missing."""
        value = self._store.get(self._check_key(key))
        return None if value is None else bytes(value)

    def get_view(self, key: str) -> Optional[_gos.Value]:
        """The stored bytes without a copy (a read-only buffer; ``pickle.loads`` takes it),
        or None."""
        return self._store.get(self._check_key(key))

    def delete(self, key: str) -> bool:
        """Removes an entry; True if it existed."""
        return self._store.delete(self._check_key(key))

    def keys(self) -> List[str]:
        """Every key currently stored."""
        return self._store.keys()

    def size(self) -> int:
        """How many entries are stored."""
        return len(self._store)
