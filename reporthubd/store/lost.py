"""Runs no live node owns: finding them, marking them lost (with their recovery run), and
adopting queued ones. The SQL behind the lifecycle's `mark_lost` and `adopt` and the recovery
sweep's search; each write re-checks, in its own conditional statement, that the run is still
lost, so exactly one node wins."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeAlias, TypeVar

import sqlalchemy as sa

from reporthubd import domain
from reporthubd.store import claims, schema
from reporthubd.store.database import Store
from reporthubd.store.types import UTCDateTime
from reporthubd.timeutil import utcnow

_e = schema.executions


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
    recovers_id: str | None = None


T = TypeVar("T")
Bound: TypeAlias = T | sa.BindParameter[T]
"""A value, or the bind parameter that will carry it (statements built once, run often)."""


def _retrying(execution_id: sa.ColumnElement[Any]) -> sa.Exists:
    """A RETRYING delivery log: the delivery-retry ledger owns the execution, not a node."""
    logs = schema.delivery_logs
    return sa.exists().where(
        logs.c.execution_id == execution_id,
        logs.c.status == domain.DeliveryStatus.RETRYING.value,
    )


def _stale_running(cutoff: Bound[datetime]) -> sa.ColumnElement[bool]:
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


def _live_nodes(cutoff: Bound[datetime]) -> sa.Select[Any]:
    nodes = schema.nodes
    return sa.select(nodes.c.node_id).where(
        nodes.c.heartbeat_at >= cutoff, nodes.c.stopped_at.is_(None)
    )


def _stopped_nodes() -> sa.Select[Any]:
    return sa.select(schema.nodes.c.node_id).where(schema.nodes.c.stopped_at.is_not(None))


def _pending_of_other(own_node: Bound[str]) -> sa.ColumnElement[bool]:
    return sa.and_(
        _e.c.status == domain.ExecutionStatus.PENDING.value,
        _e.c.node_id.is_not(None),
        _e.c.node_id != own_node,
    )


def _orphaned_pending(cutoff: Bound[datetime], own_node: Bound[str]) -> sa.ColumnElement[bool]:
    """PENDING, claimed by another node that is not live: stopped cleanly (at once), or
    silent for longer than the cutoff (a claim older than the cutoff)."""
    return sa.and_(
        _pending_of_other(own_node),
        _e.c.node_id.not_in(_live_nodes(cutoff)),
        sa.or_(_e.c.created_at < cutoff, _e.c.node_id.in_(_stopped_nodes())),
    )


def _stopped_nodes_pending(own_node: Bound[str]) -> sa.ColumnElement[bool]:
    """PENDING, claimed by another node that has stopped cleanly (and not started again): it
    does not depend on heartbeats, so it is judged even right after a store outage."""
    return sa.and_(_pending_of_other(own_node), _e.c.node_id.in_(_stopped_nodes()))


def _own_leftovers(node_id: Bound[str], started_at: Bound[datetime]) -> sa.ColumnElement[bool]:
    """This node's rows from a previous process: PENDING claimed before this one started, or
    RUNNING since before it started (a run this process adopted and started is not one)."""
    return sa.and_(
        _e.c.node_id == node_id,
        sa.or_(
            sa.and_(
                _e.c.status == domain.ExecutionStatus.PENDING.value,
                _e.c.created_at < started_at,
            ),
            sa.and_(
                _e.c.status == domain.ExecutionStatus.RUNNING.value,
                sa.func.coalesce(_e.c.started_at, _e.c.created_at) < started_at,
            ),
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
    _e.c.recovers_id,
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
        recovers_id=row.recovers_id,
    )


def _lost_condition(
    cutoff: Bound[datetime], node_id: Bound[str], started_at: Bound[datetime], judge_others: bool
) -> sa.ColumnElement[bool]:
    if not judge_others:
        return sa.or_(_own_leftovers(node_id, started_at), _stopped_nodes_pending(node_id))
    return sa.or_(
        _stale_running(cutoff),
        _orphaned_pending(cutoff, node_id),
        _own_leftovers(node_id, started_at),
    )


async def find_lost(
    store: Store,
    *,
    cutoff: datetime,
    node_id: str,
    started_at: datetime,
    judge_others: bool = True,
    limit: int = 500,
) -> list[LostExecution]:
    """Executions no live node owns: RUNNING with a heartbeat older than `cutoff`; PENDING
    claimed by a node whose own heartbeat is older than `cutoff`; and this node's own PENDING or
    RUNNING rows from before it started (a previous process with the same node id). A RUNNING
    execution with a RETRYING delivery log belongs to the retry ledger and is never listed.
    Without `judge_others`, only this node's own leftovers are listed."""
    params = {"rh_cutoff": cutoff, "rh_node": node_id, "rh_started": started_at}
    async with store.engine.connect() as conn:
        rows = (await conn.execute(_find_lost_query(judge_others, limit), params)).all()
    return [_lost(row) for row in rows]


@functools.cache
def _find_lost_query(judge_others: bool, limit: int) -> sa.Select[Any]:
    """find_lost's statement, built once: the sweep runs it every heartbeat interval, and
    building this condition anew cost more CPU than the round trip."""
    condition = _lost_condition(
        sa.bindparam("rh_cutoff", type_=UTCDateTime()),
        sa.bindparam("rh_node", type_=sa.String()),
        sa.bindparam("rh_started", type_=UTCDateTime()),
        judge_others,
    )
    return sa.select(*_LOST_COLUMNS).where(condition).order_by(_e.c.created_at).limit(limit)


async def fail_lost(
    store: Store,
    lost: LostExecution,
    *,
    cutoff: datetime,
    node_id: str,
    started_at: datetime,
    reason: str,
    recover: bool,
    judge_others: bool = True,
) -> tuple[bool, str | None]:
    """Mark one lost execution FAILED with `reason`, by a conditional update that re-checks it
    is still lost (so exactly one node wins), and, when `recover`, insert in the same
    transaction its new run (trigger_type `recovery`, same `scheduled_for`, next attempt).
    Returns whether this call marked it, and the new run's id (None: not recovered)."""
    now = utcnow()
    still_lost = _lost_condition(cutoff, node_id, started_at, judge_others)
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
        if not updated.rowcount:
            return False, None
        if not recover:
            return True, None
        execution_id = await claims.insert_pending(
            conn,
            config_id=lost.config_id,
            schedule_id=lost.schedule_id,
            scheduled_for=lost.scheduled_for,
            trigger_type=domain.TriggerType.RECOVERY,
            node_id=node_id,
            attempt=await claims.next_attempt(conn, lost.schedule_id, lost.scheduled_for),
            created_at=now,
            parameters=lost.parameters,
            recovers_id=lost.recovers_id or lost.id,
        )
    return True, execution_id


async def adopt_pending(
    store: Store,
    lost: LostExecution,
    *,
    cutoff: datetime,
    node_id: str,
    started_at: datetime,
    judge_others: bool = True,
) -> bool:
    """Take over a PENDING execution no live node owns (find_lost listed it): a conditional
    update that re-checks it is still lost sets `node_id` to this node, the status stays
    PENDING, so exactly one node adopts it; the caller then submits it. This node's own
    leftovers are its already. Returns whether this node now owns it."""
    if lost.status is not domain.ExecutionStatus.PENDING:
        raise ValueError(f"execution {lost.id} is {lost.status.value}, not PENDING")
    if lost.node_id == node_id:
        return True
    async with store.engine.begin() as conn:
        updated = await conn.execute(
            sa.update(_e)
            .where(
                _e.c.id == lost.id,
                _e.c.status == domain.ExecutionStatus.PENDING.value,
                _e.c.node_id == lost.node_id,
                _lost_condition(cutoff, node_id, started_at, judge_others),
            )
            .values(node_id=node_id)
        )
    return bool(updated.rowcount)
