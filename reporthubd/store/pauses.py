"""Pausing and resuming a schedule: the writes of `paused_at`, `paused_by`, `paused_reason`,
`resumed_at` and `resumed_by` on report_schedules (revision 0006), shared by the control plane
(POST /api/schedules/{id}/pause, /resume) and the command line (`reporthubd pause`, `resume`).

Each is one conditional UPDATE: pausing a schedule that is paused, or resuming one that is not,
changes nothing and says so (`PauseConflict`, with the state as stored). `updated_at` moves, so
every node's definitions watcher picks the change up; what the scheduler does with a paused
schedule is in scheduler/pausing.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from reporthubd.store import schema
from reporthubd.store.database import Store

_s = schema.schedules
MAX_BY = 255
MAX_REASON = 1000


class UnknownSchedule(LookupError):
    """No report_schedules row has this id."""


class PauseConflict(ValueError):
    """Pausing a paused schedule, or resuming one that is not paused."""

    def __init__(self, message: str, state: PauseState) -> None:
        super().__init__(message)
        self.state = state


@dataclass(frozen=True, kw_only=True)
class PauseState:
    schedule_id: int
    paused_at: datetime | None
    paused_by: str | None
    paused_reason: str | None
    resumed_at: datetime | None
    resumed_by: str | None

    @property
    def paused(self) -> bool:
        return self.paused_at is not None

    def as_json(self) -> dict[str, Any]:
        def iso(at: datetime | None) -> str | None:
            return at.isoformat() if at is not None else None

        return {
            "schedule_id": self.schedule_id,
            "paused": self.paused,
            "paused_at": iso(self.paused_at),
            "paused_by": self.paused_by,
            "paused_reason": self.paused_reason,
            "resumed_at": iso(self.resumed_at),
            "resumed_by": self.resumed_by,
        }


def checked_text(key: str, value: object, *, limit: int, required: bool) -> str | None:
    """`value` as a stripped string of at most `limit` characters; ValueError naming `key`."""
    if value is None or (isinstance(value, str) and not value.strip()):
        if required:
            raise ValueError(f"{key}: required, a non-empty string")
        return None
    if not isinstance(value, str):
        raise ValueError(f"{key}: must be a string, got {type(value).__name__}")
    text = value.strip()
    if len(text) > limit:
        raise ValueError(f"{key}: at most {limit} characters, got {len(text)}")
    return text


async def state(store: Store, schedule_id: int) -> PauseState:
    """The schedule's pause columns as stored; UnknownSchedule if there is no such row."""
    columns = [_s.c.paused_at, _s.c.paused_by, _s.c.paused_reason]
    columns += [_s.c.resumed_at, _s.c.resumed_by]
    async with store.engine.connect() as conn:
        row = (await conn.execute(sa.select(*columns).where(_s.c.id == schedule_id))).first()
    if row is None:
        raise UnknownSchedule(f"schedule_id: no schedule {schedule_id} in report_schedules")
    return PauseState(
        schedule_id=schedule_id,
        paused_at=row.paused_at,
        paused_by=row.paused_by,
        paused_reason=row.paused_reason,
        resumed_at=row.resumed_at,
        resumed_by=row.resumed_by,
    )


async def pause(
    store: Store, schedule_id: int, *, by: str, reason: str, at: datetime | None = None
) -> PauseState:
    """Pause the schedule from `at` (default now): its fires from then on are recorded SKIPPED
    "paused by `by` since `at`: `reason`". UnknownSchedule, PauseConflict (already paused)."""
    checked_text("by", by, limit=MAX_BY, required=True)
    checked_text("reason", reason, limit=MAX_REASON, required=True)
    when = at or datetime.now(UTC)
    async with store.engine.begin() as conn:
        done = await conn.execute(
            sa.update(_s)
            .where(_s.c.id == schedule_id, _s.c.paused_at.is_(None))
            .values(paused_at=when, paused_by=by, paused_reason=reason, updated_at=when)
        )
    found = await state(store, schedule_id)
    if done.rowcount == 0:
        raise PauseConflict(
            f"schedule_id: schedule {schedule_id} is already paused "
            f"(by {found.paused_by} since {found.paused_at}: {found.paused_reason})",
            found,
        )
    return found


async def resume(
    store: Store, schedule_id: int, *, by: str, at: datetime | None = None
) -> PauseState:
    """Resume the schedule from `at` (default now): its misfire policy applies from then on
    only. UnknownSchedule, PauseConflict (not paused)."""
    checked_text("by", by, limit=MAX_BY, required=True)
    when = at or datetime.now(UTC)
    async with store.engine.begin() as conn:
        done = await conn.execute(
            sa.update(_s)
            .where(_s.c.id == schedule_id, _s.c.paused_at.is_not(None))
            .values(
                paused_at=None,
                paused_by=None,
                paused_reason=None,
                resumed_at=when,
                resumed_by=by,
                updated_at=when,
            )
        )
    found = await state(store, schedule_id)
    if done.rowcount == 0:
        raise PauseConflict(f"schedule_id: schedule {schedule_id} is not paused", found)
    return found
