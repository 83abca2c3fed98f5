"""Cron expressions as reporthubd accepts them, and their fire instants in a schedule's zone.

Five fields (minute hour day month weekday), or six with a leading seconds field
(second minute hour day month weekday), or one of @hourly @daily @weekly @monthly @yearly
(@annually, @midnight). `L`, `W` and `#` are accepted where croniter supports them.

Fires are whole seconds, evaluated in the schedule's IANA zone. Around DST changes reporthubd
keeps classic cron's long-trusted rules, chosen by the hour field:

- **Fixed hours** (the hour field names hours: `30 2 * * *`, `0 9,17 * * 1-5`, `0 1-3 * * *`):
  the schedule means "at this wall-clock time". A local time that does not exist (spring
  forward) fires once, at the first valid instant after the gap (the transition itself); several
  such times in one gap fire once together. A local time that occurs twice (fall back) fires
  once, at its first occurrence.
- **Real time** (the hour field is `*` or a step: `0 * * * *`, `*/15 * * * *`, `0 */2 * * *`):
  the schedule means "every so often". A fire is an instant whose local time matches: local
  times inside the gap do not exist and are not fired, and both occurrences of a repeated local
  time are fired (they are distinct instants).

Everything here is a pure function of explicit instants: no clock is read.
"""

from __future__ import annotations

import bisect
import functools
import math
from collections.abc import Iterator
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

# croniter gives up on an expression that never matches (`0 0 30 2 *`) after this many years.
_MAX_YEARS = 50


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

    @property
    def follows_real_time(self) -> bool:
        """True for `*` or step hour fields (fires are instants), False for fixed hours (fires
        are wall-clock times). See the module docstring for what that changes around DST."""
        return "*" in self.hour_field or "/" in self.hour_field


@functools.lru_cache(maxsize=65_536)
def parse_cron(expression: str) -> CronSpec:
    """Validate and normalise; cached, since thousands of schedules share a few expressions."""
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


# -- time zone transitions -------------------------------------------------------------------

_DAY = 86_400
_transition_cache: dict[tuple[ZoneInfo, int], tuple[int, ...]] = {}


def _offset_at(zone: ZoneInfo, ts: int) -> int:
    """UTC offset in seconds of `zone` at the instant `ts` (Unix seconds)."""
    offset = datetime.fromtimestamp(ts, zone).utcoffset()
    assert offset is not None
    return int(offset.total_seconds())


def _transitions(zone: ZoneInfo, year: int) -> tuple[int, ...]:
    """Instants (Unix seconds) in (Jan 1 of `year`, Jan 1 of `year + 1`] where the UTC offset of
    `zone` changes: the first second with the new offset. Cached per zone and year."""
    key = (zone, year)
    found = _transition_cache.get(key)
    if found is not None:
        return found
    start = int(datetime(year, 1, 1, tzinfo=UTC).timestamp())
    end = int(datetime(year + 1, 1, 1, tzinfo=UTC).timestamp())
    instants: list[int] = []
    before = _offset_at(zone, start)
    lo = start
    while lo < end:
        hi = min(lo + _DAY, end)
        after = _offset_at(zone, hi)
        if after != before:
            # the first second in (lo, hi] whose offset differs from `before`
            a, b = lo, hi
            while b - a > 1:
                mid = (a + b) // 2
                if _offset_at(zone, mid) == before:
                    a = mid
                else:
                    b = mid
            instants.append(b)
            before = after
        lo = hi
    result = tuple(instants)
    _transition_cache[key] = result
    return result


def _year(ts: int) -> int:
    return datetime.fromtimestamp(ts, UTC).year


def _first_transition(zone: ZoneInfo, after: int, until: int) -> int | None:
    """The earliest offset change T with after < T <= until, or None."""
    for year in range(_year(after), _year(until) + 1):
        instants = _transitions(zone, year)
        i = bisect.bisect_right(instants, after)
        if i < len(instants):
            return instants[i] if instants[i] <= until else None
    return None


def _last_transition(zone: ZoneInfo, after: int, until: int) -> int | None:
    """The latest offset change T with after < T <= until, or None."""
    for year in range(_year(until), _year(after) - 1, -1):
        instants = _transitions(zone, year)
        i = bisect.bisect_right(instants, until)
        if i > 0:
            return instants[i - 1] if instants[i - 1] > after else None
    return None


# -- fire instants ---------------------------------------------------------------------------

_cron_cache: dict[str, croniter] = {}


def _cron(expression: str) -> croniter:
    """One croniter per distinct expression (parsing is the costly part); evaluation is
    synchronous, so sharing an instance between schedules is safe."""
    found = _cron_cache.get(expression)
    if found is None:
        found = croniter(expression, 0.0, ret_type=float, max_years_between_matches=_MAX_YEARS)
        _cron_cache[expression] = found
    return found


def _wall(zone: ZoneInfo, ts: int) -> tuple[int, int]:
    """(local wall-clock time as naive Unix seconds, UTC offset in seconds) of the instant."""
    local = datetime.fromtimestamp(ts, zone)
    offset = local.utcoffset()
    assert offset is not None
    off = int(offset.total_seconds())
    return ts + off, off


class FireTimes:
    """The fire instants of one cron expression in one zone, optionally bounded by
    `start_at` (inclusive) and `end_at` (inclusive). Pure: every method takes its instant."""

    __slots__ = ("_cron", "end", "real_time", "spec", "start", "zone")

    def __init__(
        self,
        spec: CronSpec,
        zone: ZoneInfo,
        *,
        start_at: datetime | None = None,
        end_at: datetime | None = None,
    ) -> None:
        self.spec = spec
        self.zone = zone
        self.real_time = spec.follows_real_time
        self._cron = spec.croniter_expression
        self.start = math.ceil(start_at.timestamp()) if start_at is not None else None
        self.end = math.floor(end_at.timestamp()) if end_at is not None else None

    # Unix-seconds core (the loop uses these: no datetime objects per fire) ------------------

    def next_ts(self, after: float) -> int | None:
        """The first fire strictly after the instant `after` (Unix seconds), or None."""
        floor = math.floor(after)
        if self.start is not None and floor < self.start - 1:
            floor = self.start - 1
        try:
            found = self._next_real(floor) if self.real_time else self._next_fixed(floor)
        except (CroniterBadDateError, StopIteration, OverflowError, ValueError):
            return None
        if found is None or (self.end is not None and found > self.end):
            return None
        return found

    def previous_ts(self, before: float) -> int | None:
        """The last fire strictly before the instant `before` (Unix seconds), or None."""
        last = math.ceil(before) - 1
        if self.end is not None and last > self.end:
            last = self.end
        try:
            found = self._prev_real(last) if self.real_time else self._prev_fixed(last)
        except (CroniterBadDateError, StopIteration, OverflowError, ValueError):
            return None
        if found is None or (self.start is not None and found < self.start):
            return None
        return found

    def _cron_next(self, naive: float) -> int:
        """The first matching wall-clock time strictly after `naive` (naive Unix seconds)."""
        it = _cron(self._cron)
        it.set_current(naive, force=True)
        return int(it.get_next(float))

    def _cron_prev(self, naive: float) -> int:
        """The last matching wall-clock time strictly before `naive`."""
        it = _cron(self._cron)
        it.set_current(naive, force=True)
        return int(it.get_prev(float))

    def _next_real(self, after: int) -> int | None:
        # Walk offset segments: inside one, wall time = instant + offset is a bijection.
        start = after + 1
        for _ in range(1000):
            naive, off = _wall(self.zone, start)
            candidate = self._cron_next(naive - 1) - off
            change = _first_transition(self.zone, start, candidate)
            if change is None:
                return candidate
            start = change
        return None

    def _prev_real(self, last: int) -> int | None:
        end = last
        for _ in range(1000):
            naive, off = _wall(self.zone, end)
            candidate = self._cron_prev(naive + 1) - off
            change = _last_transition(self.zone, candidate, end)
            if change is None:
                return candidate
            end = change - 1
        return None

    def _fixed_instant(self, naive: int) -> int:
        """The instant a fixed-hours schedule fires for the wall-clock time `naive`."""
        wall = datetime.fromtimestamp(naive, UTC).replace(tzinfo=self.zone)
        first = wall.utcoffset()
        second = wall.replace(fold=1).utcoffset()
        assert first is not None and second is not None
        off0, off1 = int(first.total_seconds()), int(second.total_seconds())
        if off0 >= off1:
            # unambiguous (equal), or repeated: the first occurrence has the larger offset
            return naive - off0
        # in a gap: fire at the transition, the first valid instant after it
        change = _first_transition(self.zone, naive - off1, naive - off0)
        return change if change is not None else naive - off0

    def _next_fixed(self, after: int) -> int | None:
        naive, _ = _wall(self.zone, after)
        for _ in range(100_000):  # bounded by a repeated hour of per-second fires
            naive = self._cron_next(naive)
            instant = self._fixed_instant(naive)
            if instant > after:
                return instant
        return None

    def _prev_fixed(self, last: int) -> int | None:
        naive, off = _wall(self.zone, last)
        wall = datetime.fromtimestamp(naive, UTC).replace(tzinfo=self.zone)
        repeated = wall.replace(fold=0).utcoffset()
        assert repeated is not None
        # after the second occurrence of a repeated hour, later wall times still map earlier
        naive += max(0, int(repeated.total_seconds()) - off)
        naive += 1
        for _ in range(100_000):
            naive = self._cron_prev(naive)
            instant = self._fixed_instant(naive)
            if instant <= last:
                return instant
        return None

    # datetime API ---------------------------------------------------------------------------

    def next_after(self, after: datetime) -> datetime | None:
        """The first fire strictly after `after` (aware), as an aware UTC datetime, or None."""
        if after.tzinfo is None:
            raise ValueError("after must be aware")
        found = self.next_ts(after.timestamp())
        return datetime.fromtimestamp(found, UTC) if found is not None else None

    def previous_before(self, before: datetime) -> datetime | None:
        if before.tzinfo is None:
            raise ValueError("before must be aware")
        found = self.previous_ts(before.timestamp())
        return datetime.fromtimestamp(found, UTC) if found is not None else None

    def iter_after(self, after: datetime) -> Iterator[datetime]:
        """Fires strictly after `after`, in order, until `end_at` (or forever)."""
        ts: float = after.timestamp()
        while (found := self.next_ts(ts)) is not None:
            yield datetime.fromtimestamp(found, UTC)
            ts = found

    def between(self, after: datetime, until: datetime) -> Iterator[datetime]:
        """Fires in (after, until]."""
        for fire in self.iter_after(after):
            if fire > until:
                return
            yield fire


def next_fires(
    spec: CronSpec,
    zone: ZoneInfo,
    after: datetime,
    n: int,
    *,
    start_at: datetime | None = None,
    end_at: datetime | None = None,
) -> list[datetime]:
    """The next `n` fires strictly after `after`, as aware UTC datetimes."""
    fires: list[datetime] = []
    for fire in FireTimes(spec, zone, start_at=start_at, end_at=end_at).iter_after(after):
        fires.append(fire)
        if len(fires) >= n:
            break
    return fires


def previous_fire(spec: CronSpec, zone: ZoneInfo, before: datetime) -> datetime | None:
    """The latest fire strictly before `before` (aware), as an aware UTC datetime, or None.

    Used for `window_start` parameters; follows the same DST rules as the fires themselves.
    """
    if before.tzinfo is None:
        raise ValueError("before must be aware")
    return FireTimes(spec, zone).previous_before(before)
