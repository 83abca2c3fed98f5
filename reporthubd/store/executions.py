"""Execution history and node registry: the rows reporthubd itself writes."""

from __future__ import annotations

import enum
import os
import socket
import uuid
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from reporthubd import __version__, domain
from reporthubd.store import schema
from reporthubd.store.database import Store
from reporthubd.store.types import MalformedJSON


def new_execution_id() -> str:
    return str(uuid.uuid4())


def utcnow() -> datetime:
    return datetime.now(UTC)


def _record(row: Any) -> domain.Execution:
    parameters = row.parameters if isinstance(row.parameters, dict) else {}
    if isinstance(row.parameters, MalformedJSON):
        parameters = {}
    return domain.Execution(
        id=row.id,
        config_id=row.config_id,
        schedule_id=row.schedule_id,
        trigger_type=domain.TriggerType(row.trigger_type),
        scheduled_for=row.scheduled_for,
        status=domain.ExecutionStatus(row.status),
        parameters=parameters,
        node_id=row.node_id,
        heartbeat_at=row.heartbeat_at,
        started_at=row.started_at,
        finished_at=row.finished_at,
        row_count=row.row_count,
        file_name=row.file_name,
        file_path=row.file_path,
        file_size=row.file_size,
        file_sha256=row.file_sha256,
        error_message=row.error_message,
        created_at=row.created_at,
    )


async def insert_execution(
    store: Store,
    *,
    config_id: int,
    trigger_type: domain.TriggerType,
    schedule_id: int | None = None,
    scheduled_for: datetime | None = None,
    status: domain.ExecutionStatus = domain.ExecutionStatus.PENDING,
    parameters: dict[str, Any] | None = None,
    node_id: str | None = None,
    error_message: str | None = None,
    execution_id: str | None = None,
) -> str | None:
    """Insert one execution row. Returns its id, or None when (schedule_id, scheduled_for) is
    already taken: the claim of a fire that another node (or an earlier run) made first."""
    execution_id = execution_id or new_execution_id()
    now = utcnow()
    values = {
        "id": execution_id,
        "config_id": config_id,
        "schedule_id": schedule_id,
        "trigger_type": trigger_type.value,
        "scheduled_for": scheduled_for,
        "status": status.value,
        "parameters": parameters,
        "node_id": node_id,
        "error_message": error_message,
        "created_at": now,
    }
    if status.is_terminal:
        values["finished_at"] = now
    try:
        async with store.engine.begin() as conn:
            await conn.execute(sa.insert(schema.executions).values(**values))
    except sa.exc.IntegrityError:
        if schedule_id is None:
            raise
        return None
    return execution_id


async def get_execution(store: Store, execution_id: str) -> domain.Execution | None:
    async with store.engine.connect() as conn:
        row = (
            await conn.execute(
                sa.select(schema.executions).where(schema.executions.c.id == execution_id)
            )
        ).first()
    return _record(row) if row is not None else None


async def update_execution(
    store: Store,
    execution_id: str,
    *,
    only_if_status: tuple[domain.ExecutionStatus, ...] = (),
    **values: Any,
) -> bool:
    """Set columns of one execution; with `only_if_status`, only while it has one of those
    statuses (a conditional update, so two nodes never both move the same row). Returns whether
    the row was updated."""
    for key, value in list(values.items()):
        if isinstance(value, enum.Enum):
            values[key] = value.value
    query = sa.update(schema.executions).where(schema.executions.c.id == execution_id)
    if only_if_status:
        query = query.where(schema.executions.c.status.in_([s.value for s in only_if_status]))
    async with store.engine.begin() as conn:
        result = await conn.execute(query.values(**values))
    return bool(result.rowcount)


async def register_node(store: Store, node_id: str) -> None:
    now = utcnow()
    values = {
        "hostname": socket.gethostname(),
        "pid": os.getpid(),
        "version": __version__,
        "started_at": now,
        "heartbeat_at": now,
    }
    async with store.engine.begin() as conn:
        updated = await conn.execute(
            sa.update(schema.nodes).where(schema.nodes.c.node_id == node_id).values(**values)
        )
        if not updated.rowcount:
            await conn.execute(sa.insert(schema.nodes).values(node_id=node_id, **values))


async def heartbeat_node(store: Store, node_id: str) -> datetime:
    """Refresh this node's heartbeat and, in the same transaction, its running executions'."""
    now = utcnow()
    async with store.engine.begin() as conn:
        await conn.execute(
            sa.update(schema.nodes)
            .where(schema.nodes.c.node_id == node_id)
            .values(heartbeat_at=now)
        )
        await conn.execute(
            sa.update(schema.executions)
            .where(
                schema.executions.c.node_id == node_id,
                schema.executions.c.status == domain.ExecutionStatus.RUNNING.value,
            )
            .values(heartbeat_at=now)
        )
    return now
