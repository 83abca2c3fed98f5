"""The deadline watch against every store backend, its clock given: fires whose deadline
passed without a COMPLETED run get one `late` notice each, however often the watch (or another
node's) looks; a COMPLETED fire is not late, nor a fire on a closed day of the schedule's
business calendar (Christmas in Berlin)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import sqlalchemy as sa

from reporthubd import metrics
from reporthubd.ids import new_id
from reporthubd.notify.deadlines import DeadlineWatch
from reporthubd.notify.notifier import Notifier
from reporthubd.notify.settings import NotificationSettings
from reporthubd.store import notices, schema
from reporthubd.store.database import Store
from tests.engine.conftest import add_config, add_datasource, add_schedule

BERLIN = ZoneInfo("Europe/Berlin")


def _at(day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(2026, 12, day, hour, minute, tzinfo=BERLIN)


async def test_late_once_per_fire_and_never_on_a_closed_day(store: Store) -> None:
    async with store.engine.begin() as conn:
        await conn.execute(
            sa.insert(schema.calendars).values(name="de-berlin", country="DE", subdivision="BE")
        )
    source = await add_datasource(store, "sqlite", {"path": "/tmp/none.db"})
    rule = {"events": ["late"], "notify": ["owners"]}
    config_id = await add_config(
        store, source, "SELECT 1", notify={"owners": ["ann@example.com"], "rules": [rule]}
    )
    schedule_id = await add_schedule(
        store,
        config_id,
        "0 6 * * *",
        timezone="Europe/Berlin",
        deadline="07:30",
        calendar_name="de-berlin",
        calendar_policy="next_business_day",
    )
    done = _at(22, 6).astimezone(UTC)  # the 22nd's run completed in time
    async with store.engine.begin() as conn:
        await conn.execute(
            sa.insert(schema.executions).values(
                id=new_id(),
                config_id=config_id,
                schedule_id=schedule_id,
                trigger_type="schedule",
                scheduled_for=done,
                status="COMPLETED",
                started_at=done,
                finished_at=done + timedelta(minutes=5),
                created_at=done,
            )
        )
    settings = NotificationSettings(default_rule={})
    watches = [
        DeadlineWatch(
            store,
            Notifier(settings, store, node_id=node, link_base="http://x"),
            default_timezone="UTC",
            started_at=_at(22, 0),
        )
        for node in ("a", "b")
    ]
    for now in (_at(22, 8), _at(23, 7, 29), _at(24, 9), _at(26, 9)):
        for watch in watches:
            await watch.check(now=now.astimezone(UTC))
    late = {
        n.incident_key
        for n in await notices.recent(store, config_id=config_id)
        if n.event == "late"
    }
    fires = [_at(day, 6).astimezone(UTC).isoformat() for day in (23, 24)]
    # the 23rd's deadline passed at 07:30, seen at the 24th's check; the 25th (Christmas) and
    # the 26th (Second Christmas Day) are closed days
    assert late == {f"late:{schedule_id}:{fire}" for fire in fires}, late
    rows = await notices.recent(store, config_id=config_id)
    assert len(rows) == 2
    assert "deadline 07:30 passed at 2026-12-23T07:30:00+01:00" in (rows[-1].message or "")
    assert "no run was claimed for the fire" in (rows[-1].message or "")


def _late_count() -> float:
    return metrics.REGISTRY.get_sample_value("reporthubd_late_runs_total") or 0.0


async def test_a_late_fire_is_counted_once_however_many_nodes_watch(store: Store) -> None:
    """Three nodes watch the same deadlines (one restarted inside the look-back window): each
    late fire counts once, for a report whose rules send `late` and for one whose rules send
    nothing (the count is the fire's claim in report_late_fires, not the notice)."""
    source = await add_datasource(store, "sqlite", {"path": "/tmp/none.db"})
    rule = {"events": ["late"], "notify": ["owners"]}
    told = await add_config(
        store, source, "SELECT 1", notify={"owners": ["ann@example.com"], "rules": [rule]}
    )
    silent = await add_config(store, source, "SELECT 2")
    schedules = [
        await add_schedule(store, config_id, "0 6 * * *", timezone="Europe/Berlin", deadline="+30m")
        for config_id in (told, silent)
    ]
    settings = NotificationSettings(default_rule={})
    watches = [
        DeadlineWatch(
            store,
            Notifier(settings, store, node_id=node, link_base="http://x"),
            default_timezone="UTC",
            started_at=_at(1, 0),
        )
        for node in ("a", "b", "c")
    ]
    before = _late_count()
    for now in (_at(1, 7), _at(2, 7), _at(2, 7, 1)):
        for watch in watches:
            await watch.check(now=now.astimezone(UTC))
    # A node restarted later looks back over the same fires: nothing counted again.
    again = DeadlineWatch(
        store,
        Notifier(settings, store, node_id="a", link_base="http://x"),
        default_timezone="UTC",
        started_at=_at(2, 7, 30),
    )
    await again.check(now=_at(2, 7, 31).astimezone(UTC))
    # Two fires (the 1st and the 2nd at 06:00) of two schedules, each late once.
    assert _late_count() - before == 4
    async with store.engine.connect() as conn:
        claims = (
            await conn.execute(
                sa.select(schema.late_fires.c.schedule_id, schema.late_fires.c.node_id)
            )
        ).all()
    assert sorted(row.schedule_id for row in claims) == sorted(schedules * 2)
    assert {n.target for n in await notices.recent(store, config_id=told)} == {
        "email:ann@example.com"
    }
    assert len(await notices.recent(store, config_id=told)) == 2
    assert await notices.recent(store, config_id=silent) == []
