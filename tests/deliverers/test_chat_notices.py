"""Notices (issue 17, item 1) through the chat deliveries and the webhook: the real notice
sender (notify/sender.py) takes a recorded notice for a `delivery:ID` target and sends it
through that delivery's method; a chat message carries the notice's subject and text and the
run's link, uploads no file; a webhook sends its JSON document with the notice."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from reporthubd.deliverers.base import ProducedFile
from reporthubd.notify.sender import NoticeSender
from reporthubd.store import notices
from reporthubd.store.database import Store
from tests.deliverers import peers
from tests.deliverers.chat_standins import (
    ChatWebhookStandIn,
    SlackStandIn,
    adaptive_card_problems,
)
from tests.deliverers.conftest import DeliverySpec, seed_report, settings_for

SUBJECT = "[reporthubd] FAILED: daily-sales (schedule 7, fire 2026-12-03T07:00:00+00:00)"
BODY = 'The run failed.\nWhy: relation "sales" does not exist\nLook: https://console.example/r/1'


@pytest.fixture
async def slack() -> AsyncIterator[SlackStandIn]:
    stand_in = SlackStandIn()
    await stand_in.start()
    yield stand_in
    await stand_in.stop()


@pytest.fixture
async def hook() -> AsyncIterator[ChatWebhookStandIn]:
    stand_in = ChatWebhookStandIn()
    await stand_in.start()
    yield stand_in
    await stand_in.stop()


async def test_a_notice_travels_through_slack_teams_and_a_webhook(
    sqlite_store: Store,
    small_file: ProducedFile,
    slack: SlackStandIn,
    hook: ChatWebhookStandIn,
    receiver: peers.WebhookReceiver,
    tmp_path: Path,
) -> None:
    settings = settings_for(sqlite_store, workspace=str(tmp_path / "ws"))
    specs = [
        DeliverySpec(
            method="slack",
            config={"token": slack.token, "channel": "C0ONCALL", "base_url": slack.base_url},
        ),
        DeliverySpec(method="teams", config={"url": hook.url()}),
        DeliverySpec(
            method="webhook",
            config={"url": receiver.url, "body": '{"text": "{{ report_name }}"}'},
        ),
        DeliverySpec(method="webhook", config={"url": receiver.url, "mode": "multipart"}),
    ]
    report = await seed_report(sqlite_store, settings, small_file, specs)
    await notices.record(
        sqlite_store,
        [
            notices.NewNotice(
                incident_key=f"test:{report.execution_id}",
                event="failed",
                target=f"delivery:{delivery_id}",
                config_id=report.config_id,
                execution_id=report.execution_id,
                message=f"{SUBJECT}\n\n{BODY}",
            )
            for delivery_id in report.delivery_ids
        ],
        at=datetime.now(UTC),
    )
    sender = NoticeSender(settings, sqlite_store, node_id="notice-test")
    assert await sender.process_due() == 4
    sent = await notices.of_incident(sqlite_store, f"test:{report.execution_id}")
    assert [n.status for n in sent] == ["SENT"] * 4, [(n.status, n.error) for n in sent]

    # Slack: one message with the notice, no file uploaded.
    [message] = slack.messages
    assert not slack.uploads
    assert message["text"].startswith(SUBJECT)
    assert 'relation "sales" does not exist' in message["text"]
    [button] = [e for b in message["blocks"] if b["type"] == "actions" for e in b["elements"]]
    assert button["url"] == "https://console.example/r/1"

    # Teams: a valid card with the notice's subject and text, linking to the run.
    [teams] = hook.messages
    checked = adaptive_card_problems(teams)
    assert checked["errors"] == []
    body = checked["card"]["body"]
    assert body[0]["text"] == SUBJECT and body[1]["text"] == BODY
    assert checked["card"]["actions"][0]["url"] == "https://console.example/r/1"

    # Webhook: the JSON document carries the notice (the sender's `body` text is not a template).
    json_hit, multipart_hit = sorted(receiver.hits, key=lambda h: "multipart" in str(h.headers))
    document = json_hit.json
    assert json_hit.headers["X-Reporthub-Event"] == "report.notice"
    assert document["notice"]["text"] == BODY and document["notice"]["event"] == "failed"
    metadata, text = multipart_hit.multipart_file()
    assert metadata["notice"]["subject"] == SUBJECT and text.decode().startswith(SUBJECT)
