"""Charts of a result: the spec in `format_options.chart` and the data points, gathered while the
rows stream.

```toml
[reports.format_options.chart]
type = "bar"            # bar, line, area or pie
x = "region"            # the category column (any kind; its column format gives its text)
y = ["revenue"]         # one or more numeric columns (a string for one); pie: exactly one
series = "product"      # optional: one line/bar group per distinct value (one y column only)
aggregate = "sum"       # sum (default), avg, min, max or count: rows with the same x (and series)
title = "Revenue by region"
max_points = 60         # distinct x values kept (2 to 500, default 60); later ones are counted
                        # as omitted and the chart says so
width = 520             # points in the PDF (the email's PNG is drawn at twice the density)
height = 260
```

Memory is bounded by `max_points` × series (at most `MAX_SERIES`), never by the row count: each
(x, series, y) keeps one running accumulator, as the totals row does (formats.columns).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from reporthubd.connectors.base import Column, ColumnKind, Row
from reporthubd.formats.base import FormatError

MAX_SERIES: Final = 8
NUMERIC: Final = frozenset({ColumnKind.INTEGER, ColumnKind.DECIMAL, ColumnKind.FLOAT})
KEYS: Final = frozenset(
    {"type", "x", "y", "series", "aggregate", "title", "max_points", "width", "height"}
)


class ChartType(enum.StrEnum):
    BAR = "bar"
    LINE = "line"
    AREA = "area"
    PIE = "pie"


AGGREGATES: Final = ("sum", "avg", "min", "max", "count")


@dataclass(frozen=True, kw_only=True)
class ChartSpec:
    type: ChartType
    x: str
    y: tuple[str, ...]
    series: str | None = None
    aggregate: str = "sum"
    title: str | None = None
    max_points: int = 60
    width: float = 520.0
    height: float = 260.0


def _error(key: str, message: str) -> FormatError:
    return FormatError(f"format option 'chart.{key}': {message}")


def parse(raw: Any) -> ChartSpec | None:
    """`format_options.chart` → ChartSpec (None when absent), or FormatError naming the key."""
    if raw is None:
        return None
    if not isinstance(raw, Mapping):
        raise FormatError("format option 'chart' must be an object (type, x, y, ...)")
    unknown = sorted(set(raw) - KEYS)
    if unknown:
        raise _error(unknown[0], f"unknown key (known: {', '.join(sorted(KEYS))})")
    kind = raw.get("type")
    if kind not in {t.value for t in ChartType}:
        raise _error("type", "must be bar, line, area or pie")
    x = raw.get("x")
    if not isinstance(x, str) or not x:
        raise _error("x", "the name of the category column")
    y_raw = raw.get("y")
    y = (y_raw,) if isinstance(y_raw, str) else tuple(y_raw) if isinstance(y_raw, list) else ()
    if not y or not all(isinstance(n, str) and n for n in y):
        raise _error("y", "a numeric column name, or a list of them")
    if len(set(y)) != len(y):
        raise _error("y", "a column is named twice")
    series = raw.get("series")
    if series is not None and (not isinstance(series, str) or not series):
        raise _error("series", "the name of the column whose values are the series")
    if series is not None and len(y) > 1:
        raise _error("series", "a series column goes with one y column only")
    if kind == ChartType.PIE and (len(y) > 1 or series is not None):
        raise _error("y", "a pie chart takes one y column and no series")
    aggregate = raw.get("aggregate", "sum")
    if aggregate not in AGGREGATES:
        raise _error("aggregate", f"must be one of {', '.join(AGGREGATES)}")
    title = raw.get("title")
    if title is not None and (not isinstance(title, str) or len(title) > 200):
        raise _error("title", "a string of at most 200 characters")
    return ChartSpec(
        type=ChartType(kind),
        x=x,
        y=y,
        series=series,
        aggregate=aggregate,
        title=title,
        max_points=_int(raw, "max_points", 60, 2, 500),
        width=float(_int(raw, "width", 520, 160, 1200)),
        height=float(_int(raw, "height", 260, 100, 800)),
    )


def _int(raw: Mapping[str, Any], key: str, default: int, low: int, high: int) -> int:
    value = raw.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise _error(key, f"an integer from {low} to {high}")
    return value


@dataclass
class _Acc:
    total: Any = 0
    count: int = 0
    low: Any = None
    high: Any = None

    def add(self, value: Any) -> None:
        self.count += 1
        self.total += value
        if self.low is None or value < self.low:
            self.low = value
        if self.high is None or value > self.high:
            self.high = value

    def result(self, aggregate: str) -> float:
        if aggregate == "count":
            return float(self.count)
        if aggregate == "min":
            return float(self.low or 0)
        if aggregate == "max":
            return float(self.high or 0)
        if aggregate == "avg":
            return float(self.total / self.count) if self.count else 0.0
        return float(self.total)


@dataclass(frozen=True, kw_only=True)
class ChartPoints:
    """What the chart draws: x labels in order, one value per (series, x)."""

    spec: ChartSpec
    labels: list[str]
    series: list[str]
    values: list[list[float]]
    """values[s][i]: series s at labels[i] (0.0 where a series has no row at that x)."""
    y_column: str
    omitted_points: int = 0
    omitted_series: int = 0
    drawn: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "type": self.spec.type.value,
            "title": self.spec.title,
            "aggregate": self.spec.aggregate,
            "x": self.spec.x,
            "y": list(self.spec.y),
            "series_column": self.spec.series,
            "labels": self.labels,
            "series": self.series,
            "values": self.values,
            "omitted_points": self.omitted_points,
            "omitted_series": self.omitted_series,
        }


class ChartData:
    """The running aggregation of one chart over the streamed rows (bounded memory)."""

    def __init__(self, spec: ChartSpec, columns: Sequence[Column], x_text: Any) -> None:
        by_name = {c.name: i for i, c in enumerate(columns)}
        names = ", ".join(c.name for c in columns) or "(none)"

        def index(key: str, name: str) -> int:
            if name not in by_name:
                raise _error(key, f"the result has no column {name!r} (its columns: {names})")
            return by_name[name]

        self.spec = spec
        self._x = index("x", spec.x)
        self._y = [index("y", name) for name in spec.y]
        for name, i in zip(spec.y, self._y, strict=True):
            kind = columns[i].kind
            if kind not in NUMERIC and spec.aggregate != "count":
                raise _error(
                    "y",
                    f"column {name!r} is {kind.value} ({columns[i].source_type}): a chart "
                    "needs a numeric column",
                )
        self._series = index("series", spec.series) if spec.series else None
        self._x_text = x_text
        self._labels: dict[Any, int] = {}
        self._series_names: dict[Any, int] = {}
        self._acc: dict[tuple[int, int], _Acc] = {}
        self.omitted_points = 0
        self._omitted_series: set[Any] = set()

    def add(self, rows: Sequence[Row]) -> None:
        spec, labels, acc = self.spec, self._labels, self._acc
        xi, ys, si = self._x, self._y, self._series
        cap = spec.max_points
        counting = spec.aggregate == "count"
        for row in rows:
            key = row[xi]
            pos = labels.get(key)
            if pos is None:
                if len(labels) >= cap:
                    self.omitted_points += 1
                    continue
                pos = labels[key] = len(labels)
            if si is not None:
                name = row[si]
                s = self._series_names.get(name)
                if s is None:
                    if len(self._series_names) >= MAX_SERIES:
                        if len(self._omitted_series) < 1000:
                            self._omitted_series.add(name)
                        continue
                    s = self._series_names[name] = len(self._series_names)
                series = [s]
            else:
                series = list(range(len(ys)))
            for s, yi in zip(series, ys if si is None else ys * len(series), strict=True):
                value = row[yi]
                if value is None:
                    continue
                if isinstance(value, bool):
                    value = int(value)
                cell = acc.get((s, pos))
                if cell is None:
                    cell = acc[(s, pos)] = _Acc()
                if counting:
                    cell.count += 1
                else:
                    cell.add(value)

    def points(self) -> ChartPoints:
        spec = self.spec
        texts = [self._text(key) for key in self._labels]
        if self._series is not None:
            names = [("—" if n is None else str(n)) for n in self._series_names]
        else:
            names = list(spec.y)
        values = [
            [
                cell.result(spec.aggregate) if (cell := self._acc.get((s, i))) else 0.0
                for i in range(len(texts))
            ]
            for s in range(len(names))
        ]
        return ChartPoints(
            spec=spec,
            labels=texts,
            series=names,
            values=values,
            y_column=spec.y[0],
            omitted_points=self.omitted_points,
            omitted_series=len(self._omitted_series),
        )

    def _text(self, key: Any) -> str:
        if key is None:
            return "—"
        try:
            return str(self._x_text(key))
        except (ValueError, TypeError, ArithmeticError):
            return str(key)


def openapi_components() -> dict[str, Any]:
    """`format_options.chart` as an OpenAPI component (control/openapi.py serves it)."""
    return {
        "Chart": {
            "type": "object",
            "description": "format_options.chart: a chart drawn on the server from the result "
            "(the PDF's first page, the email's inline PNG), aggregated while the rows stream.",
            "required": ["type", "x", "y"],
            "additionalProperties": False,
            "properties": {
                "type": {"type": "string", "enum": [t.value for t in ChartType]},
                "x": {"type": "string", "description": "the category column"},
                "y": {
                    "anyOf": [
                        {"type": "string"},
                        {"type": "array", "items": {"type": "string"}, "minItems": 1},
                    ],
                    "description": "one or more numeric columns (pie: one)",
                },
                "series": {"type": "string", "description": "one series per distinct value"},
                "aggregate": {"type": "string", "enum": list(AGGREGATES), "default": "sum"},
                "title": {"type": "string", "maxLength": 200},
                "max_points": {"type": "integer", "minimum": 2, "maximum": 500, "default": 60},
                "width": {"type": "integer", "minimum": 160, "maximum": 1200, "default": 520},
                "height": {"type": "integer", "minimum": 100, "maximum": 800, "default": 260},
            },
        }
    }
