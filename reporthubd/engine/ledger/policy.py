"""The delivery retry policy: how long to wait after a failed attempt, and whether to retry.

Pure: a frozen value built once from the typed settings (`RetryPolicy.from_settings`) and
rebuilt on reload; its methods are functions of their arguments and of the random source they
are given, so the backoff is tested without a store, a clock or a sleep.

Attempt n of a round failed → wait `retry_interval_minutes × 2^(n-1)`, times a jitter factor
in [0.9, 1.1], capped at `[execution] retry_backoff_cap_minutes`; both scaled by
`[execution] retry_time_scale` (1 in production; tests use a small scale to work in seconds).
A server's Retry-After is honoured when it asks for longer, up to `MAX_RETRY_AFTER`. A delivery's
`max_retry` retries follow the first attempt of a round (a redelivery starts a new round).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import timedelta

from reporthubd.config import Settings

JITTER = 0.1
"""±10 % on every wait, so deliveries that failed together do not all retry in the same instant."""
MAX_RETRY_AFTER = timedelta(days=1)
"""The longest Retry-After a receiver is obeyed for: a bigger one would park the retry for good."""


@dataclass(frozen=True, kw_only=True)
class RetryPolicy:
    time_scale: float = 1.0
    """`[execution] retry_time_scale`: scales the interval and the cap, not a Retry-After."""
    backoff_cap_minutes: float = 60.0
    """`[execution] retry_backoff_cap_minutes`, before scaling."""
    jitter: float = JITTER
    max_retry_after: timedelta = MAX_RETRY_AFTER

    @classmethod
    def from_settings(cls, settings: Settings) -> RetryPolicy:
        return cls(
            time_scale=settings.execution.retry_time_scale,
            backoff_cap_minutes=settings.execution.retry_backoff_cap_minutes,
        )

    def delay(
        self,
        retry_interval_minutes: float,
        failed_attempt: int,
        retry_after: timedelta | None,
        rng: random.Random,
    ) -> timedelta:
        """How long to wait after the `failed_attempt`-th attempt of a round (1 for the first)
        failed; `retry_after` is the receiver's own ask, if it made one."""
        base = retry_interval_minutes * 60.0 * self.time_scale
        seconds = base * 2 ** max(0, failed_attempt - 1)
        seconds *= rng.uniform(1 - self.jitter, 1 + self.jitter)
        seconds = min(seconds, self.backoff_cap_minutes * 60.0 * self.time_scale)
        wait = timedelta(seconds=seconds)
        if retry_after is not None and retry_after > wait:
            wait = min(retry_after, self.max_retry_after)
        return wait

    @staticmethod
    def may_retry(max_retry: int, attempt_in_round: int) -> bool:
        """Whether a retryable failure of the `attempt_in_round`-th attempt (1 for the first)
        gets another attempt: `max_retry` retries follow a round's first attempt."""
        return attempt_in_round <= max_retry
