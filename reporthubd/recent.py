"""`Recent`: one in-flight fetch shared by concurrent callers, its result reused briefly.

For answers that many clients ask for at once (status endpoints polled by dashboards): 200
concurrent requests cost one store query, not 200, and a store that is slow slows one query.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class Recent(Generic[T]):
    def __init__(self, fetch: Callable[[], Awaitable[T]], *, max_age_seconds: float) -> None:
        self._fetch = fetch
        self._max_age = max_age_seconds
        self._value: T | None = None
        self._at = float("-inf")
        self._inflight: asyncio.Future[T] | None = None

    async def get(self) -> T:
        if self._value is not None and time.monotonic() - self._at <= self._max_age:
            return self._value
        if self._inflight is None:
            self._inflight = asyncio.ensure_future(self._refresh())
        return await asyncio.shield(self._inflight)

    async def _refresh(self) -> T:
        try:
            value = await self._fetch()
            self._value, self._at = value, time.monotonic()
            return value
        finally:
            self._inflight = None
