"""The stream engine's cells: one function per column, value → `<c>` XML, chosen by the value's
type, with the rules of formats.excel's docstring; a column format (formats.columns) gives the
column's numbers, dates or durations its number format, never turning them into text."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from decimal import MAX_PREC, Context, Decimal
from typing import Any, Final, Protocol
from zoneinfo import ZoneInfo

from reporthubd.connectors.base import Column, ColumnKind
from reporthubd.formats import localize, values
from reporthubd.formats import xlsxstream as xs
from reporthubd.formats.columns import ColumnFormat, Kind

MAX_CELL_CHARS: Final = 32_767
MAX_EXACT_DIGITS: Final = 15
MAX_EXACT_INT: Final = 10**MAX_EXACT_DIGITS - 1
EXCEL_EPOCH: Final = dt.date(1900, 3, 1)  # before this Excel's 1900 leap-year bug shifts days
EXACT: Final = Context(prec=MAX_PREC)  # normalize() must not round
_NUMBER_KINDS: Final = frozenset({Kind.NUMBER, Kind.INTEGER, Kind.CURRENCY, Kind.PERCENT})

StreamCell = Callable[[str, Any], str]


class CellOptions(Protocol):
    """What the cells read of their writer (formats.excel.ExcelWriter)."""

    zone: ZoneInfo
    decimal_overflow: str
    truncated_cells: int


def decimal_pattern(column: Column) -> str | None:
    """The number format of a decimal column with a known scale: `0.00` for numeric(12,2)."""
    if (
        column.kind is not ColumnKind.DECIMAL
        or column.scale is None
        or not 0 <= column.scale <= MAX_EXACT_DIGITS
    ):
        return None
    return "0" if column.scale == 0 else "0." + "0" * column.scale


def stream_cells(
    writer: CellOptions, decimal_style: int, fmt: ColumnFormat | None = None, fmt_style: int = 0
) -> StreamCell:
    """The stream engine's cell function for one column: value → `<c>` XML, chosen by the value's
    type, with the same rules as the XlsxWriter engine (see formats.excel's docstring).
    `fmt_style` is the style of the column's format, if it has one."""
    zone = writer.zone
    decimal_as_number = writer.decimal_overflow == "number"
    dec_s = f' s="{decimal_style}"' if decimal_style else ""
    num_s = ""
    date_s, datetime_s, time_s = xs.STYLE_DATE, xs.STYLE_DATETIME, xs.STYLE_TIME
    kind = fmt.kind if fmt is not None and fmt_style else None
    if kind in _NUMBER_KINDS:
        dec_s = num_s = f' s="{fmt_style}"'
    elif kind in (Kind.DATE, Kind.DATETIME):
        date_s = datetime_s = fmt_style
    elif kind is Kind.DURATION:
        assert fmt is not None
        return _duration_cells(fmt, fmt_style)

    plain = xs.PLAIN_TEXT.fullmatch

    def text(ref: str, value: str) -> str:
        if len(value) > MAX_CELL_CHARS:
            writer.truncated_cells += 1
            value = value[:MAX_CELL_CHARS]
        if plain(value):  # most text: nothing to escape, no edge spaces
            return f'<c r="{ref}" t="inlineStr"><is><t>{value}</t></is></c>'
        return xs.inline_string(ref, value)

    def c_int(ref: str, value: int) -> str:
        if -MAX_EXACT_INT <= value <= MAX_EXACT_INT:
            return f'<c r="{ref}"{num_s}><v>{int(value)}</v></c>'
        return text(ref, str(int(value)))

    def c_float(ref: str, value: float) -> str:
        if value - value == 0.0:
            return f'<c r="{ref}"{num_s}><v>{float(value)!r}</v></c>'
        return text(ref, values.float_text(value))

    def c_decimal(ref: str, value: Decimal) -> str:
        if not value.is_finite():
            return text(ref, values.decimal_text(value))
        digits = len(value.as_tuple().digits)
        if digits > MAX_EXACT_DIGITS:
            value = value.normalize(EXACT) if value else Decimal(0)
            digits = len(value.as_tuple().digits)
        if -300 < value.adjusted() < 300 and (digits <= MAX_EXACT_DIGITS or decimal_as_number):
            return f'<c r="{ref}"{dec_s}><v>{float(value)!r}</v></c>'
        return text(ref, values.decimal_text(value))

    def c_bool(ref: str, value: bool) -> str:
        return f'<c r="{ref}" t="b"><v>{1 if value else 0}</v></c>'

    def c_date(ref: str, value: dt.date) -> str:
        if value >= EXCEL_EPOCH:
            return f'<c r="{ref}" s="{date_s}"><v>{xs.date_serial(value)!r}</v></c>'
        return text(ref, value.isoformat())

    def c_datetime(ref: str, value: dt.datetime) -> str:
        if value.tzinfo is not None:
            value = value.astimezone(zone).replace(tzinfo=None)
        if value.date() >= EXCEL_EPOCH:
            return f'<c r="{ref}" s="{datetime_s}"><v>{xs.datetime_serial(value)!r}</v></c>'
        return text(ref, value.isoformat())

    def c_time(ref: str, value: dt.time) -> str:
        if value.tzinfo is not None:
            return text(ref, value.isoformat())
        return f'<c r="{ref}" s="{time_s}"><v>{xs.time_serial(value)!r}</v></c>'

    def c_bytes(ref: str, value: bytes) -> str:
        return text(ref, values.binary_text(value))

    def c_json(ref: str, value: Any) -> str:
        return text(ref, values.json_text(value))

    def c_other(ref: str, value: Any) -> str:
        return text(ref, values.text(value))

    by_type: dict[type, StreamCell] = {
        int: c_int,
        float: c_float,
        Decimal: c_decimal,
        bool: c_bool,
        str: text,
        dt.date: c_date,
        dt.datetime: c_datetime,
        dt.time: c_time,
        bytes: c_bytes,
        bytearray: c_bytes,
        memoryview: c_bytes,
        dict: c_json,
        list: c_json,
        tuple: c_json,
    }
    fallbacks: tuple[tuple[Any, StreamCell], ...] = (
        (bool, c_bool),
        (int, c_int),
        (float, c_float),
        (Decimal, c_decimal),
        (str, lambda ref, v: text(ref, str(v))),
        (dt.datetime, c_datetime),
        (dt.date, c_date),
        (dt.time, c_time),
        (bytes | bytearray | memoryview, c_bytes),
        (dict | list | tuple, c_json),
    )

    def cell(ref: str, value: Any) -> str:
        fn = by_type.get(type(value))
        if fn is None:
            fn = next((f for kind, f in fallbacks if isinstance(value, kind)), c_other)
            by_type[type(value)] = fn
        return fn(ref, value)

    return cell


def _duration_cells(fmt: ColumnFormat, style: int) -> StreamCell:
    """A duration column: seconds (or minutes... as `unit` says), timedeltas and times of day as
    Excel's day fractions under `[h]:mm:ss`; anything else as its text."""

    def cell(ref: str, value: Any) -> str:
        seconds = localize.duration_seconds(fmt, value)
        if seconds is None or seconds - seconds != 0.0:
            return xs.inline_string(ref, values.text(value)[:MAX_CELL_CHARS])
        return f'<c r="{ref}" s="{style}"><v>{seconds / 86400.0!r}</v></c>'

    return cell
