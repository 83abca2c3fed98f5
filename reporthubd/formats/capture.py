"""What readers see of a result besides its file, captured while the rows stream: the first rows
in the column formats (the email's inline table), the totals, and the chart's data points.

`wrap(writer, options)` puts a `CapturingWriter` around any format's writer. It passes every call
through and, on the way, keeps the first `preview_rows` rows as the locale's text (formats.columns
and formats.localize, the PDF's rules), accumulates the totals row, and aggregates the chart
(formats.charts: bounded by its points, never the rows). Before the inner writer closes, the
chart is laid out and handed to it (`FormatWriter.attach_chart`: the PDF draws it on its first
page); after, the capture is written beside the file in the workspace:

- `.<file name>.capture.json`: columns (label, alignment), rows, paints, totals, the chart's data
  points and its drawn points;
- `.<file name>.chart.png`: the chart as the email shows it.

Beside the file, not in memory, because a delivery may be retried later, by another process.
Deliverers read it with `load(file_path)`.

format_options read here, by every format: `preview_rows` (0 to 200, default 20), `chart`
(formats.charts), and the column formats' `columns`, `locale` and `timezone`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import babel

from reporthubd.connectors.base import Column, Row, ServerCSV
from reporthubd.formats import base, charts, localize, values
from reporthubd.formats import columns as colfmt
from reporthubd.formats.base import FormatError, FormatWriter, WrittenFile

DEFAULT_PREVIEW_ROWS: Final = 20
MAX_PREVIEW_ROWS: Final = 200
MAX_CELL: Final = 300


@dataclass(frozen=True, kw_only=True)
class CaptureSpec:
    preview_rows: int
    chart: charts.ChartSpec | None
    spec: colfmt.ColumnSpec
    locale: babel.Locale
    zone: ZoneInfo


def parse(options: Mapping[str, Any]) -> CaptureSpec:
    """The capture's options, or FormatError naming the key."""
    rows = options.get("preview_rows", DEFAULT_PREVIEW_ROWS)
    if isinstance(rows, bool) or not isinstance(rows, int) or not 0 <= rows <= MAX_PREVIEW_ROWS:
        raise FormatError(
            f"format option 'preview_rows' must be an integer from 0 to {MAX_PREVIEW_ROWS}"
        )
    zone_name = options.get("timezone") or "UTC"
    try:
        zone = ZoneInfo(str(zone_name))
    except (ZoneInfoNotFoundError, ValueError):
        raise FormatError(f"format option 'timezone': unknown time zone {zone_name!r}") from None
    return CaptureSpec(
        preview_rows=rows,
        chart=charts.parse(options.get("chart")),
        spec=colfmt.parse("report", options.get("columns")),
        locale=localize.parse_locale("report", options.get("locale")),
        zone=zone,
    )


def check_options(name: str, options: Mapping[str, Any]) -> None:
    """A report's format_options as a run reads them: the writer's (formats.base.check_options)
    and the capture's (`preview_rows`, `chart`); FormatError names the bad option."""
    from reporthubd.formats import workbook  # a workbook's sheets (formats.workbook)

    options = dict(options)
    workbook.split(name, options)
    base.check_options(name, options)
    parse(options)


def capture_path(file_path: Path) -> Path:
    return file_path.with_name(f".{file_path.name}.capture.json")


def chart_path(file_path: Path) -> Path:
    return file_path.with_name(f".{file_path.name}.chart.png")


def load(file_path: Path) -> dict[str, Any] | None:
    """The capture written beside a produced file, or None (none written, or unreadable)."""
    try:
        data = json.loads(capture_path(file_path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def wrap(writer: FormatWriter, options: Mapping[str, Any]) -> CapturingWriter:
    return CapturingWriter(writer, parse(options))


def tick_function(fmt: colfmt.ColumnFormat | None, locale: babel.Locale) -> Callable[[float], str]:
    """Axis ticks in the y column's kind without decimals (`800.000 €`, `$800,000`, `45 %`),
    short from a million on (`1,2 Mio. €`, `$1.2M`)."""
    import babel.numbers as bn

    whole = localize.text_function(
        replace(fmt, decimals=0)
        if fmt is not None
        else colfmt.ColumnFormat(name="", kind=colfmt.Kind.NUMBER, decimals=0),
        locale,
        ZoneInfo("UTC"),
    )
    currency = fmt.currency if fmt is not None and fmt.kind is colfmt.Kind.CURRENCY else None

    def tick(value: float) -> str:
        if abs(value) < 1e6 or (fmt is not None and fmt.kind is colfmt.Kind.PERCENT):
            return whole(value)
        if currency:
            return str(
                bn.format_compact_currency(value, currency, locale=locale, fraction_digits=1)
            )
        return str(bn.format_compact_decimal(value, locale=locale, fraction_digits=1))

    return tick


class CapturingWriter(FormatWriter):
    """A writer around a writer: see the module docstring."""

    extension = "capture"
    media_type = "application/octet-stream"

    def __init__(self, inner: FormatWriter, spec: CaptureSpec) -> None:
        super().__init__(inner.options, inner.context)
        self.inner = inner
        self.capture = spec
        self.media_type = inner.media_type  # type: ignore[misc]
        self.extension = inner.extension  # type: ignore[misc]
        self._path: Path | None = None
        self._chart: charts.ChartData | None = None
        self._rows: list[list[str | None]] = []
        self._paints: list[list[list[str | None] | None]] = []
        self._truncated = False
        self._rendered = False

    @property
    def file_extension(self) -> str:
        return self.inner.file_extension

    def server_csv(self) -> ServerCSV | None:
        # A chart needs the rows themselves; a preview alone can be read back from the CSV.
        return None if self.capture.chart is not None else self.inner.server_csv()

    async def open(self, path: Path, columns: Sequence[Column]) -> None:
        await self.inner.open(path, columns)
        self._path = path
        spec = self.capture
        bound = spec.spec.bind("report", columns)
        self._bound = bound
        self._names = [c.name for c in columns]
        self._shown = [i for i, f in enumerate(bound) if f is None or not f.hidden]
        self._texts = [
            localize.text_function(f, spec.locale, spec.zone)
            if (f := bound[i]) is not None
            else values.text_function(columns[i].kind)
            for i in range(len(columns))
        ]
        self._columns = [
            {
                "name": columns[i].name,
                "label": f.header() if (f := bound[i]) else columns[i].name,
                "align": f.alignment()
                if (f := bound[i])
                else ("right" if values.is_right_aligned(columns[i].kind) else "left"),
            }
            for i in self._shown
        ]
        self._totals = colfmt.Totals(bound)
        self._has_paints = any(f is not None and f.highlight for f in bound)
        if spec.chart is not None:
            x = columns_index(columns, spec.chart.x)
            x_text = self._texts[x] if x is not None else str
            self._chart = charts.ChartData(spec.chart, columns, x_text)

    async def write_batch(self, rows: Sequence[Row]) -> None:
        room = self.capture.preview_rows - len(self._rows)
        if room > 0:
            self._keep(rows[:room])
        if self._totals:
            self._totals.add(rows)
        if self._chart is not None:
            self._chart.add(rows)
        await self.inner.write_batch(rows)

    def _keep(self, rows: Sequence[Row]) -> None:
        texts, shown, bound = self._texts, self._shown, self._bound
        for row in rows:
            self._rows.append(
                [None if row[i] is None else texts[i](row[i])[:MAX_CELL] for i in shown]
            )
            if self._has_paints:
                painted: list[list[str | None] | None] = []
                for i in shown:
                    f = bound[i]
                    paint = f.paint(row[i]) if f is not None and row[i] is not None else None
                    painted.append([paint.fill, paint.color] if paint else None)
                self._paints.append(painted)

    async def write_rendered(self, data: bytes, rows: int) -> None:
        self._rendered = True
        await self.inner.write_rendered(data, rows)

    async def note_truncated(self, max_rows: int) -> None:
        self._truncated = True
        await self.inner.note_truncated(max_rows)

    async def close(self) -> WrittenFile:
        chart = None
        if self._chart is not None:
            points = self._chart.points()
            fmt = self._bound[self._names.index(points.y_column)]
            chart = await asyncio.to_thread(self._draw, points, fmt)
            self.inner.attach_chart(chart[0])
        written = await self.inner.close()
        await asyncio.to_thread(self._save, written, chart)
        return written

    def _draw(self, points: charts.ChartPoints, fmt: colfmt.ColumnFormat | None) -> Any:
        from reporthubd.formats import chartdraw

        return chartdraw.draw(points, tick_function(fmt, self.capture.locale)), points

    def _save(self, written: WrittenFile, drawn: Any) -> None:
        data: dict[str, Any] = {
            "version": 1,
            "locale": str(self.capture.locale),
            "columns": self._columns,
            "rows": self._rows,
            "preview_from": "csv" if self._rendered else "rows",
            "truncated": self._truncated,
        }
        if self._paints:
            data["paints"] = self._paints
        if self._totals:
            data["totals"] = self._total_texts()
        if drawn is not None:
            from reporthubd.formats import chartdraw

            chart, points = drawn
            png = chartdraw.png(chart)
            chart_path(written.path).write_bytes(png)
            data["chart"] = points.to_json() | {
                "png": chart_path(written.path).name,
                "width": points.spec.width,
                "height": points.spec.height,
                "png_scale": chartdraw.PNG_SCALE,
                "drawn": chart.drawn,
                "zero_y": chart.zero_y,
                "placement": self.inner.chart_placement,
            }
        capture_path(written.path).write_text(json.dumps(data, ensure_ascii=False), "utf-8")

    def _total_texts(self) -> list[str | None]:
        totals = self._totals.values(len(self._bound))
        count = localize.text_function(
            colfmt.ColumnFormat(name="", kind=colfmt.Kind.INTEGER),
            self.capture.locale,
            self.capture.zone,
        )
        out: list[str | None] = []
        for i in self._shown:
            value, fmt = totals[i], self._bound[i]
            if value is None:
                out.append(None)
            elif fmt is not None and fmt.total == "count":
                out.append(count(value))
            else:
                out.append(self._texts[i](value))
        return out

    async def abort(self) -> None:
        await self.inner.abort()
        if self._path is not None:
            for extra in (capture_path(self._path), chart_path(self._path)):
                with contextlib.suppress(OSError):
                    extra.unlink()


def columns_index(columns: Sequence[Column], name: str) -> int | None:
    return next((i for i, c in enumerate(columns) if c.name == name), None)
