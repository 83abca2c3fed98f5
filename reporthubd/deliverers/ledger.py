"""The delivery ledger: runs an execution's deliveries, records every attempt, retries.

- `run(job)` (the engine's `DeliveryRunner`): every delivery of the execution at once, attempt 1
  each; every attempt is a `report_delivery_logs` row (per recipient group for email). A failure
  that can be retried becomes a RETRYING row with `next_retry_at`; the report says how many
  deliveries are pending, and the engine then leaves the execution RUNNING. Webhooks, and emails
  that send a link for oversize files, start once this round's S3 uploads are done, so they can
  carry the presigned URL (`download_url`).
- `run_retries()`: the retry worker, a forever task of the daemon. It sleeps until the earliest
  pending retry of the store (any node's), claims due ones with a conditional update (one node
  wins), makes the attempt, and when an execution has nothing pending any more, settles its
  final status (COMPLETED / PARTIAL / FAILED) with a conditional update from RUNNING.
- `redeliver(execution_id)`: re-runs only the deliveries, and for email only the recipients,
  whose last attempt failed.
- `test_delivery(delivery_id)`: the deliverer's `test()`.

Backoff: attempt n failed → wait `retry_interval_minutes × 2^(n-1)`, times a jitter factor in
[0.9, 1.1], capped at `[execution] retry_backoff_cap_minutes`; both scaled by
`[execution] retry_time_scale` (1 in production; tests use a small scale to work in seconds).
A server's Retry-After is honoured when it asks for longer. `max_retry` retries follow the first
attempt of a round (a redelivery starts a new round).
"""

from __future__ import annotations

import asyncio
import collections
import functools
import hashlib
import mimetypes
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from reporthubd import domain, logs, metrics, secrets
from reporthubd.deliverers import templating
from reporthubd.deliverers.base import (
    Attempt,
    AttemptResult,
    DeliveryError,
    DeliveryJob,
    DeliveryReport,
    ProducedFile,
    deliverer_class,
    run_key,
)
from reporthubd.store import delivery_logs, executions, journal
from reporthubd.store.database import Store
from reporthubd.store.definitions import load_definitions
from reporthubd.store.delivery_logs import NewLog, RecipientRef

log = logs.get(__name__)

DS = domain.DeliveryStatus
ES = domain.ExecutionStatus
JITTER = 0.1
RETRY_LEASE = timedelta(minutes=30)
POLL_SECONDS = 30.0
MAX_RETRY_AFTER = timedelta(days=1)
MEDIA_TYPES = {
    ".csv": "text/csv",
    ".xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    ".json": "application/json",
    ".pdf": "application/pdf",
    ".gz": "application/gzip",
    ".zip": "application/zip",
}


class LedgerError(Exception):
    """A request the ledger cannot honour (unknown execution, nothing to redeliver...)."""

    def __init__(self, message: str, *, status: int = 409) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True, kw_only=True)
class Outcome:
    """What one delivery's attempt amounted to, after recording."""

    delivered: bool = False
    failed: bool = False
    pending: bool = False
    skipped: bool = False
    presigned_url: str | None = None


@dataclass(frozen=True, kw_only=True)
class Redelivery:
    execution_id: str
    deliveries: list[int] = field(default_factory=list)
    report: DeliveryReport = field(default_factory=DeliveryReport)
    status: str | None = None


def utcnow() -> datetime:
    return datetime.now(UTC)


def recipient_group(recipients: Sequence[RecipientRef]) -> str:
    if not recipients:
        return ""
    text = ",".join(sorted(str(r) for r in recipients))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def media_type_for(name: str) -> str:
    suffix = Path(name).suffix.lower()
    return MEDIA_TYPES.get(suffix) or mimetypes.guess_type(name)[0] or "application/octet-stream"


def produced_file(execution: domain.Execution) -> ProducedFile | None:
    """The execution's file as recorded, or None when it has none (or it left the workspace)."""
    if not execution.file_path or not execution.file_name:
        return None
    path = Path(execution.file_path)
    if not path.is_file():
        return None
    return ProducedFile(
        path=path,
        name=execution.file_name,
        size=execution.file_size if execution.file_size is not None else path.stat().st_size,
        sha256=execution.file_sha256 or "",
        media_type=media_type_for(execution.file_name),
        row_count=execution.row_count or 0,
    )


class DeliveryLedger:
    def __init__(
        self, settings: Any, store: Store, *, node_id: str, rng: random.Random | None = None
    ) -> None:
        self.settings = settings
        self.store = store
        self.node_id = node_id
        self._rng = rng or random.Random()
        self._wake = asyncio.Event()
        self._inflight: dict[int, asyncio.Task[None]] = {}
        # Executions this process is delivering for (a retry being made, a redelivery round):
        # not orphans, though their node (this one) keeps their heartbeat fresh.
        self._busy: collections.Counter[str] = collections.Counter()

    async def on_reload(self, settings: Any) -> str:
        """Daemon reload hook: new [smtp] and retry settings apply to the next attempt."""
        self.settings = settings
        return "deliveries: settings applied"

    # -- timing ---------------------------------------------------------------------------------

    @property
    def time_scale(self) -> float:
        return float(getattr(self.settings.execution, "retry_time_scale", 1.0))

    def backoff(
        self, delivery: domain.Delivery, failed_attempt: int, retry_after: timedelta | None = None
    ) -> timedelta:
        """How long to wait after the `failed_attempt`-th attempt of a round failed."""
        scale = self.time_scale
        cap = float(getattr(self.settings.execution, "retry_backoff_cap_minutes", 60.0))
        base = delivery.retry_interval_minutes * 60.0 * scale
        delay = base * 2 ** max(0, failed_attempt - 1)
        delay *= self._rng.uniform(1 - JITTER, 1 + JITTER)
        delay = min(delay, cap * 60.0 * scale)
        wait = timedelta(seconds=delay)
        if retry_after is not None and retry_after > wait:
            wait = min(retry_after, MAX_RETRY_AFTER)
        return wait

    # -- the engine's entry point ---------------------------------------------------------------

    async def run(self, job: DeliveryJob) -> DeliveryReport:
        if job.skip_reason is not None or job.file is None:
            reason = job.skip_reason or "no file produced"
            now = utcnow()
            await delivery_logs.insert_logs(
                self.store,
                [
                    NewLog(
                        execution_id=job.execution_id,
                        delivery_id=d.id,
                        attempt=1,
                        status=DS.SKIPPED,
                        error_message=reason,
                        started_at=now,
                        finished_at=now,
                    )
                    for d in job.deliveries
                ],
            )
            return DeliveryReport(skipped=len(job.deliveries))
        outcomes = await self._run_round(
            job, {d.id: (1, None) for d in job.deliveries}, round_start=1
        )
        return _report(outcomes)

    async def _run_round(
        self,
        job: DeliveryJob,
        plan: Mapping[int, tuple[int, Sequence[domain.Recipient] | None]],
        *,
        round_start: int | None,
    ) -> list[Outcome]:
        """One attempt of each planned delivery, concurrently; email deliveries that send a
        link for oversize files wait for this round's S3 deliveries first."""
        link: asyncio.Future[str | None] = asyncio.get_running_loop().create_future()
        uploads = [d for d in job.deliveries if d.method is domain.DeliveryMethod.S3]

        async def one(delivery: domain.Delivery) -> Outcome:
            number, recipients = plan[delivery.id]
            this_job = job
            if _wants_link(delivery) and "download_url" not in job.variables:
                url = (await asyncio.shield(link)) if uploads else None
                url = url or await self._recorded_link(job.execution_id)
                if url:
                    this_job = replace(job, variables={**job.variables, "download_url": url})
            outcome = await self._attempt_and_record(
                this_job,
                delivery,
                number,
                recipients or (),
                round_start=round_start if round_start is not None else number,
            )
            return outcome

        tasks = {
            d.id: asyncio.create_task(one(d), name=f"delivery-{job.execution_id}-{d.id}")
            for d in job.deliveries
            if d.id in plan
        }
        upload_tasks = [tasks[d.id] for d in uploads if d.id in tasks]
        try:
            if upload_tasks:
                done = await asyncio.gather(*upload_tasks, return_exceptions=True)
                urls = [o.presigned_url for o in done if isinstance(o, Outcome) and o.presigned_url]
                link.set_result(urls[0] if urls else None)
            else:
                link.set_result(None)
            results = await asyncio.gather(*tasks.values())
        finally:
            for task in tasks.values():
                task.cancel()
        return list(results)

    async def _recorded_link(self, execution_id: str) -> str | None:
        """The download link an earlier attempt's S3 upload recorded, if any. While the store is
        unreachable there is none to be had: the delivery goes without it."""
        try:
            recorded = await delivery_logs.logs_for_execution(self.store, execution_id)
        except Exception as exc:
            if not journal.unreachable(exc):
                raise
            log.warning("store unreachable; no recorded download link", execution_id=execution_id)
            return None
        for row in reversed(recorded):
            url = row.details.get("presigned_url") if row.status is DS.SUCCESS else None
            if isinstance(url, str) and url:
                return url
        return None

    async def _attempt(
        self,
        job: DeliveryJob,
        delivery: domain.Delivery,
        number: int,
        recipients: Sequence[domain.Recipient],
    ) -> tuple[AttemptResult, datetime, datetime]:
        started = utcnow()
        attempt = Attempt(job=job, delivery=delivery, number=number, recipients=tuple(recipients))
        try:
            cls = await asyncio.to_thread(deliverer_class, delivery.method.value)  # import off-loop
            deliverer = cls(delivery, self.settings)
            result = await deliverer.deliver(attempt)
        except DeliveryError as exc:
            result = AttemptResult(ok=False, target="", error=str(exc), retryable=False)
        except ImportError as exc:
            result = AttemptResult(
                ok=False, target="", error=f"deliverer unavailable: {exc}", retryable=False
            )
        except Exception as exc:  # a bug in a deliverer must not lose the ledger row
            log.exception(
                "deliverer raised", execution_id=job.execution_id, delivery_id=delivery.id
            )
            result = AttemptResult(
                ok=False,
                target="",
                error=f"internal error: {type(exc).__name__}: {exc}",
                retryable=True,
            )
        return result, started, utcnow()

    async def _attempt_and_record(
        self,
        job: DeliveryJob,
        delivery: domain.Delivery,
        number: int,
        recipients: Sequence[domain.Recipient],
        *,
        round_start: int,
        claimed: int | None = None,
    ) -> Outcome:
        result, started, finished = await self._attempt(job, delivery, number, recipients)
        rows, outcome = self._rows(
            job.execution_id, delivery, number, recipients, result, started, finished, round_start
        )
        if claimed is None:
            written = await delivery_logs.insert_logs(self.store, rows)
        else:
            written = await delivery_logs.record_retry(self.store, claimed, rows)
        if not written:
            log.warning(
                "delivery attempt already recorded by another node",
                execution_id=job.execution_id,
                delivery_id=delivery.id,
                attempt=number,
            )
        for written_row in rows:
            metrics.DELIVERIES.labels(
                method=delivery.method.value, outcome=written_row.status.value.lower()
            ).inc()
        log.info(
            "delivery attempt",
            execution_id=job.execution_id,
            delivery_id=delivery.id,
            method=delivery.method.value,
            attempt=number,
            statuses=[row.status.value for row in rows],
            target=result.target,
            error=result.error,
        )
        if outcome.pending:
            self._wake.set()
        return outcome

    def _rows(
        self,
        execution_id: str,
        delivery: domain.Delivery,
        number: int,
        recipients: Sequence[domain.Recipient],
        result: AttemptResult,
        started: datetime,
        finished: datetime,
        round_start: int,
    ) -> tuple[list[NewLog], Outcome]:
        may_retry = number - round_start < delivery.max_retry
        details = {k: v for k, v in result.details.items() if k not in {"accepted", "refused"}} | {
            "round_start": round_start
        }
        is_email = delivery.method is domain.DeliveryMethod.EMAIL
        refs = [
            RecipientRef(recipient_type=r.recipient_type, email=r.email)
            for r in (recipients or delivery.recipients)
        ]

        def row(
            status: domain.DeliveryStatus,
            group: Sequence[RecipientRef],
            error: str | None,
            retry_after: timedelta | None = None,
        ) -> NewLog:
            next_retry = None
            row_details = details
            if status is DS.RETRYING:
                next_retry = finished + self.backoff(
                    delivery, number - round_start + 1, retry_after
                )
                # next_retry_at is cleared once the retry is made; the plan stays readable.
                row_details = details | {"retry_at": next_retry.isoformat()}
            return NewLog(
                execution_id=execution_id,
                delivery_id=delivery.id,
                attempt=number,
                status=status,
                target=secrets.redact_text(result.target) if result.target else None,
                error_message=secrets.redact_text(error) if error else None,
                started_at=started,
                finished_at=finished,
                next_retry_at=next_retry,
                recipient_group=recipient_group(group) if is_email else "",
                recipients=list(group) if is_email else [],
                details=row_details,
            )

        def failure_status(retryable: bool, error: str | None) -> tuple[DS, str | None]:
            if retryable and may_retry:
                return DS.RETRYING, error
            if retryable:
                return DS.FAILED, f"{error} (gave up after {number - round_start + 1} attempts)"
            return DS.FAILED, error

        presigned = result.details.get("presigned_url") if result.ok else None
        refused = result.details.get("refused") if is_email else None
        if is_email and isinstance(refused, list) and "accepted" in result.details:
            by_email = {r.email: r for r in refs}
            accepted = [by_email[e] for e in result.details["accepted"] if e in by_email]
            retry_group = [by_email[i["email"]] for i in refused if i["retryable"]]
            final_group = [by_email[i["email"]] for i in refused if not i["retryable"]]
            errors = {i["email"]: i["error"] for i in refused}
            rows = []
            if accepted:
                rows.append(row(DS.SUCCESS, accepted, None))
            if retry_group:
                status, error = failure_status(
                    True, "; ".join(f"{r.email}: {errors[r.email]}" for r in retry_group)
                )
                rows.append(row(status, retry_group, error))
            if final_group:
                rows.append(
                    row(
                        DS.FAILED,
                        final_group,
                        "; ".join(f"{r.email}: {errors[r.email]}" for r in final_group),
                    )
                )
            statuses = {r.status for r in rows}
            return rows, Outcome(
                delivered=DS.SUCCESS in statuses,
                failed=DS.FAILED in statuses,
                pending=DS.RETRYING in statuses,
            )
        if result.ok:
            return [row(DS.SUCCESS, refs, None)], Outcome(
                delivered=True, presigned_url=presigned if isinstance(presigned, str) else None
            )
        status, error = failure_status(result.retryable, result.error)
        return [row(status, refs, error, result.retry_after)], Outcome(
            failed=status is DS.FAILED, pending=status is DS.RETRYING
        )

    # -- settling -------------------------------------------------------------------------------

    async def settle(self, execution_id: str) -> domain.ExecutionStatus | None:
        """Once nothing is pending, move a RUNNING execution to its final status. Returns it,
        or None while a retry is pending or when the execution is not RUNNING any more."""
        rows = await delivery_logs.logs_for_execution(self.store, execution_id)
        if any(row.pending for row in rows):
            return None
        status, error = final_status(rows)
        updated = await executions.update_execution(
            self.store,
            execution_id,
            only_if_status=(ES.RUNNING,),
            status=status,
            finished_at=utcnow(),
            error_message=error,
        )
        if updated:
            log.info("execution settled", execution_id=execution_id, status=status.value)
            return status
        return None

    async def settle_orphans(self) -> list[str]:
        """Settle executions whose last retry was recorded by a node that died (or failed)
        before settling them: nothing pending, and a stale heartbeat, or this node's own while
        this process is not delivering for them (a previous process of this node, or a settle
        that failed: this node's heartbeats keep those fresh for ever). Returns the ids settled."""
        lost_after = float(getattr(self.settings.scheduler, "node_lost_after_seconds", 60.0))
        stale_before = utcnow() - timedelta(seconds=lost_after)
        settled = []
        for execution_id in await delivery_logs.unsettled_executions(
            self.store, stale_before=stale_before, own_node=self.node_id
        ):
            if self._busy[execution_id]:
                continue
            if await self.settle(execution_id) is not None:
                log.info("orphaned execution settled", execution_id=execution_id)
                settled.append(execution_id)
        return settled

    # -- the retry worker -----------------------------------------------------------------------

    async def run_retries(self) -> None:
        """Forever: wait for the earliest pending retry, claim what is due, attempt it."""
        try:
            while True:
                wait = POLL_SECONDS
                try:
                    await self._claim_due()
                    await self.settle_orphans()
                    metrics.RETRIES_PENDING.set(await delivery_logs.count_pending(self.store))
                    upcoming = await delivery_logs.next_retry_time(self.store)
                    if upcoming is not None:
                        wait = min(wait, max(0.0, (upcoming - utcnow()).total_seconds()))
                except Exception as exc:  # a store outage is survived; the next turn retries
                    log.warning("retry worker cannot reach the store", error=str(exc)[:200])
                self._wake.clear()
                try:
                    async with asyncio.timeout(max(wait, 0.05)):
                        await self._wake.wait()
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
        limit = max(1, 2 * int(getattr(self.settings.execution, "max_concurrent_executions", 4)))
        started: list[asyncio.Task[None]] = []
        if len(self._inflight) >= limit:
            return started
        now = utcnow()
        for row in await delivery_logs.due_retries(self.store, now=now, limit=limit):
            if len(self._inflight) >= limit or row.id in self._inflight:
                continue
            claimed = await delivery_logs.claim_retry(
                self.store, row.id, now=now, lease_until=now + RETRY_LEASE
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
        self._wake.set()

    async def _stop_inflight(self) -> None:
        tasks = list(self._inflight.items())
        for _, task in tasks:
            task.cancel("daemon stopping")
        await asyncio.gather(*(t for _, t in tasks), return_exceptions=True)

    async def _retry(self, row: delivery_logs.DeliveryLog) -> None:
        self._busy[row.execution_id] += 1
        try:
            await self._retry_claimed(row)
        except asyncio.CancelledError:
            # Stopping: hand the retry back so a restart (or another node) makes it at once.
            await asyncio.shield(delivery_logs.release_retry(self.store, row.id, at=utcnow()))
            raise
        finally:
            self._busy[row.execution_id] -= 1
            if not self._busy[row.execution_id]:
                del self._busy[row.execution_id]

    async def _retry_claimed(self, row: delivery_logs.DeliveryLog) -> None:
        execution = await executions.get_execution(self.store, row.execution_id)
        if execution is None:
            await delivery_logs.abandon_retry(
                self.store, row.id, reason="execution removed", at=utcnow()
            )
            return
        job, reason = await self._job_for(execution, [row.delivery_id])
        delivery = job.deliveries[0] if job is not None and job.deliveries else None
        recipients: list[domain.Recipient] = []
        if delivery is not None and delivery.method is domain.DeliveryMethod.EMAIL:
            wanted = {r.email.lower() for r in row.recipients}
            recipients = [r for r in delivery.recipients if r.email.lower() in wanted]
            if wanted and not recipients:
                reason = "the recipients to retry are no longer active"
        if job is None or delivery is None or reason:
            await delivery_logs.abandon_retry(
                self.store,
                row.id,
                reason=f"{row.error_message}; retry abandoned: {reason}",
                at=utcnow(),
            )
            await self.settle(execution.id)
            return
        round_start = int(row.details.get("round_start", 1) or 1)
        if _wants_link(delivery) and (url := await self._recorded_link(execution.id)):
            job = replace(job, variables={**job.variables, "download_url": url})
        await self._attempt_and_record(
            job, delivery, row.attempt + 1, recipients, round_start=round_start, claimed=row.id
        )
        await self.settle(execution.id)

    async def _job_for(
        self, execution: domain.Execution, delivery_ids: Sequence[int] | None
    ) -> tuple[DeliveryJob | None, str | None]:
        definitions = await load_definitions(
            self.store, default_timezone=self.settings.scheduler.timezone
        )
        config = definitions.configs.get(execution.config_id)
        if config is None:
            return None, f"report config {execution.config_id} is missing or inactive"
        deliveries = definitions.deliveries_for(config.id)
        if delivery_ids is not None:
            deliveries = [d for d in deliveries if d.id in delivery_ids]
            if not deliveries:
                return None, "the delivery is missing or inactive"
        file = await asyncio.to_thread(produced_file, execution)
        if file is None:
            return None, "the execution's file is no longer in the workspace"
        variables = templating.run_variables(
            execution_id=execution.id,
            config=config,
            parameters=execution.parameters,
            scheduled_for=execution.scheduled_for,
            started_at=execution.started_at,
            row_count=execution.row_count,
            file_name=execution.file_name,
            schedule_id=execution.schedule_id,
            trigger_type=execution.trigger_type.value,
        )
        return (
            DeliveryJob(
                execution_id=execution.id,
                run_key=run_key(execution),
                config=config,
                deliveries=deliveries,
                file=file,
                variables=variables,
            ),
            None,
        )

    # -- control plane --------------------------------------------------------------------------

    async def redeliver(self, execution_id: str) -> Redelivery:
        """Re-run the deliveries (for email: the recipients) whose last attempt failed, or that
        never ran. Raises LedgerError when the execution is unknown, still busy or has no file."""
        execution = await executions.get_execution(self.store, execution_id)
        if execution is None:
            raise LedgerError(f"execution {execution_id} not found", status=404)
        if execution.status not in (ES.COMPLETED, ES.PARTIAL, ES.FAILED):
            raise LedgerError(
                f"execution {execution_id} is {execution.status.value}: only a COMPLETED, "
                "PARTIAL or FAILED execution can be redelivered"
            )
        job, reason = await self._job_for(execution, None)
        if job is None:
            raise LedgerError(f"cannot redeliver execution {execution_id}: {reason}")
        rows = await delivery_logs.logs_for_execution(self.store, execution_id)
        plan: dict[int, tuple[int, Sequence[domain.Recipient] | None]] = {}
        for delivery in job.deliveries:
            mine = [r for r in rows if r.delivery_id == delivery.id]
            number = max((r.attempt for r in mine), default=0) + 1
            if not mine:
                plan[delivery.id] = (number, None)
                continue
            state = latest_states(mine)
            failed = {key for key, status in state.items() if status is DS.FAILED}
            if not failed:
                continue
            if delivery.method is domain.DeliveryMethod.EMAIL and "" not in failed:
                again = [r for r in delivery.recipients if r.email.lower() in failed]
                if again:
                    plan[delivery.id] = (number, again)
            else:
                plan[delivery.id] = (number, None)
        if not plan:
            return Redelivery(execution_id=execution_id, status=execution.status.value)
        self._busy[execution_id] += 1
        try:
            return await self._redeliver_round(execution, job, plan)
        finally:
            self._busy[execution_id] -= 1
            if not self._busy[execution_id]:
                del self._busy[execution_id]

    async def _redeliver_round(
        self,
        execution: domain.Execution,
        job: DeliveryJob,
        plan: dict[int, tuple[int, Sequence[domain.Recipient] | None]],
    ) -> Redelivery:
        execution_id = execution.id
        moved = await executions.update_execution(
            self.store,
            execution_id,
            only_if_status=(execution.status,),
            status=ES.RUNNING,
            node_id=self.node_id,
            heartbeat_at=utcnow(),
            finished_at=None,
        )
        if not moved:
            raise LedgerError(f"execution {execution_id} changed meanwhile; try again")
        job = replace(job, deliveries=[d for d in job.deliveries if d.id in plan])
        outcomes = await self._run_round(job, plan, round_start=None)
        report = _report(outcomes)
        status = await self.settle(execution_id) if not report.pending else None
        return Redelivery(
            execution_id=execution_id,
            deliveries=sorted(plan),
            report=report,
            status=(status or ES.RUNNING).value,
        )

    async def test_delivery(self, delivery_id: int) -> AttemptResult:
        definitions = await load_definitions(
            self.store, default_timezone=self.settings.scheduler.timezone, active_only=False
        )
        delivery = definitions.deliveries.get(delivery_id)
        if delivery is None:
            problems = [
                str(e)
                for e in definitions.errors
                if e.table == "report_deliveries" and e.row_id == delivery_id
            ]
            raise LedgerError(
                f"delivery {delivery_id} not found"
                + (f" or invalid: {'; '.join(problems)}" if problems else ""),
                status=404,
            )
        try:
            cls = await asyncio.to_thread(deliverer_class, delivery.method.value)  # import off-loop
            deliverer = cls(delivery, self.settings)
            return await deliverer.test()
        except DeliveryError as exc:
            return AttemptResult(ok=False, target="", error=str(exc))


def _wants_link(delivery: domain.Delivery) -> bool:
    return (
        delivery.method is domain.DeliveryMethod.EMAIL
        and delivery.delivery_config.get("oversize") == "link"
    ) or delivery.method is domain.DeliveryMethod.WEBHOOK


def _report(outcomes: Sequence[Outcome]) -> DeliveryReport:
    return DeliveryReport(
        delivered=sum(o.delivered for o in outcomes),
        failed=sum(o.failed and not o.pending for o in outcomes),
        pending=sum(o.pending for o in outcomes),
        skipped=sum(o.skipped for o in outcomes),
    )


def latest_states(rows: Sequence[delivery_logs.DeliveryLog]) -> dict[str, domain.DeliveryStatus]:
    """Per recipient (lower-case address; '' for the whole delivery), the status of the latest
    attempt that covered it (RETRYING only while that retry is pending)."""
    state: dict[str, domain.DeliveryStatus] = {}
    for row in sorted(rows, key=lambda r: (r.attempt, r.id)):
        keys = [r.email.lower() for r in row.recipients] or [""]
        if row.recipients:
            state.pop("", None)  # a per-recipient row supersedes a whole-delivery row
        status = row.status
        if status is DS.RETRYING and not row.pending:
            status = DS.FAILED  # a retry that was never recorded counts as failed
        for key in keys:
            state[key] = DS.RETRYING if row.pending else status
    return state


def final_status(
    rows: Sequence[delivery_logs.DeliveryLog],
) -> tuple[domain.ExecutionStatus, str | None]:
    """COMPLETED when every delivery reached everyone, FAILED when nothing arrived anywhere,
    PARTIAL otherwise; the error names what failed."""
    by_delivery: dict[int, list[delivery_logs.DeliveryLog]] = {}
    for row in rows:
        by_delivery.setdefault(row.delivery_id, []).append(row)
    any_delivered = False
    failures = []
    for delivery_id, mine in sorted(by_delivery.items()):
        state = latest_states(mine)
        if any(s is DS.SUCCESS for s in state.values()):
            any_delivered = True
        failed_keys = sorted(k for k, s in state.items() if s is DS.FAILED)
        if failed_keys:
            last = max((r for r in mine if r.status is DS.FAILED), key=lambda r: (r.attempt, r.id))
            failures.append(f"delivery {delivery_id}: {last.error_message or 'failed'}")
    if not failures:
        return ES.COMPLETED, None
    error = "; ".join(failures)[:4000]
    return (ES.PARTIAL if any_delivered else ES.FAILED), error
