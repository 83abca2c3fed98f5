"""Who is told about a report's runs, and when (issue 17, item 1): the notification rule model
and the incident policy. Pure: no store, no clock.

A rule names the events it sends (`failed`, `timeout`, `partial`, `missed`, `retries_exhausted`,
`recovered`, `late`), the targets (`email:ADDRESS`, `delivery:ID`, a report_deliveries row whose
method carries the notice, or `owners`, the report's owners), an optional reminder interval
and an optional "suspend after N consecutive failures". `parse_rule` refuses bad input naming
the key.

Notices go once per incident, not once per failed run. An incident opens at the first bad run
after a good one (or none) and closes at the next good run: `step` says, for one run's outcome,
which notices to record (event and sequence: 0 the first, 1, 2, ... reminders, under the
incident's key, which store/notices.py makes unique across nodes), whether the schedule is to
be suspended now, and the incident as it stands after the run.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any


class Event(StrEnum):
    FAILED = "failed"
    TIMEOUT = "timeout"
    PARTIAL = "partial"
    MISSED = "missed"
    RETRIES_EXHAUSTED = "retries_exhausted"
    RECOVERED = "recovered"
    LATE = "late"


BAD = frozenset({Event.FAILED, Event.TIMEOUT, Event.PARTIAL})
"""Run outcomes that open (or continue) an incident."""
RULE_KEYS = frozenset({"events", "notify", "remind_every_minutes", "suspend_after"})
OWNERS = "owners"
"""The target naming the report's owners (report_configs.notify.owners), one email each."""


class RuleError(ValueError):
    """A rule that cannot be used; the message names the key."""


@dataclass(frozen=True, kw_only=True)
class Rule:
    events: frozenset[Event]
    targets: tuple[str, ...]
    remind_every_seconds: int | None = None
    suspend_after: int | None = None


def _target(value: object, key: str) -> str:
    if not isinstance(value, str):
        raise RuleError(f"{key}: a target must be a string such as 'email:ann@example.com'")
    kind, _, rest = value.partition(":")
    if kind == "email" and "@" in rest.strip("@"):
        return f"email:{rest.strip()}"
    if kind == "delivery" and rest.isascii() and rest.isdigit() and int(rest) > 0:
        return f"delivery:{int(rest)}"
    if value == OWNERS:
        return OWNERS
    raise RuleError(
        f"{key}: unknown target {value!r} (expected 'email:ADDRESS', 'delivery:ID' or 'owners')"
    )


def _positive(raw: Mapping[str, Any], name: str, where: str) -> int | None:
    value = raw.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise RuleError(f"{where}.{name}: must be a whole number of at least 1, got {value!r}")
    return value


def parse_rule(raw: Mapping[str, Any], *, key: str = "notify") -> Rule:
    """A rule from its TOML/JSON form: {events = [...], notify = [...],
    remind_every_minutes = N, suspend_after = N}; RuleError naming the key otherwise."""
    unknown = sorted(set(raw) - RULE_KEYS)
    if unknown:
        raise RuleError(f"{key}.{unknown[0]}: unknown key (known: {', '.join(sorted(RULE_KEYS))})")
    events_raw = raw.get("events")
    if not isinstance(events_raw, list) or not events_raw:
        raise RuleError(f"{key}.events: a non-empty list of events is required")
    events: set[Event] = set()
    for i, name in enumerate(events_raw):
        try:
            events.add(Event(name))
        except ValueError:
            known = ", ".join(event.value for event in Event)
            raise RuleError(f"{key}.events[{i}]: unknown event {name!r} (known: {known})") from None
    targets_raw = raw.get("notify")
    if not isinstance(targets_raw, list) or not targets_raw:
        raise RuleError(f"{key}.notify: a non-empty list of targets is required")
    targets = tuple(_target(value, f"{key}.notify[{i}]") for i, value in enumerate(targets_raw))
    remind = _positive(raw, "remind_every_minutes", key)
    return Rule(
        events=frozenset(events),
        targets=targets,
        remind_every_seconds=remind * 60 if remind is not None else None,
        suspend_after=_positive(raw, "suspend_after", key),
    )


@dataclass(frozen=True, kw_only=True)
class Incident:
    """An open incident of one report (or schedule)."""

    key: str
    event: Event
    """The outcome that opened it."""
    opened_at: float
    failures: int
    """Consecutive bad runs so far."""
    sequence: int
    """The sequence of the latest notice recorded for it (0: the first)."""
    notified_at: float | None
    """When its latest notice was recorded; None when the rule sends none of its events."""


@dataclass(frozen=True, kw_only=True)
class Step:
    incident: Incident | None
    """The incident after the run (None: none open)."""
    notices: tuple[tuple[Event, int], ...] = ()
    """(event, sequence) to record under the incident's key, for every target of the rule."""
    incident_key: str | None = None
    """The key the notices go under (the closed incident's, for `recovered`)."""
    suspend: bool = False
    """The schedule is to be paused now (the Nth consecutive failure)."""


def step(
    rule: Rule, incident: Incident | None, *, outcome: Event | None, run_key: str, now: float
) -> Step:
    """What one run's outcome does (None or any event outside BAD: a good run). `run_key`
    names the run (its execution id): an incident it opens is keyed after it."""
    bad = outcome in BAD
    if not bad:
        if incident is None:
            return Step(incident=None)
        recovered = ((Event.RECOVERED, 0),) if Event.RECOVERED in rule.events else ()
        return Step(incident=None, notices=recovered, incident_key=incident.key)
    assert outcome is not None
    if incident is None:
        sends = outcome in rule.events
        opened = Incident(
            key=f"incident:{run_key}",
            event=outcome,
            opened_at=now,
            failures=1,
            sequence=0,
            notified_at=now if sends else None,
        )
        return Step(
            incident=opened,
            notices=((outcome, 0),) if sends else (),
            incident_key=opened.key,
            suspend=rule.suspend_after == 1,
        )
    going = replace(incident, failures=incident.failures + 1)
    suspend = rule.suspend_after is not None and going.failures == rule.suspend_after
    every = rule.remind_every_seconds
    due = (
        every is not None
        and incident.notified_at is not None
        and now - incident.notified_at >= every
    )
    if not due:
        return Step(incident=going, incident_key=going.key, suspend=suspend)
    reminded = replace(going, sequence=incident.sequence + 1, notified_at=now)
    return Step(
        incident=reminded,
        notices=((incident.event, reminded.sequence),),
        incident_key=reminded.key,
        suspend=suspend,
    )
