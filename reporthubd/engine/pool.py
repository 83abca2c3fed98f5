"""The bounded pool: a global limit on running executions and one per datasource.

Work asks for a slot with its submission number; slots are granted in that order to the first
waiter whose datasource still has room, so a datasource at its own limit does not hold up work
for other datasources, and within one datasource work starts first come, first served. Nothing
is ever dropped: a waiter waits until it gets a slot or is cancelled.

A run that queries another datasource while it holds its slot (a workbook's sheet,
engine/sections.py) moves the slot's datasource there (`Slot.move`): it waits, in its submission
order and ahead of work that has no slot yet, until that datasource has room; the global slot
stays its own. A slot counts against one datasource at a time, so two runs each waiting for the
other's datasource cannot deadlock.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field


@dataclass(order=True)
class _Waiter:
    seq: int
    key: str = field(compare=False)
    key_limit: int | None = field(compare=False)
    future: asyncio.Future[None] = field(compare=False)


class Slot:
    """A granted slot: its global place and the datasource it counts against now."""

    def __init__(self, pool: Pool, key: str | None, seq: int) -> None:
        self._pool = pool
        self.key = key
        """None while a move waits: the slot then counts against no datasource."""
        self.seq = seq

    async def move(self, key: str, key_limit: int | None) -> None:
        """Count against datasource `key` from now on, once it has room (at most `key_limit`
        running there); the datasource left gets its room back at once."""
        if key == self.key:
            return
        pool = self._pool
        if self.key is not None:
            pool._release_key(self.key)
            self.key = None
        waiter = _Waiter(self.seq, key, key_limit, asyncio.get_running_loop().create_future())
        bisect.insort(pool._movers, waiter)
        pool._dispatch()
        try:
            await waiter.future
        except BaseException:
            if waiter in pool._movers:
                pool._movers.remove(waiter)
            elif waiter.future.done() and not waiter.future.cancelled():
                self.key = key  # granted just as we were cancelled
            raise
        self.key = key


class Pool:
    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._running: Counter[str] = Counter()
        self._total = 0
        self._waiters: list[_Waiter] = []
        self._movers: list[_Waiter] = []
        """Slots moving to another datasource (Slot.move): they hold their global place."""

    @property
    def running(self) -> int:
        return self._total

    @property
    def queued(self) -> int:
        return len(self._waiters)

    def by_key(self) -> dict[str, dict[str, int]]:
        waiting = self._waiters + self._movers
        keys = set(self._running) | {w.key for w in waiting}
        return {
            key: {
                "running": self._running[key],
                "queued": sum(1 for w in waiting if w.key == key),
            }
            for key in sorted(keys)
        }

    def resize(self, limit: int) -> None:
        self.limit = limit
        self._dispatch()

    @contextlib.asynccontextmanager
    async def slot(
        self,
        key: str,
        key_limit: int | None,
        seq: int,
        on_queued: Callable[[], None] | None = None,
    ) -> AsyncIterator[Slot]:
        """Wait for a slot; `on_queued` is called once this waiter holds its place in line."""
        waiter = _Waiter(seq, key, key_limit, asyncio.get_running_loop().create_future())
        bisect.insort(self._waiters, waiter)
        self._dispatch()
        if on_queued is not None:
            on_queued()
        try:
            await waiter.future
        except BaseException:
            if waiter in self._waiters:
                self._waiters.remove(waiter)
            elif waiter.future.done() and not waiter.future.cancelled():
                self._release(key)  # granted just as we were cancelled
            raise
        held = Slot(self, key, seq)
        try:
            yield held
        finally:
            if held.key is None:  # a move was cancelled: no datasource to give back
                self._total -= 1
                self._dispatch()
            else:
                self._release(held.key)

    def _release(self, key: str) -> None:
        self._total -= 1
        self._release_key(key)

    def _release_key(self, key: str) -> None:
        self._running[key] -= 1
        if self._running[key] <= 0:
            del self._running[key]
        self._dispatch()

    def _dispatch(self) -> None:
        index = 0
        while index < len(self._movers):  # they hold their global place already
            waiter = self._movers[index]
            if waiter.key_limit is not None and self._running[waiter.key] >= waiter.key_limit:
                index += 1
                continue
            del self._movers[index]
            if waiter.future.done():
                continue
            self._running[waiter.key] += 1
            waiter.future.set_result(None)
        index = 0
        while index < len(self._waiters) and self._total < self.limit:
            waiter = self._waiters[index]
            if waiter.key_limit is not None and self._running[waiter.key] >= waiter.key_limit:
                index += 1
                continue
            del self._waiters[index]
            if waiter.future.done():
                continue
            self._running[waiter.key] += 1
            self._total += 1
            waiter.future.set_result(None)
