"""Paused schedules: what the fires of a paused schedule are recorded as, and which missed fires
a pause or a resumption takes out of the misfire policy. Functions of the schedule and its fire
times only (no store, no clock).

A schedule paused at P (`report_schedules.paused_at`, revision 0006) keeps its place in the
timetable: each of its fires at or after P is claimed like any other fire, through the same
unique key (so several nodes never double a row), but as SKIPPED with the reason
"paused by <who> since <when>: <why>". A fire before P (due just before the pause) runs.

A schedule resumed at R (`resumed_at`) follows its misfire policy from R on only: a fire before
R that was missed (the daemon was down across the pause, say) is recorded SKIPPED, never caught
up. While a daemon runs, the fires in the pause are recorded on time, so there is nothing left
to catch up anyway.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Protocol

from reporthubd import domain
from reporthubd.scheduler import misfire
from reporthubd.scheduler.timetable import Job, utc
from reporthubd.store import claims


class Fires(Protocol):
    """A schedule's fire times (cron.FireTimes, or one that leaves out some days)."""

    def next_ts(self, after: float) -> int | None: ...


# Fires enumerated between two yields to the event loop (a week of a per-second schedule).
YIELD_EVERY = 10_000


PREFIX = "paused by "


def reason(schedule: domain.Schedule) -> str:
    """The SKIPPED reason of a paused schedule's fires."""
    since = misfire.iso(schedule.paused_at.timestamp()) if schedule.paused_at else "?"
    return (
        f"{PREFIX}{schedule.paused_by or 'unknown'} since {since}: "
        f"{schedule.paused_reason or 'no reason given'}"
    )


def is_pause_skip(reason: str | None) -> bool:
    """A SKIPPED reason written because the schedule was paused (not a missed fire)."""
    return reason is not None and reason.startswith(PREFIX)


def skip_reason(schedule: domain.Schedule, fire_ts: float) -> str | None:
    """Why the fire at `fire_ts` is not run because the schedule is paused (None: run it)."""
    paused = schedule.paused_at
    if paused is None or fire_ts < paused.timestamp():
        return None
    return reason(schedule)


def paused_ts(schedule: domain.Schedule) -> float | None:
    return schedule.paused_at.timestamp() if schedule.paused_at is not None else None


def resumed_after(schedule: domain.Schedule, after: float) -> float | None:
    """The resumption instant when it falls after `after` (then the missed fires before it
    are not caught up), else None."""
    resumed = schedule.resumed_at
    if resumed is None or resumed.timestamp() <= after:
        return None
    return resumed.timestamp()


def before_resume(missed_because: str, resumed: float) -> str:
    return (
        f"{missed_because} (the schedule was paused and resumed at {misfire.iso(resumed)}: "
        "fires before the resumption are not caught up)"
    )


def split(jobs: Iterable[Job], after: float) -> tuple[list[Job], list[Job]]:
    """(jobs whose missed fires since `after` follow the misfire policy alone, jobs that are
    paused or were resumed after `after`)."""
    plain: list[Job] = []
    held: list[Job] = []
    for job in jobs:
        schedule = job.schedule
        touched = schedule.paused_at is not None or resumed_after(schedule, after) is not None
        (held if touched else plain).append(job)
    return plain, held


async def skipped(
    schedule: domain.Schedule,
    times: Fires,
    *,
    after: float,
    before: float,
    now: float,
    why: str,
    limit: int,
) -> list[claims.FireClaim]:
    """SKIPPED claims, with `why`, for the fires in (after, before) that are due by `now`;
    at most `limit` one by one, the most recent, plus one that summarises the older rest
    (misfire.SkippedRecords)."""
    records = misfire.SkippedRecords(limit, missed_because=why)
    ts = after
    count = 0
    while (fire := times.next_ts(ts)) is not None and fire < before and fire <= now:
        records.add(fire, why)
        ts = fire
        count += 1
        if count % YIELD_EVERY == 0:
            await asyncio.sleep(0)
    return [
        claims.FireClaim(
            schedule_id=schedule.id,
            config_id=schedule.config_id,
            scheduled_for=utc(fire),
            skipped_reason=text,
        )
        for fire, text in records.records()
    ]
