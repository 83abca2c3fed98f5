"""The notice ledger against every real store (SQLite, MariaDB, PostgreSQL): a notice recorded by
several nodes exists once, is taken for sending by one node, and is written SENT only by the node
holding its attempt; a node that died mid-send (its lease ran out) loses the notice to another,
and its late answer changes nothing; retries wait for their time; FAILED is final."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from reporthubd.store import notices
from reporthubd.store.database import Store

T0 = datetime(2026, 12, 3, 9, 0, tzinfo=UTC)


def _notice(target: str = "email:ann@example.com", sequence: int = 0) -> notices.NewNotice:
    return notices.NewNotice(
        incident_key="incident:run-1",
        event="failed",
        target=target,
        sequence=sequence,
        config_id=None,
        execution_id="run-1",
        message="report 'sales' failed: division by zero",
    )


async def test_a_notice_recorded_by_three_nodes_exists_once(store: Store) -> None:
    results = await asyncio.gather(
        *(notices.record(store, [_notice(), _notice("delivery:7")], at=T0) for _ in range(3))
    )
    ids = [notice_id for found in results for notice_id in found]
    assert len(ids) == len(set(ids)) == 2
    rows = await notices.of_incident(store, "incident:run-1")
    assert sorted(row.target for row in rows) == ["delivery:7", "email:ann@example.com"]
    assert {(row.status, row.attempt) for row in rows} == {("PENDING", 0)}
    # a reminder is another notice of the same incident
    assert len(await notices.record(store, [_notice(sequence=1)], at=T0)) == 1


async def test_each_notice_is_taken_by_one_node_and_sent_by_its_holder_only(store: Store) -> None:
    await notices.record(store, [_notice(f"email:u{i}@example.com") for i in range(6)], at=T0)
    a, b = await asyncio.gather(
        notices.take_due(store, node_id="node-a", now=T0, lease_seconds=30),
        notices.take_due(store, node_id="node-b", now=T0, lease_seconds=30),
    )
    assert len(a) + len(b) == 6
    assert not {n.id for n in a} & {n.id for n in b}
    assert {n.attempt for n in a + b} == {1} and {n.status for n in a + b} == {"SENDING"}
    for notice in a:
        assert not await notices.mark_sent(store, notice, node_id="node-b", at=T0)
        assert await notices.mark_sent(store, notice, node_id="node-a", at=T0)
    for notice in b:
        assert await notices.mark_sent(store, notice, node_id="node-b", at=T0)
    later = T0 + timedelta(hours=1)
    assert await notices.take_due(store, node_id="node-a", now=later, lease_seconds=30) == []
    rows = await notices.of_incident(store, "incident:run-1")
    assert {row.status for row in rows} == {"SENT"} and len(rows) == 6


async def test_a_node_that_died_mid_send_loses_the_notice_and_its_late_answer_is_refused(
    store: Store,
) -> None:
    await notices.record(store, [_notice()], at=T0)
    (held,) = await notices.take_due(store, node_id="node-a", now=T0, lease_seconds=10)
    # within the lease nobody else takes it
    assert await notices.take_due(store, node_id="node-b", now=T0, lease_seconds=10) == []
    late = T0 + timedelta(seconds=11)
    (taken,) = await notices.take_due(store, node_id="node-b", now=late, lease_seconds=10)
    assert (taken.id, taken.attempt, taken.node_id) == (held.id, 2, "node-b")
    assert not await notices.mark_sent(store, held, node_id="node-a", at=late)  # fenced
    assert await notices.mark_sent(store, taken, node_id="node-b", at=late)
    (row,) = await notices.of_incident(store, "incident:run-1")
    assert (row.status, row.attempt, row.node_id) == ("SENT", 2, "node-b")


async def test_a_failed_send_waits_for_its_retry_and_failed_is_final(store: Store) -> None:
    await notices.record(store, [_notice()], at=T0)
    (first,) = await notices.take_due(store, node_id="node-a", now=T0, lease_seconds=30)
    retry_at = T0 + timedelta(minutes=5)
    assert await notices.mark_failed(
        store, first, node_id="node-a", error="SMTP 451 try later", retry_at=retry_at
    )
    (row,) = await notices.of_incident(store, "incident:run-1")
    assert (row.status, row.error_message) == ("RETRYING", "SMTP 451 try later")
    soon = T0 + timedelta(minutes=4)
    assert await notices.take_due(store, node_id="node-a", now=soon, lease_seconds=30) == []
    (second,) = await notices.take_due(store, node_id="node-a", now=retry_at, lease_seconds=30)
    assert second.attempt == 2
    assert await notices.mark_failed(
        store, second, node_id="node-a", error="SMTP 550 no such user", retry_at=None
    )
    far = T0 + timedelta(days=1)
    assert await notices.take_due(store, node_id="node-a", now=far, lease_seconds=30) == []
    (row,) = await notices.of_incident(store, "incident:run-1")
    assert (row.status, row.attempt, row.error_message) == ("FAILED", 2, "SMTP 550 no such user")
