"""The slack delivery through the official `slack_sdk` client against a local Slack stand-in
(chat_standins.SlackStandIn; no Slack is reachable from here): the external upload flow carries
the produced file byte for byte, the message carries the summary and the preview, a 429 is
waited out and retried, a file over max_file_mb goes as the run's S3 presigned link (moto), and
every attempt is a ledger row without the token."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from reporthubd import domain, logs
from reporthubd.config import LoggingSettings
from reporthubd.deliverers.base import ProducedFile
from reporthubd.store import delivery_logs
from reporthubd.store.database import Store
from tests.deliverers import peers
from tests.deliverers.chat_standins import SlackStandIn
from tests.deliverers.conftest import MB, DeliverySpec, make_file, seed_report, settings_for

DS = domain.DeliveryStatus


@pytest.fixture
async def slack() -> AsyncIterator[SlackStandIn]:
    stand_in = SlackStandIn()
    await stand_in.start()
    yield stand_in
    await stand_in.stop()


def _config(slack: SlackStandIn, **overrides: Any) -> dict[str, Any]:
    return {
        "token": slack.token,
        "channel": "C0REPORTS",
        "base_url": slack.base_url,
        "text": "Sales for {parameters[region]}",
    } | overrides


def _message_text(message: dict[str, Any]) -> str:
    """Everything a reader sees in a posted message: its text and its blocks' texts."""
    parts = [str(message.get("text", ""))]
    for block in message.get("blocks") or []:
        if isinstance(block.get("text"), dict):
            parts.append(block["text"]["text"])
        parts.extend(item["text"] for item in block.get("fields") or [])
    return "\n".join(parts)


async def test_uploads_the_file_byte_for_byte_and_posts_summary_and_preview(
    sqlite_store: Store, small_file: ProducedFile, slack: SlackStandIn
) -> None:
    settings = settings_for(sqlite_store)
    report = await seed_report(
        sqlite_store, settings, small_file, [DeliverySpec(method="slack", config=_config(slack))]
    )
    result = await report.ledger.run(await report.job())
    assert (result.delivered, result.failed, result.pending) == (1, 0, 0)

    # The external upload flow, in order, as the SDK sent it.
    methods = [c.method for c in slack.calls]
    assert methods == [
        "files.getUploadURLExternal",
        "chat.postMessage",
        "files.completeUploadExternal",
    ]
    [upload] = slack.uploads.values()
    assert upload.data == small_file.path.read_bytes()
    assert peers.sha256(upload.data) == small_file.sha256
    assert upload.filename == small_file.name and upload.completed
    assert upload.channel == "C0REPORTS"

    [message] = slack.messages
    assert upload.thread_ts == message["ts"]  # the file is in the message's thread
    shown = _message_text(message)
    assert report.execution_id in shown
    assert "Sales for north" in shown
    assert "Rows*\n3" in shown and "region=north" in shown
    # The preview table: header and the rows of the CSV, in a code block.
    assert "id | region | amount" in shown and "2  | south  | 7.25" in shown

    [row] = await delivery_logs.logs_for_execution(sqlite_store, report.execution_id)
    assert row.status is DS.SUCCESS and row.attempt == 1
    assert row.details["sent_as"] == "file" and row.details["size"] == small_file.size
    assert row.target == f"http://127.0.0.1:{slack.port}/api#C0REPORTS"
    assert slack.token not in str(row)


async def test_a_429_is_waited_out_by_the_sdk_and_retried(
    sqlite_store: Store, small_file: ProducedFile, slack: SlackStandIn
) -> None:
    slack.rate_limited["chat.postMessage"] = [1]
    settings = settings_for(sqlite_store)
    report = await seed_report(
        sqlite_store, settings, small_file, [DeliverySpec(method="slack", config=_config(slack))]
    )
    result = await report.ledger.run(await report.job())
    assert result.delivered == 1

    first, second = slack.calls_of("chat.postMessage")
    assert second.at - first.at >= 1.0  # Retry-After: 1 was waited out before the retry
    assert len(slack.messages) == 1 and len(slack.uploads) == 1
    [row] = await delivery_logs.logs_for_execution(sqlite_store, report.execution_id)
    assert row.status is DS.SUCCESS and row.attempt == 1


async def test_a_long_retry_after_goes_to_the_ledger_and_the_retry_delivers(
    sqlite_store: Store, small_file: ProducedFile, slack: SlackStandIn
) -> None:
    # Longer than max_wait_seconds: the SDK handler does not sleep; the ledger plans the retry.
    slack.rate_limited["files.getUploadURLExternal"] = [7]
    config = _config(slack, max_wait_seconds=2)
    settings = settings_for(sqlite_store)
    report = await seed_report(
        sqlite_store, settings, small_file, [DeliverySpec(method="slack", config=config)]
    )
    ledger = report.ledger
    result = await ledger.run(await report.job())
    assert (result.delivered, result.pending) == (0, 1)
    [row] = await delivery_logs.logs_for_execution(sqlite_store, report.execution_id)
    assert row.status is DS.RETRYING and "ratelimited" in (row.error_message or "")
    assert row.next_retry_at is not None and row.finished_at is not None
    assert row.next_retry_at - row.finished_at >= timedelta(seconds=7)
    assert not slack.messages

    await peers.wait_until(lambda: _due(sqlite_store, report.execution_id), timeout=30)
    assert await ledger.process_due() == 1
    rows = await delivery_logs.logs_for_execution(sqlite_store, report.execution_id)
    assert [r.status for r in rows] == [DS.RETRYING, DS.SUCCESS]
    assert len(slack.messages) == 1


async def _due(store: Store, execution_id: str) -> bool:
    from reporthubd.timeutil import utcnow

    rows = await delivery_logs.logs_for_execution(store, execution_id)
    return all(r.next_retry_at is None or r.next_retry_at <= utcnow() for r in rows)


async def test_a_file_over_max_file_mb_goes_as_the_runs_presigned_s3_link(
    sqlite_store: Store,
    slack: SlackStandIn,
    s3_server: peers.S3Server,
    bucket: str,
    tmp_path: Path,
) -> None:
    produced = make_file(tmp_path / "sales-3mb.csv", 3 * MB, compressible=True)
    settings = settings_for(sqlite_store)
    specs = [
        DeliverySpec(method="slack", config=_config(slack, max_file_mb=1)),
        DeliverySpec(method="s3", config=s3_server.delivery_config(bucket, presign_seconds=600)),
    ]
    report = await seed_report(sqlite_store, settings, produced, specs)
    result = await report.ledger.run(await report.job())
    assert (result.delivered, result.failed) == (2, 0)

    assert not slack.uploads  # nothing uploaded to Slack
    [message] = slack.messages
    [button] = [
        element
        for block in message["blocks"]
        if block["type"] == "actions"
        for element in block["elements"]
    ]
    assert "too large for Slack" in _message_text(message)
    # The link is the S3 delivery's presigned URL, and it serves the very file.
    async with aiohttp.ClientSession() as session, session.get(button["url"]) as answer:
        assert answer.status == 200
        assert peers.sha256(await answer.read()) == produced.sha256
    rows = await delivery_logs.logs_for_execution(sqlite_store, report.execution_id)
    by_delivery = {r.delivery_id: r for r in rows}
    slack_row = by_delivery[report.delivery_ids[0]]
    assert slack_row.status is DS.SUCCESS and slack_row.details["sent_as"] == "link"


async def test_over_max_file_mb_without_a_link_fails_for_good_naming_the_fix(
    sqlite_store: Store, slack: SlackStandIn, tmp_path: Path
) -> None:
    produced = make_file(tmp_path / "sales-2mb.csv", 2 * MB, compressible=True)
    settings = settings_for(sqlite_store)
    spec = DeliverySpec(method="slack", config=_config(slack, max_file_mb=1))
    report = await seed_report(sqlite_store, settings, produced, [spec])
    result = await report.ledger.run(await report.job())
    assert result.failed == 1
    [row] = await delivery_logs.logs_for_execution(sqlite_store, report.execution_id)
    assert row.status is DS.FAILED
    assert "over max_file_mb" in (row.error_message or "")
    assert "presign_seconds" in (row.error_message or "")
    assert not slack.calls


async def test_a_wrong_token_fails_for_good_and_never_shows_the_token(
    sqlite_store: Store,
    small_file: ProducedFile,
    slack: SlackStandIn,
) -> None:
    wrong = "xoxb-wrong-token-9999"
    # The daemon's own log set-up (redaction included) writing to a buffer of this test: the
    # suite's earlier tests may have pointed the root handler at a stream of theirs.
    stream = io.StringIO()
    logs.configure(LoggingSettings(format="json", level="INFO"), stream=stream)
    settings = settings_for(sqlite_store)
    spec = DeliverySpec(method="slack", config=_config(slack, token=wrong))
    report = await seed_report(sqlite_store, settings, small_file, [spec])
    result = await report.ledger.run(await report.job())
    assert result.failed == 1
    [row] = await delivery_logs.logs_for_execution(sqlite_store, report.execution_id)
    assert row.status is DS.FAILED and "invalid_auth" in (row.error_message or "")
    assert wrong not in str(row)
    assert not slack.messages
    logged = stream.getvalue()
    assert "delivery attempt" in logged  # the attempt was logged, without the token
    assert wrong not in logged


async def test_a_missing_token_names_the_key(
    sqlite_store: Store, small_file: ProducedFile, slack: SlackStandIn
) -> None:
    settings = settings_for(sqlite_store)
    config = _config(slack)
    del config["token"]
    report = await seed_report(
        sqlite_store, settings, small_file, [DeliverySpec(method="slack", config=config)]
    )
    result = await report.ledger.run(await report.job())
    assert result.failed == 1
    [row] = await delivery_logs.logs_for_execution(sqlite_store, report.execution_id)
    assert (row.error_message or "").startswith("delivery_config.token is required")


async def test_over_max_file_mb_waits_for_an_s3_link_that_failed_for_now(
    sqlite_store: Store, slack: SlackStandIn, tmp_path: Path
) -> None:
    """The S3 delivery meant to presign the link failed for now (nothing listens): the Slack
    attempt is retried too, rather than failing for good, so its retry can carry the link."""
    produced = make_file(tmp_path / "sales-2mb.csv", 2 * MB, compressible=True)
    settings = settings_for(sqlite_store)
    closed = peers.StalledListener()
    closed.close()  # a port nothing listens on: connection refused, retryable
    s3_config = {
        "bucket": "reports",
        "endpoint_url": f"http://127.0.0.1:{closed.port}",
        "region": "us-east-1",
        "access_key_id": "k" * 16,
        "secret_access_key": "s" * 32,
        "presign_seconds": 600,
        "timeout_seconds": 2,
    }
    specs = [
        DeliverySpec(method="slack", config=_config(slack, max_file_mb=1)),
        DeliverySpec(method="s3", config=s3_config),
    ]
    report = await seed_report(sqlite_store, settings, produced, specs)
    result = await report.ledger.run(await report.job())
    assert result.pending == 2
    rows = await delivery_logs.logs_for_execution(sqlite_store, report.execution_id)
    slack_row = next(r for r in rows if r.delivery_id == report.delivery_ids[0])
    assert slack_row.status is DS.RETRYING
    assert "link is not there yet" in (slack_row.error_message or "")
    assert not slack.calls


async def test_a_file_over_max_file_mb_goes_through_the_link_store_without_an_s3_delivery(
    sqlite_store: Store,
    slack: SlackStandIn,
    s3_server: peers.S3Server,
    bucket: str,
    tmp_path: Path,
) -> None:
    produced = make_file(tmp_path / "sales-2mb.csv", 2 * MB, compressible=True)
    config = _config(slack, max_file_mb=1, link_store=s3_server.delivery_config(bucket))
    settings = settings_for(sqlite_store)
    spec = DeliverySpec(method="slack", config=config)
    report = await seed_report(sqlite_store, settings, produced, [spec])
    assert (await report.ledger.run(await report.job())).delivered == 1
    assert not slack.uploads
    [message] = slack.messages
    [button] = [e for b in message["blocks"] if b["type"] == "actions" for e in b["elements"]]
    async with aiohttp.ClientSession() as session, session.get(button["url"]) as answer:
        assert peers.sha256(await answer.read()) == produced.sha256
