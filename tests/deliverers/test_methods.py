"""Each method delivers a 25 MB file byte-identical to a real peer (sha256 checked there), with
its options honoured; every attempt is a ledger row."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import aioboto3
import aiohttp

from reporthubd import domain
from reporthubd.deliverers.base import ProducedFile
from reporthubd.store import delivery_logs
from reporthubd.store.database import Store
from tests.deliverers import peers
from tests.deliverers.conftest import DeliverySpec, seed_report, settings_for

DS = domain.DeliveryStatus


async def _only_row(report_store: Store, execution_id: str) -> delivery_logs.DeliveryLog:
    rows = await delivery_logs.logs_for_execution(report_store, execution_id)
    assert len(rows) == 1, rows
    return rows[0]


async def test_sftp_delivers_25mb_byte_identical_under_its_final_name(
    sqlite_store: Store, big_file: ProducedFile, sshd: peers.SSHServer, tmp_path: Path
) -> None:
    remote = tmp_path / "inbox"
    spec = DeliverySpec(
        method="sftp",
        config={
            "host": "127.0.0.1",
            "port": sshd.port,
            "username": sshd.user,
            "private_key_file": str(sshd.client_key_path),
            "host_key": sshd.host_key,
            "remote_dir": str(remote) + "/{report_name}/{scheduled_for:%Y}",
            "file_name": "{file_stem}-{parameters[region]}.{file_ext}",
        },
    )
    settings = settings_for(sqlite_store)
    report = await seed_report(sqlite_store, settings, big_file, [spec])
    job = await report.job()
    result = await report.ledger.run(job)
    assert (result.delivered, result.failed, result.pending) == (1, 0, 0)

    row = await _only_row(sqlite_store, report.execution_id)
    assert row.status is DS.SUCCESS and row.attempt == 1
    year = (await report.execution()).started_at.year  # type: ignore[union-attr]
    landed = remote / job.config.name / str(year) / "sales-25mb-north.csv"
    assert peers.sha256(landed.read_bytes()) == big_file.sha256
    assert row.target is not None and row.target.endswith("sales-25mb-north.csv")
    assert row.details["size"] == big_file.size
    # No temporary file is left beside it.
    assert [p.name for p in landed.parent.iterdir()] == [landed.name]


async def test_s3_multipart_25mb_with_sse_storage_class_metadata_and_presigned_url(
    sqlite_store: Store, big_file: ProducedFile, s3_server: peers.S3Server, bucket: str
) -> None:
    spec = DeliverySpec(
        method="s3",
        config=s3_server.delivery_config(
            bucket,
            key="reports/{report_name}/{date}/{file_name}",
            sse="AES256",
            storage_class="STANDARD_IA",
            presign_seconds=600,
            multipart_threshold_mb=8,
        ),
    )
    report = await seed_report(sqlite_store, settings_for(sqlite_store), big_file, [spec])
    result = await report.ledger.run(await report.job())
    assert result.delivered == 1, await delivery_logs.logs_for_execution(
        sqlite_store, report.execution_id
    )
    row = await _only_row(sqlite_store, report.execution_id)
    key = row.details["key"]
    assert row.details["multipart"] is True
    assert row.target == f"s3://{bucket}/{key}"
    async with aioboto3.Session().client("s3", **s3_server.client_args()) as s3:
        head = await s3.head_object(Bucket=bucket, Key=key)
        obj = await s3.get_object(Bucket=bucket, Key=key)
        data = await obj["Body"].read()
    assert peers.sha256(data) == big_file.sha256
    assert head["ServerSideEncryption"] == "AES256"
    assert head["StorageClass"] == "STANDARD_IA"
    assert head["ContentType"] == "text/csv"
    assert head["Metadata"] == {
        "execution-id": report.execution_id,
        "config-id": str(report.config_id),
        "sha256": big_file.sha256,
    }
    # The presigned URL recorded with the attempt downloads the same bytes.
    async with aiohttp.ClientSession() as http, http.get(row.details["presigned_url"]) as answer:
        assert answer.status == 200
        assert peers.sha256(await answer.read()) == big_file.sha256


async def test_webhook_multipart_25mb_signed_with_idempotency_key(
    sqlite_store: Store, big_file: ProducedFile, receiver: peers.WebhookReceiver
) -> None:
    spec = DeliverySpec(
        method="webhook",
        config={
            "url": receiver.url,
            "mode": "multipart",
            "secret": {"env": "RH_TEST_WEBHOOK_SECRET"},
            "headers": {"X-Tenant": "acme"},
        },
    )
    os.environ["RH_TEST_WEBHOOK_SECRET"] = "whsec-test-123"
    try:
        report = await seed_report(sqlite_store, settings_for(sqlite_store), big_file, [spec])
        result = await report.ledger.run(await report.job())
    finally:
        del os.environ["RH_TEST_WEBHOOK_SECRET"]
    assert result.delivered == 1
    (hit,) = receiver.hits
    metadata, data = hit.multipart_file()
    assert peers.sha256(data) == big_file.sha256
    assert metadata["file"]["sha256"] == big_file.sha256
    assert metadata["execution_id"] == report.execution_id
    assert hit.signature_valid("whsec-test-123")
    assert not hit.signature_valid("another-secret")
    assert hit.headers["Idempotency-Key"] == f"{report.execution_id}:{report.delivery_ids[0]}"
    assert hit.headers["X-Tenant"] == "acme"


async def test_webhook_json_mode_sends_metadata_with_the_s3_link(
    sqlite_store: Store,
    small_file: ProducedFile,
    receiver: peers.WebhookReceiver,
    s3_server: peers.S3Server,
    bucket: str,
) -> None:
    specs = [
        DeliverySpec(method="webhook", config={"url": receiver.url}),
        DeliverySpec(method="s3", config=s3_server.delivery_config(bucket, presign_seconds=60)),
    ]
    report = await seed_report(sqlite_store, settings_for(sqlite_store), small_file, specs)
    result = await report.ledger.run(await report.job())
    assert result.delivered == 2
    (hit,) = receiver.hits
    body = hit.json
    assert body["event"] == "report.delivered"
    assert body["file"]["sha256"] == small_file.sha256
    assert body["parameters"] == {"region": "north"}
    assert body["download_url"].startswith(s3_server.endpoint)
    assert "X-Reporthub-Signature" not in hit.headers


async def test_file_share_atomic_write_with_mode_and_overwrite_policies(
    sqlite_store: Store, big_file: ProducedFile, small_file: ProducedFile, tmp_path: Path
) -> None:
    base = tmp_path / "share"
    base.mkdir()
    settings = settings_for(sqlite_store)
    specs = [
        DeliverySpec(
            method="file_share",
            config={"path": str(base), "sub_path": "{report_name}/{date}", "file_mode": "0640"},
        )
    ]
    report = await seed_report(sqlite_store, settings, big_file, specs)
    assert (await report.ledger.run(await report.job())).delivered == 1
    row = await _only_row(sqlite_store, report.execution_id)
    landed = Path(row.details["path"])
    assert landed.is_relative_to(base)
    assert peers.sha256(landed.read_bytes()) == big_file.sha256
    assert stat.S_IMODE(landed.stat().st_mode) == 0o640
    assert [p.name for p in landed.parent.iterdir()] == [landed.name]

    # unique keeps both; fail refuses and leaves the existing file as it was.
    target_dir = base / "fixed"
    target_dir.mkdir()
    (target_dir / small_file.name).write_bytes(b"older")
    unique = DeliverySpec(
        method="file_share", config={"path": str(base), "sub_path": "fixed", "overwrite": "unique"}
    )
    fail = DeliverySpec(
        method="file_share", config={"path": str(base), "sub_path": "fixed", "overwrite": "fail"}
    )
    second = await seed_report(sqlite_store, settings, small_file, [unique, fail])
    outcome = await second.ledger.run(await second.job())
    assert (outcome.delivered, outcome.failed) == (1, 1)
    assert (target_dir / small_file.name).read_bytes() == b"older"
    assert (target_dir / "daily-sales-1.csv").read_bytes() == small_file.path.read_bytes()
    rows = await delivery_logs.logs_for_execution(sqlite_store, second.execution_id)
    failed = [r for r in rows if r.status is DS.FAILED]
    assert len(failed) == 1 and "exists" in (failed[0].error_message or "")
    assert failed[0].next_retry_at is None


async def test_email_25mb_attachment_byte_identical_over_starttls_with_auth(
    sqlite_store: Store, big_file: ProducedFile, smtp_server: peers.SMTPServer
) -> None:
    spec = DeliverySpec(
        method="email",
        config={
            "smtp": smtp_server.smtp_config(),
            "max_attachment_mb": 30,
            "subject": "Sales {parameters[region]} {date}",
            "reply_to": "finance@example.com",
        },
        recipients=[
            ("to", "ann@example.com"),
            ("cc", "bob@example.com"),
            ("bcc", "eve@example.com"),
        ],
    )
    report = await seed_report(sqlite_store, settings_for(sqlite_store), big_file, [spec])
    result = await report.ledger.run(await report.job())
    assert result.delivered == 1, await delivery_logs.logs_for_execution(
        sqlite_store, report.execution_id
    )
    (mail,) = smtp_server.mailbox.messages
    assert sorted(mail.rcpt_tos) == ["ann@example.com", "bob@example.com", "eve@example.com"]
    attachments = mail.attachments()
    assert list(attachments) == ["sales-25mb.csv"]
    assert peers.sha256(attachments["sales-25mb.csv"]) == big_file.sha256
    message = mail.message()
    assert message["Subject"].startswith("Sales north ")
    assert message["Reply-To"] == "finance@example.com"
    assert "eve@example.com" not in str(message["To"]) + str(message["Cc"])  # bcc stays hidden
    plain = message.get_body(preferencelist=("plain",))
    html = message.get_body(preferencelist=("html",))
    assert plain is not None and html is not None
    assert report.execution_id in plain.get_content()
    row = await _only_row(sqlite_store, report.execution_id)
    assert row.status is DS.SUCCESS
    assert {r.email for r in row.recipients} == {
        "ann@example.com",
        "bob@example.com",
        "eve@example.com",
    }
