"""The ledger's pure rules without a store or a clock: the retry policy (backoff, jitter, cap,
time scale, Retry-After), the rows one attempt becomes, and what recorded rows amount to."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest

from reporthubd import domain
from reporthubd.config import ExecutionSettings, Settings, StoreSettings
from reporthubd.deliverers.base import AttemptResult
from reporthubd.engine.ledger import (
    MAX_RETRY_AFTER,
    DeliveryLedger,
    DeliveryOutcome,
    RetryPolicy,
    final_status,
    latest_states,
    recipient_group,
)
from reporthubd.engine.ledger.outcomes import delivery_report
from reporthubd.engine.ledger.rounds import attempt_rows
from reporthubd.store.database import Store
from reporthubd.store.delivery_logs import DeliveryLog, RecipientRef

DS = domain.DeliveryStatus
ES = domain.ExecutionStatus
T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)


class FixedJitter(random.Random):
    """A random source whose jitter factor is chosen by the test."""

    def __init__(self, factor: float) -> None:
        super().__init__(0)
        self.factor = factor
        self.asked: list[tuple[float, float]] = []

    def uniform(self, a: float, b: float) -> float:
        self.asked.append((a, b))
        return self.factor


def _delivery(
    method: domain.DeliveryMethod = domain.DeliveryMethod.WEBHOOK,
    *,
    max_retry: int = 3,
    emails: tuple[str, ...] = (),
) -> domain.Delivery:
    return domain.Delivery(
        id=7,
        config_id=1,
        name="d",
        method=method,
        delivery_config={},
        max_retry=max_retry,
        retry_interval_minutes=5,
        recipients=tuple(
            domain.Recipient(
                id=i, delivery_id=7, recipient_type=domain.RecipientType.TO, email=e, name=None
            )
            for i, e in enumerate(emails, 1)
        ),
    )


def _log(
    log_id: int,
    attempt: int,
    status: domain.DeliveryStatus,
    *,
    delivery_id: int = 7,
    emails: tuple[str, ...] = (),
    pending: bool = False,
    error: str | None = None,
) -> DeliveryLog:
    return DeliveryLog(
        id=log_id,
        execution_id="e",
        delivery_id=delivery_id,
        attempt=attempt,
        status=status,
        target=None,
        error_message=error,
        started_at=T0,
        finished_at=T0,
        next_retry_at=T0 if pending else None,
        recipients=tuple(
            RecipientRef(recipient_type=domain.RecipientType.TO, email=e) for e in emails
        ),
    )


def test_the_policy_is_built_from_the_execution_settings() -> None:
    settings = Settings(
        execution=ExecutionSettings(retry_time_scale=0.5, retry_backoff_cap_minutes=30)
    )
    assert RetryPolicy.from_settings(settings) == RetryPolicy(
        time_scale=0.5, backoff_cap_minutes=30
    )
    assert RetryPolicy.from_settings(Settings()) == RetryPolicy()


def test_the_wait_doubles_per_failed_attempt_within_the_jitter() -> None:
    policy = RetryPolicy()
    waits = [policy.delay(5, n, None, FixedJitter(1.0)) for n in (1, 2, 3, 4)]
    assert waits == [timedelta(minutes=m) for m in (5, 10, 20, 40)]
    rng = FixedJitter(1.1)
    assert policy.delay(5, 1, None, rng) == timedelta(minutes=5.5)
    assert rng.asked == [(0.9, 1.1)]
    seeded = random.Random(3)
    for _ in range(200):
        assert timedelta(minutes=4.5) <= policy.delay(5, 1, None, seeded) <= timedelta(minutes=5.5)


def test_the_wait_is_capped_and_scaled() -> None:
    assert RetryPolicy().delay(5, 10, None, FixedJitter(1.0)) == timedelta(minutes=60)
    scaled = RetryPolicy(time_scale=1 / 60, backoff_cap_minutes=2)
    assert scaled.delay(1, 1, None, FixedJitter(1.0)) == timedelta(seconds=1)
    assert scaled.delay(1, 9, None, FixedJitter(1.0)) == timedelta(seconds=2)


def test_a_longer_retry_after_is_honoured_up_to_a_day_and_never_scaled() -> None:
    scaled = RetryPolicy(time_scale=1 / 60)
    assert scaled.delay(1, 1, timedelta(seconds=3), FixedJitter(1.0)) == timedelta(seconds=3)
    assert scaled.delay(1, 1, timedelta(milliseconds=5), FixedJitter(1.0)) == timedelta(seconds=1)
    assert scaled.delay(1, 1, timedelta(days=9), FixedJitter(1.0)) == MAX_RETRY_AFTER


@pytest.mark.parametrize(
    ("max_retry", "attempt", "retry"), [(0, 1, False), (3, 3, True), (3, 4, False)]
)
def test_max_retry_retries_follow_the_first_attempt_of_a_round(
    max_retry: int, attempt: int, retry: bool
) -> None:
    assert RetryPolicy.may_retry(max_retry, attempt) is retry


def test_a_retryable_failure_is_planned_and_the_last_one_gives_up() -> None:
    delivery = _delivery(max_retry=1)
    failed = AttemptResult(ok=False, target="https://u:pw@x/h", error="HTTP 503", retryable=True)
    later = T0 + timedelta(seconds=2)
    rows, outcome = attempt_rows(
        "e", delivery, 1, (), failed, T0, later, 1, policy=RetryPolicy(), rng=FixedJitter(1.0)
    )
    [row] = rows
    assert row.status is DS.RETRYING and row.next_retry_at == later + timedelta(minutes=5)
    assert row.details == {"round_start": 1, "retry_at": row.next_retry_at.isoformat()}
    assert "pw" not in (row.target or "")
    assert outcome == DeliveryOutcome(pending=True)
    rows, outcome = attempt_rows(
        "e", delivery, 2, (), failed, T0, later, 1, policy=RetryPolicy(), rng=FixedJitter(1.0)
    )
    assert rows[0].status is DS.FAILED and rows[0].next_retry_at is None
    assert rows[0].error_message == "HTTP 503 (gave up after 2 attempts)"
    assert outcome == DeliveryOutcome(failed=True)


def test_an_email_partly_accepted_is_one_row_per_recipient_group() -> None:
    delivery = _delivery(domain.DeliveryMethod.EMAIL, emails=("a@x", "b@x", "c@x"))
    result = AttemptResult(
        ok=False,
        target="smtp://mail",
        error="refused by the server",
        retryable=True,
        details={
            "accepted": ["a@x"],
            "refused": [
                {"email": "b@x", "error": "451 busy", "retryable": True},
                {"email": "c@x", "error": "550 no such user", "retryable": False},
            ],
        },
    )
    rows, outcome = attempt_rows(
        "e", delivery, 1, (), result, T0, T0, 1, policy=RetryPolicy(), rng=FixedJitter(1.0)
    )
    assert [(r.status, [p.email for p in r.recipients]) for r in rows] == [
        (DS.SUCCESS, ["a@x"]),
        (DS.RETRYING, ["b@x"]),
        (DS.FAILED, ["c@x"]),
    ]
    assert rows[1].error_message == "b@x: 451 busy"
    assert rows[0].recipient_group == recipient_group(list(rows[0].recipients))
    assert "accepted" not in rows[0].details and "refused" not in rows[0].details
    assert outcome == DeliveryOutcome(delivered=True, failed=True, pending=True)


def test_latest_states_per_recipient() -> None:
    rows = [
        _log(1, 1, DS.FAILED),
        _log(2, 2, DS.SUCCESS, emails=("A@x",)),
        _log(3, 2, DS.RETRYING, emails=("b@x",), pending=True),
    ]
    assert latest_states(rows) == {"a@x": DS.SUCCESS, "b@x": DS.RETRYING}
    # A RETRYING row whose retry was never recorded counts as failed.
    assert latest_states([_log(1, 1, DS.RETRYING)]) == {"": DS.FAILED}


def test_final_status_from_the_rows() -> None:
    assert final_status([_log(1, 1, DS.FAILED, error="x"), _log(2, 2, DS.SUCCESS)]) == (
        ES.COMPLETED,
        None,
    )
    delivered = _log(3, 1, DS.SUCCESS, delivery_id=8)
    gone = _log(4, 1, DS.FAILED, error="file gone")
    assert final_status([delivered, gone]) == (ES.PARTIAL, "delivery 7: file gone")
    assert final_status([gone]) == (ES.FAILED, "delivery 7: file gone")
    assert final_status([]) == (ES.COMPLETED, None)


def test_the_report_of_a_round() -> None:
    outcomes = [
        DeliveryOutcome(delivered=True),
        DeliveryOutcome(delivered=True, failed=True),
        DeliveryOutcome(failed=True, pending=True),
        DeliveryOutcome(skipped=True),
    ]
    report = delivery_report(outcomes)
    assert (report.delivered, report.failed, report.pending, report.skipped) == (2, 1, 1, 1)


async def test_a_reload_applies_the_new_retry_settings_to_the_next_backoff() -> None:
    store = Store(StoreSettings())  # never started: the backoff needs no store
    ledger = DeliveryLedger(Settings(), store, node_id="n", rng=FixedJitter(1.0))
    assert ledger.backoff(_delivery(), 2) == timedelta(minutes=10)
    await ledger.on_reload(Settings(execution=ExecutionSettings(retry_time_scale=0.5)))
    assert ledger.backoff(_delivery(), 2) == timedelta(minutes=5)
