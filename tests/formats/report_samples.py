"""Shared pieces of the issue-19 acceptance tests: the demo's PDF report over the demo dataset
(fixed calendar), files written the way the engine writes them (formats.capture around the
writer), and the email built for them by the real email deliverer's message builder."""

from __future__ import annotations

import asyncio
import datetime as dt
import sqlite3
import tomllib
from collections.abc import Mapping, Sequence
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from reporthubd import domain
from reporthubd.connectors.base import Column, ColumnKind
from reporthubd.deliverers import email
from reporthubd.deliverers.base import Attempt, DeliveryJob, ProducedFile
from reporthubd.deliverers.common import Options
from reporthubd.formats import capture
from reporthubd.formats.base import RenderContext, WrittenFile, writer_class
from reporthubd.formats.threaded import file_digest

DEMO_LAST_DAY = dt.date(2026, 11, 30)
GENERATED_AT = dt.datetime(2026, 12, 1, 7, 30, tzinfo=dt.UTC)
CATALOG = Path(__file__).resolve().parents[2] / "reporthubd" / "demo_catalog.toml"
MEDIA = {"pdf": "application/pdf", "excel": "application/vnd.openxmlformats-officedocument"}


def demo_report(name: str) -> dict[str, Any]:
    data = tomllib.loads(CATALOG.read_text(encoding="utf-8"))
    return next(r for r in data["reports"] if r["name"] == name)


def demo_database(folder: Path) -> Path:
    from reporthubd.demo import dataset

    path = folder / "sales.db"
    if not path.exists():
        dataset.generate(path, last_day=DEMO_LAST_DAY)
    return path


def query(
    database: Path, sql: str, parameters: Mapping[str, Any]
) -> tuple[list[Column], list[Any]]:
    """The rows and columns as the SQLite connector types them (by the first row's values)."""
    with sqlite3.connect(database) as connection:
        cursor = connection.execute(sql, dict(parameters))
        rows = cursor.fetchall()
        names = [d[0] for d in cursor.description]
    kinds = []
    for i in range(len(names)):
        value = next((r[i] for r in rows if r[i] is not None), None)
        kinds.append(
            ColumnKind.INTEGER
            if isinstance(value, int)
            else ColumnKind.FLOAT
            if isinstance(value, float)
            else ColumnKind.TEXT
        )
    columns = [
        Column(name=n, kind=k, source_type=k.value) for n, k in zip(names, kinds, strict=True)
    ]
    return columns, rows


def context(name: str, parameters: Mapping[str, Any] | None = None) -> RenderContext:
    return RenderContext(
        report_name=name,
        execution_id="0191e2a4-demo-0000-0000-000000000019",
        parameters=dict(parameters or {}),
        scheduled_for=GENERATED_AT,
        generated_at=GENERATED_AT,
    )


async def write_async(
    fmt: str,
    options: Mapping[str, Any],
    columns: Sequence[Column],
    rows: Sequence[Any],
    path: Path,
    ctx: RenderContext,
) -> WrittenFile:
    writer = capture.wrap(writer_class(fmt)(options, ctx), options)
    await writer.open(path, columns)
    for start in range(0, len(rows), 1000):
        await writer.write_batch(rows[start : start + 1000])
    return await writer.close()


def write(
    fmt: str,
    options: Mapping[str, Any],
    columns: Sequence[Column],
    rows: Sequence[Any],
    path: Path,
    ctx: RenderContext,
) -> WrittenFile:
    return asyncio.run(write_async(fmt, options, columns, rows, path, ctx))


def config(name: str, fmt: str, options: Mapping[str, Any]) -> domain.ReportConfig:
    return domain.ReportConfig(
        id=19,
        name=name,
        description=None,
        datasource_id=1,
        query_text="SELECT 1",
        parameters={},
        output_format=domain.OutputFormat(fmt),
        format_options=dict(options),
        file_name_template=None,
        timeout_seconds=None,
        max_rows=None,
        empty_result_policy=domain.EmptyResultPolicy.DELIVER,
    )


def produced(written: WrittenFile) -> ProducedFile:
    size, sha = file_digest(written.path)
    return ProducedFile(
        path=written.path,
        name=written.path.name,
        size=size,
        sha256=sha,
        media_type=written.media_type,
        row_count=written.rows,
    )


def message(
    report: domain.ReportConfig,
    file: ProducedFile,
    delivery_config: Mapping[str, Any],
    *,
    parameters: Mapping[str, Any] | None = None,
    window: tuple[dt.datetime, dt.datetime] | None = None,
) -> EmailMessage:
    """The message the email deliverer sends for this file (headers, bodies, chart, file)."""
    delivery = domain.Delivery(
        id=7,
        config_id=report.id,
        name="finance",
        method=domain.DeliveryMethod.EMAIL,
        delivery_config=dict(delivery_config),
        max_retry=0,
        retry_interval_minutes=1,
        recipients=(
            domain.Recipient(
                id=1,
                delivery_id=7,
                recipient_type=domain.RecipientType.TO,
                email="ann@example.com",
                name="Ann",
            ),
        ),
    )
    variables: dict[str, Any] = {
        "report_name": report.name,
        "execution_id": "0191e2a4-demo-0000-0000-000000000019",
        "scheduled_for": GENERATED_AT,
        "parameters": dict(parameters or {}),
        "row_count": file.row_count,
        "file_name": file.name,
    }
    if window:
        variables["window_start"], variables["window_end"] = window
    job = DeliveryJob(
        execution_id=variables["execution_id"],
        config=report,
        deliveries=(delivery,),
        file=file,
        variables=variables,
    )
    attempt = Attempt(job=job, delivery=delivery, number=1)
    options = Options(delivery.delivery_config, "delivery_config")
    server = email.Server(
        host="127.0.0.1",
        port=25,
        username=None,
        password=None,
        tls="none",
        timeout=5,
        from_address="reports@example.com",
        reply_to=None,
        ca_file=None,
        validate_certs=False,
    )
    attachment = email.prepare_attachment(file, 20 * email.MB)
    return email.build_message(
        server=server,
        recipients=delivery.recipients,
        subject=f"Report {report.name}",
        intro=str(delivery_config.get("body", "")),
        variables=variables,
        attempt=attempt,
        attachment=attachment,
        link=None,
        preview_rows=email_preview_rows(options),
        options=options,
        default_zone="UTC",
    )


def email_preview_rows(options: Options) -> int:
    from reporthubd.deliverers import email_body

    return email_body.preview_rows(options)
