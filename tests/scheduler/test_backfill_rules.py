"""The backfill rules without I/O: the range, which fires there are (DST, calendars), and which of
them run by `reprocess` (backfill_rules.decide)."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from reporthubd import calendars, domain
from reporthubd.backfill_rules import Attempt, BackfillError, FireHistory, Reprocess, decide
from reporthubd.scheduler import backfill

BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")
S = domain.ExecutionStatus


def _schedule(
    cron: str, zone: ZoneInfo, calendar: calendars.Calendar | None = None
) -> domain.Schedule:
    return domain.Schedule(
        id=7,
        config_id=3,
        cron_expression=cron,
        timezone=zone,
        timezone_name=zone.key,
        parameters={},
        misfire_policy=domain.MisfirePolicy.RUN_ONCE,
        misfire_grace_seconds=None,
        start_at=None,
        end_at=None,
        is_active=True,
        last_run_at=None,
        next_run_at=None,
        updated_at=None,
        calendar_name=calendar.name if calendar else None,
        calendar_policy=calendars.CalendarPolicy.SKIP if calendar else None,
        calendar=calendar,
    )


def _range(schedule: domain.Schedule, start: str, end: str) -> tuple[datetime, datetime]:
    zone = schedule.timezone
    return (
        backfill.parse_bound(start, "from", zone, end=False),
        backfill.parse_bound(end, "to", zone, end=True),
    )


def test_bounds_are_wall_times_in_the_zone_and_a_date_to_takes_the_whole_day() -> None:
    assert backfill.parse_bound("2026-03-01", "from", BERLIN, end=False) == datetime(
        2026, 2, 28, 23, 0, tzinfo=UTC
    )
    # the end of 31 March: 1 April 00:00 CEST
    assert backfill.parse_bound("2026-03-31", "to", BERLIN, end=True) == datetime(
        2026, 3, 31, 22, 0, tzinfo=UTC
    )
    assert backfill.parse_bound("2026-03-01T06:00", "to", BERLIN, end=True) == datetime(
        2026, 3, 1, 5, 0, 1, tzinfo=UTC
    )
    assert backfill.parse_bound("2026-03-01T06:00Z", "from", BERLIN, end=False) == datetime(
        2026, 3, 1, 6, 0, tzinfo=UTC
    )
    with pytest.raises(BackfillError, match=r"^from: '1\. März' is not an ISO date"):
        backfill.parse_bound("1. März", "from", BERLIN, end=False)
    with pytest.raises(BackfillError, match=r"^to: required"):
        backfill.parse_bound(None, "to", BERLIN, end=True)


def test_from_after_to_and_a_range_too_wide_name_the_key() -> None:
    late = datetime(2026, 4, 1, tzinfo=UTC)
    early = datetime(2026, 3, 1, tzinfo=UTC)
    with pytest.raises(BackfillError, match=r"^from: 2026-04-01T00:00:00\+00:00 is after to"):
        backfill.check_range(late, early, max_days=366)
    with pytest.raises(BackfillError, match=r"^to: the range spans 31\.0 days, more than "):
        backfill.check_range(early, late, max_days=30)
    with pytest.raises(BackfillError, match=r"^reprocess: must be one of none, failed, all"):
        backfill.parse_reprocess("some")
    with pytest.raises(BackfillError, match=r"^concurrency: must be between 1 and "):
        backfill.parse_concurrency(9, 4)


def test_october_in_berlin_fires_once_on_the_day_the_clocks_go_back() -> None:
    schedule = _schedule("30 2 * * *", BERLIN)
    planned = backfill.plan(
        schedule, *_range(schedule, "2026-10-24", "2026-10-26"), Reprocess.NONE, {}
    )
    assert [f.local for f in planned.fires] == [
        "2026-10-24T02:30:00+02:00",
        "2026-10-25T02:30:00+02:00",  # the first 02:30, once
        "2026-10-26T02:30:00+01:00",
    ]
    assert all(f.run and f.attempt == 0 for f in planned.fires)


def test_a_calendar_skip_is_kept_with_its_holiday() -> None:
    us_ny = calendars.build(name="us-ny", country="US", subdivision="NY")
    schedule = _schedule("0 6 * * *", NEW_YORK, us_ny)
    planned = backfill.plan(
        schedule, *_range(schedule, "2026-11-25", "2026-11-27"), Reprocess.ALL, {}
    )
    kept = [(f.local, f.reason) for f in planned.fires if not f.run]
    assert kept == [("2026-11-26T06:00:00-05:00", "holiday: Thanksgiving Day, us-ny")]
    assert len(planned.to_run) == 2


def _history(*attempts: tuple[S, str | None]) -> FireHistory:
    return FireHistory(
        tuple(Attempt(n, f"id-{n}", status, why) for n, (status, why) in enumerate(attempts))
    )


def test_which_fires_run_by_reprocess() -> None:
    never = _history((S.SKIPPED, "missed: daemon down from ... to ..."))
    holiday = _history((S.SKIPPED, "holiday: Good Friday, de-berlin"))
    failed = _history((S.FAILED, "boom"))
    done = _history((S.FAILED, "boom"), (S.COMPLETED, None))
    running = _history((S.FAILED, "boom"), (S.RUNNING, None))
    table = {
        Reprocess.NONE: (0, 1, None, None, None, None),
        Reprocess.FAILED: (0, 1, None, 1, None, None),
        Reprocess.ALL: (0, 1, 1, 1, 2, None),
    }
    for reprocess, expected in table.items():
        got = tuple(
            decide(history, reprocess).attempt
            for history in (FireHistory(), never, holiday, failed, done, running)
        )
        assert got == expected, reprocess
    followed = decide(running, Reprocess.ALL)
    assert followed.follow is not None and followed.follow.execution_id == "id-1"
    assert decide(done, Reprocess.NONE).reason == "has a run: attempt 1 COMPLETED"
