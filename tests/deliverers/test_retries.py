"""The ledger's retries against real peers: a receiver coming back, one refused recipient,
permanent failures without a retry storm, Retry-After, giving up, settling the execution."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from reporthubd import domain
from reporthubd.deliverers.base import ProducedFile
from reporthubd.engine.ledger import DeliveryLedger
from reporthubd.store import delivery_logs, schema
from reporthubd.store.database import Store
from tests.deliverers import peers
from tests.deliverers.conftest import SCALE, DeliverySpec, Report, seed_report, settings_for

DS = domain.DeliveryStatus
ES = domain.ExecutionStatus


async def step(ledger: DeliveryLedger, report: Report) -> list[delivery_logs.DeliveryLog]:
    """Wait until the pending retry is due, let the ledger make it; return the rows."""
    rows = await delivery_logs.logs_for_execution(report.store, report.execution_id)
    pending = [r for r in rows if r.pending]
    assert len(pending) == 1, rows
    due = pending[0].next_retry_at
    assert due is not None
    await asyncio.sleep(max(0.0, (due - datetime.now(UTC)).total_seconds()) + 0.01)
    assert await ledger.process_due() == 1
    return await delivery_logs.logs_for_execution(report.store, report.execution_id)


async def test_receiver_down_twice_then_back_gets_exactly_one_copy_after_backoff(
    sqlite_store: Store, small_file: ProducedFile
) -> None:
    receiver = peers.WebhookReceiver()  # not started: connection refused
    spec = DeliverySpec(
        method="webhook", config={"url": receiver.url}, max_retry=3, retry_interval_minutes=1
    )
    report = await seed_report(sqlite_store, settings_for(sqlite_store), small_file, [spec])
    ledger = report.ledger

    first = await ledger.run(await report.job())
    assert (first.delivered, first.failed, first.pending) == (0, 0, 1)
    assert (await report.execution()).status is ES.RUNNING  # the engine leaves it running

    await step(ledger, report)  # attempt 2: still down
    await receiver.start()
    try:
        rows = await step(ledger, report)  # attempt 3: back
    finally:
        await receiver.stop()

    assert [(r.attempt, r.status) for r in rows] == [
        (1, DS.RETRYING),
        (2, DS.RETRYING),
        (3, DS.SUCCESS),
    ]
    assert len(receiver.hits) == 1
    assert "connection failed" in (rows[0].error_message or "")
    assert all(r.next_retry_at is None for r in rows)  # history, nothing pending
    # The backoff gaps: the planned wait doubled (jitter ±10%), and no attempt started early.
    interval = timedelta(minutes=1) * SCALE
    planned = [datetime.fromisoformat(r.details["retry_at"]) for r in rows[:2]]
    waits = [planned[i] - rows[i].finished_at for i in range(2)]  # type: ignore[operator]
    assert interval * 0.9 <= waits[0] <= interval * 1.1
    assert interval * 1.8 <= waits[1] <= interval * 2.2
    assert rows[1].started_at >= planned[0]  # type: ignore[operator]
    assert rows[2].started_at >= planned[1]  # type: ignore[operator]
    execution = await report.execution()
    assert execution.status is ES.COMPLETED and execution.finished_at is not None


async def test_one_of_three_recipients_refused_retry_goes_to_that_one_only(
    sqlite_store: Store, small_file: ProducedFile, smtp_server: peers.SMTPServer
) -> None:
    smtp_server.mailbox.busy["carol@example.com"] = 1  # 450 once
    spec = DeliverySpec(
        method="email",
        config={"smtp": smtp_server.smtp_config()},
        recipients=[
            ("to", "alice@example.com"),
            ("to", "bob@example.com"),
            ("cc", "carol@example.com"),
        ],
    )
    report = await seed_report(sqlite_store, settings_for(sqlite_store), small_file, [spec])
    ledger = report.ledger
    first = await ledger.run(await report.job())
    assert first.pending == 1

    rows = await step(ledger, report)
    by_attempt = [(r.attempt, r.status, sorted(x.email for x in r.recipients)) for r in rows]
    assert sorted(by_attempt) == [
        (1, DS.RETRYING, ["carol@example.com"]),
        (1, DS.SUCCESS, ["alice@example.com", "bob@example.com"]),
        (2, DS.SUCCESS, ["carol@example.com"]),
    ]
    refused = next(r for r in rows if r.status is DS.RETRYING)
    assert "carol@example.com: SMTP 450" in (refused.error_message or "")
    first_mail, second_mail = smtp_server.mailbox.messages
    assert sorted(first_mail.rcpt_tos) == ["alice@example.com", "bob@example.com"]
    assert second_mail.rcpt_tos == ["carol@example.com"]
    assert second_mail.attachments()["daily-sales.csv"] == small_file.path.read_bytes()
    assert (await report.execution()).status is ES.COMPLETED


async def test_permanent_failures_stop_at_once_with_a_clear_reason(
    sqlite_store: Store,
    small_file: ProducedFile,
    smtp_server: peers.SMTPServer,
    sshd: peers.SSHServer,
    receiver: peers.WebhookReceiver,
    tmp_path: Path,
) -> None:
    receiver.answers.append((403, {}))
    sftp = {
        "host": "127.0.0.1",
        "port": sshd.port,
        "username": sshd.user,
        "private_key_file": str(sshd.client_key_path),
        "remote_dir": str(tmp_path / "never"),
    }
    specs = [
        DeliverySpec(
            method="email",
            config={"smtp": smtp_server.smtp_config(password="wrong-password")},
            recipients=[("to", "ann@example.com")],
        ),
        DeliverySpec(method="sftp", config=sftp | {"host_key": sshd.other_host_key}),
        DeliverySpec(
            method="sftp",
            config=sftp
            | {"host_key": sshd.host_key, "private_key_file": str(sshd.stranger_key_path)},
        ),
        DeliverySpec(method="webhook", config={"url": receiver.url}),
        DeliverySpec(
            method="sftp",
            config={k: v for k, v in sftp.items() if k != "private_key_file"}
            | {"host_key": sshd.host_key, "password": "wrong-sftp-password"},
        ),
    ]
    report = await seed_report(sqlite_store, settings_for(sqlite_store), small_file, specs)
    outcome = await report.ledger.run(await report.job())
    assert (outcome.delivered, outcome.failed, outcome.pending) == (0, 5, 0)

    rows = await delivery_logs.logs_for_execution(sqlite_store, report.execution_id)
    assert [(r.attempt, r.status, r.next_retry_at) for r in rows] == [(1, DS.FAILED, None)] * 5
    errors = [r.error_message or "" for r in rows]
    assert "authentication refused: 535" in errors[0]
    assert "host key not trusted" in errors[1]
    assert "authentication refused" in errors[2]
    assert "HTTP 403" in errors[3]
    assert "authentication refused" in errors[4]
    assert "wrong-sftp-password" not in " ".join(errors)
    # One login (aiosmtplib tries each mechanism the server offers once), no further attempt.
    assert 1 <= smtp_server.auth_attempts <= 2
    assert smtp_server.mailbox.messages == []
    assert len(receiver.hits) == 1
    assert not (tmp_path / "never").exists()
    assert "wrong-password" not in " ".join(errors)
    # Nothing is due later either.
    assert await report.ledger.process_due() == 0
    assert await delivery_logs.next_retry_time(sqlite_store) is None
    # The engine decides the status when nothing is pending; settle() says the same.
    assert await report.ledger.settle(report.execution_id) is ES.FAILED


async def test_retry_after_is_honoured_and_retries_end_after_max_retry(
    sqlite_store: Store, small_file: ProducedFile, receiver: peers.WebhookReceiver
) -> None:
    receiver.answers += [(429, {"Retry-After": "3"}), (503, {}), (500, {})]
    spec = DeliverySpec(
        method="webhook", config={"url": receiver.url}, max_retry=2, retry_interval_minutes=1
    )
    report = await seed_report(sqlite_store, settings_for(sqlite_store), small_file, [spec])
    ledger = report.ledger
    await ledger.run(await report.job())
    rows = await delivery_logs.logs_for_execution(sqlite_store, report.execution_id)
    assert rows[0].status is DS.RETRYING and "HTTP 429" in (rows[0].error_message or "")
    wait = rows[0].next_retry_at - rows[0].finished_at  # type: ignore[operator]
    assert wait >= timedelta(seconds=3)  # the server's 3 s over our 1 s backoff

    await step(ledger, report)
    rows = await step(ledger, report)
    assert [(r.attempt, r.status) for r in rows] == [
        (1, DS.RETRYING),
        (2, DS.RETRYING),
        (3, DS.FAILED),
    ]
    assert "gave up after 3 attempts" in (rows[2].error_message or "")
    assert len(receiver.hits) == 3
    execution = await report.execution()
    assert execution.status is ES.FAILED
    assert "HTTP 500" in (execution.error_message or "")


async def test_one_delivery_finally_failing_settles_partial(
    sqlite_store: Store, small_file: ProducedFile, receiver: peers.WebhookReceiver, tmp_path: Path
) -> None:
    receiver.answers.append((502, {}))
    share = tmp_path / "share"
    share.mkdir()
    specs = [
        DeliverySpec(method="webhook", config={"url": receiver.url}, max_retry=1),
        DeliverySpec(method="file_share", config={"path": str(share)}),
    ]
    report = await seed_report(sqlite_store, settings_for(sqlite_store), small_file, specs)
    first = await report.ledger.run(await report.job())
    assert (first.delivered, first.pending) == (1, 1)
    receiver.answers.append((502, {}))
    await step(report.ledger, report)
    execution = await report.execution()
    assert execution.status is ES.PARTIAL
    assert f"delivery {report.delivery_ids[0]}" in (execution.error_message or "")


async def test_two_nodes_claim_a_due_retry_once(
    sqlite_store: Store, small_file: ProducedFile, receiver: peers.WebhookReceiver
) -> None:
    receiver.answers.append((503, {}))
    spec = DeliverySpec(method="webhook", config={"url": receiver.url}, retry_interval_minutes=0)
    report = await seed_report(sqlite_store, settings_for(sqlite_store), small_file, [spec])
    await report.ledger.run(await report.job())
    node_a = DeliveryLedger(report.settings, sqlite_store, node_id="a")
    node_b = DeliveryLedger(report.settings, sqlite_store, node_id="b")
    made = await asyncio.gather(node_a.process_due(), node_b.process_due())
    assert sorted(made) == [0, 1]
    assert len(receiver.hits) == 2  # the 503 and exactly one retry
    assert len(receiver.accepted) == 1


async def test_stopping_the_worker_mid_retry_hands_the_retry_back(
    sqlite_store: Store, small_file: ProducedFile
) -> None:
    stalled = peers.StalledListener()  # the retry hangs until the worker is stopped
    try:
        spec = DeliverySpec(
            method="webhook",
            config={"url": f"http://127.0.0.1:{stalled.port}/hook", "timeout_seconds": 60},
            retry_interval_minutes=0,
        )
        report = await seed_report(sqlite_store, settings_for(sqlite_store), small_file, [spec])
        ledger = report.ledger
        report_job = await report.job()
        # A failed first attempt whose retry is due now (written directly: it would hang too).
        await delivery_logs.insert_logs(
            sqlite_store,
            [
                delivery_logs.NewLog(
                    execution_id=report.execution_id,
                    delivery_id=report_job.deliveries[0].id,
                    attempt=1,
                    status=DS.RETRYING,
                    error_message="HTTP 503",
                    next_retry_at=datetime.now(UTC),
                )
            ],
        )
        worker = asyncio.create_task(ledger.run_retries(), name="delivery-retries")

        async def claimed() -> bool:
            (row,) = await delivery_logs.logs_for_execution(sqlite_store, report.execution_id)
            return row.next_retry_at is not None and row.next_retry_at > datetime.now(UTC)

        await peers.wait_until(claimed, timeout=30)
        worker.cancel()
        with pytest.raises(asyncio.CancelledError):
            await worker
    finally:
        stalled.close()
    (row,) = await delivery_logs.logs_for_execution(sqlite_store, report.execution_id)
    assert row.pending and row.next_retry_at <= datetime.now(UTC)  # type: ignore[operator]
    assert (await report.execution()).status is ES.RUNNING


async def test_a_retried_webhook_still_carries_the_s3_link(
    sqlite_store: Store,
    small_file: ProducedFile,
    receiver: peers.WebhookReceiver,
    s3_server: peers.S3Server,
    bucket: str,
) -> None:
    receiver.answers.append((503, {}))
    specs = [
        DeliverySpec(method="webhook", config={"url": receiver.url}),
        DeliverySpec(method="s3", config=s3_server.delivery_config(bucket, presign_seconds=60)),
    ]
    report = await seed_report(sqlite_store, settings_for(sqlite_store), small_file, specs)
    first = await report.ledger.run(await report.job())
    assert (first.delivered, first.pending) == (1, 1)
    await step(report.ledger, report)
    first_hit, retried = receiver.hits
    assert first_hit.json["download_url"] == retried.json["download_url"]
    assert retried.json["attempt"] == 2
    assert (await report.execution()).status is ES.COMPLETED


async def test_a_retry_reads_only_its_own_run_and_is_abandoned_once_its_config_is_inactive(
    sqlite_store: Store, small_file: ProducedFile
) -> None:
    receiver = peers.WebhookReceiver()  # not started: connection refused
    spec = DeliverySpec(method="webhook", config={"url": receiver.url}, retry_interval_minutes=1)
    report = await seed_report(sqlite_store, settings_for(sqlite_store), small_file, [spec])
    ledger = report.ledger
    assert (await ledger.run(await report.job())).pending == 1
    async with sqlite_store.engine.begin() as conn:
        await conn.execute(
            sa.update(schema.configs)
            .where(schema.configs.c.id == report.config_id)
            .values(is_active=False)
        )
    statements: list[str] = []

    def seen(*args: Any) -> None:
        statements.append(args[2])

    sa.event.listen(sqlite_store.engine.sync_engine, "before_cursor_execute", seen)
    try:
        rows = await step(ledger, report)
    finally:
        sa.event.remove(sqlite_store.engine.sync_engine, "before_cursor_execute", seen)

    # The run's config is read, not every definition of the store.
    assert not [s for s in statements if "report_schedules" in s]
    assert [(r.attempt, r.status) for r in rows] == [(1, DS.FAILED)]
    assert f"retry abandoned: report config {report.config_id} is inactive" in (
        rows[0].error_message or ""
    )
    execution = await report.execution()
    assert execution.status is ES.FAILED
