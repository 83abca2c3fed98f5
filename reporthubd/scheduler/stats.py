"""Fire lateness since start, in constant memory: a millisecond histogram."""

from __future__ import annotations

from array import array

_LIMIT_MS = 120_000


class Lateness:
    """Lateness = the moment a fire's claim committed minus its due time, in milliseconds."""

    def __init__(self) -> None:
        self._buckets = array("q", bytes(8 * (_LIMIT_MS + 1)))
        self.count = 0
        self.max_ms = 0.0

    def add(self, seconds: float) -> None:
        ms = max(0.0, seconds * 1000.0)
        self._buckets[min(int(ms), _LIMIT_MS)] += 1
        self.count += 1
        self.max_ms = max(self.max_ms, ms)

    def percentile(self, p: float) -> float | None:
        """The p-th percentile in ms (bucket upper edge, capped at the max seen), or None."""
        if not self.count:
            return None
        rank = max(1, round(p / 100.0 * self.count))
        seen = 0
        for ms, n in enumerate(self._buckets):
            seen += n
            if seen >= rank:
                return min(float(ms + 1), self.max_ms)
        return self.max_ms

    def summary(self) -> dict[str, float | int | None]:
        return {
            "fires": self.count,
            "p50_ms": self.percentile(50),
            "p99_ms": self.percentile(99),
            "max_ms": round(self.max_ms, 3) if self.count else None,
        }
