"""The scheduler's view of time: read the wall clock, sleep until an instant or an early wake-up.

The loop never polls. It sleeps until the earliest fire, in shrinking chunks: Linux adds timer
slack of about 0.1 % of a timeout (a 60 s sleep ends 50-60 ms late), so each chunk stops short
of the deadline and the next one re-reads the wall clock, which also follows clock steps (NTP).
A wait of a second or less is slept in one piece (at most about 1 ms late): a second wake-up
cost 0.2 ms of CPU per fire in the sparse benchmark (bench/README.md).
Tests substitute a clock they move by hand.
"""

from __future__ import annotations

import asyncio
import time
from typing import Protocol

# The last chunk is slept exactly; longer waits stop at 98 % of the remaining time.
_EXACT_BELOW = 1.0
_MAX_CHUNK = 60.0


class Clock(Protocol):
    def now(self) -> float:
        """Wall-clock time, Unix seconds."""
        ...

    async def sleep_until(self, deadline: float | None, wake: asyncio.Event) -> None:
        """Return at `deadline` (None: never) or as soon as `wake` is set, whichever first."""
        ...


class SystemClock:
    def now(self) -> float:
        return time.time()

    async def sleep_until(self, deadline: float | None, wake: asyncio.Event) -> None:
        while not wake.is_set():
            if deadline is None:
                await wake.wait()
                return
            remaining = deadline - time.time()
            if remaining <= 0:
                return
            chunk = remaining if remaining <= _EXACT_BELOW else min(remaining * 0.98, _MAX_CHUNK)
            try:
                async with asyncio.timeout(chunk):
                    await wake.wait()
            except TimeoutError:
                pass
