"""The remaining options of each method against real peers: SMTPS and STARTTLS policy, body
preview, SFTP known_hosts files and encrypted keys, timeouts, S3 KMS, webhook TLS checks."""

from __future__ import annotations

from pathlib import Path

import aioboto3
import pytest
import structlog.testing

from reporthubd import domain
from reporthubd.config import Settings, SmtpSettings
from reporthubd.deliverers import email
from reporthubd.deliverers.base import DeliveryError, ProducedFile
from reporthubd.store import delivery_logs
from reporthubd.store.database import Store
from tests import servers
from tests.deliverers import peers
from tests.deliverers.conftest import DeliverySpec, seed_report, settings_for

DS = domain.DeliveryStatus


async def _run_one(
    store: Store, file: ProducedFile, spec: DeliverySpec
) -> delivery_logs.DeliveryLog:
    report = await seed_report(store, settings_for(store), file, [spec])
    await report.ledger.run(await report.job())
    (row,) = await delivery_logs.logs_for_execution(store, report.execution_id)
    return row


async def test_email_over_implicit_tls_with_a_csv_preview_in_both_bodies(
    sqlite_store: Store, small_file: ProducedFile, tmp_path: Path
) -> None:
    server = peers.SMTPServer(tmp_path / "smtps", mode="implicit")
    server.start()
    try:
        spec = DeliverySpec(
            method="email",
            config={
                "smtp": server.smtp_config(tls="implicit"),
                "preview_rows": 2,
                "body": "Good morning, here is {report_name}.",
                "from_address": "reports@example.com",
            },
            recipients=[("to", "ann@example.com")],
        )
        row = await _run_one(sqlite_store, small_file, spec)
    finally:
        server.stop()
    assert row.status is DS.SUCCESS, row.error_message
    (mail,) = server.mailbox.messages
    message = mail.message()
    assert message["From"] == "reports@example.com"
    plain = message.get_body(preferencelist=("plain",))
    html = message.get_body(preferencelist=("html",))
    assert plain is not None and html is not None
    text = plain.get_content()
    # The title first, then the status line and the intro (the body setting).
    assert text.startswith("daily-sales-")
    assert "Good morning, here is daily-sales-" in text
    assert "1 | north | 10.50" in text and "2 | south | 7.25" in text
    assert "3 | east" not in text  # only the first 2 rows
    assert ">north</td>" in html.get_content()
    assert mail.attachments() == {"daily-sales.csv": small_file.path.read_bytes()}


async def test_starttls_required_but_not_offered_fails_for_good(
    sqlite_store: Store, small_file: ProducedFile, tmp_path: Path
) -> None:
    server = peers.SMTPServer(tmp_path / "plain", mode="plain")
    server.start()
    try:
        required = DeliverySpec(
            method="email",
            config={"smtp": {"host": "127.0.0.1", "port": server.port, "tls": "starttls"}},
            recipients=[("to", "ann@example.com")],
        )
        row = await _run_one(sqlite_store, small_file, required)
        assert row.status is DS.FAILED and row.next_retry_at is None
        assert "STARTTLS" in (row.error_message or "")
        # On loopback, `auto` uses STARTTLS when offered and plain otherwise.
        auto = DeliverySpec(
            method="email",
            config={"smtp": {"host": "127.0.0.1", "port": server.port}},
            recipients=[("to", "ann@example.com")],
        )
        assert (await _run_one(sqlite_store, small_file, auto)).status is DS.SUCCESS
    finally:
        server.stop()
    assert len(server.mailbox.messages) == 1


async def test_an_smtp_certificate_that_does_not_verify_fails_for_good(
    sqlite_store: Store, small_file: ProducedFile, smtp_server: peers.SMTPServer
) -> None:
    config = smtp_server.smtp_config()
    del config["ca_file"]  # the self-signed certificate is not trusted
    spec = DeliverySpec(
        method="email", config={"smtp": config}, recipients=[("to", "ann@example.com")]
    )
    row = await _run_one(sqlite_store, small_file, spec)
    assert row.status is DS.FAILED and "TLS certificate not verified" in (row.error_message or "")
    assert smtp_server.mailbox.messages == []


def test_plain_smtp_is_refused_beyond_loopback_and_starttls_is_the_default_there() -> None:
    delivery = domain.Delivery(
        id=1,
        config_id=1,
        name="mail",
        method=domain.DeliveryMethod.EMAIL,
        delivery_config={"smtp": {"host": "smtp.example.com", "tls": "none"}},
        max_retry=3,
        retry_interval_minutes=5,
    )
    with pytest.raises(DeliveryError, match="only allowed for a loopback host"):
        email.server_settings(delivery, Settings())
    remote = domain.Delivery(**{**delivery.__dict__, "delivery_config": {}})
    server = email.server_settings(remote, Settings(smtp=SmtpSettings(host="smtp.example.com")))
    assert server.tls == "auto" and email.start_tls_mode(server) is True
    local = domain.Delivery(
        **{**delivery.__dict__, "delivery_config": {"smtp": {"host": "127.0.0.1"}}}
    )
    assert email.start_tls_mode(email.server_settings(local, Settings())) is None


async def test_sftp_known_hosts_file_encrypted_inline_key_and_a_logged_insecure_mode(
    sqlite_store: Store,
    small_file: ProducedFile,
    sshd: peers.SSHServer,
    tmp_path: Path,
) -> None:
    common = {"host": "127.0.0.1", "port": sshd.port, "username": sshd.user}
    with_file = DeliverySpec(
        method="sftp",
        config=common
        | {
            "known_hosts": str(sshd.known_hosts),
            "private_key": sshd.encrypted_key_path.read_text(),
            "passphrase": sshd.passphrase,
            "remote_dir": str(tmp_path / "a"),
        },
    )
    row = await _run_one(sqlite_store, small_file, with_file)
    assert row.status is DS.SUCCESS, row.error_message
    assert (tmp_path / "a" / "daily-sales.csv").read_bytes() == small_file.path.read_bytes()

    wrong_phrase = DeliverySpec(
        method="sftp",
        config=common
        | {
            "host_key": sshd.host_key,
            "private_key_file": str(sshd.encrypted_key_path),
            "passphrase": "not-the-passphrase",
        },
    )
    row = await _run_one(sqlite_store, small_file, wrong_phrase)
    assert row.status is DS.FAILED and "private key unusable" in (row.error_message or "")
    assert "not-the-passphrase" not in (row.error_message or "")

    insecure = DeliverySpec(
        method="sftp",
        config=common
        | {
            "private_key_file": str(sshd.client_key_path),
            "insecure_skip_host_key_check": True,
            "remote_dir": str(tmp_path / "b"),
        },
    )
    with structlog.testing.capture_logs() as events:
        assert (await _run_one(sqlite_store, small_file, insecure)).status is DS.SUCCESS
    assert any(
        e["event"] == "sftp host key check disabled by configuration"
        and e["log_level"] == "warning"
        for e in events
    ), events

    # Host key checking is on by default: with no known_hosts and no pin, ~/.ssh/known_hosts
    # (which does not list this server) decides, and the server is not trusted.
    default = DeliverySpec(
        method="sftp", config=common | {"private_key_file": str(sshd.client_key_path)}
    )
    row = await _run_one(sqlite_store, small_file, default)
    assert row.status is DS.FAILED and "host key not trusted" in (row.error_message or "")


async def test_stalled_servers_time_out_and_are_retried(
    sqlite_store: Store, small_file: ProducedFile
) -> None:
    stalled = peers.StalledListener()
    try:
        sftp = DeliverySpec(
            method="sftp",
            config={
                "host": "127.0.0.1",
                "port": stalled.port,
                "username": "nobody",
                "password": "x-password",
                "timeout_seconds": 0.5,
            },
        )
        hook = DeliverySpec(
            method="webhook",
            config={"url": f"http://127.0.0.1:{stalled.port}/hook", "timeout_seconds": 0.5},
        )
        mail = DeliverySpec(
            method="email",
            config={"smtp": {"host": "127.0.0.1", "port": stalled.port, "timeout_seconds": 0.5}},
            recipients=[("to", "ann@example.com")],
        )
        rows = [await _run_one(sqlite_store, small_file, spec) for spec in (sftp, hook, mail)]
    finally:
        stalled.close()
    assert [r.status for r in rows] == [DS.RETRYING] * 3
    assert all(r.next_retry_at is not None for r in rows)
    assert "timed out" in (rows[1].error_message or "")


async def test_servers_that_refuse_connections_are_retried(
    sqlite_store: Store, small_file: ProducedFile, s3_server: peers.S3Server
) -> None:
    closed = servers.free_port()  # nothing listens there
    specs = [
        DeliverySpec(
            method="s3",
            config=s3_server.delivery_config("any", endpoint_url=f"http://127.0.0.1:{closed}"),
        ),
        DeliverySpec(
            method="sftp",
            config={
                "host": "127.0.0.1",
                "port": closed,
                "username": "nobody",
                "password": "x-password",
            },
        ),
        DeliverySpec(
            method="email",
            config={"smtp": {"host": "127.0.0.1", "port": closed}},
            recipients=[("to", "ann@example.com")],
        ),
    ]
    rows = [await _run_one(sqlite_store, small_file, spec) for spec in specs]
    assert [r.status for r in rows] == [DS.RETRYING] * 3, [r.error_message for r in rows]


async def test_s3_kms_encryption_with_a_key_id(
    sqlite_store: Store, small_file: ProducedFile, s3_server: peers.S3Server, bucket: str
) -> None:
    spec = DeliverySpec(
        method="s3",
        config=s3_server.delivery_config(
            bucket, key="kms/{file_name}", sse="aws:kms", kms_key_id="alias/reports"
        ),
    )
    row = await _run_one(sqlite_store, small_file, spec)
    assert row.status is DS.SUCCESS, row.error_message
    async with aioboto3.Session().client("s3", **s3_server.client_args()) as s3:
        head = await s3.head_object(Bucket=bucket, Key="kms/daily-sales.csv")
    assert head["ServerSideEncryption"] == "aws:kms"
    assert "SSEKMSKeyId" in head


async def test_webhook_checks_tls_certificates_unless_told_not_to(
    sqlite_store: Store, small_file: ProducedFile, tmp_path: Path
) -> None:
    cert, key = peers.self_signed_cert(tmp_path)
    receiver = peers.WebhookReceiver(tls=(cert, key))
    await receiver.start()
    try:
        checked = DeliverySpec(method="webhook", config={"url": receiver.url, "method": "PUT"})
        row = await _run_one(sqlite_store, small_file, checked)
        assert row.status is DS.FAILED and "TLS verification failed" in (row.error_message or "")
        unchecked = DeliverySpec(
            method="webhook", config={"url": receiver.url, "method": "PUT", "verify_tls": False}
        )
        assert (await _run_one(sqlite_store, small_file, unchecked)).status is DS.SUCCESS
    finally:
        await receiver.stop()
    assert len(receiver.accepted) == 1
