"""What the ledger's parts share: the store, this node, the settings of the moment, and two
signals between them.

- `wake` is set by an attempt that recorded a pending retry, and by a finished retry: the retry
  worker's sleep ends early so it sees the new `next_retry_at`.
- `busy` counts, per execution, the deliveries this process is making for it outside the
  engine's first round (a retry being made, a redelivery round). Such executions are not
  orphans, though their node (this one) keeps their heartbeat fresh: `settle_orphans` skips them.

One context per `DeliveryLedger`; a reload replaces its settings and retry policy in place, so
the next attempt uses them.
"""

from __future__ import annotations

import asyncio
import collections
import random
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from reporthubd.config import Settings
from reporthubd.engine.ledger.policy import RetryPolicy
from reporthubd.lifecycle.executions import Lifecycle
from reporthubd.store.database import Store


@dataclass(kw_only=True)
class LedgerContext:
    settings: Settings
    store: Store
    node_id: str
    lifecycle: Lifecycle
    """Settles and reopens executions; its ownership fences a redelivery round."""
    rng: random.Random = field(default_factory=random.Random)
    """The jitter's random source (tests give a seeded one)."""
    policy: RetryPolicy = field(init=False)
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    busy: collections.Counter[str] = field(default_factory=collections.Counter)

    def __post_init__(self) -> None:
        self.policy = RetryPolicy.from_settings(self.settings)

    def reconfigure(self, settings: Settings) -> None:
        self.settings = settings
        self.policy = RetryPolicy.from_settings(settings)

    @contextmanager
    def delivering(self, execution_id: str) -> Iterator[None]:
        """Mark the execution busy in this process for the duration of the block."""
        self.busy[execution_id] += 1
        try:
            yield
        finally:
            self.busy[execution_id] -= 1
            if not self.busy[execution_id]:
                del self.busy[execution_id]
