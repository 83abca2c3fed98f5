"""Oversize attachments, paths that try to leave the file share, redelivery, templates."""

from __future__ import annotations

import asyncio
import io
import os
import subprocess
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
import pytest

from reporthubd import domain
from reporthubd.deliverers import templating
from reporthubd.deliverers.base import DeliveryError, ProducedFile
from reporthubd.deliverers.common import open_for_reading
from reporthubd.store import delivery_logs
from reporthubd.store.database import Store
from tests.deliverers import peers
from tests.deliverers.conftest import MB, DeliverySpec, make_file, seed_report, settings_for

DS = domain.DeliveryStatus
ES = domain.ExecutionStatus


async def test_30mb_csv_over_a_20mb_limit_arrives_zipped_and_identical(
    sqlite_store: Store, smtp_server: peers.SMTPServer, tmp_path: Path
) -> None:
    csv_file = make_file(tmp_path / "ledger-30mb.csv", 30 * MB, compressible=True)
    spec = DeliverySpec(
        method="email",
        config={"smtp": smtp_server.smtp_config(), "max_attachment_mb": 20},
        recipients=[("to", "ann@example.com")],
    )
    report = await seed_report(sqlite_store, settings_for(sqlite_store), csv_file, [spec])
    assert (await report.ledger.run(await report.job())).delivered == 1

    (mail,) = smtp_server.mailbox.messages
    attachments = mail.attachments()
    assert list(attachments) == ["ledger-30mb.csv.zip"]
    assert len(attachments["ledger-30mb.csv.zip"]) < 20 * MB
    with zipfile.ZipFile(io.BytesIO(attachments["ledger-30mb.csv.zip"])) as archive:
        assert archive.namelist() == ["ledger-30mb.csv"]
        assert peers.sha256(archive.read("ledger-30mb.csv")) == csv_file.sha256
    (row,) = await delivery_logs.logs_for_execution(sqlite_store, report.execution_id)
    assert row.details["sent_as"] == "zip"


async def test_a_file_too_large_even_zipped_fails_with_the_reason_and_sends_nothing(
    sqlite_store: Store, smtp_server: peers.SMTPServer, tmp_path: Path
) -> None:
    workspace = tmp_path / "workspace"
    workspace.mkdir()
    noise = make_file(workspace / "noise-30mb.csv", 30 * MB)
    spec = DeliverySpec(
        method="email",
        config={"smtp": smtp_server.smtp_config(), "max_attachment_mb": 20},
        recipients=[("to", "ann@example.com")],
    )
    report = await seed_report(sqlite_store, settings_for(sqlite_store), noise, [spec])
    outcome = await report.ledger.run(await report.job())
    assert (outcome.delivered, outcome.failed, outcome.pending) == (0, 1, 0)
    (row,) = await delivery_logs.logs_for_execution(sqlite_store, report.execution_id)
    assert row.status is DS.FAILED
    assert "over the attachment limit of 20 MB" in (row.error_message or "")
    assert smtp_server.mailbox.messages == []
    assert sorted(p.name for p in workspace.iterdir()) == ["noise-30mb.csv"]  # no zip left


async def test_a_file_too_large_goes_as_the_s3_link_when_configured(
    sqlite_store: Store,
    smtp_server: peers.SMTPServer,
    s3_server: peers.S3Server,
    bucket: str,
    tmp_path: Path,
) -> None:
    noise = make_file(tmp_path / "noise-30mb.csv", 30 * MB)
    specs = [
        DeliverySpec(
            method="email",
            config={"smtp": smtp_server.smtp_config(), "max_attachment_mb": 20, "oversize": "link"},
            recipients=[("to", "ann@example.com")],
        ),
        DeliverySpec(method="s3", config=s3_server.delivery_config(bucket, presign_seconds=3600)),
    ]
    report = await seed_report(sqlite_store, settings_for(sqlite_store), noise, specs)
    assert (await report.ledger.run(await report.job())).delivered == 2
    (mail,) = smtp_server.mailbox.messages
    assert mail.attachments() == {}
    plain = mail.message().get_body(preferencelist=("plain",))
    assert plain is not None
    text = plain.get_content()
    link = next(w for w in text.split() if w.startswith(s3_server.endpoint))
    async with aiohttp.ClientSession() as http, http.get(link) as answer:
        assert peers.sha256(await answer.read()) == noise.sha256


@pytest.mark.parametrize(
    ("sub_path", "parameters"),
    [
        ("../outside", {}),
        ("reports/../../outside", {}),
        ("/tmp/absolute", {}),
        ("{parameters[region]}", {"region": "../../outside"}),
    ],
)
async def test_file_share_path_leaving_the_base_is_refused_before_anything_is_written(
    sqlite_store: Store,
    small_file: ProducedFile,
    tmp_path: Path,
    sub_path: str,
    parameters: dict[str, str],
) -> None:
    share = tmp_path / "share"
    base = share / "base"
    base.mkdir(parents=True)
    before = sorted(share.rglob("*"))
    spec = DeliverySpec(method="file_share", config={"path": str(base), "sub_path": sub_path})
    report = await seed_report(
        sqlite_store, settings_for(sqlite_store), small_file, [spec], parameters=parameters
    )
    outcome = await report.ledger.run(await report.job())
    assert (outcome.failed, outcome.pending) == (1, 0)
    (row,) = await delivery_logs.logs_for_execution(sqlite_store, report.execution_id)
    assert row.status is DS.FAILED
    assert "must stay under the base path" in (row.error_message or "")
    assert not Path("/tmp/absolute").exists()
    assert sorted(share.rglob("*")) == before


async def test_file_share_symlink_out_of_the_base_is_refused(
    sqlite_store: Store, small_file: ProducedFile, tmp_path: Path
) -> None:
    base = tmp_path / "base"
    outside = tmp_path / "outside"
    base.mkdir()
    outside.mkdir()
    os.symlink(outside, base / "escape")
    spec = DeliverySpec(method="file_share", config={"path": str(base), "sub_path": "escape/x"})
    report = await seed_report(sqlite_store, settings_for(sqlite_store), small_file, [spec])
    assert (await report.ledger.run(await report.job())).failed == 1
    (row,) = await delivery_logs.logs_for_execution(sqlite_store, report.execution_id)
    assert "outside the base path" in (row.error_message or "")
    assert list(outside.iterdir()) == []


async def test_redeliver_reruns_only_what_failed(
    sqlite_store: Store,
    small_file: ProducedFile,
    receiver: peers.WebhookReceiver,
    smtp_server: peers.SMTPServer,
    tmp_path: Path,
) -> None:
    receiver.answers.append((403, {}))
    share = tmp_path / "share"
    share.mkdir()
    smtp_server.mailbox.busy["carol@example.com"] = 1
    specs = [
        DeliverySpec(method="webhook", config={"url": receiver.url}),
        DeliverySpec(method="file_share", config={"path": str(share), "overwrite": "fail"}),
        DeliverySpec(
            method="email",
            config={"smtp": smtp_server.smtp_config()},
            recipients=[("to", "alice@example.com"), ("to", "carol@example.com")],
            max_retry=0,
        ),
    ]
    report = await seed_report(sqlite_store, settings_for(sqlite_store), small_file, specs)
    ledger = report.ledger
    outcome = await ledger.run(await report.job())
    # webhook refused, file share written, email: alice got it, carol's 450 with no retry left.
    assert (outcome.delivered, outcome.failed, outcome.pending) == (2, 2, 0)
    assert await ledger.settle(report.execution_id) is ES.PARTIAL

    result = await ledger.redeliver(report.execution_id)
    assert result.deliveries == [report.delivery_ids[0], report.delivery_ids[2]]
    assert result.status == ES.COMPLETED.value
    assert len(receiver.accepted) == 1
    second_mail = smtp_server.mailbox.messages[-1]
    assert second_mail.rcpt_tos == ["carol@example.com"]
    rows = await delivery_logs.logs_for_execution(sqlite_store, report.execution_id)
    share_rows = [r for r in rows if r.delivery_id == report.delivery_ids[1]]
    assert len(share_rows) == 1  # not written twice (overwrite "fail" would have refused)
    execution = await report.execution()
    assert execution.status is ES.COMPLETED and execution.error_message is None

    again = await ledger.redeliver(report.execution_id)
    assert again.deliveries == []


def test_templates_render_fields_and_refuse_what_could_escape() -> None:
    config = domain.ReportConfig(
        id=7,
        name="sales",
        description=None,
        datasource_id=1,
        query_text="SELECT 1",
        parameters={},
        output_format=domain.OutputFormat.CSV,
        format_options={},
        file_name_template=None,
        timeout_seconds=None,
        max_rows=None,
        empty_result_policy=domain.EmptyResultPolicy.DELIVER,
    )
    variables = templating.run_variables(
        execution_id="e1",
        config=config,
        parameters={"region": "north"},
        scheduled_for=datetime(2026, 3, 1, 9, 0, tzinfo=UTC),
        file_name="sales.csv.gz",
    )
    assert (
        templating.render("{report_name}/{scheduled_for:%Y/%m}/{file_stem}", variables, what="k")
        == "sales/2026/03/sales"
    )
    assert templating.render("{parameters[region]}-{region}", variables, what="k") == "north-north"
    assert variables["file_ext"] == "csv.gz"
    with pytest.raises(DeliveryError, match="unknown variable 'nope'"):
        templating.render("{nope}", variables, what="k")
    with pytest.raises(DeliveryError, match="attribute access"):
        templating.render("{report_name.__class__}", variables, what="k")
    with pytest.raises(DeliveryError, match=r"'\.\.'"):
        templating.safe_relative_path("a/../../b", what="sub_path")
    with pytest.raises(DeliveryError, match="not a file name"):
        templating.safe_file_name("a/b.csv", what="file_name")
    assert str(templating.safe_relative_path("./a//b/", what="sub_path")) == "a/b"


@pytest.fixture
def tiny_mount(tmp_path: Path) -> Iterator[Callable[[str], Path]]:
    """Mount small tmpfs file systems (skipped where mounting is not allowed)."""
    mounted: list[Path] = []

    def mount(options: str) -> Path:
        point = tmp_path / f"mnt{len(mounted)}"
        point.mkdir()
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(point)],
            capture_output=True,
            text=True,
        )
        if done.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
        mounted.append(point)
        return point

    yield mount
    for point in reversed(mounted):
        subprocess.run(["umount", str(point)], check=False)


async def test_file_share_full_disk_is_retried_and_read_only_fails_leaving_no_temp_file(
    sqlite_store: Store,
    tmp_path: Path,
    tiny_mount: Callable[[str], Path],
) -> None:
    two_mb = make_file(tmp_path / "two-mb.csv", 2 * MB)
    full = tiny_mount("size=1m")
    read_only = tiny_mount("size=1m,ro")
    specs = [
        DeliverySpec(method="file_share", config={"path": str(full)}),
        DeliverySpec(method="file_share", config={"path": str(read_only)}),
    ]
    report = await seed_report(sqlite_store, settings_for(sqlite_store), two_mb, specs)
    outcome = await report.ledger.run(await report.job())
    assert (outcome.pending, outcome.failed) == (1, 1)
    disk_full, ro = await delivery_logs.logs_for_execution(sqlite_store, report.execution_id)
    assert disk_full.status is DS.RETRYING
    assert "No space left on device" in (disk_full.error_message or "")
    assert ro.status is DS.FAILED and "read-only file system" in (ro.error_message or "")
    assert list(full.iterdir()) == []  # the partial temporary file is gone


async def test_a_skipped_run_records_skipped_rows_and_sends_nothing(
    sqlite_store: Store, small_file: ProducedFile, receiver: peers.WebhookReceiver
) -> None:
    specs = [DeliverySpec(method="webhook", config={"url": receiver.url})] * 2
    report = await seed_report(sqlite_store, settings_for(sqlite_store), small_file, specs)
    job = replace(await report.job(), file=None, skip_reason="the result is empty")
    outcome = await report.ledger.run(job)
    assert (outcome.skipped, outcome.delivered, outcome.pending) == (2, 0, 0)
    rows = await delivery_logs.logs_for_execution(sqlite_store, report.execution_id)
    assert [(r.status, r.error_message) for r in rows] == [(DS.SKIPPED, "the result is empty")] * 2
    assert receiver.hits == []


def test_a_recovery_run_names_its_deliveries_after_the_run_it_stands_in_for() -> None:
    """The webhook Idempotency-Key names the logical run: a crash's recovery run sends what the
    lost run may already have sent under the same key, so the receiver drops it."""
    from reporthubd import domain
    from reporthubd.deliverers.base import run_key

    def execution(
        execution_id: str, trigger: domain.TriggerType, recovers: str | None = None
    ) -> domain.Execution:
        return domain.Execution(
            id=execution_id,
            config_id=1,
            schedule_id=None,
            trigger_type=trigger,
            scheduled_for=None,
            status=domain.ExecutionStatus.RUNNING,
            recovers_id=recovers,
        )

    T = domain.TriggerType
    assert run_key(execution("lost", T.MANUAL)) == "lost"
    assert run_key(execution("again", T.RECOVERY, recovers="lost")) == "lost"
    assert run_key(execution("other", T.SCHEDULE)) == "other"


async def test_a_read_cancelled_while_the_file_opens_closes_the_file(tmp_path: Path) -> None:
    """aiohttp cancels a request body's writer once the answer arrives; a file still opening in
    the worker thread then must be closed, not left to the garbage collector (session 6's CI
    failed on that "unclosed file" warning)."""
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    # Opening a FIFO for reading blocks until a writer comes, so the cancel lands mid-open.
    opening = asyncio.create_task(open_for_reading(fifo), name="test open")
    await asyncio.sleep(0.05)
    opening.cancel()
    with pytest.raises(asyncio.CancelledError):
        await opening
    writer = await asyncio.to_thread(os.open, fifo, os.O_WRONLY)
    try:
        for _ in range(500):  # the reader is closed on the loop right after it opens
            try:
                os.write(writer, b"x")
            except BrokenPipeError:
                break
            await asyncio.sleep(0.01)
        else:
            pytest.fail("the file opened after the cancel was never closed")
    finally:
        os.close(writer)
