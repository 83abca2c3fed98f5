"""A data-driven run's parent: read the driver into the store, then claim and run its children.

    fanout = FanOut(host=engine, pool=pool)
    await fanout.run_parent(execution, definitions, driver, progress, seq=..., on_queued=...)

Order:
1. PENDING -> RUNNING (the parent is held by this node, heartbeated, fenced like any run).
2. The burst's row (`report_bursts`, keyed by the parent's logical id, so a recovered parent
   carries on). Unless an earlier pass finished it, the driver query streams (inside a pool slot
   of the driver's datasource) into `report_audiences` in batches, every row checked: a bad
   driver fails the parent naming the column or key, before anything is sent.
3. Fan-out: the audiences in driver order, a window at a time: each batch is claimed by
   inserting its children's execution rows (ids drawn from the burst and key: one insert wins,
   store/audiences.py), each child submitted to the engine, where it waits for a pool slot and
   its datasource's limit like any run. At most `window` children are in hand at once, so 10,000
   audiences never become 10,000 tasks; only a small key digest per audience stays in memory
   (while the driver is read).
4. A drain (SIGTERM) leaves the parent RUNNING for its recovery; a cancel (API) cancels the
   children in hand and ends it CANCELLED, leaving the audiences not claimed yet unsent.
5. Children claimed by a node that was lost are the recovery sweep's (adopted, or run again under
   the same Idempotency-Key); the parent waits until every audience's latest run has ended (its
   ledger may retry), checking the store every heartbeat interval.
6. The counts (audiences, delivered, failed, skipped as empty) go to the burst's row, and the
   parent ends COMPLETED (nothing failed), PARTIAL (some failed) or FAILED (none delivered and
   some failed).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from reporthubd import domain, logs, templates
from reporthubd.config import Settings
from reporthubd.connectors import base as connectors
from reporthubd.domain import OwnershipLost
from reporthubd.engine import audiences, splitting
from reporthubd.engine.pool import Pool
from reporthubd.engine.streaming import Progress
from reporthubd.lifecycle.executions import Lifecycle
from reporthubd.store import audiences as audience_rows
from reporthubd.store import definitions as definition_rows
from reporthubd.store import executions
from reporthubd.store.database import Store
from reporthubd.timeutil import utcnow

log = logs.get(__name__)

Status = domain.ExecutionStatus

WINDOW_PER_SLOT = 4
"""Children in hand per pool slot: enough queued behind the running ones that a slot never
waits for the next claim round trip."""
WINDOW_MIN, WINDOW_MAX = 64, 1000


@dataclass(frozen=True, kw_only=True)
class Claimed:
    """A child this node's parent has just inserted, with its row and definitions as the parent
    holds them: its run reads neither from the store again (the execution, the report's
    definitions and the audience: 6 of the 15 round trips an audience took, bench/fanout.py).
    A child run any other way (adopted, recovered, claimed by an earlier try) reads them."""

    execution: domain.Execution
    definitions: executions.RunDefinitions


def child_definitions(
    definitions: executions.RunDefinitions, audience: audience_rows.Audience
) -> executions.RunDefinitions:
    """One audience's child run's definitions: its recipients, targets and overrides, and for a
    split report its key's part of the rows."""
    return splitting.for_child(audiences.for_audience(definitions, audience), audience)


class Host(Protocol):
    """What the fan-out needs of the engine that runs it."""

    settings: Settings
    store: Store
    node_id: str
    lifecycle: Lifecycle

    def submit(
        self, execution_id: str, *, deliver: bool = True, claimed: Claimed | None = None
    ) -> None: ...

    def task(self, execution_id: str) -> asyncio.Task[None] | None: ...


class FanOut:
    def __init__(self, *, host: Host, pool: Pool, accepting: Callable[[], bool]) -> None:
        self.host = host
        self.pool = pool
        self.accepting = accepting
        """False once the engine drains: a parent stopped then is left RUNNING, so that its
        recovery (another node, or this one's next start) carries on with the same audiences,
        instead of ending CANCELLED with half of them never sent."""

    def window(self) -> int:
        return max(WINDOW_MIN, min(WINDOW_MAX, WINDOW_PER_SLOT * self.pool.limit))

    async def run_parent(
        self,
        execution: domain.Execution,
        definitions: executions.RunDefinitions,
        driver: audience_rows.AudienceDriver,
        progress: Progress,
        *,
        seq: int,
        deliver: bool,
        on_queued: Callable[[], None],
        cancel_reason: Callable[[str], str],
    ) -> None:
        host = self.host
        lifecycle = host.lifecycle
        bound = log.bind(execution_id=execution.id, config_id=execution.config_id)
        if not await lifecycle.start(execution):
            on_queued()
            bound.warning("execution no longer pending, not run")
            return
        progress.phase = "reading audiences"
        current = asyncio.current_task()

        def stop(reason: str) -> None:
            if current is not None and not current.done():
                current.cancel(reason)

        lifecycle.ownership.hold(execution.id, stop)
        in_hand: dict[str, asyncio.Task[None]] = {}
        burst_id = audience_rows.burst_id_of(execution)
        try:
            status, message, count = await self._parent(
                execution, definitions, driver, progress, burst_id, in_hand, seq, deliver, on_queued
            )
        except asyncio.CancelledError:
            if lifecycle.ownership.was_lost(execution.id):
                bound.warning("data-driven run lost by this node: stopped")
                raise
            if not self.accepting():
                bound.warning(
                    "data-driven run left running for its recovery: the engine drains",
                    audiences_in_hand=len(in_hand),
                )
                raise
            reason = cancel_reason(execution.id)
            for task in in_hand.values():
                task.cancel(reason)
            await asyncio.shield(lifecycle.finish(execution, Status.CANCELLED, error=reason))
            raise
        except OwnershipLost as exc:
            bound.warning("data-driven run lost by this node: stopped", reason=str(exc))
            return
        except Exception as exc:  # a bug: recorded on the row, logged with its traceback
            bound.exception("execution crashed")  # the event the crash checks look for
            status, message, count = (
                Status.FAILED,
                f"internal error: {type(exc).__name__}: {exc}",
                0,
            )
        finally:
            on_queued()
            lifecycle.ownership.release(execution.id)
        await asyncio.shield(lifecycle.finish(execution, status, error=message, row_count=count))
        progress.phase = "done"
        bound.info(
            "data-driven run finished", status=status.value, audiences=count, summary=message
        )

    async def _parent(
        self,
        execution: domain.Execution,
        definitions: executions.RunDefinitions,
        driver: audience_rows.AudienceDriver,
        progress: Progress,
        burst_id: str,
        in_hand: dict[str, asyncio.Task[None]],
        seq: int,
        deliver: bool,
        on_queued: Callable[[], None],
    ) -> tuple[Status, str | None, int]:
        host = self.host
        store = host.store
        try:
            resolved = audiences.resolve_parent(host.settings, execution, definitions)
        except templates.TemplateError as exc:
            on_queued()
            return Status.FAILED, str(exc), 0
        await host.lifecycle.record(execution, parameters=resolved)
        burst = await audience_rows.open_burst(store, burst_id, execution.config_id)
        if burst.enumerated_at is None:
            try:
                total = await self._enumerate(
                    execution, definitions, driver, resolved, burst_id, seq, on_queued, progress
                )
            except (audiences.AudienceProblem, connectors.ConnectorError) as exc:
                await audience_rows.discard_audiences(store, burst_id)
                return Status.FAILED, str(exc), 0
            except TimeoutError:
                await audience_rows.discard_audiences(store, burst_id)
                timeout = host.settings.execution.query_timeout_seconds
                return Status.FAILED, f"the driver query ran longer than {timeout:g} s", 0
            await audience_rows.mark_enumerated(store, burst_id, total)
        try:  # split by key: the report's query once, its rows spilled by key (splitting.py)
            split = await splitting.split_rows(
                host.settings, store, self.pool, execution, definitions, driver, resolved,
                burst_id=burst_id, seq=seq, on_queued=on_queued, progress=progress,
            )  # fmt: skip
        except splitting.SplitFailed as exc:
            return Status.FAILED, str(exc), 0
        on_queued()
        progress.phase = "fanning out"
        await self._fan_out(execution, definitions, burst_id, resolved, in_hand, deliver, progress)
        progress.phase = "waiting for audiences"
        counts = await self._settled(burst_id, in_hand)
        await audience_rows.finish_burst(store, burst_id, counts)
        if split is not None:
            await splitting.discard(host.settings, burst_id)
        note = split.note() if split is not None else None
        summary = (
            f"{counts.audiences} audiences: {counts.delivered} delivered, {counts.failed} "
            f"failed, {counts.skipped} skipped as empty"
        ) + (f"; {note}" if note else "")
        if counts.failed == 0:
            return Status.COMPLETED, note, counts.audiences
        if counts.delivered or counts.skipped:
            return Status.PARTIAL, summary, counts.audiences
        return Status.FAILED, summary, counts.audiences

    async def _enumerate(
        self,
        execution: domain.Execution,
        definitions: executions.RunDefinitions,
        driver: audience_rows.AudienceDriver,
        resolved: dict[str, object],
        burst_id: str,
        seq: int,
        on_queued: Callable[[], None],
        progress: Progress,
    ) -> int:
        host = self.host
        source = await driver_datasource(host.store, driver)
        settings = host.settings.execution
        connector_cls = await asyncio.to_thread(connectors.connector_class, source.type.value)
        connector = connector_cls(source)
        total = 0
        async with self.pool.slot(
            f"datasource-{source.id}", source.max_concurrent_queries, seq, on_queued
        ):
            try:
                async with asyncio.timeout(settings.query_timeout_seconds):
                    await connector.open()
                    batches = audiences.read_driver(
                        connector,
                        driver,
                        definitions,
                        resolved,
                        burst_id=burst_id,
                        batch_size=min(settings.batch_size, audience_rows.CHUNK),
                        timeout_seconds=settings.query_timeout_seconds,
                        execution_id=execution.id,
                    )
                    async for batch in batches:
                        await audience_rows.add_audiences(host.store, batch)
                        total += len(batch)
                        progress.rows = total
            finally:
                with contextlib.suppress(Exception):
                    await asyncio.shield(connector.close())
        return total

    async def _fan_out(
        self,
        execution: domain.Execution,
        definitions: executions.RunDefinitions,
        burst_id: str,
        resolved: dict[str, object],
        in_hand: dict[str, asyncio.Task[None]],
        deliver: bool,
        progress: Progress,
    ) -> None:
        host = self.host
        after: tuple[int, str] | None = None
        window = self.window()
        claimed = 0
        while True:
            free = window - len(in_hand)
            if free >= window // 2:
                batch = await audience_rows.next_audiences(
                    host.store, burst_id, after=after, limit=free
                )
                if not batch:
                    return
                after = (batch[-1].seq, batch[-1].child_id)
                await host.lifecycle.ownership.confirm(execution.id, what="claiming audiences")
                now = utcnow()
                claims = await audience_rows.claim_children(
                    host.store,
                    execution,
                    batch,
                    parameters=resolved,
                    node_id=host.node_id,
                    created_at=now,
                )
                # A child's schedule is none of its own (its row has no schedule_id), as when
                # its definitions are read for it.
                plain = dataclasses.replace(definitions, schedule=None)
                by_id = {audience.child_id: audience for audience in batch}
                for child in claims.ids:
                    known = None
                    if child in claims.inserted:
                        audience = by_id[child]
                        known = Claimed(
                            execution=audience_rows.child_execution(
                                execution,
                                audience,
                                parameters=resolved,
                                node_id=host.node_id,
                                created_at=now,
                            ),
                            definitions=child_definitions(plain, audience),
                        )
                    try:
                        host.submit(child, deliver=deliver, claimed=known)
                    except RuntimeError:  # the engine drains: the rest stay PENDING, adopted
                        return
                    task = host.task(child)
                    if task is not None:
                        in_hand[child] = task
                claimed += len(claims.ids)
                progress.rows = claimed
                continue
            done, _ = await asyncio.wait(in_hand.values(), return_when=asyncio.FIRST_COMPLETED)
            for child in [c for c, t in in_hand.items() if t in done]:
                del in_hand[child]

    async def _settled(
        self, burst_id: str, in_hand: dict[str, asyncio.Task[None]]
    ) -> audience_rows.Counts:
        """Wait for this node's children, then until every audience's latest run has ended."""
        if in_hand:
            await asyncio.wait(in_hand.values())
            in_hand.clear()
        interval = self.host.settings.scheduler.heartbeat_interval_seconds
        while True:
            counts = await audience_rows.counts(self.host.store, burst_id)
            if counts.unfinished == 0:
                return counts
            await asyncio.sleep(interval)


async def driver_datasource(
    store: Store, driver: audience_rows.AudienceDriver
) -> domain.Datasource:
    """The driver's datasource, active and valid, or AudienceProblem naming it."""
    source = await definition_rows.get_datasource(store, driver.datasource_id)
    if source is None:
        raise audiences.AudienceProblem(
            f"the driver's datasource {driver.datasource_id} does not exist"
        )
    if isinstance(source, domain.RowError):
        raise audiences.AudienceProblem(f"the driver's datasource is invalid: {source}")
    if not source.is_active:
        raise audiences.AudienceProblem(f"the driver's datasource {source.name!r} is inactive")
    return source
