"""What the notifier reads about a report's runs (issue 17): the run history of one stream of
runs (a schedule's, or a report's manual runs), the report's notification settings
(report_configs.notify) and the schedules with a deadline (report_schedules.deadline).

Every node derives an incident from the same rows, so they agree on its key without talking:
runs are ordered by `finished_at` (then id), an incident is the streak of bad runs (PARTIAL,
FAILED, TIMEOUT) after the latest COMPLETED one, and it is named after its first bad run.
CANCELLED and SKIPPED rows are not outcomes of a run and are passed over.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from reporthubd import domain
from reporthubd.store import schema
from reporthubd.store.database import Store
from reporthubd.store.types import MalformedJSON
from reporthubd.timeutil import utcnow

_e = schema.executions
_S = domain.ExecutionStatus
BAD = (_S.PARTIAL.value, _S.FAILED.value, _S.TIMEOUT.value)
GOOD = (_S.COMPLETED.value,)


@dataclass(frozen=True, kw_only=True)
class Opener:
    execution_id: str
    status: domain.ExecutionStatus
    finished_at: datetime


@dataclass(frozen=True, kw_only=True)
class History:
    """The stream as it stood just before one run ended."""

    previous_bad: bool
    """The latest run ended before it was bad (an incident is open)."""
    opener: Opener | None
    """The first bad run after the latest good one (the open incident's name)."""
    failures: int
    """Bad runs since the latest good one."""


def _stream(config_id: int, schedule_id: int | None) -> sa.ColumnElement[bool]:
    if schedule_id is None:
        return sa.and_(_e.c.config_id == config_id, _e.c.schedule_id.is_(None))
    return _e.c.schedule_id == schedule_id


async def history(
    store: Store,
    *,
    config_id: int,
    schedule_id: int | None,
    execution_id: str,
    finished_at: datetime,
) -> History:
    """The stream's runs that ended before (or with) `execution_id`, that one left out."""
    before = sa.and_(
        _stream(config_id, schedule_id),
        _e.c.finished_at.is_not(None),
        _e.c.finished_at <= finished_at,
        _e.c.id != execution_id,
    )
    async with store.engine.connect() as conn:
        previous = (
            await conn.execute(
                sa.select(_e.c.status)
                .where(before, _e.c.status.in_(BAD + GOOD))
                .order_by(_e.c.finished_at.desc(), _e.c.id.desc())
                .limit(1)
            )
        ).scalar()
        good_at = (
            await conn.execute(
                sa.select(sa.func.max(_e.c.finished_at)).where(before, _e.c.status.in_(GOOD))
            )
        ).scalar()
        streak = sa.and_(before, _e.c.status.in_(BAD))
        if good_at is not None:
            streak = sa.and_(streak, _e.c.finished_at > good_at)
        first = (
            await conn.execute(
                sa.select(_e.c.id, _e.c.status, _e.c.finished_at)
                .where(streak)
                .order_by(_e.c.finished_at, _e.c.id)
                .limit(1)
            )
        ).first()
        failures = (await conn.execute(sa.select(sa.func.count()).where(streak))).scalar() or 0
        await conn.rollback()
    opener = (
        Opener(execution_id=first.id, status=_S(first.status), finished_at=first.finished_at)
        if first is not None
        else None
    )
    return History(previous_bad=previous in BAD, opener=opener, failures=int(failures))


async def report_notify(store: Store, config_id: int) -> tuple[str, dict[str, Any] | None] | None:
    """(name, notify object) of the report; None when there is no such report. A malformed
    object reads as {"malformed": ...}, which the rule parser refuses naming the key."""
    c = schema.configs
    async with store.engine.connect() as conn:
        row = (
            await conn.execute(sa.select(c.c.name, c.c.notify).where(c.c.id == config_id))
        ).first()
    if row is None:
        return None
    notify = row.notify
    if isinstance(notify, MalformedJSON):
        notify = {"malformed": notify.raw}
    return row.name, notify if isinstance(notify, dict) else None


@dataclass(frozen=True, kw_only=True)
class DeadlineRow:
    schedule_id: int
    config_id: int
    deadline: str


async def deadlines(store: Store) -> list[DeadlineRow]:
    """Active schedules of active reports that have a deadline."""
    s, c = schema.schedules, schema.configs
    query = (
        sa.select(s.c.id, s.c.config_id, s.c.deadline)
        .join(c, c.c.id == s.c.config_id)
        .where(s.c.deadline.is_not(None), s.c.is_active.is_(True), c.c.is_active.is_(True))
        .order_by(s.c.id)
    )
    async with store.engine.connect() as conn:
        rows = (await conn.execute(query)).all()
    return [
        DeadlineRow(schedule_id=row.id, config_id=row.config_id, deadline=row.deadline)
        for row in rows
        if row.deadline and str(row.deadline).strip()
    ]


@dataclass(frozen=True, kw_only=True)
class FireRow:
    execution_id: str
    status: domain.ExecutionStatus
    error_message: str | None


async def fire(store: Store, schedule_id: int, scheduled_for: datetime) -> FireRow | None:
    """The execution claimed for a schedule's fire, if any."""
    async with store.engine.connect() as conn:
        row = (
            await conn.execute(
                sa.select(_e.c.id, _e.c.status, _e.c.error_message).where(
                    _e.c.schedule_id == schedule_id, _e.c.scheduled_for == scheduled_for
                )
            )
        ).first()
    if row is None:
        return None
    try:
        status = _S(row.status)
    except ValueError:
        return None
    return FireRow(execution_id=row.id, status=status, error_message=row.error_message)


async def notify_objects(store: Store) -> list[tuple[int, str, Any]]:
    """(id, name, notify) of each active report with a notify object (a malformed one as
    {"malformed": ...}), for `reporthubd check`."""
    c = schema.configs
    query = (
        sa.select(c.c.id, c.c.name, c.c.notify)
        .where(c.c.notify.is_not(None), c.c.is_active.is_(True))
        .order_by(c.c.id)
    )
    async with store.engine.connect() as conn:
        rows = (await conn.execute(query)).all()
    found = []
    for row in rows:
        notify = row.notify
        if isinstance(notify, MalformedJSON):
            notify = {"malformed": notify.raw}
        if notify is not None:
            found.append((int(row.id), str(row.name), notify))
    return found


async def latest_ended(store: Store, *, since: datetime) -> list[str]:
    """The latest run of each stream among the runs that ended since `since` (the notifier's
    sweep decides each again)."""
    ended = sa.and_(
        _e.c.finished_at.is_not(None),
        _e.c.finished_at >= since,
        _e.c.status.in_(BAD + GOOD),
    )
    async with store.engine.connect() as conn:
        rows = (
            await conn.execute(
                sa.select(_e.c.id, _e.c.config_id, _e.c.schedule_id, _e.c.finished_at)
                .where(ended)
                .order_by(_e.c.finished_at, _e.c.id)
            )
        ).all()
    latest: dict[tuple[int, int | None], str] = {}
    for row in rows:
        latest[(row.config_id, row.schedule_id)] = row.id
    return list(latest.values())


@dataclass(frozen=True, kw_only=True)
class MissedRow:
    execution_id: str
    config_id: int
    schedule_id: int | None
    scheduled_for: datetime | None
    reason: str


async def recent_missed(store: Store, *, since: datetime) -> list[MissedRow]:
    """The first fire recorded SKIPPED as missed of each schedule and reason since `since`
    (the notifier's sweep: one `missed` notice per schedule and outage)."""
    query = (
        sa.select(_e.c.id, _e.c.config_id, _e.c.schedule_id, _e.c.scheduled_for, _e.c.error_message)
        .where(
            _e.c.status == _S.SKIPPED.value,
            _e.c.created_at >= since,
            _e.c.error_message.like("missed%"),
        )
        .order_by(_e.c.created_at, _e.c.id)
    )
    async with store.engine.connect() as conn:
        rows = (await conn.execute(query)).all()
    first: dict[tuple[int | None, str], MissedRow] = {}
    for row in rows:
        reason = str(row.error_message)
        first.setdefault(
            (row.schedule_id, reason.split(" (")[0]),
            MissedRow(
                execution_id=row.id,
                config_id=row.config_id,
                schedule_id=row.schedule_id,
                scheduled_for=row.scheduled_for,
                reason=reason,
            ),
        )
    return list(first.values())


async def claim_late(
    store: Store,
    *,
    schedule_id: int,
    scheduled_for: datetime,
    config_id: int,
    execution_id: str | None,
    node_id: str,
) -> bool:
    """Claim a fire judged late (revision 0015): True for the one node (and the one pass)
    that inserted its row, which counts it; False when it was claimed before."""
    try:
        async with store.engine.begin() as conn:
            await conn.execute(
                sa.insert(schema.late_fires).values(
                    schedule_id=schedule_id,
                    scheduled_for=scheduled_for,
                    config_id=config_id,
                    execution_id=execution_id,
                    node_id=node_id,
                    created_at=utcnow(),
                )
            )
    except sa.exc.IntegrityError:
        return False
    return True
