"""Cron maths: DST rules in three zones, checked against hand-computed instants; no sleeping.

Transitions used (2026): Europe/Berlin springs forward 29 Mar 01:00 UTC (02:00 CET -> 03:00 CEST)
and falls back 25 Oct 01:00 UTC (03:00 CEST -> 02:00 CET). America/New_York springs forward
8 Mar 07:00 UTC (02:00 EST -> 03:00 EDT) and falls back 1 Nov 06:00 UTC (02:00 EDT -> 01:00 EST).
Australia/Lord_Howe shifts by 30 minutes: it falls back 5 Apr at 4 Apr 15:00 UTC (02:00 +11 ->
01:30 +10:30) and springs forward 4 Oct at 3 Oct 15:30 UTC (02:00 +10:30 -> 02:30 +11).
"""

from __future__ import annotations

import itertools
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from reporthubd.cron import (
    CronError,
    FireTimes,
    next_fires,
    parse_cron,
    previous_fire,
)


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


CASES = [
    # --- Europe/Berlin ---------------------------------------------------------------------
    # fixed hour, spring gap: 02:30 does not exist on 29 Mar -> once, at 03:00 CEST (01:00 UTC)
    ("30 2 * * *", "Europe/Berlin", "2026-03-27 12:00",
     ["2026-03-28 01:30", "2026-03-29 01:00", "2026-03-30 00:30"]),
    # fixed hour, autumn overlap: 02:30 happens twice on 25 Oct -> once, the first (CEST)
    ("30 2 * * *", "Europe/Berlin", "2026-10-23 12:00",
     ["2026-10-24 00:30", "2026-10-25 00:30", "2026-10-26 01:30"]),
    # real time, spring: local 02:00 does not exist, so it is not fired
    ("0 * * * *", "Europe/Berlin", "2026-03-28 22:30",
     ["2026-03-28 23:00", "2026-03-29 00:00", "2026-03-29 01:00", "2026-03-29 02:00"]),
    # real time, autumn: 02:00 CEST (00:00 UTC) and 02:00 CET (01:00 UTC) are both fired
    ("0 * * * *", "Europe/Berlin", "2026-10-24 22:30",
     ["2026-10-24 23:00", "2026-10-25 00:00", "2026-10-25 01:00", "2026-10-25 02:00"]),
    ("*/15 * * * *", "Europe/Berlin", "2026-03-29 00:30",
     ["2026-03-29 00:45", "2026-03-29 01:00", "2026-03-29 01:15", "2026-03-29 01:30"]),
    ("*/15 * * * *", "Europe/Berlin", "2026-10-24 23:50",
     ["2026-10-25 00:00", "2026-10-25 00:15", "2026-10-25 00:30", "2026-10-25 00:45",
      "2026-10-25 01:00", "2026-10-25 01:15", "2026-10-25 01:30", "2026-10-25 01:45"]),
    # --- America/New_York ------------------------------------------------------------------
    ("30 2 * * *", "America/New_York", "2026-03-07 00:00",
     ["2026-03-07 07:30", "2026-03-08 07:00", "2026-03-09 06:30"]),
    # 02:30 is not repeated in New York (01:00-02:00 is): plain daily fires around fall back
    ("30 2 * * *", "America/New_York", "2026-10-31 00:00",
     ["2026-10-31 06:30", "2026-11-01 07:30", "2026-11-02 07:30"]),
    # the repeated hour for a fixed schedule: once, 01:30 EDT
    ("30 1 * * *", "America/New_York", "2026-10-31 00:00",
     ["2026-10-31 05:30", "2026-11-01 05:30", "2026-11-02 06:30"]),
    ("0 * * * *", "America/New_York", "2026-03-08 05:30",
     ["2026-03-08 06:00", "2026-03-08 07:00", "2026-03-08 08:00"]),
    ("0 * * * *", "America/New_York", "2026-11-01 03:30",
     ["2026-11-01 04:00", "2026-11-01 05:00", "2026-11-01 06:00", "2026-11-01 07:00"]),
    ("*/15 * * * *", "America/New_York", "2026-03-08 06:30",
     ["2026-03-08 06:45", "2026-03-08 07:00", "2026-03-08 07:15"]),
    ("*/15 * * * *", "America/New_York", "2026-11-01 05:40",
     ["2026-11-01 05:45", "2026-11-01 06:00", "2026-11-01 06:15"]),
    # --- Australia/Lord_Howe (30-minute shift) --------------------------------------------
    # 02:30 exists on both change days there: the gap is 02:00-02:30, the overlap 01:30-02:00
    ("30 2 * * *", "Australia/Lord_Howe", "2026-10-02 12:00",
     ["2026-10-02 16:00", "2026-10-03 15:30", "2026-10-04 15:30"]),
    ("30 2 * * *", "Australia/Lord_Howe", "2026-04-03 12:00",
     ["2026-04-03 15:30", "2026-04-04 16:00", "2026-04-05 16:00"]),
    # fixed 02:00 falls in the gap on 4 Oct -> once, at 02:30 +11 (the transition)
    ("0 2 * * *", "Australia/Lord_Howe", "2026-10-02 12:00",
     ["2026-10-02 15:30", "2026-10-03 15:30", "2026-10-04 15:00"]),
    # fixed 01:45 repeats on 5 Apr -> once, the first (+11)
    ("45 1 * * *", "Australia/Lord_Howe", "2026-04-03 12:00",
     ["2026-04-03 14:45", "2026-04-04 14:45", "2026-04-05 15:15"]),
    # real time, spring: 02:00 does not exist; 01:00 +10:30 then 03:00 +11, 90 minutes apart
    ("0 * * * *", "Australia/Lord_Howe", "2026-10-03 13:00",
     ["2026-10-03 13:30", "2026-10-03 14:30", "2026-10-03 16:00", "2026-10-03 17:00"]),
    # real time, autumn: 02:00 happens once (02:00 +11 is never shown), 90 minutes after 01:00
    ("0 * * * *", "Australia/Lord_Howe", "2026-04-04 12:30",
     ["2026-04-04 13:00", "2026-04-04 14:00", "2026-04-04 15:30", "2026-04-04 16:30"]),
    ("*/15 * * * *", "Australia/Lord_Howe", "2026-10-03 15:00",
     ["2026-10-03 15:15", "2026-10-03 15:30", "2026-10-03 15:45"]),
    # 01:30 and 01:45 fire twice (+11, then +10:30)
    ("*/15 * * * *", "Australia/Lord_Howe", "2026-04-04 13:50",
     ["2026-04-04 14:00", "2026-04-04 14:15", "2026-04-04 14:30", "2026-04-04 14:45",
      "2026-04-04 15:00", "2026-04-04 15:15", "2026-04-04 15:30", "2026-04-04 15:45"]),
]  # fmt: skip


@pytest.mark.parametrize(("expression", "zone", "after", "expected"), CASES)
def test_fires_around_dst_match_hand_computed_instants(
    expression: str, zone: str, after: str, expected: list[str]
) -> None:
    spec = parse_cron(expression)
    fires = next_fires(spec, ZoneInfo(zone), utc(after), len(expected))
    assert fires == [utc(text) for text in expected]
    # previous_fire (window_start) follows the same rules, backwards
    for earlier, later in itertools.pairwise(fires):
        assert previous_fire(spec, ZoneInfo(zone), later) == earlier


def test_several_times_in_one_gap_fire_once_together() -> None:
    spec = parse_cron("0,30 2 * * *")
    fires = next_fires(spec, ZoneInfo("Europe/Berlin"), utc("2026-03-28 12:00"), 3)
    assert fires == [utc("2026-03-29 01:00"), utc("2026-03-30 00:00"), utc("2026-03-30 00:30")]


def test_seconds_field_macros_and_special_days() -> None:
    berlin = ZoneInfo("Europe/Berlin")
    after = utc("2026-01-31 10:00:00")
    assert next_fires(parse_cron("*/20 * * * * *"), ZoneInfo("UTC"), after, 3) == [
        utc("2026-01-31 10:00:20"),
        utc("2026-01-31 10:00:40"),
        utc("2026-01-31 10:01:00"),
    ]
    assert next_fires(parse_cron("@daily"), berlin, after, 1) == [utc("2026-01-31 23:00")]
    assert next_fires(parse_cron("@hourly"), berlin, after, 1) == [utc("2026-01-31 11:00")]
    assert next_fires(parse_cron("@monthly"), berlin, after, 1) == [utc("2026-01-31 23:00")]
    # last day of January, second Monday of February, nearest weekday to the 15th (a Sunday)
    assert next_fires(parse_cron("0 12 L * *"), berlin, after, 1) == [utc("2026-01-31 11:00")]
    assert next_fires(parse_cron("0 12 * * 1#2"), berlin, after, 1) == [utc("2026-02-09 11:00")]
    assert next_fires(parse_cron("0 12 15W * *"), berlin, after, 1) == [utc("2026-02-16 11:00")]


def test_start_and_end_bound_the_fires() -> None:
    spec = parse_cron("0 * * * *")
    times = FireTimes(
        spec, ZoneInfo("UTC"), start_at=utc("2026-05-01 10:30"), end_at=utc("2026-05-01 13:00")
    )
    assert list(times.iter_after(utc("2026-05-01 00:00"))) == [
        utc("2026-05-01 11:00"),
        utc("2026-05-01 12:00"),
        utc("2026-05-01 13:00"),
    ]
    assert times.next_after(utc("2026-05-01 13:00")) is None


def test_an_expression_that_never_fires_has_no_next_fire() -> None:
    assert (
        FireTimes(parse_cron("0 0 30 2 *"), ZoneInfo("UTC")).next_after(utc("2026-01-01")) is None
    )


@pytest.mark.parametrize(
    "expression", ["", "61 * * * *", "* * * *", "@fortnightly", "* * * * * * * *", "a b c d e"]
)
def test_invalid_expressions_are_refused_with_a_reason(expression: str) -> None:
    with pytest.raises(CronError):
        parse_cron(expression)


def test_naive_instants_are_refused() -> None:
    times = FireTimes(parse_cron("* * * * *"), ZoneInfo("UTC"))
    with pytest.raises(ValueError, match="aware"):
        times.next_after(datetime(2026, 1, 1))
