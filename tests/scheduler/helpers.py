"""Shared pieces of the scheduler tests: definitions in a real store, a hand-moved clock, an
in-memory submitter (the engine's side) and reading the execution history back."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from reporthubd.config import Settings
from reporthubd.daemon import Supervisor
from reporthubd.scheduler.loop import Scheduler
from reporthubd.store import schema
from reporthubd.store.database import Store


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def settings(**scheduler: Any) -> Settings:
    return Settings.model_validate({"scheduler": scheduler})


# A query that keeps an execution RUNNING for a long while (SQLite counts to 10^9).
SLOW_QUERY = (
    "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 1000000000) "
    "SELECT max(x) AS n FROM c"
)


async def seed_config(
    store: Store, name: str = "report", *, query: str = "SELECT 1 AS one", path: str = ":memory:"
) -> int:
    if path != ":memory:":
        sqlite3.connect(path).close()  # the connector opens existing files only
    async with store.engine.begin() as conn:
        ds = await conn.execute(
            sa.insert(schema.datasources).values(
                name=f"{name}-ds", type="sqlite", connection_config={"path": path}
            )
        )
        config = await conn.execute(
            sa.insert(schema.configs).values(
                name=name,
                datasource_id=ds.inserted_primary_key[0],
                query_text=query,
                output_format="csv",
            )
        )
    return int(config.inserted_primary_key[0])


async def add_schedule(store: Store, config_id: int, cron: str, **values: Any) -> int:
    async with store.engine.begin() as conn:
        result = await conn.execute(
            sa.insert(schema.schedules).values(config_id=config_id, cron_expression=cron, **values)
        )
    return int(result.inserted_primary_key[0])


async def add_schedules(store: Store, config_id: int, crons: list[str]) -> list[int]:
    """Many schedules in one statement, ids in order."""
    async with store.engine.begin() as conn:
        before = (await conn.execute(sa.select(sa.func.max(schema.schedules.c.id)))).scalar()
        await conn.execute(
            sa.insert(schema.schedules),
            [{"config_id": config_id, "cron_expression": cron} for cron in crons],
        )
        ids = (
            await conn.execute(
                sa.select(schema.schedules.c.id)
                .where(schema.schedules.c.id > (before or 0))
                .order_by(schema.schedules.c.id)
            )
        ).scalars()
        return [int(i) for i in ids]


async def update_schedule(store: Store, schedule_id: int, **values: Any) -> None:
    async with store.engine.begin() as conn:
        await conn.execute(
            sa.update(schema.schedules)
            .where(schema.schedules.c.id == schedule_id)
            .values(updated_at=datetime.now(UTC), **values)
        )


async def executions(store: Store, schedule_id: int | None = None) -> list[Any]:
    e = schema.executions
    query = sa.select(e).order_by(e.c.scheduled_for, e.c.attempt)
    if schedule_id is not None:
        query = query.where(e.c.schedule_id == schedule_id)
    async with store.engine.connect() as conn:
        return list((await conn.execute(query)).all())


@dataclass
class Submitted:
    """The engine's side in unit tests: remembers what it was handed."""

    ids: list[str]

    def __call__(self, execution_id: str) -> None:
        self.ids.append(execution_id)


class FakeClock:
    """A wall clock moved by the test. `advance` wakes every sleeper; `idle` waits until the
    loop sleeps again (it has dispatched everything due)."""

    def __init__(self, start: datetime) -> None:
        self._now = start.timestamp()
        self._sleepers: set[asyncio.Event] = set()
        self._idle = asyncio.Event()

    def now(self) -> float:
        return self._now

    async def sleep_until(self, deadline: float | None, wake: asyncio.Event) -> None:
        self._sleepers.add(wake)
        try:
            while not wake.is_set() and (deadline is None or self._now < deadline):
                self._idle.set()
                await wake.wait()
        finally:
            self._sleepers.discard(wake)

    def set(self, when: datetime) -> None:
        self._now = when.timestamp()
        self._idle.clear()
        for wake in self._sleepers:
            wake.set()

    async def idle(self) -> None:
        await asyncio.wait_for(self._idle.wait(), timeout=30)


@asynccontextmanager
async def running(
    store: Store, clock: FakeClock, submitted: Submitted, node_id: str = "node-a", **config: object
) -> AsyncIterator[Scheduler]:
    tasks = Supervisor()
    scheduler = Scheduler(
        store=store,
        settings=settings(**config),
        node_id=node_id,
        submit=submitted,
        clock=clock,
        started_at=datetime.fromtimestamp(clock.now(), UTC),
    )
    await scheduler.start(tasks)
    await clock.idle()
    try:
        yield scheduler
    finally:
        await scheduler.stop()
        await tasks.stop()
        assert tasks.failure is None


async def advance_to(clock: FakeClock, when: str) -> None:
    clock.set(utc(when))
    await clock.idle()
