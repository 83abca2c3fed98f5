"""The scheduler: the coordinator of the fire loop, the definitions watcher and the lost-execution
sweep, each a named task of the daemon's supervisor.

The parts, each in its own module:

- `timetable`: the loaded schedules and the heap of their next fire times, with reload diffing
  (pure: no store, no clock);
- `dispatch`: claiming due fires in the store, handing this node's claims to `submit`, writing
  `last_run_at` / `next_run_at`;
- `catchup`: the fires missed while no node of ours ran, decided by the misfire rules;
- `recovery`: the sweep of executions no live node owns, and this node's store contact;
- `views`: the frozen snapshots and the JSON the control plane shows.

The loop sleeps until the earliest timeline is due (woken early by reloads and triggers), makes
a busy instant's claims ready shortly before it, and then dispatches every due fire at once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from datetime import datetime
from typing import Any, Protocol

from reporthubd import domain, logs, metrics
from reporthubd.config import Settings
from reporthubd.lifecycle.executions import Lifecycle
from reporthubd.lifecycle.nodes import Liveness
from reporthubd.recent import Recent
from reporthubd.scheduler import catchup, dispatch, views
from reporthubd.scheduler.clock import Clock, SystemClock
from reporthubd.scheduler.dispatch import Submit, leave_pending
from reporthubd.scheduler.recovery import Recovery
from reporthubd.scheduler.stats import Lateness
from reporthubd.scheduler.timetable import Job, Timetable, utc
from reporthubd.scheduler.views import DefinitionsReload
from reporthubd.store import definitions, status
from reporthubd.store.database import Store, error_line
from reporthubd.timeutil import utcnow

log = logs.get(__name__)

STATUS_MAX_AGE_SECONDS = 1.0


class Spawner(Protocol):
    def spawn(
        self, name: str, coro: Coroutine[Any, Any, Any], *, forever: bool = True
    ) -> asyncio.Task[Any]: ...


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
        lifecycle: Lifecycle | None = None,
        liveness: Liveness | None = None,
    ) -> None:
        """`lifecycle` makes every state change (the daemon's, shared with the engine);
        `liveness` is the node's one liveness rule (lifecycle.nodes). Both default to the
        scheduler's own, for tests that drive a scheduler alone."""
        self._store = store
        self.settings = settings
        self.node_id = node_id
        self.clock: Clock = clock or SystemClock()
        self.started_at = started_at or utcnow()
        # The latest node heartbeat the store showed before this node registered: where the
        # outage named by the catch-up's SKIPPED reasons starts.
        self.last_seen = last_seen
        self.last_reload: DefinitionsReload | None = None
        self.config_names: dict[int, str] = {}
        self.timetable = Timetable()
        self.lifecycle = lifecycle or Lifecycle(store, node_id=node_id)
        self.liveness = liveness or Liveness(
            settings.scheduler, now=self.clock.now, started_at=self.started_at.timestamp()
        )
        self._recovery = Recovery(
            store=store,
            config=settings.scheduler,
            node_id=node_id,
            started_at=self.started_at,
            liveness=self.liveness,
            lifecycle=self.lifecycle,
            submit=self._submit,
        )
        self._dispatch = dispatch.Dispatcher(
            store=store,
            timetable=self.timetable,
            config=settings.scheduler,
            node_id=node_id,
            submit=submit,
            store_failed=self._recovery.store_failed,
            lifecycle=self.lifecycle,
        )
        self._wake = asyncio.Event()
        self._dispatching = asyncio.Lock()
        self._reloading = asyncio.Lock()
        self._fingerprint: definitions.Fingerprint | None = None
        self._tasks: list[asyncio.Task[Any]] = []
        self._stopped = False
        # Status is polled by dashboards: concurrent requests share one store query per second.
        self._active_counts = Recent(
            lambda: status.count_active(self.store), max_age_seconds=STATUS_MAX_AGE_SECONDS
        )

    # -- lifecycle ------------------------------------------------------------------------------

    async def start(self, tasks: Spawner) -> None:
        """Load the schedules, catch up on what the store shows was missed, then start the loop,
        the definitions watcher and the lost-execution sweep as named tasks of `tasks`."""
        found = await self._load()
        now = self.clock.now()
        self.timetable.horizon = now
        metrics.observe_gauges(
            {
                metrics.SCHEDULES_LOADED: lambda: float(len(self.timetable.jobs)),
                metrics.SCHEDULES_DISABLED: lambda: float(len(self.timetable.disabled)),
            }
        )
        self._apply(found, now)
        self.last_reload = DefinitionsReload(
            at=utc(now),
            source="start",
            ok=True,
            message=(
                f"{len(self.timetable.jobs)} schedules loaded, "
                f"{len(self.timetable.disabled)} disabled"
            ),
        )
        await catchup.catch_up(
            store=self.store,
            timetable=self.timetable,
            claimer=self._dispatch,
            config=self.settings.scheduler,
            node_id=self.node_id,
            now=now,
            last_seen=self.last_seen,
        )
        await self.sweep()
        self._tasks = [
            tasks.spawn("scheduler-loop", self._run()),
            tasks.spawn("scheduler-watch", self._watch_definitions()),
            tasks.spawn("scheduler-sweep", self._recovery.run()),
        ]
        log.info(
            "scheduler started",
            node_id=self.node_id,
            schedules=len(self.timetable.jobs),
            timelines=len(self.timetable.timelines),
            disabled=len(self.timetable.disabled),
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

    async def reload(self, *, source: str, settings: Settings | None = None) -> DefinitionsReload:
        """Read the definitions again and diff them in: unchanged schedules keep their next
        fire, changed ones are recomputed, removed ones stop, new ones start. A failure keeps
        the schedules as they were. Never raises."""
        async with self._reloading:
            now = self.clock.now()
            try:
                if settings is not None:
                    self._configure(settings)
                found = await self._load()
            except Exception as exc:
                self.store_failed()
                report = DefinitionsReload(
                    at=utc(now), source=source, ok=False, message=f"{type(exc).__name__}: {exc}"
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

    def _configure(self, settings: Settings) -> None:
        self.settings = settings
        self._dispatch.config = settings.scheduler
        self._recovery.config = settings.scheduler
        self.liveness.settings = settings.scheduler

    @property
    def store(self) -> Store:
        return self._store

    @store.setter
    def store(self, store: Store) -> None:
        """Every part uses the scheduler's one store (a test swaps in an unreachable one)."""
        self._store = store
        self._dispatch.store = store
        self._recovery.store = store
        self.lifecycle.store = store
        self.lifecycle.ownership.store = store

    def _apply(
        self, found: definitions.Definitions, now: float, *, source: str = "start"
    ) -> DefinitionsReload:
        """Swap the new definitions into the timetable, synchronously (the loop sees the old or
        the new state, never a mix); claims prepared from the old state are void."""
        disabled = {
            int(str(error.row_id)): "; ".join(error.problems)
            for error in found.errors
            if error.table == "report_schedules" and str(error.row_id).isdigit()
        }
        changes = self.timetable.apply(found.schedules.values(), disabled, now)
        self.config_names = {config.id: config.name for config in found.configs.values()}
        message = (
            f"{len(self.timetable.jobs)} schedules ({changes.added} added, "
            f"{changes.changed} changed, {changes.removed} removed), {changes.disabled} disabled"
        )
        return DefinitionsReload(
            at=utc(now),
            source=source,
            ok=True,
            message=message,
            added=changes.added,
            changed=changes.changed,
            removed=changes.removed,
            disabled=changes.disabled,
        )

    # -- the loop -------------------------------------------------------------------------------

    async def _run(self) -> None:
        timetable, fires = self.timetable, self._dispatch
        backoff = 0.0
        while True:
            self._wake.clear()
            due: float | None = timetable.peek()
            if backoff:
                retry_at = self.clock.now() + backoff
                due = retry_at if due is None else max(due, retry_at)
            elif (
                due is not None
                and not fires.is_prepared(int(due))
                and (count := timetable.fires_at(int(due))) >= dispatch.PREPARE_MIN_FIRES
            ):
                lead = fires.prepare_lead(count)
                if self.clock.now() < due - lead:
                    await self.clock.sleep_until(due - lead, self._wake)
                    if self._wake.is_set():
                        continue  # a reload or trigger: look at the heap again
                if self.clock.now() < due:
                    await fires.prepare(int(due))
                    continue
            await self.clock.sleep_until(due, self._wake)
            now = self.clock.now()
            peek = timetable.peek()
            if peek is None or peek > now:
                continue
            async with self._dispatching:
                ok = await fires.dispatch(now)
            backoff = 0.0 if ok else min(10.0, max(1.0, backoff * 2))

    async def dispatch(self, now: float) -> bool:
        """Claim every fire due at `now`, submit ours, then compute next times. Returns False
        when the store failed (nothing is lost: the fires stay due and are retried)."""
        return await self._dispatch.dispatch(now)

    async def _submit(self, execution_id: str) -> None:
        await self._dispatch.submit_one(execution_id)

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
        job = self.timetable.jobs.get(schedule_id)
        if job is None:
            why = self.timetable.disabled.get(schedule_id)
            raise LookupError(
                f"schedule {schedule_id} is disabled: {why}"
                if why
                else f"schedule {schedule_id} is not loaded (missing or inactive)"
            )
        logical = scheduled_for or utc(self.clock.now())
        execution_id = await self.lifecycle.create(
            config_id=job.schedule.config_id,
            trigger_type=domain.TriggerType.MANUAL,
            schedule_id=schedule_id,
            scheduled_for=logical,
            parameters=parameters,
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

    # -- lost executions (recovery.py) ----------------------------------------------------------

    def store_failed(self) -> None:
        """A store call of this node failed: see Recovery.store_failed."""
        self._recovery.store_failed()

    def judges_others(self) -> bool:
        """Whether other nodes' heartbeats are judged now: see Recovery.judges_others."""
        return self._recovery.judges_others()

    async def sweep(self) -> int:
        """One lost-execution sweep now: see Recovery.sweep."""
        return await self._recovery.sweep()

    # -- what the parts count -------------------------------------------------------------------

    @property
    def jobs(self) -> dict[int, Job]:
        return self.timetable.jobs

    @property
    def disabled(self) -> dict[int, str]:
        return self.timetable.disabled

    def next_fire_of(self, schedule_id: int) -> datetime | None:
        """When this node's timetable fires `schedule_id` next (None: not loaded, or no fire
        to come). Ahead of the stored next_run_at, which is written only with a claim."""
        job = self.timetable.jobs.get(schedule_id)
        nxt = job.timeline.next_ts if job is not None else None
        return utc(nxt) if nxt is not None else None

    @property
    def lateness(self) -> Lateness:
        return self._dispatch.lateness

    @lateness.setter
    def lateness(self, value: Lateness) -> None:  # the benchmark restarts the count
        self._dispatch.lateness = value

    @property
    def claimed_count(self) -> int:
        return self._dispatch.claimed_count

    @property
    def skipped_count(self) -> int:
        return self._dispatch.skipped_count

    @property
    def recovered_count(self) -> int:
        return self._recovery.recovered_count

    @property
    def adopted_count(self) -> int:
        return self._recovery.adopted_count

    @property
    def store_down_since(self) -> float | None:
        return self._dispatch.store_down_since

    # -- snapshots and views (views.py) ---------------------------------------------------------

    def next_fire(self) -> tuple[datetime, int] | None:
        return self.timetable.next_fire()

    async def snapshot(self) -> views.SchedulerSnapshot:
        """The scheduler's state now, with the active executions per node (read at most once a
        second, shared by concurrent callers; a store error is part of the snapshot)."""
        store_error = None
        try:
            active = await self._active_counts.get()
        except Exception as exc:  # the rest of the status is still worth answering
            active, store_error = {}, error_line(exc)
        timetable = self.timetable
        return views.SchedulerSnapshot(
            node_id=self.node_id,
            started_at=self.started_at,
            taken_at=utcnow(),
            schedules_loaded=len(timetable.jobs),
            timelines=len(timetable.timelines),
            disabled=dict(timetable.disabled),
            next_fire=timetable.next_fire(),
            last_reload=self.last_reload,
            fire_lateness=self.lateness.summary(),
            catch_up_lateness=self._dispatch.catch_up_lateness.summary(),
            claimed=self.claimed_count,
            skipped=self.skipped_count,
            recovered=self.recovered_count,
            adopted=self.adopted_count,
            store_down_since=self.store_down_since,
            active=active,
            store_error=store_error,
        )

    def job_snapshot(self, schedule_id: int) -> views.JobSnapshot | None:
        """One schedule as loaded or disabled now (None: not known), without its last run."""
        taken_at = utc(self.clock.now())
        job = self.timetable.jobs.get(schedule_id)
        if job is not None:
            return self._job_snapshot(schedule_id, job, taken_at)
        why = self.timetable.disabled.get(schedule_id)
        if why is None:
            return None
        return views.JobSnapshot(schedule_id=schedule_id, taken_at=taken_at, disabled=why)

    async def job_snapshots(self) -> list[views.JobSnapshot]:
        """Every loaded or disabled schedule, by id, with its newest execution (unknown when
        the store cannot be read: the schedules are still listed)."""
        try:
            latest = await status.latest_runs(self.store)
        except Exception as exc:
            log.warning("reading the last runs failed", error=error_line(exc))
            latest = {}
        taken_at = utc(self.clock.now())
        jobs, disabled = self.timetable.jobs, self.timetable.disabled
        out: list[views.JobSnapshot] = []
        for schedule_id in sorted({*jobs, *disabled}):
            job = jobs.get(schedule_id)
            last = latest.get(schedule_id)
            last_run = {
                "last_fire": last.scheduled_for if last is not None else None,
                "last_status": last.status if last is not None else None,
                "last_execution_id": last.id if last is not None else None,
            }
            if job is not None:
                out.append(self._job_snapshot(schedule_id, job, taken_at, **last_run))
            else:
                out.append(
                    views.JobSnapshot(
                        schedule_id=schedule_id,
                        taken_at=taken_at,
                        disabled=disabled.get(schedule_id),
                        **last_run,
                    )
                )
        return out

    def _job_snapshot(
        self, schedule_id: int, job: Job, taken_at: datetime, **last_run: Any
    ) -> views.JobSnapshot:
        nxt = job.timeline.next_ts
        return views.JobSnapshot(
            schedule_id=schedule_id,
            taken_at=taken_at,
            schedule=job.schedule,
            disabled=self.timetable.disabled.get(schedule_id),
            config_name=self.config_names.get(job.schedule.config_id),
            next_fire=utc(nxt) if nxt is not None else None,
            **last_run,
        )

    async def status(self) -> dict[str, Any]:
        """The status view's JSON (views.status)."""
        return views.status(await self.snapshot())

    async def jobs_view(self) -> list[dict[str, Any]]:
        """The jobs view's JSON (views.jobs)."""
        return views.jobs(await self.job_snapshots())
