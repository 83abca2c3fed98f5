"""How a value is written as text, the same way in every format that needs text for it.

The canonical text forms (CSV cells, PDF cells, Excel cells that cannot hold the native type, and
JSON where the value has no JSON type):

| value | text |
|---|---|
| None | "" (JSON: null) |
| bool | `true` / `false` |
| int | decimal digits |
| Decimal | exact, fixed-point, scale kept (`12.5000000000`, never `1.25E+1`); `NaN`, `Infinity` |
| float | shortest round-trip repr (`0.1`, `1e+300`); `NaN`, `Infinity`, `-Infinity` |
| date | ISO 8601 `2026-11-29` |
| datetime (naive) | ISO 8601 `2026-11-29T08:30:00` (`.ffffff` when there are microseconds) |
| datetime (aware) | ISO 8601 with offset `2026-11-29T08:30:00+01:00` |
| time | ISO 8601 `08:30:00` |
| bytes | standard base64 |
| dict / list | compact JSON, UTF-8 kept (`{"a":[1,2]}`) |
| str | unchanged |
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import math
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from reporthubd.connectors.base import ColumnKind


def decimal_text(value: Decimal) -> str:
    if value.is_finite():
        return format(value, "f")
    if value.is_nan():
        return "NaN"
    return "Infinity" if value > 0 else "-Infinity"


def float_text(value: float) -> str:
    if math.isfinite(value):
        return repr(value)
    if math.isnan(value):
        return "NaN"
    return "Infinity" if value > 0 else "-Infinity"


def binary_text(value: bytes | bytearray | memoryview) -> str:
    return base64.b64encode(bytes(value)).decode("ascii")


def json_text(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=_json_default)


def _json_default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return decimal_text(value)
    if isinstance(value, bytes | bytearray | memoryview):
        return binary_text(value)
    if isinstance(value, dt.date | dt.time):
        return value.isoformat()
    return str(value)


def text(value: Any) -> str:
    """The canonical text of any value the connectors produce (see the module docstring)."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, Decimal):
        return decimal_text(value)
    if isinstance(value, float):
        return float_text(value)
    if isinstance(value, dt.date | dt.time):  # datetime is a date
        return value.isoformat()
    if isinstance(value, bytes | bytearray | memoryview):
        return binary_text(value)
    if isinstance(value, dict | list | tuple):
        return json_text(value)
    return str(value)


def _str_or_text(value: Any) -> str:
    return value if type(value) is str else text(value)


def text_function(kind: ColumnKind) -> Callable[[Any], str]:
    """A fast `text` for one column: the generic one, short-cut for plain text columns."""
    if kind is ColumnKind.TEXT:
        return _str_or_text
    return text


def is_right_aligned(kind: ColumnKind) -> bool:
    """Numbers read best right-aligned in tables."""
    return kind in (ColumnKind.INTEGER, ColumnKind.DECIMAL, ColumnKind.FLOAT)
