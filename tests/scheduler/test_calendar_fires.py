"""Business calendars in the running scheduler (issue 20), against every real store backend:
a `0 9 * * 1-5` Europe/Berlin schedule with the German holidays for Berlin (DE, BE), through all
of 2027, under `next_business_day` and under `skip`. The clock is moved by hand from fire to
fire; every claim goes through the real loop, dispatch and claim path.

The expected lists are hand-checked against the 2027 calendar: the holidays of Berlin that fall
on a weekday are written out below (with the weekday checked); the ones on a weekend (1 May a
Saturday, 3 October a Sunday, Christmas a Saturday and Sunday) move nothing, because the cron
does not fire on weekends.
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa

from reporthubd import cli, metrics
from reporthubd.config import StoreSettings
from reporthubd.store import migrate, schema
from reporthubd.store.database import Store
from tests.daemon_process import write_config
from tests.scheduler.helpers import FakeClock, Submitted, add_schedule, executions, seed_config
from tests.scheduler.test_scheduler import running

BERLIN = ZoneInfo("Europe/Berlin")

# Berlin's public holidays of 2027 on a weekday (hand-checked), and where each 09:00 fire goes
# under next_business_day.
WEEKDAY_HOLIDAYS = {
    date(2027, 1, 1): ("New Year's Day", date(2027, 1, 4)),  # Fri -> Mon
    date(2027, 3, 8): ("Women's Day", date(2027, 3, 9)),  # Mon -> Tue (Berlin only)
    date(2027, 3, 26): ("Good Friday", date(2027, 3, 30)),  # Fri -> Tue (Easter Monday)
    date(2027, 3, 29): ("Easter Monday", date(2027, 3, 30)),  # Mon -> Tue
    date(2027, 5, 6): ("Ascension Day", date(2027, 5, 7)),  # Thu -> Fri
    date(2027, 5, 17): ("Pentecost Monday", date(2027, 5, 18)),  # Mon -> Tue
}
WEEKEND_HOLIDAYS = (date(2027, 5, 1), date(2027, 10, 3), date(2027, 12, 25), date(2027, 12, 26))


def weekdays_2027() -> list[date]:
    day, out = date(2027, 1, 1), []
    while day.year == 2027:
        if day.weekday() < 5:
            out.append(day)
        day += timedelta(days=1)
    return out


def at_nine(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, 9, tzinfo=BERLIN).astimezone(UTC)


async def add_calendar(store: Store) -> None:
    async with store.engine.begin() as conn:
        await conn.execute(
            sa.insert(schema.calendars).values(name="de-berlin", country="DE", subdivision="BE")
        )


async def run_2027(
    store: Store, policy: str
) -> tuple[int, list[sa.Row[object]], dict[str, datetime]]:
    """Every fire of 2027 through the real loop; returns the schedule, its execution rows and,
    per execution handed to the engine, the (fake) instant it was claimed and handed on."""
    await add_calendar(store)
    config_id = await seed_config(store)
    schedule_id = await add_schedule(
        store,
        config_id,
        "0 9 * * 1-5",
        timezone="Europe/Berlin",
        calendar_name="de-berlin",
        calendar_policy=policy,
    )
    clock = FakeClock(datetime(2026, 12, 31, 12, tzinfo=UTC))
    submitted = Submitted([])
    end = datetime(2028, 1, 1, tzinfo=UTC).timestamp()
    handed_at: dict[str, datetime] = {}
    seen = 0
    async with running(store, clock, submitted) as scheduler:
        while (due := scheduler.timetable.peek()) is not None and due < end:
            clock.set(datetime.fromtimestamp(due + 0.2, UTC))
            await clock.idle()
            for execution_id in submitted.ids[seen:]:
                handed_at.setdefault(execution_id, datetime.fromtimestamp(due, UTC))
            seen = len(submitted.ids)
    twice = sorted({i for i in submitted.ids if submitted.ids.count(i) > 1})
    assert not twice, f"handed to the engine more than once: {twice}"
    return schedule_id, await executions(store, schedule_id), handed_at


async def test_next_business_day_through_2027_in_berlin(store: Store) -> None:
    schedule_id, rows, handed_at = await run_2027(store, "next_business_day")
    # one claim per logical fire (the cron's own weekdays), none SKIPPED
    assert [r.scheduled_for for r in rows] == [at_nine(d) for d in weekdays_2027()]
    assert {r.status for r in rows} == {"PENDING"}
    assert len(handed_at) == len(rows) == 261
    moved = {r.scheduled_for: r for r in rows if r.shifted_to is not None}
    assert sorted(moved) == [at_nine(d) for d in sorted(WEEKDAY_HOLIDAYS)]
    for day, (name, target) in WEEKDAY_HOLIDAYS.items():
        row = moved[at_nine(day)]
        assert row.shifted_to == at_nine(target)
        assert row.shift_reason == (
            f"holiday: {name}, de-berlin; next_business_day: runs "
            f"{target.isoformat()} 09:00 Europe/Berlin"
        )
        # claimed and run at the business day's 09:00, not at the holiday's
        assert handed_at[row.id] == at_nine(target)
    # where each fire actually ran: the hand-checked list of run days, in order
    assert all(handed_at[r.id] == r.scheduled_for for r in rows if r.shifted_to is None)
    ran = sorted(r.shifted_to or r.scheduled_for for r in rows)
    expected = sorted(
        at_nine(WEEKDAY_HOLIDAYS[d][1] if d in WEEKDAY_HOLIDAYS else d) for d in weekdays_2027()
    )
    assert ran == expected
    # Easter, written out: (logical day, the day it ran)
    around_easter = [
        (r.scheduled_for, r.shifted_to or r.scheduled_for)
        for r in rows
        if at_nine(date(2027, 3, 24)) <= r.scheduled_for <= at_nine(date(2027, 4, 1))
    ]
    assert around_easter == [
        (at_nine(date(2027, 3, d1)), at_nine(date(2027, m2, d2)))
        for d1, m2, d2 in [
            (24, 3, 24),
            (25, 3, 25),  # Maundy Thursday is a business day in Berlin
            (26, 3, 30),  # Good Friday -> Tuesday (Easter Monday is closed too)
            (29, 3, 30),  # Easter Monday -> Tuesday, beside Tuesday's own fire
            (30, 3, 30),
            (31, 3, 31),
        ]
    ] + [(at_nine(date(2027, 4, 1)), at_nine(date(2027, 4, 1)))]
    for day in WEEKEND_HOLIDAYS:
        assert at_nine(day) not in {r.scheduled_for for r in rows}
    async with store.engine.connect() as conn:
        last = (
            await conn.execute(
                sa.select(schema.schedules.c.last_run_at).where(
                    schema.schedules.c.id == schedule_id
                )
            )
        ).scalar_one()
    assert last == at_nine(date(2027, 12, 31))


def _sample(name: str, **labels: str) -> float:
    return metrics.REGISTRY.get_sample_value(name, labels) or 0.0


async def test_skip_through_2027_in_berlin(store: Store) -> None:
    calendar_skips = _sample("reporthubd_calendar_skipped_fires_total")
    missed = _sample("reporthubd_missed_fires_total", policy="run_once")
    _, rows, handed_at = await run_2027(store, "skip")
    # a closed day is no missed fire: the alert on missed fires stays quiet
    assert _sample("reporthubd_calendar_skipped_fires_total") == calendar_skips + 6
    assert _sample("reporthubd_missed_fires_total", policy="run_once") == missed
    assert [r.scheduled_for for r in rows] == [at_nine(d) for d in weekdays_2027()]
    skipped = {r.scheduled_for: r for r in rows if r.status == "SKIPPED"}
    assert sorted(skipped) == [at_nine(d) for d in sorted(WEEKDAY_HOLIDAYS)]
    for day, (name, _) in WEEKDAY_HOLIDAYS.items():
        row = skipped[at_nine(day)]
        assert row.error_message == f"holiday: {name}, de-berlin"
        assert row.shifted_to is None
    assert {r.status for r in rows if r.scheduled_for not in skipped} == {"PENDING"}
    assert len(handed_at) == 261 - len(WEEKDAY_HOLIDAYS)
    assert all(handed_at[r.id] == r.scheduled_for for r in rows if r.status == "PENDING")


async def test_an_unknown_calendar_disables_only_that_schedule(store: Store) -> None:
    config_id = await seed_config(store)
    bad = await add_schedule(store, config_id, "0 9 * * *", calendar_name="nowhere")
    good = await add_schedule(store, config_id, "0 9 * * *")
    clock = FakeClock(datetime(2027, 3, 1, tzinfo=UTC))
    async with running(store, clock, Submitted([])) as scheduler:
        assert good in scheduler.timetable.jobs
        assert "calendar_name: unknown calendar 'nowhere'" in scheduler.timetable.disabled[bad]


async def test_next_marks_skipped_and_shifted_fires(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path / 'store.db'}"
    store = Store(StoreSettings(url=url))
    await store.start()
    await migrate.upgrade(store)
    await add_calendar(store)
    config_id = await seed_config(store)
    ids = {
        policy: await add_schedule(
            store,
            config_id,
            "0 9 * * 1-5",
            timezone="Europe/Berlin",
            calendar_name="de-berlin",
            calendar_policy=policy,
        )
        for policy in ("next_business_day", "skip")
    }
    await store.stop()
    config, _ = write_config(tmp_path, url)
    after = ["--after", "2027-03-25T12:00Z", "-n", "3"]
    argv = ["next", str(ids["next_business_day"]), "-c", str(config), *after]
    assert await asyncio.to_thread(cli.main, argv) == 0
    assert capsys.readouterr().out.splitlines() == [
        "2027-03-26T08:00:00Z  2027-03-26T09:00:00+01:00 Europe/Berlin  SHIFTED -> "
        "2027-03-30T09:00:00+02:00 (holiday: Good Friday, de-berlin)",
        "2027-03-29T07:00:00Z  2027-03-29T09:00:00+02:00 Europe/Berlin  SHIFTED -> "
        "2027-03-30T09:00:00+02:00 (holiday: Easter Monday, de-berlin)",
        "2027-03-30T07:00:00Z  2027-03-30T09:00:00+02:00 Europe/Berlin",
    ]
    argv = ["next", str(ids["skip"]), "-c", str(config), *after, "--json"]
    assert await asyncio.to_thread(cli.main, argv) == 0
    assert json.loads(capsys.readouterr().out) == [
        {
            "utc": "2027-03-26T08:00:00Z",
            "local": "2027-03-26T09:00:00+01:00",
            "status": "skipped",
            "reason": "holiday: Good Friday, de-berlin",
        },
        {
            "utc": "2027-03-29T07:00:00Z",
            "local": "2027-03-29T09:00:00+02:00",
            "status": "skipped",
            "reason": "holiday: Easter Monday, de-berlin",
        },
        {"utc": "2027-03-30T07:00:00Z", "local": "2027-03-30T09:00:00+02:00", "status": "run"},
    ]


async def _easter_schedule(store: Store, policy: str = "next_business_day") -> int:
    await add_calendar(store)
    config_id = await seed_config(store)
    return await add_schedule(
        store,
        config_id,
        "0 9 * * 1-5",
        timezone="Europe/Berlin",
        calendar_name="de-berlin",
        calendar_policy=policy,
    )


async def test_two_nodes_claim_each_shifted_fire_once(store: Store) -> None:
    schedule_id = await _easter_schedule(store)
    clock = FakeClock(datetime(2027, 3, 24, 12, tzinfo=UTC))
    a, b = Submitted([]), Submitted([])
    async with (
        running(store, clock, a, node_id="node-a"),
        running(store, clock, b, node_id="node-b"),
    ):
        # the instants something is claimed at: no fire on Good Friday or Easter Monday
        for day in (date(2027, 3, 25), date(2027, 3, 30), date(2027, 3, 31), date(2027, 4, 1)):
            clock.set(at_nine(day) + timedelta(seconds=0.2))
            await clock.idle()
            await clock.idle()
    rows = await executions(store, schedule_id)
    # Thu 25, Fri 26 (moved), Mon 29 (moved), Tue 30, Wed 31, Thu 1 April: once each
    assert [r.scheduled_for for r in rows] == [
        at_nine(date(2027, 3, d)) for d in (25, 26, 29, 30, 31)
    ] + [at_nine(date(2027, 4, 1))]
    assert len(a.ids) + len(b.ids) == 6
    assert set(a.ids).isdisjoint(b.ids)
    assert [r.shifted_to for r in rows if r.shifted_to] == [at_nine(date(2027, 3, 30))] * 2


async def test_a_restart_over_a_shifted_fire_claims_it_on_its_business_day(store: Store) -> None:
    schedule_id = await _easter_schedule(store)
    clock = FakeClock(datetime(2027, 3, 25, 7, 30, tzinfo=UTC))  # 09:00 CET is 08:00 UTC
    submitted = Submitted([])
    async with running(store, clock, submitted):
        clock.set(at_nine(date(2027, 3, 25)) + timedelta(seconds=0.2))
        await clock.idle()
    # down over Good Friday and Easter Monday; back on Tuesday before 09:00
    clock = FakeClock(datetime(2027, 3, 30, 6, tzinfo=UTC))
    async with running(store, clock, submitted) as scheduler:
        assert await executions(store, schedule_id) != []  # Thursday's only, so far
        assert len(await executions(store, schedule_id)) == 1
        assert scheduler.timetable.peek() == int(at_nine(date(2027, 3, 30)).timestamp())
        clock.set(at_nine(date(2027, 3, 30)) + timedelta(seconds=0.2))
        await clock.idle()
    rows = await executions(store, schedule_id)
    assert [(r.scheduled_for, r.shifted_to, r.status) for r in rows] == [
        (at_nine(date(2027, 3, 25)), None, "PENDING"),
        (at_nine(date(2027, 3, 26)), at_nine(date(2027, 3, 30)), "PENDING"),
        (at_nine(date(2027, 3, 29)), at_nine(date(2027, 3, 30)), "PENDING"),
        (at_nine(date(2027, 3, 30)), None, "PENDING"),
    ]
    # (Thursday's run, still PENDING when the first process stopped, is handed on again by
    # the restarted process: its own queued runs are recovered, calendar or not)
    assert len(set(submitted.ids)) == 4
