"""The retry worker, and settling an execution once its deliveries are done.

`RetryWorker.run_retries()` is a forever task of the daemon. It sleeps until the earliest
pending retry of the store (any node's), woken early when an attempt records a new one; claims
due ones with a conditional update (one node wins, and the claim is a lease: a node that dies
mid-send leaves the retry to be claimed again after `RETRY_LEASE`); makes each attempt from the
definitions of that run only; and when an execution has nothing pending any more, settles it.
At most twice `[execution] max_concurrent_executions` retries are in flight per process. On
stop, retries in flight are cancelled and handed back, due at once for the next process.

`settle(execution_id)` moves a RUNNING execution to its final status (COMPLETED, PARTIAL or
FAILED, from `outcomes.final_status`) with a conditional update from RUNNING, once nothing is
pending. `settle_orphans()` settles the executions whose last retry was recorded by a node that
died (or failed) before settling them.
"""

from __future__ import annotations

import asyncio
import functools
from dataclasses import replace
from datetime import timedelta

from reporthubd import domain, logs, metrics
from reporthubd.engine.ledger.context import LedgerContext
from reporthubd.engine.ledger.jobs import job_for
from reporthubd.engine.ledger.outcomes import final_status
from reporthubd.engine.ledger.rounds import Rounds, wants_link
from reporthubd.lifecycle.nodes import heartbeat_cutoff
from reporthubd.store import delivery_logs, executions
from reporthubd.timeutil import utcnow

log = logs.get(__name__)

ES = domain.ExecutionStatus
RETRY_LEASE = timedelta(minutes=30)
"""How long a claimed retry stays claimed: longer than any attempt takes."""
POLL_SECONDS = 30.0
"""The longest sleep between two looks at the store (another node's new retries, orphans)."""


async def settle(context: LedgerContext, execution_id: str) -> domain.ExecutionStatus | None:
    """Once nothing is pending, move a RUNNING execution to its final status. Returns it,
    or None while a retry is pending or when the execution is not RUNNING any more."""
    rows = await delivery_logs.logs_for_execution(context.store, execution_id)
    if any(row.pending for row in rows):
        return None
    status, error = final_status(rows)
    if await context.lifecycle.settle(execution_id, status, error):
        log.info("execution settled", execution_id=execution_id, status=status.value)
        return status
    return None


async def settle_orphans(context: LedgerContext) -> list[str]:
    """Settle executions whose last retry was recorded by a node that died (or failed)
    before settling them: nothing pending, and a heartbeat older than `[scheduler]
    node_lost_after_seconds`, or this node's own while this process is not delivering for them
    (a previous process of this node, or a settle that failed: this node's heartbeats keep those
    fresh for ever). Returns the ids settled."""
    stale_before = heartbeat_cutoff(context.settings.scheduler)
    settled = []
    for execution_id in await delivery_logs.unsettled_executions(
        context.store, stale_before=stale_before, own_node=context.node_id
    ):
        if context.busy[execution_id]:
            continue
        if await settle(context, execution_id) is not None:
            log.info("orphaned execution settled", execution_id=execution_id)
            settled.append(execution_id)
    return settled


class RetryWorker:
    def __init__(self, context: LedgerContext, rounds: Rounds) -> None:
        self.context = context
        self.rounds = rounds
        self._inflight: dict[int, asyncio.Task[None]] = {}
        """Per claimed delivery log id, the task making its retry."""

    async def run_retries(self) -> None:
        """Forever: wait for the earliest pending retry, claim what is due, attempt it."""
        store = self.context.store
        wake = self.context.wake
        try:
            while True:
                wait = POLL_SECONDS
                try:
                    await self._claim_due()
                    await settle_orphans(self.context)
                    metrics.RETRIES_PENDING.set(await delivery_logs.count_pending(store))
                    upcoming = await delivery_logs.next_retry_time(store)
                    if upcoming is not None:
                        wait = min(wait, max(0.0, (upcoming - utcnow()).total_seconds()))
                except Exception as exc:  # a store outage is survived; the next turn retries
                    log.warning("retry worker cannot reach the store", error=str(exc)[:200])
                wake.clear()
                try:
                    async with asyncio.timeout(max(wait, 0.05)):
                        await wake.wait()
                except TimeoutError:
                    pass
        finally:
            await self._stop_inflight()

    async def process_due(self) -> int:
        """Claim the retries due now and wait for them; returns how many this node made.
        (The worker does the same without waiting; tests step the ledger with this.)"""
        tasks = await self._claim_due()
        await asyncio.gather(*tasks, return_exceptions=True)
        return len(tasks)

    async def _claim_due(self) -> list[asyncio.Task[None]]:
        limit = 2 * self.context.settings.execution.max_concurrent_executions
        started: list[asyncio.Task[None]] = []
        if len(self._inflight) >= limit:
            return started
        store = self.context.store
        now = utcnow()
        for row in await delivery_logs.due_retries(store, now=now, limit=limit):
            if len(self._inflight) >= limit or row.id in self._inflight:
                continue
            claimed = await delivery_logs.claim_retry(
                store, row.id, now=now, lease_until=now + RETRY_LEASE
            )
            if not claimed:
                continue
            task = asyncio.create_task(self._retry(row), name=f"delivery-retry-{row.id}")
            self._inflight[row.id] = task
            task.add_done_callback(functools.partial(self._retry_done, row.id))
            started.append(task)
        return started

    def _retry_done(self, key: int, task: asyncio.Task[None]) -> None:
        self._inflight.pop(key, None)
        if not task.cancelled() and task.exception() is not None:
            log.error("delivery retry failed", log_id=key, exc_info=task.exception())
        self.context.wake.set()

    async def _stop_inflight(self) -> None:
        tasks = list(self._inflight.values())
        for task in tasks:
            task.cancel("daemon stopping")
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _retry(self, row: delivery_logs.DeliveryLog) -> None:
        with self.context.delivering(row.execution_id):
            try:
                await self._retry_claimed(row)
            except asyncio.CancelledError:
                # Stopping: hand the retry back so a restart (or another node) makes it at once.
                await asyncio.shield(
                    delivery_logs.release_retry(self.context.store, row.id, at=utcnow())
                )
                raise

    async def _retry_claimed(self, row: delivery_logs.DeliveryLog) -> None:
        store = self.context.store
        execution = await executions.get_execution(store, row.execution_id)
        if execution is None:
            await delivery_logs.abandon_retry(
                store, row.id, reason="execution removed", at=utcnow()
            )
            return
        job, reason = await job_for(self.context, execution, [row.delivery_id])
        delivery = job.deliveries[0] if job is not None and job.deliveries else None
        recipients: list[domain.Recipient] = []
        if delivery is not None and delivery.method is domain.DeliveryMethod.EMAIL:
            wanted = {r.email.lower() for r in row.recipients}
            recipients = [r for r in delivery.recipients if r.email.lower() in wanted]
            if wanted and not recipients:
                reason = "the recipients to retry are no longer active"
        if job is None or delivery is None or reason:
            await delivery_logs.abandon_retry(
                store,
                row.id,
                reason=f"{row.error_message}; retry abandoned: {reason}",
                at=utcnow(),
            )
            await settle(self.context, execution.id)
            return
        round_start = int(row.details.get("round_start", 1) or 1)
        if wants_link(delivery) and (url := await self.rounds.recorded_link(execution.id)):
            job = replace(job, variables={**job.variables, "download_url": url})
        await self.rounds.attempt_and_record(
            job, delivery, row.attempt + 1, recipients, round_start=round_start, claimed=row.id
        )
        await settle(self.context, execution.id)
