"""Node registration is one upsert: simultaneous and repeated registrations, every backend."""

from __future__ import annotations

import asyncio

import sqlalchemy as sa

from reporthubd.store import nodes, schema
from reporthubd.store.database import Store
from reporthubd.timeutil import utcnow


async def test_nodes_register_at_the_same_instant_and_again(store: Store) -> None:
    names = [f"node-{n}" for n in range(6)]
    await asyncio.gather(*(nodes.register_node(store, name, now=utcnow()) for name in names))
    # and again: a restart
    await asyncio.gather(*(nodes.register_node(store, name, now=utcnow()) for name in names))
    async with store.engine.connect() as conn:
        rows = (await conn.execute(sa.select(schema.nodes.c.node_id, schema.nodes.c.pid))).all()
    assert sorted(row.node_id for row in rows) == names
    assert all(row.pid for row in rows)
