"""The backfill rule for one fire: run it (which attempt) or follow the run already there.
Pure, and below every layer: the store claims fires by it (store/backfills.py) and the
scheduler plans a backfill by it (scheduler/backfill.py, whose docstring states the rule for
people).
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from reporthubd import calendars, domain

_S = domain.ExecutionStatus
FAILED_STATUSES = frozenset({_S.FAILED, _S.TIMEOUT, _S.CANCELLED})
ACTIVE_STATUSES = frozenset({_S.PENDING, _S.RUNNING})
TERMINAL_STATUSES = frozenset(_S) - ACTIVE_STATUSES


class Reprocess(enum.StrEnum):
    NONE = "none"
    FAILED = "failed"
    ALL = "all"


class BackfillError(ValueError):
    """A refused backfill request; the message starts with the key at fault."""


@dataclass(frozen=True, slots=True)
class Attempt:
    attempt: int
    execution_id: str
    status: domain.ExecutionStatus
    error_message: str | None = None


@dataclass(frozen=True, slots=True)
class FireHistory:
    """Every attempt the store holds for one fire, lowest attempt first."""

    attempts: tuple[Attempt, ...] = ()

    @property
    def latest(self) -> Attempt | None:
        return self.attempts[-1] if self.attempts else None

    def never_ran(self) -> bool:
        return all(
            a.status is _S.SKIPPED and not calendars.is_calendar_skip(a.error_message)
            for a in self.attempts
        )

    def active(self) -> Attempt | None:
        return next((a for a in reversed(self.attempts) if a.status in ACTIVE_STATUSES), None)


@dataclass(frozen=True, slots=True)
class Decision:
    """What to do with one fire now: `attempt` to insert (None: insert nothing), or the run to
    `follow` (one already there, running or finished); `reason` says why, for people."""

    attempt: int | None
    follow: Attempt | None
    reason: str


def decide(history: FireHistory, reprocess: Reprocess) -> Decision:
    """The module's rule for one fire (see the docstring)."""
    latest = history.latest
    if latest is None:
        return Decision(0, None, "no run yet")
    running = history.active()
    if running is not None:
        return Decision(None, running, f"running: attempt {running.attempt} {running.status}")
    following = latest.attempt + 1
    if history.never_ran():
        return Decision(following, None, f"never ran: attempt {latest.attempt} SKIPPED")
    if reprocess is Reprocess.FAILED and latest.status in FAILED_STATUSES:
        return Decision(following, None, f"re-run: attempt {latest.attempt} {latest.status}")
    if reprocess is Reprocess.ALL:
        return Decision(following, None, f"re-run: attempt {latest.attempt} {latest.status}")
    return Decision(None, latest, f"has a run: attempt {latest.attempt} {latest.status}")


def histories(rows: Iterable[tuple[datetime, Attempt]]) -> dict[datetime, FireHistory]:
    """Attempts (scheduled_for, attempt) in any order, grouped per fire, lowest attempt first."""
    grouped: dict[datetime, list[Attempt]] = {}
    for when, attempt in rows:
        grouped.setdefault(when.astimezone(UTC), []).append(attempt)
    return {
        when: FireHistory(tuple(sorted(found, key=lambda a: a.attempt)))
        for when, found in grouped.items()
    }
