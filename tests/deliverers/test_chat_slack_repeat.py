"""A Slack attempt that may repeat one that reached Slack (slack.py, "Repeats"), through the
real delivery ledger and `slack_sdk` against the Slack stand-in: the first attempt posts the
message and then fails sharing the file (files.completeUploadExternal answers 429 for longer
than max_wait_seconds, so the ledger plans the retry). The retry

- with a token that may read the channel's history, finds its message by the idempotency key
  in the message metadata, posts nothing, and shares the file into that message's thread;
- without the history scope (missing_scope), cannot tell, posts again, and says so in the
  ledger (`dedup: unavailable`): the message is then shown twice.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from reporthubd import domain
from reporthubd.deliverers.base import ProducedFile
from reporthubd.store import delivery_logs
from reporthubd.store.database import Store
from tests.deliverers import peers
from tests.deliverers.chat_standins import SlackStandIn
from tests.deliverers.conftest import DeliverySpec, seed_report, settings_for

DS = domain.DeliveryStatus


@pytest.fixture
async def slack() -> AsyncIterator[SlackStandIn]:
    stand_in = SlackStandIn()
    await stand_in.start()
    yield stand_in
    await stand_in.stop()


def _config(slack: SlackStandIn) -> dict[str, Any]:
    return {
        "token": slack.token,
        "channel": "C0REPORTS",
        "base_url": slack.base_url,
        "max_wait_seconds": 0.5,
    }


async def _due(store: Store, execution_id: str) -> bool:
    from reporthubd.timeutil import utcnow

    rows = await delivery_logs.logs_for_execution(store, execution_id)
    return all(r.next_retry_at is None or r.next_retry_at <= utcnow() for r in rows)


async def _deliver_twice(
    store: Store, file: ProducedFile, slack: SlackStandIn
) -> list[delivery_logs.DeliveryLog]:
    slack.rate_limited["files.completeUploadExternal"] = [2]
    settings = settings_for(store)
    report = await seed_report(
        store, settings, file, [DeliverySpec(method="slack", config=_config(slack))]
    )
    result = await report.ledger.run(await report.job())
    assert result.pending == 1
    assert len(slack.messages) == 1  # posted; its file not shared yet
    await peers.wait_until(lambda: _due(store, report.execution_id), timeout=30)
    assert await report.ledger.process_due() == 1
    rows = await delivery_logs.logs_for_execution(store, report.execution_id)
    assert [r.status for r in rows] == [DS.RETRYING, DS.SUCCESS]
    return rows


async def test_a_retry_finds_its_message_and_shares_the_file_in_its_thread(
    sqlite_store: Store, small_file: ProducedFile, slack: SlackStandIn
) -> None:
    rows = await _deliver_twice(sqlite_store, small_file, slack)
    (message,) = slack.messages
    key = message["metadata"]["event_payload"]["idempotency_key"]
    assert message["metadata"]["event_type"] == "reporthubd_delivery"
    assert key == f"{rows[0].execution_id}:{rows[0].delivery_id}"
    assert len(slack.calls_of("conversations.history")) == 1
    assert rows[1].details["dedup"] == "found" and rows[1].details["ts"] == message["ts"]
    completed = [u for u in slack.uploads.values() if u.completed]
    assert len(completed) == 1 and completed[0].thread_ts == message["ts"]
    assert completed[0].data == small_file.path.read_bytes()


async def test_without_the_history_scope_the_retry_posts_again_and_says_so(
    sqlite_store: Store, small_file: ProducedFile, slack: SlackStandIn
) -> None:
    slack.history_scope = False
    rows = await _deliver_twice(sqlite_store, small_file, slack)
    assert rows[1].details["dedup"] == "unavailable"
    assert len(slack.messages) == 2  # the window docs/operators.md describes
    keys = slack.keys()
    assert keys[0] == keys[1] == f"{rows[0].execution_id}:{rows[0].delivery_id}"
