"""The notice ledger (report_notices, revision 0008): every notice to one target about one
incident, recorded like a delivery (who, when, status, error) and sent exactly once across nodes
and restarts.

Two claims make that so. Recording is an insert under UNIQUE (incident_key, event, target,
sequence): however many nodes see the incident, one row exists (`record` returns the ids this
call inserted; sequence 0 is the first notice, 1, 2, ... reminders). Sending is a conditional
update: `take_due` moves a due row (PENDING, RETRYING past its next_attempt_at, or SENDING whose
holder's lease ran out: a node that died mid-send) to SENDING with this node, a lease and the
next attempt number, only if the row is still as it was read; `mark_sent` and `mark_failed`
write only while this node holds that attempt (a node frozen past its lease finds the row taken
and writes nothing). Statuses: PENDING, SENDING, SENT, RETRYING, FAILED.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa

from reporthubd.ids import new_id
from reporthubd.store import schema
from reporthubd.store.database import Store

_n = schema.notices

PENDING, SENDING, SENT, RETRYING, FAILED = "PENDING", "SENDING", "SENT", "RETRYING", "FAILED"


@dataclass(frozen=True, kw_only=True)
class NewNotice:
    incident_key: str
    """Names the incident (e.g. the report and the first failing run): one notice per
    (incident_key, event, target, sequence)."""
    event: str
    target: str
    sequence: int = 0
    config_id: int | None = None
    schedule_id: int | None = None
    execution_id: str | None = None
    message: str | None = None


@dataclass(frozen=True, kw_only=True)
class Notice:
    id: str
    incident_key: str
    event: str
    target: str
    sequence: int
    config_id: int | None
    schedule_id: int | None
    execution_id: str | None
    message: str | None
    status: str
    attempt: int
    node_id: str | None
    lease_until: datetime | None
    next_attempt_at: datetime | None
    error_message: str | None
    created_at: datetime
    sent_at: datetime | None


def _notice(row: sa.Row[object]) -> Notice:
    return Notice(**{column.name: getattr(row, column.name) for column in _n.columns})


async def record(store: Store, notices: Sequence[NewNotice], *, at: datetime) -> list[str]:
    """Insert each notice unless its (incident_key, event, target, sequence) is recorded
    already (by this node or another); returns the ids this call inserted, in order."""
    inserted: list[str] = []
    for notice in notices:
        notice_id = new_id()
        try:
            async with store.engine.begin() as conn:
                await conn.execute(
                    sa.insert(_n).values(
                        id=notice_id,
                        incident_key=notice.incident_key,
                        event=notice.event,
                        target=notice.target,
                        sequence=notice.sequence,
                        config_id=notice.config_id,
                        schedule_id=notice.schedule_id,
                        execution_id=notice.execution_id,
                        message=notice.message,
                        status=PENDING,
                        attempt=0,
                        created_at=at,
                    )
                )
        except sa.exc.IntegrityError:
            continue  # recorded before: the notice exists once
        inserted.append(notice_id)
    return inserted


async def take_due(
    store: Store, *, node_id: str, now: datetime, lease_seconds: float, limit: int = 50
) -> list[Notice]:
    """Take up to `limit` due notices for sending (see the module docstring); returns those
    this node took, each at its new attempt, SENDING until `now + lease_seconds`."""
    due = sa.or_(
        sa.and_(_n.c.status == PENDING),
        sa.and_(_n.c.status == RETRYING, _n.c.next_attempt_at <= now),
        sa.and_(_n.c.status == SENDING, _n.c.lease_until < now),
    )
    async with store.engine.connect() as conn:
        seen = (
            await conn.execute(
                sa.select(_n.c.id, _n.c.status, _n.c.attempt)
                .where(due)
                .order_by(_n.c.created_at, _n.c.id)
                .limit(limit)
            )
        ).all()
        await conn.rollback()
    lease = now + timedelta(seconds=lease_seconds)
    taken: list[str] = []
    for notice_id, status, attempt in seen:
        async with store.engine.begin() as conn:
            done = await conn.execute(
                sa.update(_n)
                .where(_n.c.id == notice_id, _n.c.status == status, _n.c.attempt == attempt)
                .values(status=SENDING, node_id=node_id, lease_until=lease, attempt=attempt + 1)
            )
        if done.rowcount == 1:
            taken.append(notice_id)
    if not taken:
        return []
    async with store.engine.connect() as conn:
        rows = (await conn.execute(sa.select(_n).where(_n.c.id.in_(taken)))).all()
    found = {row.id: _notice(row) for row in rows}
    return [found[notice_id] for notice_id in taken if notice_id in found]


def _held(notice: Notice, node_id: str) -> sa.ColumnElement[bool]:
    return sa.and_(
        _n.c.id == notice.id,
        _n.c.status == SENDING,
        _n.c.node_id == node_id,
        _n.c.attempt == notice.attempt,
    )


async def extend_lease(store: Store, notice: Notice, *, node_id: str, until: datetime) -> bool:
    """Hold `notice` until `until`, if this node still holds it at its attempt (the fence a
    sender checks right before the delivery method's commit point); False when it does not."""
    async with store.engine.begin() as conn:
        done = await conn.execute(
            sa.update(_n).where(_held(notice, node_id)).values(lease_until=until)
        )
    return done.rowcount == 1


async def mark_sent(store: Store, notice: Notice, *, node_id: str, at: datetime) -> bool:
    """SENT, if this node still holds `notice` at its attempt; False when it does not."""
    async with store.engine.begin() as conn:
        done = await conn.execute(
            sa.update(_n)
            .where(_held(notice, node_id))
            .values(status=SENT, sent_at=at, lease_until=None, error_message=None)
        )
    return done.rowcount == 1


async def mark_failed(
    store: Store, notice: Notice, *, node_id: str, error: str, retry_at: datetime | None
) -> bool:
    """RETRYING at `retry_at`, or FAILED for good when it is None, if this node still holds
    `notice` at its attempt; False when it does not."""
    async with store.engine.begin() as conn:
        done = await conn.execute(
            sa.update(_n)
            .where(_held(notice, node_id))
            .values(
                status=RETRYING if retry_at is not None else FAILED,
                next_attempt_at=retry_at,
                lease_until=None,
                error_message=error[:2000],
            )
        )
    return done.rowcount == 1


async def of_incident(store: Store, incident_key: str) -> list[Notice]:
    """Every notice of an incident, oldest first."""
    async with store.engine.connect() as conn:
        rows = (
            await conn.execute(
                sa.select(_n)
                .where(_n.c.incident_key == incident_key)
                .order_by(_n.c.created_at, _n.c.sequence, _n.c.event, _n.c.target)
            )
        ).all()
    return [_notice(row) for row in rows]


async def recent(
    store: Store,
    *,
    execution_id: str | None = None,
    config_id: int | None = None,
    schedule_id: int | None = None,
    incident_key: str | None = None,
    status: str | None = None,
    limit: int = 100,
) -> list[Notice]:
    """The latest notices, newest first, filtered by whichever of the arguments are given."""
    query = sa.select(_n)
    for column, value in (
        (_n.c.execution_id, execution_id),
        (_n.c.config_id, config_id),
        (_n.c.schedule_id, schedule_id),
        (_n.c.incident_key, incident_key),
        (_n.c.status, status),
    ):
        if value is not None:
            query = query.where(column == value)
    query = query.order_by(_n.c.created_at.desc(), _n.c.id.desc()).limit(limit)
    async with store.engine.connect() as conn:
        rows = (await conn.execute(query)).all()
    return [_notice(row) for row in rows]
