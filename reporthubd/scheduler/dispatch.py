"""Dispatch of due fires: claim every fire due now in the store, hand this node's claims to
`submit`, move the timelines on, and write `last_run_at` / `next_run_at`.

Exactly once: a claim is the insert of the fire's execution row under the unique key
(schedule_id, scheduled_for, attempt=0); whichever node inserts it runs it. The fires due at one
instant are claimed in slices, one transaction each (the first small, so its fires start while
the rest are written). For a busy instant the claims are prepared (ids drawn, statements written)
shortly before it is due, so that at the due instant only the round trips remain. A claim whose
reply was lost may or may not have committed: its fires keep the ids it sent, and the retry
sends them again, so rows that did commit are found as this node's, not as another's.

This is the per-fire hot path (bench/scheduler.py): keep it free of extra lookups, allocations
and store round trips per fire.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from reporthubd import calendars, domain, logs, metrics
from reporthubd.calendars import CalendarFires
from reporthubd.config import SchedulerSettings
from reporthubd.lifecycle.executions import Lifecycle
from reporthubd.scheduler import calendar_claims, catchup, misfire, pausing, stats
from reporthubd.scheduler.timetable import Timeline, Timetable, utc
from reporthubd.store import claims, schedules
from reporthubd.store.database import Store, error_line

log = logs.get(__name__)

Submit = Callable[[str], object]
"""Hands one PENDING execution (by id) to the engine; may return an awaitable."""

# The fires due at one instant are claimed in slices, one transaction each: the first is small,
# so its fires start while the rest are written; after it, CLAIM_PARALLEL transactions are in
# flight at once, each on its own store connection (never more than the store's pool keeps).
FIRST_SLICE = 250
LOOP_SLICE = 1_000
CLAIM_PARALLEL = 4
# The claims of the next instant are made ready (ids drawn, statements written) this long
# before it is due, so that at the due instant only the round trips to the store remain:
# twice the expected preparation time, within these bounds.
PREPARE_LEAD_MIN = 0.05
PREPARE_LEAD_MAX = 5.0
# Instants with fewer fires are claimed as they come: one small INSERT is written out in no time,
# and preparing it would cost a store round trip of its own.
PREPARE_MIN_FIRES = 100


def leave_pending(execution_id: str) -> None:
    """A submitter for a daemon without an engine: the claimed row stays PENDING."""


@dataclass(frozen=True)
class Prepared:
    """The claims of every timeline due at `due`, ready to send. Valid only while the timetable
    is the one it was built from (`generation`); a dispatch consumes it, used or not."""

    due: int
    generation: int
    slices: list[claims.PreparedClaims]


def _slices(batch: list[claims.FireClaim]) -> list[list[claims.FireClaim]]:
    out: list[list[claims.FireClaim]] = []
    start, size = 0, FIRST_SLICE
    while start < len(batch):
        out.append(batch[start : start + size])
        start, size = start + size, LOOP_SLICE
    return out


def _fire_claim(schedule: domain.Schedule, fire: datetime, fire_ts: int) -> claims.FireClaim:
    """The claim of `schedule`'s fire at `fire` (`fire_ts`): recorded SKIPPED while paused."""
    return claims.FireClaim(
        schedule_id=schedule.id,
        config_id=schedule.config_id,
        scheduled_for=fire,
        skipped_reason=None
        if schedule.paused_at is None
        else pausing.skip_reason(schedule, fire_ts),
    )


def _fire_key(claim: claims.FireClaim) -> tuple[int, datetime]:
    return claim.schedule_id, claim.scheduled_for


class Dispatcher:
    """Claims and submits the fires the timetable says are due. `store_failed` is told of
    every failed store call (the recovery sweep's contact tracking)."""

    def __init__(
        self,
        *,
        store: Store,
        timetable: Timetable,
        config: SchedulerSettings,
        node_id: str,
        submit: Submit,
        store_failed: Callable[[], None],
        lifecycle: Lifecycle,
    ) -> None:
        self.store = store
        self.lifecycle = lifecycle
        self.timetable = timetable
        self.jobs = timetable.jobs  # the same dict for the timetable's life: read per fire
        self.config = config
        self.node_id = node_id
        self.submit = submit
        self.store_failed = store_failed
        self.lateness = stats.on_time()
        self.catch_up_lateness = stats.catch_up()
        self.claimed_count = 0
        self.skipped_count = 0
        self.store_down_since: float | None = None
        self.prepared: Prepared | None = None
        # Fires of a claim that failed, with the ids it sent: reused by the retry.
        self._uncertain: dict[claims.FireKey, str] = {}
        self._prepare_seconds_per_fire = 20e-6

    # -- claims made ready before the due instant ----------------------------------------------

    def is_prepared(self, due: int) -> bool:
        prepared = self.prepared
        return (
            prepared is not None
            and prepared.due == due
            and prepared.generation == self.timetable.generation
        )

    def prepare_lead(self, fires: int) -> float:
        expected = fires * self._prepare_seconds_per_fire
        return min(PREPARE_LEAD_MAX, max(PREPARE_LEAD_MIN, 2 * expected))

    async def prepare(self, due: int) -> None:
        """Make the claims of every fire due at `due` ready to send (claims.prepare_claims):
        drawing ids and writing statements out is CPU work that would otherwise stand between
        the due instant and the store. Nothing is written to the store here."""
        generation = self.timetable.generation
        started = time.perf_counter()
        fire = utc(due)
        batch = [
            _fire_claim(job.schedule, fire, due)
            for timeline in self.timetable.due_at(due)
            if not isinstance(timeline.fires, CalendarFires)  # claimed as they come
            for job in timeline.members.values()
        ]
        batch.sort(key=_fire_key)
        try:
            slices = await claims.prepare_claims(self.store, _slices(batch), node_id=self.node_id)
            if len(slices) > 2:  # several transactions will be in flight at once
                await claims.open_connections(self.store, self._parallel())
        except Exception as exc:  # the dispatch prepares them itself, at the due instant
            log.warning("preparing claims failed", fires=len(batch), error=error_line(exc))
            slices = []
        if batch:
            spent = (time.perf_counter() - started) / len(batch)
            self._prepare_seconds_per_fire = 0.5 * self._prepare_seconds_per_fire + 0.5 * spent
        self.prepared = Prepared(due=due, generation=generation, slices=slices)

    def _parallel(self) -> int:
        return max(1, min(CLAIM_PARALLEL, self.store.settings.pool_size))

    # -- dispatch ------------------------------------------------------------------------------

    async def dispatch(self, now: float) -> bool:
        """Claim every fire due at `now`, submit ours, then compute next times. Returns False
        when the store failed (nothing is lost: the fires stay due and are retried)."""
        timetable = self.timetable
        push = timetable.push
        due = timetable.pop_due(now)
        # Prepared claims are used once: after a failed dispatch their ids may be in the store.
        prepared, self.prepared = self.prepared, None
        ready: list[claims.PreparedClaims] = []
        ready_for: int | None = None
        if (
            prepared is not None
            and prepared.slices
            and prepared.generation == timetable.generation
            and now - prepared.due <= misfire.ON_TIME_SECONDS
        ):
            ready, ready_for = prepared.slices, prepared.due
        batch: list[claims.FireClaim] = []
        handled: list[tuple[Timeline, int]] = []
        for timeline in due:
            assert timeline.next_ts is not None
            first = timeline.next_ts
            calendar = isinstance(timeline.fires, CalendarFires)
            if first == ready_for and not calendar:
                handled.append((timeline, first))
                continue
            if calendar and now - first <= misfire.ON_TIME_SECONDS:
                # its logical fires are not `first` (calendar_claims)
                batch += calendar_claims.claims_at(timeline, first, pausing.skip_reason)
                handled.append((timeline, first))
                continue
            if now - first <= misfire.ON_TIME_SECONDS:
                fire = utc(first)
                batch += [
                    _fire_claim(job.schedule, fire, first) for job in timeline.members.values()
                ]
                handled.append((timeline, first))
                continue
            reason = catchup.missed_reason(first, now, self.store_down_since)
            async for chunk in catchup.missed(
                timeline.members.values(), timeline.fires, first - 1, now, reason, self.config
            ):
                batch += chunk
            handled.append((timeline, int(now)))  # every fire up to now is decided
        # in the order of the fire key: inserts walk the unique index instead of scattering
        batch.sort(key=_fire_key)
        slices: list[claims.PreparedClaims | list[claims.FireClaim]] = [*ready, *_slices(batch)]
        was = [(timeline, timeline.next_ts) for timeline, _ in handled]
        for timeline, last in handled:
            timeline.next_ts = timeline.fires.next_ts(last)
        # An instant of one small slice (most instants but minute boundaries) writes
        # last_run_at / next_run_at in its claim's own round trip; a bigger one writes them
        # after all its claims, so that they do not hold up its later slices.
        together = len(slices) == 1 and not ready
        try:
            on_time_from = now - misfire.ON_TIME_SECONDS
            ours = await self._claim(slices, self.records(batch) if together else (), on_time_from)
        except Exception as exc:
            self.store_failed()
            if self.store_down_since is None:
                self.store_down_since = now
            log.warning("claiming fires failed; retrying", fires=len(batch), error=error_line(exc))
            for timeline, next_ts in was:
                timeline.next_ts = next_ts
            for timeline in due:
                push(timeline)
            return False
        if self.store_down_since is not None:
            log.info("store reachable again", down_since=misfire.iso(self.store_down_since))
            self.store_down_since = None
        self._uncertain.clear()  # this dispatch held every fire a failed one left due
        for timeline, _ in handled:
            push(timeline)
        timetable.horizon = max(timetable.horizon, now)
        if together:
            return True
        try:
            await schedules.record_runs(self.store, self.records(c.claim for c in ours))
        except Exception as exc:  # bookkeeping only: the claims are committed
            self.store_failed()
            log.warning("writing last_run_at failed", error=error_line(exc))
        return True

    async def _claim(
        self,
        slices: list[claims.PreparedClaims | list[claims.FireClaim]],
        then_record: Sequence[schedules.Run] = (),
        on_time_from: float | None = None,
    ) -> list[claims.Claimed]:
        """Claim `slices` (prepared or not), one transaction each, and submit each slice's
        claims as it commits. The first slice goes alone, so its fires start while later ones
        are still being written; then `_parallel()` slices are written at once (the store, not
        this process, is the bottleneck). `then_record` is written after the first slice's
        commit, in its round trip. Raises if any slice failed: the fires stay due, and the
        retry is exact because the unique key refuses what did commit. `on_time_from`: see
        submit_claimed."""
        ours: list[claims.Claimed] = []
        if len(slices) == 1 and not isinstance(slices[0], claims.PreparedClaims):
            # most instants: one small slice, claimed on the store's claim line
            ours, committed = await self._claim_one(slices[0], then_record)
            await self.submit_claimed(ours, committed, on_time_from)
            return ours
        gate = asyncio.Semaphore(self._parallel())

        async def claim_slice(
            part: claims.PreparedClaims | list[claims.FireClaim],
            records: Sequence[schedules.Run] = (),
        ) -> None:
            async with gate:
                claimed, committed = await self._claim_one(part, records)
            await self.submit_claimed(claimed, committed, on_time_from)
            ours.extend(claimed)

        if slices:
            await claim_slice(slices[0], then_record)
        results = await asyncio.gather(
            *(claim_slice(part) for part in slices[1:]), return_exceptions=True
        )
        for result in results:
            if isinstance(result, BaseException):
                raise result
        return ours

    async def _claim_one(
        self,
        part: claims.PreparedClaims | list[claims.FireClaim],
        then_record: Sequence[schedules.Run] = (),
    ) -> tuple[list[claims.Claimed], datetime]:
        """Claim one slice in one transaction (claims.claim_prepared)."""
        if not isinstance(part, claims.PreparedClaims):
            part = claims.ready_claims(part, node_id=self.node_id, reuse=self._uncertain)
        try:
            return await claims.claim_prepared(self.store, part, then_record=then_record)
        except BaseException:
            # Committed or not? (A reply lost after the COMMIT.) The retry sends the same ids,
            # so that rows of this attempt are found as ours, not as taken.
            for claim, execution_id in zip(part.claims, part.ids, strict=True):
                self._uncertain[(claim.schedule_id, claim.scheduled_for)] = execution_id
            raise

    # -- handing claims on ---------------------------------------------------------------------

    async def submit_claimed(
        self,
        ours: Iterable[claims.Claimed],
        committed: datetime,
        on_time_from: float | None = None,
    ) -> None:
        """Count and submit this node's claims (SKIPPED ones are only counted); each job
        remembers its latest claimed fire. A fire due before `on_time_from` is a catch-up fire,
        whose lateness is counted apart from the on-time fires' (stats.py): dispatch passes
        `misfire.ON_TIME_SECONDS` before the instant it decided the fires (the misfire rules'
        window), the start's catch-up the start itself (every fire due before it was missed
        while no scheduler ran). Default: the on-time window before the commit."""
        commit_ts = committed.timestamp()
        if on_time_from is None:
            on_time_from = commit_ts - misfire.ON_TIME_SECONDS
        ours = list(ours)
        if any(claimed.claim.shift is not None for claimed in ours):
            await claims.record_shifts(self.store, ours)  # moved by a calendar: rare
        self.lifecycle.claimed(ours)
        for claimed in ours:
            job = self.jobs.get(claimed.claim.schedule_id)
            fire_ts = claimed.claim.scheduled_for.timestamp()
            if job is not None and (job.last_fire is None or fire_ts > job.last_fire):
                job.last_fire = int(fire_ts)
            if claimed.skipped:
                self.skipped_count += 1
                if pausing.is_pause_skip(claimed.claim.skipped_reason):
                    metrics.PAUSED_FIRES.inc()  # not missed: nobody wanted it run
                    continue
                if calendars.is_calendar_skip(claimed.claim.skipped_reason):
                    metrics.CALENDAR_SKIPPED_FIRES.inc()  # a closed day: not missed either
                    continue
                policy = job.schedule.misfire_policy.value if job is not None else "unknown"
                metrics.MISSED_FIRES.labels(policy).inc()
                continue
            self.claimed_count += 1
            late = commit_ts - fire_ts
            if fire_ts >= on_time_from:
                self.lateness.add(late)
                metrics.FIRE_LATENESS.observe(max(0.0, late))
            else:
                self.catch_up_lateness.add(late)
                metrics.CATCH_UP_LATENESS.observe(max(0.0, late))
            await self.submit_one(claimed.execution_id)

    async def submit_one(self, execution_id: str) -> None:
        """Hand one execution to the engine; if that fails, the still PENDING row is marked
        FAILED with the reason (it would otherwise wait for an adoption that never comes)."""
        try:
            result = self.submit(execution_id)
            if inspect.isawaitable(result):
                await result
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.error("submitting an execution failed", execution_id=execution_id, exc_info=exc)
            await self.lifecycle.fail_unstarted(
                execution_id, f"could not start: {type(exc).__name__}: {exc}"
            )

    def records(self, claimed: Iterable[claims.FireClaim]) -> list[schedules.Run]:
        """(schedule_id, last_run_at, next_run_at) to write after claims: the latest fire
        claimed to run, or None when every fire claimed for the schedule was SKIPPED (its
        next_run_at must still move on, or it would name a missed fire until the next run).
        Another node that claimed the same fire writes the same values."""
        last: dict[int, datetime | None] = {}
        for claim in claimed:
            sid, fire = claim.schedule_id, claim.scheduled_for
            if claim.skipped_reason is None:
                previous = last.get(sid)
                last[sid] = fire if previous is None else max(previous, fire)
            else:
                last.setdefault(sid, None)
        next_of = self.timetable.next_of
        return [(sid, fire, next_of(sid)) for sid, fire in last.items()]
