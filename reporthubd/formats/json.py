"""JSON writer: an array of objects or JSON Lines, streamed batch by batch (orjson, worker thread).

Each row is one object keyed by column name (a repeated name gets `_2`, `_3`, ...). Values:
numbers are JSON numbers; decimals are exact strings (`decimals: "string"`, the default, so no
consumer rounds them through a double) or exact JSON numbers (`decimals: "number"`, the digits
written as they are); booleans and NULL are JSON's; dates, timestamps and times are ISO 8601
strings (a timestamp with a zone carries its offset, one without has none); binary is base64;
JSON columns are nested JSON. Floats that JSON cannot hold (NaN, infinities) become null.

format_options: layout ("array", the default, or "lines" for JSON Lines), decimals ("string" or
"number"); column formats (formats.columns): columns, locale, timezone, and formatted (default
false: raw values; true: formatted columns as the locale's text keyed by their labels, hidden
columns left out).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
from collections.abc import Callable, Mapping, Sequence
from decimal import Decimal
from pathlib import Path
from typing import IO, Any, ClassVar

import orjson

from reporthubd.connectors.base import Column, ColumnKind, Row
from reporthubd.formats import columns as colfmt
from reporthubd.formats import localize, values
from reporthubd.formats.base import RenderContext
from reporthubd.formats.options import Options
from reporthubd.formats.threaded import ThreadedWriter, truncation_note

_OPTS = orjson.OPT_NON_STR_KEYS
# Kinds whose values are never JSON objects or arrays (the connectors' contract).
_SCALAR_KINDS = frozenset(
    {
        ColumnKind.INTEGER,
        ColumnKind.DECIMAL,
        ColumnKind.FLOAT,
        ColumnKind.BOOLEAN,
        ColumnKind.DATE,
        ColumnKind.DATETIME,
        ColumnKind.DATETIME_TZ,
        ColumnKind.TIME,
        ColumnKind.TEXT,
        ColumnKind.BINARY,
    }
)


def unique_names(columns: Sequence[Column]) -> list[str]:
    """Column names made unique for object keys: `id`, `id_2`, `id_3`."""
    seen: set[str] = set()
    names: list[str] = []
    for column in columns:
        name = column.name
        n = 1
        while name in seen:
            n += 1
            name = f"{column.name}_{n}"
        seen.add(name)
        names.append(name)
    return names


def _decimal_number(value: Decimal) -> Any:
    if value.is_finite():
        return orjson.Fragment(values.decimal_text(value))
    return None


def _default(decimal: Callable[[Decimal], Any]) -> Callable[[Any], Any]:
    def default(value: Any) -> Any:
        if isinstance(value, Decimal):
            return decimal(value)
        if isinstance(value, bytes | bytearray | memoryview):
            return values.binary_text(value)
        if isinstance(value, bool):
            return bool(value)
        if isinstance(value, int):  # beyond 64 bits, or an int subclass
            return orjson.Fragment(str(int(value)))
        if isinstance(value, float):
            return float(value)
        if isinstance(value, str):
            return str(value)
        if isinstance(value, dt.time | dt.date):
            return value.isoformat()
        if isinstance(value, tuple):
            return list(value)
        return values.text(value)

    return default


class JSONWriter(ThreadedWriter):
    extension: ClassVar[str] = "json"
    media_type: ClassVar[str] = "application/json"

    def __init__(self, options: Mapping[str, Any], context: RenderContext) -> None:
        super().__init__(options, context)
        opts = Options("json", options)
        self.layout = opts.choice("layout", ("array", "lines"), "array")
        self.decimals = opts.choice("decimals", ("string", "number"), "string")
        # Column formats: raw values unless `formatted` asks for the locale's text (a bad spec
        # is refused either way, as in every format).
        self.spec = colfmt.parse("json", opts.value("columns"))
        self.locale = localize.parse_locale("json", opts.value("locale"))
        self.zone = opts.zone("timezone", "UTC")
        self.formatted = opts.boolean("formatted", False)
        self._text_rows: localize.TextRows | None = None
        opts.reject_unknown()
        self._default = _default(
            _decimal_number if self.decimals == "number" else values.decimal_text
        )
        self._dumps = functools.partial(orjson.dumps, default=self._default, option=_OPTS)

    @property
    def file_extension(self) -> str:
        return "jsonl" if self.layout == "lines" else "json"

    @property
    def written_media_type(self) -> str:
        return "application/x-ndjson" if self.layout == "lines" else "application/json"

    def render_open(self, path: Path, columns: Sequence[Column]) -> None:
        if self.formatted and self.spec:
            bound = self.spec.bind("json", columns)
            self._text_rows = localize.TextRows(columns, bound, self.locale, self.zone)
            columns = self._text_rows.columns
        self._names = unique_names(columns)
        # A JSON column that a driver hands over as text is nested as JSON, not quoted.
        self._json_columns = [i for i, c in enumerate(columns) if c.kind is ColumnKind.JSON]
        self._scalar_rows = bool(columns) and all(c.kind in _SCALAR_KINDS for c in columns)
        self._file: IO[bytes] = path.open("wb", buffering=1 << 20)
        self._first = True
        if self.layout == "array":
            self._file.write(b"[")

    def _encode(self, obj: Any) -> bytes:
        try:
            return orjson.dumps(obj, default=self._default, option=_OPTS)
        except orjson.JSONEncodeError:
            # Integers beyond 64 bits are refused before `default` is asked; rare: slow path.
            return orjson.dumps(_widen(obj), default=self._default, option=_OPTS)

    def render_batch(self, rows: Sequence[Row]) -> None:
        if self._text_rows is not None:
            rows = self._text_rows.apply(rows)
        names = self._names
        if self._json_columns:
            rows = [_parse_json_text(row, self._json_columns) for row in rows]
        objects = [dict(zip(names, row, strict=True)) for row in rows]
        if self.layout == "lines":
            if self._scalar_rows:
                # One orjson call for the batch (3x cheaper than one per row), then one line per
                # object: with scalar values only, `},{"` occurs nowhere but between two rows
                # (inside a string a quote is always escaped, and no value is an object).
                body = self._encode(objects)[1:-1].replace(b'},{"', b'}\n{"')
            else:
                try:  # orjson called straight from map(): no Python frame per row
                    body = b"\n".join(map(self._dumps, objects))
                except orjson.JSONEncodeError:
                    body = b"\n".join([self._encode(obj) for obj in objects])
            self._file.write(body)
            self._file.write(b"\n")
            return
        # One call for the batch; its brackets are dropped so batches join into one array.
        body = self._encode(objects)[1:-1]
        self._file.write(b"\n" if self._first else b",\n")
        self._file.write(body)
        self._first = False

    def render_truncated(self, max_rows: int) -> None:
        # A last object of its own shape, so that no consumer takes it for a row.
        note = {
            "_reporthubd_truncated": {"max_rows": max_rows, "message": truncation_note(max_rows)}
        }
        encoded = orjson.dumps(note)
        if self.layout == "lines":
            self._file.write(encoded + b"\n")
            return
        self._file.write((b"\n" if self._first else b",\n") + encoded)
        self._first = False

    def render_close(self) -> None:
        if self.layout == "array":
            self._file.write(b"\n]\n" if not self._first else b"]\n")
        self._file.close()

    def render_abort(self) -> None:
        file = getattr(self, "_file", None)
        if file is not None:
            file.close()


def _parse_json_text(row: Row, indexes: Sequence[int]) -> Row:
    cells = list(row)
    for i in indexes:
        value = cells[i]
        if isinstance(value, str | bytes):
            # Not JSON after all: kept as a string.
            with contextlib.suppress(orjson.JSONDecodeError):
                cells[i] = orjson.loads(value)
    return tuple(cells)


def _widen(obj: Any) -> Any:
    """Replace ints orjson refuses (beyond 64 bits) with exact number fragments."""
    if isinstance(obj, dict):
        return {k: _widen(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_widen(v) for v in obj]
    if isinstance(obj, int) and not isinstance(obj, bool) and not -(2**63) <= obj < 2**64:
        return orjson.Fragment(str(obj))
    return obj
