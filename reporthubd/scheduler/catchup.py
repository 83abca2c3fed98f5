"""Missed fires: which ones were missed, and what to claim for each, by the misfire rules.

Two callers. At start, `catch_up` decides every fire between a schedule's latest claimed fire (what
the store shows: `last_run_at` and existing execution rows) and now: they were missed while no
node of ours ran it. During the loop, dispatch hands a timeline that is due later than the
on-time window (store down, loop blocked) to `missed`. Both turn the missed fires into claims
with `misfire.decide` and `misfire.SkippedRecords`: a missed fire that does not run is recorded
SKIPPED with its reason, never dropped.
"""

from __future__ import annotations

import asyncio
import itertools
import math
from collections.abc import AsyncIterator, Iterable
from datetime import datetime
from typing import Protocol

from reporthubd import domain, logs
from reporthubd.calendars import CalendarFires
from reporthubd.config import SchedulerSettings
from reporthubd.cron import FireTimes
from reporthubd.scheduler import calendar_claims, misfire, pausing
from reporthubd.scheduler.timetable import Job, Timeline, TimelineKey, Timetable, utc
from reporthubd.store import claims, schedules
from reporthubd.store.database import Store

log = logs.get(__name__)

# Claims per store transaction during catch-up.
CLAIM_SLICE = 2_000


class Claimer(Protocol):
    """What catch-up needs of dispatch: hand this node's claims on, and the rows that write
    `last_run_at` / `next_run_at` after them."""

    async def submit_claimed(
        self, ours: Iterable[claims.Claimed], committed: datetime, on_time_from: float | None = None
    ) -> None: ...

    def records(self, claimed: Iterable[claims.FireClaim]) -> list[schedules.Run]: ...


def _grace(schedule: domain.Schedule, config: SchedulerSettings) -> float:
    grace = schedule.misfire_grace_seconds
    return float(grace if grace is not None else config.misfire_grace_seconds)


async def missed(
    jobs: Iterable[Job],
    times: FireTimes | CalendarFires,
    after: int,
    now: float,
    reason: str,
    config: SchedulerSettings,
) -> AsyncIterator[list[claims.FireClaim]]:
    """Claims for every fire of `times` in (after, now], for each of `jobs`, by policy; the
    fires of a paused or just resumed schedule as pausing.py says (`_missed_paused`)."""
    plain, held = pausing.split(jobs, after)
    if plain:
        async for chunk in _by_policy(plain, times, after, now, reason, config):
            yield chunk
    for job in held:
        async for chunk in _missed_paused(job, times, after, now, reason, config):
            yield chunk


async def _missed_paused(
    job: Job,
    times: FireTimes | CalendarFires,
    after: int,
    now: float,
    reason: str,
    config: SchedulerSettings,
) -> AsyncIterator[list[claims.FireClaim]]:
    """A paused or resumed schedule's missed fires in (after, now]: those before its
    resumption SKIPPED (not caught up), those from its pause on SKIPPED "paused by ...", the
    rest by policy."""
    schedule, limit = job.schedule, config.skipped_rows_limit
    cron = times.inner if isinstance(times, CalendarFires) else times  # logical fires
    low = after
    resumed = pausing.resumed_after(schedule, after)
    if resumed is not None:
        why = pausing.before_resume(reason, resumed)
        yield await pausing.skipped(
            schedule, cron, after=low, before=resumed, now=now, why=why, limit=limit
        )
        low = max(low, math.ceil(resumed) - 1)
    paused = pausing.paused_ts(schedule)
    async for chunk in _by_policy([job], times, low, now, reason, config, until=paused):
        yield chunk
    if paused is not None:
        yield await pausing.skipped(
            schedule,
            cron,
            after=max(low, math.ceil(paused) - 1),
            before=now + 1,
            now=now,
            why=pausing.reason(schedule),
            limit=limit,
        )


async def _by_policy(
    jobs: Iterable[Job],
    times: FireTimes | CalendarFires,
    after: int,
    now: float,
    reason: str,
    config: SchedulerSettings,
    *,
    until: float | None = None,
) -> AsyncIterator[list[claims.FireClaim]]:
    """Claims for every fire of `times` in (after, now] (and before `until`), for each of
    `jobs`, by policy. Fires beyond a job's grace are SKIPPED whatever the policy; the fires
    within it go through `misfire.decide`. Each job writes at most `skipped_rows_limit`
    SKIPPED rows one by one, plus one that summarises the older rest (misfire.SkippedRecords),
    so a long outage of a per-second schedule stays in bounded memory and rows."""
    limit = config.skipped_rows_limit
    members = [(job, _grace(job.schedule, config)) for job in jobs]
    beyond = {grace: misfire.SkippedRecords(limit, missed_because=reason) for _, grace in members}
    beyond_reason = {
        grace: f"{reason} (beyond the misfire grace of {grace:g} s)" for grace in beyond
    }
    within: dict[int, list[int]] = {job.schedule.id: [] for job, _ in members}
    ts: float = after
    for count in itertools.count(1):
        fire = times.next_ts(ts)
        if fire is None or fire > now or (until is not None and fire >= until):
            break
        ts = fire
        late = now - fire
        was_missed = late > misfire.ON_TIME_SECONDS
        if was_missed:
            for grace, records in beyond.items():
                if late > grace:
                    records.add(fire, beyond_reason[grace])
        for job, grace in members:
            if not was_missed or late <= grace:
                within[job.schedule.id].append(fire)
        if count % 10_000 == 0:
            await asyncio.sleep(0)  # a week of a per-second schedule: let the loop breathe
    chunk: list[claims.FireClaim] = []
    for job, grace in members:
        schedule = job.schedule
        decision = misfire.decide(
            within[schedule.id],
            now=now,
            policy=schedule.misfire_policy,
            grace_seconds=grace,
            run_all_limit=config.run_all_limit,
            missed_because=reason,
        )
        records = beyond[grace].copy()
        for fire, why in decision.skipped:
            records.add(fire, why)
        if isinstance(times, CalendarFires):  # the instants carry logical fires
            chunk += calendar_claims.missed_claims(schedule, times, records.records(), decision.run)
        else:
            chunk += _plain_claims(schedule, records.records(), decision.run)
        if len(chunk) >= CLAIM_SLICE:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _plain_claims(
    schedule: domain.Schedule, skipped: Iterable[tuple[int, str]], run: Iterable[int]
) -> list[claims.FireClaim]:
    chunk = [
        claims.FireClaim(
            schedule_id=schedule.id,
            config_id=schedule.config_id,
            scheduled_for=utc(fire),
            skipped_reason=why,
        )
        for fire, why in skipped
    ]
    chunk += [
        claims.FireClaim(
            schedule_id=schedule.id, config_id=schedule.config_id, scheduled_for=utc(fire)
        )
        for fire in run
    ]
    return chunk


def missed_reason(first_due: float, now: float, store_down_since: float | None) -> str:
    """Why fires due since `first_due` were not claimed on time, while this node ran."""
    if store_down_since is not None:
        return (
            f"missed: store unavailable from {misfire.iso(store_down_since)} to {misfire.iso(now)}"
        )
    return f"missed: scheduler blocked from {misfire.iso(first_due)} to {misfire.iso(now)}"


def down_from(base: int, timeline: Timeline, last_seen: datetime | None) -> float:
    """The start of the outage: the last node heartbeat in the store (a graceful stop writes
    one) when it falls between the last claimed fire and the first missed one, else that
    last claimed fire (no heartbeat, or a node was alive when the fire was missed)."""
    seen = last_seen.timestamp() if last_seen is not None else None
    first_missed = timeline.fires.next_ts(base)
    if seen is not None and first_missed is not None and base <= seen < first_missed:
        return seen
    return float(base)


async def catch_up(
    *,
    store: Store,
    timetable: Timetable,
    claimer: Claimer,
    config: SchedulerSettings,
    node_id: str,
    now: float,
    last_seen: datetime | None,
) -> int:
    """Decide by policy the fires missed since each schedule's latest claimed fire; schedules
    that never fired start from now. Schedules of one timeline with the same latest fire are
    enumerated together. Sets each job's `last_fire`. Returns how many fires were decided."""
    latest = await claims.latest_fires(store)
    groups: dict[tuple[TimelineKey, int], list[Job]] = {}
    for job in timetable.jobs.values():
        known = [
            t.timestamp()
            for t in (latest.get(job.schedule.id), job.schedule.last_run_at)
            if t is not None
        ]
        if not known:
            continue
        base = int(max(known))
        job.last_fire = base
        groups.setdefault((job.timeline.key, base), []).append(job)
    decided = 0
    pending: list[claims.FireClaim] = []
    for (_, base), jobs in groups.items():
        timeline = jobs[0].timeline
        start = misfire.iso(down_from(base, timeline, last_seen))
        reason = f"missed: daemon down from {start} to {misfire.iso(now)}"
        async for chunk in missed(jobs, timeline.fires, base, now, reason, config):
            pending += chunk
            if len(pending) >= CLAIM_SLICE:
                decided += await _claim_caught_up(store, claimer, pending, node_id, now)
                pending = []
    decided += await _claim_caught_up(store, claimer, pending, node_id, now)
    if decided:
        log.info("scheduler caught up", decided=decided, node_id=node_id)
    return decided


async def _claim_caught_up(
    store: Store, claimer: Claimer, batch: list[claims.FireClaim], node_id: str, now: float
) -> int:
    if not batch:
        return 0
    ours, committed = await claims.claim_fires(store, batch, node_id=node_id)
    # every fire due before the start was missed while no scheduler ran: catch-up lateness
    await claimer.submit_claimed(ours, committed, now)
    await schedules.record_runs(store, claimer.records(c.claim for c in ours))
    return len(batch)
