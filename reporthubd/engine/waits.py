"""Runs that wait for their dependencies and readiness probe (the rules: reporthubd/waits.py).

The engine asks `WaitGate.holds` once it has a run's definitions and before it takes a pool slot:
a scheduled run of a schedule with a wait rule is registered as waiting (store/waits.py) and
the engine lets it go, so a waiting run holds no pool slot, no task and no store connection,
only its PENDING execution row and its report_waits row. Every node's gate then checks the
waiting runs that are due (leased: one node checks a run at a time), with backoff, until they
are released (submitted to the checking node's engine, which runs them as any run: the
PENDING -> RUNNING claim makes it exactly once), or their deadline passes (`wait_policy`: skip
records the run SKIPPED with what it waited for; run_anyway releases it). A run whose node
stops while it waits is adopted by the lost-execution sweep like any queued run, and keeps
waiting; a run released by a node that stopped before starting it is taken again after the
lease. A finished run anywhere on this node moves every wait's next check to now.

Only the schedule's own fires wait (trigger_type schedule): a manual run, a re-run and a
backfill run now.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from datetime import datetime

from reporthubd import domain, logs, waits
from reporthubd.config import Settings
from reporthubd.connectors import base as connectors
from reporthubd.lifecycle.events import LifecycleEvent
from reporthubd.lifecycle.executions import Lifecycle
from reporthubd.store import executions
from reporthubd.store import waits as waiting
from reporthubd.store.database import Store, error_line
from reporthubd.timeutil import utcnow

log = logs.get(__name__)

POLL_SECONDS = 1.0
PROBE_TIMEOUT_SECONDS = 30.0


class WaitGate:
    def __init__(
        self,
        *,
        store: Store,
        settings: Settings,
        node_id: str,
        lifecycle: Lifecycle,
        submit: Callable[[str], None],
    ) -> None:
        self.store = store
        self.settings = settings
        self.node_id = node_id
        self.lifecycle = lifecycle
        self.submit = submit
        self.wake = asyncio.Event()
        self.released_count = 0
        self.expired_count = 0
        lifecycle.events.subscribe(self._on_finished, {domain.Transition.FINISHED})
        self._finished = False

    @property
    def lease_seconds(self) -> float:
        return self.settings.scheduler.node_lost_after_seconds

    def _on_finished(self, event: LifecycleEvent) -> None:
        self._finished = True
        self.wake.set()

    # -- the engine's question ---------------------------------------------------------------

    async def holds(
        self, execution: domain.Execution, definitions: executions.RunDefinitions
    ) -> bool:
        """Whether `execution` must wait (registered as waiting: the engine lets it go), or may
        run now (no rule, not a scheduled fire, or released)."""
        schedule = definitions.schedule
        rule = schedule.waits if schedule is not None else None
        if (
            rule is None
            or schedule is None
            or execution.trigger_type is not domain.TriggerType.SCHEDULE
            or execution.scheduled_for is None
        ):
            return False
        found = await waiting.get(self.store, execution.id)
        if found is None:
            zone = schedule.timezone
            names = await waiting.config_names(
                self.store, [d for d in rule.depends_on if isinstance(d, int)]
            )
            labels: dict[str | int, str] = {k: v for k, v in names.items()}
            day = execution.scheduled_for.astimezone(zone).date().isoformat()
            found = await waiting.register(
                self.store,
                execution=execution,
                schedule_id=schedule.id,
                scheduled_for=execution.scheduled_for,
                waiting_for=waits.describe(rule, labels, day, zone.key),
                deadline_at=waits.deadline_at(rule, execution.scheduled_for, zone),
            )
            log.info(
                "execution waits",
                execution_id=execution.id,
                schedule_id=schedule.id,
                waiting_for=found.waiting_for,
                deadline_at=found.deadline_at.isoformat(),
            )
            self.wake.set()
        return found.status != waiting.RELEASED

    # -- checking ------------------------------------------------------------------------------

    async def run(self) -> None:
        """Check the waiting runs that are due, forever."""
        while True:
            try:
                if self._finished:
                    self._finished = False
                    await waiting.check_all_now(self.store)
                for found in await waiting.take_due(
                    self.store, node_id=self.node_id, lease_seconds=self.lease_seconds
                ):
                    await self._check(found)
                for execution_id in await waiting.take_stale_releases(
                    self.store, node_id=self.node_id, lease_seconds=self.lease_seconds
                ):
                    self._submit(execution_id)
            except Exception as exc:  # an outage: the leases keep it exact; checked again
                log.warning("checking waiting runs failed", error=error_line(exc))
            self.wake.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(POLL_SECONDS):
                    await self.wake.wait()

    async def _check(self, found: waiting.Wait) -> None:
        try:
            definitions = await executions.load_run_definitions(
                self.store,
                found.config_id,
                found.schedule_id,
                default_timezone=self.settings.scheduler.timezone,
            )
        except executions.DefinitionProblem as exc:
            await self._expire(found, f"its definitions are invalid: {exc}", skip=True)
            return
        schedule = definitions.schedule
        rule = schedule.waits if schedule is not None else None
        if schedule is None or rule is None:  # the rule was removed meanwhile: run it
            await self._release(found, "no wait rule any more")
            return
        ready, result = await self._ready(found, rule, schedule, definitions.datasource)
        now = utcnow()
        if ready:
            await self._release(found, result)
        elif now >= found.deadline_at:
            if rule.policy is waits.WaitPolicy.RUN_ANYWAY:
                await self._release(found, f"deadline passed, run_anyway: {result}")
            else:
                await self._expire(found, result, skip=True)
        else:
            await waiting.reschedule(
                self.store,
                found.execution_id,
                node_id=self.node_id,
                next_check_at=waits.next_check(
                    found.checks,
                    now,
                    found.deadline_at,
                    self.settings.scheduler.wait_check_max_seconds,
                ),
                result=result,
            )

    async def _ready(
        self,
        found: waiting.Wait,
        rule: waits.WaitRule,
        schedule: domain.Schedule,
        source: domain.Datasource,
    ) -> tuple[bool, str]:
        start, end = waits.period(found.scheduled_for, schedule.timezone)
        resolved = await waiting.config_ids(self.store, rule.depends_on)
        done = await waiting.completed_for(
            self.store, [i for i in resolved.values() if i is not None], start, end
        )
        missing = [str(dep) for dep, cid in resolved.items() if cid is None or cid not in done]
        if missing:
            return False, "not yet COMPLETED: " + ", ".join(missing)
        if rule.readiness_query is None:
            return True, "dependencies COMPLETED"
        parameters = {
            "window_start": start,
            "window_end": end,
            "scheduled_for": found.scheduled_for,
        }
        try:
            ok = await self._probe(source, rule.readiness_query, parameters)
        except (connectors.ConnectorError, OSError, TimeoutError) as exc:
            return False, f"readiness probe failed: {str(exc)[:300]}"
        except Exception as exc:  # a driver's own error type: not ready, said so
            return False, f"readiness probe failed: {type(exc).__name__}: {str(exc)[:300]}"
        return (True, "readiness probe true") if ok else (False, "readiness probe false")

    async def _probe(
        self, source: domain.Datasource, sql: str, parameters: dict[str, datetime]
    ) -> bool:
        connector_cls = await asyncio.to_thread(connectors.connector_class, source.type.value)
        connector = connector_cls(source)
        try:
            async with asyncio.timeout(PROBE_TIMEOUT_SECONDS):
                await connector.open()
                request = connectors.QueryRequest(
                    sql=sql,
                    parameters=parameters,
                    batch_size=1,
                    timeout_seconds=PROBE_TIMEOUT_SECONDS,
                )
                async with connector.stream(request) as result:
                    async for batch in result.batches():
                        return bool(batch and batch[0]) and waits.is_true(batch[0][0])
                return False
        finally:
            await connector.close()

    async def _release(self, found: waiting.Wait, result: str) -> None:
        if await waiting.decide(
            self.store,
            found.execution_id,
            node_id=self.node_id,
            status=waiting.RELEASED,
            result=result,
            lease_seconds=self.lease_seconds,
        ):
            self.released_count += 1
            log.info("waiting execution released", execution_id=found.execution_id, why=result)
            self._submit(found.execution_id)

    async def _expire(self, found: waiting.Wait, result: str, *, skip: bool) -> None:
        if not await waiting.decide(
            self.store,
            found.execution_id,
            node_id=self.node_id,
            status=waiting.EXPIRED,
            result=result,
        ):
            return
        self.expired_count += 1
        reason = f"waited until {found.deadline_at.isoformat()} for {found.waiting_for}: {result}"
        log.warning("waiting execution expired", execution_id=found.execution_id, why=result)
        await self.lifecycle.skip_waiting(found.execution_id, reason)

    def _submit(self, execution_id: str) -> None:
        try:
            self.submit(execution_id)
        except Exception as exc:  # stopping: the release is taken again after its lease
            log.warning(
                "released execution not submitted", execution_id=execution_id, error=error_line(exc)
            )
