"""Claiming fires and recovering lost executions: the scheduler's writes to report_executions.

A fire is claimed by inserting its execution row; UNIQUE (schedule_id, scheduled_for, attempt)
decides between nodes. Attempt 0 is the schedule's own claim of a fire (PENDING to run, or
SKIPPED with the reason it was not run); manual re-runs and recoveries of the same fire take
attempt 1, 2, ... so they never take a fire's place (revision 0003).

Claims go in batches, many fires per round trip: `INSERT ... ON CONFLICT DO NOTHING RETURNING id`
on PostgreSQL and SQLite; `INSERT IGNORE` on MySQL/MariaDB, whose affected-row count says
whether every row went in (then all are ours), else a read-back of which of our ids exist.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from reporthubd import domain
from reporthubd.store import schema
from reporthubd.store.database import Store

_e = schema.executions
# Rows per INSERT statement: SQLite allows 32766 bound variables, so 1000 rows x 9 columns fits.
CHUNK = 1000


def new_id() -> str:
    """A UUID (version 7: time-ordered), so that a burst of claims appends to the primary-key
    index instead of scattering random inserts over it."""
    millis = time.time_ns() // 1_000_000
    rand = int.from_bytes(os.urandom(10), "big")
    value = (millis & (2**48 - 1)) << 80 | 0x7 << 76 | (rand >> 62 & 0xFFF) << 64
    value |= 0b10 << 62 | rand & (2**62 - 1)
    return str(uuid.UUID(int=value))


@dataclass(frozen=True, slots=True)
class FireClaim:
    """One fire of one schedule, to be claimed as PENDING (run it) or SKIPPED (with reason)."""

    schedule_id: int
    config_id: int
    scheduled_for: datetime
    skipped_reason: str | None = None


@dataclass(frozen=True, slots=True)
class Claimed:
    claim: FireClaim
    execution_id: str


def _row(claim: FireClaim, execution_id: str, node_id: str, now: datetime) -> dict[str, Any]:
    skipped = claim.skipped_reason is not None
    return {
        "id": execution_id,
        "config_id": claim.config_id,
        "schedule_id": claim.schedule_id,
        "trigger_type": domain.TriggerType.SCHEDULE.value,
        "scheduled_for": claim.scheduled_for,
        "status": (domain.ExecutionStatus.SKIPPED if skipped else domain.ExecutionStatus.PENDING),
        "node_id": node_id,
        "error_message": claim.skipped_reason,
        "created_at": now,
        "finished_at": now if skipped else None,
    }


_MYSQL_COLUMNS = (
    "id, config_id, schedule_id, trigger_type, scheduled_for, status, node_id, "
    "error_message, created_at, finished_at"
)
_MYSQL_ROW = "(" + ", ".join(["%s"] * 10) + ")"


def _mysql_time(value: datetime) -> str:
    return value.astimezone(UTC).replace(tzinfo=None).isoformat(sep=" ", timespec="microseconds")


async def _insert_mysql(
    conn: AsyncConnection,
    claims: Sequence[FireClaim],
    ids: Sequence[str],
    node_id: str,
    now: datetime,
) -> set[str]:
    """MySQL/MariaDB, the busiest path: one INSERT IGNORE of many rows, written out with bound
    values (compiling a 1000-row VALUES construct costs more than the round trip; the times
    are bound as UTC text, formatted once per distinct instant). When every row went in (the
    common case) all ids are ours; otherwise read back which of them exist."""
    created = _mysql_time(now)
    times: dict[datetime, str] = {}
    schedule = domain.TriggerType.SCHEDULE.value
    pending = domain.ExecutionStatus.PENDING.value
    skipped = domain.ExecutionStatus.SKIPPED.value
    params: list[Any] = []
    for claim, execution_id in zip(claims, ids, strict=True):
        when = times.get(claim.scheduled_for)
        if when is None:
            when = times[claim.scheduled_for] = _mysql_time(claim.scheduled_for)
        reason = claim.skipped_reason
        params += (
            execution_id,
            claim.config_id,
            claim.schedule_id,
            schedule,
            when,
            pending if reason is None else skipped,
            node_id,
            reason,
            created,
            None if reason is None else created,
        )
    sql = f"INSERT IGNORE INTO {_e.name} ({_MYSQL_COLUMNS}) VALUES " + ", ".join(
        [_MYSQL_ROW] * len(claims)
    )
    result = await conn.exec_driver_sql(sql, tuple(params))
    if result.rowcount == len(claims):
        return set(ids)
    found = await conn.execute(sa.select(_e.c.id).where(_e.c.id.in_(list(ids))))
    return set(found.scalars())


async def _insert_ignoring_taken(
    conn: AsyncConnection,
    claims: Sequence[FireClaim],
    ids: Sequence[str],
    node_id: str,
    now: datetime,
) -> set[str]:
    dialect = conn.dialect.name
    if dialect in {"mysql", "mariadb"}:
        return await _insert_mysql(conn, claims, ids, node_id, now)
    rows = [
        _row(claim, execution_id, node_id, now)
        for claim, execution_id in zip(claims, ids, strict=True)
    ]
    if dialect == "postgresql":
        pg = postgresql.insert(_e).values(rows).on_conflict_do_nothing().returning(_e.c.id)
        return set((await conn.execute(pg)).scalars())
    lite = sqlite.insert(_e).values(rows).on_conflict_do_nothing().returning(_e.c.id)
    return set((await conn.execute(lite)).scalars())


async def claim_fires(
    store: Store, claims: Sequence[FireClaim], *, node_id: str
) -> tuple[list[Claimed], datetime]:
    """Insert the execution rows of `claims` in one transaction; return those this node
    inserted (the others were claimed first by another node or an earlier run) and the
    moment the transaction committed."""
    if not claims:
        return [], datetime.now(UTC)
    now = datetime.now(UTC)
    ids = [new_id() for _ in claims]
    ours: set[str] = set()
    async with store.engine.connect() as raw:
        # MySQL: no gap locks between nodes inserting the same keys (fewer waits, no
        # deadlocks). A one-row claim holds no lock while it waits, so it cannot deadlock:
        # it skips the two extra round trips.
        conn = (
            await raw.execution_options(isolation_level="READ COMMITTED")
            if store.dialect == "mysql" and len(claims) > 1
            else raw
        )
        for start in range(0, len(claims), CHUNK):
            ours |= await _insert_ignoring_taken(
                conn, claims[start : start + CHUNK], ids[start : start + CHUNK], node_id, now
            )
        await conn.commit()
    committed = datetime.now(UTC)
    claimed = [
        Claimed(claim=claim, execution_id=execution_id)
        for claim, execution_id in zip(claims, ids, strict=True)
        if execution_id in ours
    ]
    return claimed, committed


async def latest_fires(store: Store) -> dict[int, datetime]:
    """The latest claimed fire (`scheduled_for` of a trigger_type `schedule` row) per schedule:
    with `last_run_at`, where catch-up after a restart starts."""
    query = (
        sa.select(_e.c.schedule_id, sa.func.max(_e.c.scheduled_for))
        .where(
            _e.c.schedule_id.is_not(None),
            _e.c.trigger_type == domain.TriggerType.SCHEDULE.value,
        )
        .group_by(_e.c.schedule_id)
    )
    async with store.engine.connect() as conn:
        rows = (await conn.execute(query)).all()
    found: dict[int, datetime] = {}
    for schedule_id, latest in rows:
        if latest is not None:
            found[int(schedule_id)] = _aware(latest)
    return found


def _aware(value: datetime | str) -> datetime:
    # MAX() over a UTCDateTime column loses the type decorator on some dialects.
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


async def _next_attempt(
    conn: AsyncConnection, schedule_id: int | None, scheduled_for: datetime | None
) -> int:
    if schedule_id is None or scheduled_for is None:
        return 1
    highest = (
        await conn.execute(
            sa.select(sa.func.max(_e.c.attempt)).where(
                _e.c.schedule_id == schedule_id, _e.c.scheduled_for == scheduled_for
            )
        )
    ).scalar()
    return 1 if highest is None else int(highest) + 1


async def insert_rerun(
    store: Store,
    *,
    config_id: int,
    schedule_id: int | None,
    scheduled_for: datetime | None,
    trigger_type: domain.TriggerType,
    node_id: str,
    parameters: dict[str, Any] | None = None,
) -> str:
    """Insert a PENDING run that is not the schedule's own claim of a fire (manual trigger):
    it takes the next free attempt of (schedule_id, scheduled_for), never attempt 0."""
    for _ in range(5):
        execution_id = str(uuid.uuid4())
        try:
            async with store.engine.begin() as conn:
                attempt = await _next_attempt(conn, schedule_id, scheduled_for)
                await conn.execute(
                    sa.insert(_e).values(
                        id=execution_id,
                        config_id=config_id,
                        schedule_id=schedule_id,
                        trigger_type=trigger_type.value,
                        scheduled_for=scheduled_for,
                        status=domain.ExecutionStatus.PENDING.value,
                        parameters=parameters,
                        node_id=node_id,
                        attempt=attempt,
                        created_at=datetime.now(UTC),
                    )
                )
        except sa.exc.IntegrityError:
            continue  # another node took that attempt at the same moment: take the next
        return execution_id
    raise RuntimeError(f"could not insert a run for schedule {schedule_id} at {scheduled_for}")


# -- lost executions --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LostExecution:
    id: str
    config_id: int
    schedule_id: int | None
    scheduled_for: datetime | None
    status: domain.ExecutionStatus
    node_id: str | None
    heartbeat_at: datetime | None
    parameters: dict[str, Any] | None


def _retrying(execution_id: sa.ColumnElement[Any]) -> sa.Exists:
    """A RETRYING delivery log: the delivery-retry ledger owns the execution, not a node."""
    logs = schema.delivery_logs
    return sa.exists().where(
        logs.c.execution_id == execution_id,
        logs.c.status == domain.DeliveryStatus.RETRYING.value,
    )


def _stale_running(cutoff: datetime) -> sa.ColumnElement[bool]:
    return sa.and_(
        _e.c.status == domain.ExecutionStatus.RUNNING.value,
        sa.or_(
            _e.c.heartbeat_at < cutoff,
            sa.and_(
                _e.c.heartbeat_at.is_(None),
                sa.func.coalesce(_e.c.started_at, _e.c.created_at) < cutoff,
            ),
        ),
        ~_retrying(_e.c.id),
    )


def _live_nodes(cutoff: datetime) -> sa.Select[Any]:
    return sa.select(schema.nodes.c.node_id).where(schema.nodes.c.heartbeat_at >= cutoff)


def _orphaned_pending(cutoff: datetime, own_node: str) -> sa.ColumnElement[bool]:
    return sa.and_(
        _e.c.status == domain.ExecutionStatus.PENDING.value,
        _e.c.node_id.is_not(None),
        _e.c.node_id != own_node,
        _e.c.created_at < cutoff,
        _e.c.node_id.not_in(_live_nodes(cutoff)),
    )


def _own_leftovers(node_id: str, started_at: datetime) -> sa.ColumnElement[bool]:
    return sa.and_(
        _e.c.node_id == node_id,
        _e.c.created_at < started_at,
        _e.c.status.in_(
            [domain.ExecutionStatus.PENDING.value, domain.ExecutionStatus.RUNNING.value]
        ),
        ~_retrying(_e.c.id),
    )


_LOST_COLUMNS = (
    _e.c.id,
    _e.c.config_id,
    _e.c.schedule_id,
    _e.c.scheduled_for,
    _e.c.status,
    _e.c.node_id,
    _e.c.heartbeat_at,
    _e.c.parameters,
)


def _lost(row: Any) -> LostExecution:
    return LostExecution(
        id=row.id,
        config_id=int(row.config_id),
        schedule_id=row.schedule_id,
        scheduled_for=row.scheduled_for,
        status=domain.ExecutionStatus(row.status),
        node_id=row.node_id,
        heartbeat_at=row.heartbeat_at,
        parameters=row.parameters if isinstance(row.parameters, dict) else None,
    )


async def find_lost(
    store: Store, *, cutoff: datetime, node_id: str, started_at: datetime, limit: int = 500
) -> list[LostExecution]:
    """Executions no live node owns: RUNNING with a heartbeat older than `cutoff`; PENDING
    claimed by a node whose own heartbeat is older than `cutoff`; and this node's own PENDING or
    RUNNING rows from before it started (a previous process with the same node id). A RUNNING
    execution with a RETRYING delivery log belongs to the retry ledger and is never listed."""
    condition = sa.or_(
        _stale_running(cutoff),
        _orphaned_pending(cutoff, node_id),
        _own_leftovers(node_id, started_at),
    )
    query = sa.select(*_LOST_COLUMNS).where(condition).order_by(_e.c.created_at).limit(limit)
    async with store.engine.connect() as conn:
        return [_lost(row) for row in (await conn.execute(query)).all()]


async def fail_lost(
    store: Store,
    lost: LostExecution,
    *,
    cutoff: datetime,
    node_id: str,
    started_at: datetime,
    reason: str,
    recover: bool,
) -> str | None:
    """Mark one lost execution FAILED with `reason`, by a conditional update that re-checks it
    is still lost (so exactly one node wins), and, when `recover`, insert in the same
    transaction its new run (trigger_type `recovery`, same `scheduled_for`, next attempt).
    Returns the new run's id, or None (not recovered, or another node won)."""
    now = datetime.now(UTC)
    still_lost = sa.or_(
        _stale_running(cutoff),
        _orphaned_pending(cutoff, node_id),
        _own_leftovers(node_id, started_at),
    )
    async with store.engine.begin() as conn:
        updated = await conn.execute(
            sa.update(_e)
            .where(_e.c.id == lost.id, _e.c.status == lost.status.value, still_lost)
            .values(
                status=domain.ExecutionStatus.FAILED.value,
                error_message=reason,
                finished_at=now,
            )
        )
        if not updated.rowcount or not recover:
            return None
        execution_id = str(uuid.uuid4())
        attempt = await _next_attempt(conn, lost.schedule_id, lost.scheduled_for)
        await conn.execute(
            sa.insert(_e).values(
                id=execution_id,
                config_id=lost.config_id,
                schedule_id=lost.schedule_id,
                trigger_type=domain.TriggerType.RECOVERY.value,
                scheduled_for=lost.scheduled_for,
                status=domain.ExecutionStatus.PENDING.value,
                parameters=lost.parameters,
                node_id=node_id,
                attempt=attempt,
                created_at=now,
            )
        )
    return execution_id


async def count_active(store: Store) -> dict[str, dict[str, int]]:
    """PENDING and RUNNING executions per node: {node_id: {status: count}}."""
    query = (
        sa.select(_e.c.node_id, _e.c.status, sa.func.count())
        .where(
            _e.c.status.in_(
                [domain.ExecutionStatus.PENDING.value, domain.ExecutionStatus.RUNNING.value]
            )
        )
        .group_by(_e.c.node_id, _e.c.status)
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
        sa.select(_e.c.schedule_id, sa.func.max(_e.c.scheduled_for).label("latest"))
        .where(_e.c.schedule_id.is_not(None))
        .group_by(_e.c.schedule_id)
    )
    if schedule_ids is not None:
        newest = newest.where(_e.c.schedule_id.in_(list(schedule_ids)))
    sub = newest.subquery()
    query = (
        sa.select(
            _e.c.schedule_id,
            _e.c.id,
            _e.c.scheduled_for,
            _e.c.status,
            _e.c.trigger_type,
            _e.c.attempt,
        )
        .join(
            sub,
            sa.and_(_e.c.schedule_id == sub.c.schedule_id, _e.c.scheduled_for == sub.c.latest),
        )
        .order_by(_e.c.attempt)
    )
    async with store.engine.connect() as conn:
        rows = (await conn.execute(query)).all()
    return {int(row.schedule_id): row for row in rows}  # highest attempt wins (ordered)
