"""Fire lateness since start, in constant memory: histograms of fixed-width buckets.

Two of them, kept apart so that one restart does not make an on-time scheduler look late:
`on_time()` for the fires claimed while they were due (decided within `misfire.ON_TIME_SECONDS`
of their time: what the scheduler's own promptness is), `catch_up()` for the fires decided after
that window (missed while no daemon ran, while the store was down or the loop blocked) and run
or recorded late by the misfire policy.
"""

from __future__ import annotations

from array import array

_LIMIT_MS = 120_000
CATCH_UP_LIMIT_MS = 86_400_000
"""Catch-up lateness is counted in whole seconds up to a day; the max is kept exactly."""


class Lateness:
    """Lateness = the moment a fire's claim committed minus its due time, in milliseconds,
    counted in buckets `step_ms` wide up to `limit_ms` (later ones fall in the last)."""

    def __init__(self, *, limit_ms: int = _LIMIT_MS, step_ms: int = 1) -> None:
        self._step = step_ms
        self._last = limit_ms // step_ms
        self._buckets = array("q", bytes(8 * (self._last + 1)))
        self.count = 0
        self.max_ms = 0.0

    def add(self, seconds: float) -> None:
        ms = max(0.0, seconds * 1000.0)
        self._buckets[min(int(ms) // self._step, self._last)] += 1
        self.count += 1
        self.max_ms = max(self.max_ms, ms)

    def percentile(self, p: float) -> float | None:
        """The p-th percentile in ms (bucket upper edge, capped at the max seen; the max for the
        last bucket), or None."""
        if not self.count:
            return None
        rank = max(1, round(p / 100.0 * self.count))
        seen = 0
        for index, n in enumerate(self._buckets):
            seen += n
            if seen >= rank:
                if index == self._last:  # beyond the limit: the max is all that is known
                    return self.max_ms
                return min(float((index + 1) * self._step), self.max_ms)
        return self.max_ms

    def summary(self) -> dict[str, float | int | None]:
        return {
            "fires": self.count,
            "p50_ms": self.percentile(50),
            "p99_ms": self.percentile(99),
            "max_ms": round(self.max_ms, 3) if self.count else None,
        }


def on_time() -> Lateness:
    """Fires claimed while due: millisecond buckets up to two minutes."""
    return Lateness()


def catch_up() -> Lateness:
    """Fires decided after their on-time window: one-second buckets up to a day."""
    return Lateness(limit_ms=CATCH_UP_LIMIT_MS, step_ms=1_000)
