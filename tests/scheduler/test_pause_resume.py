"""Pausing and resuming a schedule, with the real scheduler loop against a real store (SQLite,
MariaDB, PostgreSQL) and a hand-moved clock: fires while paused are recorded SKIPPED "paused by
... since ...: ..." exactly once (two nodes included), a resumed schedule runs again, and the fires
that fell in the pause are never caught up, neither while the daemon runs nor after a restart.
Nothing here sleeps."""

from __future__ import annotations

from zoneinfo import ZoneInfo

import pytest

from reporthubd import domain, metrics
from reporthubd.scheduler import pausing
from reporthubd.store import pauses
from reporthubd.store.database import Store
from tests.scheduler.helpers import (
    FakeClock,
    Submitted,
    add_schedule,
    advance_to,
    executions,
    running,
    seed_config,
    utc,
)

PAUSED = "paused by ops since 2026-05-04T10:01:30Z: warehouse maintenance"


async def history(store: Store, schedule_id: int) -> dict[str, tuple[str, str | None]]:
    rows = await executions(store, schedule_id)
    keys = [(r.scheduled_for, r.attempt) for r in rows]
    assert len(keys) == len(set(keys)), "a fire was recorded twice"
    return {r.scheduled_for.strftime("%H:%M"): (r.status, r.error_message) for r in rows}


async def test_a_paused_schedule_records_its_fires_skipped_and_resumes_without_catch_up(
    store: Store,
) -> None:
    config_id = await seed_config(store)
    schedule_id = await add_schedule(store, config_id, "* * * * *", misfire_policy="run_all")
    other = await add_schedule(store, config_id, "* * * * *")
    clock = FakeClock(utc("2026-05-04 10:00:30"))
    a, b = Submitted([]), Submitted([])
    paused_before = metrics.REGISTRY.get_sample_value("reporthubd_paused_fires_total") or 0.0
    missed_before = _missed()
    async with (
        running(store, clock, a, node_id="node-a") as scheduler,
        running(store, clock, b, node_id="node-b") as second,
    ):
        await advance_to(clock, "2026-05-04 10:01:00.200")
        state = await pauses.pause(
            store,
            schedule_id,
            by="ops",
            reason="warehouse maintenance",
            at=utc("2026-05-04 10:01:30"),
        )
        assert state.paused and state.paused_by == "ops"
        for node in (scheduler, second):
            assert (await node.reload(source="test")).ok
        jobs = {job["schedule_id"]: job for job in await scheduler.jobs_view()}
        assert jobs[schedule_id]["paused"] == {
            "since": "2026-05-04T10:01:30+00:00",
            "by": "ops",
            "reason": "warehouse maintenance",
            "skip_reason": PAUSED,
        }
        assert jobs[other]["paused"] is None
        assert jobs[schedule_id]["next_fire"] == "2026-05-04T10:02:00+00:00"  # keeps its place
        await advance_to(clock, "2026-05-04 10:02:00.200")
        await advance_to(clock, "2026-05-04 10:03:00.200")
        await pauses.resume(store, schedule_id, by="ops", at=utc("2026-05-04 10:03:30"))
        for node in (scheduler, second):
            assert (await node.reload(source="test")).ok
        assert {job["schedule_id"]: job for job in await scheduler.jobs_view()}[schedule_id][
            "paused"
        ] is None
        await advance_to(clock, "2026-05-04 10:04:00.200")
    assert await history(store, schedule_id) == {
        "10:01": ("PENDING", None),
        "10:02": ("SKIPPED", PAUSED),
        "10:03": ("SKIPPED", PAUSED),
        "10:04": ("PENDING", None),
    }
    assert {k: v[0] for k, v in (await history(store, other)).items()} == {
        "10:01": "PENDING",
        "10:02": "PENDING",
        "10:03": "PENDING",
        "10:04": "PENDING",
    }
    assert len(a.ids) + len(b.ids) == 2 + 4  # the paused fires were handed to no engine
    paused_after = metrics.REGISTRY.get_sample_value("reporthubd_paused_fires_total") or 0.0
    assert paused_after - paused_before == 2  # counted once each, and not as missed fires
    assert _missed() == missed_before
    # a restart catches nothing up: every fire is decided
    clock = FakeClock(utc("2026-05-04 10:04:30"))
    async with running(store, clock, Submitted([])):
        pass
    assert len(await history(store, schedule_id)) == 4


def _missed() -> float:
    samples = [
        metrics.REGISTRY.get_sample_value("reporthubd_missed_fires_total", {"policy": policy})
        for policy in ("run_once", "run_all", "skip")
    ]
    return sum(value or 0.0 for value in samples)


async def test_fires_missed_while_down_and_paused_are_skipped_as_paused_not_run(
    store: Store,
) -> None:
    config_id = await seed_config(store)
    schedule_id = await add_schedule(store, config_id, "* * * * *", misfire_policy="run_all")
    clock = FakeClock(utc("2026-05-04 10:00:30"))
    submitted = Submitted([])
    async with running(store, clock, submitted):
        await advance_to(clock, "2026-05-04 10:01:00.200")
    # down from 10:01:00.2; paused at 10:01:30 meanwhile (`reporthubd pause` writes the store)
    await pauses.pause(
        store, schedule_id, by="ops", reason="warehouse maintenance", at=utc("2026-05-04 10:01:30")
    )
    clock = FakeClock(utc("2026-05-04 10:03:30"))
    async with running(store, clock, submitted) as scheduler:
        assert await history(store, schedule_id) == {
            "10:01": ("PENDING", None),
            "10:02": ("SKIPPED", PAUSED),
            "10:03": ("SKIPPED", PAUSED),
        }
        await pauses.resume(store, schedule_id, by="ops", at=utc("2026-05-04 10:03:40"))
        assert (await scheduler.reload(source="test")).ok
        await advance_to(clock, "2026-05-04 10:04:00.200")
    assert (await history(store, schedule_id))["10:04"] == ("PENDING", None)
    assert len(submitted.ids) == 2


@pytest.mark.parametrize("policy", ["run_once", "run_all"])
async def test_after_a_resume_while_down_only_fires_since_the_resume_follow_the_policy(
    store: Store, policy: str
) -> None:
    config_id = await seed_config(store)
    schedule_id = await add_schedule(store, config_id, "* * * * *", misfire_policy=policy)
    clock = FakeClock(utc("2026-05-04 10:00:30"))
    submitted = Submitted([])
    async with running(store, clock, submitted):
        await advance_to(clock, "2026-05-04 10:01:00.200")
    # down from 10:01:00.2 to 10:05:30; paused and resumed in between
    await pauses.pause(store, schedule_id, by="ops", reason="x", at=utc("2026-05-04 10:01:30"))
    await pauses.resume(store, schedule_id, by="ops", at=utc("2026-05-04 10:03:30"))
    clock = FakeClock(utc("2026-05-04 10:05:30"))
    async with running(store, clock, submitted):
        pass
    found = await history(store, schedule_id)
    not_caught_up = "(the schedule was paused and resumed at 2026-05-04T10:03:30Z"
    for fire in ("10:02", "10:03"):
        status, why = found[fire]
        assert status == "SKIPPED" and why is not None and not_caught_up in why, found
    # 10:04 and 10:05 were missed after the resumption: the policy decides them
    if policy == "run_all":
        assert (found["10:04"][0], found["10:05"][0]) == ("PENDING", "PENDING")
    else:
        assert found["10:04"][0] == "SKIPPED" and "coalesced" in str(found["10:04"][1])
        assert found["10:05"][0] == "PENDING"
    assert len(found) == 5


async def test_pause_and_resume_refuse_what_makes_no_sense(store: Store) -> None:
    config_id = await seed_config(store)
    schedule_id = await add_schedule(store, config_id, "* * * * *")
    with pytest.raises(pauses.UnknownSchedule, match="schedule_id: no schedule 999999"):
        await pauses.pause(store, 999999, by="ops", reason="x")
    with pytest.raises(ValueError, match="reason: required"):
        await pauses.pause(store, schedule_id, by="ops", reason="  ")
    with pytest.raises(pauses.PauseConflict, match="is not paused"):
        await pauses.resume(store, schedule_id, by="ops")
    await pauses.pause(store, schedule_id, by="ops", reason="first")
    with pytest.raises(pauses.PauseConflict, match=r"already paused \(by ops since .*: first\)"):
        await pauses.pause(store, schedule_id, by="ann", reason="second")
    state = await pauses.resume(store, schedule_id, by="ann")
    assert not state.paused and state.paused_reason is None and state.resumed_by == "ann"


def test_a_fire_before_the_pause_instant_still_runs() -> None:
    at = utc
    schedule = domain.Schedule(
        id=1,
        config_id=1,
        cron_expression="* * * * *",
        timezone=ZoneInfo("UTC"),
        timezone_name=None,
        parameters={},
        misfire_policy=domain.MisfirePolicy.RUN_ONCE,
        misfire_grace_seconds=None,
        start_at=None,
        end_at=None,
        paused_at=at("2026-05-04 10:01:30"),
        paused_by=None,
        paused_reason=None,
    )
    assert pausing.skip_reason(schedule, at("2026-05-04 10:01:00").timestamp()) is None
    assert pausing.skip_reason(schedule, at("2026-05-04 10:02:00").timestamp()) == (
        "paused by unknown since 2026-05-04T10:01:30Z: no reason given"
    )
