"""Output formats benchmark (issue 5): reporthubd's writers against the libraries people use.

usage: .venv/bin/python bench/formats.py [--rounds N] [--suite xlsx,json,pdf,lag]
                                         [--xlsx-rows N] [--json-rows N] [--pdf-rows N]

Suites, each on the same deterministic rows (the `sales` shape of shared/anchors: id, timestamp,
date, two short texts, numeric(12,2), int, bool, a ~30-character note, a text NULL in 30%):

- xlsx (200,000 rows): reporthubd ExcelWriter, openpyxl write-only, XlsxWriter constant_memory,
  pandas DataFrame.to_excel (openpyxl engine, as pandas users do).
- json (1,000,000 rows): reporthubd JSONWriter as an array and as JSON Lines, with reporthubd's
  CSV writer as the baseline (when reporthubd.formats.csv exists).
- pdf (10,000 rows): reporthubd PDFWriter, reportlab platypus with one Table (repeatRows=1), and
  direct canvas drawing with Helvetica (the anchors' `canvas_direct`).
- xlsx_formats (200,000 rows): reporthubd ExcelWriter unformatted and with column formats
  (`FORMATTED`: number formats, labels, a highlight, totals) in the same run; `_captured`: the
  formatted writer inside formats.capture, as the engine runs it (preview rows and totals for
  the email kept while the rows stream); `_chart_captured`: the same with the bar chart
  (`CHARTED`): its points aggregated while the rows stream, its PNG, and the native Excel chart.
- pdf_chart (10,000 rows): reporthubd PDFWriter unformatted, and formatted (`FORMATTED`) with a
  bar chart through formats.capture as the engine runs it (preview rows, totals, chart points,
  the chart drawn in the PDF and as the email's PNG); the `_warm` variants print `warm_s`, the
  time of the run after a 200-row run in the same process (as in a daemon: imports, fonts and
  locale data loaded once).
- email (10,000 rows): a formatted PDF with a chart is written (not timed), then the email's
  message is built 20 times as the email deliverer builds it (the capture read back, the HTML
  and text bodies, css-inline, the CID chart, the attachment): `email_ms` is the median build;
  `chart_png_ms` the median time of drawing the chart's PNG (done when the file closes).
- lag: four Excel exports of --lag-rows rows each, concurrently in one event loop, while a ticker
  (10 ms sleeps) measures event-loop lag (p50/p99/max) — rendered in worker threads (reporthubd)
  and, as the baseline, rendered on the loop itself. The batches are made before the clock starts
  and reused, so the loop's work is only the writers' (row decoding is the connectors' cost).

Every method runs in its own process (this script re-invoked with --worker), so peak RSS is that
method's own (`ru_maxrss` from os.wait4, as /usr/bin/time prints it). Rows are generated batch by
batch inside the worker (never all at once, except where the method itself needs them all:
pandas, platypus); `gen_only` measures the generation alone. Rounds are interleaved; the tables
print median (min–max) and the ratio to the first method of the suite, computed per round.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

BATCH = 5000
HEADER = [
    "id",
    "created_at",
    "sale_date",
    "customer_name",
    "region",
    "amount",
    "quantity",
    "is_returned",
    "note",
    "discount_code",
]
REGIONS = ["north", "south", "east", "west", "central"]
BASE_TS = dt.datetime(2025, 1, 1)
BASE_DAY = dt.date(2025, 1, 1)

SUITES: dict[str, list[str]] = {
    "xlsx": ["reporthubd_excel", "openpyxl_wo", "xlsxwriter_cm", "pandas_to_excel", "gen_only"],
    "json": ["reporthubd_csv", "reporthubd_json", "reporthubd_jsonl", "gen_only"],
    "pdf": ["reporthubd_pdf", "platypus_table", "canvas_direct", "gen_only"],
    "lag": ["lag_threaded", "lag_on_loop"],
    "xlsx_formats": [
        "reporthubd_excel",
        "reporthubd_excel_formatted",
        "reporthubd_excel_formatted_captured",
        "reporthubd_excel_chart_captured",
        "gen_only",
    ],
    "pdf_chart": [
        "reporthubd_pdf",
        "reporthubd_pdf_chart",
        "reporthubd_pdf_warm",
        "reporthubd_pdf_chart_warm",
        "gen_only",
    ],
    "email": ["email_build"],
}
# Column formats on every typed column (issue 19): currency, integer, percent, dates, labels, a
# highlight and totals; the suite compares it with the unformatted writer in the same run.
FORMATTED: dict[str, Any] = {
    "locale": "de_DE",
    "columns": {
        "id": {"label": "ID", "kind": "integer"},
        "created_at": {"kind": "datetime"},
        "sale_date": {"kind": "date", "total": "min"},
        "customer_name": {"label": "Customer", "total": "count"},
        "amount": {
            "kind": "currency",
            "currency": "EUR",
            "total": "sum",
            "highlight": {"op": "gt", "value": 90000, "fill": "#E2F0D9"},
        },
        "quantity": {"kind": "integer", "total": "avg"},
    },
}


# Issue 19: the PDF with a chart of the amounts per region, as the engine writes it.
CHARTED: dict[str, Any] = FORMATTED | {
    "chart": {"type": "bar", "x": "region", "y": "amount", "title": "Amount by region"}
}


# -- data ---------------------------------------------------------------------------------------


def row(i: int) -> tuple[Any, ...]:
    note = f"note {i * 7919 % 100000:05d} for order {i}"
    if i % 10 == 0:
        note += ', "x"'
    return (
        i,
        BASE_TS + dt.timedelta(seconds=i * 31),
        BASE_DAY + dt.timedelta(days=i % 700),
        f"Customer {i * 2654435761 % 50000}",
        REGIONS[i % 5],
        Decimal(i * 7907 % 10_000_000) / 100,
        i % 50 + 1,
        i % 11 == 0,
        note,
        None if i % 10 < 3 else f"CODE{i % 997}",
    )


def batches(n: int) -> Iterator[list[tuple[Any, ...]]]:
    for start in range(1, n + 1, BATCH):
        yield [row(i) for i in range(start, min(n, start + BATCH - 1) + 1)]


def columns() -> list[Any]:
    from reporthubd.connectors.base import Column, ColumnKind

    kinds = [
        ColumnKind.INTEGER,
        ColumnKind.DATETIME,
        ColumnKind.DATE,
        ColumnKind.TEXT,
        ColumnKind.TEXT,
        ColumnKind.DECIMAL,
        ColumnKind.INTEGER,
        ColumnKind.BOOLEAN,
        ColumnKind.TEXT,
        ColumnKind.TEXT,
    ]
    return [
        Column(name=n, kind=k, source_type=str(k), scale=2 if n == "amount" else None)
        for n, k in zip(HEADER, kinds, strict=True)
    ]


# -- workers (run in their own process) ------------------------------------------------------


def _context() -> Any:
    from reporthubd.formats.base import RenderContext

    return RenderContext(
        report_name="Sales benchmark",
        execution_id="bench",
        parameters={"region": "all"},
        generated_at=dt.datetime.now(dt.UTC),
    )


async def _reporthubd(fmt: str, options: dict[str, Any], n: int, out: Path) -> None:
    from reporthubd.formats.base import writer_class

    writer = writer_class(fmt)(options, _context())
    await writer.open(out, columns())
    for batch in batches(n):
        await writer.write_batch(batch)
    await writer.close()


def w_reporthubd_excel(n: int, out: Path) -> None:
    asyncio.run(_reporthubd("excel", {}, n, out))


def w_reporthubd_excel_formatted(n: int, out: Path) -> None:
    asyncio.run(_reporthubd("excel", FORMATTED, n, out))


def w_reporthubd_json(n: int, out: Path) -> None:
    asyncio.run(_reporthubd("json", {}, n, out))


def w_reporthubd_jsonl(n: int, out: Path) -> None:
    asyncio.run(_reporthubd("json", {"layout": "lines"}, n, out))


def w_reporthubd_csv(n: int, out: Path) -> None:
    asyncio.run(_reporthubd("csv", {}, n, out))


def w_reporthubd_pdf(n: int, out: Path) -> None:
    asyncio.run(_reporthubd("pdf", {}, n, out))


async def _captured(fmt: str, options: dict[str, Any], n: int, out: Path) -> Any:
    from reporthubd.formats import capture
    from reporthubd.formats.base import writer_class

    writer = capture.wrap(writer_class(fmt)(options, _context()), options)
    await writer.open(out, columns())
    for batch in batches(n):
        await writer.write_batch(batch)
    return await writer.close()


def _warm(fmt: str, options: dict[str, Any], n: int, out: Path) -> dict[str, float]:
    """A daemon runs many reports in one process: after a 200-row run (imports, fonts, locale
    data loaded), the time of the n-row run alone."""
    asyncio.run(_captured(fmt, options, 200, out))
    started = time.perf_counter()
    asyncio.run(_captured(fmt, options, n, out))
    return {"warm_s": round(time.perf_counter() - started, 3)}


def w_reporthubd_pdf_warm(n: int, out: Path) -> dict[str, float]:
    return _warm("pdf", {}, n, out)


def w_reporthubd_excel_formatted_captured(n: int, out: Path) -> None:
    asyncio.run(_captured("excel", FORMATTED, n, out))


def w_reporthubd_excel_chart_captured(n: int, out: Path) -> None:
    asyncio.run(_captured("excel", CHARTED, n, out))


def w_reporthubd_pdf_chart(n: int, out: Path) -> None:
    asyncio.run(_captured("pdf", CHARTED, n, out))


def w_reporthubd_pdf_chart_warm(n: int, out: Path) -> dict[str, float]:
    return _warm("pdf", CHARTED, n, out)


def w_email_build(n: int, out: Path) -> dict[str, float]:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from reporthubd.formats import capture, chartdraw, charts
    from tests.formats import report_samples as samples

    written = asyncio.run(_captured("pdf", CHARTED, n, out))
    file = samples.produced(written)
    config = samples.config("Sales benchmark", "pdf", CHARTED)
    builds = []
    for _ in range(20):
        started = time.perf_counter()
        samples.message(config, file, {"preview_rows": 10})
        builds.append((time.perf_counter() - started) * 1000)
    data = capture.load(written.path)
    assert data is not None and data["rows"] and data["chart"]
    spec = charts.parse(CHARTED["chart"])
    assert spec is not None
    points = charts.ChartPoints(
        spec=spec,
        labels=data["chart"]["labels"],
        series=data["chart"]["series"],
        values=data["chart"]["values"],
        y_column="amount",
    )
    pngs = []
    for _ in range(10):
        started = time.perf_counter()
        chartdraw.png(chartdraw.draw(points, str))
        pngs.append((time.perf_counter() - started) * 1000)
    return {
        "email_ms": round(statistics.median(builds), 1),
        "email_max_ms": round(max(builds), 1),
        "chart_png_ms": round(statistics.median(pngs), 1),
    }


def w_gen_only(n: int, out: Path) -> None:
    count = 0
    for batch in batches(n):
        count += len(batch)
    out.write_text(str(count))


def w_openpyxl_wo(n: int, out: Path) -> None:
    from openpyxl import Workbook

    book = Workbook(write_only=True)
    sheet = book.create_sheet("sales")
    sheet.append(HEADER)
    for batch in batches(n):
        for r in batch:
            sheet.append(r)
    book.save(out)


def w_xlsxwriter_cm(n: int, out: Path) -> None:
    import xlsxwriter

    book = xlsxwriter.Workbook(
        str(out), {"constant_memory": True, "default_date_format": "yyyy-mm-dd hh:mm:ss"}
    )
    sheet = book.add_worksheet("sales")
    sheet.write_row(0, 0, HEADER)
    i = 1
    for batch in batches(n):
        for r in batch:
            sheet.write_row(i, 0, r)
            i += 1
    book.close()


def w_pandas_to_excel(n: int, out: Path) -> None:
    import pandas as pd

    rows = [r for batch in batches(n) for r in batch]
    frame = pd.DataFrame(rows, columns=HEADER)
    frame.to_excel(out, index=False, sheet_name="sales", engine="openpyxl")


def _texts(n: int) -> list[list[str]]:
    return [["" if v is None else str(v) for v in r] for batch in batches(n) for r in batch]


def w_platypus_table(n: int, out: Path) -> None:
    from reportlab.lib import colors
    from reportlab.lib.pagesizes import A4, landscape
    from reportlab.platypus import SimpleDocTemplate, Table, TableStyle

    doc = SimpleDocTemplate(
        str(out), pagesize=landscape(A4), leftMargin=18, rightMargin=18, topMargin=18
    )
    style = TableStyle(
        [
            ("FONT", (0, 0), (-1, -1), "Helvetica", 7),
            ("FONT", (0, 0), (-1, 0), "Helvetica-Bold", 7),
            ("BACKGROUND", (0, 0), (-1, 0), colors.lightgrey),
            ("GRID", (0, 0), (-1, -1), 0.25, colors.grey),
            ("TOPPADDING", (0, 0), (-1, -1), 1),
            ("BOTTOMPADDING", (0, 0), (-1, -1), 1),
        ]
    )
    widths = [40, 88, 56, 120, 50, 62, 40, 48, 170, 70]
    doc.build([Table([HEADER, *_texts(n)], colWidths=widths, repeatRows=1, style=style)])


def w_canvas_direct(n: int, out: Path) -> None:
    from reportlab.lib.pagesizes import A4, landscape
    from reportlab.pdfgen import canvas

    width, height = landscape(A4)
    c = canvas.Canvas(str(out), pagesize=(width, height))
    widths = [40, 88, 56, 120, 50, 62, 40, 48, 170, 70]
    xs = [18.0]
    for w in widths:
        xs.append(xs[-1] + w)
    lh, top, bottom = 10, height - 24, 24
    pages = 1

    def header() -> float:
        c.setFont("Helvetica-Bold", 7)
        for j, h in enumerate(HEADER):
            c.drawString(xs[j] + 2, top, h)
        c.setFont("Helvetica", 7)
        return top - lh

    y = header()
    for batch in batches(n):
        for r in batch:
            if y < bottom:
                c.drawRightString(width - 18, 12, f"page {pages}")
                c.showPage()
                pages += 1
                y = header()
            for j, v in enumerate(r):
                c.drawString(xs[j] + 2, y, "" if v is None else str(v))
            c.line(18, y - 3, xs[-1], y - 3)
            y -= lh
    c.showPage()
    c.save()


async def _lag(n: int, out: Path, threaded: bool) -> dict[str, float]:
    from reporthubd.formats.excel import ExcelWriter

    samples: list[float] = []
    stop = asyncio.Event()
    # Batches are made before the clock starts and handed over again and again, so that the
    # loop's own work is only what the writer asks of it (row decoding is the connectors' cost).
    pool = list(batches(min(n, 10 * BATCH)))

    async def ticker() -> None:
        interval = 0.01
        loop = asyncio.get_running_loop()
        while not stop.is_set():
            start = loop.time()
            await asyncio.sleep(interval)
            samples.append(loop.time() - start - interval)

    async def export(k: int) -> None:
        writer = ExcelWriter({}, _context())
        path = out.parent / f"{out.stem}-{k}.xlsx"
        await writer.open(path, columns())
        for k in range(-(-n // BATCH)):
            batch = pool[k % len(pool)]
            if threaded:
                await writer.write_batch(batch)
            else:  # the baseline: the same rendering, on the loop
                writer.render_batch(batch)
                await asyncio.sleep(0)
        await writer.close()
        path.unlink()

    if not threaded:
        # Run render_* on the loop: open the worker with nothing to do, then draw ourselves.
        from reporthubd.formats import threaded as base

        async def open_inline(self: Any, path: Path, cols: Any) -> None:
            self._path = path
            self._columns = tuple(cols)
            self.render_open(path, cols)

        async def close_inline(self: Any) -> None:
            self.render_close()

        base.ThreadedWriter.open = open_inline  # type: ignore[method-assign]
        base.ThreadedWriter.close = close_inline  # type: ignore[assignment,method-assign]

    tick = asyncio.create_task(ticker(), name="lag-ticker")
    started = time.perf_counter()
    await asyncio.gather(*(export(k) for k in range(4)))
    elapsed = time.perf_counter() - started
    stop.set()
    await tick
    samples.sort()
    ms = [s * 1000 for s in samples]
    return {
        "lag_p50_ms": round(ms[len(ms) // 2], 1),
        "lag_p99_ms": round(ms[int(len(ms) * 0.99)], 1),
        "lag_max_ms": round(ms[-1], 1),
        "exports_s": round(elapsed, 2),
    }


def w_lag_threaded(n: int, out: Path) -> dict[str, float]:
    return asyncio.run(_lag(n, out, threaded=True))


def w_lag_on_loop(n: int, out: Path) -> dict[str, float]:
    return asyncio.run(_lag(n, out, threaded=False))


def worker(method: str, n: int, out: Path) -> None:
    import resource

    fn = globals()[f"w_{method}"]
    started = time.perf_counter()
    extra = fn(n, out) or {}
    info = {
        "method": method,
        "rows": n,
        "t_total_s": round(time.perf_counter() - started, 3),
        "maxrss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
        **extra,
    }
    print(json.dumps(info))


# -- driver -------------------------------------------------------------------------------------


def run_measured(cmd: list[str]) -> dict[str, Any]:
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None and proc.stderr is not None
    stdout = proc.stdout.read()
    stderr = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - started
    rc = os.waitstatus_to_exitcode(status)
    lines = stdout.decode().strip().splitlines()
    inner = json.loads(lines[-1]) if rc == 0 and lines else {}
    return {
        "wall_s": wall,
        "rss_mb": usage.ru_maxrss / 1024,
        "cpu_s": usage.ru_utime + usage.ru_stime,
        "rc": rc,
        "inner": inner,
        "stderr": stderr.decode(errors="replace")[-600:],
    }


def med(xs: list[float], fmt: str = "{:.2f}") -> str:
    if not xs:
        return "n/a"
    return (fmt + " (" + fmt + "–" + fmt + ")").format(statistics.median(xs), min(xs), max(xs))


def have_csv() -> bool:
    import importlib.util

    return importlib.util.find_spec("reporthubd.formats.csv") is not None


def run_suite(suite: str, n: int, rounds: int, outdir: Path) -> None:
    methods = [m for m in SUITES[suite] if m != "reporthubd_csv" or have_csv()]
    ext = {
        "xlsx": "xlsx",
        "json": "out",
        "pdf": "pdf",
        "lag": "xlsx",
        "xlsx_formats": "xlsx",
        "pdf_chart": "pdf",
        "email": "pdf",
    }[suite]
    results: dict[str, list[dict[str, Any]]] = {m: [] for m in methods}
    for r in range(rounds):
        for m in methods:
            out = outdir / f"{suite}-{m}.{ext}"
            x = run_measured([sys.executable, __file__, "--worker", m, str(n), str(out)])
            size = out.stat().st_size if out.exists() else 0
            x["out_mb"] = size / 1e6
            results[m].append(x)
            if out.exists():
                out.unlink()
            status = "" if x["rc"] == 0 else f" FAILED rc={x['rc']}: {x['stderr']}"
            extra = {
                k: v
                for k, v in x["inner"].items()
                if k.startswith(("lag", "exports", "email", "chart", "warm"))
            }
            print(
                f"  r{r} {suite:4s} {m:18s} wall={x['wall_s']:.2f}s rss={x['rss_mb']:.0f}MB "
                f"cpu={x['cpu_s']:.2f}s {extra or ''}{status}",
                flush=True,
            )
    base = methods[0]
    print(f"\n### {suite}: {n:,} rows, {rounds} round(s)\n")
    if suite == "email":
        xs = [x for x in results["email_build"] if x["rc"] == 0]
        print("| email build ms (median of 20) | slowest ms | chart PNG ms |")
        print("|---|---|---|")
        print(
            f"| {med([x['inner']['email_ms'] for x in xs], '{:.1f}')} | "
            f"{med([x['inner']['email_max_ms'] for x in xs], '{:.1f}')} | "
            f"{med([x['inner']['chart_png_ms'] for x in xs], '{:.1f}')} |"
        )
        return
    if suite == "lag":
        print("| method | lag p50 ms | lag p99 ms | lag max ms | 4 exports s | peak RSS MB |")
        print("|---|---|---|---|---|---|")
        for m in methods:
            xs = [x for x in results[m] if x["rc"] == 0]
            print(
                f"| {m} | {med([x['inner']['lag_p50_ms'] for x in xs], '{:.1f}')} | "
                f"{med([x['inner']['lag_p99_ms'] for x in xs], '{:.1f}')} | "
                f"{med([x['inner']['lag_max_ms'] for x in xs], '{:.1f}')} | "
                f"{med([x['inner']['exports_s'] for x in xs])} | "
                f"{med([x['rss_mb'] for x in xs], '{:.0f}')} |"
            )
        return
    print(
        f"| method | wall s | in-process s | rows/s | peak RSS MB | CPU s | out MB | x {base} "
        f"| CPU x {base} |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for m in methods:
        xs = results[m]
        ok = [x for x in xs if x["rc"] == 0]
        ratios = [
            x["wall_s"] / b["wall_s"]
            for x, b in zip(xs, results[base], strict=True)
            if x["rc"] == 0 and b["rc"] == 0
        ]
        # Under a loaded machine's contention the wall time is noise; CPU time is not.
        cpu_ratios = [
            x["cpu_s"] / b["cpu_s"]
            for x, b in zip(xs, results[base], strict=True)
            if x["rc"] == 0 and b["rc"] == 0
        ]
        print(
            f"| {m} | {med([x['wall_s'] for x in ok])} | "
            f"{med([x['inner']['t_total_s'] for x in ok])} | "
            f"{med([n / x['wall_s'] for x in ok], '{:,.0f}')} | "
            f"{med([x['rss_mb'] for x in ok], '{:.0f}')} | {med([x['cpu_s'] for x in ok])} | "
            f"{(ok[0]['out_mb'] if ok else 0):.1f} | {med(ratios)} | {med(cpu_ratios)} |"
        )


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        worker(sys.argv[2], int(sys.argv[3]), Path(sys.argv[4]))
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--suite", default="xlsx,json,pdf,lag")
    parser.add_argument("--xlsx-rows", type=int, default=200_000)
    parser.add_argument("--json-rows", type=int, default=1_000_000)
    parser.add_argument("--pdf-rows", type=int, default=10_000)
    parser.add_argument("--lag-rows", type=int, default=100_000)
    args = parser.parse_args()
    rows = {
        "xlsx": args.xlsx_rows,
        "xlsx_formats": args.xlsx_rows,
        "pdf_chart": args.pdf_rows,
        "email": args.pdf_rows,
        "json": args.json_rows,
        "pdf": args.pdf_rows,
        "lag": args.lag_rows,
    }
    with tempfile.TemporaryDirectory(prefix="rh-bench-formats-") as tmp:
        for suite in args.suite.split(","):
            run_suite(suite, rows[suite], args.rounds, Path(tmp))


if __name__ == "__main__":
    main()
