"""asyncio variants: ``AsyncStore(store)`` runs each call on a worker thread
(``asyncio.to_thread``). Every store call releases the GIL, so the event loop keeps running
while a remote round trip or a large copy is in flight."""

from __future__ import annotations

import asyncio
from typing import Any, Dict, List, Optional

from . import _gos


class AsyncStore:
    """Awaitable versions of a store's operations."""

    def __init__(self, store: _gos.Store) -> None:
        self.store = store

    async def put(self, key: str, value: Any, **options: Any) -> None:
        await asyncio.to_thread(self.store.put, key, value, **options)

    async def get(self, key: str) -> Optional[_gos.Value]:
        return await asyncio.to_thread(self.store.get, key)

    async def delete(self, key: str) -> bool:
        return await asyncio.to_thread(self.store.delete, key)

    async def release(self, key: str) -> _gos.Released:
        return await asyncio.to_thread(self.store.release, key)

    async def head(self, key: str) -> Optional[Dict[str, Any]]:
        return await asyncio.to_thread(self.store.head, key)

    async def keys(self, prefix: Optional[str] = None) -> List[str]:
        return await asyncio.to_thread(self.store.keys, prefix)

    async def stats(self) -> Dict[str, int]:
        return await asyncio.to_thread(self.store.stats)
