"""The fire loop: a heap of next fire times, claims in batches, misfire catch-up, reload diffing,
manual triggers and the recovery of lost executions.

Schedules that share an expression, a zone and bounds share one `Timeline`, so a minute boundary
with thousands of due schedules computes a handful of next times, not thousands. The loop sleeps
until the earliest timeline is due (woken early by reloads and triggers), claims every due fire
of every due timeline in one store transaction, hands this node's claims to `submit`, and only
then computes the next times and writes `last_run_at` / `next_run_at`.

Exactly once: a claim is the insert of the fire's execution row under the unique key
(schedule_id, scheduled_for, attempt=0); whichever node inserts it runs it.
"""

from __future__ import annotations

import asyncio
import heapq
import inspect
import itertools
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from reporthubd import domain, logs, metrics
from reporthubd.config import Settings
from reporthubd.cron import FireTimes, parse_cron
from reporthubd.recent import Recent
from reporthubd.scheduler import misfire
from reporthubd.scheduler.clock import Clock, SystemClock
from reporthubd.scheduler.stats import Lateness
from reporthubd.store import claims, definitions, executions, schedules
from reporthubd.store.database import Store, error_line

log = logs.get(__name__)

Submit = Callable[[str], object]
"""Hands one PENDING execution (by id) to the engine; may return an awaitable."""

# Claims per store transaction during catch-up.
CLAIM_SLICE = 2_000
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
# Instants with fewer fires are claimed as they come: one small INSERT is written out in no time,
# and preparing it would cost a store round trip of its own.
PREPARE_MIN_FIRES = 100
# Adopted queued runs remembered (so each is submitted once while it waits for a slot).
ADOPTED_REMEMBERED = 10_000
PREPARE_LEAD_MAX = 5.0


class Spawner(Protocol):
    def spawn(
        self, name: str, coro: Coroutine[Any, Any, Any], *, forever: bool = True
    ) -> asyncio.Task[Any]: ...


def leave_pending(execution_id: str) -> None:
    """A submitter for a daemon without an engine: the claimed row stays PENDING."""


def _utc(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


TimelineKey = tuple[str, str, float | None, float | None]


class Timeline:
    """The fires shared by every schedule with the same expression, zone and bounds."""

    __slots__ = ("fires", "key", "members", "next_ts", "token")

    def __init__(self, key: TimelineKey, fires: FireTimes, next_ts: int | None) -> None:
        self.key = key
        self.fires = fires
        self.members: dict[int, Job] = {}
        self.next_ts = next_ts
        self.token = 0


class Job:
    """One loaded schedule."""

    __slots__ = ("last_fire", "schedule", "timeline")

    def __init__(self, schedule: domain.Schedule, timeline: Timeline) -> None:
        self.schedule = schedule
        self.timeline = timeline
        self.last_fire: int | None = None


def timeline_key(schedule: domain.Schedule) -> TimelineKey:
    return (
        " ".join(parse_cron(schedule.cron_expression).fields),
        schedule.timezone.key,
        schedule.start_at.timestamp() if schedule.start_at else None,
        schedule.end_at.timestamp() if schedule.end_at else None,
    )


def _same(a: domain.Schedule, b: domain.Schedule) -> bool:
    """Equal apart from the columns reporthubd itself writes (and updated_at)."""
    volatile = {"last_run_at": None, "next_run_at": None, "updated_at": None}
    return {**a.__dict__, **volatile} == {**b.__dict__, **volatile}


@dataclass
class ReloadReport:
    at: datetime
    source: str
    ok: bool
    message: str
    added: int = 0
    changed: int = 0
    removed: int = 0
    disabled: int = 0


@dataclass(frozen=True)
class _Prepared:
    """The claims of every timeline due at `due`, ready to send. Valid only while the schedules
    are those it was built from (`generation`); a dispatch consumes it, used or not."""

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


STATUS_MAX_AGE_SECONDS = 1.0


class Scheduler:
    def __init__(
        self,
        *,
        store: Store,
        settings: Settings,
        node_id: str,
        submit: Submit = leave_pending,
        clock: Clock | None = None,
        started_at: datetime | None = None,
        last_seen: datetime | None = None,
    ) -> None:
        self.store = store
        self.settings = settings
        self.node_id = node_id
        self.submit = submit
        self.clock: Clock = clock or SystemClock()
        self.started_at = started_at or datetime.now(UTC)
        # Start of this node's continuous contact with the store (see judges_others).
        self._contact_since = self.started_at.timestamp()
        # The latest node heartbeat the store showed before this node registered: where the
        # outage named by the catch-up's SKIPPED reasons starts.
        self.last_seen = last_seen
        self.lateness = Lateness()
        self.last_reload: ReloadReport | None = None
        self.disabled: dict[int, str] = {}
        self.config_names: dict[int, str] = {}
        self.jobs: dict[int, Job] = {}
        self.store_down_since: float | None = None
        self.claimed_count = 0
        self.skipped_count = 0
        self.recovered_count = 0
        self.adopted_count = 0
        self._adopted: dict[str, None] = {}  # ids submitted by _adopt, oldest first
        self._timelines: dict[TimelineKey, Timeline] = {}
        self._heap: list[HeapEntry] = []
        self._seq = itertools.count()
        self._wake = asyncio.Event()
        self._dispatching = asyncio.Lock()
        self._reloading = asyncio.Lock()
        self._horizon = 0.0
        self._generation = 0
        self._prepared: _Prepared | None = None
        # Fires of a claim that failed, with the ids it sent: reused by the retry.
        self._uncertain: dict[claims.FireKey, str] = {}
        self._prepare_seconds_per_fire = 20e-6
        self._fingerprint: definitions.Fingerprint | None = None
        self._tasks: list[asyncio.Task[Any]] = []
        self._stopped = False
        # Status is polled by dashboards: concurrent requests share one store query per second.
        self._active_counts = Recent(
            lambda: claims.count_active(self.store), max_age_seconds=STATUS_MAX_AGE_SECONDS
        )

    # -- lifecycle ------------------------------------------------------------------------------

    async def start(self, tasks: Spawner) -> None:
        """Load the schedules, catch up on what the store shows was missed, then start the loop,
        the definitions watcher and the lost-execution sweep as named tasks of `tasks`."""
        found = await self._load()
        now = self.clock.now()
        self._horizon = now
        metrics.observe_gauges(
            {
                metrics.SCHEDULES_LOADED: lambda: float(len(self.jobs)),
                metrics.SCHEDULES_DISABLED: lambda: float(len(self.disabled)),
            }
        )
        self._apply(found, now)
        self.last_reload = ReloadReport(
            at=_utc(now),
            source="start",
            ok=True,
            message=f"{len(self.jobs)} schedules loaded, {len(self.disabled)} disabled",
        )
        await self._catch_up(now)
        await self.sweep()
        self._tasks = [
            tasks.spawn("scheduler-loop", self._run()),
            tasks.spawn("scheduler-watch", self._watch_definitions()),
            tasks.spawn("scheduler-sweep", self._sweep_loop()),
        ]
        log.info(
            "scheduler started",
            node_id=self.node_id,
            schedules=len(self.jobs),
            timelines=len(self._timelines),
            disabled=len(self.disabled),
        )

    async def stop(self) -> None:
        """Stop intake: let a dispatch in flight finish, then end the loop and its helpers."""
        if self._stopped:
            return
        self._stopped = True
        async with self._dispatching:
            for task in self._tasks:
                task.cancel("scheduler stopping")
        await asyncio.gather(*self._tasks, return_exceptions=True)
        log.info("scheduler stopped", node_id=self.node_id, claimed=self.claimed_count)

    def wake(self) -> None:
        self._wake.set()

    # -- loading and reload ---------------------------------------------------------------------

    async def _load(self) -> definitions.Definitions:
        found = await definitions.load_definitions(
            self.store, default_timezone=self.settings.scheduler.timezone
        )
        self._fingerprint = await definitions.fingerprint(self.store)
        return found

    async def reload(self, *, source: str, settings: Settings | None = None) -> ReloadReport:
        """Read the definitions again and diff them in: unchanged schedules keep their next
        fire, changed ones are recomputed, removed ones stop, new ones start. A failure keeps
        the schedules as they were. Never raises."""
        async with self._reloading:
            now = self.clock.now()
            try:
                if settings is not None:
                    self.settings = settings
                found = await self._load()
            except Exception as exc:
                self.store_failed()
                report = ReloadReport(
                    at=_utc(now), source=source, ok=False, message=f"{type(exc).__name__}: {exc}"
                )
                log.error("scheduler reload failed", source=source, reason=report.message)
            else:
                report = self._apply(found, self.clock.now(), source=source)
                self._wake.set()
                log.info(
                    "scheduler reloaded",
                    source=source,
                    added=report.added,
                    changed=report.changed,
                    removed=report.removed,
                    disabled=report.disabled,
                )
            self.last_reload = report
            return report

    async def on_reload(self, settings: Settings) -> str:
        """The daemon's reload hook (SIGHUP, POST /api/scheduler/reload)."""
        report = await self.reload(source="reload", settings=settings)
        if not report.ok:
            raise RuntimeError(f"scheduler: {report.message}")
        return f"scheduler: {report.message}"

    def _apply(
        self, found: definitions.Definitions, now: float, *, source: str = "start"
    ) -> ReloadReport:
        """Swap the new definitions in, synchronously (the loop sees the old or the new state,
        never a mix). New timelines start after the loop's horizon (what it has dispatched)."""
        self._generation += 1  # claims prepared from the old state are void
        horizon = max(self._horizon, 0.0) or now
        disabled = {
            int(str(error.row_id)): "; ".join(error.problems)
            for error in found.errors
            if error.table == "report_schedules" and str(error.row_id).isdigit()
        }
        added = changed = 0
        seen: set[int] = set()
        never: dict[tuple[str, str], bool] = {}
        for schedule in found.schedules.values():
            job = self.jobs.get(schedule.id)
            try:
                key = timeline_key(schedule)
            except ValueError as exc:  # rows.schedule validated it; defensive
                disabled[schedule.id] = str(exc)
                continue
            if key[:2] not in never:  # once per expression and zone, not per schedule
                never[key[:2]] = _never_fires(schedule, now)
            if never[key[:2]]:
                disabled[schedule.id] = (
                    f"cron_expression: {schedule.cron_expression!r} never fires "
                    "(no matching date in the next 50 years)"
                )
                continue
            seen.add(schedule.id)
            if job is not None and job.timeline.key == key:
                if not _same(job.schedule, schedule):
                    changed += 1
                job.schedule = schedule
                continue
            if job is not None:
                changed += 1
                self._leave(job)
            else:
                added += 1
            timeline = self._timeline(key, schedule, horizon)
            new_job = Job(schedule, timeline)
            if job is not None:
                new_job.last_fire = job.last_fire
            timeline.members[schedule.id] = new_job
            self.jobs[schedule.id] = new_job
        removed = 0
        for schedule_id in [sid for sid in self.jobs if sid not in seen]:
            self._leave(self.jobs.pop(schedule_id))
            removed += 1
        self.disabled = disabled
        self.config_names = {config.id: config.name for config in found.configs.values()}
        message = (
            f"{len(self.jobs)} schedules ({added} added, {changed} changed, {removed} removed), "
            f"{len(disabled)} disabled"
        )
        return ReloadReport(
            at=_utc(now),
            source=source,
            ok=True,
            message=message,
            added=added,
            changed=changed,
            removed=removed,
            disabled=len(disabled),
        )

    def _timeline(self, key: TimelineKey, schedule: domain.Schedule, horizon: float) -> Timeline:
        timeline = self._timelines.get(key)
        if timeline is None:
            fires = FireTimes(
                parse_cron(schedule.cron_expression),
                schedule.timezone,
                start_at=schedule.start_at,
                end_at=schedule.end_at,
            )
            timeline = Timeline(key, fires, fires.next_ts(horizon))
            self._timelines[key] = timeline
            self._push(timeline)
        return timeline

    def _leave(self, job: Job) -> None:
        timeline = job.timeline
        timeline.members.pop(job.schedule.id, None)
        if not timeline.members:
            self._timelines.pop(timeline.key, None)
            timeline.token += 1  # its heap entries are now stale

    def _push(self, timeline: Timeline) -> None:
        timeline.token += 1
        if timeline.next_ts is not None:
            heapq.heappush(
                self._heap, (timeline.next_ts, next(self._seq), timeline.token, timeline)
            )

    def _peek(self) -> int | None:
        heap = self._heap
        while heap:
            ts, _, token, timeline = heap[0]
            if token == timeline.token and timeline.members:
                return ts
            heapq.heappop(heap)
        return None

    # -- the loop -------------------------------------------------------------------------------

    async def _run(self) -> None:
        backoff = 0.0
        while True:
            self._wake.clear()
            due: float | None = self._peek()
            if backoff:
                retry_at = self.clock.now() + backoff
                due = retry_at if due is None else max(due, retry_at)
            elif (
                due is not None
                and not self._is_prepared(int(due))
                and (fires := self._fires_at(int(due))) >= PREPARE_MIN_FIRES
            ):
                lead = self._prepare_lead(fires)
                if self.clock.now() < due - lead:
                    await self.clock.sleep_until(due - lead, self._wake)
                    if self._wake.is_set():
                        continue  # a reload or trigger: look at the heap again
                if self.clock.now() < due:
                    await self._prepare(int(due))
                    continue
            await self.clock.sleep_until(due, self._wake)
            now = self.clock.now()
            peek = self._peek()
            if peek is None or peek > now:
                continue
            async with self._dispatching:
                ok = await self.dispatch(now)
            backoff = 0.0 if ok else min(10.0, max(1.0, backoff * 2))

    # -- claims made ready before the due instant ------------------------------------------------

    def _is_prepared(self, due: int) -> bool:
        prepared = self._prepared
        return (
            prepared is not None and prepared.due == due and prepared.generation == self._generation
        )

    def _due_at(self, due: int) -> list[Timeline]:
        return due_timelines(self._heap, due)

    def _fires_at(self, due: int) -> int:
        return sum(len(t.members) for t in self._due_at(due))

    def _prepare_lead(self, fires: int) -> float:
        expected = fires * self._prepare_seconds_per_fire
        return min(PREPARE_LEAD_MAX, max(PREPARE_LEAD_MIN, 2 * expected))

    async def _prepare(self, due: int) -> None:
        """Make the claims of every fire due at `due` ready to send (claims.prepare_claims):
        drawing ids and writing statements out is CPU work that would otherwise stand between
        the due instant and the store. Nothing is written to the store here."""
        generation = self._generation
        started = time.perf_counter()
        fire = _utc(due)
        batch = [
            claims.FireClaim(
                schedule_id=job.schedule.id, config_id=job.schedule.config_id, scheduled_for=fire
            )
            for timeline in self._due_at(due)
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
        self._prepared = _Prepared(due=due, generation=generation, slices=slices)

    def _parallel(self) -> int:
        return max(1, min(CLAIM_PARALLEL, self.store.settings.pool_size))

    async def dispatch(self, now: float) -> bool:
        """Claim every fire due at `now`, submit ours, then compute next times. Returns False
        when the store failed (nothing is lost: the fires stay due and are retried)."""
        due: list[Timeline] = []
        while (ts := self._peek()) is not None and ts <= now:
            _, _, _, timeline = heapq.heappop(self._heap)
            due.append(timeline)
        # Prepared claims are used once: after a failed dispatch their ids may be in the store.
        prepared, self._prepared = self._prepared, None
        ready: list[claims.PreparedClaims] = []
        ready_for: int | None = None
        if (
            prepared is not None
            and prepared.slices
            and prepared.generation == self._generation
            and now - prepared.due <= misfire.ON_TIME_SECONDS
        ):
            ready, ready_for = prepared.slices, prepared.due
        batch: list[claims.FireClaim] = []
        handled: list[tuple[Timeline, int]] = []
        for timeline in due:
            assert timeline.next_ts is not None
            first = timeline.next_ts
            if first == ready_for:
                handled.append((timeline, first))
                continue
            if now - first <= misfire.ON_TIME_SECONDS:
                fire = _utc(first)
                batch += [
                    claims.FireClaim(
                        schedule_id=job.schedule.id,
                        config_id=job.schedule.config_id,
                        scheduled_for=fire,
                    )
                    for job in timeline.members.values()
                ]
                handled.append((timeline, first))
                continue
            reason = self._missed_reason(first, now)
            async for chunk in self._missed(
                timeline.members.values(), timeline.fires, first - 1, now, reason
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
            ours = await self._claim(slices, self._records(batch) if together else ())
        except Exception as exc:
            self.store_failed()
            if self.store_down_since is None:
                self.store_down_since = now
            log.warning("claiming fires failed; retrying", fires=len(batch), error=error_line(exc))
            for timeline, next_ts in was:
                timeline.next_ts = next_ts
            for timeline in due:
                self._push(timeline)
            return False
        if self.store_down_since is not None:
            log.info("store reachable again", down_since=misfire.iso(self.store_down_since))
            self.store_down_since = None
        self._uncertain.clear()  # this dispatch held every fire a failed one left due
        for timeline, _ in handled:
            self._push(timeline)
        self._horizon = max(self._horizon, now)
        if together:
            return True
        try:
            await schedules.record_runs(self.store, self._records(c.claim for c in ours))
        except Exception as exc:  # bookkeeping only: the claims are committed
            self.store_failed()
            log.warning("writing last_run_at failed", error=error_line(exc))
        return True

    async def _claim(
        self,
        slices: list[claims.PreparedClaims | list[claims.FireClaim]],
        then_record: Sequence[schedules.Run] = (),
    ) -> list[claims.Claimed]:
        """Claim `slices` (prepared or not), one transaction each, and submit each slice's
        claims as it commits. The first slice goes alone, so its fires start while later ones
        are still being written; then `_parallel()` slices are written at once (the store, not
        this process, is the bottleneck). `then_record` is written after the first slice's
        commit, in its round trip. Raises if any slice failed: the fires stay due, and the
        retry is exact because the unique key refuses what did commit."""
        ours: list[claims.Claimed] = []
        gate = asyncio.Semaphore(self._parallel())

        async def claim_slice(
            part: claims.PreparedClaims | list[claims.FireClaim],
            records: Sequence[schedules.Run] = (),
        ) -> None:
            if not isinstance(part, claims.PreparedClaims):
                part = claims.ready_claims(part, node_id=self.node_id, reuse=self._uncertain)
            async with gate:
                try:
                    claimed, committed = await claims.claim_prepared(
                        self.store, part, then_record=records
                    )
                except BaseException:
                    # Committed or not? (A reply lost after the COMMIT.) The retry sends the
                    # same ids, so that rows of this attempt are found as ours, not as taken.
                    for claim, execution_id in zip(part.claims, part.ids, strict=True):
                        self._uncertain[(claim.schedule_id, claim.scheduled_for)] = execution_id
                    raise
            await self._submit_claimed(claimed, committed)
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

    def _grace(self, schedule: domain.Schedule) -> float:
        grace = schedule.misfire_grace_seconds
        return float(grace if grace is not None else self.settings.scheduler.misfire_grace_seconds)

    async def _missed(
        self, jobs: Iterable[Job], times: FireTimes, after: int, now: float, reason: str
    ) -> AsyncIterator[list[claims.FireClaim]]:
        """Claims for every fire of `times` in (after, now], for each of `jobs`, by policy.
        Fires beyond a job's grace are SKIPPED whatever the policy; the fires within it go
        through `misfire.decide`. Each job writes at most `skipped_rows_limit` SKIPPED rows
        one by one, plus one that summarises the older rest (misfire.SkippedRecords), so a
        long outage of a per-second schedule stays in bounded memory and rows."""
        limit = self.settings.scheduler.skipped_rows_limit
        members = [(job, self._grace(job.schedule)) for job in jobs]
        beyond = {
            grace: misfire.SkippedRecords(limit, missed_because=reason) for _, grace in members
        }
        beyond_reason = {
            grace: f"{reason} (beyond the misfire grace of {grace:g} s)" for grace in beyond
        }
        within: dict[int, list[int]] = {job.schedule.id: [] for job, _ in members}
        ts: float = after
        for count in itertools.count(1):
            fire = times.next_ts(ts)
            if fire is None or fire > now:
                break
            ts = fire
            late = now - fire
            missed = late > misfire.ON_TIME_SECONDS
            if missed:
                for grace, records in beyond.items():
                    if late > grace:
                        records.add(fire, beyond_reason[grace])
            for job, grace in members:
                if not missed or late <= grace:
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
                run_all_limit=self.settings.scheduler.run_all_limit,
                missed_because=reason,
            )
            records = beyond[grace].copy()
            for fire, why in decision.skipped:
                records.add(fire, why)
            chunk += [
                claims.FireClaim(
                    schedule_id=schedule.id,
                    config_id=schedule.config_id,
                    scheduled_for=_utc(fire),
                    skipped_reason=why,
                )
                for fire, why in records.records()
            ]
            chunk += [
                claims.FireClaim(
                    schedule_id=schedule.id, config_id=schedule.config_id, scheduled_for=_utc(fire)
                )
                for fire in decision.run
            ]
            if len(chunk) >= CLAIM_SLICE:
                yield chunk
                chunk = []
        if chunk:
            yield chunk

    def _missed_reason(self, first_due: float, now: float) -> str:
        if self.store_down_since is not None:
            return (
                f"missed: store unavailable from {misfire.iso(self.store_down_since)} "
                f"to {misfire.iso(now)}"
            )
        return f"missed: scheduler blocked from {misfire.iso(first_due)} to {misfire.iso(now)}"

    async def _submit_claimed(self, ours: Iterable[claims.Claimed], committed: datetime) -> None:
        commit_ts = committed.timestamp()
        for claimed in ours:
            job = self.jobs.get(claimed.claim.schedule_id)
            fire_ts = claimed.claim.scheduled_for.timestamp()
            if job is not None and (job.last_fire is None or fire_ts > job.last_fire):
                job.last_fire = int(fire_ts)
            if claimed.skipped:
                self.skipped_count += 1
                policy = job.schedule.misfire_policy.value if job is not None else "unknown"
                metrics.MISSED_FIRES.labels(policy).inc()
                continue
            self.claimed_count += 1
            self.lateness.add(commit_ts - fire_ts)
            metrics.FIRE_LATENESS.observe(max(0.0, commit_ts - fire_ts))
            await self._submit(claimed.execution_id)

    async def _submit(self, execution_id: str) -> None:
        try:
            result = self.submit(execution_id)
            if inspect.isawaitable(result):
                await result
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.error("submitting an execution failed", execution_id=execution_id, exc_info=exc)
            await executions.update_execution(
                self.store,
                execution_id,
                only_if_status=(domain.ExecutionStatus.PENDING,),
                status=domain.ExecutionStatus.FAILED,
                error_message=f"could not start: {type(exc).__name__}: {exc}",
                finished_at=datetime.now(UTC),
            )

    # -- catch-up after a restart ---------------------------------------------------------------

    async def _catch_up(self, now: float) -> None:
        """Fires between each schedule's latest claimed fire (what the store shows:
        last_run_at and existing execution rows) and `now` were missed while no node of ours
        ran it; decide them by policy. Schedules that never fired start from now. Schedules of
        one timeline with the same latest fire are enumerated together."""
        latest = await claims.latest_fires(self.store)
        groups: dict[tuple[TimelineKey, int], list[Job]] = {}
        for job in self.jobs.values():
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
            down_from = misfire.iso(self._down_from(base, jobs[0].timeline))
            reason = f"missed: daemon down from {down_from} to {misfire.iso(now)}"
            async for chunk in self._missed(jobs, jobs[0].timeline.fires, base, now, reason):
                pending += chunk
                if len(pending) >= CLAIM_SLICE:
                    decided += await self._claim_caught_up(pending)
                    pending = []
        decided += await self._claim_caught_up(pending)
        if decided:
            log.info("scheduler caught up", decided=decided, node_id=self.node_id)

    def _down_from(self, base: int, timeline: Timeline) -> float:
        """The start of the outage: the last node heartbeat in the store (a graceful stop writes
        one) when it falls between the last claimed fire and the first missed one, else that
        last claimed fire (no heartbeat, or a node was alive when the fire was missed)."""
        seen = self.last_seen.timestamp() if self.last_seen is not None else None
        first_missed = timeline.fires.next_ts(base)
        if seen is not None and first_missed is not None and base <= seen < first_missed:
            return seen
        return float(base)

    async def _claim_caught_up(self, batch: list[claims.FireClaim]) -> int:
        if not batch:
            return 0
        ours, committed = await claims.claim_fires(self.store, batch, node_id=self.node_id)
        await self._submit_claimed(ours, committed)
        await schedules.record_runs(self.store, self._records(c.claim for c in ours))
        return len(batch)

    def _records(self, claimed: Iterable[claims.FireClaim]) -> list[schedules.Run]:
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
        return [(sid, fire, self._next_of(sid)) for sid, fire in last.items()]

    def _next_of(self, schedule_id: int) -> datetime | None:
        job = self.jobs.get(schedule_id)
        if job is None or job.timeline.next_ts is None:
            return None
        return _utc(job.timeline.next_ts)

    # -- definitions watcher --------------------------------------------------------------------

    async def _watch_definitions(self) -> None:
        while True:
            await asyncio.sleep(self.settings.scheduler.reload_interval_seconds)
            try:
                current = await definitions.fingerprint(self.store)
            except Exception as exc:  # a store outage is survived; the loop reports it too
                self.store_failed()
                log.warning("reading the definitions fingerprint failed", error=error_line(exc))
                continue
            if current != self._fingerprint:
                await self.reload(source="definitions changed")

    # -- manual trigger -------------------------------------------------------------------------

    async def trigger(
        self,
        schedule_id: int,
        scheduled_for: datetime | None = None,
        parameters: dict[str, Any] | None = None,
    ) -> str:
        """Run a loaded schedule now (trigger_type manual). `scheduled_for` defaults to now;
        `parameters` override the schedule's and the report's. Raises LookupError (unknown or
        disabled schedule, with the reason)."""
        job = self.jobs.get(schedule_id)
        if job is None:
            why = self.disabled.get(schedule_id)
            raise LookupError(
                f"schedule {schedule_id} is disabled: {why}"
                if why
                else f"schedule {schedule_id} is not loaded (missing or inactive)"
            )
        logical = scheduled_for or _utc(self.clock.now())
        execution_id = await claims.insert_rerun(
            self.store,
            config_id=job.schedule.config_id,
            schedule_id=schedule_id,
            scheduled_for=logical,
            trigger_type=domain.TriggerType.MANUAL,
            node_id=self.node_id,
            parameters=parameters or None,
        )
        log.info(
            "schedule triggered",
            schedule_id=schedule_id,
            execution_id=execution_id,
            scheduled_for=logical.isoformat(),
        )
        await self._submit(execution_id)
        self._wake.set()
        return execution_id

    # -- lost executions ------------------------------------------------------------------------

    async def _sweep_loop(self) -> None:
        while True:
            await asyncio.sleep(self.settings.scheduler.heartbeat_interval_seconds)
            try:
                await self.sweep()
            except Exception as exc:  # survived; retried at the next interval
                log.warning("lost-execution sweep failed", error=error_line(exc))

    def store_failed(self) -> None:
        """A store call of this node failed (now): other nodes' heartbeats are not judged until
        this node's contact with the store has been continuous for node_lost_after_seconds."""
        self._contact_since = max(self._contact_since, self.clock.now())

    def judges_others(self) -> bool:
        """After a store outage every node's heartbeat is stale at once, healthy or not: only
        once this node has been in contact with the store for node_lost_after_seconds (since
        its start or its last failed store call) have the live nodes had time to heartbeat."""
        contact = self.clock.now() - self._contact_since
        return contact >= self.settings.scheduler.node_lost_after_seconds

    async def sweep(self) -> int:
        """Mark executions no live node owns FAILED ("node lost") and, if configured, run them
        again (trigger_type recovery). Returns how many this node recovered or failed. Other
        nodes' executions are judged only when `judges_others()`; this node's own leftovers
        from before its start always are. A failure counts as a failed store call."""
        try:
            return await self._sweep()
        except Exception:
            self.store_failed()
            raise

    async def _sweep(self) -> int:
        config = self.settings.scheduler
        if self.store.journal is not None and self.store.journal.pending:
            # This node's own outcomes still wait to be written: its heartbeats are stale and
            # its finished runs still show RUNNING. Judge nothing until the journal is flushed.
            return 0
        judge_others = self.judges_others()
        now = datetime.now(UTC)
        cutoff = datetime.fromtimestamp(now.timestamp() - config.node_lost_after_seconds, UTC)
        lost = await claims.find_lost(
            self.store,
            cutoff=cutoff,
            node_id=self.node_id,
            started_at=self.started_at,
            judge_others=judge_others,
        )
        done = 0
        for execution in lost:
            if execution.status is domain.ExecutionStatus.PENDING:
                done += await self._adopt(execution, cutoff, judge_others)
                continue
            reason = _lost_reason(execution, self.node_id)
            recovered = await claims.fail_lost(
                self.store,
                execution,
                cutoff=cutoff,
                node_id=self.node_id,
                started_at=self.started_at,
                reason=reason,
                recover=config.recover_lost_executions,
                judge_others=judge_others,
            )
            done += 1
            log.warning(
                "execution lost",
                execution_id=execution.id,
                lost_node=execution.node_id,
                recovered_as=recovered,
            )
            if recovered is not None:
                self.recovered_count += 1
                await self._submit(recovered)
        return done

    async def _adopt(
        self, execution: claims.LostExecution, cutoff: datetime, judge_others: bool
    ) -> int:
        """A queued run no live node owns (its node stopped, or this node's previous process
        claimed it) never started: this node takes it over and runs it, same row, still
        PENDING. Each is submitted once per process (a queued one is listed again meanwhile)."""
        if execution.id in self._adopted:
            return 0
        adopted = await claims.adopt_pending(
            self.store,
            execution,
            cutoff=cutoff,
            node_id=self.node_id,
            started_at=self.started_at,
            judge_others=judge_others,
        )
        if not adopted:
            return 0  # another node took it first
        self._adopted[execution.id] = None
        while len(self._adopted) > ADOPTED_REMEMBERED:
            del self._adopted[next(iter(self._adopted))]
        self.adopted_count += 1
        log.info("queued execution adopted", execution_id=execution.id, from_node=execution.node_id)
        await self._submit(execution.id)
        return 1

    # -- status ---------------------------------------------------------------------------------

    def next_fire(self) -> tuple[datetime, int] | None:
        ts = self._peek()
        if ts is None:
            return None
        count = sum(
            len(timeline.members) for timeline in self._timelines.values() if timeline.next_ts == ts
        )
        return _utc(ts), count

    async def status(self) -> dict[str, Any]:
        upcoming = self.next_fire()
        store_error = None
        try:
            active = await self._active_counts.get()
        except Exception as exc:  # the rest of the status is still worth answering
            active, store_error = {}, error_line(exc)
        mine = active.get(self.node_id, {})
        reload = self.last_reload
        return {
            "node_id": self.node_id,
            "started_at": self.started_at.isoformat(),
            "uptime_seconds": round((datetime.now(UTC) - self.started_at).total_seconds(), 3),
            "schedules_loaded": len(self.jobs),
            "timelines": len(self._timelines),
            "schedules_disabled": [
                {"schedule_id": sid, "reason": why} for sid, why in sorted(self.disabled.items())
            ],
            "next_fire": (
                {"at": upcoming[0].isoformat(), "schedules": upcoming[1]} if upcoming else None
            ),
            "last_reload": (
                {
                    "at": reload.at.isoformat(),
                    "source": reload.source,
                    "ok": reload.ok,
                    "message": reload.message,
                }
                if reload
                else None
            ),
            "fire_lateness": self.lateness.summary(),
            "claimed": self.claimed_count,
            "skipped": self.skipped_count,
            "recovered": self.recovered_count,
            "adopted": self.adopted_count,
            "store_down_since": (
                misfire.iso(self.store_down_since) if self.store_down_since else None
            ),
            "executions": {
                "running": mine.get(domain.ExecutionStatus.RUNNING.value, 0),
                "queued": mine.get(domain.ExecutionStatus.PENDING.value, 0),
                "all_nodes": {node: counts for node, counts in sorted(active.items()) if node},
                "store_error": store_error,
            },
        }

    async def jobs_view(self) -> list[dict[str, Any]]:
        try:
            latest = await claims.latest_runs(self.store)
        except Exception as exc:  # schedules are still listed; their last runs are unknown
            log.warning("reading the last runs failed", error=error_line(exc))
            latest = {}
        out: list[dict[str, Any]] = []
        for schedule_id in sorted({*self.jobs, *self.disabled}):
            job = self.jobs.get(schedule_id)
            last = latest.get(schedule_id)
            entry: dict[str, Any] = {
                "schedule_id": schedule_id,
                "disabled": self.disabled.get(schedule_id),
                "last_fire": last.scheduled_for.isoformat() if last is not None else None,
                "last_status": last.status if last is not None else None,
                "last_execution_id": last.id if last is not None else None,
            }
            if job is not None:
                s = job.schedule
                nxt = job.timeline.next_ts
                entry |= {
                    "config_id": s.config_id,
                    "config_name": self.config_names.get(s.config_id),
                    "cron_expression": s.cron_expression,
                    "timezone": s.timezone.key,
                    "misfire_policy": s.misfire_policy.value,
                    "misfire_grace_seconds": s.misfire_grace_seconds,
                    "start_at": s.start_at.isoformat() if s.start_at else None,
                    "end_at": s.end_at.isoformat() if s.end_at else None,
                    "parameters": dict(s.parameters),
                    "next_fire": _utc(nxt).isoformat() if nxt is not None else None,
                    "next_fire_local": (
                        _utc(nxt).astimezone(s.timezone).isoformat() if nxt is not None else None
                    ),
                }
            out.append(entry)
        return out


HeapEntry = tuple[int, int, int, Timeline]
"""(fire instant, sequence, the timeline's token when pushed, timeline) in the loop's heap."""


def due_timelines(heap: list[HeapEntry], due: int) -> list[Timeline]:
    """The live timelines whose heap entry is at `due`, the heap's earliest instant. Only the
    heap's top part is walked (a child is never earlier than its parent), not every timeline:
    a sparse set of thousands of timelines costs a few steps per fire. An entry is live when
    its token is still its timeline's and the timeline has members."""
    found, stack = [], [0]
    while stack:
        i = stack.pop()
        if i >= len(heap) or heap[i][0] != due:
            continue
        _, _, token, timeline = heap[i]
        if token == timeline.token and timeline.members:
            found.append(timeline)
        stack += (2 * i + 1, 2 * i + 2)
    return found


def _never_fires(schedule: domain.Schedule, now: float) -> bool:
    """An expression that parses but matches no date (February 30th), whatever the bounds."""
    spec = parse_cron(schedule.cron_expression)
    return FireTimes(spec, schedule.timezone).next_ts(now) is None


def _fire_key(claim: claims.FireClaim) -> tuple[int, datetime]:
    return claim.schedule_id, claim.scheduled_for


def _lost_reason(execution: claims.LostExecution, own_node: str) -> str:
    if execution.node_id == own_node:
        return f"node lost: node {own_node} restarted before the run ended"
    if execution.status is domain.ExecutionStatus.PENDING:
        return f"node lost: node {execution.node_id} stopped before starting the run"
    beat = execution.heartbeat_at.isoformat() if execution.heartbeat_at else "never"
    return f"node lost: node {execution.node_id} stopped heartbeating (last heartbeat {beat})"
