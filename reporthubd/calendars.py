"""Business calendars: which days are business days, and where a schedule's fire goes on a day
that is not one. Pure: no store, no clock; the holiday rules come from the maintained `holidays`
library (never a hand-written list of dates).

The rules, exactly (docs/authors.md repeats them for report authors):

- A day is *closed* when it is one of the calendar's `added` dates, or a public holiday of its
  `country` (and `subdivision`) by the `holidays` library, or a weekend day of that country
  (Saturday and Sunday when the calendar names no country) — unless it is one of the calendar's
  `removed` dates, which are business days whatever the rules say. Every other day is a business
  day. Days are local days of the schedule's zone.
- A schedule with a calendar and a policy: a fire whose local day is closed is
  - `skip`: claimed SKIPPED at its own instant, reason "holiday: <name>, <calendar>" (or
    "weekend: <weekday>, <calendar>");
  - `next_business_day` / `previous_business_day`: run at the same wall time on the nearest
    business day after / before it, in the schedule's zone. Its logical `scheduled_for` stays
    the original fire (the claim key is unchanged); the run instant and the reason are
    recorded beside it.
- A calendar may not close every day of a month: a shift would search without end.
"""

from __future__ import annotations

import enum
import functools
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from reporthubd.cron import FireTimes

if TYPE_CHECKING:
    import holidays

MAX_SHIFT_DAYS = 62
"""No closed stretch is longer (a calendar closing a whole month is refused), so a shift or a
scan for the fires moved onto a day stops within this many days."""

WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")


class CalendarPolicy(enum.StrEnum):
    SKIP = "skip"
    NEXT_BUSINESS_DAY = "next_business_day"
    PREVIOUS_BUSINESS_DAY = "previous_business_day"


SKIP_PREFIXES = ("holiday: ", "weekend: ")
"""How the reason of a fire its calendar skipped begins."""


def is_calendar_skip(reason: str | None) -> bool:
    """Whether a SKIPPED reason is a calendar's (a closed day), not a missed fire's."""
    return reason is not None and reason.startswith(SKIP_PREFIXES)


class CalendarError(ValueError):
    """A calendar definition that cannot be used; the message names the key."""


# `holidays` is imported when a calendar is first built (76 ms, measured with -X importtime):
# the command line and a daemon without calendars never load it.
@functools.cache
def _countries() -> Mapping[str, list[str]]:
    import holidays

    return holidays.list_supported_countries()


def _rules(country: str, subdivision: str | None) -> holidays.HolidayBase:
    import holidays

    return holidays.country_holidays(country, subdiv=subdivision)


@dataclass(frozen=True, kw_only=True)
class Calendar:
    """A named calendar. Build it with `build` (which validates); compare by its definition."""

    name: str
    country: str | None = None
    subdivision: str | None = None
    added: Mapping[date, str] = field(default_factory=dict)
    """Extra closed days, each with the name given as the reason."""
    removed: frozenset[date] = frozenset()
    """Business days whatever the rules and the weekend say."""
    _holidays: Any = field(default=None, compare=False, repr=False)

    def closed_reason(self, day: date) -> str | None:
        """Why `day` is not a business day ("holiday: <name>, <calendar>"), or None."""
        if day in self.removed:
            return None
        name = self.added.get(day)
        if name is None and self._holidays is not None:
            name = self._holidays.get(day)
        if name is not None:
            return f"holiday: {name}, {self.name}"
        if day.weekday() in self.weekend:
            return f"weekend: {WEEKDAYS[day.weekday()]}, {self.name}"
        return None

    @property
    def weekend(self) -> frozenset[int]:
        if self._holidays is not None:
            return frozenset(self._holidays.weekend)
        return frozenset({5, 6})

    def is_business_day(self, day: date) -> bool:
        return self.closed_reason(day) is None

    def next_business_day(self, day: date) -> date:
        """The first business day strictly after `day`."""
        return self._step(day, 1)

    def previous_business_day(self, day: date) -> date:
        """The last business day strictly before `day`."""
        return self._step(day, -1)

    def _step(self, day: date, direction: int) -> date:
        for n in range(1, MAX_SHIFT_DAYS + 1):
            candidate = day + timedelta(days=direction * n)
            if self.is_business_day(candidate):
                return candidate
        raise CalendarError(
            f"calendar {self.name!r}: no business day within {MAX_SHIFT_DAYS} days of {day}"
        )

    def business_days_between(self, start: date, end: date) -> int:
        """Business days in [start, end) (numpy's busday_count convention); negative when
        `end` is before `start`."""
        if end < start:
            return -self.business_days_between(end, start)
        return sum(
            1 for n in range((end - start).days) if self.is_business_day(start + timedelta(days=n))
        )


def build(
    *,
    name: str,
    country: str | None = None,
    subdivision: str | None = None,
    added: Mapping[date, str] | None = None,
    removed: frozenset[date] | set[date] | None = None,
) -> Calendar:
    """A validated calendar. Raises CalendarError naming the key: an unknown country or
    subdivision, a subdivision without a country, a month whose every day is closed."""
    if not name or not name.strip():
        raise CalendarError("name: a calendar needs a name")
    rules = None
    if country is not None:
        country = country.upper()
        if country not in _countries():
            raise CalendarError(
                f"country: unknown country code {country!r} for calendar {name!r} "
                "(an ISO 3166 code the holidays library knows, e.g. DE, US)"
            )
        if subdivision is not None:
            known = _countries()[country]
            aliases = getattr(_rules(country, None), "subdivisions_aliases", {})
            if subdivision not in known and subdivision not in aliases:
                raise CalendarError(
                    f"subdivision: unknown subdivision {subdivision!r} of {country} for calendar "
                    f"{name!r} (known: {', '.join(known)})"
                )
        rules = _rules(country, subdivision)
    elif subdivision is not None:
        raise CalendarError(f"subdivision: calendar {name!r} names a subdivision but no country")
    calendar = Calendar(
        name=name,
        country=country,
        subdivision=subdivision,
        added=dict(added or {}),
        removed=frozenset(removed or ()),
        _holidays=rules,
    )
    for month in sorted({(d.year, d.month) for d in calendar.added}):
        if not any(calendar.is_business_day(d) for d in _days_of(*month)):
            raise CalendarError(
                f"added: calendar {name!r} closes every day of {month[0]}-{month[1]:02d}; "
                "a shifted fire would find no business day"
            )
    return calendar


def _days_of(year: int, month: int) -> Iterator[date]:
    day = date(year, month, 1)
    while day.month == month:
        yield day
        day += timedelta(days=1)


def parse_day(value: object, key: str) -> date:
    """An ISO date (YYYY-MM-DD) from a document, or CalendarError naming `key`."""
    if isinstance(value, date) and not isinstance(value, datetime):
        return value
    try:
        return date.fromisoformat(str(value))
    except ValueError:
        raise CalendarError(f"{key}: not a date (YYYY-MM-DD): {value!r}") from None


def parse_added(value: object, key: str = "added") -> dict[date, str]:
    """`added` as stored: an object {date: name}, or a list of dates (named "closed")."""
    if value is None:
        return {}
    if isinstance(value, Mapping):
        return {parse_day(k, f"{key}.{k}"): str(v or "closed") for k, v in value.items()}
    if isinstance(value, list | tuple):
        return {parse_day(v, f"{key}[{i}]"): "closed" for i, v in enumerate(value)}
    raise CalendarError(f"{key}: an object of date = name, or a list of dates")


def parse_removed(value: object, key: str = "removed") -> frozenset[date]:
    if value is None:
        return frozenset()
    if not isinstance(value, list | tuple):
        raise CalendarError(f"{key}: a list of dates (YYYY-MM-DD)")
    return frozenset(parse_day(v, f"{key}[{i}]") for i, v in enumerate(value))


def parse_policy(value: object, key: str = "calendar_policy") -> CalendarPolicy:
    try:
        return CalendarPolicy(str(value))
    except ValueError:
        choices = ", ".join(p.value for p in CalendarPolicy)
        raise CalendarError(f"{key}: unknown policy {value!r} (one of {choices})") from None


# -- fires moved by a calendar -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Fire:
    """One logical fire, as a calendar decides it."""

    logical: int
    """The cron's own instant (Unix seconds): the claim's `scheduled_for`."""
    actual: int
    """When it is claimed (a shifted fire: the same wall time on the business day)."""
    skipped_reason: str | None = None
    shift_reason: str | None = None
    """For a moved fire: why, and where to."""


class CalendarFires:
    """The fire instants of a schedule under its calendar: `next_ts` gives the next instant
    at which something is claimed, `fires_at` the logical fires claimed at it (two may share
    one: a Friday holiday moved onto Monday's own fire). The same interface as FireTimes,
    so the timetable, dispatch and catch-up drive both alike."""

    __slots__ = ("_memo", "calendar", "inner", "policy", "zone")

    def __init__(self, inner: FireTimes, calendar: Calendar, policy: CalendarPolicy) -> None:
        self.inner = inner
        self.calendar = calendar
        self.policy = policy
        self.zone: ZoneInfo = inner.zone
        self._memo: dict[int, tuple[Fire, ...]] = {}

    def decide(self, logical: int) -> Fire:
        """Where one logical fire goes."""
        local = datetime.fromtimestamp(logical, UTC).astimezone(self.zone)
        reason = self.calendar.closed_reason(local.date())
        if reason is None:
            return Fire(logical=logical, actual=logical)
        if self.policy is CalendarPolicy.SKIP:
            return Fire(logical=logical, actual=logical, skipped_reason=reason)
        if self.policy is CalendarPolicy.NEXT_BUSINESS_DAY:
            day = self.calendar.next_business_day(local.date())
        else:
            day = self.calendar.previous_business_day(local.date())
        moved = datetime.combine(day, local.time(), tzinfo=self.zone)
        # a wall time in a spring-forward gap: the instant Python's zone rules give it
        actual = int(moved.astimezone(UTC).timestamp())
        note = (
            f"{reason}; {self.policy.value}: runs {moved.strftime('%Y-%m-%d %H:%M')} "
            f"{self.zone.key}"
        )
        return Fire(logical=logical, actual=actual, shift_reason=note)

    def _scan_from(self, after: int) -> float:
        """Where to start reading logical fires that may be claimed after `after`: for
        next_business_day, back over the closed days just before it (their fires moved on)."""
        if self.policy is not CalendarPolicy.NEXT_BUSINESS_DAY:
            return after
        day = datetime.fromtimestamp(after, UTC).astimezone(self.zone).date()
        start = day
        for _ in range(MAX_SHIFT_DAYS):
            if self.calendar.is_business_day(start - timedelta(days=1)):
                break
            start -= timedelta(days=1)
        if start == day:
            return after
        midnight = datetime.combine(start, datetime.min.time(), tzinfo=self.zone)
        return min(float(after), midnight.timestamp() - 1)

    def step(self, after: float) -> tuple[Fire, ...]:
        """The fires claimed at the first instant strictly after `after` (empty: none)."""
        floor = int(after)
        best: list[Fire] = []
        ts: float = self._scan_from(floor)
        while (logical := self.inner.next_ts(ts)) is not None:
            ts = logical
            if best:
                best_at = best[0].actual
                if logical - best_at > MAX_SHIFT_DAYS * 86_400:
                    break  # no later fire can move back this far
                if self.policy is CalendarPolicy.PREVIOUS_BUSINESS_DAY:
                    # a later fire moves back at most onto the last business day before it
                    local = datetime.fromtimestamp(logical, UTC).astimezone(self.zone).date()
                    best_day = datetime.fromtimestamp(best_at, UTC).astimezone(self.zone).date()
                    if local > best_day and self.calendar.is_business_day(local):
                        break
                elif logical > best_at:
                    break
            fire = self.decide(logical)
            if fire.actual <= floor:
                continue
            if not best or fire.actual < best[0].actual:
                best = [fire]
            elif fire.actual == best[0].actual:
                best.append(fire)
        found = tuple(sorted(best, key=lambda f: f.logical))
        if found:
            if len(self._memo) > 64:
                self._memo.clear()
            self._memo[found[0].actual] = found
        return found

    def next_ts(self, after: float) -> int | None:
        found = self.step(after)
        return found[0].actual if found else None

    def fires_at(self, actual: int) -> tuple[Fire, ...]:
        """The logical fires claimed at `actual` (an instant `next_ts` returned)."""
        found = self._memo.get(actual)
        if found is None:
            found = tuple(f for f in self.step(actual - 1) if f.actual == actual)
        return found

    def iter_after(self, after: datetime) -> Iterator[Fire]:
        ts = after.timestamp()
        while found := self.step(ts):
            yield from found
            ts = found[0].actual

    def describe(self, after: datetime, count: int) -> list[dict[str, str]]:
        """The next `count` fires claimed after `after`, in that order, as `reporthubd next
        --json` and GET /api/schedules/{id}/next show them: "utc" and "local" (the logical
        fire), "status" (run, skipped, shifted), "reason" (the closed day's), and for a
        shifted fire "runs_utc" / "runs_local"."""

        def text(ts: int, local: bool = False) -> str:
            moment = datetime.fromtimestamp(ts, UTC)
            if local:
                return moment.astimezone(self.zone).isoformat()
            return moment.isoformat().replace("+00:00", "Z")

        out: list[dict[str, str]] = []
        if count < 1:
            return out
        for fire in self.iter_after(after):
            status = "skipped" if fire.skipped_reason else "run"
            if fire.shift_reason:
                status = "shifted"
            entry = {"utc": text(fire.logical), "local": text(fire.logical, True), "status": status}
            if fire.shift_reason:
                entry["runs_utc"] = text(fire.actual)
                entry["runs_local"] = text(fire.actual, True)
            reason = fire.skipped_reason or fire.shift_reason
            if reason:
                entry["reason"] = reason.split("; ")[0]
            out.append(entry)
            if len(out) >= count:
                break
        return out
