"""Redelivery and test delivery: what the control plane asks of the ledger.

- `redeliver(execution_id)`: re-runs only the deliveries, and for email only the recipients,
  whose last attempt failed (or that never ran), as a new round each (`max_retry` retries follow
  it). The execution, COMPLETED, PARTIAL or FAILED, is reopened to RUNNING on this node with a
  conditional update from the status it was read with (a concurrent change refuses the request)
  and settled again once nothing is pending.
- `test_delivery(delivery_id)`: the deliverer's `test()` for one delivery, active or not; sends
  no report.

Both raise `LedgerError` for a request that cannot be honoured, with the HTTP status to answer.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from reporthubd import domain
from reporthubd.deliverers import config_check
from reporthubd.deliverers.base import (
    AttemptResult,
    DeliveryError,
    DeliveryJob,
    DeliveryReport,
    deliverer_class,
)
from reporthubd.engine.ledger.context import LedgerContext
from reporthubd.engine.ledger.jobs import job_for
from reporthubd.engine.ledger.outcomes import delivery_report, latest_states
from reporthubd.engine.ledger.retries import settle
from reporthubd.engine.ledger.rounds import Plan, Rounds
from reporthubd.store import delivery_logs, executions

DS = domain.DeliveryStatus
ES = domain.ExecutionStatus


class LedgerError(Exception):
    """A request the ledger cannot honour (unknown execution, nothing to redeliver...)."""

    def __init__(self, message: str, *, status: int = 409) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True, kw_only=True)
class Redelivery:
    execution_id: str
    deliveries: list[int] = field(default_factory=list)
    report: DeliveryReport = field(default_factory=DeliveryReport)
    status: str | None = None


def redelivery_plan(job: DeliveryJob, rows: Sequence[delivery_logs.DeliveryLog]) -> Plan:
    """Per delivery to re-run, its next attempt number and for email the recipients whose last
    attempt failed (None: the whole delivery). A delivery with no row yet is planned whole."""
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
    return plan


async def redeliver(context: LedgerContext, rounds: Rounds, execution_id: str) -> Redelivery:
    """Re-run the deliveries (for email: the recipients) whose last attempt failed, or that
    never ran. Raises LedgerError when the execution is unknown, still busy or has no file."""
    execution = await executions.get_execution(context.store, execution_id)
    if execution is None:
        raise LedgerError(f"execution {execution_id} not found", status=404)
    if execution.status not in (ES.COMPLETED, ES.PARTIAL, ES.FAILED):
        raise LedgerError(
            f"execution {execution_id} is {execution.status.value}: only a COMPLETED, "
            "PARTIAL or FAILED execution can be redelivered"
        )
    job, reason = await job_for(context, execution, None)
    if job is None:
        raise LedgerError(f"cannot redeliver execution {execution_id}: {reason}")
    rows = await delivery_logs.logs_for_execution(context.store, execution_id)
    plan = redelivery_plan(job, rows)
    if not plan:
        return Redelivery(execution_id=execution_id, status=execution.status.value)
    with context.delivering(execution_id):
        return await _redeliver_round(context, rounds, execution, job, plan)


async def _redeliver_round(
    context: LedgerContext,
    rounds: Rounds,
    execution: domain.Execution,
    job: DeliveryJob,
    plan: Plan,
) -> Redelivery:
    execution_id = execution.id
    lifecycle = context.lifecycle
    if not await lifecycle.reopen(execution):
        raise LedgerError(f"execution {execution_id} changed meanwhile; try again")
    ownership = lifecycle.ownership

    async def fence(what: str) -> None:
        await ownership.confirm(execution_id, what=what)

    job = replace(job, deliveries=[d for d in job.deliveries if d.id in plan], fence=fence)
    ownership.hold(execution_id)
    try:
        outcomes = await rounds.run_round(job, plan, round_start=None)
    finally:
        ownership.release(execution_id)
    report = delivery_report(outcomes)
    status = await settle(context, execution_id) if not report.pending else None
    return Redelivery(
        execution_id=execution_id,
        deliveries=sorted(plan),
        report=report,
        status=(status or ES.RUNNING).value,
    )


async def test_delivery(context: LedgerContext, delivery_id: int) -> AttemptResult:
    """The deliverer's `test()` for the delivery. Raises LedgerError (404) when there is no such
    delivery or its row is invalid, (422) when its settings are refused (naming the key)."""
    delivery = await delivery_logs.get_delivery(context.store, delivery_id)
    if not isinstance(delivery, domain.Delivery):
        problems = f" or invalid: {delivery}" if isinstance(delivery, domain.RowError) else ""
        raise LedgerError(f"delivery {delivery_id} not found{problems}", status=404)
    if found := config_check.problems(delivery.method, delivery.delivery_config):
        raise LedgerError(f"delivery {delivery_id}: " + "; ".join(found), status=422)
    try:
        cls = await asyncio.to_thread(deliverer_class, delivery.method.value)  # import off-loop
        deliverer = cls(delivery, context.settings)
        return await deliverer.test()
    except DeliveryError as exc:
        return AttemptResult(ok=False, target="", error=str(exc))
