"""Waiting runs in the store (report_waits, revision 0013): one row per claimed run that waits for
its dependencies or readiness probe (reporthubd/waits.py has the rules).

The row is inserted once per execution (its primary key), by the node whose engine first meets
the run; from then on the run holds nothing but this row. Checking it is leased: `take_due` moves
a WAITING row whose next check is due (and whose last checker's lease ran out) to this node
with a lease, by a conditional update, so one node checks it at a time; `decide` (RELEASED to
run, EXPIRED past its deadline) and `reschedule` write only while this node holds the lease. A
RELEASED row lets the engine run the execution (on whichever node it is submitted to); the
execution itself is claimed PENDING -> RUNNING once, as any run.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from reporthubd import domain
from reporthubd.store import schema
from reporthubd.store.database import Store
from reporthubd.timeutil import utcnow

_w = schema.waits
_e = schema.executions
_c = schema.configs

WAITING, RELEASED, EXPIRED = "WAITING", "RELEASED", "EXPIRED"


@dataclass(frozen=True, kw_only=True)
class Wait:
    execution_id: str
    schedule_id: int
    config_id: int
    scheduled_for: datetime
    status: str
    waiting_for: str | None
    deadline_at: datetime
    next_check_at: datetime
    checks: int
    last_result: str | None
    node_id: str | None
    created_at: datetime | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            "execution_id": self.execution_id,
            "schedule_id": self.schedule_id,
            "config_id": self.config_id,
            "scheduled_for": self.scheduled_for.isoformat(),
            "status": self.status,
            "waiting_for": self.waiting_for,
            "deadline_at": self.deadline_at.isoformat(),
            "next_check_at": self.next_check_at.isoformat(),
            "checks": self.checks,
            "last_result": self.last_result,
            "node_id": self.node_id,
        }


def _record(row: Any) -> Wait:
    return Wait(
        execution_id=row.execution_id,
        schedule_id=int(row.schedule_id),
        config_id=int(row.config_id),
        scheduled_for=row.scheduled_for,
        status=row.status,
        waiting_for=row.waiting_for,
        deadline_at=row.deadline_at,
        next_check_at=row.next_check_at,
        checks=int(row.checks),
        last_result=row.last_result,
        node_id=row.node_id,
        created_at=row.created_at,
    )


async def get(store: Store, execution_id: str) -> Wait | None:
    async with store.engine.connect() as conn:
        row = (await conn.execute(sa.select(_w).where(_w.c.execution_id == execution_id))).first()
    return _record(row) if row is not None else None


async def register(
    store: Store,
    *,
    execution: domain.Execution,
    schedule_id: int,
    scheduled_for: datetime,
    waiting_for: str,
    deadline_at: datetime,
) -> Wait:
    """The run's wait row: inserted now, or the one already there (another node, an earlier
    process, met the run first)."""
    now = utcnow()
    try:
        async with store.engine.begin() as conn:
            await conn.execute(
                sa.insert(_w).values(
                    execution_id=execution.id,
                    schedule_id=schedule_id,
                    config_id=execution.config_id,
                    scheduled_for=scheduled_for,
                    status=WAITING,
                    waiting_for=waiting_for[:4000],
                    deadline_at=deadline_at,
                    next_check_at=now,
                    checks=0,
                    created_at=now,
                )
            )
    except sa.exc.IntegrityError:
        pass  # it waits already
    found = await get(store, execution.id)
    assert found is not None
    return found


async def take_due(
    store: Store, *, node_id: str, lease_seconds: float, limit: int = 100
) -> list[Wait]:
    """WAITING rows due for a check that nobody is checking, taken for this node."""
    now = utcnow()
    query = (
        sa.select(_w.c.execution_id, _w.c.lease_until)
        .where(
            _w.c.status == WAITING,
            _w.c.next_check_at <= now,
            sa.or_(_w.c.lease_until.is_(None), _w.c.lease_until < now),
        )
        .order_by(_w.c.next_check_at)
        .limit(limit)
    )
    async with store.engine.connect() as conn:
        found = (await conn.execute(query)).all()
    taken: list[Wait] = []
    for row in found:
        same = (
            _w.c.lease_until.is_(None)
            if row.lease_until is None
            else _w.c.lease_until == row.lease_until
        )
        async with store.engine.begin() as conn:
            won = await conn.execute(
                sa.update(_w)
                .where(_w.c.execution_id == row.execution_id, _w.c.status == WAITING, same)
                .values(node_id=node_id, lease_until=now + timedelta(seconds=lease_seconds))
            )
        if won.rowcount == 1:
            wait = await get(store, row.execution_id)
            if wait is not None:
                taken.append(wait)
    return taken


def _held(execution_id: str, node_id: str, now: datetime) -> Sequence[sa.ColumnElement[bool]]:
    return (
        _w.c.execution_id == execution_id,
        _w.c.status == WAITING,
        _w.c.node_id == node_id,
        _w.c.lease_until > now,
    )


async def decide(
    store: Store,
    execution_id: str,
    *,
    node_id: str,
    status: str,
    result: str,
    lease_seconds: float | None = None,
) -> bool:
    """RELEASED or EXPIRED, only while this node holds the check. A release keeps a lease of
    `lease_seconds`: if this node stops before its engine starts the run, another node takes
    the release after it (`take_stale_releases`)."""
    now = utcnow()
    lease = now + timedelta(seconds=lease_seconds) if lease_seconds is not None else None
    async with store.engine.begin() as conn:
        done = await conn.execute(
            sa.update(_w)
            .where(*_held(execution_id, node_id, now))
            .values(
                status=status,
                last_result=result[:4000],
                checks=_w.c.checks + 1,
                lease_until=lease,
                decided_at=now,
            )
        )
    return done.rowcount == 1


async def take_stale_releases(
    store: Store, *, node_id: str, lease_seconds: float, limit: int = 100
) -> list[str]:
    """Released runs still PENDING after their releaser's lease: taken by this node to submit
    (the engine's PENDING -> RUNNING claim runs each once, whoever submits it)."""
    now = utcnow()
    query = (
        sa.select(_w.c.execution_id, _w.c.lease_until)
        .join(_e, _e.c.id == _w.c.execution_id)
        .where(
            _w.c.status == RELEASED,
            _w.c.lease_until.is_not(None),
            _w.c.lease_until < now,
            _e.c.status == domain.ExecutionStatus.PENDING.value,
        )
        .limit(limit)
    )
    async with store.engine.connect() as conn:
        found = (await conn.execute(query)).all()
    taken = []
    for row in found:
        async with store.engine.begin() as conn:
            won = await conn.execute(
                sa.update(_w)
                .where(
                    _w.c.execution_id == row.execution_id,
                    _w.c.status == RELEASED,
                    _w.c.lease_until == row.lease_until,
                )
                .values(node_id=node_id, lease_until=now + timedelta(seconds=lease_seconds))
            )
        if won.rowcount == 1:
            taken.append(row.execution_id)
    return taken


async def reschedule(
    store: Store, execution_id: str, *, node_id: str, next_check_at: datetime, result: str
) -> bool:
    now = utcnow()
    async with store.engine.begin() as conn:
        done = await conn.execute(
            sa.update(_w)
            .where(*_held(execution_id, node_id, now))
            .values(
                next_check_at=next_check_at,
                last_result=result[:4000],
                checks=_w.c.checks + 1,
                lease_until=None,
            )
        )
    return done.rowcount == 1


async def check_all_now(store: Store) -> None:
    """Every waiting run is checked at once (a run just finished: one of them may be free)."""
    now = utcnow()
    async with store.engine.begin() as conn:
        await conn.execute(
            sa.update(_w)
            .where(_w.c.status == WAITING, _w.c.next_check_at > now)
            .values(next_check_at=now)
        )


async def config_ids(store: Store, refs: Iterable[str | int]) -> dict[str | int, int | None]:
    """Each dependency (a report name or id) as a config id (None: no such report)."""
    refs = list(refs)
    names = [r for r in refs if isinstance(r, str)]
    ids = [r for r in refs if isinstance(r, int)]
    found: dict[str | int, int | None] = dict.fromkeys(refs)
    async with store.engine.connect() as conn:
        if names:
            named = await conn.execute(sa.select(_c.c.id, _c.c.name).where(_c.c.name.in_(names)))
            for config_id, name in named:
                found[name] = int(config_id)
        if ids:
            known = await conn.execute(sa.select(_c.c.id).where(_c.c.id.in_(ids)))
            for (config_id,) in known:
                found[int(config_id)] = int(config_id)
    return found


async def config_names(store: Store, ids: Iterable[int]) -> dict[int, str]:
    ids = list(ids)
    if not ids:
        return {}
    async with store.engine.connect() as conn:
        rows = await conn.execute(sa.select(_c.c.id, _c.c.name).where(_c.c.id.in_(ids)))
        return {int(config_id): name for config_id, name in rows}


async def completed_for(
    store: Store, config_ids: Iterable[int], start: datetime, end: datetime
) -> set[int]:
    """Which of `config_ids` have a COMPLETED run for [start, end): its scheduled_for in it,
    or, for a run without one, its started_at (waits.py states the rule)."""
    ids = list(config_ids)
    if not ids:
        return set()
    in_period = sa.or_(
        sa.and_(_e.c.scheduled_for >= start, _e.c.scheduled_for < end),
        sa.and_(_e.c.scheduled_for.is_(None), _e.c.started_at >= start, _e.c.started_at < end),
    )
    query = (
        sa.select(_e.c.config_id)
        .where(
            _e.c.config_id.in_(ids),
            _e.c.status == domain.ExecutionStatus.COMPLETED.value,
            in_period,
        )
        .distinct()
    )
    async with store.engine.connect() as conn:
        return {int(config_id) for (config_id,) in await conn.execute(query)}


async def waiting(store: Store, *, limit: int = 100) -> list[Wait]:
    """The runs waiting now, the oldest first."""
    query = sa.select(_w).where(_w.c.status == WAITING).order_by(_w.c.created_at).limit(limit)
    async with store.engine.connect() as conn:
        return [_record(row) for row in await conn.execute(query)]
