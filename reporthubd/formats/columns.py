"""Column formats: one spec in `format_options.columns`, read once, applied by every format.

The spec (JSON or the catalog's TOML) is a mapping from a result column's name to its format, or
a list of formats each with a `name`; either way in the order of the columns it describes. Every
key is optional:

- `label`: the header shown instead of the column's name;
- `kind`: number, integer, currency, percent, date, datetime, duration or text; by default
  from the column's type (numbers, dates, timestamps, text);
- `currency`: an ISO 4217 code (`EUR`, `USD`), required with kind currency;
- `decimals`: 0 to 10 digits after the point (default: the currency's own, e.g. 0 for JPY; a
  number's column scale, else 2; a percent's 1);
- `grouping`: thousands separators, true (default) or false;
- `style`: short, medium (default) or long, the locale's CLDR pattern of dates and timestamps
  (PDF);
- `unit`: what a numeric duration counts, seconds (default), minutes, hours or days;
- `width`: the column's width in characters, 1 to 255;
- `align`: left, center or right (default: right for numbers, left for the rest);
- `hidden`: Excel hides the column, PDF leaves it out (default false);
- `highlight`: a rule `{op, value, fill, color}` or a list of them; the first whose comparison
  holds paints the cell: op is lt, le, gt, ge, eq or ne, value a number (or a text for eq and
  ne), fill and color `#RRGGBB`;
- `total`: sum, avg, min, max or count, in a totals row at the end, computed while the rows
  stream.

A percent is a fraction: 0.125 reads 12.5 %. Values keep their types: Excel gets numbers with a
number format, PDF gets the locale's text (formats.localize), CSV and JSON stay raw unless
`formatted: true` asks for that text there too (labels as names, hidden columns left out).

`parse` checks the spec alone (no result columns needed, so `reporthubd check` can run it);
`bind` matches it to the result's columns at `open` and refuses an unknown column or a kind
the column's values cannot take. Each error names the column and the key.
"""

from __future__ import annotations

import datetime as dt
import enum
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from decimal import Decimal
from functools import cache
from typing import Any, Final

from reporthubd.connectors.base import Column, ColumnKind, Row
from reporthubd.formats.base import FormatError


class Kind(enum.StrEnum):
    NUMBER = "number"
    INTEGER = "integer"
    CURRENCY = "currency"
    PERCENT = "percent"
    DATE = "date"
    DATETIME = "datetime"
    DURATION = "duration"
    TEXT = "text"


NUMERIC_KINDS: Final = frozenset(
    {Kind.NUMBER, Kind.INTEGER, Kind.CURRENCY, Kind.PERCENT, Kind.DURATION}
)
TOTALS: Final = ("sum", "avg", "min", "max", "count")
OPERATORS: Final = ("lt", "le", "gt", "ge", "eq", "ne")
ALIGNMENTS: Final = ("left", "center", "right")
STYLES: Final = ("short", "medium", "long")
UNITS: Final = {"seconds": 1, "minutes": 60, "hours": 3600, "days": 86400}
KEYS: Final = frozenset(
    {
        "name",
        "label",
        "kind",
        "currency",
        "decimals",
        "grouping",
        "style",
        "unit",
        "width",
        "align",
        "hidden",
        "highlight",
        "total",
    }
)
_COLOUR: Final = re.compile(r"#[0-9A-Fa-f]{6}")
_NUMERIC_COLUMNS: Final = frozenset({ColumnKind.INTEGER, ColumnKind.DECIMAL, ColumnKind.FLOAT})
_DATE_COLUMNS: Final = frozenset({ColumnKind.DATE, ColumnKind.DATETIME, ColumnKind.DATETIME_TZ})
_ACCEPTS: Final[Mapping[Kind, frozenset[ColumnKind]]] = {
    Kind.NUMBER: _NUMERIC_COLUMNS,
    Kind.INTEGER: _NUMERIC_COLUMNS,
    Kind.CURRENCY: _NUMERIC_COLUMNS,
    Kind.PERCENT: _NUMERIC_COLUMNS,
    Kind.DURATION: _NUMERIC_COLUMNS | {ColumnKind.OTHER, ColumnKind.TIME},
    Kind.DATE: _DATE_COLUMNS,
    Kind.DATETIME: _DATE_COLUMNS,
}
"""The column types each kind can format (text takes any); OTHER covers intervals."""


@dataclass(frozen=True, kw_only=True)
class Highlight:
    op: str
    value: float | Decimal | int | str
    fill: str | None = None
    color: str | None = None

    def holds(self, value: Any) -> bool:
        target = self.value
        try:
            if self.op == "eq":
                return bool(value == target)
            if self.op == "ne":
                return bool(value != target)
            if isinstance(value, bool) or not isinstance(value, int | float | Decimal):
                return False
            if isinstance(value, Decimal) and isinstance(target, float):
                value = float(value)
            if self.op == "lt":
                return bool(value < target)
            if self.op == "le":
                return bool(value <= target)
            if self.op == "gt":
                return bool(value > target)
            return bool(value >= target)
        except TypeError:
            return False


@dataclass(frozen=True, kw_only=True)
class ColumnFormat:
    name: str
    label: str | None = None
    kind: Kind | None = None
    """None: chosen from the column's type by `bind`."""
    currency: str | None = None
    decimals: int | None = None
    grouping: bool = True
    style: str = "medium"
    unit: str = "seconds"
    width: float | None = None
    align: str | None = None
    hidden: bool = False
    highlight: tuple[Highlight, ...] = ()
    total: str | None = None

    def header(self) -> str:
        return self.label if self.label is not None else self.name

    def alignment(self) -> str:
        if self.align is not None:
            return self.align
        return "right" if self.kind in NUMERIC_KINDS else "left"

    def paint(self, value: Any) -> Highlight | None:
        """The first highlight rule that holds for `value`, if any."""
        for rule in self.highlight:
            if rule.holds(value):
                return rule
        return None


@dataclass(frozen=True, kw_only=True)
class ColumnSpec:
    formats: tuple[ColumnFormat, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.formats)

    def bind(self, fmt: str, columns: Sequence[Column]) -> list[ColumnFormat | None]:
        """One format per result column (None where the spec says nothing about it), each with
        its kind resolved; FormatError for a name the result does not have or a kind its
        values cannot take."""
        by_name = {c.name: i for i, c in enumerate(columns)}
        bound: list[ColumnFormat | None] = [None] * len(columns)
        for spec in self.formats:
            index = by_name.get(spec.name)
            if index is None:
                names = ", ".join(c.name for c in columns) or "(none)"
                raise FormatError(
                    f"{fmt} format option 'columns.{spec.name}': the result has no column "
                    f"{spec.name!r} (its columns: {names})"
                )
            column = columns[index]
            kind = spec.kind or default_kind(column)
            accepted = _ACCEPTS.get(kind)
            if accepted is not None and column.kind not in accepted:
                raise FormatError(
                    f"{fmt} format option 'columns.{spec.name}.kind': {kind.value!r} cannot "
                    f"format a {column.kind.value} column ({column.source_type})"
                )
            decimals = spec.decimals
            if decimals is None and kind is Kind.NUMBER and column.scale is not None:
                decimals = min(column.scale, 10)
            bound[index] = replace(spec, kind=kind, decimals=decimals)
        return bound


def default_kind(column: Column) -> Kind:
    if column.kind is ColumnKind.INTEGER:
        return Kind.INTEGER
    if column.kind in (ColumnKind.DECIMAL, ColumnKind.FLOAT):
        return Kind.NUMBER
    if column.kind is ColumnKind.DATE:
        return Kind.DATE
    if column.kind in (ColumnKind.DATETIME, ColumnKind.DATETIME_TZ):
        return Kind.DATETIME
    return Kind.TEXT


@cache
def _currencies() -> frozenset[str]:
    import babel.numbers  # only when a spec names a currency: the control plane imports this

    return frozenset(babel.numbers.list_currencies())


def is_currency(code: str) -> bool:
    """An ISO 4217 code CLDR knows (Babel's list)."""
    return code in _currencies()


_COLOUR_SCHEMA: Final = {"type": "string", "pattern": "^#[0-9A-Fa-f]{6}$"}
_HIGHLIGHT_SCHEMA: Final = {
    "type": "object",
    "required": ["op", "value"],
    "additionalProperties": False,
    "properties": {
        "op": {"enum": list(OPERATORS)},
        "value": {"type": ["number", "string"]},
        "fill": _COLOUR_SCHEMA,
        "color": _COLOUR_SCHEMA,
    },
}
_FORMAT_PROPERTIES: Final = {
    "name": {"type": "string", "minLength": 1},
    "label": {"type": "string", "maxLength": 255},
    "kind": {"enum": [k.value for k in Kind]},
    "currency": {"type": "string", "pattern": "^[A-Za-z]{3}$", "description": "ISO 4217"},
    "decimals": {"type": "integer", "minimum": 0, "maximum": 10},
    "grouping": {"type": "boolean"},
    "style": {"enum": list(STYLES)},
    "unit": {"enum": list(UNITS)},
    "width": {"type": "number", "minimum": 1, "maximum": 255},
    "align": {"enum": list(ALIGNMENTS)},
    "hidden": {"type": "boolean"},
    "highlight": {"anyOf": [_HIGHLIGHT_SCHEMA, {"type": "array", "items": _HIGHLIGHT_SCHEMA}]},
    "total": {"enum": list(TOTALS)},
}
COLUMN_FORMAT_SCHEMA: Final = {
    "type": "object",
    "additionalProperties": False,
    "properties": _FORMAT_PROPERTIES,
    "description": "One column's format (format_options.columns); see docs/authors.md.",
}
COLUMNS_SCHEMA: Final = {
    "description": "format_options.columns: column name → format, or a list of formats with "
    "a name each. Applied by Excel (number formats) and PDF (the locale's text); CSV and JSON "
    "stay raw unless format_options.formatted is true. Beside it: format_options.locale (e.g. "
    "de_DE) and timezone.",
    "anyOf": [
        {"type": "object", "additionalProperties": COLUMN_FORMAT_SCHEMA},
        {
            "type": "array",
            "items": {**COLUMN_FORMAT_SCHEMA, "required": ["name"]},
        },
    ],
}
"""The spec as JSON Schema (control/openapi.py serves it as the ColumnFormats component)."""


def openapi_components(ref: Callable[[str], dict[str, str]]) -> dict[str, Any]:
    """The spec as OpenAPI components (ColumnFormats, ColumnFormat, ColumnHighlight), joined
    by `ref(name)`: client generators handle named schemas where they give up on inline ones
    nested in a union."""
    highlight = ref("ColumnHighlight")
    column = {
        **COLUMN_FORMAT_SCHEMA,
        "properties": {
            **_FORMAT_PROPERTIES,
            "highlight": {"anyOf": [highlight, {"type": "array", "items": highlight}]},
        },
    }
    return {
        "ColumnFormats": {
            "description": COLUMNS_SCHEMA["description"],
            "anyOf": [
                {"type": "object", "additionalProperties": ref("ColumnFormat")},
                {"type": "array", "items": ref("ColumnFormat")},
            ],
        },
        "ColumnFormat": column,
        "ColumnHighlight": _HIGHLIGHT_SCHEMA,
    }


# -- parsing ------------------------------------------------------------------------------------


def parse(fmt: str, raw: Any) -> ColumnSpec:
    """`format_options.columns` → ColumnSpec, or FormatError naming the column and key."""
    if raw is None:
        return ColumnSpec()
    items: list[tuple[str, Any]] = []
    if isinstance(raw, Mapping):
        for name, entry in raw.items():
            if isinstance(entry, Mapping) and "name" in entry and entry["name"] != name:
                raise FormatError(
                    f"{fmt} format option 'columns.{name}.name': differs from its key"
                )
            items.append((str(name), entry))
    elif isinstance(raw, list):
        for i, entry in enumerate(raw):
            name = entry.get("name") if isinstance(entry, Mapping) else None
            if not isinstance(name, str) or not name:
                raise FormatError(f"{fmt} format option 'columns[{i}].name': a column name")
            items.append((name, entry))
    else:
        raise FormatError(
            f"{fmt} format option 'columns' must be an object (column name → format) or a list"
        )
    seen: set[str] = set()
    formats = []
    for name, entry in items:
        if name in seen:
            raise FormatError(f"{fmt} format option 'columns.{name}': given twice")
        seen.add(name)
        formats.append(_parse_one(_Where(fmt, name), entry))
    return ColumnSpec(formats=tuple(formats))


@dataclass(frozen=True)
class _Where:
    fmt: str
    column: str

    def error(self, key: str, message: str) -> FormatError:
        return FormatError(f"{self.fmt} format option 'columns.{self.column}.{key}': {message}")


def _parse_one(where: _Where, entry: Any) -> ColumnFormat:
    if entry is None:
        entry = {}
    if not isinstance(entry, Mapping):
        raise FormatError(
            f"{where.fmt} format option 'columns.{where.column}' must be an object of format keys"
        )
    unknown = sorted(set(entry) - KEYS)
    if unknown:
        raise where.error(unknown[0], f"unknown key (known: {', '.join(sorted(KEYS - {'name'}))})")
    get = entry.get
    kind = _choice(where, "kind", get("kind"), [k.value for k in Kind])
    parsed_kind = Kind(kind) if kind is not None else None
    currency = get("currency")
    if parsed_kind is Kind.CURRENCY:
        if not isinstance(currency, str):
            raise where.error("currency", "kind 'currency' needs an ISO 4217 code, e.g. 'EUR'")
        currency = currency.upper()
        if not is_currency(currency):
            raise where.error("currency", f"unknown currency code {get('currency')!r}")
    elif currency is not None:
        raise where.error("currency", "only with kind 'currency'")
    decimals = _integer(where, "decimals", get("decimals"), 0, 10)
    width = get("width")
    if width is not None and (
        isinstance(width, bool) or not isinstance(width, int | float) or not 1 <= width <= 255
    ):
        raise where.error("width", "a number of characters from 1 to 255")
    label = get("label")
    if label is not None and (not isinstance(label, str) or len(label) > 255):
        raise where.error("label", "a text of at most 255 characters")
    return ColumnFormat(
        name=where.column,
        label=label,
        kind=parsed_kind,
        currency=currency,
        decimals=decimals,
        grouping=_boolean(where, "grouping", get("grouping"), True),
        style=_choice(where, "style", get("style"), STYLES) or "medium",
        unit=_choice(where, "unit", get("unit"), tuple(UNITS)) or "seconds",
        width=float(width) if width is not None else None,
        align=_choice(where, "align", get("align"), ALIGNMENTS),
        hidden=_boolean(where, "hidden", get("hidden"), False),
        highlight=_highlights(where, get("highlight")),
        total=_choice(where, "total", get("total"), TOTALS),
    )


def _choice(where: _Where, key: str, value: Any, choices: Sequence[str]) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or value not in choices:
        raise where.error(key, f"{value!r} is not one of {', '.join(choices)}")
    return value


def _integer(where: _Where, key: str, value: Any, low: int, high: int) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise where.error(key, f"an integer from {low} to {high}")
    return value


def _boolean(where: _Where, key: str, value: Any, default: bool) -> bool:
    if value is None:
        return default
    if not isinstance(value, bool):
        raise where.error(key, "true or false")
    return value


def _highlights(where: _Where, raw: Any) -> tuple[Highlight, ...]:
    if raw is None:
        return ()
    if isinstance(raw, Mapping):
        raw = [raw]
    if not isinstance(raw, list):
        raise where.error("highlight", "a rule {op, value, fill, color} or a list of them")
    rules = []
    for i, rule in enumerate(raw):
        key = f"highlight[{i}]"
        if not isinstance(rule, Mapping):
            raise where.error(key, "a rule {op, value, fill, color}")
        unknown = sorted(set(rule) - {"op", "value", "fill", "color"})
        if unknown:
            raise where.error(f"{key}.{unknown[0]}", "unknown key (known: op, value, fill, color)")
        op = _choice(where, f"{key}.op", rule.get("op"), OPERATORS)
        if op is None:
            raise where.error(f"{key}.op", f"required: one of {', '.join(OPERATORS)}")
        value = rule.get("value")
        if isinstance(value, bool) or not isinstance(value, int | float | str):
            raise where.error(f"{key}.value", "a number (or a text for eq and ne)")
        if isinstance(value, str) and op not in ("eq", "ne"):
            raise where.error(f"{key}.value", f"{op!r} compares with a number")
        colours = {}
        for part in ("fill", "color"):
            colour = rule.get(part)
            if colour is not None and not (isinstance(colour, str) and _COLOUR.fullmatch(colour)):
                raise where.error(f"{key}.{part}", "a colour as #RRGGBB")
            colours[part] = colour.upper() if isinstance(colour, str) else None
        if colours["fill"] is None and colours["color"] is None:
            raise where.error(key, "needs a fill or a color")
        rules.append(Highlight(op=op, value=value, fill=colours["fill"], color=colours["color"]))
    return tuple(rules)


# -- totals -------------------------------------------------------------------------------------


_NUMBERS: Final = frozenset({int, float, Decimal, dt.timedelta})
"""Exact types a total adds as they are (not bool, a subclass of int that a total skips)."""
_ORDERED: Final = frozenset({str, dt.date, dt.datetime})
"""Exact types a min or max compares as they are."""


@dataclass
class _Accumulator:
    how: str
    count: int = 0
    total: Any = None
    low: Any = None
    high: Any = None
    float_sum: bool = field(default=False)

    def add(self, values: list[Any]) -> None:
        if self.how == "count":
            self.count += len(values)
            return
        kinds = set(map(type, values))
        if len(kinds) == 1 and kinds <= _NUMBERS:
            numbers: list[Any] = values  # one numeric type (the usual column): no filtering
        else:
            numbers = [
                v
                for v in values
                if isinstance(v, int | float | Decimal | dt.timedelta) and not isinstance(v, bool)
            ]
        if self.how in ("sum", "avg"):
            if not numbers:
                return
            self.count += len(numbers)
            try:
                batch = sum(numbers[1:], numbers[0])
                self.total = batch if self.total is None else self.total + batch
            except TypeError:  # float beside Decimal: a float sum, as the database would
                self.total = float(self.total or 0) + sum(float(v) for v in numbers)
            return
        if numbers:
            comparable: list[Any] = numbers
        elif len(kinds) == 1 and kinds <= _ORDERED:
            comparable = values
        else:
            comparable = [v for v in values if isinstance(v, str | dt.date)]
        if not comparable:
            return
        try:
            low, high = min(comparable), max(comparable)
            self.low = low if self.low is None or low < self.low else self.low
            self.high = high if self.high is None or high > self.high else self.high
        except TypeError:
            return

    def result(self) -> Any:
        if self.how == "count":
            return self.count
        if self.how == "sum":
            return self.total if self.count else None
        if self.how == "avg":
            if not self.count:
                return None
            if isinstance(self.total, Decimal):
                return self.total / self.count
            return self.total / self.count
        return self.low if self.how == "min" else self.high


class Totals:
    """The totals row, accumulated batch by batch: memory holds one accumulator per column."""

    def __init__(self, bound: Sequence[ColumnFormat | None]) -> None:
        self._acc = [
            (i, _Accumulator(f.total)) for i, f in enumerate(bound) if f is not None and f.total
        ]

    def __bool__(self) -> bool:
        return bool(self._acc)

    def add(self, rows: Sequence[Row]) -> None:
        for i, acc in self._acc:
            acc.add([row[i] for row in rows if row[i] is not None])

    def values(self, ncols: int) -> list[Any]:
        """One value per column: the total where asked, else None."""
        out: list[Any] = [None] * ncols
        for i, acc in self._acc:
            out[i] = acc.result()
        return out
