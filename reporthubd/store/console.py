"""Read-only queries of the operator console: keyset pages of a report's history, a run's
recovery chain, and the series its plots draw.

History pages are keyset pages over (created_at, id), newest first, through the index
(config_id, created_at): a page costs the same at run 100 as at run 100,000 (no OFFSET, no
COUNT over the whole history).
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from reporthubd import domain
from reporthubd.store import executions, schema
from reporthubd.store.database import Store

E = schema.executions
L = schema.delivery_logs
C = schema.configs
S = schema.schedules
D = schema.deliveries

Reader = Store | AsyncConnection
"""The store, or a connection already open on it: a page that makes several reads makes them
on one connection (one checkout, fewer hops between the loop and the driver's thread: under a
big export in the same process each hop waits for the GIL)."""


def by_report(select: sa.Select[Any], *, by_status: bool = False) -> sa.Select[Any]:
    """A report's rows newest first through (config_id, created_at), or with a status filter
    (`by_status`) through that or (config_id, status, created_at), whichever MariaDB finds
    cheaper. MariaDB otherwise picks a `ref` on config_id alone for SELECT * with ORDER BY
    created_at DESC and a bound on created_at, and reads the report's rows one by one from its
    newest: measured with 100,000 runs, a page 1,000 pages back took 1,000 ms that way and 5 ms
    with the index forced; forced alone, a status no run has walked the whole history
    (236 ms), 1 ms with the status index among the choices."""
    names = "ix_report_executions_config_created"
    if by_status:
        names += ", ix_report_executions_config_status_created"
    hint = f"FORCE INDEX ({names})"
    return select.with_hint(E, hint, dialect_name="mysql").with_hint(
        E, hint, dialect_name="mariadb"
    )


@asynccontextmanager
async def reading(source: Reader) -> AsyncIterator[AsyncConnection]:
    if isinstance(source, AsyncConnection):
        yield source
        return
    async with source.engine.connect() as conn:
        yield conn


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
CURSOR_PATTERN = r"^[0-9]{1,16}~[^~]{1,36}$"
"""What `Cursor.text()` writes: microseconds since 1970 (UTC), `~`, the execution id. Every text
that matches is a cursor (`parse` takes it), so a client may check it by this pattern alone."""


@dataclass(frozen=True, kw_only=True)
class Cursor:
    """A position in a history: the (created_at, id) of the row a page starts after."""

    created_at: datetime
    execution_id: str

    def text(self) -> str:
        micros = (self.created_at.astimezone(UTC) - _EPOCH) // _MICROSECOND
        return f"{micros}~{self.execution_id}"

    @classmethod
    def parse(cls, raw: str) -> Cursor:
        """Raises ValueError for a text that is not a cursor (`text()`'s, or the ISO time and id
        with `|` that earlier versions wrote, still in open pages' links)."""
        if re.fullmatch(CURSOR_PATTERN, raw):
            micros, _, execution_id = raw.partition("~")
            return cls(created_at=_EPOCH + int(micros) * _MICROSECOND, execution_id=execution_id)
        stamp, sep, execution_id = raw.partition("|")
        if not sep or not 1 <= len(execution_id) <= 36:
            raise ValueError("not a history cursor")
        created_at = datetime.fromisoformat(stamp)
        if created_at.tzinfo is None:
            raise ValueError("not a history cursor")
        return cls(created_at=created_at, execution_id=execution_id)


@dataclass(frozen=True, kw_only=True)
class HistoryQuery:
    config_id: int
    statuses: tuple[str, ...] = ()
    triggers: tuple[str, ...] = ()
    since: datetime | None = None
    until: datetime | None = None
    after: Cursor | None = None
    """Older rows than this one (the next page)."""
    before: Cursor | None = None
    """Newer rows than this one (the previous page)."""
    limit: int = 50


@dataclass(frozen=True, kw_only=True)
class HistoryPage:
    items: list[domain.Execution]
    older: Cursor | None
    """Where the next (older) page starts, None on the last page."""
    newer: Cursor | None
    """Where the previous (newer) page ends, None on the first page."""


def _position(row: domain.Execution) -> Cursor:
    assert row.created_at is not None  # created_at has a server default
    return Cursor(created_at=row.created_at, execution_id=row.id)


async def history_page(store: Reader, query: HistoryQuery) -> HistoryPage:
    conditions: list[Any] = [E.c.config_id == query.config_id]
    if query.statuses:
        conditions.append(E.c.status.in_(query.statuses))
    if query.triggers:
        conditions.append(E.c.trigger_type.in_(query.triggers))
    if query.since is not None:
        conditions.append(E.c.created_at >= query.since)
    if query.until is not None:
        conditions.append(E.c.created_at < query.until)
    backwards = query.before is not None and query.after is None
    if query.after is not None:
        at, ident = query.after.created_at, query.after.execution_id
        # created_at <= at bounds the index range; the OR only breaks ties within it.
        conditions.append(E.c.created_at <= at)
        conditions.append(sa.or_(E.c.created_at < at, E.c.id < ident))
    elif query.before is not None:
        at, ident = query.before.created_at, query.before.execution_id
        conditions.append(E.c.created_at >= at)
        conditions.append(sa.or_(E.c.created_at > at, E.c.id > ident))
    order = (
        (E.c.created_at.asc(), E.c.id.asc())
        if backwards
        else (E.c.created_at.desc(), E.c.id.desc())
    )
    select = by_report(
        sa.select(E).where(*conditions).order_by(*order).limit(query.limit + 1),
        by_status=bool(query.statuses),
    )
    async with reading(store) as conn:
        rows = executions.valid_records((await conn.execute(select)).all())
    more = len(rows) > query.limit
    rows = rows[: query.limit]
    if backwards:
        rows.reverse()
        older = _position(rows[-1]) if rows else None
        newer = _position(rows[0]) if rows and more else None
    else:
        older = _position(rows[-1]) if rows and more else None
        newer = _position(rows[0]) if rows and query.after is not None else None
    return HistoryPage(items=rows, older=older, newer=newer)


@dataclass(frozen=True, kw_only=True)
class ReportRow:
    config_id: int
    name: str
    description: str | None
    output_format: str
    parameters: dict[str, Any]
    is_active: bool


@dataclass(frozen=True, kw_only=True)
class ScheduleRow:
    schedule_id: int
    config_id: int
    cron: str
    timezone: str | None
    is_active: bool
    paused_at: datetime | None
    paused_by: str | None
    paused_reason: str | None
    next_run_at: datetime | None


@dataclass(frozen=True, kw_only=True)
class DeliveryRow:
    delivery_id: int
    config_id: int
    name: str
    method: str
    is_active: bool


def _report(row: Any) -> ReportRow:
    return ReportRow(
        config_id=int(row.id),
        name=str(row.name),
        description=row.description,
        output_format=str(row.output_format),
        parameters=dict(row.parameters) if isinstance(row.parameters, dict) else {},
        is_active=bool(row.is_active),
    )


async def reports(store: Reader) -> list[ReportRow]:
    query = sa.select(C).order_by(C.c.name)
    async with reading(store) as conn:
        return [_report(row) for row in (await conn.execute(query)).all()]


async def report(store: Reader, config_id: int) -> ReportRow | None:
    query = sa.select(C).where(C.c.id == config_id)
    async with reading(store) as conn:
        row = (await conn.execute(query)).first()
    return _report(row) if row is not None else None


async def schedules(store: Reader, config_id: int | None = None) -> list[ScheduleRow]:
    query = sa.select(S).order_by(S.c.config_id, S.c.id)
    if config_id is not None:
        query = query.where(S.c.config_id == config_id)
    async with reading(store) as conn:
        rows = (await conn.execute(query)).all()
    return [
        ScheduleRow(
            schedule_id=int(r.id),
            config_id=int(r.config_id),
            cron=str(r.cron_expression),
            timezone=r.timezone,
            is_active=bool(r.is_active),
            paused_at=r.paused_at,
            paused_by=r.paused_by,
            paused_reason=r.paused_reason,
            next_run_at=r.next_run_at,
        )
        for r in rows
    ]


async def deliveries(
    store: Reader, delivery_ids: list[int] | None = None
) -> dict[int, DeliveryRow]:
    query = sa.select(D.c.id, D.c.config_id, D.c.name, D.c.method, D.c.is_active)
    if delivery_ids is not None:
        query = query.where(D.c.id.in_(delivery_ids))
    async with reading(store) as conn:
        rows = (await conn.execute(query)).all()
    return {
        int(r.id): DeliveryRow(
            delivery_id=int(r.id),
            config_id=int(r.config_id),
            name=str(r.name),
            method=str(r.method),
            is_active=bool(r.is_active),
        )
        for r in rows
    }


async def recovery_chain(store: Reader, execution: domain.Execution) -> list[domain.Execution]:
    """Every run of the same logical run, oldest first: the other attempts of the same fire
    (recovery after a lost node, re-runs) and the runs that stand in for it (`recovers_id`)."""
    root = execution.recovers_id or execution.id
    related: list[Any] = [E.c.id == root, E.c.recovers_id == root]
    if execution.schedule_id is not None and execution.scheduled_for is not None:
        related.append(
            sa.and_(
                E.c.schedule_id == execution.schedule_id,
                E.c.scheduled_for == execution.scheduled_for,
            )
        )
    query = sa.select(E).where(sa.or_(*related)).order_by(E.c.created_at, E.c.id).limit(100)
    async with reading(store) as conn:
        rows = executions.valid_records((await conn.execute(query)).all())
    return rows if len(rows) > 1 else []


async def active_runs(store: Reader, config_id: int, *, limit: int = 50) -> list[domain.Execution]:
    """A report's PENDING and RUNNING executions, oldest first. Selected by status alone (the
    (status, heartbeat_at) index: few rows), the report picked here: a filter on config_id
    lets SQLite walk the report's whole history instead (80 ms with 100,000 runs)."""
    query = (
        sa.select(E)
        .where(
            E.c.status.in_(
                [domain.ExecutionStatus.PENDING.value, domain.ExecutionStatus.RUNNING.value]
            )
        )
        .order_by(E.c.created_at)
        .limit(1000)
    )
    async with reading(store) as conn:
        rows = executions.valid_records((await conn.execute(query)).all())
    return [row for row in rows if row.config_id == config_id][:limit]


@dataclass(frozen=True, kw_only=True)
class Mark:
    execution_id: str
    status: str
    created_at: datetime | None


async def strips(
    store: Reader, config_ids: list[int], *, per_report: int = 20
) -> dict[int, list[Mark]]:
    """Each report's newest `per_report` runs, newest first: one indexed read per report (a
    window over the whole history costs its size; this costs the reports' number)."""
    found: dict[int, list[Mark]] = {}
    async with reading(store) as conn:
        for config_id in config_ids:
            query = by_report(
                sa.select(E.c.id, E.c.status, E.c.created_at)
                .where(E.c.config_id == config_id)
                .order_by(E.c.created_at.desc(), E.c.id.desc())
                .limit(per_report)
            )
            found[config_id] = [
                Mark(execution_id=r.id, status=r.status, created_at=r.created_at)
                for r in (await conn.execute(query)).all()
            ]
    return found


@dataclass(frozen=True, kw_only=True)
class RunPoint:
    execution_id: str
    status: str
    created_at: datetime | None
    seconds: float | None
    rows: int | None


async def recent_runs(store: Reader, config_id: int, *, last: int = 50) -> list[RunPoint]:
    """The newest `last` finished runs of a report, oldest first: its duration and row plots."""
    query = (
        sa.select(
            E.c.id, E.c.status, E.c.created_at, E.c.started_at, E.c.finished_at, E.c.row_count
        )
        .where(E.c.config_id == config_id, E.c.finished_at.is_not(None))
        .order_by(E.c.created_at.desc(), E.c.id.desc())
        .limit(last)
    )
    query = by_report(query)
    async with reading(store) as conn:
        rows = (await conn.execute(query)).all()
    points = [
        RunPoint(
            execution_id=r.id,
            status=r.status,
            created_at=r.created_at,
            seconds=(
                (r.finished_at - r.started_at).total_seconds()
                if r.started_at is not None and r.finished_at is not None
                else None
            ),
            rows=r.row_count,
        )
        for r in rows
    ]
    points.reverse()
    return points


@dataclass(frozen=True, kw_only=True)
class LatePoint:
    scheduled_for: datetime
    seconds: float
    catch_up: bool
    """Run after the fire's grace (a fire caught up after downtime), not on time."""


async def fire_lateness(
    store: Store, *, since: datetime, catch_up_after_seconds: float, limit: int = 2000
) -> list[LatePoint]:
    """How long after its fire time each scheduled run started, since `since` (oldest first).
    A shifted fire counts from the instant its calendar moved it to."""
    query = (
        sa.select(E.c.scheduled_for, E.c.shifted_to, E.c.started_at)
        .where(
            E.c.trigger_type == domain.TriggerType.SCHEDULE.value,
            E.c.scheduled_for >= since,
            # A fire's row is claimed at or after its time: this bound lets the store read the
            # created_at index instead of the whole history (scheduled_for has no index alone).
            E.c.created_at >= since,
            E.c.started_at.is_not(None),
        )
        .order_by(E.c.scheduled_for)
        .limit(limit)
    )
    async with reading(store) as conn:
        rows = (await conn.execute(query)).all()
    points = []
    for r in rows:
        due = r.shifted_to or r.scheduled_for
        late = max(0.0, (r.started_at - due).total_seconds())
        points.append(
            LatePoint(
                scheduled_for=r.scheduled_for, seconds=late, catch_up=late > catch_up_after_seconds
            )
        )
    return points


@dataclass(frozen=True, kw_only=True)
class MethodRate:
    method: str
    succeeded: int
    failed: int

    @property
    def rate(self) -> float | None:
        total = self.succeeded + self.failed
        return self.succeeded / total if total else None


async def delivery_rates(store: Reader, *, since: datetime) -> list[MethodRate]:
    """Per delivery method, the attempts since `since` that succeeded and that failed for good
    or will be retried (a RETRYING attempt is a failed attempt)."""
    query = (
        sa.select(D.c.method, L.c.status, sa.func.count())
        .select_from(L.join(D, D.c.id == L.c.delivery_id))
        .where(L.c.started_at >= since, L.c.status.in_(("SUCCESS", "FAILED", "RETRYING")))
        .group_by(D.c.method, L.c.status)
    )
    async with reading(store) as conn:
        rows = (await conn.execute(query)).all()
    counts: dict[str, list[int]] = {}
    for method, status, count in rows:
        pair = counts.setdefault(str(method), [0, 0])
        pair[0 if status == "SUCCESS" else 1] += int(count)
    return [
        MethodRate(method=method, succeeded=ok, failed=bad)
        for method, (ok, bad) in sorted(counts.items())
    ]
