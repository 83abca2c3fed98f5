"""Backfill rules: which fires of a schedule a backfill runs. Pure: no store, no clock.

A backfill over [from, to] enumerates the schedule's logical fires as the live scheduler would:
its cron in its own zone (so across DST exactly as the scheduler fires: the spring-forward day
fires once, the autumn day once), within start_at/end_at, under its business calendar. A fire
its calendar skips is not run (it is listed with the holiday); a fire its calendar moves is run
with its logical `scheduled_for` all the same (date parameters describe the intended period).

Each fire is then chosen by `--reprocess` from what the store holds for it (every attempt of
(schedule_id, scheduled_for)):

- `none` (the default): fires that never ran: no execution at all, or only SKIPPED ones whose
  reason is not the calendar's (missed while the daemon was down, paused);
- `failed`: those, and fires whose latest attempt ended FAILED, TIMEOUT or CANCELLED;
- `all`: every fire.

A fire with a PENDING or RUNNING attempt is never started again: it is running now. A fire with
no row is claimed as attempt 0 (the schedule's own claim key, which the live scheduler uses:
whichever inserts it first runs it); a re-run takes the next attempt. The same rule decides again
when each fire is claimed (`decide`), so a fire the live scheduler ran in the meantime is not
doubled: the backfill follows that run instead.

Bounds: `from`/`to` are ISO dates or date-times; without an offset they are wall times in the
schedule's zone, and a plain date `to` takes the whole day. `to` later than now is cut to now
(fires not yet due are the live scheduler's).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from reporthubd import calendars, domain
from reporthubd.backfill_rules import (
    BackfillError,
    FireHistory,
    Reprocess,
    decide,
)
from reporthubd.calendars import CalendarFires
from reporthubd.config import Settings
from reporthubd.scheduler.timetable import fire_times, utc
from reporthubd.store import backfills
from reporthubd.store.database import Store

MAX_FIRES = 100_000
"""Fires in one backfill, at most (a per-second cron over a long range would be millions)."""


@dataclass(frozen=True, slots=True)
class PlannedFire:
    scheduled_for: datetime
    local: str
    """The logical fire as wall time in the schedule's zone, with its offset."""
    run: bool
    reason: str
    attempt: int | None = None
    shift: str | None = None
    """A fire its calendar moves: where (a backfill runs it now, with its logical time)."""

    def as_json(self) -> dict[str, object]:
        out: dict[str, object] = {
            "scheduled_for": self.scheduled_for.isoformat().replace("+00:00", "Z"),
            "local": self.local,
            "run": self.run,
            "reason": self.reason,
        }
        if self.attempt is not None:
            out["attempt"] = self.attempt
        if self.shift is not None:
            out["calendar_shift"] = self.shift
        return out


@dataclass(frozen=True, kw_only=True)
class Plan:
    schedule_id: int
    range_from: datetime
    range_to: datetime
    """Exclusive: fires before it."""
    reprocess: Reprocess
    fires: tuple[PlannedFire, ...]
    clipped_to_now: bool = False

    @property
    def to_run(self) -> list[PlannedFire]:
        return [fire for fire in self.fires if fire.run]

    def as_json(self) -> dict[str, object]:
        run = self.to_run
        return {
            "schedule_id": self.schedule_id,
            "from": self.range_from.isoformat(),
            "to": self.range_to.isoformat(),
            "to_is_exclusive": True,
            "clipped_to_now": self.clipped_to_now,
            "reprocess": self.reprocess.value,
            "fires": len(self.fires),
            "to_run": len(run),
            "runs": [fire.as_json() for fire in run],
            "not_run": [fire.as_json() for fire in self.fires if not fire.run],
        }


# -- the request -------------------------------------------------------------------------------


def parse_bound(value: object, key: str, zone: ZoneInfo, *, end: bool) -> datetime:
    """An ISO date or date-time; wall time in `zone` when it has no offset. A plain date as the
    end (`end`) means the end of that day (the next midnight, exclusive); a date-time end is
    inclusive (returned one second later, as an exclusive bound: fires are whole seconds)."""
    if not isinstance(value, str) or not value.strip():
        raise BackfillError(f"{key}: required, an ISO date or date-time (e.g. 2027-03-01)")
    text = value.strip()
    try:
        if len(text) == 10:
            day = date.fromisoformat(text)
            if end:
                day += timedelta(days=1)
            return _local(datetime.combine(day, time(0)), zone)
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise BackfillError(
            f"{key}: {value!r} is not an ISO date or date-time (e.g. 2027-03-01 or "
            "2027-03-01T06:00)"
        ) from None
    instant = _local(parsed, zone) if parsed.tzinfo is None else parsed.astimezone(UTC)
    return instant + timedelta(seconds=1) if end else instant


def _local(naive: datetime, zone: ZoneInfo) -> datetime:
    return naive.replace(tzinfo=zone).astimezone(UTC)


def parse_reprocess(value: object, key: str = "reprocess") -> Reprocess:
    if value is None:
        return Reprocess.NONE
    try:
        return Reprocess(str(value))
    except ValueError:
        raise BackfillError(f"{key}: must be one of none, failed, all; got {value!r}") from None


def parse_concurrency(value: object, pool: int, key: str = "concurrency") -> int:
    if value is None:
        return 1
    if isinstance(value, bool) or not isinstance(value, int):
        raise BackfillError(f"{key}: must be a whole number, got {value!r}")
    if not 1 <= value <= pool:
        raise BackfillError(
            f"{key}: must be between 1 and execution.max_concurrent_executions ({pool}), "
            f"got {value}"
        )
    return value


def check_range(
    range_from: datetime,
    range_to: datetime,
    *,
    max_days: float,
    from_key: str = "from",
    to_key: str = "to",
) -> None:
    if range_from >= range_to:
        raise BackfillError(
            f"{from_key}: {range_from.isoformat()} is after {to_key} "
            f"({(range_to - timedelta(seconds=1)).isoformat()})"
        )
    days = (range_to - range_from).total_seconds() / 86_400
    if days > max_days:
        raise BackfillError(
            f"{to_key}: the range spans {days:.1f} days, more than "
            f"scheduler.backfill_max_days ({max_days:g})"
        )


# -- the plan ----------------------------------------------------------------------------------


def logical_fires(
    schedule: domain.Schedule, range_from: datetime, range_to: datetime
) -> list[tuple[int, calendars.Fire | None]]:
    """The schedule's logical fires in [range_from, range_to), each with its calendar's
    decision (None without a calendar). Raises BackfillError past MAX_FIRES."""
    times = fire_times(schedule)
    cron = times.inner if isinstance(times, CalendarFires) else times
    out: list[tuple[int, calendars.Fire | None]] = []
    ts: float = range_from.timestamp() - 1
    end = range_to.timestamp()
    while (fire := cron.next_ts(ts)) is not None and fire < end:
        if len(out) >= MAX_FIRES:
            raise BackfillError(
                f"to: the range holds more than {MAX_FIRES} fires of {schedule.cron_expression!r}"
            )
        out.append((fire, times.decide(fire) if isinstance(times, CalendarFires) else None))
        ts = fire
    return out


def plan(
    schedule: domain.Schedule,
    range_from: datetime,
    range_to: datetime,
    reprocess: Reprocess,
    history: Mapping[datetime, FireHistory],
    *,
    clipped_to_now: bool = False,
) -> Plan:
    """The fires of `schedule` in [range_from, range_to) and, for each, whether the backfill runs
    it and why (`decide` over `history`, keyed by scheduled_for in UTC)."""
    zone = schedule.timezone
    planned: list[PlannedFire] = []
    for ts, decided in logical_fires(schedule, range_from, range_to):
        when = utc(ts)
        local = when.astimezone(zone).isoformat()
        if decided is not None and decided.skipped_reason is not None:
            planned.append(PlannedFire(when, local, False, decided.skipped_reason))
            continue
        shift = decided.shift_reason if decided is not None else None
        choice = decide(history.get(when, FireHistory()), reprocess)
        planned.append(
            PlannedFire(
                when,
                local,
                choice.attempt is not None,
                choice.reason,
                attempt=choice.attempt,
                shift=shift,
            )
        )
    return Plan(
        schedule_id=schedule.id,
        range_from=range_from,
        range_to=range_to,
        reprocess=reprocess,
        fires=tuple(planned),
        clipped_to_now=clipped_to_now,
    )


# -- a request, from the command line or the API ------------------------------------------------

REQUEST_KEYS = ("from", "to", "reprocess", "dry_run", "deliver", "concurrency", "by")
MAX_BY = 255
"""Who asked for a backfill or its cancel (report_backfills.requested_by, cancelled_by)."""


@dataclass(frozen=True, kw_only=True)
class Requested:
    plan: Plan
    backfill_id: str | None
    """None for a dry run (nothing recorded) or when nothing is to run."""
    deliver: bool
    concurrency: int
    dry_run: bool = False

    def as_json(self) -> dict[str, object]:
        return {
            "backfill_id": self.backfill_id,
            "dry_run": self.dry_run,
            "deliver": self.deliver,
            "concurrency": self.concurrency,
            **self.plan.as_json(),
        }


def _flag(body: Mapping[str, object], key: str, default: bool) -> bool:
    value = body.get(key, default)
    if not isinstance(value, bool):
        raise BackfillError(f"{key}: must be true or false, got {value!r}")
    return value


async def request(
    store: Store,
    settings: Settings,
    schedule_id: int,
    body: Mapping[str, object],
    *,
    now: datetime | None = None,
) -> Requested:
    """Check a backfill request (the keys of REQUEST_KEYS), plan it and, unless it is a dry
    run, record it for a node to run. Raises BackfillError (or backfills.UnknownSchedule,
    backfills.BackfillConflict, ValueError for an invalid schedule row) naming the key."""
    unknown = sorted(set(body) - set(REQUEST_KEYS))
    if unknown:
        raise BackfillError(f"{unknown[0]}: unknown key (known: {', '.join(REQUEST_KEYS)})")
    nulls = sorted(key for key, value in body.items() if value is None)
    if nulls:
        raise BackfillError(f"{nulls[0]}: must not be null (leave the key out for its default)")
    schedule = await backfills.load_schedule(
        store, schedule_id, default_timezone=settings.scheduler.timezone
    )
    zone = schedule.timezone
    range_from = parse_bound(body.get("from"), "from", zone, end=False)
    range_to = parse_bound(body.get("to"), "to", zone, end=True)
    reprocess = parse_reprocess(body.get("reprocess"))
    concurrency = parse_concurrency(
        body.get("concurrency"), settings.execution.max_concurrent_executions
    )
    deliver = _flag(body, "deliver", True)
    dry_run = _flag(body, "dry_run", False)
    by = body.get("by")
    if by is not None and (not isinstance(by, str) or not by.strip() or len(by) > MAX_BY):
        raise BackfillError(
            f"by: must be non-empty text of at most {MAX_BY} characters, got {str(by)[:40]!r}"
        )
    moment = now or datetime.now(UTC)
    # fires not yet due belong to the live scheduler; the one due this very second too
    clipped = range_to > moment
    until = min(range_to, moment.replace(microsecond=0))
    check_range(range_from, range_to, max_days=float("inf"))
    if until <= range_from:
        raise BackfillError(f"from: {range_from.isoformat()} is not in the past")
    check_range(range_from, until, max_days=settings.scheduler.backfill_max_days)
    past = await backfills.history(store, schedule_id, range_from, until)
    planned = plan(schedule, range_from, until, reprocess, past, clipped_to_now=clipped)
    backfill_id = None
    if not dry_run and planned.to_run:
        backfill_id = await backfills.create(
            store,
            schedule_id=schedule_id,
            config_id=schedule.config_id,
            range_from=range_from,
            range_to=until,
            reprocess=reprocess,
            fires=[(fire.scheduled_for, fire.reason) for fire in planned.to_run],
            deliver=deliver,
            concurrency=concurrency,
            requested_by=by[:255] if by else None,
        )
    return Requested(
        plan=planned,
        backfill_id=backfill_id,
        deliver=deliver,
        concurrency=concurrency,
        dry_run=dry_run,
    )
