"""The pure parts of notices: a report's notify object, targets, deadlines (in the schedule's
zone, across a DST change), the key of an outage's missed fires, and what a notice says."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from reporthubd.cron import FireTimes, parse_cron
from reporthubd.notify import deadlines, messages, report_rules
from reporthubd.notify.notifier import missed_key
from reporthubd.notify.settings import NotificationSettings
from reporthubd.notify_rules import Event, RuleError, parse_rule

BERLIN = ZoneInfo("Europe/Berlin")


def test_notify_object_and_owner_targets() -> None:
    parsed = report_rules.parse_notify(
        {
            "owners": ["ann@example.com", "bob@example.com"],
            "rules": [{"events": ["failed"], "notify": ["owners", "email:ann@example.com"]}],
        }
    )
    assert parsed.owners == ("ann@example.com", "bob@example.com")
    (rule,) = parsed.rules
    assert report_rules.targets(rule, parsed.owners) == [
        "email:ann@example.com",
        "email:bob@example.com",
    ]
    default = parse_rule({"events": ["missed"], "notify": ["owners"]})
    assert report_rules.effective_rules(report_rules.ReportNotify(), default) == (default,)
    assert report_rules.effective_rules(parsed, default) == parsed.rules


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"owner": []}, "notify.owner: unknown key"),
        ({"owners": ["nobody"]}, "notify.owners[0]: 'nobody' is not an email address"),
        ({"rules": [{"events": ["failed"]}]}, "notify.rules[0].notify: a non-empty list"),
        (
            {"rules": [{"events": ["exploded"], "notify": ["owners"]}]},
            "notify.rules[0].events[0]: unknown event 'exploded'",
        ),
        (
            {"rules": [{"events": ["failed"], "notify": ["slack:#ops"]}]},
            "notify.rules[0].notify[0]: unknown target 'slack:#ops'",
        ),
        ({"rules": "failed"}, "notify.rules: must be a list"),
    ],
)
def test_bad_notify_objects_name_the_key(raw: dict[str, object], message: str) -> None:
    with pytest.raises(RuleError) as caught:
        report_rules.parse_notify(raw)
    assert message in str(caught.value)


def test_default_rule_setting_is_checked_naming_the_key() -> None:
    assert NotificationSettings().default is not None
    assert NotificationSettings(default_rule={}).default is None
    with pytest.raises(ValueError, match=r"default_rule\.events\[1\]: unknown event 'late_ish'"):
        NotificationSettings(default_rule={"events": ["failed", "late_ish"], "notify": ["owners"]})


def test_deadlines_in_the_schedule_zone_across_dst() -> None:
    at = report_rules.parse_deadline("07:30")
    # 06:00 local on the day clocks go forward (2027-03-28) and back (2027-10-31)
    spring = datetime(2027, 3, 28, 6, 0, tzinfo=BERLIN).astimezone(UTC)
    autumn = datetime(2027, 10, 31, 6, 0, tzinfo=BERLIN).astimezone(UTC)
    assert at.due(spring, BERLIN) == datetime(2027, 3, 28, 5, 30, tzinfo=UTC)
    assert at.due(autumn, BERLIN) == datetime(2027, 10, 31, 6, 30, tzinfo=UTC)
    # a fire after 07:30 is due by 07:30 the next day
    late_fire = datetime(2027, 3, 29, 8, 0, tzinfo=BERLIN)
    assert at.due(late_fire, BERLIN) == datetime(2027, 3, 30, 7, 30, tzinfo=BERLIN)
    zoned = report_rules.parse_deadline("07:30 America/New_York")
    assert zoned.due(spring, BERLIN) == datetime(
        2027, 3, 28, 7, 30, tzinfo=ZoneInfo("America/New_York")
    )
    relative = report_rules.parse_deadline("+20s")
    assert relative.due(spring, BERLIN) == spring + timedelta(seconds=20)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("07:30 Mars/Olympus", "schedules[0].deadline: unknown time zone 'Mars/Olympus'"),
        ("7.30", "schedules[0].deadline: '7.30' is neither a time of day"),
        ("+0m", "schedules[0].deadline: '+0m' must be more than 0"),
        ("+3d", "schedules[0].deadline: '+3d' is neither"),
        ("", "schedules[0].deadline: must be a time of day"),
    ],
)
def test_bad_deadlines_name_the_key(text: str, message: str) -> None:
    with pytest.raises(RuleError) as caught:
        report_rules.parse_deadline(text, key="schedules[0].deadline")
    assert message in str(caught.value)


def test_deadlines_passed_between_two_checks() -> None:
    fires = FireTimes(parse_cron("0 6 * * *"), BERLIN)
    deadline = report_rules.parse_deadline("07:30")
    since = datetime(2027, 3, 27, 7, 0, tzinfo=BERLIN)
    now = datetime(2027, 3, 29, 7, 29, tzinfo=BERLIN)
    passed = deadlines.passed(fires, deadline, BERLIN, since, now)
    assert [fire.astimezone(BERLIN).date().isoformat() for fire, _ in passed] == [
        "2027-03-27",
        "2027-03-28",
    ]
    coming = deadlines.next_due(fires, deadline, BERLIN, now)
    assert coming == datetime(2027, 3, 29, 7, 30, tzinfo=BERLIN)


def test_one_key_per_outage_for_its_missed_fires() -> None:
    window = "missed: daemon down from 2026-12-03T10:00:00+00:00 to 2026-12-03T10:03:00+00:00"
    assert missed_key(4, window) == missed_key(4, f"{window} (beyond the misfire grace of 5 s)")
    assert missed_key(4, window) != missed_key(5, window)
    other = window.replace("10:03:00", "10:04:00")
    assert missed_key(4, window) != missed_key(4, other)


def test_a_notice_says_what_which_why_and_where_to_look() -> None:
    text = messages.compose(
        messages.Facts(
            event=Event.FAILED.value,
            report_name="sales-daily",
            config_id=7,
            schedule_id=3,
            execution_id="run-1",
            scheduled_for=datetime(2026, 12, 3, 6, 0, tzinfo=UTC),
            why="the query failed:\n  no such table: sales",
            link=messages.run_link("http://127.0.0.1:8000/", "run-1"),
        )
    )
    subject, body = messages.split(text)
    assert subject == (
        "[reporthubd] FAILED: sales-daily (schedule 3, fire 2026-12-03T06:00:00+00:00)"
    )
    assert "What happened: The run failed." in body
    assert "Why: the query failed: no such table: sales" in body
    assert "Run: run-1" in body
    assert "Look: http://127.0.0.1:8000/console/runs/run-1" in body
    assert "API: http://127.0.0.1:8000/api/execution/run-1" in body
