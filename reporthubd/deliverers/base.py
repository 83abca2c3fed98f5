"""The deliverer interface and the seam between the engine and the delivery ledger.

The engine, once an execution's file exists, hands a `DeliveryJob` to a `DeliveryRunner` and gets
a `DeliveryReport` back. The runner owns the ledger (report_delivery_logs), runs every delivery
of the execution concurrently, records each attempt, and schedules retries in the store.

A `Deliverer` performs one attempt of one delivery:
1. `Deliverer(delivery, settings)` — no I/O.
2. `await deliver(attempt)` — send the file once; return an `AttemptResult` saying whether it
   arrived, and if not whether trying again can help (`retryable`, optional `retry_after`).
   Raise nothing for delivery failures: they are results. Await `attempt.confirm(...)` right
   before the point where the delivery becomes visible to its recipient (fencing), and let the
   domain.OwnershipLost it may raise propagate.
3. `await test()` — check the target is reachable and the credentials work, sending nothing a
   recipient would see where the method allows (used by POST /api/test-delivery).
"""

from __future__ import annotations

import abc
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any, Protocol, cast

from reporthubd import domain, plugins
from reporthubd.config import Settings


@dataclass(frozen=True, kw_only=True)
class ProducedFile:
    path: Path
    name: str
    size: int
    sha256: str
    media_type: str
    row_count: int


def run_key(execution: domain.Execution) -> str:
    """What names the run's deliveries to a receiver (webhook `Idempotency-Key`): the execution
    id, or for a recovery run the id of the run it stands in for, so a receiver that got the lost
    run's delivery can drop the repeat."""
    return execution.recovers_id or execution.id


NOTICE_RUN_PREFIX = "notice:"
"""The run key of a notice's delivery: `notice:<ledger row id>`."""


@dataclass(frozen=True, kw_only=True)
class DeliveryJob:
    execution_id: str
    config: domain.ReportConfig
    deliveries: Sequence[domain.Delivery]
    file: ProducedFile | None
    variables: Mapping[str, Any] = field(default_factory=dict)
    """Template variables of the run (report name, ids, scheduled_for, parameters, rows...)."""
    skip_reason: str | None = None
    """Set when nothing is to be sent (e.g. empty result with policy `skip`): log SKIPPED."""
    run_key: str = ""
    """`run_key(execution)`; empty means the execution id."""
    fence: Fence | None = None
    """Confirms that this node still owns the run, or raises domain.OwnershipLost: awaited right
    before each attempt, before a SUCCESS is recorded, and by a deliverer right before its own
    commit point (`Attempt.confirm`). None: nothing to fence (a retry, owned by its lease)."""


Fence = Callable[[str], Awaitable[None]]
"""`await fence(what)`: the side effect `what` may happen (this node still owns the run), or
domain.OwnershipLost is raised."""


@dataclass(frozen=True, kw_only=True)
class DeliveryReport:
    delivered: int = 0
    failed: int = 0
    """Deliveries that finally failed (no retry left, or a permanent failure). An email delivery
    that reached some recipients and finally failed for others counts in both `delivered` and
    `failed`, so `PARTIAL if delivered else FAILED` gives the right status."""
    pending: int = 0
    """Deliveries waiting for a retry recorded in the store."""
    skipped: int = 0


class DeliveryRunner(Protocol):
    async def run(self, job: DeliveryJob) -> DeliveryReport: ...


class NoDeliveries:
    """The runner used until the delivery ledger is wired in: records nothing, sends nothing."""

    async def run(self, job: DeliveryJob) -> DeliveryReport:
        return DeliveryReport(skipped=len(job.deliveries))


@dataclass(frozen=True, kw_only=True)
class Attempt:
    job: DeliveryJob
    delivery: domain.Delivery
    number: int
    recipients: Sequence[domain.Recipient] = ()
    """For email: only these recipients (a retry goes to those that failed)."""

    @property
    def idempotency_key(self) -> str:
        """What a receiver deduplicates on: `<run key>:<delivery id>`, the same on every attempt,
        on every node and after a restart. A run's key is its execution id (a recovery run's,
        the lost run's: run_key()); a notice's is `notice:<ledger row id>` (notify/sender.py),
        the one row of its UNIQUE (incident_key, event, target, sequence)."""
        return f"{self.job.run_key or self.job.execution_id}:{self.delivery.id}"

    @property
    def may_repeat(self) -> bool:
        """This attempt may follow one that reached the receiver without being recorded (a node
        killed in between): a later attempt, or the first of a run recovering a lost one."""
        run = self.job.run_key or self.job.execution_id
        recovery = run != self.job.execution_id and not run.startswith(NOTICE_RUN_PREFIX)
        return self.number > 1 or recovery

    async def confirm(self, what: str) -> None:
        """A deliverer awaits this right before its commit point (the rename into place, the
        final DATA of a message, the upload's completion): raises domain.OwnershipLost when this
        node no longer owns the run. Let it propagate: the ledger records nothing then."""
        if self.job.fence is not None:
            await self.job.fence(f"{what} (delivery {self.delivery.id})")


@dataclass(frozen=True, kw_only=True)
class AttemptResult:
    ok: bool
    target: str
    """Where it went, secret-free (URL without credentials, s3://bucket/key, host:/path)."""
    error: str | None = None
    retryable: bool = False
    retry_after: timedelta | None = None
    details: Mapping[str, Any] = field(default_factory=dict)


class DeliveryError(Exception):
    """A delivery configuration that cannot work (bad template, path escaping its base...)."""


class Deliverer(abc.ABC):
    def __init__(self, delivery: domain.Delivery, settings: Settings) -> None:
        self.delivery = delivery
        self.settings = settings

    @abc.abstractmethod
    async def deliver(self, attempt: Attempt) -> AttemptResult: ...

    @abc.abstractmethod
    async def test(self) -> AttemptResult: ...


# `report_deliveries.method` → "module:Class", imported only when used.
REGISTRY: dict[str, str] = {
    "email": "reporthubd.deliverers.email:EmailDeliverer",
    "sftp": "reporthubd.deliverers.sftp:SFTPDeliverer",
    "s3": "reporthubd.deliverers.s3:S3Deliverer",
    "webhook": "reporthubd.deliverers.webhook:WebhookDeliverer",
    "file_share": "reporthubd.deliverers.file_share:FileShareDeliverer",
    "slack": "reporthubd.deliverers.slack:SlackDeliverer",
    "teams": "reporthubd.deliverers.teams:TeamsDeliverer",
    "google_chat": "reporthubd.deliverers.google_chat:GoogleChatDeliverer",
}


def deliverer_class(method: str) -> type[Deliverer]:
    try:
        cls = plugins.load(REGISTRY, method)
    except plugins.MissingLibrary as exc:
        raise DeliveryError(
            f"the {method} delivery needs a library that is not installed ({exc.name})"
        ) from None
    if cls is None:
        raise DeliveryError(f"unknown delivery method {method!r}")
    return cast(type[Deliverer], cls)
