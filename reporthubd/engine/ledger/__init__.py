"""The delivery ledger: runs an execution's deliveries, records every attempt, retries.

It writes the store (`report_delivery_logs`, and an execution's final status once its
deliveries are done), so it sits on the engine's side of the house; the delivery methods it
drives are the pure plugins of `reporthubd.deliverers`. `DeliveryLedger` is the one object the
daemon, the engine's CLI and the control plane hold; its parts:

- `policy`: the retry policy (backoff with jitter, cap, time scale, Retry-After), pure;
- `outcomes`: what recorded attempts amount to (latest state per recipient, final status), pure;
- `rounds`: a round of attempts, each attempt and its rows in one path (the engine's `run(job)`);
- `retries`: the retry worker, and settling an execution when nothing is pending;
- `redelivery`: redelivery of what failed, and test delivery, for the control plane;
- `jobs`: the delivery job of an execution that already ran, from its own definitions only.
"""

from __future__ import annotations

import random
from datetime import timedelta

from reporthubd import domain
from reporthubd.config import Settings
from reporthubd.deliverers.base import AttemptResult, DeliveryJob, DeliveryReport
from reporthubd.engine.ledger import redelivery, retries
from reporthubd.engine.ledger.context import LedgerContext
from reporthubd.engine.ledger.jobs import media_type_for, produced_file
from reporthubd.engine.ledger.outcomes import DeliveryOutcome, final_status, latest_states
from reporthubd.engine.ledger.policy import MAX_RETRY_AFTER, RetryPolicy
from reporthubd.engine.ledger.redelivery import LedgerError, Redelivery
from reporthubd.engine.ledger.rounds import Rounds, recipient_group
from reporthubd.lifecycle.executions import Lifecycle
from reporthubd.store.database import Store

__all__ = [
    "MAX_RETRY_AFTER",
    "DeliveryLedger",
    "DeliveryOutcome",
    "LedgerError",
    "Redelivery",
    "RetryPolicy",
    "final_status",
    "latest_states",
    "media_type_for",
    "produced_file",
    "recipient_group",
]


class DeliveryLedger:
    """The engine's `DeliveryRunner`, the daemon's retry worker and the control plane's
    redelivery and test delivery, over one store and one node."""

    def __init__(
        self,
        settings: Settings,
        store: Store,
        *,
        node_id: str,
        rng: random.Random | None = None,
        lifecycle: Lifecycle | None = None,
    ) -> None:
        self._context = LedgerContext(
            settings=settings,
            store=store,
            node_id=node_id,
            lifecycle=lifecycle or Lifecycle(store, node_id=node_id),
            rng=rng or random.Random(),
        )
        self._rounds = Rounds(self._context)
        self._worker = retries.RetryWorker(self._context, self._rounds)

    async def on_reload(self, settings: Settings) -> str:
        """Daemon reload hook: new [smtp] and retry settings apply to the next attempt."""
        self._context.reconfigure(settings)
        return "deliveries: settings applied"

    def backoff(
        self, delivery: domain.Delivery, failed_attempt: int, retry_after: timedelta | None = None
    ) -> timedelta:
        """How long to wait after the `failed_attempt`-th attempt of a round failed."""
        return self._context.policy.delay(
            delivery.retry_interval_minutes, failed_attempt, retry_after, self._context.rng
        )

    async def run(self, job: DeliveryJob) -> DeliveryReport:
        """The engine's `DeliveryRunner`: the first round of the execution's deliveries."""
        return await self._rounds.run(job)

    async def run_retries(self) -> None:
        """The daemon's retry worker, forever (see `retries`)."""
        await self._worker.run_retries()

    async def process_due(self) -> int:
        """Claim the retries due now and wait for them; returns how many this node made."""
        return await self._worker.process_due()

    async def settle(self, execution_id: str) -> domain.ExecutionStatus | None:
        """The execution's final status once nothing is pending (None while something is)."""
        return await retries.settle(self._context, execution_id)

    async def settle_orphans(self) -> list[str]:
        """Settle what a dead node's last retry left RUNNING; returns the ids settled."""
        return await retries.settle_orphans(self._context)

    async def redeliver(self, execution_id: str) -> Redelivery:
        """Re-run what failed; raises LedgerError for a request that cannot be honoured."""
        return await redelivery.redeliver(self._context, self._rounds, execution_id)

    async def test_delivery(self, delivery_id: int) -> AttemptResult:
        """The delivery's `test()`; raises LedgerError (404) for an unknown delivery."""
        return await redelivery.test_delivery(self._context, delivery_id)
