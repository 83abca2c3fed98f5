"""The Engine: takes PENDING executions, runs them in the bounded pool, cancels and drains.

    engine = Engine(settings, store, node_id=node_id, deliveries=runner)
    await engine.start()
    engine.submit(execution_id)              # the PENDING row exists (the scheduler's claim)
    execution_id = await engine.create_and_submit(config_id, trigger_type=TriggerType.MANUAL)
    await engine.cancel(execution_id, "cancelled by the API")
    engine.stats()                           # EngineStats(running=.., queued=.., ...)
    await engine.drain(grace_seconds)        # on SIGTERM
    await engine.stop()

Each submitted execution is one named task (`execution-<id>`) that waits for a pool slot in
submission order, moves the row PENDING → RUNNING, runs the pipeline (engine/pipeline.py) and
records the final status. `submit` never blocks and never drops work.

`janitor_loop()` is the background task (started by the daemon under its supervisor) that
removes workspace directories past `file_retention_hours` and prunes execution rows older than
`execution_retention_days` (with their delivery logs, and data-driven runs' audiences), and
the settled rows of the ledgers about them (notices, waits, backfills, late fires:
store/retention.py), in batches.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import shutil
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

from reporthubd import domain, logs, metrics
from reporthubd.config import Settings
from reporthubd.deliverers.base import DeliveryRunner, NoDeliveries
from reporthubd.engine import fanout
from reporthubd.engine.pipeline import Run, RunContext
from reporthubd.engine.pool import Pool
from reporthubd.engine.streaming import Progress
from reporthubd.engine.waits import WaitGate
from reporthubd.lifecycle.executions import Lifecycle
from reporthubd.store import audiences as audience_rows
from reporthubd.store import backfills, executions, journal, reruns, retention
from reporthubd.store.database import Store
from reporthubd.timeutil import utcnow

log = logs.get(__name__)

Status = domain.ExecutionStatus
T = TypeVar("T")


@dataclass(frozen=True, kw_only=True)
class EngineStats:
    """Queued and running counts (attributes, or `stats["running"]` style)."""

    running: int
    queued: int
    """Submitted and not yet running: loading or waiting for a slot."""
    max_concurrent_executions: int
    by_datasource: dict[str, dict[str, int]]
    """Per pool key (`datasource-<id>`): running, and queued once in line for a slot."""
    accepting: bool

    def __getitem__(self, key: str) -> Any:
        return getattr(self, key)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class UnknownConfig(LookupError):
    """`create_and_submit` for a config that does not exist."""


class EngineStopped(RuntimeError):
    """Work offered after `drain` / `stop` began."""


_BACKFILL_RUNS = frozenset({domain.TriggerType.BACKFILL, domain.TriggerType.RECOVERY})
"""Runs that may be a backfill's (a recovery run recovers a backfill's run too)."""


class Engine:
    def __init__(
        self,
        settings: Settings,
        store: Store,
        *,
        node_id: str,
        deliveries: DeliveryRunner | None = None,
        lifecycle: Lifecycle | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.node_id = node_id
        self.deliveries: DeliveryRunner = deliveries or NoDeliveries()
        self.lifecycle = lifecycle or Lifecycle(store, node_id=node_id)
        self.ownership = self.lifecycle.ownership
        self.workspace = Path(settings.execution.workspace)
        self._pool = Pool(settings.execution.max_concurrent_executions)
        self._seq = itertools.count()
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._progress: dict[str, Progress] = {}
        self._reasons: dict[str, str] = {}
        # Queued runs a drain stopped: left PENDING for another node (or the next start) to adopt.
        self._handed_over: set[str] = set()
        self._accepting = False
        self._intake_open = True
        self._deliver: dict[str, bool] = {}
        self._claimed: dict[str, fanout.Claimed] = {}
        # Each run enters the pool's line only after the run submitted before it has (its
        # definitions are loaded concurrently), so slots go strictly in submission order.
        self._last_gate = asyncio.Event()
        self._last_gate.set()
        # Runs submitted together (a minute boundary's hundreds of fires) read their rows a few
        # at a time, not all at once: at once, they emptied the store's connection pool and
        # waited out its 30 s timeout. The pool's own size leaves its overflow to the rest.
        self._store_steps = asyncio.Semaphore(settings.store.pool_size)
        self._fanout = fanout.FanOut(host=self, pool=self._pool, accepting=lambda: self._accepting)
        # Set by the daemon: runs that wait for their dependencies leave the engine (waits.py).
        self.waits: WaitGate | None = None

    # -- lifecycle ------------------------------------------------------------------------------

    async def start(self) -> None:
        await asyncio.to_thread(self.workspace.mkdir, parents=True, exist_ok=True)
        self._accepting = True
        metrics.observe_gauges(
            {
                metrics.RUNNING: lambda: float(self.stats().running),
                metrics.QUEUE_DEPTH: lambda: float(self.stats().queued),
            }
        )
        log.info(
            "engine started",
            node_id=self.node_id,
            workspace=str(self.workspace),
            max_concurrent_executions=self._pool.limit,
        )

    async def stop(self) -> None:
        """Cancel whatever still runs (statuses recorded), then return."""
        await self.drain(0)

    def close_intake(self) -> None:
        """Refuse new runs from now on (create_and_submit raises EngineStopped): a stop was
        requested. Claims the scheduler makes until it stops are still submitted (then left
        PENDING by the drain), and what was submitted goes on."""
        self._intake_open = False

    async def drain(self, grace_seconds: float) -> None:
        """Stop intake; let running and queued work finish within the grace period; cancel the
        rest: a running one with a recorded reason (the status writes are shielded), a queued
        one that never started stays PENDING, for another node (or this one's next start) to
        adopt."""
        self._accepting = False
        tasks = dict(self._tasks)
        if not tasks:
            return
        log.info("engine draining", executions=len(tasks), grace_seconds=grace_seconds)
        done: set[asyncio.Task[None]] = set()
        if grace_seconds > 0:
            done, _ = await asyncio.wait(tasks.values(), timeout=grace_seconds)
        late = {eid: task for eid, task in tasks.items() if task not in done and not task.done()}
        reason = (
            f"cancelled: the daemon stopped and the drain grace period ({grace_seconds:g} s) "
            "ran out"
        )
        for execution_id, task in late.items():
            self._reasons.setdefault(execution_id, reason)
            self._handed_over.add(execution_id)
            task.cancel(reason)
        if late:
            await asyncio.gather(*late.values(), return_exceptions=True)
        log.info("engine drained", finished=len(tasks) - len(late), cancelled=len(late))

    # -- intake ---------------------------------------------------------------------------------

    def submit(
        self, execution_id: str, *, deliver: bool = True, claimed: fanout.Claimed | None = None
    ) -> None:
        """Run the PENDING execution `execution_id`. Never blocks; never drops: the execution
        waits for a slot. A second submit of the same id is ignored. `claimed`: the row and
        definitions of a burst's child its parent has just inserted (not read again)."""
        if not self._accepting:
            raise EngineStopped("the engine is not accepting work (stopped or draining)")
        if execution_id in self._tasks:
            return
        if claimed is not None:
            self._claimed[execution_id] = claimed
        seq = next(self._seq)
        self._progress[execution_id] = Progress(execution_id=execution_id)
        self._deliver[execution_id] = deliver
        before, mine = self._last_gate, asyncio.Event()
        self._last_gate = mine
        task = asyncio.create_task(
            self._run(execution_id, seq, before, mine), name=f"execution-{execution_id}"
        )
        self._tasks[execution_id] = task
        task.add_done_callback(lambda done: self._forget(execution_id, done))

    async def _admit(self, config_id: int) -> None:
        """Refuse new work while stopped or draining, and a report config that does not exist
        (an invalid one is let through: its run records why)."""
        if not (self._accepting and self._intake_open):
            raise EngineStopped("the engine is not accepting work (stopped or draining)")
        try:
            config = await executions.get_config(self.store, config_id)
        except executions.DefinitionProblem:
            return
        if config is None:
            raise UnknownConfig(f"report config {config_id} does not exist")

    async def create_and_submit(
        self,
        config_id: int,
        *,
        trigger_type: domain.TriggerType,
        schedule_id: int | None = None,
        scheduled_for: datetime | None = None,
        parameters: Mapping[str, Any] | None = None,
        deliver: bool = True,
    ) -> str:
        """Insert a PENDING execution for `config_id` (the trigger's parameter overrides kept in
        its `parameters` column) and submit it. Raises UnknownConfig for a config that does not
        exist."""
        await self._admit(config_id)
        execution_id = await self.lifecycle.create(
            config_id=config_id,
            trigger_type=trigger_type,
            schedule_id=schedule_id,
            scheduled_for=scheduled_for,
            parameters=parameters,
        )
        self.submit(execution_id, deliver=deliver)
        return execution_id

    async def rerun_fire(
        self,
        config_id: int,
        *,
        schedule_id: int,
        scheduled_for: datetime,
        parameters: Mapping[str, Any] | None = None,
        deliver: bool = True,
    ) -> reruns.Rerun:
        """Re-run one fire as its next attempt (Lifecycle.rerun_fire) and submit it. Raises
        UnknownConfig, EngineStopped, or reruns.FireActive while the fire is running."""
        await self._admit(config_id)
        rerun = await self.lifecycle.rerun_fire(
            config_id=config_id,
            schedule_id=schedule_id,
            scheduled_for=scheduled_for,
            parameters=parameters,
        )
        self.submit(rerun.execution_id, deliver=deliver)
        return rerun

    async def cancel(self, execution_id: str, reason: str) -> bool:
        """Cancel a queued or running execution of this node, or a PENDING row nobody runs yet.
        Returns whether anything was cancelled."""
        task = self._tasks.get(execution_id)
        if task is not None and not task.done():
            self._reasons.setdefault(execution_id, reason)
            task.cancel(reason)
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.shield(task)
            return True
        return await self.lifecycle.cancel_pending(execution_id, reason)

    def cancel_reason(self, execution_id: str) -> str:
        return self._reasons.get(execution_id, "cancelled")

    # -- visibility -----------------------------------------------------------------------------

    def stats(self) -> EngineStats:
        running = self._pool.running
        return EngineStats(
            running=running,
            queued=len(self._tasks) - running,
            max_concurrent_executions=self._pool.limit,
            by_datasource=self._pool.by_key(),
            accepting=self._accepting,
        )

    def progress(self, execution_id: str) -> Progress | None:
        return self._progress.get(execution_id)

    def is_active(self, execution_id: str) -> bool:
        return execution_id in self._tasks

    def task(self, execution_id: str) -> asyncio.Task[None] | None:
        return self._tasks.get(execution_id)

    def resize(self, max_concurrent_executions: int) -> None:
        self._pool.resize(max_concurrent_executions)

    async def on_reload(self, settings: Settings) -> str:
        """Daemon reload hook: new limits, timeouts and retention apply to the next runs (the
        workspace moves only on restart)."""
        workspace = self.settings.execution.workspace
        self.settings = settings.model_copy(
            update={"execution": settings.execution.model_copy(update={"workspace": workspace})}
        )
        self.resize(settings.execution.max_concurrent_executions)
        return f"engine: max_concurrent_executions {self._pool.limit}"

    # -- one execution --------------------------------------------------------------------------

    def _forget(self, execution_id: str, task: asyncio.Task[None]) -> None:
        self._tasks.pop(execution_id, None)
        self._progress.pop(execution_id, None)
        self._reasons.pop(execution_id, None)
        self._deliver.pop(execution_id, None)
        self._claimed.pop(execution_id, None)
        self._handed_over.discard(execution_id)
        if not task.cancelled() and task.exception() is not None:
            log.error(
                "execution task failed",
                execution_id=execution_id,
                exc_info=task.exception(),
            )

    async def _run(
        self, execution_id: str, seq: int, before: asyncio.Event, mine: asyncio.Event
    ) -> None:
        progress = self._progress[execution_id]
        bound = log.bind(execution_id=execution_id, node_id=self.node_id)
        try:
            await self._admitted(execution_id, seq, before, mine, progress, bound)
        finally:
            mine.set()

    async def _admitted(
        self,
        execution_id: str,
        seq: int,
        before: asyncio.Event,
        mine: asyncio.Event,
        progress: Progress,
        bound: Any,
    ) -> None:
        # Steps that need the store's answer wait out an outage (cancellable by a drain);
        # the records of what happened go through the store journal (durable=True).
        fields = {"execution_id": execution_id}
        # Set while its start is being written: a cancel landing then may leave it RUNNING.
        starting: domain.Execution | None = None
        try:
            known = self._claimed.pop(execution_id, None)
            if known is not None:  # a burst's child its parent has just inserted
                execution, definitions = known.execution, known.definitions
            else:
                loaded = await self._load(execution_id, seq, before, mine, progress, bound)
                if loaded is None:
                    return
                execution, definitions = loaded
            source = definitions.datasource
            await before.wait()
            async with self._pool.slot(
                f"datasource-{source.id}", source.max_concurrent_queries, seq, mine.set
            ) as slot:
                starting = execution
                claimed = await self._store_step(
                    "start execution", lambda: self.lifecycle.start(execution), fields
                )
                starting = None
                if not claimed:
                    bound.warning("execution no longer pending, not run")
                    return
                progress.started = time.monotonic()
                progress.phase = "starting"
                bound.info("execution started", config_id=execution.config_id)
                run = Run(
                    self._context,
                    execution,
                    definitions,
                    progress,
                    deliver=self._deliver.get(execution_id, True),
                    slot=slot,
                )
                self.ownership.hold(execution_id, self._on_lost(execution_id))
                try:
                    await run.execute()
                finally:
                    self.ownership.release(execution_id)
        except asyncio.CancelledError:
            # Cancelled while loading or queued: a running one has recorded its own status.
            if execution_id in self._handed_over:
                bound.info("queued execution left pending for another node")
                raise
            reason = self.cancel_reason(execution_id)
            cancelled = await asyncio.shield(
                self.lifecycle.cancel_pending(execution_id, reason, durable=True)
            )
            if not cancelled and starting is not None:
                # Cancelled while its start was written: the row may have become RUNNING with
                # nothing running it (seen under load: a console cancel right after a re-run).
                await asyncio.shield(
                    self.lifecycle.finish(starting, Status.CANCELLED, error=reason)
                )
            raise

    async def _load(
        self,
        execution_id: str,
        seq: int,
        before: asyncio.Event,
        mine: asyncio.Event,
        progress: Progress,
        bound: Any,
    ) -> tuple[domain.Execution, executions.RunDefinitions] | None:
        """The execution and its definitions, read from the store; None when the run went
        another way (not pending, failed, waiting for its dependencies, run as a parent)."""
        fields = {"execution_id": execution_id}
        execution = await self._store_step(
            "load execution", lambda: executions.get_execution(self.store, execution_id), fields
        )
        if execution is None or execution.status is not Status.PENDING:
            bound.warning(
                "execution not pending, not run",
                status=execution.status.value if execution else None,
            )
            return None
        try:
            definitions = await self._store_step(
                "load definitions",
                lambda: executions.load_run_definitions(
                    self.store,
                    execution.config_id,
                    execution.schedule_id,
                    default_timezone=self.settings.scheduler.timezone,
                ),
                fields,
            )
        except executions.DefinitionProblem as exc:
            await self.lifecycle.fail_unstarted(execution, str(exc))
            bound.warning("execution failed", error=str(exc))
            return None
        for problem in definitions.problems:
            bound.warning("invalid delivery row left out", problem=problem)
        if (
            execution.trigger_type in _BACKFILL_RUNS
            and execution.schedule_id is not None
            and execution.scheduled_for is not None
        ):  # its backfill's --no-deliver, also when another node adopted or recovered it
            schedule_id, when = execution.schedule_id, execution.scheduled_for
            ids = [i for i in (execution_id, execution.recovers_id) if i]
            self._deliver[execution_id] = await self._store_step(
                "load backfill",
                lambda: backfills.delivers(self.store, ids, schedule_id, when),
                fields,
            )
        gate = self.waits
        waits_for = definitions.schedule is not None and definitions.schedule.waits is not None
        if (
            gate is not None
            and waits_for
            and await self._store_step(
                "check dependencies", lambda: gate.holds(execution, definitions), fields
            )
        ):
            bound.info("execution waits for its dependencies")
            return None
        role = await self._store_step(
            "load audience", lambda: audience_rows.role(self.store, execution), fields
        )
        if role.driver is not None and role.audience is None:
            await before.wait()
            await self._fanout.run_parent(
                execution,
                definitions,
                role.driver,
                progress,
                seq=seq,
                deliver=self._deliver.get(execution_id, True),
                on_queued=mine.set,
                cancel_reason=self.cancel_reason,
            )
            return None
        if role.audience is not None:  # one audience's child: its recipients, overrides
            definitions = fanout.child_definitions(definitions, role.audience)
        return execution, definitions

    async def _store_step(
        self, what: str, call: Callable[[], Awaitable[T]], fields: dict[str, Any]
    ) -> T:
        """A step that needs the store's answer: a few at a time, waiting out an outage."""
        async with self._store_steps:
            result: T = await journal.until_reachable(what, call, log_fields=fields)
            return result

    @property
    def _context(self) -> RunContext:
        return RunContext(
            settings=self.settings,
            store=self.store,
            node_id=self.node_id,
            lifecycle=self.lifecycle,
            deliveries=self.deliveries,
            cancel_reason=self.cancel_reason,
        )

    def _on_lost(self, execution_id: str) -> Callable[[str], None]:
        """What fencing does when a revalidation finds a held run lost: stop it at once (the
        run records nothing and delivers nothing: another node owns its fate now)."""

        def stop(reason: str) -> None:
            task = self._tasks.get(execution_id)
            if task is not None and not task.done():
                self._reasons.setdefault(execution_id, f"stopped: {reason}")
                task.cancel(reason)

        return stop

    # -- janitor --------------------------------------------------------------------------------

    async def janitor_loop(self) -> None:
        """Forever: remove old files and prune old rows; a failed pass is logged and retried."""
        retention_hours = self.settings.execution.file_retention_hours
        interval = min(3600.0, max(60.0, retention_hours * 3600 / 10))
        while True:
            try:
                await self.clean_up()
            except Exception as exc:  # the store may be down: try again next time
                log.warning("janitor pass failed", error=str(exc).splitlines()[0])
            await asyncio.sleep(interval)

    async def clean_up(self, now: datetime | None = None) -> dict[str, int]:
        """One janitor pass: returns the counts of removed directories and pruned rows."""
        now = now or utcnow()
        settings = self.settings.execution
        cutoff = now - timedelta(hours=settings.file_retention_hours)
        candidates = await asyncio.to_thread(_old_directories, self.workspace, cutoff.timestamp())
        candidates = {name: p for name, p in candidates.items() if name not in self._tasks}
        known = await executions.statuses(self.store, list(candidates))
        removed = 0
        for name, path in candidates.items():
            status = known.get(name)
            if status is not None and not status.is_terminal:
                continue  # RUNNING with deliveries still retrying: the file is still needed
            await asyncio.to_thread(shutil.rmtree, path, True)
            removed += 1
        before = now - timedelta(days=settings.execution_retention_days)
        pruned = await executions.prune_executions(self.store, before=before)
        # A data-driven run's audiences go with its runs (the same retention).
        bursts = await audience_rows.prune_bursts(self.store, before=before)
        # And the ledgers about them: notices, waits, backfills, late fires (settled rows only).
        ledgers = await retention.prune_ledgers(self.store, before=before)
        counts = {
            "directories_removed": removed,
            "executions_pruned": pruned,
            "bursts_pruned": bursts,
            **ledgers,
        }
        if any(counts.values()):
            log.info("janitor cleaned up", **counts)
        return counts


def _old_directories(workspace: Path, cutoff: float) -> dict[str, Path]:
    """Execution directories whose newest entry is older than `cutoff` (a timestamp)."""
    found: dict[str, Path] = {}
    if not workspace.is_dir():
        return found
    for entry in workspace.iterdir():
        if not entry.is_dir() or entry.is_symlink():
            continue
        try:
            newest = max(
                [entry.stat().st_mtime, *(child.stat().st_mtime for child in entry.iterdir())]
            )
        except OSError:
            continue
        if newest < cutoff:
            found[entry.name] = entry
    return found
