"""Excel (.xlsx) writer, rendered in a worker thread, memory flat however many rows come.

Two engines, chosen by `format_options.engine`:

- `stream` (the default): reporthubd's own minimal SpreadsheetML writer (formats/xlsxstream.py),
  one f-string per cell, about 3x faster than XlsxWriter and 5x faster than openpyxl's
  write-only mode on the same rows (bench/formats.py measures all of them in one run);
- `xlsxwriter`: XlsxWriter in constant-memory mode, the fastest general-purpose library
  measured (1.6x openpyxl write-only), kept as a fallback should a consumer reject a file.

Both write the same cells, styles and sheets (the type-fidelity tests run both).

Types: integers, floats and decimals are numbers; dates, timestamps and times are Excel dates with
a date format; booleans are Excel booleans; NULL is an empty cell. Excel stores numbers as IEEE
doubles shown to 15 significant digits, so:

- an integer whose magnitude exceeds 999,999,999,999,999 (15 digits) is written as exact text;
- a decimal with at most 15 significant digits is a number, shown with its column's scale
  (`0.00` for numeric(12,2)); one with more is written as exact text (`decimal_overflow: "text"`,
  the default) or as the nearest double (`decimal_overflow: "number"`, precision lost);
- NaN and infinities (which Excel cannot hold) are the text `NaN`, `Infinity`, `-Infinity`.

Timestamps with a zone are converted to `timezone` (default UTC) and written without it (Excel
has no zone); the header of such a column says which zone (`created_at (UTC)`). Dates before
1900-03-01 (which Excel cannot show, or shows a day off) are ISO text. Binary is base64 text,
JSON is compact JSON text, text longer than Excel's 32,767-character cell limit is cut there
(counted in the log). Control characters are written as Excel's `_xHHHH_` escapes.

Past `rows_per_sheet` data rows (default and maximum 1,048,575: the sheet's limit less the header)
the writer continues on a new sheet, `<sheet_name> (2)`, with the header repeated.

Column formats (`columns`, formats.columns; stream engine only) give numeric and date cells a
real number format built from the `locale`'s CLDR pattern (formats.localize: `#,##0.00 "€"` for
de_DE), never text; highlights are conditional formatting and totals a bold last row
(formats.xlsxcolumns).

format_options: sheet_name (default "Report"), rows_per_sheet, decimal_overflow ("text" or
"number"), timezone (IANA name), header (default true), engine ("stream" or "xlsxwriter"),
compression_level (1 to 9, default 3; stream engine), columns, locale (default en_US); `sheets`
(stream engine) adds named sheets, each filled by its own query (formats.workbook).

A report's `chart` (formats.charts) becomes a native Excel chart with either engine: a last
sheet "Chart" with the chart's points as a small table and an Excel chart over those cells
(formats.xlsxstreamchart for the stream engine, formats.xlsxchart through XlsxWriter).
"""

from __future__ import annotations

import datetime as dt
import unicodedata
from collections.abc import Callable, Mapping, Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any, ClassVar, Final

from reporthubd import logs
from reporthubd.connectors.base import Column, ColumnKind, Row
from reporthubd.formats import columns as colfmt
from reporthubd.formats import localize, values, xlsxcolumns
from reporthubd.formats.base import FormatError, RenderContext
from reporthubd.formats.options import Options
from reporthubd.formats.threaded import ThreadedWriter
from reporthubd.formats.xlsxcells import (
    EXACT,
    EXCEL_EPOCH,
    MAX_CELL_CHARS,
    MAX_EXACT_DIGITS,
    MAX_EXACT_INT,
    decimal_pattern,
    stream_cells,
)

log = logs.get(__name__)

MAX_SHEET_ROWS: Final = 1_048_576
MAX_DATA_ROWS: Final = MAX_SHEET_ROWS - 1
MAX_WIDTH: Final = 60
WIDTH_SAMPLE_ROWS: Final = 500
_SHEET_NAME_FORBIDDEN: Final = frozenset("[]:*?/\\")

Cell = Callable[[Any, int, int, Any], None]


def _sheet_name(name: str) -> str:
    if not name or len(name) > 31 or any(ch in _SHEET_NAME_FORBIDDEN for ch in name):
        raise FormatError(
            "excel format option 'sheet_name' must be 1 to 31 characters without []:*?/\\"
        )
    if name.startswith("'") or name.endswith("'"):
        raise FormatError("excel format option 'sheet_name' must not start or end with '")
    return name


def _display_width(text: str) -> int:
    if text.isascii():
        return len(text)
    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)


class ExcelWriter(ThreadedWriter):
    extension: ClassVar[str] = "xlsx"
    media_type: ClassVar[str] = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"

    _widths: list[int] | None = None
    """Column widths, measured on the first batch and kept for every sheet."""
    _bound: list[colfmt.ColumnFormat | None] | None = None
    """The column formats of the result's columns (stream engine)."""
    _layout: xlsxcolumns.Layout
    """The current sheet's styles (stream engine)."""

    def __init__(self, options: Mapping[str, Any], context: RenderContext) -> None:
        super().__init__(options, context)
        opts = Options("excel", options)
        sheet = opts.string("sheet_name", "Report", max_length=31)
        assert sheet is not None
        self.sheet_name = _sheet_name(sheet)
        self.rows_per_sheet = opts.integer(
            "rows_per_sheet", MAX_DATA_ROWS, minimum=1, maximum=MAX_DATA_ROWS
        )
        self.decimal_overflow = opts.choice("decimal_overflow", ("text", "number"), "text")
        self.zone = opts.zone("timezone", "UTC")
        self.header = opts.boolean("header", True)
        self.engine = opts.choice("engine", ("stream", "xlsxwriter"), "stream")
        # Deflate level of the stream engine: 3 packs a sheet 2.5x faster than 6 for 12% more
        # bytes (measured on the bench rows); XlsxWriter always uses 6.
        self.compression_level = opts.integer("compression_level", 3, minimum=1, maximum=9)
        self.spec = colfmt.parse("excel", opts.value("columns"))
        self.locale = localize.parse_locale("excel", opts.value("locale"))
        if self.spec and self.engine != "stream":
            raise FormatError("excel format option 'columns' needs the stream engine")
        self.chart: Any = None
        """The report's chart (formats.chartdraw.Chart), drawn natively by either engine."""
        opts.reject_unknown()
        self.truncated_cells = 0

    # -- the engine's calls, in the worker thread --------------------------------------------

    def render_open(self, path: Path, columns: Sequence[Column]) -> None:
        if self.engine == "xlsxwriter":
            self._xw_open(path, columns)
        else:
            self._st_open(path, columns)

    def render_batch(self, rows: Sequence[Row]) -> None:
        if self.engine == "xlsxwriter":
            self._xw_batch(rows)
        else:
            self._st_batch(rows)

    def render_close(self) -> None:
        if self.engine == "xlsxwriter":
            self._xw_close()
        else:
            self._st_close()
        if self.truncated_cells:
            log.warning(
                "excel_cells_truncated",
                execution_id=self.context.execution_id,
                cells=self.truncated_cells,
                limit=MAX_CELL_CHARS,
            )

    def render_abort(self) -> None:
        if self.engine == "xlsxwriter":
            self._xw_abort()
        else:
            book = getattr(self, "_stream", None)
            if book is not None:
                book.abort()

    # -- shared by both engines --------------------------------------------------------------

    def _header_text(self, column: Column, fmt: colfmt.ColumnFormat | None = None) -> str:
        name = fmt.header() if fmt is not None else column.name
        if column.kind is ColumnKind.DATETIME_TZ:
            return f"{name} ({self.zone.key})"
        return name

    def _numbered_name(self, n: int) -> str:
        suffix = f" ({n})"
        return self.sheet_name[: 31 - len(suffix)] + suffix

    def _measure_widths(self, rows: Sequence[Row]) -> list[int]:
        widths = [_display_width(h) + 4 if self.header else 4 for h in self._headers]
        fmts = self._bound or [None] * len(self._columns)
        fixed = {
            ColumnKind.DATE: 12,
            ColumnKind.DATETIME: 20,
            ColumnKind.DATETIME_TZ: 20,
            ColumnKind.TIME: 10,
            ColumnKind.BOOLEAN: 7,
        }
        for c, column in enumerate(self._columns):
            fmt = fmts[c]
            if fmt is not None and fmt.width is not None:
                widths[c] = round(fmt.width)
                continue
            if column.kind in fixed:
                widths[c] = max(widths[c], fixed[column.kind])
                continue
            longest = 0
            for row in rows:
                value = row[c]
                if value is not None:
                    longest = max(longest, _display_width(values.text(value)[:MAX_WIDTH]))
            widths[c] = min(MAX_WIDTH, max(widths[c], longest + 2))
        return widths

    # -- the stream engine (xlsxstream) ------------------------------------------------------

    def _st_open(self, path: Path, columns: Sequence[Column]) -> None:
        from reporthubd.formats import xlsxstream

        self._stream = xlsxstream.Workbook(
            path,
            self._st_bind(columns, self.spec).styles,
            tmpdir=path.parent,
            compresslevel=self.compression_level,
            highlights=self._layout.highlights,
        )
        self._sheets = 0

    def _st_bind(self, columns: Sequence[Column], spec: colfmt.ColumnSpec) -> xlsxcolumns.Layout:
        """One sheet's columns: their formats, styles and cell writers (formats.workbook)."""
        from reporthubd.formats import xlsxstream

        self._bound = spec.bind("excel", columns)
        self._totals = colfmt.Totals(self._bound)
        later = hasattr(self, "_stream")
        base = self._layout if later else None
        self._layout = layout = xlsxcolumns.layout(columns, self._bound, self.locale, base=base)
        if later:  # a later sheet: its styles join the workbook's
            self._stream.use_styles(layout.styles, layout.highlights)
        self._headers = [self._header_text(c, f) for c, f in zip(columns, self._bound, strict=True)]
        self._hidden = [f is not None and f.hidden for f in self._bound]
        self._ncols = len(columns)
        self._letters = [xlsxstream.column_letter(i) for i in range(self._ncols)]
        self._st_cells = [
            stream_cells(self, dec, fmt, style)
            for dec, fmt, style in zip(
                layout.decimal_styles, self._bound, layout.format_styles, strict=True
            )
        ]
        self._widths = None
        self._part = 0
        self._sheet_rows = 0
        self._first_row = 1 if self.header else 0
        return layout

    def _st_new_sheet(self) -> None:
        from reporthubd.formats import xlsxstream

        self._st_end_sheet()
        self._sheets += 1
        self._part += 1  # the sheets of this query (formats.workbook: one query per sheet)
        name = self.sheet_name if self._part == 1 else self._numbered_name(self._part)
        self._stream.add_sheet(
            name, self._widths or (), freeze_header=self.header, hidden=self._hidden
        )
        if self.header:
            cells = "".join(
                xlsxstream.inline_string(f"{letter}1", text, xlsxstream.STYLE_BOLD)
                for letter, text in zip(self._letters, self._headers, strict=True)
            )
            self._stream.write(f'<row r="1">{cells}</row>')
        self._sheet_rows = 0

    def _st_end_sheet(self, total_row: str = "") -> None:
        if self._sheets == 0:
            return
        last_row = self._sheet_rows + self._first_row
        dimension = f"A1:{self._letters[-1]}{last_row}" if self._ncols and last_row else "A1"
        autofilter = dimension if self.header and self._ncols else None
        conditional = xlsxcolumns.conditional_xml(
            self._layout, self._letters, self._first_row + 1, last_row
        )
        if total_row:  # one row below the data, outside the autofilter
            self._stream.write(total_row)
            dimension = f"A1:{self._letters[-1]}{last_row + 1}"
        self._stream.end_sheet(dimension, autofilter, conditional)

    def _st_batch(self, rows: Sequence[Row]) -> None:
        if self._totals:
            self._totals.add(rows)
        if self._widths is None:
            self._widths = self._measure_widths(rows[:WIDTH_SAMPLE_ROWS])
            self._st_new_sheet()
        cells = self._st_cells
        letters = self._letters
        pos, total = 0, len(rows)
        while pos < total:
            room = self.rows_per_sheet - self._sheet_rows
            if room == 0:
                self._st_new_sheet()
                room = self.rows_per_sheet
            chunk = rows[pos : pos + room]
            r = self._first_row + self._sheet_rows + 1
            parts: list[str] = []
            append = parts.append
            for row in chunk:
                rs = str(r)
                append(f'<row r="{rs}">')
                for c, value in enumerate(row):
                    if value is not None:
                        append(cells[c](letters[c] + rs, value))
                append("</row>")
                r += 1
            self._stream.write("".join(parts))
            self._sheet_rows += len(chunk)
            pos += len(chunk)

    def _st_close(self) -> None:
        self._st_finish()
        if self.chart is not None and self.chart.points is not None:
            from reporthubd.formats import xlsxstreamchart  # the chart's sheet, natively

            xlsxstreamchart.add(self._stream, self.chart.points, self._stream.sheet_names())
        self._stream.close()

    def render_section(self, name: str, columns: Sequence[Column], spec: Any) -> None:
        if self.engine != "stream":
            raise FormatError("excel format option 'sheets' needs the stream engine")
        self._st_finish()
        self.sheet_name = name
        self._st_bind(columns, spec)

    def _st_finish(self) -> None:
        if self._widths is None:
            self._widths = self._measure_widths(())
            self._st_new_sheet()
        total_row = ""
        if self._totals and self._ncols:
            if self._sheet_rows >= MAX_DATA_ROWS:
                self._st_new_sheet()  # a full sheet has no room below
            r = self._first_row + self._sheet_rows + 1
            values_ = self._totals.values(self._ncols)
            total_row = xlsxcolumns.total_row(self._layout, self._letters, r, values_)
        self._st_end_sheet(total_row)

    # -- the xlsxwriter engine ---------------------------------------------------------------

    def _xw_open(self, path: Path, columns: Sequence[Column]) -> None:
        import xlsxwriter  # an extra-free dependency, but imported only when Excel is used

        self._book = xlsxwriter.Workbook(
            str(path),
            {
                "constant_memory": True,
                "tmpdir": str(path.parent),
                "strings_to_numbers": False,
                "strings_to_formulas": False,
                "strings_to_urls": False,
            },
        )
        book = self._book
        self._fmt_header = book.add_format({"bold": True})
        self._fmt_date = book.add_format({"num_format": "yyyy-mm-dd"})
        self._fmt_datetime = book.add_format({"num_format": "yyyy-mm-dd hh:mm:ss"})
        self._fmt_time = book.add_format({"num_format": "hh:mm:ss"})
        self._headers = [self._header_text(c) for c in columns]
        self._ncols = len(columns)
        self._cells: list[Cell] = [self._cell_function(c) for c in columns]
        self._widths = None
        self._sheets = 0
        self._sheet: Any = None
        self._sheet_rows = 0
        self._first_row = 1 if self.header else 0
        self._xw_new_sheet()

    def _xw_new_sheet(self) -> None:
        self._xw_finish_sheet()
        self._sheets += 1
        name = self.sheet_name if self._sheets == 1 else self._numbered_name(self._sheets)
        sheet = self._book.add_worksheet(name)
        if self.header:
            sheet.write_row(0, 0, self._headers, self._fmt_header)
            sheet.freeze_panes(1, 0)
        self._sheet = sheet
        self._sheet_rows = 0

    def _xw_finish_sheet(self) -> None:
        sheet = self._sheet
        if sheet is None:
            return
        if self.header and self._ncols:
            sheet.autofilter(0, 0, self._sheet_rows, self._ncols - 1)
        for col, width in enumerate(self._widths or ()):
            sheet.set_column(col, col, width)

    def _xw_batch(self, rows: Sequence[Row]) -> None:
        if self._widths is None:
            self._widths = self._measure_widths(rows[:WIDTH_SAMPLE_ROWS])
        cells = self._cells
        pos = 0
        total = len(rows)
        while pos < total:
            room = self.rows_per_sheet - self._sheet_rows
            if room == 0:
                self._xw_new_sheet()
                room = self.rows_per_sheet
            chunk = rows[pos : pos + room]
            sheet = self._sheet
            r = self._first_row + self._sheet_rows
            for row in chunk:
                for c, value in enumerate(row):
                    if value is not None:
                        cells[c](sheet, r, c, value)
                r += 1
            self._sheet_rows += len(chunk)
            pos += len(chunk)

    def attach_chart(self, chart: Any) -> None:
        self.chart = chart

    def _xw_close(self) -> None:
        self._xw_finish_sheet()
        if self.chart is not None and self.chart.points is not None:
            from reporthubd.formats import xlsxchart  # a native chart: XlsxWriter can emit one

            xlsxchart.add(self._book, self.chart.points)
        self._book.close()

    def _xw_abort(self) -> None:
        book = getattr(self, "_book", None)
        if book is not None:
            # Closing writes the file (removed by the caller) and, above all, the temp files.
            try:
                book.close()
            except Exception as exc:
                log.debug("excel_abort_close_failed", error=str(exc))

    def _cell_function(self, column: Column) -> Cell:
        decimal_format = None
        pattern = decimal_pattern(column)
        if pattern is not None:
            decimal_format = self._book.add_format({"num_format": pattern})
        by_type = self._by_type(decimal_format)
        generic = self._generic(by_type)
        return generic

    def _generic(self, by_type: dict[type, Cell]) -> Cell:
        def write(sheet: Any, r: int, c: int, value: Any) -> None:
            fn = by_type.get(type(value))
            if fn is None:
                fn = self._fallback(by_type, value)
            fn(sheet, r, c, value)

        return write

    def _fallback(self, by_type: dict[type, Cell], value: Any) -> Cell:
        # Subclasses of the plain types (e.g. a str enum, asyncpg's Record types) and others.
        for kind, fn in (
            (bool, by_type[bool]),
            (int, by_type[int]),
            (float, by_type[float]),
            (Decimal, by_type[Decimal]),
            (str, by_type[str]),
            (dt.datetime, by_type[dt.datetime]),
            (dt.date, by_type[dt.date]),
            (dt.time, by_type[dt.time]),
            (bytes | bytearray | memoryview, by_type[bytes]),
            (dict | list | tuple, by_type[dict]),
        ):
            if isinstance(value, kind):
                return fn
        return self._write_text_of

    def _by_type(self, decimal_format: Any) -> dict[type, Cell]:
        fmt_date, fmt_datetime, fmt_time = self._fmt_date, self._fmt_datetime, self._fmt_time
        zone = self.zone
        decimal_as_number = self.decimal_overflow == "number"
        write_text = self._write_text

        def write_int(sheet: Any, r: int, c: int, value: int) -> None:
            if -MAX_EXACT_INT <= value <= MAX_EXACT_INT:
                sheet.write_number(r, c, value)
            else:
                sheet.write_string(r, c, str(value))

        def write_float(sheet: Any, r: int, c: int, value: float) -> None:
            if value - value == 0.0:  # finite
                sheet.write_number(r, c, value)
            else:
                sheet.write_string(r, c, values.float_text(value))

        def write_decimal(sheet: Any, r: int, c: int, value: Decimal) -> None:
            if not value.is_finite():
                sheet.write_string(r, c, values.decimal_text(value))
                return
            digits = len(value.as_tuple().digits)
            if digits > MAX_EXACT_DIGITS:
                value = value.normalize(EXACT) if value else Decimal(0)
                digits = len(value.as_tuple().digits)
            if (digits <= MAX_EXACT_DIGITS and -300 < value.adjusted() < 300) or (
                decimal_as_number and -300 < value.adjusted() < 300
            ):
                sheet.write_number(r, c, float(value), decimal_format)
            else:
                sheet.write_string(r, c, values.decimal_text(value))

        def write_bool(sheet: Any, r: int, c: int, value: bool) -> None:
            sheet.write_boolean(r, c, value)

        def write_date(sheet: Any, r: int, c: int, value: dt.date) -> None:
            if value >= EXCEL_EPOCH:
                sheet.write_datetime(r, c, value, fmt_date)
            else:
                sheet.write_string(r, c, value.isoformat())

        def write_datetime(sheet: Any, r: int, c: int, value: dt.datetime) -> None:
            if value.tzinfo is not None:
                value = value.astimezone(zone).replace(tzinfo=None)
            if value.date() >= EXCEL_EPOCH:
                sheet.write_datetime(r, c, value, fmt_datetime)
            else:
                sheet.write_string(r, c, value.isoformat())

        def write_time(sheet: Any, r: int, c: int, value: dt.time) -> None:
            if value.tzinfo is not None:
                sheet.write_string(r, c, value.isoformat())
            else:
                sheet.write_datetime(r, c, value, fmt_time)

        def write_bytes(sheet: Any, r: int, c: int, value: bytes) -> None:
            write_text(sheet, r, c, values.binary_text(value))

        def write_json(sheet: Any, r: int, c: int, value: Any) -> None:
            write_text(sheet, r, c, values.json_text(value))

        return {
            int: write_int,
            float: write_float,
            Decimal: write_decimal,
            bool: write_bool,
            str: write_text,
            dt.date: write_date,
            dt.datetime: write_datetime,
            dt.time: write_time,
            bytes: write_bytes,
            bytearray: write_bytes,
            memoryview: write_bytes,
            dict: write_json,
            list: write_json,
            tuple: write_json,
        }

    def _write_text(self, sheet: Any, r: int, c: int, value: str) -> None:
        if len(value) > MAX_CELL_CHARS:
            self.truncated_cells += 1
            value = value[:MAX_CELL_CHARS]
        sheet.write_string(r, c, value)

    def _write_text_of(self, sheet: Any, r: int, c: int, value: Any) -> None:
        self._write_text(sheet, r, c, values.text(value))
