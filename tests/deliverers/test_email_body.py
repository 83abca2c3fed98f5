"""The HTML email (issue 19, item 2): the default body for every output format (the first rows in
the column formats, the totals, the chart as a CID image) through a real SMTP server, the plain
text alternative, CSS inlined without fetching anything, a custom template in Jinja's sandbox
with the same variables, and errors that name the key."""

from __future__ import annotations

import threading
from decimal import Decimal
from html import unescape
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import pytest

from reporthubd import domain
from reporthubd.connectors.base import Column, ColumnKind
from reporthubd.deliverers.base import DeliveryError, ProducedFile
from reporthubd.store import delivery_logs
from reporthubd.store.database import Store
from tests.deliverers import peers
from tests.deliverers.conftest import DeliverySpec, seed_report, settings_for
from tests.formats import report_samples as samples

COLUMNS = [
    Column(name="region", kind=ColumnKind.TEXT, source_type="text"),
    Column(name="revenue", kind=ColumnKind.DECIMAL, source_type="numeric(12,2)", scale=2),
]
ROWS = [
    (r, Decimal(f"{1000 * (i + 1)}.5")) for i, r in enumerate(["North", "South", "East", "West"])
]
OPTIONS = {
    "locale": "de_DE",
    "columns": {
        "region": {"label": "Region"},
        "revenue": {
            "label": "Umsatz",
            "kind": "currency",
            "currency": "EUR",
            "total": "sum",
            "highlight": {"op": "gt", "value": 3000, "fill": "#E2F0D9"},
        },
    },
    "chart": {"type": "bar", "x": "region", "y": "revenue", "title": "Umsatz je Region"},
}


def _file(tmp_path: Path, fmt: str, options: dict[str, object] = OPTIONS) -> ProducedFile:
    ext = {"excel": "xlsx", "json": "json", "csv": "csv", "pdf": "pdf"}[fmt]
    written = samples.write(
        fmt, options, COLUMNS, ROWS, tmp_path / f"umsatz.{ext}", samples.context("umsatz")
    )
    return samples.produced(written)


@pytest.mark.parametrize("fmt", ["csv", "excel", "json", "pdf"])
def test_every_format_gets_the_table_totals_and_chart(tmp_path: Path, fmt: str) -> None:
    file = _file(tmp_path, fmt)
    message = samples.message(samples.config("umsatz", fmt, OPTIONS), file, {"preview_rows": 3})
    html = message.get_body(preferencelist=("html",))
    text = message.get_body(preferencelist=("plain",))
    assert html is not None and text is not None
    body = unescape(html.get_content())  # css-inline writes a no-break space as &nbsp;
    for expected in ("Umsatz", "1.000,50\xa0€", "3.000,50\xa0€", "10.002,00\xa0€", "North"):
        assert expected in body
    assert "4.000,50" not in body  # only the first 3 rows; the total covers all 4
    assert "The first 3 of 4 rows" in body
    assert "background-color: #E2F0D9" in body  # 3.000,50 > 3000: highlighted
    assert "<style" not in body and 'style="' in body  # CSS inlined
    (image,) = [p for p in message.walk() if p.get_content_maintype() == "image"]
    cid = image["Content-ID"].strip("<>")
    assert f'src="cid:{cid}"' in body
    assert image.get_payload(decode=True).startswith(b"\x89PNG")
    plain = text.get_content()
    assert "Region | Umsatz" in plain and "North | 1.000,50\xa0€" in plain
    # The file itself is attached unchanged.
    (attachment,) = [p for p in message.iter_attachments() if p.get_filename() == file.name]
    assert attachment.get_payload(decode=True) == file.path.read_bytes()


class _Counting(BaseHTTPRequestHandler):
    hits: ClassVar[list[str]] = []

    def do_GET(self) -> None:
        self.hits.append(self.path)
        self.send_response(200)
        self.send_header("Content-Type", "text/css")
        self.end_headers()
        self.wfile.write(b"td { color: red; }")

    def log_message(self, *args: object) -> None:
        return None


def test_a_custom_template_gets_the_same_variables_and_fetches_nothing(tmp_path: Path) -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Counting)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_port}/mail.css"
        template = (
            f'<html><head><link rel="stylesheet" href="{url}">'
            "<style>h2 { color: #123456; }</style></head><body>"
            "<h2>{{ title }} · {{ row_count_text }} Zeilen</h2>"
            "{% for row in rows %}<p>{{ row[0].text }}={{ row[1].text }}</p>{% endfor %}"
            '{% if chart %}<img src="cid:{{ chart.cid }}">{% endif %}'
            "<p>{{ parameters.region }} {{ '<b>' }}</p></body></html>"
        )
        file = _file(tmp_path, "pdf")
        message = samples.message(
            samples.config("umsatz", "pdf", OPTIONS),
            file,
            {"html_template": template, "text_template": "{{ title }}: {{ status }}"},
            parameters={"region": "EMEA"},
        )
    finally:
        server.shutdown()
        server.server_close()
    html = message.get_body(preferencelist=("html",))
    text = message.get_body(preferencelist=("plain",))
    assert html is not None and text is not None
    body = unescape(html.get_content())
    assert 'style="color: #123456' in body  # inlined from <style>
    assert "umsatz · 4 Zeilen" in body and "North=1.000,50\xa0€" in body
    assert "EMEA &lt;b&gt;" in html.get_content()  # autoescaped
    assert "cid:chart-" in body
    assert _Counting.hits == []  # the remote stylesheet was never fetched
    assert text.get_content().startswith("umsatz: Completed: 4 rows")


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ("{{ ''.__class__.__mro__[1].__subclasses__() }}", "html_template: the template failed"),
        ("{{ no_such_variable }}", "'no_such_variable' is undefined"),
        ("{% for x in rows %}", "html_template: the template failed"),
    ],
)
def test_a_custom_template_runs_in_the_sandbox_and_errors_name_the_key(
    tmp_path: Path, template: str, message: str
) -> None:
    file = _file(tmp_path, "csv")
    with pytest.raises(DeliveryError, match=message.replace("(", r"\(").replace("[", r"\[")):
        samples.message(samples.config("umsatz", "csv", OPTIONS), file, {"html_template": template})


@pytest.mark.parametrize(
    ("config", "key"),
    [
        ({"locale": "xx_YY"}, "delivery_config.locale: unknown locale"),
        ({"timezone": "Mars/Olympus"}, "delivery_config.timezone: unknown time zone"),
        ({"preview_rows": 500}, "delivery_config.preview_rows"),
    ],
)
def test_bad_email_settings_name_the_key(
    tmp_path: Path, config: dict[str, object], key: str
) -> None:
    file = _file(tmp_path, "csv")
    with pytest.raises(DeliveryError, match=key):
        samples.message(samples.config("umsatz", "csv", OPTIONS), file, config)


async def test_the_default_email_through_a_real_smtp_server(
    sqlite_store: Store, tmp_path: Path
) -> None:
    written = await samples.write_async(
        "excel", OPTIONS, COLUMNS, ROWS, tmp_path / "umsatz.xlsx", samples.context("umsatz")
    )
    file = samples.produced(written)
    server = peers.SMTPServer(tmp_path / "smtp")
    server.start()
    try:
        spec = DeliverySpec(
            method="email",
            config={"smtp": server.smtp_config(), "locale": "en_US"},
            recipients=[("to", "ann@example.com")],
        )
        report = await seed_report(sqlite_store, settings_for(sqlite_store), file, [spec])
        await report.ledger.run(await report.job())
        (row,) = await delivery_logs.logs_for_execution(sqlite_store, report.execution_id)
    finally:
        server.stop()
    assert row.status is domain.DeliveryStatus.SUCCESS, row.error_message
    (mail,) = server.mailbox.messages
    message = mail.message()
    html = message.get_body(preferencelist=("html",))
    assert html is not None
    # The captured rows are in the report's locale (de_DE), the email's own words in en_US.
    assert "1.000,50\xa0€" in unescape(html.get_content())
    assert "Completed: 4 rows" in html.get_content()
    assert [
        p.get_content_type() for p in message.walk() if p.get_content_maintype() == "image"
    ] == ["image/png"]
    assert mail.attachments()[file.name] == file.path.read_bytes()
