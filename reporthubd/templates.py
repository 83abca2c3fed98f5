"""Templates over a run's logical time: parameter values, file names and delivery settings.

This module sits below every layer (it imports nothing from the package), so the engine's
parameters and file names and the deliverers' Jinja settings share one sandbox.

A template is Jinja text evaluated in a sandbox (`ImmutableSandboxedEnvironment`: no attribute
access to internals, no mutation, no imports), never `eval`. Undefined names are errors.

The time base is the run's logical time: `scheduled_for` (the fire's time) for a scheduled run,
the execution's creation time otherwise, seen in the schedule's time zone (or the configured
default zone). A re-run for the same `scheduled_for` therefore gets the same values.

Variables:

- `now` (aware datetime: the logical time), `scheduled_for` (the same), `today`, `yesterday`,
  `tomorrow` (dates), `timezone` (zone name)
- `window_start`, `window_end`: the schedule's previous fire and this fire (for "everything since
  the last run"); only defined for runs of a schedule
- `start_of_day(offset=0)`, `end_of_day(offset=0)`, and the same for `week` (ISO weeks, from
  Monday), `month`, `quarter` and `year`: aware datetimes (start: 00:00:00; end: the last
  microsecond), `offset` in units (`start_of_month(-1)` is the first instant of last month);
  `start_of(unit, offset=0, at=now)` / `end_of(...)` take the unit as text
- arithmetic: `days(n)`, `weeks(n)`, `hours(n)`, `minutes(n)`, `seconds(n)` (timedeltas),
  `add_months(value, n)`, `date(y, m, d)`, `parse_date("2026-01-31")`, `parse_datetime(...)`
- filters: `fmt("%Y%m%d")` (strftime), `date` (datetime → date), `iso`, `utc` (to UTC),
  `in_zone("Europe/Berlin")`

A value that is exactly one `{{ expression }}` keeps the expression's type (a date stays a date,
an int an int), so it binds as a typed parameter; anything else renders to text.

Examples: `{{ yesterday }}`, `{{ start_of_month(-1) | date }}`, `{{ today - days(7) }}`,
`{{ now | fmt('%Y-%m') }}`, `sales_{{ window_start | fmt('%Y%m%d') }}`.
"""

from __future__ import annotations

import calendar
import re
from collections.abc import Callable, Mapping
from datetime import UTC, date, datetime, time, timedelta
from functools import cache
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

if TYPE_CHECKING:
    from jinja2.sandbox import ImmutableSandboxedEnvironment

# Jinja2 is imported on the first template evaluated, not with this module: the daemon and the
# command line import the engine at start, and an idle daemon (or `reporthubd check`) renders
# nothing (tests/test_import_budget.py).

_SINGLE_EXPRESSION = re.compile(r"^\s*\{\{(?P<expr>(?:(?!\}\}).)*)\}\}\s*$", re.DOTALL)
_UNITS = ("day", "week", "month", "quarter", "year")


class TemplateError(ValueError):
    """A template that cannot be evaluated; the message names it and says why."""


def is_template(value: Any) -> bool:
    return isinstance(value, str) and ("{{" in value or "{%" in value)


def _add_months(value: Any, months: int) -> Any:
    if not isinstance(value, date):
        raise TypeError("add_months needs a date or datetime")
    index = value.year * 12 + value.month - 1 + int(months)
    year, month = divmod(index, 12)
    day = min(value.day, calendar.monthrange(year, month + 1)[1])
    return value.replace(year=year, month=month + 1, day=day)


def _start(unit: str, at: datetime, offset: int) -> datetime:
    if unit not in _UNITS:
        raise ValueError(f"unknown unit {unit!r} (known: {', '.join(_UNITS)})")
    midnight = datetime.combine(at.date(), time(0), tzinfo=at.tzinfo)
    if unit == "day":
        base = midnight
        return _rezone(base.replace(tzinfo=None) + timedelta(days=offset), at)
    if unit == "week":
        base = midnight - timedelta(days=at.weekday())
        return _rezone(base.replace(tzinfo=None) + timedelta(weeks=offset), at)
    if unit == "month":
        return _rezone(_add_months(midnight.replace(day=1, tzinfo=None), offset), at)
    if unit == "quarter":
        first = midnight.replace(month=(at.month - 1) // 3 * 3 + 1, day=1, tzinfo=None)
        return _rezone(_add_months(first, 3 * offset), at)
    first = midnight.replace(month=1, day=1, tzinfo=None)
    return _rezone(_add_months(first, 12 * offset), at)


def _end(unit: str, at: datetime, offset: int) -> datetime:
    following = _start(unit, at, offset + 1).replace(tzinfo=None)
    return _rezone(following - timedelta(microseconds=1), at)


def _rezone(naive: datetime, like: datetime) -> datetime:
    """Wall time `naive` in `like`'s zone (the zone's own offset for that day, across DST)."""
    return naive.replace(tzinfo=like.tzinfo)


def _fmt(value: Any, pattern: str) -> str:
    if not isinstance(value, date | time):
        raise TypeError("fmt needs a date, datetime or time")
    return value.strftime(pattern)


def _to_date(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    if isinstance(value, str):
        return date.fromisoformat(value)
    raise TypeError("date needs a date, datetime or ISO text")


def _iso(value: Any) -> str:
    if isinstance(value, date | time):
        return value.isoformat()
    return str(value)


def _utc(value: Any) -> Any:
    if isinstance(value, datetime) and value.tzinfo is not None:
        return value.astimezone(UTC)
    raise TypeError("utc needs an aware datetime")


def _in_zone(value: Any, zone: str) -> Any:
    if isinstance(value, datetime) and value.tzinfo is not None:
        try:
            return value.astimezone(ZoneInfo(zone))
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {zone!r}") from None
    raise TypeError("in_zone needs an aware datetime")


@cache
def _environment() -> ImmutableSandboxedEnvironment:
    return sandbox()


def sandbox(*, finalize: Callable[[Any], Any] | None = None) -> ImmutableSandboxedEnvironment:
    """A new sandboxed environment with this module's filters; `finalize` post-processes each
    `{{ expression }}` (the webhook body JSON-escapes with it)."""
    import jinja2
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    env = ImmutableSandboxedEnvironment(
        undefined=jinja2.StrictUndefined,
        autoescape=False,
        keep_trailing_newline=False,
        finalize=finalize,
    )
    env.filters.update(
        fmt=_fmt, date=_to_date, iso=_iso, utc=_utc, in_zone=_in_zone, add_months=_add_months
    )
    return env


def time_variables(
    logical_time: datetime,
    zone: ZoneInfo,
    *,
    window_start: datetime | None = None,
    window_end: datetime | None = None,
) -> dict[str, Any]:
    """The variables and functions of the module docstring, for one logical time."""
    import jinja2

    if logical_time.tzinfo is None:
        raise ValueError("logical_time must be aware")
    now = logical_time.astimezone(zone)
    today = now.date()

    def start_of(unit: str, offset: int = 0, at: datetime | None = None) -> datetime:
        return _start(unit, (at or now).astimezone(zone), int(offset))

    def end_of(unit: str, offset: int = 0, at: datetime | None = None) -> datetime:
        return _end(unit, (at or now).astimezone(zone), int(offset))

    variables: dict[str, Any] = {
        "now": now,
        "scheduled_for": now,
        "today": today,
        "yesterday": today - timedelta(days=1),
        "tomorrow": today + timedelta(days=1),
        "timezone": str(zone.key),
        "start_of": start_of,
        "end_of": end_of,
        "days": lambda n=1: timedelta(days=n),
        "weeks": lambda n=1: timedelta(weeks=n),
        "hours": lambda n=1: timedelta(hours=n),
        "minutes": lambda n=1: timedelta(minutes=n),
        "seconds": lambda n=1: timedelta(seconds=n),
        "add_months": _add_months,
        "date": date,
        "parse_date": date.fromisoformat,
        "parse_datetime": datetime.fromisoformat,
    }
    for unit in _UNITS:
        variables[f"start_of_{unit}"] = _bound(start_of, unit)
        variables[f"end_of_{unit}"] = _bound(end_of, unit)
    hint = "window_start and window_end are only defined for runs of a schedule"
    variables["window_end"] = (
        window_end.astimezone(zone)
        if window_end is not None
        else jinja2.StrictUndefined(hint=hint, name="window_end")
    )
    variables["window_start"] = (
        window_start.astimezone(zone)
        if window_start is not None
        else jinja2.StrictUndefined(
            hint=hint if window_end is None else "the schedule has no previous fire",
            name="window_start",
        )
    )
    return variables


def _bound(fn: Any, unit: str) -> Any:
    def call(offset: int = 0, at: datetime | None = None) -> datetime:
        return fn(unit, offset, at)  # type: ignore[no-any-return]

    return call


def evaluate(template: str, variables: Mapping[str, Any], *, what: str) -> Any:
    """Evaluate one template: a single `{{ expression }}` keeps its type, else text."""
    import jinja2

    try:
        match = _SINGLE_EXPRESSION.match(template)
        if match:
            expression = _environment().compile_expression(
                match.group("expr"), undefined_to_none=False
            )
            value = expression(**variables)
            if isinstance(value, jinja2.Undefined):
                str(value)  # raises with the undefined name
            return value
        return _environment().from_string(template).render(**variables)
    except jinja2.TemplateError as exc:
        raise TemplateError(f"{what}: template {template!r} failed: {exc}") from None
    except (ArithmeticError, LookupError, TypeError, ValueError, OverflowError) as exc:
        raise TemplateError(
            f"{what}: template {template!r} failed: {type(exc).__name__}: {exc}"
        ) from None


def render_text(template: str, variables: Mapping[str, Any], *, what: str) -> str:
    import jinja2

    try:
        return _environment().from_string(template).render(**variables)
    except jinja2.TemplateError as exc:
        raise TemplateError(f"{what}: template {template!r} failed: {exc}") from None
    except (ArithmeticError, LookupError, TypeError, ValueError, OverflowError) as exc:
        raise TemplateError(
            f"{what}: template {template!r} failed: {type(exc).__name__}: {exc}"
        ) from None
