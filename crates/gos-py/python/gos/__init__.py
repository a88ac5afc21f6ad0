"""GOS, the Global Object Store, for Python.

Stores: ``MemoryStore`` (this process), ``ShmStore`` (every process on the host, through
/dev/shm), ``RemoteStore`` (a cluster's store through its QUIC gateway). Values go in as any
contiguous buffer (one copy, the GIL released) and come out as read-only ``Value`` objects
that export the stored bytes through the buffer protocol without a copy.

    import gos, numpy as np
    store = gos.ShmStore.create("demo", 1 << 30)
    store.put("fed/node_1/round_1", np.arange(1_000_000, dtype=np.float32))
    weights = np.frombuffer(store.get("fed/node_1/round_1"), dtype=np.float32)  # no copy
"""

from ._gos import (
    AlreadyExistsError,
    BackendError,
    BusyError,
    CorruptedError,
    ForkedHandleError,
    GosError,
    InvalidArgumentError,
    InvalidKeyError,
    LimitError,
    MemoryStore,
    NotFoundError,
    PermissionDeniedError,
    Released,
    RemoteStore,
    Reservation,
    ShmStore,
    Store,
    StoreExistsError,
    StoreFullError,
    StoreTimeoutError,
    TooLargeError,
    UnavailableError,
    Value,
    __version__,
)
from .tensors import get_tensors, load_file, put_tensors, save_file

__all__ = [
    "AlreadyExistsError",
    "BackendError",
    "BusyError",
    "CorruptedError",
    "ForkedHandleError",
    "GosError",
    "InvalidArgumentError",
    "InvalidKeyError",
    "LimitError",
    "MemoryStore",
    "NotFoundError",
    "PermissionDeniedError",
    "Released",
    "RemoteStore",
    "Reservation",
    "ShmStore",
    "Store",
    "StoreExistsError",
    "StoreFullError",
    "StoreTimeoutError",
    "TooLargeError",
    "UnavailableError",
    "Value",
    "__version__",
    "get_tensors",
    "load_file",
    "put_tensors",
    "save_file",
]
