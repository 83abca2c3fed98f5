"""A delivery round: one attempt of each planned delivery of an execution, each one recorded.

- `run(job)` (the engine's `DeliveryRunner`): every delivery of the execution at once, attempt 1
  each. A job with nothing to send (a skip reason, no file) records one SKIPPED row per delivery.
- `run_round(job, plan, round_start=...)`: the planned deliveries concurrently. Webhooks, and
  emails that send a link for oversize files, start once this round's S3 uploads are done, so
  they can carry the presigned URL (`download_url`); without an upload this round, the link an
  earlier attempt recorded is used.
- `attempt_and_record(...)`: the one path from an attempt to its rows. Every attempt becomes
  `report_delivery_logs` rows (one per recipient group for email): a failure that can be retried
  becomes a RETRYING row with `next_retry_at`, planned by the retry policy; the retry worker is
  woken to see it. A retry records its attempt and releases its claimed row in one transaction.

A deliverer that raises is recorded as a failed attempt: a bug in a deliverer never loses the
ledger row.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import datetime, timedelta

from reporthubd import domain, logs, metrics, secrets
from reporthubd.deliverers.base import (
    Attempt,
    AttemptResult,
    DeliveryError,
    DeliveryJob,
    DeliveryReport,
    deliverer_class,
)
from reporthubd.domain import OwnershipLost
from reporthubd.engine.ledger.context import LedgerContext
from reporthubd.engine.ledger.outcomes import DeliveryOutcome, delivery_report
from reporthubd.engine.ledger.policy import RetryPolicy
from reporthubd.store import delivery_logs, journal
from reporthubd.store.delivery_logs import NewLog, RecipientRef
from reporthubd.timeutil import utcnow

log = logs.get(__name__)

DS = domain.DeliveryStatus

Plan = Mapping[int, tuple[int, Sequence[domain.Recipient] | None]]
"""Per delivery id: the attempt number to make, and for email the recipients to send to (None:
all of the delivery's)."""


def recipient_group(recipients: Sequence[RecipientRef]) -> str:
    if not recipients:
        return ""
    text = ",".join(sorted(str(r) for r in recipients))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def wants_link(delivery: domain.Delivery) -> bool:
    """Whether the delivery carries the round's S3 download link (`download_url`): webhooks,
    chat deliveries (their fallback for a file too big for the channel, and the link of a
    Teams or Google Chat card), and emails that send a link for oversize files."""
    return (
        delivery.method is domain.DeliveryMethod.EMAIL
        and delivery.delivery_config.get("oversize") == "link"
    ) or delivery.method in LINK_METHODS


LINK_METHODS = frozenset(
    {
        domain.DeliveryMethod.WEBHOOK,
        domain.DeliveryMethod.SLACK,
        domain.DeliveryMethod.TEAMS,
        domain.DeliveryMethod.GOOGLE_CHAT,
    }
)


class Rounds:
    def __init__(self, context: LedgerContext) -> None:
        self.context = context

    async def run(self, job: DeliveryJob) -> DeliveryReport:
        if job.skip_reason is not None or job.file is None:
            reason = job.skip_reason or "no file produced"
            now = utcnow()
            await delivery_logs.insert_logs(
                self.context.store,
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
        outcomes = await self.run_round(
            job, {d.id: (1, None) for d in job.deliveries}, round_start=1
        )
        return delivery_report(outcomes)

    async def run_round(
        self, job: DeliveryJob, plan: Plan, *, round_start: int | None
    ) -> list[DeliveryOutcome]:
        """One attempt of each planned delivery, concurrently; email deliveries that send a
        link for oversize files wait for this round's S3 deliveries first. `round_start` None:
        each planned attempt starts a round of its own (a redelivery)."""
        link: asyncio.Future[str | None] = asyncio.get_running_loop().create_future()
        uploads = [d for d in job.deliveries if d.method is domain.DeliveryMethod.S3]

        async def one(delivery: domain.Delivery) -> DeliveryOutcome:
            number, recipients = plan[delivery.id]
            this_job = job
            if wants_link(delivery) and "download_url" not in job.variables:
                url = (await asyncio.shield(link)) if uploads else None
                url = url or await self.recorded_link(job.execution_id)
                if url:
                    this_job = replace(job, variables={**job.variables, "download_url": url})
            return await self.attempt_and_record(
                this_job,
                delivery,
                number,
                recipients or (),
                round_start=round_start if round_start is not None else number,
            )

        tasks = {
            d.id: asyncio.create_task(one(d), name=f"delivery-{job.execution_id}-{d.id}")
            for d in job.deliveries
            if d.id in plan
        }
        upload_tasks = [tasks[d.id] for d in uploads if d.id in tasks]
        try:
            if upload_tasks:
                done = await asyncio.gather(*upload_tasks, return_exceptions=True)
                urls = [
                    o.presigned_url
                    for o in done
                    if isinstance(o, DeliveryOutcome) and o.presigned_url
                ]
                link.set_result(urls[0] if urls else None)
            else:
                link.set_result(None)
            results = await asyncio.gather(*tasks.values())
        finally:
            for task in tasks.values():
                task.cancel()
        return list(results)

    async def recorded_link(self, execution_id: str) -> str | None:
        """The download link an earlier attempt's S3 upload recorded, if any. While the store is
        unreachable there is none to be had: the delivery goes without it."""
        try:
            recorded = await delivery_logs.logs_for_execution(self.context.store, execution_id)
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

    async def attempt_and_record(
        self,
        job: DeliveryJob,
        delivery: domain.Delivery,
        number: int,
        recipients: Sequence[domain.Recipient],
        *,
        round_start: int,
        claimed: int | None = None,
    ) -> DeliveryOutcome:
        """Attempt `number` of the delivery, then its rows: inserted, or for a retry (`claimed`:
        the pending row it was claimed from) recorded with the claimed row's release.

        Fencing (job.fence, for a run this node holds): the attempt is made, and a success is
        recorded, only while this node still owns the run; otherwise domain.OwnershipLost
        propagates and nothing is written."""
        if job.fence is not None:
            await job.fence(f"delivery {delivery.id} attempt {number}")
        result, started, finished = await self._attempt(job, delivery, number, recipients)
        rows, outcome = attempt_rows(
            job.execution_id,
            delivery,
            number,
            recipients,
            result,
            started,
            finished,
            round_start,
            policy=self.context.policy,
            rng=self.context.rng,
        )
        store = self.context.store
        if job.fence is not None and result.ok:
            try:
                await job.fence(f"recording delivery {delivery.id} attempt {number} as delivered")
            except OwnershipLost:
                log.error(
                    "delivered, but this node lost the run before recording it",
                    execution_id=job.execution_id,
                    delivery_id=delivery.id,
                    attempt=number,
                    target=result.target,
                )
                raise
        if claimed is None:
            written = await delivery_logs.insert_logs(store, rows)
        else:
            written = await delivery_logs.record_retry(store, claimed, rows)
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
            self.context.wake.set()
        return outcome

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
            deliverer = cls(delivery, self.context.settings)
            result = await deliverer.deliver(attempt)
        except OwnershipLost:
            raise
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


def attempt_rows(
    execution_id: str,
    delivery: domain.Delivery,
    number: int,
    recipients: Sequence[domain.Recipient],
    result: AttemptResult,
    started: datetime,
    finished: datetime,
    round_start: int,
    *,
    policy: RetryPolicy,
    rng: random.Random,
) -> tuple[list[NewLog], DeliveryOutcome]:
    """The ledger rows of one attempt and what it amounted to. An email whose server accepted
    some recipients and refused others gives one row per group: delivered, to retry, refused for
    good. Secrets are redacted from targets and errors."""
    attempt_in_round = number - round_start + 1
    may_retry = policy.may_retry(delivery.max_retry, attempt_in_round)
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
            next_retry = finished + policy.delay(
                delivery.retry_interval_minutes, attempt_in_round, retry_after, rng
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
            return DS.FAILED, f"{error} (gave up after {attempt_in_round} attempts)"
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
        return rows, DeliveryOutcome(
            delivered=DS.SUCCESS in statuses,
            failed=DS.FAILED in statuses,
            pending=DS.RETRYING in statuses,
        )
    if result.ok:
        return [row(DS.SUCCESS, refs, None)], DeliveryOutcome(
            delivered=True, presigned_url=presigned if isinstance(presigned, str) else None
        )
    status, error = failure_status(result.retryable, result.error)
    return [row(status, refs, error, result.retry_after)], DeliveryOutcome(
        failed=status is DS.FAILED, pending=status is DS.RETRYING
    )
