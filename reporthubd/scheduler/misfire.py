"""What to do with due fires that were not claimed on time: a pure function of the fires, `now`
and the schedule's policy.

A fire claimed within `ON_TIME_SECONDS` of its time is on time whatever the policy: loop jitter
and a busy minute boundary are not misfires. An older fire was missed (daemon down, store down,
loop blocked), and the schedule's `misfire_policy` decides, with its grace
(`misfire_grace_seconds`, default `scheduler.misfire_grace_seconds`):

- `run_once` (default): the most recent missed fire runs if it is within the grace, unless an
  on-time fire runs anyway; every other missed fire is coalesced into that run, recorded SKIPPED.
- `skip`: no missed fire runs; each is recorded SKIPPED.
- `run_all`: every missed fire within the grace runs, oldest first, each with its own
  `scheduled_for`; at most `run_all_limit` of them (the most recent), the rest recorded SKIPPED.

A missed fire that is not run is always written as a SKIPPED execution with the reason, never
dropped silently. After a very long outage a schedule's missed fires are many (a per-second
schedule down for a week misses 604,800), so at most `skipped_rows_limit` of them are written
one by one, the most recent; the older ones are summarised by one more SKIPPED row at the
oldest missed fire ("... 603,800 fires from X to Y not recorded one by one") — `SkippedRecords`.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from reporthubd.domain import MisfirePolicy

ON_TIME_SECONDS = 5.0


@dataclass(frozen=True, kw_only=True)
class Decision:
    run: list[int] = field(default_factory=list)
    """Fires (Unix seconds) to claim as PENDING, oldest first."""
    skipped: list[tuple[int, str]] = field(default_factory=list)
    """Fires to record as SKIPPED, with the reason."""


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")


def decide(
    fires: Sequence[int],
    *,
    now: float,
    policy: MisfirePolicy,
    grace_seconds: float,
    run_all_limit: int,
    missed_because: str,
) -> Decision:
    """Split the due `fires` (Unix seconds, ascending) into runs and SKIPPED records.
    `missed_because` starts every reason, e.g. "missed: daemon down from X to Y"."""
    on_time = [fire for fire in fires if now - fire <= ON_TIME_SECONDS]
    missed = [fire for fire in fires if now - fire > ON_TIME_SECONDS]
    if not missed:
        return Decision(run=on_time)
    within = [fire for fire in missed if now - fire <= grace_seconds]
    beyond = f"{missed_because} (beyond the misfire grace of {grace_seconds:g} s)"
    skipped = [(fire, beyond) for fire in missed if now - fire > grace_seconds]
    run: list[int] = []
    if policy is MisfirePolicy.SKIP:
        skipped += [(fire, f"{missed_because} (misfire_policy skip)") for fire in within]
    elif policy is MisfirePolicy.RUN_ONCE:
        keep = on_time[-1] if on_time else (within[-1] if within else None)
        if not on_time and keep is not None:
            run.append(keep)
        coalesced = f"{missed_because} (run_once: coalesced into the run for {iso(keep or 0)})"
        skipped += [(fire, coalesced) for fire in within if fire != keep]
    else:
        run = within[-run_all_limit:]
        capped = within[: len(within) - len(run)]
        over = f"{missed_because} (more than run_all_limit={run_all_limit} missed fires)"
        skipped += [(fire, over) for fire in capped]
    skipped.sort()
    return Decision(run=sorted(run + on_time), skipped=skipped)


class SkippedRecords:
    """The SKIPPED records of one schedule's missed fires, fed oldest first (`add`): at most
    `limit` of them one by one, the most recent, and, when more were missed, one record at the
    oldest missed fire that names how many fires, from when to when, it stands for. Memory is
    bounded by `limit`, however many fires are fed."""

    __slots__ = ("_first", "_last", "_limit", "_missed_because", "_not_listed", "_recent")

    def __init__(self, limit: int, *, missed_because: str) -> None:
        if limit < 1:
            raise ValueError("limit must be at least 1")
        self._limit = limit
        self._missed_because = missed_because
        self._recent: deque[tuple[int, str]] = deque()
        self._not_listed = 0
        self._first = 0
        self._last = 0

    def add(self, fire: int, reason: str) -> None:
        recent = self._recent
        recent.append((fire, reason))
        if len(recent) > self._limit:
            dropped, _ = recent.popleft()
            if not self._not_listed:
                self._first = dropped
            self._not_listed += 1
            self._last = dropped

    def copy(self) -> SkippedRecords:
        other = SkippedRecords(self._limit, missed_because=self._missed_because)
        other._recent = self._recent.copy()
        other._not_listed, other._first, other._last = (
            self._not_listed,
            self._first,
            self._last,
        )
        return other

    def __len__(self) -> int:
        return len(self._recent) + (1 if self._not_listed else 0)

    def records(self) -> list[tuple[int, str]]:
        """(fire, reason) to write, oldest first."""
        out = list(self._recent)
        if self._not_listed:
            summary = (
                f"{self._missed_because}; {self._not_listed} fires from {iso(self._first)} "
                f"to {iso(self._last)} not recorded one by one "
                f"(more than scheduler.skipped_rows_limit={self._limit} missed)"
            )
            out.insert(0, (self._first, summary))
        return out
