"""The teams and google_chat deliveries against local webhook stand-ins (no Teams or Google
Chat is reachable from here). The Teams card is checked by Microsoft's Adaptive Cards parser
(npm `adaptivecards` 3.0.6, run by node from tests/peers), the Google Chat message by the Chat
API's published schema (chat.v1.json from google-api-python-client, through jsonschema), not
only their arrival; the link is the S3 delivery's presigned URL of the same run (moto), and it
serves the file."""

from __future__ import annotations

import copy
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from reporthubd import domain
from reporthubd.deliverers.base import ProducedFile
from reporthubd.store import delivery_logs
from reporthubd.store.database import Store
from tests.deliverers import peers
from tests.deliverers.chat_standins import (
    ChatWebhookStandIn,
    adaptive_card_problems,
    google_chat_problems,
)
from tests.deliverers.conftest import DeliverySpec, seed_report, settings_for

DS = domain.DeliveryStatus
SIG = "stand-in-signature-secret"
S3_SECRET = peers.S3Server.SECRET


@pytest.fixture
async def hook() -> AsyncIterator[ChatWebhookStandIn]:
    stand_in = ChatWebhookStandIn()
    await stand_in.start()
    yield stand_in
    await stand_in.stop()


def _texts(node: Any) -> list[str]:
    """Every `text`/`value`/`title` string anywhere in a card."""
    found: list[str] = []
    if isinstance(node, dict):
        for key, value in node.items():
            if key in {"text", "value", "title", "topLabel", "header"} and isinstance(value, str):
                found.append(value)
            else:
                found += _texts(value)
    elif isinstance(node, list):
        for item in node:
            found += _texts(item)
    return found


async def test_teams_card_passes_the_adaptive_cards_parser_and_links_the_s3_file(
    sqlite_store: Store,
    small_file: ProducedFile,
    hook: ChatWebhookStandIn,
    s3_server: peers.S3Server,
    bucket: str,
) -> None:
    url = hook.url("/workflows/abc/triggers/manual/paths/invoke", f"api-version=1&sig={SIG}")
    specs = [
        DeliverySpec(method="teams", config={"url": url, "text": "Region {parameters[region]}"}),
        DeliverySpec(method="s3", config=s3_server.delivery_config(bucket, presign_seconds=600)),
    ]
    settings = settings_for(sqlite_store)
    report = await seed_report(sqlite_store, settings, small_file, specs)
    result = await report.ledger.run(await report.job())
    assert (result.delivered, result.failed) == (2, 0)

    [message] = hook.messages
    checked = adaptive_card_problems(message)
    assert checked["errors"] == [], checked["errors"]
    card = checked["card"]  # the card as Microsoft's parser understood it
    texts = _texts(card["body"])
    assert "Region north" in texts
    assert report.execution_id in texts and "3" in texts  # execution and row count facts
    table = next(element for element in card["body"] if element["type"] == "Table")
    cells = [[_texts(cell)[0] for cell in row["cells"]] for row in table["rows"]]
    assert cells == [
        ["id", "region", "amount"],
        ["1", "north", "10.50"],
        ["2", "south", "7.25"],
        ["3", "east", "3.00"],
    ]
    [action] = card["actions"]
    assert action["type"] == "Action.OpenUrl"
    async with aiohttp.ClientSession() as session, session.get(action["url"]) as answer:
        assert answer.status == 200
        assert peers.sha256(await answer.read()) == small_file.sha256

    rows = await delivery_logs.logs_for_execution(sqlite_store, report.execution_id)
    teams_row = next(r for r in rows if r.delivery_id == report.delivery_ids[0])
    assert teams_row.status is DS.SUCCESS and teams_row.details["sent_as"] == "link"
    assert SIG not in str(teams_row) and teams_row.target is not None
    assert teams_row.target.endswith("/paths/invoke")


def test_the_validator_refuses_a_broken_card() -> None:
    """The check above can fail: the same parser refuses an unknown element and a link-less
    OpenUrl action."""
    message = {
        "type": "message",
        "attachments": [
            {
                "contentType": "application/vnd.microsoft.card.adaptive",
                "content": {
                    "type": "AdaptiveCard",
                    "version": "1.5",
                    "body": [{"type": "TextBlok", "text": "typo"}],
                    "actions": [{"type": "Action.OpenUrl", "title": "no url"}],
                },
            }
        ],
    }
    errors = adaptive_card_problems(message)["errors"]
    assert any("TextBlok" in e for e in errors) and any('"url"' in e for e in errors)
    wrong_envelope = copy.deepcopy(message)
    wrong_envelope["attachments"][0]["contentType"] = "application/json"
    assert adaptive_card_problems(wrong_envelope)["errors"]


async def test_teams_429_is_retried_by_the_ledger_after_retry_after(
    sqlite_store: Store, small_file: ProducedFile, hook: ChatWebhookStandIn
) -> None:
    hook.answers.append((429, {"Retry-After": "1"}))
    spec = DeliverySpec(method="teams", config={"url": hook.url(), "preview_rows": 0})
    settings = settings_for(sqlite_store)
    report = await seed_report(sqlite_store, settings, small_file, [spec])
    ledger = report.ledger
    result = await ledger.run(await report.job())
    assert result.pending == 1
    [first] = await delivery_logs.logs_for_execution(sqlite_store, report.execution_id)
    assert first.status is DS.RETRYING and "HTTP 429" in (first.error_message or "")

    async def retried() -> bool:
        await ledger.process_due()
        return bool(hook.messages)

    await peers.wait_until(retried, timeout=30, interval=0.2)
    rows = await delivery_logs.logs_for_execution(sqlite_store, report.execution_id)
    assert [r.status for r in rows] == [DS.RETRYING, DS.SUCCESS]
    assert adaptive_card_problems(hook.messages[0])["errors"] == []


async def test_teams_without_url_and_with_require_link_name_the_problem(
    sqlite_store: Store, small_file: ProducedFile, hook: ChatWebhookStandIn
) -> None:
    specs = [
        DeliverySpec(method="teams", config={"title": "no url"}),
        DeliverySpec(method="teams", config={"url": hook.url(), "require_link": True}),
    ]
    settings = settings_for(sqlite_store)
    report = await seed_report(sqlite_store, settings, small_file, specs)
    result = await report.ledger.run(await report.job())
    assert result.failed == 2
    rows = await delivery_logs.logs_for_execution(sqlite_store, report.execution_id)
    errors = {r.delivery_id: r.error_message or "" for r in rows}
    assert errors[report.delivery_ids[0]].startswith("delivery_config.url: required")
    assert "require_link" in errors[report.delivery_ids[1]]
    assert not hook.messages


async def test_google_chat_card_with_summary_preview_link_and_thread(
    sqlite_store: Store, small_file: ProducedFile, hook: ChatWebhookStandIn
) -> None:
    url = hook.url("/v1/spaces/AAAA/messages", f"key=k-secret&token={SIG}")
    spec = DeliverySpec(
        method="google_chat",
        config={
            "url": url,
            "link_url": "https://reports.example/{report_name}/{execution_id}",
            "thread_key": "{report_name}",
        },
    )
    settings = settings_for(sqlite_store)
    report = await seed_report(sqlite_store, settings, small_file, [spec])
    job = await report.job()
    result = await report.ledger.run(job)
    assert result.delivered == 1

    [message] = hook.messages
    # The message as Google's published Chat API schema describes it (chat.v1.json).
    assert google_chat_problems(message) == []
    misspelt = copy.deepcopy(message)
    misspelt["cardsV2"][0]["card"]["sections"][0]["widgets"][0]["decoratedtext"] = {}
    assert any("decoratedtext" in p for p in google_chat_problems(misspelt))
    [query] = hook.queries
    assert query["threadKey"] == job.config.name and query["token"] == SIG
    assert query["messageReplyOption"] == "REPLY_MESSAGE_FALLBACK_TO_NEW_THREAD"
    [entry] = message["cardsV2"]
    card = entry["card"]
    assert entry["cardId"] and card["header"]["title"] == f"Report {job.config.name}"
    summary, preview, links = card["sections"]
    facts = {w["decoratedText"]["topLabel"]: w["decoratedText"]["text"] for w in summary["widgets"]}
    assert facts["Rows"] == "3" and facts["Execution"] == report.execution_id
    assert preview["widgets"][0]["textParagraph"]["text"].split("<br>") == [
        "<b>id | region | amount</b>",
        "1 | north | 10.50",
        "2 | south | 7.25",
        "3 | east | 3.00",
    ]
    [button] = links["widgets"][0]["buttonList"]["buttons"]
    assert button["onClick"]["openLink"]["url"] == (
        f"https://reports.example/{job.config.name}/{report.execution_id}"
    )
    assert report.execution_id in message["text"]
    [row] = await delivery_logs.logs_for_execution(sqlite_store, report.execution_id)
    assert row.status is DS.SUCCESS and SIG not in str(row) and "k-secret" not in str(row)


async def test_teams_links_its_own_upload_to_the_link_store_when_the_run_has_no_s3_link(
    sqlite_store: Store,
    small_file: ProducedFile,
    hook: ChatWebhookStandIn,
    s3_server: peers.S3Server,
    bucket: str,
) -> None:
    store = s3_server.delivery_config(bucket, presign_seconds=300)
    specs = [
        DeliverySpec(method="teams", config={"url": hook.url(), "link_store": store}),
        DeliverySpec(
            method="teams",
            config={"url": hook.url(), "link_store": s3_server.delivery_config("no-such-bucket")},
        ),
    ]
    settings = settings_for(sqlite_store)
    report = await seed_report(sqlite_store, settings, small_file, specs)
    result = await report.ledger.run(await report.job())
    assert (result.delivered, result.failed) == (1, 1)

    [message] = hook.messages
    checked = adaptive_card_problems(message)
    assert checked["errors"] == []
    [action] = checked["card"]["actions"]
    assert f"/{bucket}/reporthubd-links/{report.execution_id}/" in action["url"]
    async with aiohttp.ClientSession() as session, session.get(action["url"]) as answer:
        assert answer.status == 200
        assert peers.sha256(await answer.read()) == small_file.sha256
    rows = await delivery_logs.logs_for_execution(sqlite_store, report.execution_id)
    failed = next(r for r in rows if r.delivery_id == report.delivery_ids[1])
    assert failed.status is DS.FAILED
    assert (failed.error_message or "").startswith("link_store: S3 NoSuchBucket")
    assert S3_SECRET not in str(rows)
