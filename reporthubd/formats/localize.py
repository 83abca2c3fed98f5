"""Locale-aware text and number formats for column formats, from CLDR through Babel.

One pattern per column, built once from the locale's own CLDR patterns (its currency, percent
and decimal patterns, so `de_DE` puts the euro sign after the number and `en_IN` groups by
lakh), then applied per cell (PDF, HTML) or turned into an Excel number format code (Excel
draws the separators of the reader's own locale; the pattern decides digits, grouping, the
currency symbol and its place).

| kind | de_DE | en_US | Excel code (en_US) |
|---|---|---|---|
| number, 2 decimals | 1.234,56 | 1,234.56 | `#,##0.00` |
| integer | 1.234 | 1,234 | `#,##0` |
| currency EUR | 1.234,56 € | €1,234.56 | `"€"#,##0.00` |
| percent, 1 decimal (0.125) | 12,5 % | 12.5% | `#,##0.0%` |
| date (medium) | 31.12.2026 | Dec 31, 2026 | `yyyy-mm-dd` |
| datetime (medium) | 31.12.2026, 23:30:00 | Dec 31, 2026, 11:30:00 PM | `yyyy-mm-dd hh:mm:ss` |
| duration | 26:03:04 | 26:03:04 | `[h]:mm:ss` |

Timestamps with a zone are shown in the report's time zone; naive ones as they are. CSV and JSON
stay raw unless `formatted: true` asks for this text there too (`TextRows`). Excel dates
stay ISO: a workbook travels between locales, and an ISO date reads the same in all of them.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Sequence
from dataclasses import replace
from decimal import Decimal
from functools import lru_cache
from typing import Any, Final, Literal
from zoneinfo import ZoneInfo

import babel
import babel.dates
import babel.numbers

from reporthubd.connectors.base import Column, ColumnKind, Row
from reporthubd.formats import values
from reporthubd.formats.base import FormatError
from reporthubd.formats.columns import UNITS, ColumnFormat, Kind

DEFAULT_LOCALE: Final = "en_US"
_NUMBER_PART: Final = re.compile(r"[#0,.]+")
_EXCEL_PLAIN: Final = frozenset("$-+/():!^&'~{}<>= ")


def parse_locale(fmt: str, name: Any) -> babel.Locale:
    """`format_options.locale` (`de_DE`, `de-DE`, `en`) → Babel's Locale, or FormatError."""
    if name is None:
        name = DEFAULT_LOCALE
    if not isinstance(name, str) or not name:
        raise FormatError(f"{fmt} format option 'locale' must be a locale name such as 'de_DE'")
    try:
        return babel.Locale.parse(name.replace("-", "_"))
    except (babel.UnknownLocaleError, ValueError, TypeError):
        raise FormatError(f"{fmt} format option 'locale': unknown locale {name!r}") from None


def _decimals(spec: ColumnFormat) -> int:
    if spec.decimals is not None:
        return spec.decimals
    if spec.kind is Kind.CURRENCY and spec.currency:
        return int(babel.numbers.get_currency_precision(spec.currency))
    if spec.kind is Kind.PERCENT:
        return 1
    if spec.kind is Kind.INTEGER:
        return 0
    return 2


def number_pattern(spec: ColumnFormat, locale: babel.Locale) -> str:
    """The CLDR pattern of a numeric column: the locale's pattern for its kind with the spec's
    decimals and grouping (only the positive part: the minus sign is the locale's)."""
    if spec.kind is Kind.CURRENCY:
        base = locale.currency_formats["standard"].pattern
    elif spec.kind is Kind.PERCENT:
        base = locale.percent_formats[None].pattern
    else:
        base = locale.decimal_formats[None].pattern
    base = base.split(";")[0]
    found = _NUMBER_PART.search(base)
    integer = found.group().split(".")[0] if found else "#,##0"
    if not spec.grouping:
        integer = "0"
    decimals = _decimals(spec)
    digits = integer + ("." + "0" * decimals if decimals else "")
    if found is None:
        return digits
    return str(base[: found.start()]) + digits + str(base[found.end() :])


def excel_number_format(spec: ColumnFormat, locale: babel.Locale) -> str:
    """The Excel number format code of a column format (see the module docstring)."""
    if spec.kind is Kind.DATE:
        return "yyyy-mm-dd"
    if spec.kind is Kind.DATETIME:
        return "yyyy-mm-dd hh:mm:ss"
    if spec.kind is Kind.DURATION:
        return "[h]:mm:ss"
    if spec.kind is Kind.TEXT:
        return "@"
    pattern = number_pattern(spec, locale)
    symbol = ""
    if spec.kind is Kind.CURRENCY and spec.currency:
        symbol = babel.numbers.get_currency_symbol(spec.currency, locale)
    code = []
    for ch in pattern:
        if ch in "#0,.%":
            code.append(ch)
        elif ch == "¤":
            code.append('"' + symbol.replace('"', "") + '"')
        elif ch in _EXCEL_PLAIN:
            code.append(ch)
        elif ch == "\xa0" or ch == "\u202f":
            code.append(" ")
        else:
            code.append("\\" + ch)
    return "".join(code)


def duration_seconds(spec: ColumnFormat, value: Any) -> float | None:
    """A duration value as seconds: a number counted in `unit`, a timedelta, a time of day."""
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    if isinstance(value, dt.time):
        return value.hour * 3600 + value.minute * 60 + value.second + value.microsecond / 1e6
    if isinstance(value, int | float | Decimal) and not isinstance(value, bool):
        return float(value) * UNITS[spec.unit]
    return None


def duration_text(seconds: float) -> str:
    sign = "-" if seconds < 0 else ""
    whole = round(abs(seconds))
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{sign}{hours}:{minutes:02d}:{secs:02d}"


def text_function(spec: ColumnFormat, locale: babel.Locale, zone: ZoneInfo) -> Callable[[Any], str]:
    """value → the text a reader sees for one column (PDF and HTML cells, totals)."""
    kind = spec.kind
    if kind in (Kind.NUMBER, Kind.INTEGER, Kind.CURRENCY, Kind.PERCENT):
        pattern = babel.numbers.parse_pattern(number_pattern(spec, locale))
        currency = spec.currency if kind is Kind.CURRENCY else None

        def slow(value: Any) -> str:
            return str(pattern.apply(value, locale, currency=currency, currency_digits=False))

        digits = _fast_digits(pattern, locale, currency, slow)
        render = slow if digits is None else digits

        def number(value: Any) -> str:
            if isinstance(value, bool) or not isinstance(value, int | float | Decimal):
                return values.text(value)
            if isinstance(value, float) and value - value != 0.0:
                return values.float_text(value)
            if isinstance(value, Decimal) and not value.is_finite():
                return values.decimal_text(value)
            return render(value)

        return number
    if kind is Kind.DATE:
        style = spec.style

        # A report's dates repeat (a day per row, a few hundred days): a bounded cache of
        # their text halves the cost of a date column.
        @lru_cache(maxsize=4096)
        def date(value: Any) -> str:
            if isinstance(value, dt.datetime):
                if value.tzinfo is not None:
                    value = value.astimezone(zone)
                value = value.date()
            if isinstance(value, dt.date):
                return str(babel.dates.format_date(value, style, locale=locale))
            return values.text(value)

        return date
    if kind is Kind.DATETIME:
        style = spec.style
        if style in ("medium", "short"):  # no zone name in the time: its halves are cached
            return _cached_timestamps(style, locale, zone)

        def timestamp(value: Any) -> str:
            if isinstance(value, dt.datetime):
                if value.tzinfo is None:  # shown as it is: Babel takes a naive time as UTC
                    value = value.replace(tzinfo=dt.UTC)
                    shown: dt.tzinfo = dt.UTC
                else:
                    shown = zone
                return str(babel.dates.format_datetime(value, style, tzinfo=shown, locale=locale))
            if isinstance(value, dt.date):
                return str(babel.dates.format_date(value, style, locale=locale))
            return values.text(value)

        return timestamp
    if kind is Kind.DURATION:

        def duration(value: Any) -> str:
            seconds = duration_seconds(spec, value)
            return values.text(value) if seconds is None else duration_text(seconds)

        return duration
    return values.text


def _cached_timestamps(style: str, locale: babel.Locale, zone: ZoneInfo) -> Callable[[Any], str]:
    """What babel.dates.format_datetime writes for the medium and short styles (the locale's
    datetime pattern over the date's and the time's texts), with both halves cached: dates and
    times of a report repeat, and format_datetime was a formatted PDF's largest cost."""
    width: Literal["medium", "short"] = "medium" if style == "medium" else "short"
    joined = str(babel.dates.get_datetime_format(width, locale=locale)).replace("'", "")

    @lru_cache(maxsize=4096)
    def day(value: dt.date) -> str:
        return str(babel.dates.format_date(value, style, locale=locale))

    @lru_cache(maxsize=4096)
    def clock(value: dt.time) -> str:
        return str(babel.dates.format_time(value, style, locale=locale))

    def timestamp(value: Any) -> str:
        if isinstance(value, dt.datetime):
            # A naive time is shown as it is (Babel would take it as UTC and show it so).
            local = value.astimezone(zone) if value.tzinfo is not None else value
            return joined.replace("{0}", clock(local.time())).replace("{1}", day(local.date()))
        if isinstance(value, dt.date):
            return day(value)
        return values.text(value)

    return timestamp


_PROBES: Final = (
    Decimal("0"),
    Decimal("-0.004"),
    Decimal("1"),
    Decimal("-1234567.891"),
    Decimal("999.995"),
    Decimal("0.125"),
    Decimal("12345678901234.5"),
    1234.5,
    -2.675,
    7,
    -1000000,
)


def _fast_digits(
    pattern: Any, locale: babel.Locale, currency: str | None, slow: Callable[[Any], str]
) -> Callable[[Any], str] | None:
    """The same text as Babel's `NumberPattern.apply` for the plain patterns (fixed decimals,
    groups of three or none, Latin digits), from Python's own decimal formatting: Babel's apply
    is 80% of a formatted PDF's number cost (bench/formats.py --suite pdf_chart). The prefix and
    suffix (currency symbol, percent sign, minus) are Babel's, read off a rendered 1 and -1; the
    fast path is used only if it gives Babel's text for every probe value, else None."""
    low, high = pattern.frac_prec
    if (
        low != high
        or pattern.exp_prec
        or "@" in pattern.pattern
        or pattern.int_prec[0] != 1
        or pattern.scale not in (0, 2)
        or pattern.grouping not in ((3, 3), (1000, 1000))
        or locale.default_numbering_system != "latn"
    ):
        return None
    symbols = locale.number_symbols["latn"]
    table = str.maketrans({",": symbols["group"], ".": symbols["decimal"]})
    one = "1" + (symbols["decimal"] + "0" * low if low else "")
    affixes = []
    for probe in (Decimal(1).scaleb(-pattern.scale), Decimal(-1).scaleb(-pattern.scale)):
        text = slow(probe)
        if text.count(one) != 1:
            return None
        affixes.append(text.split(one))
    (pos_prefix, pos_suffix), (neg_prefix, neg_suffix) = affixes
    spec = f",.{low}f" if pattern.grouping == (3, 3) else f".{low}f"
    scale = pattern.scale

    def fast(value: Any) -> str:
        if not isinstance(value, Decimal):
            value = Decimal(str(value)) if isinstance(value, float) else Decimal(value)
        if scale:
            value = value.scaleb(scale)
        digits = format(abs(value), spec).translate(table)
        if value.is_signed():
            return neg_prefix + digits + neg_suffix
        return pos_prefix + digits + pos_suffix

    if any(fast(p) != slow(p) for p in _PROBES):
        return None
    return fast


class TextRows:
    """Rows as a reader sees them, for CSV and JSON with `formatted: true`: each formatted
    column as the locale's text, hidden columns left out, labels as the names."""

    def __init__(
        self,
        columns: Sequence[Column],
        bound: Sequence[ColumnFormat | None],
        locale: babel.Locale,
        zone: ZoneInfo,
    ) -> None:
        self.shown = [i for i, f in enumerate(bound) if f is None or not f.hidden]
        self.columns = [
            replace(columns[i], name=f.header(), kind=ColumnKind.TEXT, scale=None)
            if (f := bound[i]) is not None
            else columns[i]
            for i in self.shown
        ]
        """The written columns: a formatted one is text under its label."""
        self._texts = [
            (pos, text_function(f, locale, zone))
            for pos, i in enumerate(self.shown)
            if (f := bound[i]) is not None
        ]
        self._project = len(self.shown) < len(columns)

    def apply(self, rows: Sequence[Row]) -> list[Row]:
        shown, texts = self.shown, self._texts
        out = []
        for row in rows:
            cells = [row[i] for i in shown] if self._project else list(row)
            for pos, fn in texts:
                value = cells[pos]
                if value is not None:
                    cells[pos] = fn(value)
            out.append(tuple(cells))
        return out
