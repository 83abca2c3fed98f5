"""Outcome rules: what the recorded attempts of an execution amount to.

Pure functions of `report_delivery_logs` rows and of attempt outcomes, with no I/O:
- `latest_states`: per recipient, the status of the latest attempt that covered it;
- `final_status`: the execution's status once nothing is pending (COMPLETED when every delivery
  reached everyone, FAILED when nothing arrived anywhere, PARTIAL otherwise), with the error that
  names what failed;
- `delivery_report`: the engine's `DeliveryReport` from one round's outcomes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from reporthubd import domain
from reporthubd.deliverers.base import DeliveryReport
from reporthubd.store.delivery_logs import DeliveryLog

DS = domain.DeliveryStatus
ES = domain.ExecutionStatus


@dataclass(frozen=True, kw_only=True)
class DeliveryOutcome:
    """What one delivery's attempt amounted to, after recording."""

    delivered: bool = False
    failed: bool = False
    pending: bool = False
    skipped: bool = False
    presigned_url: str | None = None
    """The download link an S3 upload made, for the round's link-sending deliveries."""


def delivery_report(outcomes: Sequence[DeliveryOutcome]) -> DeliveryReport:
    return DeliveryReport(
        delivered=sum(o.delivered for o in outcomes),
        failed=sum(o.failed and not o.pending for o in outcomes),
        pending=sum(o.pending for o in outcomes),
        skipped=sum(o.skipped for o in outcomes),
    )


def latest_states(rows: Sequence[DeliveryLog]) -> dict[str, domain.DeliveryStatus]:
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


def final_status(rows: Sequence[DeliveryLog]) -> tuple[domain.ExecutionStatus, str | None]:
    """COMPLETED when every delivery reached everyone, FAILED when nothing arrived anywhere,
    PARTIAL otherwise; the error names what failed."""
    by_delivery: dict[int, list[DeliveryLog]] = {}
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
