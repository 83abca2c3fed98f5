"""The notifier's decisions against every store backend, without a daemon: the incident as
every node reads it from the runs (ordered by their end), once per incident whichever node
decides and however often (the sweep decides again what a killed node may have left), a
reminder after its interval, the suspension claimed once (a schedule resumed by a person is
not paused again by a later decision of the same run), and retries_exhausted per delivery."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from reporthubd.ids import new_id
from reporthubd.notify.notifier import Notifier
from reporthubd.notify.settings import NotificationSettings
from reporthubd.store import notices, pauses, schema
from reporthubd.store.database import Store
from tests.engine.conftest import add_config, add_datasource, add_schedule

OWNER = "owner@example.com"
T0 = datetime.now(UTC).replace(microsecond=0)
"""Runs end from now on: a notice's record time (the clock) is what reminders count from. Set
again before each test: the suite may reach this module many minutes after importing it."""


@pytest.fixture(autouse=True)
def _now() -> None:
    global T0
    T0 = datetime.now(UTC).replace(microsecond=0)


_fires = itertools.count(1)


async def _report(store: Store, rule: dict[str, Any]) -> tuple[int, int]:
    source = await add_datasource(store, "sqlite", {"path": "/tmp/none.db"})
    config_id = await add_config(
        store, source, "SELECT 1", notify={"owners": [OWNER], "rules": [rule]}
    )
    return config_id, await add_schedule(store, config_id, "0 * * * *")


async def _run(store: Store, config_id: int, schedule_id: int, status: str, at: datetime) -> str:
    execution_id = new_id()
    async with store.engine.begin() as conn:
        await conn.execute(
            sa.insert(schema.executions).values(
                id=execution_id,
                config_id=config_id,
                schedule_id=schedule_id,
                trigger_type="schedule",
                scheduled_for=T0 + timedelta(hours=next(_fires)),
                status=status,
                started_at=at - timedelta(seconds=1),
                finished_at=None if status == "RUNNING" else at,
                error_message=None if status == "COMPLETED" else "boom: no such table",
                created_at=at - timedelta(seconds=1),
            )
        )
    return execution_id


def _nodes(store: Store) -> tuple[Notifier, Notifier]:
    settings = NotificationSettings(default_rule={})
    return tuple(  # type: ignore[return-value]
        Notifier(settings, store, node_id=f"node-{n}", link_base="http://x") for n in "ab"
    )


async def test_once_per_incident_whichever_node_decides_and_however_often(store: Store) -> None:
    config_id, schedule_id = await _report(
        store,
        {"events": ["failed", "recovered"], "notify": ["owners"], "remind_every_minutes": 10},
    )
    a, b = _nodes(store)
    first = await _run(store, config_id, schedule_id, "RUNNING", T0)
    second = await _run(store, config_id, schedule_id, "FAILED", T0 + timedelta(seconds=1))
    # the second run ends first, on node b; the first ends later, on node a: one incident
    assert len(await b.decide_run(second)) == 1
    async with store.engine.begin() as conn:
        await conn.execute(
            sa.update(schema.executions)
            .where(schema.executions.c.id == first)
            .values(status="FAILED", finished_at=T0 + timedelta(seconds=2), error_message="x")
        )
    assert await a.decide_run(first) == []
    assert await a.decide_run(second) == [] and await b.sweep(T0 - timedelta(days=1)) == []
    third = await _run(store, config_id, schedule_id, "FAILED", T0 + timedelta(minutes=12))
    assert len(await a.decide_run(third)) == 1  # a reminder: 10 minutes since the notice
    good = await _run(store, config_id, schedule_id, "COMPLETED", T0 + timedelta(minutes=13))
    assert len(await b.decide_run(good)) == 1
    assert await a.decide_run(good) == []
    key = f"incident:{second}"
    found = await notices.of_incident(store, key)
    assert [(n.event, n.sequence) for n in found] == [
        ("failed", 0),
        ("failed", 1),
        ("recovered", 0),
    ]
    assert all(n.target == f"email:{OWNER}" for n in found)
    assert "Why: boom: no such table" in (found[0].message or "")
    again = await _run(store, config_id, schedule_id, "TIMEOUT", T0 + timedelta(minutes=14))
    assert len(await a.decide_run(again)) == 0  # timeout is not among the rule's events


async def test_suspension_is_claimed_once(store: Store) -> None:
    config_id, schedule_id = await _report(
        store, {"events": ["failed"], "notify": ["owners"], "suspend_after": 2}
    )
    a, b = _nodes(store)
    await a.decide_run(await _run(store, config_id, schedule_id, "FAILED", T0))
    second = await _run(store, config_id, schedule_id, "FAILED", T0 + timedelta(minutes=1))
    assert len(await a.decide_run(second)) == 1  # the suspended notice
    state = await pauses.state(store, schedule_id)
    assert state.paused and state.paused_by == "reporthubd"
    assert (state.paused_reason or "").startswith("suspended after 2 consecutive failures")
    await pauses.resume(store, schedule_id, by="ann")
    assert await b.decide_run(second) == [] and await b.sweep(T0 - timedelta(days=1)) == []
    assert not (await pauses.state(store, schedule_id)).paused


async def test_a_delivery_given_up_is_told_once_per_delivery(store: Store) -> None:
    config_id, schedule_id = await _report(
        store, {"events": ["retries_exhausted"], "notify": ["owners"]}
    )
    (a, b) = _nodes(store)
    run = await _run(store, config_id, schedule_id, "PARTIAL", T0)
    async with store.engine.begin() as conn:
        delivery_id = (
            await conn.execute(
                sa.insert(schema.deliveries).values(
                    config_id=config_id,
                    name="to-ops",
                    method="webhook",
                    delivery_config={"url": "http://127.0.0.1:9/"},
                )
            )
        ).inserted_primary_key[0]
        for attempt, status in ((1, "RETRYING"), (2, "FAILED")):
            await conn.execute(
                sa.insert(schema.delivery_logs).values(
                    execution_id=run,
                    delivery_id=delivery_id,
                    attempt=attempt,
                    status=status,
                    target="http://127.0.0.1:9/",
                    error_message="HTTP 500 from the receiver",
                    started_at=T0,
                    finished_at=T0,
                )
            )
    assert len(await a.decide_run(run)) == 1
    assert await b.decide_run(run) == []
    (notice,) = await notices.of_incident(store, f"retries:{run}:{delivery_id}")
    assert notice.event == "retries_exhausted"
    assert "after attempt 2: HTTP 500 from the receiver" in (notice.message or "")


async def test_the_sweep_records_an_outage_missed_notice_once(store: Store) -> None:
    config_id, schedule_id = await _report(store, {"events": ["missed"], "notify": ["owners"]})
    window = (
        f"missed: daemon down from {T0.isoformat()} to {(T0 + timedelta(minutes=3)).isoformat()}"
    )
    async with store.engine.begin() as conn:
        for minute in range(3):
            fire = T0 + timedelta(minutes=minute)
            await conn.execute(
                sa.insert(schema.executions).values(
                    id=new_id(),
                    config_id=config_id,
                    schedule_id=schedule_id,
                    trigger_type="schedule",
                    scheduled_for=fire,
                    status="SKIPPED",
                    error_message=window if minute else f"{window} (beyond the misfire grace)",
                    created_at=T0 + timedelta(minutes=3),
                )
            )
    a, b = _nodes(store)
    assert len(await a.sweep(T0 - timedelta(minutes=1))) == 1
    assert await b.sweep(T0 - timedelta(minutes=1)) == []
    (notice,) = await notices.recent(store, config_id=config_id)
    assert notice.event == "missed" and window in (notice.message or "")
