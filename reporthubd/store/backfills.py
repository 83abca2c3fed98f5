"""Backfills in the store (revision 0010): the request and the lease of the node that runs it
(the fires, their claims and outcomes: store/backfill_fires.py).

A backfill is run by one node at a time: `take` moves a PENDING backfill, or a RUNNING one whose
lease ran out (its node died or froze), to RUNNING with this node and a lease, by a conditional
update; `renew` extends it only while this node still holds it. Statuses of a backfill: PENDING,
RUNNING, COMPLETED, CANCELLED, FAILED; of a fire: PENDING (not claimed), STARTED (claimed: its
execution runs or is followed), then the final status of that execution.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from reporthubd import backfill_rules as rules
from reporthubd import domain
from reporthubd.ids import new_id
from reporthubd.store import definitions, schema
from reporthubd.store import rows as row_records
from reporthubd.store.database import Store
from reporthubd.timeutil import utcnow

_b = schema.backfills
_f = schema.backfill_fires
_e = schema.executions

PENDING, RUNNING, COMPLETED, CANCELLED, FAILED = (
    "PENDING",
    "RUNNING",
    "COMPLETED",
    "CANCELLED",
    "FAILED",
)
OPEN = (PENDING, RUNNING)
FIRE_PENDING, FIRE_STARTED = "PENDING", "STARTED"
CHUNK = 500


class UnknownBackfill(LookupError):
    pass


class UnknownSchedule(LookupError):
    pass


class BackfillConflict(RuntimeError):
    pass


class LeaseLost(RuntimeError):
    """This node no longer holds the backfill (cancelled, or taken over after its lease)."""


@dataclass(frozen=True, kw_only=True)
class Backfill:
    id: str
    schedule_id: int
    config_id: int
    range_from: datetime
    range_to: datetime
    reprocess: rules.Reprocess
    deliver: bool
    concurrency: int
    status: str
    total: int
    requested_by: str | None
    node_id: str | None
    lease_until: datetime | None
    error_message: str | None
    cancelled_by: str | None
    created_at: datetime
    finished_at: datetime | None


@dataclass(frozen=True, kw_only=True)
class Progress:
    backfill: Backfill
    done: int
    failed: int
    running: int
    by_status: dict[str, int]

    def as_json(self) -> dict[str, Any]:
        b = self.backfill
        return {
            "id": b.id,
            "schedule_id": b.schedule_id,
            "config_id": b.config_id,
            "from": _iso(b.range_from),
            "to": _iso(b.range_to),
            "reprocess": b.reprocess.value,
            "deliver": b.deliver,
            "concurrency": b.concurrency,
            "status": b.status,
            "total": b.total,
            "done": self.done,
            "failed": self.failed,
            "running": self.running,
            "fires_by_status": self.by_status,
            "requested_by": b.requested_by,
            "node_id": b.node_id,
            "error_message": b.error_message,
            "cancelled_by": b.cancelled_by,
            "created_at": _iso(b.created_at),
            "finished_at": _iso(b.finished_at) if b.finished_at else None,
        }


def _iso(value: datetime) -> str:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _record(row: Any) -> Backfill:
    return Backfill(
        id=row.id,
        schedule_id=int(row.schedule_id),
        config_id=int(row.config_id),
        range_from=row.range_from,
        range_to=row.range_to,
        reprocess=rules.Reprocess(row.reprocess),
        deliver=bool(row.deliver),
        concurrency=int(row.concurrency),
        status=row.status,
        total=int(row.total),
        requested_by=row.requested_by,
        node_id=row.node_id,
        lease_until=row.lease_until,
        error_message=row.error_message,
        cancelled_by=row.cancelled_by,
        created_at=row.created_at,
        finished_at=row.finished_at,
    )


# -- what the store holds for a schedule's fires -----------------------------------------------


async def history(
    store: Store, schedule_id: int, range_from: datetime, range_to: datetime
) -> dict[datetime, rules.FireHistory]:
    """Every attempt of the schedule's fires in [range_from, range_to)."""
    query = sa.select(
        _e.c.scheduled_for, _e.c.attempt, _e.c.id, _e.c.status, _e.c.error_message
    ).where(
        _e.c.schedule_id == schedule_id,
        _e.c.scheduled_for >= range_from,
        _e.c.scheduled_for < range_to,
    )
    async with store.engine.connect() as conn:
        found = (await conn.execute(query)).all()
    return rules.histories((row.scheduled_for, attempt_record(row)) for row in found)


def attempt_record(row: Any) -> rules.Attempt:
    return rules.Attempt(
        attempt=int(row.attempt),
        execution_id=row.id,
        status=domain.ExecutionStatus(row.status),
        error_message=row.error_message,
    )


async def schedule_exists(store: Store, schedule_id: int) -> bool:
    s = schema.schedules
    async with store.engine.connect() as conn:
        found = (await conn.execute(sa.select(s.c.id).where(s.c.id == schedule_id))).first()
    return found is not None


# -- the request -------------------------------------------------------------------------------


async def create(
    store: Store,
    *,
    schedule_id: int,
    config_id: int,
    range_from: datetime,
    range_to: datetime,
    reprocess: rules.Reprocess,
    fires: Sequence[tuple[datetime, str]],
    deliver: bool,
    concurrency: int,
    requested_by: str | None,
) -> str:
    """Record a backfill and the fires it runs ((scheduled_for, why) each: PENDING, for any
    node to take). Refused (BackfillConflict) while another open backfill of the schedule
    overlaps the range."""
    backfill_id = new_id()
    now = utcnow()
    async with store.engine.begin() as conn:
        overlapping = (
            await conn.execute(
                sa.select(_b.c.id, _b.c.status).where(
                    _b.c.schedule_id == schedule_id,
                    _b.c.status.in_(OPEN),
                    _b.c.range_from < range_to,
                    _b.c.range_to > range_from,
                )
            )
        ).first()
        if overlapping is not None:
            raise BackfillConflict(
                f"schedule_id: backfill {overlapping.id} of schedule {schedule_id} over an "
                f"overlapping range is still {overlapping.status}; cancel it or wait"
            )
        await conn.execute(
            sa.insert(_b).values(
                id=backfill_id,
                schedule_id=schedule_id,
                config_id=config_id,
                range_from=range_from,
                range_to=range_to,
                reprocess=reprocess.value,
                deliver=deliver,
                concurrency=concurrency,
                status=PENDING if fires else COMPLETED,
                total=len(fires),
                requested_by=requested_by,
                created_at=now,
                updated_at=now,
                finished_at=None if fires else now,
            )
        )
        rows = [
            {
                "backfill_id": backfill_id,
                "scheduled_for": scheduled_for,
                "status": FIRE_PENDING,
                "note": why[:1000],
            }
            for scheduled_for, why in fires
        ]
        for start in range(0, len(rows), CHUNK):
            await conn.execute(sa.insert(_f), rows[start : start + CHUNK])
    return backfill_id


async def get(store: Store, backfill_id: str) -> Backfill:
    async with store.engine.connect() as conn:
        row = (await conn.execute(sa.select(_b).where(_b.c.id == backfill_id))).first()
    if row is None:
        raise UnknownBackfill(f"backfill_id: no backfill {backfill_id!r}")
    return _record(row)


async def progress(store: Store, backfill_id: str) -> Progress:
    found = await get(store, backfill_id)
    query = (
        sa.select(_f.c.status, sa.func.count())
        .where(_f.c.backfill_id == backfill_id)
        .group_by(_f.c.status)
    )
    async with store.engine.connect() as conn:
        counts = {row[0]: int(row[1]) for row in await conn.execute(query)}
    return _progress(found, counts)


def _progress(found: Backfill, counts: dict[str, int]) -> Progress:
    failed = sum(counts.get(s.value, 0) for s in rules.FAILED_STATUSES)
    running = counts.get(FIRE_STARTED, 0)
    done = sum(counts.values()) - running - counts.get(FIRE_PENDING, 0)
    return Progress(backfill=found, done=done, failed=failed, running=running, by_status=counts)


async def recent(
    store: Store, *, schedule_id: int | None = None, limit: int = 20
) -> list[Progress]:
    """The latest backfills (open ones first), with their progress."""
    query = sa.select(_b).order_by(_b.c.created_at.desc()).limit(limit)
    if schedule_id is not None:
        query = query.where(_b.c.schedule_id == schedule_id)
    async with store.engine.connect() as conn:
        found = [_record(row) for row in await conn.execute(query)]
        if not found:
            return []
        counts: dict[str, dict[str, int]] = {b.id: {} for b in found}
        rows = await conn.execute(
            sa.select(_f.c.backfill_id, _f.c.status, sa.func.count())
            .where(_f.c.backfill_id.in_(list(counts)))
            .group_by(_f.c.backfill_id, _f.c.status)
        )
        for backfill_id, status, count in rows:
            counts[backfill_id][status] = int(count)
    out = [_progress(b, counts[b.id]) for b in found]
    out.sort(key=lambda p: p.backfill.status not in OPEN)
    return out


async def cancel(store: Store, backfill_id: str, *, by: str) -> Backfill:
    """Stop a backfill: no more fires are started, and the runs it started are cancelled by
    the nodes that own them (backfill_fires.cancelled_runs). Refused (BackfillConflict) once it
    has ended."""
    now = utcnow()
    async with store.engine.begin() as conn:
        done = await conn.execute(
            sa.update(_b)
            .where(_b.c.id == backfill_id, _b.c.status.in_(OPEN))
            .values(status=CANCELLED, cancelled_by=by[:255], updated_at=now, finished_at=now)
        )
    if done.rowcount != 1:
        found = await get(store, backfill_id)
        raise BackfillConflict(
            f"backfill_id: backfill {backfill_id} has already ended {found.status}"
        )
    return await get(store, backfill_id)


# -- the node that runs it ---------------------------------------------------------------------


async def take(store: Store, *, node_id: str, lease_seconds: float) -> list[Backfill]:
    """Take the open backfills nobody holds (PENDING, or a lease that ran out), one conditional
    update each: exactly one node wins each."""
    now = utcnow()
    candidates = sa.select(_b.c.id, _b.c.status, _b.c.node_id, _b.c.lease_until).where(
        _b.c.status.in_(OPEN),
        sa.or_(_b.c.status == PENDING, _b.c.lease_until.is_(None), _b.c.lease_until < now),
    )
    async with store.engine.connect() as conn:
        found = (await conn.execute(candidates)).all()
    taken: list[Backfill] = []
    for row in found:
        same = [_b.c.id == row.id, _b.c.status == row.status]
        same.append(
            _b.c.lease_until.is_(None)
            if row.lease_until is None
            else _b.c.lease_until == row.lease_until
        )
        async with store.engine.begin() as conn:
            won = await conn.execute(
                sa.update(_b)
                .where(*same)
                .values(
                    status=RUNNING,
                    node_id=node_id,
                    lease_until=now + timedelta(seconds=lease_seconds),
                    updated_at=now,
                )
            )
        if won.rowcount == 1:
            taken.append(await get(store, row.id))
    return taken


def held_by(backfill_id: str, node_id: str, now: datetime) -> Sequence[sa.ColumnElement[bool]]:
    return (
        _b.c.id == backfill_id,
        _b.c.node_id == node_id,
        _b.c.status == RUNNING,
        _b.c.lease_until > now,
    )


async def renew(store: Store, backfill_id: str, *, node_id: str, lease_seconds: float) -> bool:
    now = utcnow()
    async with store.engine.begin() as conn:
        done = await conn.execute(
            sa.update(_b)
            .where(*held_by(backfill_id, node_id, now))
            .values(lease_until=now + timedelta(seconds=lease_seconds), updated_at=now)
        )
    return done.rowcount == 1


async def finish(
    store: Store, backfill_id: str, *, node_id: str, status: str, error: str | None = None
) -> bool:
    now = utcnow()
    async with store.engine.begin() as conn:
        done = await conn.execute(
            sa.update(_b)
            .where(*held_by(backfill_id, node_id, now))
            .values(
                status=status,
                lease_until=None,
                error_message=error[:2000] if error else None,
                updated_at=now,
                finished_at=now,
            )
        )
    return done.rowcount == 1


async def load_schedule(
    store: Store, schedule_id: int, *, default_timezone: str
) -> domain.Schedule:
    """The schedule with its business calendar. Raises UnknownSchedule, or ValueError naming
    what is wrong with the row."""
    s = schema.schedules
    async with store.engine.connect() as conn:
        row = (await conn.execute(sa.select(s).where(s.c.id == schedule_id))).mappings().first()
    if row is None:
        raise UnknownSchedule(f"schedule_id: no schedule {schedule_id} in report_schedules")
    found = row_records.schedule(dict(row), default_timezone=default_timezone)
    if isinstance(found, domain.RowError):
        raise ValueError(f"schedule_id: schedule {schedule_id} is invalid: {found}")
    resolved = definitions.with_calendar(found, await definitions.load_calendars(store))
    if isinstance(resolved, domain.RowError):
        raise ValueError(f"schedule_id: schedule {schedule_id}: {resolved}")
    return resolved


async def live_nodes(store: Store, *, since: datetime) -> int:
    """Nodes that heartbeat since `since` and have not stopped: who would run a backfill."""
    n = schema.nodes
    query = sa.select(sa.func.count()).where(n.c.heartbeat_at >= since, n.c.stopped_at.is_(None))
    async with store.engine.connect() as conn:
        return int((await conn.execute(query)).scalar() or 0)


async def delivers(
    store: Store, execution_ids: Sequence[str], schedule_id: int, when: datetime
) -> bool:
    """Whether the backfill that started one of `execution_ids` (a run, or the run a recovery
    run recovers) delivers its files (`--no-deliver`): asked by whichever engine runs it, so an
    adopted or recovered run keeps its backfill's choice. True for a run of no backfill."""
    query = (
        sa.select(_b.c.deliver)
        .join(_f, _f.c.backfill_id == _b.c.id)
        .where(
            _b.c.schedule_id == schedule_id,
            _f.c.scheduled_for == when,
            _f.c.execution_id.in_(list(execution_ids)),
        )
    )
    async with store.engine.connect() as conn:
        found = (await conn.execute(query)).first()
    return True if found is None else bool(found.deliver)
