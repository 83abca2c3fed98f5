"""MySQL's raw text as CSV lines: the MySQL connector's CSV fast path (`stream_csv`).

MySQL sends every value as text, which already is the CSV text for integers, decimals, dates,
timestamps and strings; the splitters here turn the row packets that `mysqlrows.RowReader` reads
into CSV lines without converting any value to Python. For plain rows the length byte before each
value is overwritten with the delimiter, so a row becomes one slice of the buffer (see
bench/export.py); other rows go through a per-field splitter that quotes, maps NULL and zero
dates, and rewrites the few types whose MySQL text is not the CSV text.
"""

from __future__ import annotations

import asyncio
import base64
import re
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import pymysql  # type: ignore[import-untyped]

from reporthubd.connectors.base import (
    Column,
    ConnectorError,
    RenderedCSV,
    RenderedSink,
    ServerCSV,
)
from reporthubd.connectors.mysqlrows import (
    AS_BINARY,
    AS_BIT,
    AS_DATE,
    AS_DATETIME,
    AS_DECIMAL,
    AS_FLOAT,
    AS_INT,
    AS_TEXT,
    AS_TIME,
    FIELD,
    ROW_LOOP,
    RowReader,
    long_field,
)


class MySQLRawText(RenderedCSV):
    """What `MySQLConnector.stream_csv` yields: the columns, then CSV lines cut from the row
    packets, one chunk per read from the socket; at most `limit` rows when a limit is given."""

    fast_path: ClassVar[str] = "mysql-raw-text"

    def __init__(
        self,
        columns: Sequence[Column],
        reader: RowReader,
        spec: ServerCSV,
        *,
        limit: int | None,
        error: Callable[[str, BaseException], ConnectorError],
    ) -> None:
        self.columns = columns
        self._reader = reader
        self._eol = spec.line_ending.encode()
        self._limit = limit
        self._error = error

    async def copy_to(self, sink: RenderedSink) -> int:
        reader, limit, eol = self._reader, self._limit, self._eol
        total = 0
        while True:
            try:
                raw = await reader.chunk()
            except pymysql.err.MySQLError as exc:
                raise self._error("the query failed", exc) from None
            if limit is not None and total + len(raw) > limit:
                raw = raw[: limit - total]
            if raw:
                total += len(raw)
                raw.append(b"")
                await sink(eol.join(raw), len(raw) - 1)
            await asyncio.sleep(0)  # a buffered stream read does not yield by itself
            if reader.done or (limit is not None and total >= limit):
                return total


_POST = {
    AS_TEXT: "        if special(f{i}):\n            f{i} = Q + f{i}.replace(Q, QQ) + Q",
    AS_TIME: "        if special(f{i}):\n            f{i} = Q + f{i}.replace(Q, QQ) + Q",
    AS_DATE: "        if f{i}[:4] == b'0000':\n            f{i} = NULL",
    AS_DATETIME: "        f{i} = _db_datetime(f{i}, NULL)",
    AS_FLOAT: "        f{i} = repr(float(f{i})).encode()",
    AS_BINARY: "        f{i} = b64(f{i})",
    AS_BIT: "        f{i} = str(int.from_bytes(f{i}, 'big')).encode()",
}


def _db_datetime(value: bytes, null: bytes) -> bytes:
    """MySQL's DATETIME text in the CSV form (`formats.csv.csv_datetime`): the fraction without
    trailing zeros, none when it is zero; the zero date is NULL."""
    if value[:4] == b"0000":
        return null
    if len(value) > 19:
        return value.rstrip(b"0").rstrip(b".")
    return value


def _field_splitter(codes: Sequence[int], spec: ServerCSV) -> Callable[[bytes, list[Any]], int]:
    """Compile a row splitter for these columns that turns each row packet straight into one
    CSV line (bytes, without the line ending): one unrolled pass per row, no per-column loop."""
    delimiter = spec.delimiter.encode()
    quote = spec.quote_char.encode()
    special = re.compile(b"[" + re.escape(delimiter + quote) + b"\r\n]").search
    fields = []
    for i, code in enumerate(codes):
        post = _POST.get(code, "        pass").format(i=i)
        fields.append(FIELD.format(i=i, post=post))
    body = "".join(fields).replace("\n    ", "\n        ")
    single = "        if f0 == b'':\n            f0 = QQ" if len(codes) == 1 else ""
    names = ", ".join(f"f{i}" for i in range(len(codes)))
    source = ROW_LOOP.format(fields=body, single=single, emit=f"D.join(({names},))")
    namespace: dict[str, Any] = {
        "D": delimiter,
        "Q": quote,
        "QQ": quote + quote,
        "NULL": spec.null_text.encode(),
        "special": special,
        "b64": base64.b64encode,
        "long_field": long_field,
        "_db_datetime": _db_datetime,
        "ConnectorError": ConnectorError,
    }
    exec(compile(source, "<mysql-csv-splitter>", "exec"), namespace)  # generated, no user text
    split: Callable[[bytes, list[Any]], int] = namespace["split"]
    return split


_IN_PLACE = {AS_INT, AS_DECIMAL, AS_TEXT, AS_TIME, AS_DATE, AS_DATETIME}
_IN_PLACE_FIELD = """
            n = ba[q]
            if n < 251:
                ba[q] = DB
{check}
                q += n + 1
            elif n == 251 and NULL_EMPTY:
                ba[q] = DB
                q += 1
            else:
                q = -1
                break
"""
_ZERO_DATE = "(ba[q + 1] == 48 and buf[q + 1 : q + 5] == b'0000')"
_IN_PLACE_CHECK = {
    AS_DATE: f"                if {_ZERO_DATE}:\n"
    "                    q = -1\n                    break",
    AS_DATETIME: f"                if n != 19 or {_ZERO_DATE}:\n"
    "                    q = -1\n                    break",
}
_IN_PLACE_LOOP = """
def split(buf, out):
    ba = bytearray(buf)
    pos = 0
    end = len(ba)
    append = out.append
    while pos + 4 <= end:
        plen = ba[pos] | (ba[pos + 1] << 8) | (ba[pos + 2] << 16)
        stop = pos + 4 + plen
        if stop > end:
            return pos
        p = pos + 4
        first = ba[p]
        if (first == 0xFE and plen < 9) or first == 0xFF:
            return -(pos + 1)
        q = p
        for _ in ONCE:
{fields}
        if q >= 0:
            line = ba[p + 1 : stop]
            if line.count(DB) == SEPARATORS and not other(line):
                append(line)
                pos = stop
                continue
        slow(buf[pos:stop], out)
        pos = stop
    return pos
"""


def csv_splitter(codes: Sequence[int], spec: ServerCSV) -> Callable[[bytes, list[Any]], int]:
    """The CSV splitter for these columns. For plain columns (integers, decimals, text, dates,
    second-precision timestamps) it works in place: in a row packet each value is preceded by
    its length byte, exactly where the CSV line needs a delimiter, so the length bytes are
    overwritten with the delimiter and the row becomes one slice of the buffer. Rows that need
    more (quoting, a long value, a zero date, NULL text, fractional seconds) and other column
    types go through the per-field splitter."""
    slow = _field_splitter(codes, spec)
    if len(codes) < 2 or not set(codes) <= _IN_PLACE or len(spec.delimiter.encode()) != 1:
        return slow
    fields = "".join(_IN_PLACE_FIELD.format(check=_IN_PLACE_CHECK.get(code, "")) for code in codes)
    source = _IN_PLACE_LOOP.format(fields=fields)
    namespace: dict[str, Any] = {
        "DB": spec.delimiter.encode()[0],
        "NULL_EMPTY": spec.null_text == "",
        "SEPARATORS": len(codes) - 1,
        "ONCE": (None,),
        "other": re.compile(b"[" + re.escape(spec.quote_char.encode()) + b"\\r\\n]").search,
        "slow": slow,
    }
    exec(compile(source, "<mysql-csv-in-place>", "exec"), namespace)  # generated, no user text
    split: Callable[[bytes, list[Any]], int] = namespace["split"]
    return split
