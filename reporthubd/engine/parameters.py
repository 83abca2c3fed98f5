"""Resolving a run's parameters: defaults ← schedule overrides ← trigger overrides, then templates.

`report_configs.parameters` holds the defaults, `report_schedules.parameters` overrides them and
the trigger's body (kept in the PENDING execution row until the engine writes the resolved values
back) overrides both. Each string value that contains `{{` or `{%` is a template (see
`reporthubd.templates`), evaluated against the run's logical time; lists are resolved element-wise.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, time
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from reporthubd import calendars, cron, domain, templates


@dataclass(frozen=True, kw_only=True)
class TimeBase:
    logical_time: datetime
    zone: ZoneInfo
    window_start: datetime | None
    window_end: datetime | None


def time_base(
    *,
    scheduled_for: datetime | None,
    created_at: datetime | None,
    schedule: domain.Schedule | None,
    default_zone: ZoneInfo,
    now: datetime,
) -> TimeBase:
    """The logical time of a run and its window, in the schedule's zone."""
    logical = scheduled_for or created_at or now
    zone = schedule.timezone if schedule is not None else default_zone
    window_start = window_end = None
    if schedule is not None and scheduled_for is not None:
        window_end = scheduled_for
        try:
            window_start = cron.previous_fire(
                cron.parse_cron(schedule.cron_expression), zone, scheduled_for
            )
        except cron.CronError:
            window_start = None
    return TimeBase(
        logical_time=logical, zone=zone, window_start=window_start, window_end=window_end
    )


WEEKDAYS = calendars.build(name="weekdays")
"""The business days of a run whose schedule names no calendar: Monday to Friday."""


def business_day_variables(
    schedule: domain.Schedule | None, logical_time: datetime, zone: ZoneInfo
) -> dict[str, Any]:
    """Template helpers that know the schedule's business calendar (Monday to Friday without
    one), over local days of the run's logical time:

    - `prev_business_day(at=today, n=1)`: the n-th business day before `at` (a date);
    - `next_business_day(at=today, n=1)`: the n-th business day after `at`;
    - `business_days_between(start, end)`: business days in [start, end), negative when end
      is before start;
    - `is_business_day(at=today)`; `business_calendar`: the calendar's name."""
    calendar = schedule.calendar if schedule is not None and schedule.calendar else WEEKDAYS
    today = logical_time.astimezone(zone).date()

    def day_of(value: Any) -> date:
        if isinstance(value, datetime):
            return value.astimezone(zone).date() if value.tzinfo else value.date()
        if isinstance(value, date):
            return value
        if isinstance(value, str):
            return date.fromisoformat(value)
        raise TypeError("a business-day helper needs a date, datetime or ISO text")

    def step(at: Any, n: int, forward: bool) -> date:
        if int(n) < 1:
            raise ValueError("n must be 1 or more")
        day = day_of(at if at is not None else today)
        for _ in range(int(n)):
            day = (
                calendar.next_business_day(day) if forward else calendar.previous_business_day(day)
            )
        return day

    return {
        "prev_business_day": lambda at=None, n=1: step(at, n, False),
        "next_business_day": lambda at=None, n=1: step(at, n, True),
        "business_days_between": lambda start, end: calendar.business_days_between(
            day_of(start), day_of(end)
        ),
        "is_business_day": lambda at=None: calendar.is_business_day(
            day_of(at if at is not None else today)
        ),
        "business_calendar": calendar.name,
    }


def merge(*layers: Mapping[str, Any] | None) -> dict[str, Any]:
    merged: dict[str, Any] = {}
    for layer in layers:
        if layer:
            merged.update({str(k): v for k, v in layer.items()})
    return merged


def resolve(values: Mapping[str, Any], variables: Mapping[str, Any]) -> dict[str, Any]:
    """Evaluate every template value; raise templates.TemplateError naming the parameter."""
    return {name: _resolve_one(value, variables, name) for name, value in values.items()}


def _resolve_one(value: Any, variables: Mapping[str, Any], name: str) -> Any:
    if templates.is_template(value):
        return templates.evaluate(value, variables, what=f"parameter {name!r}")
    if isinstance(value, list):
        return [_resolve_one(item, variables, name) for item in value]
    return value


def to_json(values: Mapping[str, Any]) -> dict[str, Any]:
    """The resolved values as stored in `report_executions.parameters` (JSON-safe)."""
    return {name: _json_value(value) for name, value in values.items()}


def _json_value(value: Any) -> Any:
    if isinstance(value, date | time):
        return value.isoformat()
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, list | tuple):
        return [_json_value(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _json_value(v) for k, v in value.items()}
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)
