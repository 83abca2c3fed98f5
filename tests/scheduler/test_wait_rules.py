"""The wait rules without I/O (reporthubd/waits.py): a schedule row's rule and its errors naming
the key, the logical period across DST, deadlines, backoff and the probe's truth."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from reporthubd import waits

BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")


def test_a_row_without_a_rule_waits_for_nothing() -> None:
    assert waits.parse({}) is None
    rule = waits.parse({"depends_on": ["load", 7], "wait_policy": "run_anyway"})
    assert rule == waits.WaitRule(
        depends_on=("load", 7), deadline="+1h", policy=waits.WaitPolicy.RUN_ANYWAY
    )


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ({"depends_on": "load"}, "depends_on: a list of report names or ids"),
        ({"depends_on": [True]}, "depends_on: True is not a report name or id"),
        ({"depends_on": ["a"], "wait_deadline": "7:30"}, "wait_deadline: '7:30' is neither"),
        ({"depends_on": ["a"], "wait_deadline": "+2d"}, "wait_deadline: '+2d' is neither"),
        ({"depends_on": ["a"], "wait_policy": "wait"}, "wait_policy: must be skip or run_anyway"),
        ({"wait_deadline": "+2h"}, "wait_deadline: set without depends_on or readiness_query"),
        ({"readiness_query": "  "}, "readiness_query: must be SQL text"),
    ],
)
def test_bad_rules_name_the_key(row: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match="^" + message.replace("+", r"\+").replace("(", r"\(")):
        waits.parse(row)


def test_the_period_is_the_local_day_of_the_fire_across_dst() -> None:
    spring = datetime(2026, 3, 29, 1, 0, tzinfo=UTC)  # 03:00 CEST, the short day
    assert waits.period(spring, BERLIN) == (
        datetime(2026, 3, 28, 23, 0, tzinfo=UTC),
        datetime(2026, 3, 29, 22, 0, tzinfo=UTC),
    )
    autumn = datetime(2026, 11, 1, 14, 0, tzinfo=UTC)  # 09:00 EST, the long day
    start, end = waits.period(autumn, NEW_YORK)
    assert (start, end - start) == (datetime(2026, 11, 1, 4, 0, tzinfo=UTC), timedelta(hours=25))


def test_deadlines_and_backoff() -> None:
    fire = datetime(2026, 7, 1, 12, 30, tzinfo=UTC)  # 08:30 in New York
    clock = waits.WaitRule(depends_on=("a",), deadline="10:00")
    assert waits.deadline_at(clock, fire, NEW_YORK) == datetime(2026, 7, 1, 14, 0, tzinfo=UTC)
    later = waits.WaitRule(depends_on=("a",), deadline="+90s")
    deadline = waits.deadline_at(later, fire, NEW_YORK)
    assert deadline == fire + timedelta(seconds=90)
    pauses = [
        (waits.next_check(n, fire, fire + timedelta(hours=1), 30) - fire).total_seconds()
        for n in range(7)
    ]
    assert pauses == [1, 2, 4, 8, 16, 30, 30]
    # never past the deadline: the last check is at it
    assert waits.next_check(6, fire, fire + timedelta(seconds=5), 30) == fire + timedelta(seconds=5)


def test_the_probe_answer() -> None:
    assert [waits.is_true(v) for v in (1, True, "yes", 0.5)] == [True] * 4
    assert [waits.is_true(v) for v in (0, False, None, "", "0", "false")] == [False] * 6
