"""A minimal streaming .xlsx (SpreadsheetML) writer: rows are written as XML, batch by batch.

Why: the general-purpose writers spend most of their time per cell in layers this format does
not need (XlsxWriter: cell tables, dimension checks, attribute escaping; openpyxl: cell objects).
Here each cell is one f-string and each batch one write to a temporary file beside the output;
at the end of a sheet its XML (headed by the used range, known only then) is deflated into the
zip. Memory holds one batch, whatever the number of rows. bench/formats.py measures it
against XlsxWriter constant_memory and openpyxl write-only in one run.

What it writes is the subset of SpreadsheetML that XlsxWriter writes for the same features
(inline strings, numbers, booleans, dates as serial numbers with a number format, a bold
frozen header row, an autofilter, column widths), part for part, so the files open in Excel,
LibreOffice and openpyxl alike. Shared strings, formulas, merged cells and themes are not used.
"""

from __future__ import annotations

import datetime as dt
import re
import shutil
import tempfile
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Final
from xml.sax.saxutils import escape, quoteattr

MAIN_NS: Final = "http://schemas.openxmlformats.org/spreadsheetml/2006/main"
REL_NS: Final = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"
PKG_REL_NS: Final = "http://schemas.openxmlformats.org/package/2006/relationships"
XML_DECL: Final = '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'

EXCEL_EPOCH: Final = dt.datetime(1899, 12, 30)
EXCEL_EPOCH_ORDINAL: Final = EXCEL_EPOCH.toordinal()

# Style indexes in cellXfs (see `_styles`); decimal formats follow from FIRST_DECIMAL_STYLE on.
STYLE_BOLD: Final = 1
STYLE_DATE: Final = 2
STYLE_DATETIME: Final = 3
STYLE_TIME: Final = 4
FIRST_DECIMAL_STYLE: Final = 5

_INVALID_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
_EXCEL_ESCAPE = re.compile("(_x[0-9a-fA-F]{4}_)")
PLAIN_TEXT: Final = re.compile(
    r"(?:[^\s&<>_\x00-\x1f\ud800-\udfff\ufffe\uffff]"
    r"[^&<>_\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]*)?(?<!\s)"
)
"""Text that needs no escaping and no xml:space: no markup characters, no `_` (Excel's _xHHHH_),
no characters XML cannot carry, no leading or trailing whitespace."""


@dataclass(frozen=True)
class CellStyle:
    """A cell format beyond the built-in ones: a number format, bold, a horizontal alignment."""

    number_format: str | None = None
    bold: bool = False
    align: str | None = None


@dataclass(frozen=True)
class Highlight:
    """A differential format for conditional formatting: text colour and fill, `RRGGBB`."""

    color: str | None = None
    fill: str | None = None


def column_letter(index: int) -> str:
    """0 → A, 25 → Z, 26 → AA."""
    letters = ""
    index += 1
    while index:
        index, rem = divmod(index - 1, 26)
        letters = chr(65 + rem) + letters
    return letters


def text_xml(value: str) -> str:
    """Text as the content of <t>: XML-escaped; characters XML cannot carry written as Excel's
    `_xHHHH_` escapes (and a literal `_xHHHH_` protected), as Excel itself does."""
    if "_x" in value:
        value = _EXCEL_ESCAPE.sub(r"_x005F\1", value)
    if _INVALID_XML.search(value):
        value = _INVALID_XML.sub(lambda m: f"_x{ord(m.group()):04X}_", value)
    return escape(value)


def inline_string(ref: str, value: str, style: int = 0) -> str:
    s = f' s="{style}"' if style else ""
    text = text_xml(value)
    if value[:1].isspace() or value[-1:].isspace():
        return f'<c r="{ref}"{s} t="inlineStr"><is><t xml:space="preserve">{text}</t></is></c>'
    return f'<c r="{ref}"{s} t="inlineStr"><is><t>{text}</t></is></c>'


def date_serial(value: dt.date) -> float:
    return float(value.toordinal() - EXCEL_EPOCH_ORDINAL)


def datetime_serial(value: dt.datetime) -> float:
    delta = value - EXCEL_EPOCH
    return delta.days + (delta.seconds + delta.microseconds / 1e6) / 86400.0


def time_serial(value: dt.time) -> float:
    seconds = value.hour * 3600 + value.minute * 60 + value.second + value.microsecond / 1e6
    return seconds / 86400.0


class Workbook:
    """Sheets are written one after another: `add_sheet`, rows, `add_sheet`..., `close`."""

    def __init__(
        self,
        path: Path,
        decimal_formats: Sequence[str | CellStyle],
        *,
        tmpdir: Path,
        compresslevel: int = 6,
        highlights: Sequence[Highlight] = (),
    ) -> None:
        """`decimal_formats` are the styles FIRST_DECIMAL_STYLE, +1...: a number format code or
        a CellStyle; `highlights` the differential formats of conditional formatting."""
        self._tmpdir = tmpdir
        self._head = ""
        self._zip = zipfile.ZipFile(
            path, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=compresslevel
        )
        self._decimal_formats = [
            CellStyle(number_format=f) if isinstance(f, str) else f for f in decimal_formats
        ]
        self._highlights = list(highlights)
        self._sheets: list[tuple[str, str | None]] = []  # (name, autofilter ref)
        self._drawings: list[int] = []  # the sheets holding a chart, by number
        self._out: IO[bytes] | None = None
        self._closed = False

    def use_styles(
        self, decimal_formats: Sequence[str | CellStyle], highlights: Sequence[Highlight]
    ) -> None:
        """The styles grown by a later sheet (the same numbering, more entries)."""
        self._decimal_formats = [
            CellStyle(number_format=f) if isinstance(f, str) else f for f in decimal_formats
        ]
        self._highlights = list(highlights)

    def sheet_names(self) -> set[str]:
        return {name for name, _ in self._sheets}

    def decimal_style(self, index: int) -> int:
        return FIRST_DECIMAL_STYLE + index

    def add_sheet(
        self,
        name: str,
        widths: Sequence[float],
        *,
        freeze_header: bool,
        hidden: Sequence[bool] = (),
    ) -> None:
        """Start a sheet. Its rows go to a temporary file first: the sheet's XML must begin
        with its dimension (the used range), known only at its end."""
        self._end_sheet(None, None)
        number = len(self._sheets) + 1
        self._sheets.append((name, None))
        selected = ' tabSelected="1"' if number == 1 else ""
        pane = (
            '<pane ySplit="1" topLeftCell="A2" activePane="bottomLeft" state="frozen"/>'
            '<selection pane="bottomLeft"/>'
            if freeze_header
            else ""
        )
        cols = "".join(
            f'<col min="{i}" max="{i}" width="{w:.2f}" customWidth="1"'
            + (' hidden="1"/>' if i <= len(hidden) and hidden[i - 1] else "/>")
            for i, w in enumerate(widths, start=1)
        )
        self._head = (
            f'<sheetViews><sheetView{selected} workbookViewId="0">{pane}</sheetView></sheetViews>'
            '<sheetFormatPr defaultRowHeight="15"/>'
            + (f"<cols>{cols}</cols>" if cols else "")
            + "<sheetData>"
        )
        self._out = tempfile.TemporaryFile(dir=self._tmpdir, prefix="xlsx-sheet-")  # noqa: SIM115 - closed in _end_sheet/abort

    def write(self, xml: str) -> None:
        assert self._out is not None
        self._out.write(xml.encode("utf-8"))

    def add_drawing(self, chart_xml: str, drawing_xml: str) -> None:
        """Give the current sheet one drawing holding one chart (formats.xlsxstreamchart):
        the parts and their relationships now, the sheet's <drawing> when it ends."""
        sheet = len(self._sheets)
        assert self._out is not None and sheet not in self._drawings
        self._drawings.append(sheet)
        n = len(self._drawings)
        z = self._zip
        z.writestr(f"xl/charts/chart{n}.xml", chart_xml)
        z.writestr(f"xl/drawings/drawing{n}.xml", drawing_xml)
        z.writestr(
            f"xl/drawings/_rels/drawing{n}.xml.rels",
            _rels(f"{REL_NS}/chart", f"../charts/chart{n}.xml"),
        )
        z.writestr(
            f"xl/worksheets/_rels/sheet{sheet}.xml.rels",
            _rels(f"{REL_NS}/drawing", f"../drawings/drawing{n}.xml"),
        )

    def end_sheet(self, dimension: str, autofilter: str | None, conditional: str = "") -> None:
        """`conditional`: the sheet's <conditionalFormatting> elements (see `highlights`)."""
        self._end_sheet(dimension, autofilter, conditional)

    def _end_sheet(
        self, dimension: str | None, autofilter: str | None, conditional: str = ""
    ) -> None:
        body = self._out
        if body is None:
            return
        self._out = None
        number = len(self._sheets)
        tail = "</sheetData>"
        if autofilter:
            tail += f'<autoFilter ref="{autofilter}"/>'
            name, _ = self._sheets[-1]
            self._sheets[-1] = (name, autofilter)
        tail += conditional
        tail += (
            '<pageMargins left="0.7" right="0.7" top="0.75" bottom="0.75" header="0.3" '
            'footer="0.3"/>'
        )
        if number in self._drawings:
            tail += '<drawing r:id="rId1"/>'
        tail += "</worksheet>"
        head = (
            f'{XML_DECL}<worksheet xmlns="{MAIN_NS}" xmlns:r="{REL_NS}">'
            f'<dimension ref="{dimension or "A1"}"/>{self._head}'
        )
        try:
            # Zip64 only when a sheet needs it: some readers warn about Zip64 entries.
            size = body.seek(0, 2) + len(head) * 4 + len(tail) * 4
            body.seek(0)
            name = f"xl/worksheets/sheet{number}.xml"
            large = size >= zipfile.ZIP64_LIMIT
            with self._zip.open(name, "w", force_zip64=large) as out:
                out.write(head.encode("utf-8"))
                shutil.copyfileobj(body, out, 1 << 20)
                out.write(tail.encode("utf-8"))
        finally:
            body.close()

    def close(self) -> None:
        if self._closed:
            return
        self._end_sheet(None, None)
        z = self._zip
        z.writestr("[Content_Types].xml", self._content_types())
        z.writestr("_rels/.rels", self._root_rels())
        z.writestr("docProps/app.xml", self._app())
        z.writestr("docProps/core.xml", self._core())
        z.writestr("xl/workbook.xml", self._workbook())
        z.writestr("xl/_rels/workbook.xml.rels", self._workbook_rels())
        z.writestr("xl/styles.xml", self._styles())
        z.close()
        self._closed = True

    def abort(self) -> None:
        """Close the file without finishing it (the caller removes it)."""
        if self._out is not None:
            self._out.close()  # a temporary file: removed on close
            self._out = None
        self._zip.close()
        self._closed = True

    # -- package parts --------------------------------------------------------------------

    def _content_types(self) -> str:
        sheet_type = "application/vnd.openxmlformats-officedocument.spreadsheetml.worksheet+xml"
        sheets = "".join(
            f'<Override PartName="/xl/worksheets/sheet{i}.xml" ContentType="{sheet_type}"/>'
            for i in range(1, len(self._sheets) + 1)
        )
        for n in range(1, len(self._drawings) + 1):
            sheets += (
                f'<Override PartName="/xl/charts/chart{n}.xml" ContentType="application/'
                'vnd.openxmlformats-officedocument.drawingml.chart+xml"/>'
                f'<Override PartName="/xl/drawings/drawing{n}.xml" ContentType="application/'
                'vnd.openxmlformats-officedocument.drawing+xml"/>'
            )
        return (
            f'{XML_DECL}<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
            '<Default Extension="rels" '
            'ContentType="application/vnd.openxmlformats-package.relationships+xml"/>'
            '<Default Extension="xml" ContentType="application/xml"/>'
            '<Override PartName="/docProps/app.xml" '
            'ContentType="application/vnd.openxmlformats-officedocument.extended-properties+xml"/>'
            '<Override PartName="/docProps/core.xml" '
            'ContentType="application/vnd.openxmlformats-package.core-properties+xml"/>'
            '<Override PartName="/xl/styles.xml" '
            'ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.styles+xml"/>'
            '<Override PartName="/xl/workbook.xml" ContentType="application/'
            'vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml"/>'
            f"{sheets}</Types>"
        )

    def _root_rels(self) -> str:
        base = "http://schemas.openxmlformats.org"
        return (
            f'{XML_DECL}<Relationships xmlns="{PKG_REL_NS}">'
            f'<Relationship Id="rId1" Type="{base}/officeDocument/2006/relationships/'
            'officeDocument" Target="xl/workbook.xml"/>'
            f'<Relationship Id="rId2" Type="{base}/package/2006/relationships/metadata/'
            'core-properties" Target="docProps/core.xml"/>'
            f'<Relationship Id="rId3" Type="{base}/officeDocument/2006/relationships/'
            'extended-properties" Target="docProps/app.xml"/></Relationships>'
        )

    def _app(self) -> str:
        names = "".join(f"<vt:lpstr>{escape(n)}</vt:lpstr>" for n, _ in self._sheets)
        count = len(self._sheets)
        return (
            f"{XML_DECL}<Properties xmlns="
            '"http://schemas.openxmlformats.org/officeDocument/2006/extended-properties" '
            'xmlns:vt="http://schemas.openxmlformats.org/officeDocument/2006/docPropsVTypes">'
            "<Application>reporthubd</Application><DocSecurity>0</DocSecurity>"
            "<ScaleCrop>false</ScaleCrop><HeadingPairs>"
            '<vt:vector size="2" baseType="variant"><vt:variant><vt:lpstr>Worksheets</vt:lpstr>'
            f"</vt:variant><vt:variant><vt:i4>{count}</vt:i4></vt:variant></vt:vector>"
            f'</HeadingPairs><TitlesOfParts><vt:vector size="{count}" baseType="lpstr">{names}'
            "</vt:vector></TitlesOfParts><LinksUpToDate>false</LinksUpToDate>"
            "<SharedDoc>false</SharedDoc><HyperlinksChanged>false</HyperlinksChanged>"
            "<AppVersion>12.0000</AppVersion></Properties>"
        )

    def _core(self) -> str:
        now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        return (
            f"{XML_DECL}<cp:coreProperties "
            'xmlns:cp="http://schemas.openxmlformats.org/package/2006/metadata/core-properties" '
            'xmlns:dc="http://purl.org/dc/elements/1.1/" xmlns:dcterms="http://purl.org/dc/terms/" '
            'xmlns:dcmitype="http://purl.org/dc/dcmitype/" '
            'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">'
            "<dc:creator>reporthubd</dc:creator>"
            f'<dcterms:created xsi:type="dcterms:W3CDTF">{now}</dcterms:created>'
            f'<dcterms:modified xsi:type="dcterms:W3CDTF">{now}</dcterms:modified>'
            "</cp:coreProperties>"
        )

    def _workbook(self) -> str:
        sheets = "".join(
            f'<sheet name={quoteattr(name)} sheetId="{i}" r:id="rId{i}"/>'
            for i, (name, _) in enumerate(self._sheets, start=1)
        )
        filters = "".join(
            f'<definedName name="_xlnm._FilterDatabase" localSheetId="{i}" hidden="1">'
            f"{escape(sheet_ref(name))}!{_absolute(ref)}</definedName>"
            for i, (name, ref) in enumerate(self._sheets)
            if ref
        )
        defined = f"<definedNames>{filters}</definedNames>" if filters else ""
        return (
            f'{XML_DECL}<workbook xmlns="{MAIN_NS}" xmlns:r="{REL_NS}">'
            '<workbookPr defaultThemeVersion="124226"/><bookViews>'
            '<workbookView xWindow="240" yWindow="15" windowWidth="16095" windowHeight="9660"/>'
            f'</bookViews><sheets>{sheets}</sheets>{defined}<calcPr calcId="124519"/></workbook>'
        )

    def _workbook_rels(self) -> str:
        base = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"
        n = len(self._sheets)
        rels = "".join(
            f'<Relationship Id="rId{i}" Type="{base}/worksheet" Target="worksheets/sheet{i}.xml"/>'
            for i in range(1, n + 1)
        )
        return (
            f'{XML_DECL}<Relationships xmlns="{PKG_REL_NS}">{rels}'
            f'<Relationship Id="rId{n + 1}" Type="{base}/styles" Target="styles.xml"/>'
            "</Relationships>"
        )

    def _styles(self) -> str:
        styles = [
            CellStyle("yyyy-mm-dd"),
            CellStyle("yyyy-mm-dd hh:mm:ss"),
            CellStyle("hh:mm:ss"),
            *self._decimal_formats,
        ]
        formats: list[str] = []
        for style in styles:
            if style.number_format is not None and style.number_format not in formats:
                formats.append(style.number_format)
        num_fmts = "".join(
            f'<numFmt numFmtId="{164 + i}" formatCode={quoteattr(code)}/>'
            for i, code in enumerate(formats)
        )
        xfs = [
            '<xf numFmtId="0" fontId="0" fillId="0" borderId="0" xfId="0"/>',
            '<xf numFmtId="0" fontId="1" fillId="0" borderId="0" xfId="0" applyFont="1"/>',
        ] + [_xf(style, formats) for style in styles]
        dxfs = "".join(_dxf(h) for h in self._highlights)
        font = '<sz val="11"/><name val="Calibri"/><family val="2"/>'
        return (
            f'{XML_DECL}<styleSheet xmlns="{MAIN_NS}">'
            f'<numFmts count="{len(formats)}">{num_fmts}</numFmts>'
            f'<fonts count="2"><font>{font}</font><font><b/>{font}</font></fonts>'
            '<fills count="2"><fill><patternFill patternType="none"/></fill>'
            '<fill><patternFill patternType="gray125"/></fill></fills>'
            '<borders count="1"><border><left/><right/><top/><bottom/><diagonal/></border>'
            '</borders><cellStyleXfs count="1">'
            '<xf numFmtId="0" fontId="0" fillId="0" borderId="0"/></cellStyleXfs>'
            f'<cellXfs count="{len(xfs)}">{"".join(xfs)}</cellXfs>'
            '<cellStyles count="1"><cellStyle name="Normal" xfId="0" builtinId="0"/></cellStyles>'
            f'<dxfs count="{len(self._highlights)}">{dxfs}</dxfs>'
            '<tableStyles count="0" defaultTableStyle="TableStyleMedium9" '
            'defaultPivotStyle="PivotStyleLight16"/></styleSheet>'
        )


def _xf(style: CellStyle, formats: list[str]) -> str:
    fmt = 0 if style.number_format is None else 164 + formats.index(style.number_format)
    attrs = f'numFmtId="{fmt}" fontId="{1 if style.bold else 0}" fillId="0" borderId="0" xfId="0"'
    if fmt:
        attrs += ' applyNumberFormat="1"'
    if style.bold:
        attrs += ' applyFont="1"'
    if style.align is None:
        return f"<xf {attrs}/>"
    return f'<xf {attrs} applyAlignment="1"><alignment horizontal="{style.align}"/></xf>'


def _dxf(highlight: Highlight) -> str:
    font = f'<font><color rgb="FF{highlight.color}"/></font>' if highlight.color else ""
    fill = (
        f'<fill><patternFill><bgColor rgb="FF{highlight.fill}"/></patternFill></fill>'
        if highlight.fill
        else ""
    )
    return f"<dxf>{font}{fill}</dxf>"


def _rels(kind: str, target: str) -> str:
    return (
        f'{XML_DECL}<Relationships xmlns="{PKG_REL_NS}">'
        f'<Relationship Id="rId1" Type="{kind}" Target="{target}"/></Relationships>'
    )


def sheet_ref(name: str) -> str:
    """A sheet's name as a formula writes it (quoted where it is not a plain name)."""
    if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.]*", name):
        return name
    return "'" + name.replace("'", "''") + "'"


def _absolute(ref: str) -> str:
    """A1:F4 → $A$1:$F$4"""
    return ":".join(re.sub(r"([A-Z]+)(\d+)", r"$\1$\2", part) for part in ref.split(":"))
