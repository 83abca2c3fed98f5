"""Cron expressions as reporthubd accepts them.

Five fields (minute hour day month weekday), or six with a leading seconds field
(second minute hour day month weekday), or one of @hourly @daily @weekly @monthly @yearly
(@annually, @midnight). `L`, `W` and `#` are accepted where croniter supports them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from croniter import CroniterBadDateError, croniter

MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}


class CronError(ValueError):
    """An expression reporthubd cannot evaluate; the message says why."""


@dataclass(frozen=True, kw_only=True)
class CronSpec:
    expression: str
    """As written in the store."""
    fields: tuple[str, ...]
    """Normalised: (second, minute, hour, day, month, weekday)."""

    @property
    def croniter_expression(self) -> str:
        """croniter's order: minute hour day month weekday second."""
        second, *rest = self.fields
        return " ".join([*rest, second])

    @property
    def hour_field(self) -> str:
        return self.fields[2]


def parse_cron(expression: str) -> CronSpec:
    text = " ".join(expression.split())
    if not text:
        raise CronError("empty cron expression")
    normalised = MACROS.get(text.lower(), text)
    if normalised.startswith("@"):
        raise CronError(f"unknown macro {text!r} (known: {', '.join(sorted(MACROS))})")
    parts = normalised.split(" ")
    if len(parts) == 5:
        parts = ["0", *parts]
    elif len(parts) != 6:
        raise CronError(
            f"{expression!r} has {len(parts)} fields; expected 5 (minute hour day month weekday) "
            "or 6 (second minute hour day month weekday)"
        )
    spec = CronSpec(expression=expression, fields=tuple(parts))
    try:
        valid = croniter.is_valid(spec.croniter_expression)
    except Exception as exc:  # croniter raises assorted types on odd input
        raise CronError(f"invalid cron expression {expression!r}: {exc}") from None
    if not valid:
        raise CronError(f"invalid cron expression {expression!r}")
    return spec


def previous_fire(spec: CronSpec, zone: ZoneInfo, before: datetime) -> datetime | None:
    """The latest fire strictly before `before` (aware), as an aware UTC datetime, or None.

    Used for `window_start` parameters. The scheduler issue refines DST handling; this signature
    is the contract the engine relies on.
    """
    if before.tzinfo is None:
        raise ValueError("before must be aware")
    local = before.astimezone(zone)
    try:
        previous = croniter(spec.croniter_expression, local).get_prev(datetime)
    except (CroniterBadDateError, StopIteration):
        return None
    return previous.astimezone(UTC)
