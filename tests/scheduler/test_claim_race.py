"""Two nodes claiming the same fires at the same moment on MariaDB: a claim writes its
schedules' last_run_at / next_run_at first in its transaction (claims._send_mysql), so the two
serialize on the schedule rows. Neither deadlocks (a deadlock would show as a failed
bookkeeping write, logged), exactly one wins each fire, and last_run_at ends at the latest
fire, never moved back by an older one."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
import structlog

from reporthubd.config import StoreSettings
from reporthubd.store import claims, migrate, schema
from reporthubd.store.database import Store
from tests import servers
from tests.scheduler.helpers import add_schedule, seed_config

SCHEDULES = 12
ROUNDS = 40


@pytest.fixture
async def two_nodes(tmp_path: Path) -> AsyncIterator[tuple[Store, Store]]:
    database = servers.create_database("mariadb", tmp_path)
    stores = [Store(StoreSettings(url=database.url, pool_size=2)) for _ in range(2)]
    try:
        for store in stores:
            await store.start()
        await migrate.upgrade(stores[0])
        yield stores[0], stores[1]
    finally:
        for store in stores:
            await store.stop()
        database.drop()


async def test_two_claimers_of_the_same_fires_never_deadlock_and_one_wins_each(
    two_nodes: tuple[Store, Store],
) -> None:
    a, b = two_nodes
    config_id = await seed_config(a)
    ids = [await add_schedule(a, config_id, "* * * * *") for _ in range(SCHEDULES)]
    start = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)
    won: Counter[tuple[int, datetime]] = Counter()
    with structlog.testing.capture_logs() as logged:
        for n in range(ROUNDS):
            fire = start + timedelta(minutes=n)
            batch = [
                claims.FireClaim(schedule_id=sid, config_id=config_id, scheduled_for=fire)
                for sid in ids
            ]
            # each schedule its own next_run_at, so each its own UPDATE; the second node
            # lists them the other way round: the statements must still lock in one order
            records = [
                (sid, fire, fire + timedelta(minutes=1, seconds=i)) for i, sid in enumerate(ids)
            ]
            results = await asyncio.gather(
                claims.claim_fires(a, batch, node_id="node-a", then_record=records),
                claims.claim_fires(b, batch, node_id="node-b", then_record=records[::-1]),
            )
            for claimed, _ in results:
                won.update((c.claim.schedule_id, c.claim.scheduled_for) for c in claimed)
    assert [entry for entry in logged if entry["log_level"] in ("warning", "error")] == []
    expected = {(sid, start + timedelta(minutes=n)) for sid in ids for n in range(ROUNDS)}
    assert set(won) == expected
    assert set(won.values()) == {1}
    e, s = schema.executions, schema.schedules
    async with a.engine.connect() as conn:
        rows = (await conn.execute(sa.select(e.c.schedule_id, e.c.scheduled_for))).all()
        stored = (await conn.execute(sa.select(s.c.id, s.c.last_run_at, s.c.next_run_at))).all()
    assert Counter((r.schedule_id, r.scheduled_for) for r in rows) == dict.fromkeys(expected, 1)
    last = start + timedelta(minutes=ROUNDS - 1)
    assert {row.id: row.last_run_at for row in stored} == dict.fromkeys(ids, last)

    # an older fire claimed late (another node's retry) leaves last_run_at where it is
    old = claims.FireClaim(schedule_id=ids[0], config_id=config_id, scheduled_for=start)
    claimed, _ = await claims.claim_fires(
        b, [old], node_id="node-b", then_record=[(ids[0], start, start + timedelta(minutes=1))]
    )
    assert claimed == []
    async with a.engine.connect() as conn:
        query = sa.select(s.c.last_run_at, s.c.next_run_at).where(s.c.id == ids[0])
        row = (await conn.execute(query)).one()
    assert row.last_run_at == last
    assert row.next_run_at == last + timedelta(minutes=1)
