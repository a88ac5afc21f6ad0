"""Safetensors in a store: ``put_tensors`` writes the format straight into a reservation (the
same bytes the ``safetensors`` package writes), ``get_tensors`` returns read-only numpy views
of the stored value (no copy), ``load_file``/``save_file`` move a ``.safetensors`` file in and
out with one copy each way.

numpy is needed for ``put_tensors``/``get_tensors``; torch tensors come out of
``get_tensors(..., framework="torch")`` through ``torch.frombuffer`` when torch is installed.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, Dict, Mapping, Optional

from . import _gos

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np

# numpy dtype (native little-endian) -> safetensors dtype name, and back.
_TO_ST = {
    "bool": "BOOL",
    "uint8": "U8",
    "int8": "I8",
    "int16": "I16",
    "uint16": "U16",
    "float16": "F16",
    "int32": "I32",
    "uint32": "U32",
    "float32": "F32",
    "float64": "F64",
    "int64": "I64",
    "uint64": "U64",
    "complex64": "C64",
}
_FROM_ST = {v: k for k, v in _TO_ST.items()}
_TORCH = {
    "BOOL": "bool",
    "U8": "uint8",
    "I8": "int8",
    "I16": "int16",
    "U16": "uint16",
    "F16": "float16",
    "BF16": "bfloat16",
    "I32": "int32",
    "U32": "uint32",
    "F32": "float32",
    "F64": "float64",
    "I64": "int64",
    "U64": "uint64",
}


def _describe(name: str, array: Any):
    import numpy as np

    if not isinstance(name, str):
        raise TypeError(f"tensor names must be str, not {type(name).__name__}")
    if not isinstance(array, np.ndarray):
        raise TypeError(f"tensor `{name}` must be a numpy.ndarray, not {type(array).__name__}")
    dt = array.dtype
    if dt.byteorder == ">" or (dt.byteorder == "=" and not np.little_endian):
        raise _gos.InvalidArgumentError(
            f"invalid argument: tensor `{name}` is big-endian; safetensors is little-endian"
        )
    st = _TO_ST.get(dt.name)
    if st is None:
        raise _gos.InvalidArgumentError(
            f"invalid argument: tensor `{name}` has dtype {dt}, which safetensors cannot hold"
        )
    # A zero-dimensional array exports a zero-dimensional buffer: view it as one element.
    data = array.reshape(1) if array.ndim == 0 else array
    return (name, st, list(array.shape), data)


def put_tensors(
    store: _gos.Store,
    key: str,
    tensors: Mapping[str, "np.ndarray"],
    metadata: Optional[Mapping[str, str]] = None,
    *,
    readers: Optional[int] = None,
    lease: Optional[float] = None,
    create: bool = False,
) -> int:
    """Stores ``{name: ndarray}`` under ``key`` as one safetensors value, written straight
    into a reservation (one copy of each array). Returns the value's size in bytes.

    The arrays must be C-contiguous (``BufferError`` otherwise) and little-endian."""
    if not isinstance(tensors, Mapping):
        raise TypeError(f"tensors must be a mapping of name to ndarray, not {type(tensors).__name__}")
    described = [_describe(n, a) for n, a in tensors.items()]
    meta = None if metadata is None else {str(k): str(v) for k, v in metadata.items()}
    return _gos.put_tensors(
        store, key, described, meta, readers=readers, lease=lease, create=create
    )


def views(value: Any, framework: str = "numpy") -> Dict[str, Any]:
    """Read-only views of the tensors in a safetensors buffer (a ``Value``, bytes...), no
    copy. Each view keeps ``value`` (and with it the stored value) alive."""
    layout, _meta = _gos.tensor_layout(value)
    out: Dict[str, Any] = {}
    if framework == "numpy":
        import numpy as np

        for name, st, shape, start, end in layout:
            np_name = _FROM_ST.get(st)
            if np_name is None:
                raise _gos.InvalidArgumentError(
                    f"invalid argument: tensor `{name}` has dtype {st}, which numpy cannot hold"
                )
            dt = np.dtype(np_name)
            count = (end - start) // dt.itemsize
            if count == 0:
                arr = np.empty(shape, dtype=dt)
                arr.flags.writeable = False
            else:
                arr = np.frombuffer(value, dtype=dt, count=count, offset=start).reshape(shape)
            out[name] = arr
        return out
    if framework == "torch":
        import torch

        for name, st, shape, start, end in layout:
            dt = getattr(torch, _TORCH[st])
            item = torch.empty((), dtype=dt).element_size()
            count = (end - start) // item
            if count == 0:
                out[name] = torch.empty(shape, dtype=dt)
            else:
                out[name] = torch.frombuffer(value, dtype=dt, count=count, offset=start).reshape(
                    shape
                )
        return out
    raise ValueError(f"framework must be 'numpy' or 'torch', not {framework!r}")


def get_tensors(store: _gos.Store, key: str, framework: str = "numpy") -> Optional[Dict[str, Any]]:
    """``{name: read-only ndarray}`` viewing the safetensors value under ``key`` (no copy), or
    None if the key is absent. The arrays pin the value: they stay valid after a delete or an
    overwrite of the key. With ``framework="torch"`` the tensors come from ``torch.frombuffer``
    (torch warns that the buffer is not writable: do not write to them)."""
    value = store.get(key)
    if value is None:
        return None
    return views(value, framework)


def load_file(
    store: _gos.Store,
    key: str,
    path: "os.PathLike[str] | str",
    *,
    readers: Optional[int] = None,
    lease: Optional[float] = None,
    create: bool = False,
) -> int:
    """Reads a ``.safetensors`` file (checked) into the store under ``key``: one copy, from
    the file straight into a reservation. Returns the size."""
    size = os.path.getsize(path)
    res = store.reserve(key, size, readers=readers, lease=lease, create=create)
    try:
        with open(path, "rb") as f, memoryview(res) as view:
            got = f.readinto(view)
            if got != size:
                raise _gos.CorruptedError(f"data corrupted: read {got} of {size} bytes of {path}")
            _gos.tensor_layout(view)  # refuse what is not safetensors
    except BaseException:
        res.abort()
        raise
    res.commit()
    return size


def save_file(store: _gos.Store, key: str, path: "os.PathLike[str] | str") -> int:
    """Writes the value under ``key`` to a file (straight from the store's memory); returns
    its size. ``NotFoundError`` if the key is absent."""
    value = store.get(key)
    if value is None:
        raise _gos.NotFoundError(f"no value under `{key}`")
    with open(path, "wb") as f:
        f.write(value)
    return len(value)
