"""The ledger's SQL on every store backend: the attempt key, claiming a due retry once,
recording a retry atomically, pending state, final status."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa

from reporthubd import domain
from reporthubd.config import Settings
from reporthubd.engine import ledger
from reporthubd.store import delivery_logs, executions, schema
from reporthubd.store.database import Store
from reporthubd.store.delivery_logs import NewLog, RecipientRef

DS = domain.DeliveryStatus
ES = domain.ExecutionStatus


async def _execution(store: Store) -> tuple[str, int]:
    async with store.engine.begin() as conn:
        ds = (
            await conn.execute(
                sa.insert(schema.datasources).values(
                    name="ds", type="sqlite", connection_config={"path": "/dev/null"}
                )
            )
        ).inserted_primary_key[0]
        config = (
            await conn.execute(
                sa.insert(schema.configs).values(
                    name="r", datasource_id=ds, query_text="SELECT 1", output_format="csv"
                )
            )
        ).inserted_primary_key[0]
        delivery = (
            await conn.execute(
                sa.insert(schema.deliveries).values(
                    config_id=config, name="d", method="email", delivery_config={}
                )
            )
        ).inserted_primary_key[0]
    execution_id = await executions.insert_execution(
        store, config_id=config, trigger_type=domain.TriggerType.MANUAL, status=ES.RUNNING
    )
    assert execution_id is not None
    return execution_id, delivery


def _refs(*emails: str) -> list[RecipientRef]:
    return [RecipientRef(recipient_type=domain.RecipientType.TO, email=e) for e in emails]


async def test_one_row_per_recipient_group_per_attempt_and_a_due_retry_is_claimed_once(
    store: Store,
) -> None:
    execution_id, delivery_id = await _execution(store)
    now = datetime.now(UTC)
    ok_group, busy_group = _refs("a@example.com", "b@example.com"), _refs("c@example.com")
    rows = [
        NewLog(
            execution_id=execution_id,
            delivery_id=delivery_id,
            attempt=1,
            status=DS.SUCCESS,
            recipient_group=ledger.recipient_group(ok_group),
            recipients=ok_group,
            started_at=now,
            finished_at=now,
            details={"message_id": "<m1@x>"},
        ),
        NewLog(
            execution_id=execution_id,
            delivery_id=delivery_id,
            attempt=1,
            status=DS.RETRYING,
            recipient_group=ledger.recipient_group(busy_group),
            recipients=busy_group,
            error_message="c@example.com: SMTP 450",
            started_at=now,
            finished_at=now,
            next_retry_at=now - timedelta(seconds=1),
        ),
    ]
    assert await delivery_logs.insert_logs(store, rows)
    assert not await delivery_logs.insert_logs(store, rows[:1])  # the attempt key holds
    assert await delivery_logs.has_pending_retry(store, execution_id)
    assert await delivery_logs.next_retry_time(store) == rows[1].next_retry_at

    (due,) = await delivery_logs.due_retries(store, now=datetime.now(UTC))
    assert due.recipients == tuple(busy_group)
    later = datetime.now(UTC)
    claims = await asyncio.gather(
        *(
            delivery_logs.claim_retry(
                store, due.id, now=later, lease_until=later + timedelta(minutes=30)
            )
            for _ in range(4)
        )
    )
    assert sorted(claims) == [False, False, False, True]
    assert await delivery_logs.due_retries(store, now=later) == []

    retry = NewLog(
        execution_id=execution_id,
        delivery_id=delivery_id,
        attempt=2,
        status=DS.SUCCESS,
        recipient_group=ledger.recipient_group(busy_group),
        recipients=busy_group,
        started_at=later,
        finished_at=later,
    )
    assert await delivery_logs.record_retry(store, due.id, [retry])
    assert not await delivery_logs.has_pending_retry(store, execution_id)
    found = await delivery_logs.logs_for_execution(store, execution_id)
    assert [(r.attempt, r.status, r.next_retry_at) for r in found] == [
        (1, DS.SUCCESS, None),
        (1, DS.RETRYING, None),
        (2, DS.SUCCESS, None),
    ]
    assert found[0].details == {"message_id": "<m1@x>"}
    assert ledger.final_status(found) == (ES.COMPLETED, None)
    assert await delivery_logs.max_attempt(store, execution_id, delivery_id) == 2


async def test_released_and_abandoned_retries(store: Store) -> None:
    execution_id, delivery_id = await _execution(store)
    now = datetime.now(UTC)
    row = NewLog(
        execution_id=execution_id,
        delivery_id=delivery_id,
        attempt=1,
        status=DS.RETRYING,
        error_message="HTTP 503",
        next_retry_at=now,
    )
    assert await delivery_logs.insert_logs(store, [row])
    (pending,) = await delivery_logs.due_retries(store, now=now)
    assert await delivery_logs.claim_retry(
        store, pending.id, now=now, lease_until=now + timedelta(hours=1)
    )
    await delivery_logs.release_retry(store, pending.id, at=now)
    assert [r.id for r in await delivery_logs.due_retries(store, now=now)] == [pending.id]
    await delivery_logs.abandon_retry(store, pending.id, reason="file gone", at=now)
    (gone,) = await delivery_logs.logs_for_execution(store, execution_id)
    assert (gone.status, gone.next_retry_at, gone.error_message) == (DS.FAILED, None, "file gone")
    assert ledger.final_status([gone]) == (ES.FAILED, f"delivery {delivery_id}: file gone")


async def test_an_execution_left_running_after_its_last_retry_is_settled(store: Store) -> None:
    execution_id, delivery_id = await _execution(store)
    long_ago = datetime.now(UTC) - timedelta(hours=1)
    await executions.update_execution(store, execution_id, heartbeat_at=long_ago)
    rows = [
        NewLog(
            execution_id=execution_id,
            delivery_id=delivery_id,
            attempt=1,
            status=DS.RETRYING,
            error_message="HTTP 503",
            next_retry_at=datetime.now(UTC) + timedelta(minutes=5),
        )
    ]
    assert await delivery_logs.insert_logs(store, rows)
    stale = datetime.now(UTC) - timedelta(minutes=1)
    # Pending: the ledger's worker will make the retry; nothing to settle.
    assert await delivery_logs.unsettled_executions(store, stale_before=stale) == []
    (pending,) = await delivery_logs.logs_for_execution(store, execution_id)
    retry = NewLog(execution_id=execution_id, delivery_id=delivery_id, attempt=2, status=DS.SUCCESS)
    assert await delivery_logs.record_retry(store, pending.id, [retry])
    # The node died before settling: found, and settled by any node's ledger.
    assert await delivery_logs.unsettled_executions(store, stale_before=stale) == [execution_id]
    ledger_ = ledger.DeliveryLedger(Settings(), store, node_id="other")
    assert await ledger_.settle_orphans() == [execution_id]
    found = await executions.get_execution(store, execution_id)
    assert found is not None and found.status is ES.COMPLETED
    assert await delivery_logs.unsettled_executions(store, stale_before=stale) == []
