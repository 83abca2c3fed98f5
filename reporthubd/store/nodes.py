"""The node registry (report_nodes) and the run-ownership writes a node's fencing rests on.

Each write here is one statement by primary key, sent in autocommit mode: it is its own
transaction, committed by the server in the same round trip, so no transaction of a heartbeat is
ever open on the server while the node waits. A node frozen between two round trips (SIGSTOP, a
paused VM) holds no lock that would stall the other nodes' heartbeats or their recovery runs. (A
heartbeat sent as UPDATE, then COMMIT, once left a frozen node's transaction holding the RUNNING
range of the status index: the others' heartbeats and status changes waited on it.)
"""

from __future__ import annotations

import os
import socket
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from reporthubd import __version__, domain
from reporthubd.store import schema
from reporthubd.store.database import Store

_e = schema.executions
_n = schema.nodes
_RUNNING = domain.ExecutionStatus.RUNNING.value
# Ids per statement of a heartbeat of many held runs.
_CHUNK = 500


@asynccontextmanager
async def _autocommit(store: Store) -> AsyncIterator[AsyncConnection]:
    """A pooled connection on which each statement commits as it runs (the isolation level is
    put back when the connection returns to the pool)."""
    async with store.engine.connect() as conn:
        yield await conn.execution_options(isolation_level="AUTOCOMMIT")


async def register_node(store: Store, node_id: str, *, now: datetime) -> None:
    """Register (or re-register, after a restart) this node: clears its stop mark."""
    values = {
        "hostname": socket.gethostname(),
        "pid": os.getpid(),
        "version": __version__,
        "started_at": now,
        "heartbeat_at": now,
        "stopped_at": None,
    }
    # One upsert statement: an UPDATE-then-INSERT pair deadlocked on MariaDB when two nodes
    # registered in the same instant (gap locks on the primary key).
    # Only the store's own dialect is imported (a SQLite daemon loads no PostgreSQL dialect).
    upsert: Any
    if store.dialect == "mysql":
        from sqlalchemy.dialects.mysql import insert as mysql_insert

        upsert = mysql_insert(_n).values(node_id=node_id, **values)
        upsert = upsert.on_duplicate_key_update(**values)
    else:
        if store.dialect == "postgresql":
            from sqlalchemy.dialects import postgresql as dialect
        else:
            from sqlalchemy.dialects import sqlite as dialect  # type: ignore[no-redef]
        upsert = dialect.insert(_n).values(node_id=node_id, **values)
        upsert = upsert.on_conflict_do_update(index_elements=["node_id"], set_=values)
    async with store.engine.begin() as conn:
        await conn.execute(upsert)


async def last_heartbeat(store: Store) -> datetime | None:
    """The latest heartbeat of any node: read before this node registers (which overwrites its
    own), it is the last sign of life before a restart."""
    async with store.engine.connect() as conn:
        beat: datetime | str | None = (
            await conn.execute(sa.select(sa.func.max(_n.c.heartbeat_at)))
        ).scalar()
    if isinstance(beat, str):  # MAX() loses the column type on SQLite
        beat = datetime.fromisoformat(beat)
    if beat is None:
        return None
    return beat.replace(tzinfo=UTC) if beat.tzinfo is None else beat.astimezone(UTC)


async def beat_node(store: Store, node_id: str, *, now: datetime) -> None:
    """Refresh the node's own row (its liveness for the others' sweeps)."""
    async with _autocommit(store) as conn:
        await conn.execute(sa.update(_n).where(_n.c.node_id == node_id).values(heartbeat_at=now))


async def mark_node_stopped(store: Store, node_id: str, *, now: datetime) -> None:
    """A clean stop: the other nodes adopt this node's queued runs at once (registering again
    clears the mark)."""
    async with store.engine.begin() as conn:
        await conn.execute(sa.update(_n).where(_n.c.node_id == node_id).values(stopped_at=now))


async def beat_runs(
    store: Store, node_id: str, execution_ids: Sequence[str], *, now: datetime
) -> set[str]:
    """Refresh the heartbeat of the given RUNNING runs of this node, by primary key and only
    while they are still this node's and RUNNING (the fencing write). Returns the ids that are
    no longer (another node marked them lost, or they ended)."""
    lost: set[str] = set()
    for start in range(0, len(execution_ids), _CHUNK):
        chunk = list(execution_ids[start : start + _CHUNK])
        async with _autocommit(store) as conn:
            result = await conn.execute(
                sa.update(_e)
                .where(_e.c.id.in_(chunk), _e.c.node_id == node_id, _e.c.status == _RUNNING)
                .values(heartbeat_at=now)
            )
            if result.rowcount == len(chunk):
                continue
            # Which ones: a plain read (the update has committed; nothing is locked now).
            owned = (
                await conn.execute(
                    sa.select(_e.c.id).where(
                        _e.c.id.in_(chunk), _e.c.node_id == node_id, _e.c.status == _RUNNING
                    )
                )
            ).scalars()
            lost |= set(chunk) - set(owned)
    return lost


async def beat_run(store: Store, node_id: str, execution_id: str, *, now: datetime) -> bool:
    """The fencing check before a side effect: one conditional write by primary key that
    refreshes the run's heartbeat while it is still this node's and RUNNING. Returns whether
    it is."""
    async with _autocommit(store) as conn:
        result = await conn.execute(
            sa.update(_e)
            .where(_e.c.id == execution_id, _e.c.node_id == node_id, _e.c.status == _RUNNING)
            .values(heartbeat_at=now)
        )
    return bool(result.rowcount)
