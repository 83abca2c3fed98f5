"""The daemon's lifecycle: start order, signals, systemd notification, supervision, drain.

Start order: config (already loaded) → logging (already configured) → store → schema check →
node registration → background tasks → control plane → READY=1. Stop order is the reverse, through
one AsyncExitStack. Signals are routed to `handle_<name>` methods from the event loop.

Exit codes: 0 after a requested stop, 1 when start-up fails or a background task dies,
2 for an invalid configuration (raised before the daemon exists, see cli.py).
"""

from __future__ import annotations

import asyncio
import gc
import os
import signal
import sys
import time
from collections.abc import Awaitable, Callable, Coroutine
from contextlib import AsyncExitStack
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from reporthubd import __version__, bootstrap, logs, metrics
from reporthubd.config import ConfigError, Settings, load_settings
from reporthubd.control.auth import TokenFileError
from reporthubd.control.server import ControlServer
from reporthubd.engine import Engine
from reporthubd.engine.ledger import DeliveryLedger
from reporthubd.engine.waits import WaitGate
from reporthubd.lifecycle.events import RecentTransitions, with_metrics
from reporthubd.lifecycle.executions import Lifecycle
from reporthubd.lifecycle.nodes import Liveness, Node
from reporthubd.notify.service import NoticeService
from reporthubd.scheduler.backfill_runner import BackfillRunner
from reporthubd.scheduler.loop import Scheduler
from reporthubd.store.database import Store
from reporthubd.store.definitions import load_definitions
from reporthubd.store.journal import Journal, JournalBusy
from reporthubd.systemd import Notifier

log = logs.get(__name__)

# Settings that only take effect after a restart; a reload that changes them says so.
RESTART_ONLY = ("store", "control", "execution.workspace", "scheduler.node_id")

GIL_SWITCH_INTERVAL_SECONDS = 0.0005

ReloadHook = Callable[[Settings], Awaitable[str]]


class StartupError(Exception):
    """The daemon cannot start; the message says what to do."""


class Supervisor:
    """Owns the daemon's named background tasks. A task that dies, or returns when it should
    run forever, is recorded as the failure and wakes the daemon, which then stops loudly."""

    def __init__(self) -> None:
        self._tasks: dict[str, asyncio.Task[Any]] = {}
        self._stopping = False
        self.failed = asyncio.Event()
        self.failure: str | None = None

    def spawn(
        self, name: str, coro: Coroutine[Any, Any, Any], *, forever: bool = True
    ) -> asyncio.Task[Any]:
        """Start a named task. `forever` tasks must never end; one-shot tasks may return, but
        an exception from either kind stops the daemon."""
        if name in self._tasks:
            raise RuntimeError(f"a task named {name!r} is already running")
        task = asyncio.create_task(coro, name=name)
        self._tasks[name] = task
        task.add_done_callback(lambda done: self._on_done(done, forever))
        return task

    def _on_done(self, task: asyncio.Task[Any], forever: bool) -> None:
        self._tasks.pop(task.get_name(), None)
        if self._stopping or task.cancelled():
            return
        exc = task.exception()
        if exc is None and not forever:
            return
        self.failure = (
            f"background task {task.get_name()} died: {type(exc).__name__}: {exc}"
            if exc is not None
            else f"background task {task.get_name()} exited unexpectedly"
        )
        log.error("background task failed", task=task.get_name(), exc_info=exc)
        self.failed.set()

    @property
    def names(self) -> list[str]:
        return sorted(self._tasks)

    async def stop(self) -> None:
        self._stopping = True
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel("daemon stopping")
        await asyncio.gather(*tasks, return_exceptions=True)


@dataclass
class ReloadResult:
    at: datetime
    ok: bool
    message: str


class Daemon:
    def __init__(
        self,
        settings: Settings,
        *,
        config_path: Path | None = None,
        notifier: Notifier | None = None,
    ) -> None:
        self.settings = settings
        self.config_path = config_path
        self.notifier = notifier or Notifier()
        self.node_id = settings.scheduler.effective_node_id
        self.started_at = datetime.now(UTC)
        self.draining = False
        self.last_reload: ReloadResult | None = None
        self.store_up = False
        self.last_heartbeat = time.monotonic()
        self._reload_hooks: list[ReloadHook] = []
        self._stop_requested: asyncio.Event | None = None
        self._signals_seen = 0
        self._reload_lock: asyncio.Lock | None = None
        self._tasks: Supervisor | None = None
        self._store: Store | None = None
        self.control: ControlServer | None = None
        self.engine: Engine | None = None
        self.deliveries: DeliveryLedger | None = None
        self.scheduler: Scheduler | None = None
        self.backfills: BackfillRunner | None = None
        self.events = with_metrics()
        self.transitions = RecentTransitions()
        self.events.subscribe(self.transitions)
        self.lifecycle: Lifecycle | None = None
        self.node: Node | None = None
        self.journal: Journal | None = None
        self.notices: NoticeService | None = None

    # -- what the control plane sees (control.runtime.Runtime) ---------------------------------

    @property
    def store(self) -> Store:
        if self._store is None:
            raise RuntimeError("daemon not started")
        return self._store

    @property
    def tasks(self) -> Supervisor:
        if self._tasks is None:
            raise RuntimeError("daemon not started")
        return self._tasks

    def add_reload_hook(self, hook: ReloadHook) -> None:
        """Components register how they take new settings and definitions on reload."""
        self._reload_hooks.append(hook)

    # -- lifecycle -----------------------------------------------------------------------------

    async def run(self) -> int:
        # Writers and SDK connectors render in worker threads. With CPython's default 5 ms GIL
        # switch interval the event loop queues behind them on every I/O wake-up (the convoy
        # effect): bench/control.py measured control-plane p99 264 ms during a 1M-row Excel
        # export at 5 ms, 89 ms at 0.5 ms.
        sys.setswitchinterval(GIL_SWITCH_INTERVAL_SECONDS)
        loop = asyncio.get_running_loop()
        self._stop_requested = asyncio.Event()
        self._reload_lock = asyncio.Lock()
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            loop.add_signal_handler(signum, self._dispatch_signal, signum)
        log.info(
            "reporthubd starting",
            version=__version__,
            node_id=self.node_id,
            pid=os.getpid(),
            listen=self.settings.control.listen,
        )
        try:
            async with AsyncExitStack() as stack:
                stack.callback(self._remove_signal_handlers, loop)
                stack.callback(self.notifier.close)
                await self._start(stack)
                # What start made (modules, settings, pools) lives as long as the daemon: frozen
                # out of the collector's sight (its garbage collected first), a full collection
                # walks only what came after. Unfrozen, a 1M-row export set off one every ~2 s,
                # 60-370 ms each, on the loop; frozen 10-50 ms (bench/console.py, gc callbacks).
                gc.collect()
                gc.freeze()
                self.notifier.ready(self._status_line())
                log.info(
                    "reporthubd ready",
                    node_id=self.node_id,
                    port=self.control and self.control.port,
                )
                failure = await self._wait_for_stop()
                self.draining = True
                self.notifier.stopping()
                log.info("reporthubd stopping", reason=failure or "signal")
                await self._drain()
            if failure:
                log.error("reporthubd stopped after a failure", reason=failure)
                return 1
            log.info("reporthubd stopped")
            return 0
        except StartupError as exc:
            log.error("reporthubd cannot start", reason=str(exc))
            return 1

    async def _start(self, stack: AsyncExitStack) -> None:
        upgrade = self.settings.store.upgrades_automatically
        try:
            opened = await stack.enter_async_context(
                bootstrap.open_store(self.settings, upgrade=upgrade)
            )
        except bootstrap.StoreRefused as exc:
            raise StartupError(str(exc)) from None
        if opened.upgraded:
            log.info("store schema upgraded", before=opened.found, after=opened.revision)
        store = self._store = opened.store
        self.lifecycle = Lifecycle(store, node_id=self.node_id, events=self.events)
        self.node = Node(
            store,
            self.settings.scheduler,
            node_id=self.node_id,
            ownership=self.lifecycle.ownership,
            liveness=Liveness(self.settings.scheduler, started_at=self.started_at.timestamp()),
            on_contact=self._on_contact,
        )
        last_seen = await self.node.register()
        # Records of finished work wait out a store outage here (and a crash during one).
        self.journal = Journal(store, self._journal_path())
        try:
            unflushed = await self.journal.open()
        except (JournalBusy, OSError) as exc:
            raise StartupError(f"store journal: {exc}") from None
        stack.push_async_callback(self.journal.close)
        self.store_up = True
        self.last_heartbeat = time.monotonic()
        metrics.observe_gauges(
            {
                metrics.STORE_UP: lambda: 1.0 if self.store_up else 0.0,
                metrics.HEARTBEAT_AGE: lambda: time.monotonic() - self.last_heartbeat,
            }
        )

        tasks = Supervisor()
        self._tasks = tasks
        stack.push_async_callback(tasks.stop)
        tasks.spawn("node-heartbeat", self.node.run_heartbeats())
        tasks.spawn("store-journal", self.journal.flush_loop())
        if unflushed:  # before the scheduler's sweep judges those executions lost
            async with asyncio.timeout(self.settings.store.connect_timeout_seconds * 3):
                await self.journal.flush()
        if self.notifier.watchdog_seconds:
            tasks.spawn("systemd-watchdog", self._watchdog_loop(self.notifier.watchdog_seconds))

        self.deliveries = DeliveryLedger(
            self.settings, store, node_id=self.node_id, lifecycle=self.lifecycle
        )
        tasks.spawn("delivery-retries", self.deliveries.run_retries())
        self.add_reload_hook(self.deliveries.on_reload)
        self.engine = Engine(
            self.settings,
            store,
            node_id=self.node_id,
            deliveries=self.deliveries,
            lifecycle=self.lifecycle,
        )
        await self.engine.start()
        stack.push_async_callback(self.engine.stop)
        self.engine.waits = WaitGate(
            store=store,
            settings=self.settings,
            node_id=self.node_id,
            lifecycle=self.lifecycle,
            submit=self.engine.submit,
        )
        tasks.spawn("waiting-runs", self.engine.waits.run())
        tasks.spawn("engine-janitor", self.engine.janitor_loop())
        self.add_reload_hook(self.engine.on_reload)
        # Notices (issue 17): subscribed before the scheduler claims its first fire.
        self.notices = NoticeService(
            self.settings, store, node_id=self.node_id, started_at=self.started_at
        )
        self.notices.start(self.events, tasks)
        self.add_reload_hook(self.notices.on_reload)

        # The scheduler starts after the engine and stops first (in _drain).
        self.scheduler = Scheduler(
            store=store,
            settings=self.settings,
            node_id=self.node_id,
            submit=self.engine.submit,
            started_at=self.started_at,
            last_seen=last_seen,
            lifecycle=self.lifecycle,
            liveness=self.node.liveness,
        )
        stack.push_async_callback(self.scheduler.stop)
        await self.scheduler.start(tasks)
        self.add_reload_hook(self.scheduler.on_reload)
        self.backfills = BackfillRunner(
            store=store,
            settings=self.settings,
            node_id=self.node_id,
            lifecycle=self.lifecycle,
            submit=self.engine.submit,
            cancel=self.engine.cancel,
        )
        self.backfills.start(tasks)

        self.control = ControlServer(self.settings.control, self)
        stack.push_async_callback(self.control.stop)
        try:
            await self.control.start()
        except (TokenFileError, OSError) as exc:
            raise StartupError(f"control plane cannot start: {exc}") from None
        self.add_reload_hook(self.control.reload)

    def _journal_path(self) -> Path:
        configured = self.settings.store.journal_path
        if configured:
            return Path(configured).expanduser()
        return Path(self.settings.execution.workspace).expanduser() / ".store-journal.jsonl"

    async def _wait_for_stop(self) -> str | None:
        assert self._stop_requested is not None
        stop = asyncio.create_task(self._stop_requested.wait(), name="wait-stop")
        failed = asyncio.create_task(self.tasks.failed.wait(), name="wait-failure")
        try:
            await asyncio.wait({stop, failed}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stop.cancel()
            failed.cancel()
        return self.tasks.failure

    async def _drain(self) -> None:
        """Stop intake (the scheduler claims no new fire), let running executions finish within
        the grace period, then cancel the rest with a recorded reason (the engine's drain)."""
        grace = self.settings.execution.drain_grace_seconds
        log.info("draining", grace_seconds=grace, tasks=self.tasks.names)
        if self.scheduler is not None:
            await self.scheduler.stop()  # intake first: no new fire is claimed from here on
            await self._final_heartbeat()
        if self.engine is not None:
            await self.engine.drain(grace)
        if self.scheduler is not None and self.store_up:
            # Queued runs were left PENDING: the other nodes adopt them at their next sweep.
            try:
                async with asyncio.timeout(self.settings.store.connect_timeout_seconds):
                    assert self.node is not None  # started with the scheduler
                    await self.node.mark_stopped()
            except Exception as exc:  # they adopt them once this node's heartbeat is stale
                log.warning(
                    "marking the node stopped failed",
                    error=str(exc).splitlines()[0] if str(exc) else type(exc).__name__,
                )

    async def _final_heartbeat(self) -> None:
        """Intake stopped: a last heartbeat tells the next start's catch-up when the outage
        began (its SKIPPED reasons say "daemon down from" then). Best effort."""
        if not self.store_up or self.node is None:
            return
        try:
            async with asyncio.timeout(self.settings.store.connect_timeout_seconds):
                await self.node.heartbeat()
        except Exception as exc:
            log.warning(
                "final heartbeat failed",
                error=str(exc).splitlines()[0] if str(exc) else type(exc).__name__,
            )

    # -- signals --------------------------------------------------------------------------------

    def _dispatch_signal(self, signum: int) -> None:
        handler = getattr(self, f"handle_{signal.Signals(signum).name.lower()}")
        handler()

    def handle_sigterm(self) -> None:
        self._request_stop("SIGTERM")

    def handle_sigint(self) -> None:
        self._request_stop("SIGINT")

    def handle_sighup(self) -> None:
        if self._tasks is None or self.draining:
            return
        name = f"reload-{time.monotonic_ns()}"
        self.tasks.spawn(name, self.reload(source="SIGHUP"), forever=False)

    def _request_stop(self, name: str) -> None:
        self._signals_seen += 1
        if self._signals_seen > 1:
            log.warning("second stop signal: exiting now", signal=name)
            os._exit(1)
        log.info("stop requested", signal=name)
        assert self._stop_requested is not None
        # Refuse new work from this moment (the drain itself starts when the loop gets to it).
        self.draining = True
        if self.engine is not None:
            self.engine.close_intake()
        self._stop_requested.set()

    def _remove_signal_handlers(self, loop: asyncio.AbstractEventLoop) -> None:
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            loop.remove_signal_handler(signum)

    # -- reload ---------------------------------------------------------------------------------

    async def reload(self, *, source: str) -> ReloadResult:
        """Build and validate the new state fully, then swap it in; on any failure keep the old
        state and say why. Never raises (a failed reload must not stop the daemon)."""
        assert self._reload_lock is not None
        async with self._reload_lock:
            self.notifier.reloading()
            try:
                result = await self._reload(source)
            except Exception as exc:  # a reload failure is reported, not fatal
                result = ReloadResult(
                    at=datetime.now(UTC), ok=False, message=f"{type(exc).__name__}: {exc}"
                )
            self.last_reload = result
            if result.ok:
                log.info("reload done", source=source, result=result.message)
            else:
                log.error(
                    "reload failed, keeping the previous state",
                    source=source,
                    reason=result.message,
                )
            self.notifier.ready(self._status_line())
            return result

    async def _reload(self, source: str) -> ReloadResult:
        now = datetime.now(UTC)
        if self.config_path is not None:
            try:
                new = await asyncio.to_thread(load_settings, self.config_path)
            except ConfigError as exc:
                return ReloadResult(at=now, ok=False, message=str(exc))
        else:
            new = self.settings
        definitions = await load_definitions(self.store, default_timezone=new.scheduler.timezone)
        messages = [await hook(new) for hook in self._reload_hooks]
        needs_restart = [k for k in RESTART_ONLY if _get(new, k) != _get(self.settings, k)]
        if needs_restart:
            log.warning("changed settings take effect after a restart", keys=needs_restart)
        if new.logging.level != self.settings.logging.level:
            logs.set_level(new.logging.level)
        self.settings = new
        summary = (
            f"{len(definitions.schedules)} schedules, {len(definitions.configs)} configs, "
            f"{len(definitions.errors)} invalid rows"
        )
        return ReloadResult(at=now, ok=True, message="; ".join([summary, *messages]))

    # -- background loops -----------------------------------------------------------------------

    def _on_contact(self, store_up: bool) -> None:
        """After each heartbeat: the store's state for /readyz, metrics and systemd's status."""
        self.store_up = store_up
        if store_up:
            self.last_heartbeat = time.monotonic()
        self.notifier.status(self._status_line())

    async def _watchdog_loop(self, period: float) -> None:
        """Ping at half the watchdog period; a blocked loop misses pings, so systemd notices."""
        interval = period / 2
        while True:
            self.notifier.watchdog()
            await asyncio.sleep(interval)

    def _status_line(self) -> str:
        store = "store up" if self.store_up else "store DOWN"
        reload = ""
        if self.last_reload is not None:
            reload = "; last reload ok" if self.last_reload.ok else "; last reload FAILED"
        return f"node {self.node_id}; {store}{reload}"


def _get(settings: Settings, dotted: str) -> Any:
    value: Any = settings
    for part in dotted.split("."):
        value = getattr(value, part)
    return value
