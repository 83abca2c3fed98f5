"""The notification rule model and the incident policy (pure): bad rules are refused naming the
key; a notice goes once per incident, reminders at their interval, `recovered` once at the first
good run, and "suspend after N" asks for the pause exactly at the Nth consecutive failure."""

from __future__ import annotations

import pytest

from reporthubd.notify_rules import Event, Incident, Rule, RuleError, parse_rule, step


def test_a_rule_is_read_with_its_targets_reminder_and_suspension() -> None:
    rule = parse_rule(
        {
            "events": ["failed", "timeout", "recovered"],
            "notify": ["email:ann@example.com", "delivery:7"],
            "remind_every_minutes": 60,
            "suspend_after": 3,
        }
    )
    assert rule == Rule(
        events=frozenset({Event.FAILED, Event.TIMEOUT, Event.RECOVERED}),
        targets=("email:ann@example.com", "delivery:7"),
        remind_every_seconds=3600,
        suspend_after=3,
    )


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"events": ["faild"], "notify": ["delivery:1"]}, r"notify\.events\[0\]: unknown event"),
        ({"events": [], "notify": ["delivery:1"]}, r"notify\.events: a non-empty list"),
        ({"events": ["failed"], "notify": ["sms:123"]}, r"notify\.notify\[0\]: unknown target"),
        ({"events": ["failed"], "notify": ["email:nobody"]}, r"notify\.notify\[0\]"),
        ({"events": ["failed"]}, r"notify\.notify: a non-empty list"),
        (
            {"events": ["failed"], "notify": ["delivery:1"], "suspend_after": 0},
            r"notify\.suspend_after: must be a whole number of at least 1",
        ),
        (
            {"events": ["failed"], "notify": ["delivery:1"], "remind_every": 5},
            r"notify\.remind_every: unknown key",
        ),
    ],
)
def test_bad_rules_are_refused_naming_the_key(raw: dict[str, object], message: str) -> None:
    with pytest.raises(RuleError, match=message):
        parse_rule(raw)


RULE = parse_rule(
    {
        "events": ["failed", "recovered"],
        "notify": ["email:ann@example.com"],
        "remind_every_minutes": 10,
        "suspend_after": 3,
    }
)


def test_one_notice_per_incident_a_reminder_the_suspension_and_one_recovered() -> None:
    first = step(RULE, None, outcome=Event.FAILED, run_key="run-1", now=0)
    assert first.notices == ((Event.FAILED, 0),) and first.incident_key == "incident:run-1"
    assert not first.suspend
    second = step(RULE, first.incident, outcome=Event.FAILED, run_key="run-2", now=60)
    assert second.notices == () and not second.suspend  # no second notice
    third = step(RULE, second.incident, outcome=Event.FAILED, run_key="run-3", now=120)
    assert third.notices == () and third.suspend  # the third failure pauses the schedule
    fourth = step(RULE, third.incident, outcome=Event.FAILED, run_key="run-4", now=600)
    assert fourth.notices == ((Event.FAILED, 1),) and not fourth.suspend  # the reminder
    assert fourth.incident is not None and fourth.incident.key == "incident:run-1"
    good = step(RULE, fourth.incident, outcome=None, run_key="run-5", now=660)
    assert good.incident is None and good.notices == ((Event.RECOVERED, 0),)
    assert good.incident_key == "incident:run-1"
    again = step(RULE, None, outcome=None, run_key="run-6", now=720)
    assert again.notices == () and again.incident is None


def test_an_incident_the_rule_does_not_send_is_tracked_but_silent() -> None:
    quiet = Rule(events=frozenset({Event.TIMEOUT}), targets=("delivery:1",))
    opened = step(quiet, None, outcome=Event.FAILED, run_key="run-1", now=0)
    assert opened.notices == () and opened.incident == Incident(
        key="incident:run-1",
        event=Event.FAILED,
        opened_at=0,
        failures=1,
        sequence=0,
        notified_at=None,
    )
    closed = step(quiet, opened.incident, outcome=None, run_key="run-2", now=5)
    assert closed.notices == () and closed.incident is None
