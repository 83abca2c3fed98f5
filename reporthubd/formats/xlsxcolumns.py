"""Column formats on the stream engine's sheets: the styles they need, conditional formatting for
their highlights, and the totals row.

Highlights are Excel's own conditional formatting (a `cellIs` rule per comparison, stopping at
the first that holds, as PDF does), so they cost nothing per cell and stay live when a reader
edits a value. The totals row holds the values computed while the rows streamed (formats.columns
`Totals`), bold, in the column's number format (a count as an integer), outside the autofilter.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Final

import babel

from reporthubd.connectors.base import Column
from reporthubd.formats import localize, values, xlsxcells
from reporthubd.formats import xlsxstream as xs
from reporthubd.formats.columns import UNITS, ColumnFormat, Highlight, Kind

TOTAL_LABEL: Final = "Total"
_OPERATORS: Final = {
    "lt": "lessThan",
    "le": "lessThanOrEqual",
    "gt": "greaterThan",
    "ge": "greaterThanOrEqual",
    "eq": "equal",
    "ne": "notEqual",
}


@dataclass
class Layout:
    """Every style of a workbook's columns: Workbook(decimal_formats=styles) numbers them from
    FIRST_DECIMAL_STYLE on."""

    styles: list[str | xs.CellStyle] = field(default_factory=list)
    decimal_styles: list[int] = field(default_factory=list)
    """Per column: the style of a decimal column's scale (`0.00`), 0 for none."""
    format_styles: list[int] = field(default_factory=list)
    """Per column: the style of its column format, 0 for none."""
    total_styles: list[int] = field(default_factory=list)
    total_days: list[float | None] = field(default_factory=list)
    """Per column: the days in one unit of a numeric duration's total (Excel counts days)."""
    highlights: list[xs.Highlight] = field(default_factory=list)
    rules: list[tuple[int, list[tuple[Highlight, int]]]] = field(default_factory=list)
    """(column index, [(rule, differential format id)])."""

    def style(self, style: str | xs.CellStyle) -> int:
        if style not in self.styles:
            self.styles.append(style)
        return xs.FIRST_DECIMAL_STYLE + self.styles.index(style)


def layout(
    columns: Sequence[Column],
    bound: Sequence[ColumnFormat | None],
    locale: babel.Locale,
    *,
    base: Layout | None = None,
) -> Layout:
    """`base`: the layout of the workbook's previous sheet, whose styles this one extends
    (one styles.xml serves every sheet: formats.workbook)."""
    out = Layout(styles=base.styles, highlights=base.highlights) if base else Layout()
    for index, (column, fmt) in enumerate(zip(columns, bound, strict=True)):
        pattern = xlsxcells.decimal_pattern(column)
        out.decimal_styles.append(out.style(pattern) if pattern is not None else 0)
        days = UNITS[fmt.unit] / 86400 if fmt is not None and fmt.kind is Kind.DURATION else None
        out.total_days.append(days)
        if fmt is None:
            out.format_styles.append(0)
            out.total_styles.append(out.style(xs.CellStyle(bold=True)))
            continue
        code = localize.excel_number_format(fmt, locale)
        align = fmt.align
        out.format_styles.append(
            out.style(xs.CellStyle(number_format=code, align=align))
            if fmt.kind is not Kind.TEXT or align
            else 0
        )
        total_code = "#,##0" if fmt.total == "count" else code
        out.total_styles.append(out.style(xs.CellStyle(total_code, bold=True, align=align)))
        if fmt.highlight:
            rules = []
            for rule in fmt.highlight:
                out.highlights.append(xs.Highlight(color=_rgb(rule.color), fill=_rgb(rule.fill)))
                rules.append((rule, len(out.highlights) - 1))
            out.rules.append((index, rules))
    return out


def _rgb(colour: str | None) -> str | None:
    return colour[1:] if colour else None


def conditional_xml(out: Layout, letters: Sequence[str], first: int, last: int) -> str:
    """The <conditionalFormatting> of one sheet's data rows `first`..`last` (1-based)."""
    if last < first:
        return ""
    parts = []
    priority = 1
    for index, rules in out.rules:
        ref = f"{letters[index]}{first}:{letters[index]}{last}"
        cf = []
        for rule, dxf in rules:
            value = rule.value
            if isinstance(value, str):
                formula = '"' + value.replace('"', '""') + '"'
            else:
                formula = values.text(value)
            cf.append(
                f'<cfRule type="cellIs" dxfId="{dxf}" priority="{priority}" stopIfTrue="1" '
                f'operator="{_OPERATORS[rule.op]}"><formula>{xs.text_xml(formula)}</formula>'
                "</cfRule>"
            )
            priority += 1
        parts.append(f'<conditionalFormatting sqref="{ref}">{"".join(cf)}</conditionalFormatting>')
    return "".join(parts)


def total_row(out: Layout, letters: Sequence[str], r: int, totals: Sequence[Any]) -> str:
    """The totals row as `<row>` XML: each total in its column's style, `Total` in the first
    column when that column has none."""
    cells = []
    for c, value in enumerate(totals):
        ref = f"{letters[c]}{r}"
        style = out.total_styles[c]
        if value is None:
            if c == 0:
                cells.append(xs.inline_string(ref, TOTAL_LABEL, xs.STYLE_BOLD))
            continue
        if isinstance(value, dt.timedelta):
            value = value.total_seconds() / 86400
        elif out.total_days[c] is not None and isinstance(value, int | float | Decimal):
            value = float(value) * (out.total_days[c] or 1.0)
        if isinstance(value, int | float | Decimal) and not isinstance(value, bool):
            number = float(value)
            if number - number == 0.0:
                cells.append(f'<c r="{ref}" s="{style}"><v>{number!r}</v></c>')
                continue
        if isinstance(value, dt.datetime) and value.tzinfo is None:
            cells.append(f'<c r="{ref}" s="{style}"><v>{xs.datetime_serial(value)!r}</v></c>')
            continue
        if isinstance(value, dt.date) and not isinstance(value, dt.datetime):
            cells.append(f'<c r="{ref}" s="{style}"><v>{xs.date_serial(value)!r}</v></c>')
            continue
        cells.append(xs.inline_string(ref, values.text(value)[: xlsxcells.MAX_CELL_CHARS]))
    return f'<row r="{r}">{"".join(cells)}</row>'
