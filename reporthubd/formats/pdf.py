"""PDF writer: a printable table drawn straight onto reportlab's canvas, in a worker thread.

Direct canvas drawing, with the text operators written straight into the page's content stream,
is about 6x faster than one platypus Table (bench/formats.py measures both in one run). Each batch
is drawn as it arrives and no row is kept; reportlab keeps the finished pages (compressed) until
the file is saved, about 1.4 MB per 1,000 rows (67 MB peak RSS at 10,000 rows, 123 MB at 50,000),
which the row cap bounds.

Every page has the header (title, generation time, execution id, the run's parameters), the
column header row, and a footer with `Page N of M`. Long text wraps inside its column, up to
`max_lines_per_cell` lines, then ends with `…`. Numbers are right-aligned. Values are written as
their canonical text (formats.values). Fonts: see formats.pdffonts — CJK, Cyrillic, Arabic
digits and emoji (monochrome) render; an unknown character shows as `[U+XXXX]`. Right-to-left
text (Hebrew, Arabic) is shaped per wrapped line (pdffonts.visual: arabic-reshaper joins the
Arabic letters, python-bidi puts the line in visual order; reportlab's canvas does neither).

Orientation "auto" is landscape when the columns' natural widths (labels and the first rows'
texts) do not fit across a portrait page. `chart` (formats.charts) draws the chart above the
table on page 1; `cover_page = true` gives a first page of its own with the title, the run, the
parameters, the row count and the chart (formats.pdfcover).

A PDF is for reading, not for bulk data: past `max_rows` (default 50,000) the writer fails with
an error that says so, rather than producing a 1,000-page document.

Column formats (`columns`, formats.columns) turn values into the `locale`'s text through Babel
(formats.localize: `1.234,56 €` for de_DE, `$1,234.56` for en_US), timestamps with a zone shown in
`timezone`; they also give labels, widths, alignment, hidden columns, highlighted cells (fill and
text colour) and a bold totals row after the last row, accumulated while the rows stream.

format_options: title (default: the report name), orientation ("auto": by the content, above;
"portrait"; "landscape"), page_size ("A4" or "letter"), font_size (5 to 14, default 7),
max_rows (1 to 1,000,000, default 50,000), max_lines_per_cell (1 to 50, default 4), columns,
locale (default en_US), timezone (IANA name, default UTC), chart, cover_page (default false);
`sheets` and `sheet_name` add sections, each with its heading and its own query (formats.workbook).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar, Final

from reporthubd.connectors.base import Column, Row
from reporthubd.formats import charts, localize, pdfcover, pdffonts, values
from reporthubd.formats import columns as colfmt
from reporthubd.formats.base import FormatError, RenderContext
from reporthubd.formats.options import Options
from reporthubd.formats.pdffonts import visual
from reporthubd.formats.threaded import ThreadedWriter, truncation_note

DEFAULT_MAX_ROWS: Final = 50_000
MARGIN: Final = 28.0
PAD_X: Final = 2.5
PAD_Y: Final = 1.6
SAMPLE_ROWS: Final = 200
TEXT_CACHE: Final = 20_000
TOTAL_PAGES_FORM: Final = "rh_total_pages"
HEADER_BG: Final = 0.86
ZEBRA_BG: Final = 0.95
RULE_GRAY: Final = 0.72


class PDFWriter(ThreadedWriter):
    extension: ClassVar[str] = "pdf"
    media_type: ClassVar[str] = "application/pdf"
    margin: ClassVar[float] = MARGIN

    def __init__(self, options: Mapping[str, Any], context: RenderContext) -> None:
        super().__init__(options, context)
        opts = Options("pdf", options)
        self.title = opts.string("title", None) or context.report_name
        self.heading = self.title
        """The pages' title line: the title, then the section's name (formats.workbook)."""
        self.orientation = opts.choice("orientation", ("auto", "portrait", "landscape"), "auto")
        self.page_size = opts.choice("page_size", ("A4", "letter"), "A4")
        self.font_size = opts.number("font_size", 7, minimum=5, maximum=14)
        self.max_rows = opts.integer("max_rows", DEFAULT_MAX_ROWS, minimum=1, maximum=1_000_000)
        self.max_lines = opts.integer("max_lines_per_cell", 4, minimum=1, maximum=50)
        self.spec = colfmt.parse("pdf", opts.value("columns"))
        self.locale = localize.parse_locale("pdf", opts.value("locale"))
        self.zone = opts.zone("timezone", "UTC")
        self.chart_spec = charts.parse(opts.value("chart"))
        self.cover_page = opts.boolean("cover_page", False)
        self.chart: Any = None
        opts.reject_unknown()

    def attach_chart(self, chart: Any) -> None:
        self.chart = chart

    def accept_batch(self, rows: Sequence[Row]) -> None:
        if self.rows_written + len(rows) > self.max_rows:
            raise FormatError(
                f"the report has more than {self.max_rows:,} rows, the PDF row cap: a PDF is for "
                "reading, not bulk data — use Excel, CSV or JSON for this report, or narrow its "
                "query, or raise format_options.max_rows (up to 1,000,000)"
            )

    # -- worker thread ------------------------------------------------------------------------

    def render_open(self, path: Path, columns: Sequence[Column]) -> None:
        from reportlab.lib.pagesizes import A4, landscape, letter, portrait
        from reportlab.pdfgen import canvas

        size = A4 if self.page_size == "A4" else letter
        self._portrait, self._landscape = portrait(size), landscape(size)
        wide = self.orientation == "landscape" or (self.orientation == "auto" and len(columns) > 6)
        self._page_w, self._page_h = self._landscape if wide else self._portrait
        self._canvas = canvas.Canvas(str(path), pagesize=(self._page_w, self._page_h))
        self._canvas.setTitle(self.title)
        self._canvas.setAuthor("reporthubd")
        self._canvas.setCreator("reporthubd")
        self._canvas.setSubject(f"execution {self.context.execution_id}")
        fs = self.font_size
        self._body = pdffonts.FontFamily(pdffonts.REGULAR, fs)
        self._head = pdffonts.FontFamily(pdffonts.BOLD, fs)
        self._meta = pdffonts.FontFamily(pdffonts.REGULAR, 7.5)
        self._title_font = pdffonts.FontFamily(pdffonts.BOLD, 12)
        self._foot = pdffonts.FontFamily(pdffonts.REGULAR, 6.5)
        self._leading = fs * 1.22
        self._ascent = fs * 0.82
        self._bind(columns, self.spec)
        self._text_ops: dict[tuple[str, float, str], str] = {}
        self._ascii_names: dict[str, str] = {}
        self._page = 0
        self._y = 0.0

    def render_section(self, name: str, columns: Sequence[Column], spec: Any) -> None:
        self._finish_table()
        self._end_page()
        self.heading = f"{self.title} — {name}"
        self.cover_page = False
        self._bind(columns, spec)

    def _bind(self, columns: Sequence[Column], spec: colfmt.ColumnSpec) -> None:
        """One table's columns: formats, labels, text functions (a section's, formats.workbook)."""
        bound = spec.bind("pdf", columns)
        self._totals = colfmt.Totals(bound)
        self._shown = [i for i, f in enumerate(bound) if f is None or not f.hidden]
        self._project = len(self._shown) < len(columns)
        self._formats = [bound[i] for i in self._shown]
        self._labels = [f.header() if f else columns[i].name for i, f in self._enumerate(bound)]
        self._texts = [
            localize.text_function(f, self.locale, self.zone)
            if f
            else values.text_function(columns[i].kind)
            for i, f in self._enumerate(bound)
        ]
        self._right = [
            f.alignment() if f else ("right" if values.is_right_aligned(columns[i].kind) else "")
            for i, f in self._enumerate(bound)
        ]
        self._paints = [f for f in self._formats if f is not None and f.highlight]
        self._widths: list[float] | None = None
        self._row_index = 0
        self._meta_lines = self._metadata_lines()

    def _enumerate(
        self, bound: Sequence[colfmt.ColumnFormat | None]
    ) -> list[tuple[int, colfmt.ColumnFormat | None]]:
        return [(i, bound[i]) for i in self._shown]

    def _metadata_lines(self) -> list[str]:
        generated = self.context.generated_at or dt.datetime.now(dt.UTC)
        if generated.tzinfo is None:
            generated = generated.replace(tzinfo=dt.UTC)
        stamp = f"{generated:%Y-%m-%d %H:%M:%S} {generated.tzname() or ''}".rstrip()
        lines = [f"Generated {stamp} · execution {self.context.execution_id}"]
        if self.context.scheduled_for is not None:
            lines[0] += f" · scheduled for {self.context.scheduled_for.isoformat()}"
        params = self.context.parameters
        if params:
            text = "; ".join(f"{k} = {values.text(v)}" for k, v in params.items())
            lines.extend(
                self._meta.wrap(f"Parameters: {text}", self._page_w - 2 * MARGIN, max_lines=3)
            )
        return lines

    def render_batch(self, rows: Sequence[Row]) -> None:
        if self._totals:
            self._totals.add(rows)
        if self._project:
            shown = self._shown
            rows = [tuple(row[i] for i in shown) for row in rows]
        if self._widths is None:
            self._begin(rows[:SAMPLE_ROWS])
        body, texts, right = self._body, self._texts, self._right
        widths = self._widths
        assert widths is not None
        inner = [w - 2 * PAD_X for w in widths]
        max_lines, leading = self.max_lines, self._leading
        bottom = MARGIN + 14
        formats = self._formats
        for row in rows:
            paints = None
            if self._paints:
                paints = [
                    f.paint(v) if f is not None and f.highlight else None
                    for f, v in zip(formats, row, strict=True)
                ]
            cells: list[list[str]] = []
            nlines = 1
            for c, value in enumerate(row):
                if value is None:
                    cells.append([])
                    continue
                lines = body.wrap(texts[c](value), inner[c], max_lines)
                cells.append(lines)
                nlines = max(nlines, len(lines))
            height = nlines * leading + 2 * PAD_Y
            if self._y - height < bottom:
                self._end_page()
                self._start_page()
            self._draw_row(cells, right, height, paints)
            self._y -= height
            self._row_index += 1

    def _draw_totals(self) -> None:
        """The totals row: each total in its column's text (a count as an integer), bold."""
        assert self._widths is not None
        totals = self._totals.values(len(self._columns))
        count = localize.text_function(
            colfmt.ColumnFormat(name="", kind=colfmt.Kind.INTEGER), self.locale, self.zone
        )
        cells: list[list[str]] = []
        for c, i in enumerate(self._shown):
            value, fmt = totals[i], self._formats[c]
            if value is None:
                cells.append(["Total"] if c == 0 else [])
                continue
            text = (
                count(value) if fmt is not None and fmt.total == "count" else self._texts[c](value)
            )
            cells.append(self._head.wrap(text, self._widths[c] - 2 * PAD_X, self.max_lines))
        height = max((len(x) for x in cells), default=1) * self._leading + 2 * PAD_Y
        if self._y - height < MARGIN + 14:
            self._end_page()
            self._start_page()
        c = self._canvas
        c.setLineWidth(0.8)
        c.setStrokeGray(0.2)
        c.line(MARGIN, self._y, MARGIN + sum(self._widths), self._y)
        self._draw_cells(self._head, cells, self._right, height)
        self._y -= height

    def render_truncated(self, max_rows: int) -> None:
        if self._widths is None:
            self._begin(())
        height = self._leading * 2
        if self._y - height < MARGIN + 14:
            self._end_page()
            self._start_page()
        note = truncation_note(max_rows)
        self._draw_text(self._head, MARGIN + PAD_X, self._y - PAD_Y - self._ascent - 4, note)
        self._y -= height

    def _finish_table(self) -> None:
        if self._widths is None:  # no rows: one page with the header and "no rows"
            self._begin(())
            self._draw_text(self._body, MARGIN + PAD_X, self._y - 12, "(no rows)")
        elif self._totals:
            self._draw_totals()

    def render_close(self) -> None:
        self._finish_table()
        self._end_page()
        c = self._canvas
        c.beginForm(TOTAL_PAGES_FORM)
        self._draw_text(self._foot, 0, 0, str(self._page))
        c.endForm()
        pdfcover.define_forms(self)
        c.save()

    def render_abort(self) -> None:
        self._canvas = None  # nothing is written until save(); the partial file is removed

    # -- layout -----------------------------------------------------------------------------

    def _begin(self, sample: Sequence[Row]) -> None:
        """Before the first row: the orientation the content needs, the column widths, the
        optional first page, the first table page."""
        if self.orientation == "auto" and self._labels:
            # Landscape when the columns' natural widths do not fit across a portrait page.
            need = sum(self._natural_widths(sample, self._portrait[0] - 2 * MARGIN))
            wide = need > self._portrait[0] - 2 * MARGIN
            self._page_w, self._page_h = self._landscape if wide else self._portrait
            self._canvas.setPageSize((self._page_w, self._page_h))
            self._meta_lines = self._metadata_lines()
        self._widths = self._layout_columns(sample)
        if self.cover_page:
            pdfcover.draw_cover(self)
        self._start_page()

    def _natural_widths(self, sample: Sequence[Row], available: float) -> list[float]:
        natural: list[float] = []
        cap = available * 0.45
        for c, label in enumerate(self._labels):
            fmt = self._formats[c]
            if fmt is not None and fmt.width is not None:
                natural.append(fmt.width * self.font_size * 0.55 + 2 * PAD_X)
                continue
            head = max((self._head.width(w) for w in label.split()), default=0.0)
            longest = 0.0
            for row in sample:
                value = row[c]
                if value is not None:
                    longest = max(longest, self._body.width(self._texts[c](value)[:120]))
            natural.append(min(cap, max(head, longest, 12.0)) + 2 * PAD_X)
        return natural

    def _layout_columns(self, sample: Sequence[Row]) -> list[float]:
        available = self._page_w - 2 * MARGIN
        n = len(self._labels)
        if n == 0:
            return []
        natural = self._natural_widths(sample, available)
        total = sum(natural)
        if total <= available:
            scale = available / total
            return [w * scale for w in natural]
        # Water-fill: cap the widest columns at one width so that everything fits.
        floor = available / n
        low, high = floor, max(natural)
        for _ in range(40):
            mid = (low + high) / 2
            if sum(min(w, mid) for w in natural) > available:
                high = mid
            else:
                low = mid
        widths = [min(w, low) for w in natural]
        rest = available - sum(widths)
        return [w + rest / n for w in widths]

    def _draw_text(self, family: Any, x: float, y: float, text: str) -> None:
        """One line of text at (x, y): the text operators go straight into the page's content
        stream — what canvas.drawString emits for a TrueType font, without building a text
        object per call (the largest cost of a 10,000-row table)."""
        if not text:
            return
        canvas = self._canvas
        # The operators of a text are the same wherever it is drawn in this document (its
        # glyphs' subsets are the document's): cached, as a report's cells repeat (regions,
        # dates, quantities).
        if family.ascii_direct and text.isascii() and text.isprintable():
            # Its own subset-0 string (pdffonts.FontFamily.ascii_direct): nothing to look up.
            internal = self._ascii_names.get(family.base)
            if internal is None:
                internal = pdffonts.font(family.base).getSubsetInternalName(0, canvas._doc)
                self._ascii_names[family.base] = internal
            canvas._code.append(
                f"BT 1 0 0 1 {x:.2f} {y:.2f} Tm {internal} {family.size:g} Tf "
                f"({canvas._escape(text)}) Tj ET"
            )
            return
        key = (family.base, family.size, text)
        ops = self._text_ops.get(key)
        if ops is None:
            doc = canvas._doc
            size = f"{family.size:g}"
            code = []
            for name, part in family.runs(text):
                font = pdffonts.font(name)
                for subset, chunk in font.splitString(part, doc):
                    internal = font.getSubsetInternalName(subset, doc)
                    code.append(f"{internal} {size} Tf ({canvas._escape(chunk)}) Tj")
            ops = " ".join(code)
            if len(self._text_ops) >= TEXT_CACHE:
                self._text_ops.clear()
            self._text_ops[key] = ops
        canvas._code.append(f"BT 1 0 0 1 {x:.2f} {y:.2f} Tm {ops} ET")

    def _start_page(self) -> None:
        c = self._canvas
        self._page += 1
        top = self._page_h - MARGIN
        left, right = MARGIN, self._page_w - MARGIN
        y = top - 12
        title = self._title_font.wrap(self.heading, right - left, max_lines=1)[0]
        self._draw_text(self._title_font, left, y, visual(title))
        y -= 4
        for line in self._meta_lines:
            y -= 9.5
            self._draw_text(self._meta, left, y, visual(line))
        y -= 5
        c.setLineWidth(0.6)
        c.setStrokeGray(0.4)
        c.line(left, y, right, y)
        y -= 4
        if self._page == 1 and not self.cover_page and self.chart_spec is not None:
            y = pdfcover.place_chart(self, y) - 6
        self._y = self._draw_header_row(y)

    def _draw_header_row(self, top: float) -> float:
        assert self._widths is not None
        c = self._canvas
        cells = [
            self._head.wrap(label, w - 2 * PAD_X, max_lines=3)
            for label, w in zip(self._labels, self._widths, strict=True)
        ]
        nlines = max((len(x) for x in cells), default=1)
        height = nlines * self._leading + 2 * PAD_Y
        c.setFillGray(HEADER_BG)
        c.rect(MARGIN, top - height, sum(self._widths), height, stroke=0, fill=1)
        c.setFillGray(0)
        self._y = top
        self._draw_cells(self._head, cells, self._right, height)
        c.setLineWidth(0.5)
        c.setStrokeGray(0.35)
        c.line(MARGIN, top - height, MARGIN + sum(self._widths), top - height)
        self._row_index = 0
        return top - height

    def _draw_row(
        self,
        cells: list[list[str]],
        right: list[str],
        height: float,
        paints: list[colfmt.Highlight | None] | None = None,
    ) -> None:
        c = self._canvas
        assert self._widths is not None
        width = sum(self._widths)
        if self._row_index % 2:
            c.setFillGray(ZEBRA_BG)
            c.rect(MARGIN, self._y - height, width, height, stroke=0, fill=1)
            c.setFillGray(0)
        if paints:
            x = MARGIN
            for w, paint in zip(self._widths, paints, strict=True):
                if paint is not None and paint.fill:
                    c.setFillColor(paint.fill)
                    c.rect(x, self._y - height, w, height, stroke=0, fill=1)
                    c.setFillGray(0)
                x += w
        self._draw_cells(self._body, cells, right, height, paints)
        c.setLineWidth(0.25)
        c.setStrokeGray(RULE_GRAY)
        c.line(MARGIN, self._y - height, MARGIN + width, self._y - height)

    def _draw_cells(
        self,
        family: Any,
        cells: list[list[str]],
        align: list[str],
        height: float,
        paints: list[colfmt.Highlight | None] | None = None,
    ) -> None:
        assert self._widths is not None
        x = MARGIN
        top = self._y - PAD_Y - self._ascent
        leading = self._leading
        for c, lines in enumerate(cells):
            w = self._widths[c]
            y = top
            paint = paints[c] if paints else None
            if paint is not None and paint.color:
                self._canvas.setFillColor(paint.color)
            for line in lines:
                line = visual(line)
                if align[c] == "right":
                    self._draw_text(family, x + w - PAD_X - family.width(line), y, line)
                elif align[c] == "center":
                    self._draw_text(family, x + (w - family.width(line)) / 2, y, line)
                else:
                    self._draw_text(family, x + PAD_X, y, line)
                y -= leading
            if paint is not None and paint.color:
                self._canvas.setFillGray(0)
            x += w

    def _end_page(self) -> None:
        c = self._canvas
        y = MARGIN - 2
        footer = self._foot.wrap(self.heading, self._page_w / 2, max_lines=1)[0]
        self._draw_text(self._foot, MARGIN, y, footer)
        label = f"Page {self._page} of "
        # The total is a form drawn once at the end and referenced from every page.
        x = self._page_w - MARGIN - 28
        self._draw_text(self._foot, x - self._foot.width(label), y, label)
        c.saveState()
        c.translate(x, y)
        c.doForm(TOTAL_PAGES_FORM)
        c.restoreState()
        c.showPage()
