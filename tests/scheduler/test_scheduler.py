"""The scheduler against a real store (SQLite, MariaDB, PostgreSQL), with a hand-moved clock:
claims, restart catch-up under each misfire policy, disabled schedules, reload diffing, manual
triggers and the recovery of lost executions. Nothing here sleeps."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from reporthubd.config import StoreSettings
from reporthubd.scheduler import dispatch, timetable
from reporthubd.store import nodes as node_rows
from reporthubd.store import schema
from reporthubd.store.database import Store
from reporthubd.timeutil import utcnow
from tests.scheduler.helpers import (
    FakeClock,
    Submitted,
    add_schedule,
    advance_to,
    executions,
    running,
    seed_config,
    update_schedule,
    utc,
)


def by_time(rows: list[sa.Row[object]]) -> dict[str, tuple[str, str]]:
    return {
        row.scheduled_for.strftime("%H:%M:%S"): (row.status, row.trigger_type)
        for row in rows
        if row.attempt == 0
    }


async def test_due_fires_are_claimed_once_and_handed_to_the_engine(store: Store) -> None:
    config_id = await seed_config(store)
    every_minute = await add_schedule(store, config_id, "* * * * *")
    berlin_9 = await add_schedule(store, config_id, "0 9 * * *", timezone="Europe/Berlin")
    clock = FakeClock(utc("2026-03-28 07:59:30"))
    submitted = Submitted([])
    async with running(store, clock, submitted) as scheduler:
        await advance_to(clock, "2026-03-28 08:00:00.200")
        await advance_to(clock, "2026-03-28 08:01:00.100")
        rows = await executions(store)
        assert sorted((r.scheduled_for, r.schedule_id) for r in rows) == [
            (utc("2026-03-28 08:00"), every_minute),
            (utc("2026-03-28 08:00"), berlin_9),  # 09:00 CET
            (utc("2026-03-28 08:01"), every_minute),
        ]
        assert {r.status for r in rows} == {"PENDING"}
        assert {r.trigger_type for r in rows} == {"schedule"}
        assert {r.node_id for r in rows} == {"node-a"}
        assert sorted(submitted.ids) == sorted(r.id for r in rows)
        status = await scheduler.status()
        assert status["fire_lateness"]["fires"] == 3
        assert status["next_fire"]["at"] == "2026-03-28T08:02:00+00:00"
    async with store.engine.connect() as conn:
        written = (
            await conn.execute(
                sa.select(schema.schedules.c.last_run_at, schema.schedules.c.next_run_at).where(
                    schema.schedules.c.id == berlin_9
                )
            )
        ).one()
    # the next 09:00 Berlin is after the spring change: 07:00 UTC
    assert tuple(written) == (utc("2026-03-28 08:00"), utc("2026-03-29 07:00"))


async def test_claims_prepared_before_the_due_instant_are_sent_at_it_and_follow_a_reload(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(dispatch, "PREPARE_MIN_FIRES", 1)
    config_id = await seed_config(store)
    kept = await add_schedule(store, config_id, "* * * * *")
    dropped = await add_schedule(store, config_id, "* * * * *")
    clock = FakeClock(utc("2026-05-04 10:00:30"))
    submitted = Submitted([])
    async with running(store, clock, submitted) as scheduler:
        # within the lead before 10:01: the claims are made ready, nothing is written yet
        await advance_to(clock, "2026-05-04 10:00:59.990")
        assert scheduler._dispatch.prepared is not None
        assert {len(part.ids) for part in scheduler._dispatch.prepared.slices} == {2}
        assert await executions(store) == []
        # a reload between preparing and the due instant voids what was prepared
        await update_schedule(store, dropped, is_active=False)
        await scheduler.reload(source="test")
        await advance_to(clock, "2026-05-04 10:00:59.990")  # the loop has looked again
        assert scheduler._dispatch.prepared is not None
        assert {len(part.ids) for part in scheduler._dispatch.prepared.slices} == {1}
        prepared_ids = set(scheduler._dispatch.prepared.slices[0].ids)
        await advance_to(clock, "2026-05-04 10:01:00.001")
        rows = await executions(store)
    assert [(r.schedule_id, r.scheduled_for, r.status) for r in rows] == [
        (kept, utc("2026-05-04 10:01"), "PENDING")
    ]
    assert {r.id for r in rows} == prepared_ids == set(submitted.ids)


async def test_two_nodes_claim_each_fire_exactly_once(store: Store) -> None:
    config_id = await seed_config(store)
    ids = [await add_schedule(store, config_id, "* * * * * *") for _ in range(20)]
    clock = FakeClock(utc("2026-01-01 00:00:00.500"))
    a, b = Submitted([]), Submitted([])
    async with (
        running(store, clock, a, node_id="node-a"),
        running(store, clock, b, node_id="node-b"),
    ):
        for second in range(1, 6):
            await advance_to(clock, f"2026-01-01 00:00:0{second}.100")
    rows = await executions(store)
    assert len(rows) == 20 * 5
    assert len({(r.schedule_id, r.scheduled_for) for r in rows}) == 100
    assert {r.schedule_id for r in rows} == set(ids)
    assert len(a.ids) + len(b.ids) == 100
    assert set(a.ids).isdisjoint(b.ids)


POLICIES = {
    # down from just after the 10:01 fire until 10:04:30: 10:02, 10:03, 10:04 were missed
    "run_once": {
        "10:01:00": ("PENDING", "schedule"),
        "10:02:00": ("SKIPPED", "schedule"),
        "10:03:00": ("SKIPPED", "schedule"),
        "10:04:00": ("PENDING", "schedule"),
        "10:05:00": ("PENDING", "schedule"),
    },
    "skip": {
        "10:01:00": ("PENDING", "schedule"),
        "10:02:00": ("SKIPPED", "schedule"),
        "10:03:00": ("SKIPPED", "schedule"),
        "10:04:00": ("SKIPPED", "schedule"),
        "10:05:00": ("PENDING", "schedule"),
    },
    "run_all": {
        "10:01:00": ("PENDING", "schedule"),
        "10:02:00": ("PENDING", "schedule"),
        "10:03:00": ("PENDING", "schedule"),
        "10:04:00": ("PENDING", "schedule"),
        "10:05:00": ("PENDING", "schedule"),
    },
}


@pytest.mark.parametrize("policy", sorted(POLICIES))
async def test_a_three_minute_outage_is_caught_up_as_the_policy_promises(
    store: Store, policy: str
) -> None:
    config_id = await seed_config(store)
    schedule_id = await add_schedule(store, config_id, "* * * * *", misfire_policy=policy)
    clock = FakeClock(utc("2026-05-04 10:00:30"))
    submitted = Submitted([])
    async with running(store, clock, submitted, node_id="node-a"):
        await advance_to(clock, "2026-05-04 10:01:00.300")
    # the daemon is down for three and a half minutes; a new process starts
    clock = FakeClock(utc("2026-05-04 10:04:30"))
    async with running(store, clock, submitted, node_id="node-a"):
        await advance_to(clock, "2026-05-04 10:05:00.200")
    rows = await executions(store, schedule_id)
    assert by_time(rows) == POLICIES[policy]
    assert len(rows) == 5
    skipped = [r for r in rows if r.status == "SKIPPED"]
    for row in skipped:
        assert row.error_message.startswith(
            "missed: daemon down from 2026-05-04T10:01:00Z to 2026-05-04T10:04:30Z"
        )
        assert row.finished_at is not None
    assert len(submitted.ids) == 5 - len(skipped)


async def test_missed_fires_beyond_the_grace_are_recorded_not_run(store: Store) -> None:
    config_id = await seed_config(store)
    schedule_id = await add_schedule(
        store, config_id, "* * * * *", misfire_policy="run_all", misfire_grace_seconds=90
    )
    await update_schedule(store, schedule_id, last_run_at=utc("2026-05-04 10:00"))
    clock = FakeClock(utc("2026-05-04 10:04:30"))
    async with running(store, clock, Submitted([]), run_all_limit=2):
        pass
    rows = await executions(store, schedule_id)
    # 10:01, 10:02 beyond the 90 s grace; 10:03 and 10:04 run (limit 2 not exceeded)
    assert by_time(rows) == {
        "10:01:00": ("SKIPPED", "schedule"),
        "10:02:00": ("SKIPPED", "schedule"),
        "10:03:00": ("PENDING", "schedule"),
        "10:04:00": ("PENDING", "schedule"),
    }
    assert "beyond the misfire grace of 90 s" in rows[0].error_message


async def test_invalid_cron_or_zone_disables_only_that_schedule(store: Store) -> None:
    config_id = await seed_config(store)
    good = await add_schedule(store, config_id, "* * * * *")
    bad_cron = await add_schedule(store, config_id, "61 * * * *")
    bad_zone = await add_schedule(store, config_id, "* * * * *", timezone="Mars/Olympus_Mons")
    clock = FakeClock(utc("2026-05-04 10:00:30"))
    async with running(store, clock, Submitted([])) as scheduler:
        await advance_to(clock, "2026-05-04 10:01:00.100")
        status = await scheduler.status()
        jobs = {job["schedule_id"]: job for job in await scheduler.jobs_view()}
    disabled = {d["schedule_id"]: d["reason"] for d in status["schedules_disabled"]}
    assert set(disabled) == {bad_cron, bad_zone}
    assert "cron_expression" in disabled[bad_cron] and "61" in disabled[bad_cron]
    assert "Mars/Olympus_Mons" in disabled[bad_zone]
    assert jobs[bad_cron]["disabled"] == disabled[bad_cron]
    assert jobs[good]["disabled"] is None and jobs[good]["last_status"] == "PENDING"
    assert [r.schedule_id for r in await executions(store)] == [good]


async def test_reload_diffs_schedules_without_losing_or_doubling_fires(store: Store) -> None:
    config_id = await seed_config(store)
    unchanged = await add_schedule(store, config_id, "*/10 * * * * *")
    changed = await add_schedule(store, config_id, "*/10 * * * * *")
    removed = await add_schedule(store, config_id, "*/10 * * * * *")
    clock = FakeClock(utc("2026-05-04 10:00:05"))
    async with running(store, clock, Submitted([])) as scheduler:
        await advance_to(clock, "2026-05-04 10:00:10.100")
        await update_schedule(store, changed, cron_expression="*/15 * * * * *")
        await update_schedule(store, removed, is_active=False)
        added = await add_schedule(store, config_id, "*/10 * * * * *")
        report = await scheduler.reload(source="test")
        assert (report.added, report.changed, report.removed) == (1, 1, 1)
        for second in ("15", "20", "30"):
            await advance_to(clock, f"2026-05-04 10:00:{second}.100")
    fired = {
        sid: [r.scheduled_for.strftime("%S") for r in await executions(store, sid)]
        for sid in (unchanged, changed, removed, added)
    }
    assert fired == {
        unchanged: ["10", "20", "30"],
        changed: ["10", "15", "30"],
        removed: ["10"],
        added: ["20", "30"],
    }


async def test_manual_trigger_runs_now_without_taking_a_fire(store: Store) -> None:
    config_id = await seed_config(store)
    schedule_id = await add_schedule(store, config_id, "* * * * *")
    clock = FakeClock(utc("2026-05-04 10:00:30"))
    submitted = Submitted([])
    async with running(store, clock, submitted) as scheduler:
        now_id = await scheduler.trigger(schedule_id)
        # a logical time equal to the next fire: the fire itself still runs
        logical_id = await scheduler.trigger(schedule_id, utc("2026-05-04 10:01"))
        await advance_to(clock, "2026-05-04 10:01:00.100")
        with pytest.raises(LookupError, match="not loaded"):
            await scheduler.trigger(999_999)
    rows = {r.id: r for r in await executions(store, schedule_id)}
    assert rows[now_id].trigger_type == "manual"
    assert rows[now_id].scheduled_for == utc("2026-05-04 10:00:30")
    assert (rows[logical_id].trigger_type, rows[logical_id].attempt) == ("manual", 1)
    fire = [r for r in rows.values() if r.trigger_type == "schedule"]
    assert [(r.scheduled_for, r.attempt) for r in fire] == [(utc("2026-05-04 10:01"), 0)]
    assert submitted.ids[:2] == [now_id, logical_id] and len(submitted.ids) == 3


async def _insert_execution(store: Store, **values: object) -> None:
    async with store.engine.begin() as conn:
        await conn.execute(sa.insert(schema.executions).values(**values))


async def test_lost_executions_fail_once_and_are_recovered_once(store: Store) -> None:
    config_id = await seed_config(store)
    schedule_id = await add_schedule(store, config_id, "0 3 * * *")
    now = datetime.now(UTC)
    old = now - timedelta(minutes=10)
    fire = utc("2026-05-04 03:00")
    async with store.engine.begin() as conn:
        await conn.execute(
            sa.insert(schema.nodes).values(node_id="dead", heartbeat_at=old, started_at=old)
        )
    base = {"config_id": config_id, "node_id": "dead", "created_at": old}
    await _insert_execution(
        store, id="run-lost", schedule_id=schedule_id, scheduled_for=fire,
        trigger_type="schedule", status="RUNNING", heartbeat_at=old, **base,
    )  # fmt: skip
    await _insert_execution(
        store, id="pending-lost", schedule_id=schedule_id, scheduled_for=utc("2026-05-05 03:00"),
        trigger_type="schedule", status="PENDING", **base,
    )  # fmt: skip
    await _insert_execution(
        store, id="retrying", trigger_type="manual", status="RUNNING", heartbeat_at=old, **base
    )
    # a recovery run, itself lost: its own recovery stands in for the first run of the chain
    second_fire = utc("2026-05-06 03:00")
    await _insert_execution(
        store, id="recovery-lost", schedule_id=schedule_id, scheduled_for=second_fire,
        trigger_type="recovery", status="RUNNING", heartbeat_at=old, attempt=1,
        recovers_id="first-run", **base,
    )  # fmt: skip
    async with store.engine.begin() as conn:
        await conn.execute(
            sa.insert(schema.delivery_logs).values(
                execution_id="retrying", delivery_id=1, attempt=1, status="RETRYING"
            )
        )
    fresh = {"config_id": config_id, "node_id": "node-b", "created_at": now}
    await _insert_execution(
        store, id="alive", trigger_type="manual", status="RUNNING", heartbeat_at=now, **fresh
    )
    config = {"heartbeat_interval_seconds": 1.0, "node_lost_after_seconds": 60.0}
    clock = FakeClock(now)
    a, b = Submitted([]), Submitted([])
    await node_rows.register_node(store, "node-a", now=utcnow())
    await node_rows.register_node(store, "node-b", now=utcnow())
    async with (
        running(store, clock, a, node_id="node-a", **config) as first,
        running(store, clock, b, node_id="node-b", **config) as second,
    ):
        # just started: other nodes' heartbeats are judged after 60 s of store contact
        assert await first.sweep() == 0 and await second.sweep() == 0
        before = {r.id: r.status for r in await executions(store)}
        assert (before["run-lost"], before["pending-lost"]) == ("RUNNING", "PENDING")
        await advance_to(clock, (now + timedelta(seconds=61)).strftime("%Y-%m-%d %H:%M:%S.%f"))
        # both nodes look at the same rows
        await first.sweep()
        await second.sweep()
    rows = {r.id: r for r in await executions(store)}
    assert rows["run-lost"].status == "FAILED"
    assert rows["run-lost"].error_message.startswith("node lost: node dead stopped heartbeating")
    # the queued run never started: adopted by one node, not failed
    assert rows["pending-lost"].status == "PENDING"
    assert rows["pending-lost"].node_id in {"node-a", "node-b"}
    assert rows["retrying"].status == "RUNNING"
    assert rows["alive"].status == "RUNNING"
    assert rows["recovery-lost"].status == "FAILED"
    recoveries = [
        r for r in rows.values() if r.trigger_type == "recovery" and r.id != "recovery-lost"
    ]
    assert sorted((r.scheduled_for, r.attempt, r.recovers_id) for r in recoveries) == [
        (fire, 1, "run-lost"),
        (second_fire, 2, "first-run"),
    ]
    assert sorted(a.ids + b.ids) == sorted([*(r.id for r in recoveries), "pending-lost"])


async def test_after_a_store_outage_other_nodes_are_judged_only_after_continuous_contact(
    store: Store,
) -> None:
    """When the store comes back, every node's heartbeat is stale at once: a node judges other
    nodes' heartbeats only once its own contact has lasted node_lost_after_seconds since its
    last failed store call; its own leftovers from before its start are handled at once."""
    config_id = await seed_config(store)
    now = datetime.now(UTC)
    old = now - timedelta(minutes=10)
    await _insert_execution(
        store, id="other", config_id=config_id, node_id="node-b", trigger_type="manual",
        status="RUNNING", heartbeat_at=old, created_at=old,
    )  # fmt: skip
    await _insert_execution(
        store, id="mine", config_id=config_id, node_id="node-a", trigger_type="manual",
        status="RUNNING", heartbeat_at=old, created_at=old,
    )  # fmt: skip
    config = {"heartbeat_interval_seconds": 5.0, "node_lost_after_seconds": 60.0}
    clock = FakeClock(now)

    async def statuses() -> dict[str, str]:
        return {r.id: r.status for r in await executions(store)}

    async with running(store, clock, Submitted([]), node_id="node-a", **config) as node:
        # at start: its own leftover is handled at once, the other node's run is not judged
        assert (await statuses())["mine"] == "FAILED"
        assert (await statuses())["other"] == "RUNNING"
        # 50 s in, the store fails (a sweep cannot reach it)
        await advance_to(clock, (now + timedelta(seconds=50)).strftime("%Y-%m-%d %H:%M:%S.%f"))
        node.store = Store(
            StoreSettings(url="mysql://root@127.0.0.1:1/none", connect_timeout_seconds=1)
        )
        await node.store.start()
        with pytest.raises(Exception):  # noqa: B017 - whatever the driver raises
            await node.sweep()
        await node.store.stop()
        node.store = store
        # 70 s after start but only 20 s after the failure: still not judged
        await advance_to(clock, (now + timedelta(seconds=70)).strftime("%Y-%m-%d %H:%M:%S.%f"))
        assert not node.judges_others()
        await node.sweep()
        assert (await statuses())["other"] == "RUNNING"
        # 60 s of contact since the failure: judged
        await advance_to(clock, (now + timedelta(seconds=111)).strftime("%Y-%m-%d %H:%M:%S.%f"))
        assert node.judges_others()
        await node.sweep()
        rows = {r.id: r for r in await executions(store)}
    assert rows["other"].status == "FAILED"
    assert rows["other"].error_message.startswith("node lost: node node-b stopped heartbeating")


async def test_queued_runs_of_a_stopped_node_are_adopted_once_not_failed(store: Store) -> None:
    config_id = await seed_config(store)
    now = datetime.now(UTC)
    earlier = now - timedelta(seconds=30)
    async with store.engine.begin() as conn:
        await conn.execute(
            sa.insert(schema.nodes),
            [
                # stopped cleanly a moment ago: its queued runs are adopted at once
                {"node_id": "gone", "heartbeat_at": now, "started_at": earlier, "stopped_at": now},
                {"node_id": "busy", "heartbeat_at": now, "started_at": earlier, "stopped_at": None},
            ],
        )
    base = {"config_id": config_id, "trigger_type": "manual", "status": "PENDING"}
    await _insert_execution(store, id="queued", node_id="gone", created_at=now, **base)
    await _insert_execution(store, id="other", node_id="busy", created_at=earlier, **base)
    await _insert_execution(store, id="mine", node_id="node-a", created_at=earlier, **base)
    config = {"heartbeat_interval_seconds": 1.0, "node_lost_after_seconds": 60.0}
    clock = FakeClock(now)
    a, b = Submitted([]), Submitted([])
    await node_rows.register_node(store, "node-a", now=utcnow())
    await node_rows.register_node(store, "node-b", now=utcnow())
    async with (
        running(store, clock, a, node_id="node-a", **config) as first,
        running(store, clock, b, node_id="node-b", **config) as second,
    ):
        # start() swept once; more sweeps change nothing
        await first.sweep()
        await second.sweep()
        rows = {r.id: r for r in await executions(store)}
    assert {r.id for r in rows.values()} == {"queued", "other", "mine"}  # no recovery rows
    assert {r.status for r in rows.values()} == {"PENDING"}
    assert rows["queued"].node_id in {"node-a", "node-b"}
    assert rows["other"].node_id == "busy"  # its node is alive
    assert rows["mine"].node_id == "node-a"  # its previous process queued it: run again
    assert sorted(a.ids + b.ids) == ["mine", "queued"]
    assert (rows["queued"].node_id == "node-a") == ("queued" in a.ids)


async def test_own_rows_from_a_previous_process_are_recovered_at_start(store: Store) -> None:
    config_id = await seed_config(store)
    schedule_id = await add_schedule(store, config_id, "0 3 * * *")
    before = datetime.now(UTC) - timedelta(seconds=30)
    # the latest 03:00 before now: no fire was missed since, only the run was lost
    fire = (before - timedelta(hours=3)).replace(hour=3, minute=0, second=0, microsecond=0)
    await _insert_execution(
        store, id="left", config_id=config_id, schedule_id=schedule_id, node_id="node-a",
        scheduled_for=fire, trigger_type="schedule", status="RUNNING",
        heartbeat_at=before, created_at=before,
    )  # fmt: skip
    submitted = Submitted([])
    async with running(store, FakeClock(datetime.now(UTC)), submitted, node_id="node-a"):
        pass
    rows = await executions(store, schedule_id)
    assert [(r.status, r.trigger_type, r.attempt) for r in rows] == [
        ("FAILED", "schedule", 0),
        ("PENDING", "recovery", 1),
    ]
    assert rows[0].error_message == "node lost: node node-a restarted before the run ended"
    assert submitted.ids == [rows[1].id]


async def test_a_long_outage_records_every_missed_fire_in_bounded_chunks(store: Store) -> None:
    config_id = await seed_config(store)
    schedule_id = await add_schedule(store, config_id, "* * * * * *", misfire_grace_seconds=300)
    await update_schedule(store, schedule_id, last_run_at=utc("2026-05-04 09:00:00"))
    clock = FakeClock(utc("2026-05-04 10:00:00.500"))
    async with running(store, clock, Submitted([]), skipped_rows_limit=5000):
        pass
    rows = await executions(store, schedule_id)
    assert len(rows) == 3600  # 09:00:01 .. 10:00:00, each once
    assert len({r.scheduled_for for r in rows}) == 3600
    # 09:59:56 .. 10:00:00 are on time (within 5 s): they run, whatever the policy
    runs = [r.scheduled_for.strftime("%H:%M:%S") for r in rows if r.status == "PENDING"]
    assert runs == ["09:59:56", "09:59:57", "09:59:58", "09:59:59", "10:00:00"]
    reasons = Counter((r.error_message or "").split(" (")[-1] for r in rows)
    assert reasons == {
        "beyond the misfire grace of 300 s)": 3300,  # 09:00:01 .. 09:55:00
        "run_once: coalesced into the run for 2026-05-04T10:00:00Z)": 295,
        "": 5,
    }


async def test_beyond_skipped_rows_limit_the_older_missed_fires_share_one_row(
    store: Store,
) -> None:
    config_id = await seed_config(store)
    schedule_id = await add_schedule(store, config_id, "* * * * * *", misfire_grace_seconds=300)
    await update_schedule(store, schedule_id, last_run_at=utc("2026-05-04 09:00:00"))
    clock = FakeClock(utc("2026-05-04 10:00:00.500"))
    submitted = Submitted([])
    async with running(store, clock, submitted, skipped_rows_limit=100):
        pass
    # a second node catching up from the same store writes nothing more
    async with running(store, clock, Submitted([]), node_id="node-b", skipped_rows_limit=100):
        pass
    rows = await executions(store, schedule_id)
    runs = [r.scheduled_for.strftime("%H:%M:%S") for r in rows if r.status == "PENDING"]
    assert runs == ["09:59:56", "09:59:57", "09:59:58", "09:59:59", "10:00:00"]
    assert len(submitted.ids) == 5
    skipped = [r for r in rows if r.status == "SKIPPED"]
    # 3,595 missed fires: the most recent 100 one by one (09:58:16 .. 09:59:55), and one row at
    # the oldest missed fire for the 3,495 others
    assert len(skipped) == 101
    listed = [r.scheduled_for.strftime("%H:%M:%S") for r in skipped[1:]]
    assert listed[0] == "09:58:16" and listed[-1] == "09:59:55"
    summary = skipped[0]
    assert summary.scheduled_for == utc("2026-05-04 09:00:01")
    assert summary.error_message == (
        "missed: daemon down from 2026-05-04T09:00:00Z to 2026-05-04T10:00:00.500000Z; "
        "3495 fires from 2026-05-04T09:00:01Z to 2026-05-04T09:58:15Z not recorded one by one "
        "(more than scheduler.skipped_rows_limit=100 missed)"
    )
    assert summary.finished_at is not None


async def test_fires_missed_while_the_loop_was_blocked_follow_the_policy(store: Store) -> None:
    config_id = await seed_config(store)
    once = await add_schedule(store, config_id, "* * * * *")
    every = await add_schedule(store, config_id, "* * * * *", misfire_policy="run_all")
    clock = FakeClock(utc("2026-05-04 10:00:30"))
    async with running(store, clock, Submitted([])):
        await advance_to(clock, "2026-05-04 10:01:00.100")
        # the loop cannot run for three minutes (blocked event loop, suspended process)
        await advance_to(clock, "2026-05-04 10:04:20")
    assert by_time(await executions(store, once)) == {
        "10:01:00": ("PENDING", "schedule"),
        "10:02:00": ("SKIPPED", "schedule"),
        "10:03:00": ("SKIPPED", "schedule"),
        "10:04:00": ("PENDING", "schedule"),
    }
    rows = await executions(store, once)
    assert rows[1].error_message.startswith(
        "missed: scheduler blocked from 2026-05-04T10:02:00Z to 2026-05-04T10:04:20Z"
    )
    assert {r.status for r in await executions(store, every)} == {"PENDING"}
    assert len(await executions(store, every)) == 4


async def test_a_cron_that_can_never_fire_is_disabled_with_a_reason(store: Store) -> None:
    config_id = await seed_config(store)
    never = await add_schedule(store, config_id, "0 0 31 2 *")
    clock = FakeClock(utc("2026-05-04 10:00:30"))
    async with running(store, clock, Submitted([])) as scheduler:
        assert "never fires" in scheduler.disabled[never]
        assert never not in scheduler.jobs


async def test_whether_a_cron_can_fire_is_checked_once_per_expression_and_zone(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Loading 100,000 schedules must not search 50 years of dates 100,000 times."""
    config_id = await seed_config(store)
    for _ in range(5):
        await add_schedule(store, config_id, "*/5 * * * *")
        await add_schedule(store, config_id, "*/5 * * * *", timezone="Europe/Berlin")
    checked: list[str] = []
    never_fires = timetable._never_fires

    def counting(schedule: Any, now: float) -> bool:
        checked.append(schedule.cron_expression)
        return never_fires(schedule, now)

    monkeypatch.setattr(timetable, "_never_fires", counting)
    clock = FakeClock(utc("2026-05-04 10:00:30"))
    async with running(store, clock, Submitted([])) as scheduler:
        assert len(scheduler.jobs) == 10
    assert len(checked) == 2


@pytest.mark.parametrize("committed", [True, False], ids=["committed", "not-committed"])
@pytest.mark.parametrize("policy", ["run_once", "skip"])
async def test_a_claim_that_fails_without_a_clear_answer_is_settled_by_its_retry(
    store: Store, monkeypatch: pytest.MonkeyPatch, committed: bool, policy: str
) -> None:
    """The first claim of a fire raises after the store did (or did not) commit it: the reply
    was lost. The retry, 10 s later (past the on-time window, so a `skip` schedule now decides
    to skip the fire), sends the same id: a committed row is found as this node's and run as
    it was written (PENDING), once; an uncommitted one is claimed as the retry decides."""
    config_id = await seed_config(store)
    schedule_id = await add_schedule(store, config_id, "* * * * *", misfire_policy=policy)
    real = dispatch.claims.claim_prepared
    calls = 0

    async def reply_lost(*args: Any, **kwargs: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls == 1:
            if committed:
                await real(*args, **kwargs)
            raise ConnectionResetError("connection lost before the reply")
        return await real(*args, **kwargs)

    monkeypatch.setattr(dispatch.claims, "claim_prepared", reply_lost)
    clock = FakeClock(utc("2026-06-01 10:00:50"))
    submitted = Submitted([])
    async with running(store, clock, submitted):
        await advance_to(clock, "2026-06-01 10:01:00.100")  # the claim fails; retried after 1 s
        await advance_to(clock, "2026-06-01 10:01:10")
    rows = await executions(store, schedule_id)
    assert calls == 2
    assert len(rows) == 1
    [row] = rows
    if committed or policy == "run_once":
        assert row.status == "PENDING"
        assert submitted.ids == [row.id]
    else:
        assert row.status == "SKIPPED"
        assert submitted.ids == []
