"""Running backfills: every node looks for backfills nobody holds and runs the ones it takes.

One node runs a backfill at a time, under a lease in the store (store/backfills.py), renewed
while it works and as long as `scheduler.node_lost_after_seconds`: a node that dies or freezes
mid-backfill loses it, and another node (or this node after a restart) takes it on where the
fires' rows say it stopped. Each fire is claimed in one transaction with the fire's row, so
a fire is started at most once per backfill however the nodes come and go; a started fire whose
run was lost is followed to its recovery run (the lost-execution sweep's), or ends FAILED.

A backfill keeps at most its `concurrency` fires started (submitted to the engine, whose pool
bounds every run of the node), oldest fire first, and waits for their outcome: a lifecycle
event of the schedule wakes it, and it polls the store every POLL_SECONDS for runs that other
nodes finished (an adopted run, a fire the live scheduler ran). A fire its calendar moves
(next_business_day, previous_business_day) is run with its logical `scheduled_for` and records
where the calendar moved it (`shifted_to`, `shift_reason`), as the live scheduler does.

Cancelled, it starts no more fires, and the runs it started are cancelled through the engine's
cancel path (the one `POST /api/execution/{id}/cancel` takes), each by the node that owns it:
every node's intake asks the store for its own runs of cancelled backfills
(backfill_fires.cancelled_runs) and cancels them, recorded CANCELLED "backfill cancelled by
<who>". The node driving the backfill follows them to that end and counts them.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from datetime import UTC, datetime
from typing import Any, Protocol

from reporthubd import backfill_rules, calendars, domain, logs
from reporthubd.config import Settings
from reporthubd.lifecycle.events import LifecycleEvent
from reporthubd.lifecycle.executions import Lifecycle
from reporthubd.scheduler.loop import Spawner
from reporthubd.scheduler.timetable import fire_times, utc
from reporthubd.store import backfill_fires, backfills
from reporthubd.store.database import Store, error_line

log = logs.get(__name__)

POLL_SECONDS = 1.0
"""How often the store is asked for backfills to take, and a running one for its runs."""


class Submit(Protocol):
    def __call__(self, execution_id: str, *, deliver: bool = True) -> None: ...


class Cancel(Protocol):
    """The engine's cancel (Engine.cancel): whether it cancelled the run."""

    async def __call__(self, execution_id: str, reason: str) -> bool: ...


class BackfillRunner:
    def __init__(
        self,
        *,
        store: Store,
        settings: Settings,
        node_id: str,
        lifecycle: Lifecycle,
        submit: Submit,
        cancel: Cancel | None = None,
    ) -> None:
        self.store = store
        self.settings = settings
        self.node_id = node_id
        self.lifecycle = lifecycle
        self.submit = submit
        self.cancel = cancel
        self._tasks: Spawner | None = None
        self._running: set[str] = set()

    @property
    def lease_seconds(self) -> float:
        return self.settings.scheduler.node_lost_after_seconds

    @property
    def running(self) -> list[str]:
        """The backfills this node runs now."""
        return sorted(self._running)

    def start(self, tasks: Spawner) -> None:
        self._tasks = tasks
        tasks.spawn("backfill-intake", self.run())

    async def run(self) -> None:
        """Take the backfills nobody holds, forever."""
        while True:
            try:
                await self.take()
                await self.cancel_runs()
            except Exception as exc:  # an outage: taken again at the next poll
                log.warning("taking backfills failed", error=error_line(exc))
            await asyncio.sleep(POLL_SECONDS)

    async def take(self) -> list[str]:
        taken = await backfills.take(
            self.store, node_id=self.node_id, lease_seconds=self.lease_seconds
        )
        for found in taken:
            if found.id in self._running:
                continue
            self._running.add(found.id)
            log.info(
                "backfill taken",
                backfill_id=found.id,
                schedule_id=found.schedule_id,
                node_id=self.node_id,
            )
            assert self._tasks is not None
            self._tasks.spawn(f"backfill-{found.id}", self._drive(found), forever=False)
        return [found.id for found in taken]

    async def cancel_runs(self) -> list[str]:
        """Cancel this node's runs of cancelled backfills; returns the ones cancelled."""
        if self.cancel is None:
            return []
        done = []
        for run in await backfill_fires.cancelled_runs(self.store, node_id=self.node_id):
            reason = f"backfill cancelled by {run.cancelled_by or 'an operator'}"
            if await self.cancel(run.execution_id, reason):
                done.append(run.execution_id)
                log.info(
                    "backfill run cancelled",
                    backfill_id=run.backfill_id,
                    execution_id=run.execution_id,
                    node_id=self.node_id,
                )
        return done

    async def _drive(self, found: backfills.Backfill) -> None:
        try:
            await Drive(self, found).run()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # logged here; the lease runs out and another node goes on
            log.error("backfill failed", backfill_id=found.id, exc_info=exc)
        finally:
            self._running.discard(found.id)


class Drive:
    """One backfill on this node, from taking it to its end (or to losing it)."""

    def __init__(self, runner: BackfillRunner, found: backfills.Backfill) -> None:
        self.runner = runner
        self.store = runner.store
        self.found = found
        self.wake = asyncio.Event()
        self.pending: deque[datetime] = deque()
        self.started: dict[datetime, backfill_fires.FireRow] = {}
        self.times: calendars.CalendarFires | None = None

    def _on_event(self, event: LifecycleEvent) -> None:
        if event.schedule_id == self.found.schedule_id and event.new not in (
            backfill_rules.ACTIVE_STATUSES
        ):
            self.wake.set()

    async def run(self) -> None:
        unsubscribe = self.runner.lifecycle.events.subscribe(self._on_event)
        try:
            await self._load_calendar()
            for fire in await backfill_fires.fires(self.store, self.found.id):
                when = fire.scheduled_for.astimezone(UTC)
                if fire.status == backfills.FIRE_PENDING:
                    self.pending.append(when)
                elif fire.status == backfills.FIRE_STARTED:
                    self.started[when] = fire
            await self._loop()
        finally:
            unsubscribe()

    async def _loop(self) -> None:
        runner, found = self.runner, self.found
        holding = True
        while True:
            try:
                await self._settle()
                if holding:
                    holding = await backfills.renew(
                        self.store,
                        found.id,
                        node_id=runner.node_id,
                        lease_seconds=runner.lease_seconds,
                    )
                    if not holding and not await self._cancelled_here():
                        log.warning("backfill lease lost", backfill_id=found.id)
                        return
                if holding and not await self._start_more():
                    return  # the engine takes no more work: the daemon is stopping
                if not self.started and (not holding or not self.pending):
                    if holding:
                        await backfills.finish(
                            self.store,
                            found.id,
                            node_id=runner.node_id,
                            status=backfills.COMPLETED,
                        )
                        log.info("backfill completed", backfill_id=found.id)
                    return
            except backfills.LeaseLost:
                holding = False
                if not await self._cancelled_here():
                    return
            except Exception as exc:  # a store outage: the lease says whether we go on
                log.warning("backfill step failed", backfill_id=found.id, error=error_line(exc))
            self.wake.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(POLL_SECONDS):
                    await self.wake.wait()

    async def _load_calendar(self) -> None:
        """The schedule's calendar, to record where it moves a fire (none: nothing moves)."""
        try:
            schedule = await backfills.load_schedule(
                self.store,
                self.found.schedule_id,
                default_timezone=self.runner.settings.scheduler.timezone,
            )
        except (LookupError, ValueError) as exc:  # deleted or invalid meanwhile
            log.warning(
                "backfill schedule not loaded", backfill_id=self.found.id, error=error_line(exc)
            )
            return
        times = fire_times(schedule)
        if isinstance(times, calendars.CalendarFires):
            self.times = times

    def _shift(self, when: datetime) -> backfill_fires.Shift | None:
        if self.times is None:
            return None
        fire = self.times.decide(int(when.timestamp()))
        return (utc(fire.actual), fire.shift_reason) if fire.shift_reason else None

    async def _cancelled_here(self) -> bool:
        """Whether the backfill was cancelled while this node held it: its started fires are
        still followed to their end (and counted)."""
        now = await backfills.get(self.store, self.found.id)
        cancelled = now.status == backfills.CANCELLED and now.node_id == self.runner.node_id
        if cancelled:
            self.pending.clear()
        return cancelled

    async def _settle(self) -> None:
        ended = await backfill_fires.outcomes(
            self.store, self.found.schedule_id, self.started.values()
        )
        for when, attempt in ended.items():
            await backfill_fires.settle_fire(self.store, self.found.id, when, attempt)
            self.started.pop(when, None)

    async def _start_more(self) -> bool:
        """Claim and submit fires up to the concurrency. False when the engine refused one
        (stopping): its run stays PENDING, adopted by the next node or process."""
        runner, found = self.runner, self.found
        while self.pending and len(self.started) < found.concurrency:
            when = self.pending[0]
            claimed = await backfill_fires.claim_fire(
                self.store,
                found,
                when,
                node_id=runner.node_id,
                lease_seconds=runner.lease_seconds,
                shift=self._shift(when),
            )
            self.pending.popleft()
            if claimed.status in backfill_rules.TERMINAL_STATUSES:
                continue  # it had run meanwhile (the live scheduler): settled as it ended
            self.started[when] = backfill_fires.FireRow(
                scheduled_for=when,
                status=backfills.FIRE_STARTED,
                attempt=claimed.attempt,
                execution_id=claimed.execution_id,
            )
            if not claimed.inserted:
                continue  # a run already there (another node's): followed, not started
            runner.lifecycle.inserted(
                claimed.execution_id,
                config_id=found.config_id,
                schedule_id=found.schedule_id,
                scheduled_for=when,
                trigger_type=domain.TriggerType.BACKFILL,
            )
            _log_started(found, claimed)
            try:
                runner.submit(claimed.execution_id, deliver=found.deliver)
            except Exception as exc:
                log.warning(
                    "backfill fire not submitted",
                    backfill_id=found.id,
                    execution_id=claimed.execution_id,
                    error=error_line(exc),
                )
                return False
        return True


def _log_started(found: backfills.Backfill, claimed: Any) -> None:
    log.info(
        "backfill fire started",
        backfill_id=found.id,
        schedule_id=found.schedule_id,
        execution_id=claimed.execution_id,
        attempt=claimed.attempt,
    )
