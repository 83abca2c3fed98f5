"""Read-only summaries of the history for the status page and status endpoints."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from reporthubd import domain
from reporthubd.store import console, executions, schema
from reporthubd.store.console import Cursor
from reporthubd.store.database import Store

E = schema.executions
L = schema.delivery_logs
FAILURE_STATUSES = ("FAILED", "TIMEOUT", "PARTIAL")


@dataclass(frozen=True, kw_only=True)
class RunMark:
    execution_id: str
    status: str
    created_at: datetime | None


@dataclass(frozen=True, kw_only=True)
class ActiveRun:
    execution_id: str
    config_id: int
    status: str
    node_id: str | None
    started_at: datetime | None
    row_count: int | None
    scheduled_for: datetime | None


@dataclass(frozen=True, kw_only=True)
class Failure:
    execution_id: str
    config_id: int
    status: str
    finished_at: datetime | None
    error_message: str | None


@dataclass(frozen=True, kw_only=True)
class PendingRetry:
    execution_id: str
    delivery_id: int
    attempt: int
    next_retry_at: datetime | None
    error_message: str | None


async def history_strips(store: Store, *, per_config: int = 20) -> dict[int, list[RunMark]]:
    """The newest `per_config` executions of every report, newest first, in one query."""
    rank = (
        sa.func.row_number()
        .over(partition_by=E.c.config_id, order_by=(E.c.created_at.desc(), E.c.id.desc()))
        .label("rank")
    )
    inner = sa.select(E.c.id, E.c.config_id, E.c.status, E.c.created_at, rank).subquery()
    query = (
        sa.select(inner.c.id, inner.c.config_id, inner.c.status, inner.c.created_at)
        .where(inner.c.rank <= per_config)
        .order_by(inner.c.config_id, inner.c.rank)
    )
    strips: dict[int, list[RunMark]] = {}
    async with store.engine.connect() as conn:
        for row in await conn.execute(query):
            strips.setdefault(row.config_id, []).append(
                RunMark(execution_id=row.id, status=row.status, created_at=row.created_at)
            )
    return strips


async def active_runs(store: Store, *, limit: int = 200) -> list[ActiveRun]:
    query = (
        sa.select(E)
        .where(E.c.status.in_([domain.ExecutionStatus.PENDING, domain.ExecutionStatus.RUNNING]))
        .order_by(E.c.created_at)
        .limit(limit)
    )
    async with store.engine.connect() as conn:
        rows = (await conn.execute(query)).all()
    return [
        ActiveRun(
            execution_id=r.id,
            config_id=r.config_id,
            status=r.status,
            node_id=r.node_id,
            started_at=r.started_at,
            row_count=r.row_count,
            scheduled_for=r.scheduled_for,
        )
        for r in rows
    ]


async def recent_failures(store: Store, *, since: datetime, limit: int = 20) -> list[Failure]:
    query = (
        sa.select(E.c.id, E.c.config_id, E.c.status, E.c.finished_at, E.c.error_message)
        .where(E.c.status.in_(FAILURE_STATUSES), E.c.created_at >= since)
        .order_by(E.c.created_at.desc())
        .limit(limit)
    )
    async with store.engine.connect() as conn:
        rows = (await conn.execute(query)).all()
    return [
        Failure(
            execution_id=r.id,
            config_id=r.config_id,
            status=r.status,
            finished_at=r.finished_at,
            error_message=r.error_message,
        )
        for r in rows
    ]


async def pending_retries(store: Store, *, limit: int = 50) -> list[PendingRetry]:
    query = (
        sa.select(
            L.c.execution_id, L.c.delivery_id, L.c.attempt, L.c.next_retry_at, L.c.error_message
        )
        .where(L.c.status == domain.DeliveryStatus.RETRYING)
        .order_by(L.c.next_retry_at)
        .limit(limit)
    )
    async with store.engine.connect() as conn:
        rows = (await conn.execute(query)).all()
    return [
        PendingRetry(
            execution_id=r.execution_id,
            delivery_id=r.delivery_id,
            attempt=r.attempt,
            next_retry_at=r.next_retry_at,
            error_message=r.error_message,
        )
        for r in rows
    ]


@dataclass(frozen=True, kw_only=True)
class ExecutionQuery:
    config_id: int | None = None
    schedule_id: int | None = None
    statuses: tuple[str, ...] = ()
    since: datetime | None = None
    until: datetime | None = None
    limit: int = 50
    offset: int = 0
    after: Cursor | None = None
    """Keyset paging: rows older than this one, newest first (`offset` counts from it)."""


@dataclass(frozen=True, kw_only=True)
class ExecutionPage:
    items: list[domain.Execution]
    total: int | None
    """How many match in all; None on a keyset page (`after`): no COUNT over the history."""
    next_after: Cursor | None
    """Where the next (older) page starts; None on the last page."""


async def search_executions(store: Store, query: ExecutionQuery) -> ExecutionPage:
    """A page of executions (newest first) matching the filters. An offset page also counts
    how many match in all (a COUNT over the filtered history); a keyset page (`after`) does
    not, and costs the same a thousand pages back as on the first page."""
    conditions: list[Any] = []
    if query.config_id is not None:
        conditions.append(E.c.config_id == query.config_id)
    if query.schedule_id is not None:
        conditions.append(E.c.schedule_id == query.schedule_id)
    if query.statuses:
        conditions.append(E.c.status.in_(query.statuses))
    if query.since is not None:
        conditions.append(E.c.created_at >= query.since)
    if query.until is not None:
        conditions.append(E.c.created_at < query.until)
    count = sa.select(sa.func.count()).select_from(E).where(*conditions)
    if query.after is not None:
        at, ident = query.after.created_at, query.after.execution_id
        # created_at <= at bounds the index range; the OR only breaks ties within it.
        conditions.append(E.c.created_at <= at)
        conditions.append(sa.or_(E.c.created_at < at, E.c.id < ident))
    page = (
        sa.select(E)
        .where(*conditions)
        .order_by(E.c.created_at.desc(), E.c.id.desc())
        .limit(query.limit + 1)
        .offset(query.offset)
    )
    if query.config_id is not None:
        page = console.by_report(page, by_status=bool(query.statuses))
    async with store.engine.connect() as conn:
        rows = executions.valid_records((await conn.execute(page)).all())
        total = None if query.after is not None else int(await conn.scalar(count) or 0)
    more = len(rows) > query.limit
    rows = rows[: query.limit]
    last = rows[-1] if rows and more else None
    next_after = (
        console.Cursor(created_at=last.created_at, execution_id=last.id)
        if last is not None and last.created_at is not None
        else None
    )
    return ExecutionPage(items=rows, total=total, next_after=next_after)


async def count_active(store: Store) -> dict[str, dict[str, int]]:
    """PENDING and RUNNING executions per node: {node_id: {status: count}}."""
    query = (
        sa.select(E.c.node_id, E.c.status, sa.func.count())
        .where(
            E.c.status.in_(
                [domain.ExecutionStatus.PENDING.value, domain.ExecutionStatus.RUNNING.value]
            )
        )
        .group_by(E.c.node_id, E.c.status)
    )
    async with store.engine.connect() as conn:
        rows = (await conn.execute(query)).all()
    counts: dict[str, dict[str, int]] = {}
    for node, status, count in rows:
        counts.setdefault(node or "", {})[status] = int(count)
    return counts


async def latest_runs(store: Store, schedule_ids: Iterable[int] | None = None) -> dict[int, Any]:
    """Per schedule, its newest execution row (highest scheduled_for, then attempt): for the
    jobs view. Returns {schedule_id: row with id, scheduled_for, status, trigger_type}."""
    newest = (
        sa.select(E.c.schedule_id, sa.func.max(E.c.scheduled_for).label("latest"))
        .where(E.c.schedule_id.is_not(None))
        .group_by(E.c.schedule_id)
    )
    if schedule_ids is not None:
        newest = newest.where(E.c.schedule_id.in_(list(schedule_ids)))
    sub = newest.subquery()
    query = (
        sa.select(
            E.c.schedule_id,
            E.c.id,
            E.c.scheduled_for,
            E.c.status,
            E.c.trigger_type,
            E.c.attempt,
        )
        .join(
            sub,
            sa.and_(E.c.schedule_id == sub.c.schedule_id, E.c.scheduled_for == sub.c.latest),
        )
        .order_by(E.c.attempt)
    )
    async with store.engine.connect() as conn:
        rows = (await conn.execute(query)).all()
    return {int(row.schedule_id): row for row in rows}  # highest attempt wins (ordered)
