"""MySQL / MariaDB through aiomysql: an unbuffered result inside a read-only transaction.

`connection_config`: host, port (3306), database, username, password (inline or a secret
reference), ssl (`{"ca_file": ..., "cert_file": ..., "key_file": ..., "verify": true}`), options
(`connect_timeout_seconds`).

The session is utf8mb4 with `time_zone = '+00:00'` and read-only (`SET SESSION TRANSACTION READ
ONLY`, then `START TRANSACTION READ ONLY`), so writes and DDL are refused. Parameters are bound by
the driver (`%(name)s`, escaped by PyMySQL). The statement is sent with aiomysql's unbuffered
cursor, so the server streams rows and nothing accumulates in memory.

Speed: aiomysql reads each row with two awaits and converts each field in Python, which makes a
million rows take ~17 s here. After aiomysql has read the column descriptions, this connector
reads the row packets itself, straight from the connection's stream in chunks, and decodes them
with a splitter compiled for the result's columns (one unrolled pass per row, no per-column
loop): fields are sliced out of the packet and converted with C-level constructors (`int`,
`datetime.fromisoformat`, `Decimal`). For CSV (`stream_csv`) it skips the conversion entirely:
MySQL already sends every value as text, which is the CSV text for integers, decimals, dates,
timestamps and strings; for plain rows the length byte before each value is overwritten with the
delimiter, so a row becomes one slice of the buffer (see bench/export.py).

Cancellation: `KILL QUERY <connection id>` from a second connection, then the first connection is
dropped. As a backstop the session's statement time limit (`max_statement_time` on MariaDB,
`max_execution_time` on MySQL) is the query timeout plus a margin.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import re
import ssl as ssl_module
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from datetime import date, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import aiomysql
import pymysql  # type: ignore[import-untyped]
import pymysql.converters  # type: ignore[import-untyped]
from pymysql.constants import FIELD_TYPE  # type: ignore[import-untyped]

from reporthubd import secrets
from reporthubd.connectors import params
from reporthubd.connectors.base import (
    Column,
    ColumnKind,
    Connector,
    ConnectorError,
    QueryRequest,
    QueryResult,
    Row,
    TestResult,
)

if TYPE_CHECKING:
    from reporthubd.formats.csv import ServerCSV

CANCEL_GRACE_SECONDS = 5.0
SERVER_BACKSTOP_SECONDS = 10.0
_READ_CHUNK = 1 << 15
"""Bytes decoded per step: ~1-2 ms of CPU, so other tasks get the loop in between."""

_INTEGER = {
    FIELD_TYPE.TINY,
    FIELD_TYPE.SHORT,
    FIELD_TYPE.LONG,
    FIELD_TYPE.LONGLONG,
    FIELD_TYPE.INT24,
    FIELD_TYPE.YEAR,
}
_TEXTUAL = {
    FIELD_TYPE.VARCHAR,
    FIELD_TYPE.VAR_STRING,
    FIELD_TYPE.STRING,
    FIELD_TYPE.TINY_BLOB,
    FIELD_TYPE.MEDIUM_BLOB,
    FIELD_TYPE.LONG_BLOB,
    FIELD_TYPE.BLOB,
    FIELD_TYPE.ENUM,
    FIELD_TYPE.SET,
}
_BINARY_CHARSET = 63

# Per-column handling codes, shared by both decoders.
_AS_TEXT, _AS_INT, _AS_DECIMAL, _AS_FLOAT, _AS_DATE, _AS_DATETIME, _AS_TIME, _AS_BINARY, _AS_BIT = (
    range(9)
)


def _conninfo(config: Mapping[str, Any]) -> tuple[str, int, str, str]:
    host = str(config.get("host") or "localhost")
    port = int(config.get("port") or 3306)
    database = str(config.get("database") or "")
    user = str(config.get("username") or "root")
    return host, port, database, user


def _ssl_context(spec: Any) -> ssl_module.SSLContext | None:
    if not spec:
        return None
    if not isinstance(spec, Mapping):
        raise ConnectorError("ssl must be a JSON object")
    context = ssl_module.create_default_context(cafile=spec.get("ca_file"))
    if spec.get("cert_file"):
        context.load_cert_chain(spec["cert_file"], spec.get("key_file"))
    if spec.get("verify") is False:
        context.check_hostname = False
        context.verify_mode = ssl_module.CERT_NONE
    return context


def _detail(exc: BaseException) -> str:
    if isinstance(exc, pymysql.err.MySQLError) and len(exc.args) >= 2:
        text = f"({exc.args[0]}) {exc.args[1]}"
    elif isinstance(exc, TimeoutError):
        text = "timed out"
    else:
        text = str(exc) or type(exc).__name__
    return secrets.redact_text(" ".join(text.split()))


def _column(field: Any) -> tuple[Column, int]:
    type_code = field.type_code
    name = field.name
    source = _type_name(type_code)
    if type_code in _INTEGER:
        return Column(name=name, kind=ColumnKind.INTEGER, source_type=source), _AS_INT
    if type_code in (FIELD_TYPE.DECIMAL, FIELD_TYPE.NEWDECIMAL):
        return (
            Column(
                name=name,
                kind=ColumnKind.DECIMAL,
                source_type=source,
                scale=field.scale,
            ),
            _AS_DECIMAL,
        )
    if type_code in (FIELD_TYPE.FLOAT, FIELD_TYPE.DOUBLE):
        return Column(name=name, kind=ColumnKind.FLOAT, source_type=source), _AS_FLOAT
    if type_code in (FIELD_TYPE.DATE, FIELD_TYPE.NEWDATE):
        return Column(name=name, kind=ColumnKind.DATE, source_type=source), _AS_DATE
    if type_code in (FIELD_TYPE.DATETIME, FIELD_TYPE.TIMESTAMP):
        return Column(name=name, kind=ColumnKind.DATETIME, source_type=source), _AS_DATETIME
    if type_code == FIELD_TYPE.TIME:
        # MySQL TIME is a duration (-838:59:59 .. 838:59:59): kept as its text.
        return Column(name=name, kind=ColumnKind.TEXT, source_type=source), _AS_TIME
    if type_code == FIELD_TYPE.JSON:
        return Column(name=name, kind=ColumnKind.JSON, source_type=source), _AS_TEXT
    if type_code == FIELD_TYPE.BIT:
        return Column(name=name, kind=ColumnKind.INTEGER, source_type=source), _AS_BIT
    if type_code in _TEXTUAL and field.charsetnr == _BINARY_CHARSET:
        return Column(name=name, kind=ColumnKind.BINARY, source_type=source), _AS_BINARY
    if type_code == FIELD_TYPE.GEOMETRY:
        return Column(name=name, kind=ColumnKind.BINARY, source_type=source), _AS_BINARY
    return Column(name=name, kind=ColumnKind.TEXT, source_type=source), _AS_TEXT


def _type_name(type_code: int) -> str:
    for attr in dir(FIELD_TYPE):
        if not attr.startswith("_") and getattr(FIELD_TYPE, attr) == type_code:
            return attr
    return str(type_code)


class _RowReader:
    """Reads the row packets of an unbuffered result straight from aiomysql's stream."""

    def __init__(self, conn: Any, split: Callable[[bytes, list[Any]], int]) -> None:
        self._conn = conn
        self._reader = conn._reader
        self._split = split
        self._buf = b""
        self.done = False

    async def chunk(self) -> list[Any]:
        """The complete rows of the next chunk read from the socket, as the splitter makes
        them ([] at the end)."""
        if self.done:
            return []
        while True:
            data = await self._reader.read(_READ_CHUNK)
            if not data:
                self._conn.close()
                raise ConnectorError("the server closed the connection during the query")
            buf = self._buf + data if self._buf else data
            rows: list[Any] = []
            pos = self._split(buf, rows)
            if pos < 0:  # end of the result: EOF (or error) packet at -pos - 1
                at = -pos - 1
                self._finish(buf, at)
                return rows
            self._buf = buf[pos:]
            if rows:
                return rows

    def _finish(self, buf: bytes, at: int) -> None:
        length = buf[at] | (buf[at + 1] << 8) | (buf[at + 2] << 16)
        seq = buf[at + 3]
        payload = buf[at + 4 : at + 4 + length]
        rest = buf[at + 4 + length :]
        self.done = True
        self._buf = b""
        conn = self._conn
        result = conn._result
        conn._next_seq_id = (seq + 1) % 256
        if rest:  # more results follow (not expected): give the bytes back to the stream
            conn._reader._buffer[0:0] = rest
        if result is not None:
            result.unbuffered_active = False
            result.connection = None
        if payload[:1] == b"\xff":
            pymysql.err.raise_mysql_exception(payload)
        if result is not None and len(payload) >= 5:
            status = payload[3] | (payload[4] << 8)
            result.has_next = bool(status & 8)


class _Result(QueryResult):
    def __init__(self, columns: Sequence[Column], batches: Callable[[], AsyncIterator[list[Row]]]):
        self.columns = columns
        self._batches = batches

    def batches(self) -> AsyncIterator[list[Row]]:
        return self._batches()


class RenderedResult:
    """What `stream_csv` yields: columns, then CSV chunks (UTF-8 bytes, row count)."""

    def __init__(
        self, columns: Sequence[Column], chunks: Callable[[], AsyncIterator[tuple[bytes, int]]]
    ) -> None:
        self.columns = columns
        self._chunks = chunks

    def chunks(self) -> AsyncIterator[tuple[bytes, int]]:
        return self._chunks()


class MySQLConnector(Connector):
    paramstyle = params.Style.PYFORMAT

    def __init__(self, datasource: Any) -> None:
        super().__init__(datasource)
        self._conn: Any = None
        host, port, database, _ = _conninfo(datasource.connection_config)
        self.where = f"{host}:{port}/{database}"
        self._connect_kwargs: dict[str, Any] = {}

    def _fail(self, what: str, exc: BaseException | str) -> ConnectorError:
        detail = exc if isinstance(exc, str) else _detail(exc)
        return ConnectorError(f"mysql {self.where}: {what}: {detail}")

    async def _connect(self) -> Any:
        conn = await aiomysql.connect(**self._connect_kwargs)
        # aiomysql 0.3 escapes bytes with a helper PyMySQL 1.2 removed: escape them here.
        escape = conn.escape

        def escape_value(value: Any) -> Any:
            if isinstance(value, bytes | bytearray | memoryview):
                return pymysql.converters.escape_bytes(bytes(value))
            return escape(value)

        conn.escape = escape_value
        return conn

    async def _reconnect(self) -> None:
        """A new session after the previous one was dropped (a stream left early)."""
        self._conn = await self._connect()
        async with self._conn.cursor() as cursor:
            await cursor.execute("SET SESSION TRANSACTION READ ONLY")

    async def open(self) -> None:
        config = self.datasource.connection_config
        host, port, database, user = _conninfo(config)
        options = config.get("options") or {}
        if not isinstance(options, Mapping):
            raise ConnectorError(f"mysql {self.where}: options must be a JSON object")
        password = config.get("password")
        try:
            secret = secrets.resolve(password, where="password") if password else ""
        except secrets.SecretError as exc:
            raise self._fail("cannot read the password", str(exc)) from None
        timeout = float(options.get("connect_timeout_seconds", 10))
        self._connect_kwargs = {
            "host": host,
            "port": port,
            "user": user,
            "password": secret,
            "db": database or None,
            "charset": "utf8mb4",
            "autocommit": False,
            "connect_timeout": timeout,
            "init_command": "SET time_zone = '+00:00'",
            "ssl": _ssl_context(config.get("ssl")),
        }
        try:
            async with asyncio.timeout(timeout + 1):
                await self._reconnect()
        except (OSError, TimeoutError, pymysql.err.MySQLError) as exc:
            await self.close()
            raise self._fail("cannot connect", exc) from None

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()

    async def test(self) -> TestResult:
        started = time.perf_counter()
        async with self._conn.cursor() as cursor:
            await cursor.execute("SELECT VERSION()")
            (version,) = await cursor.fetchone()
        return TestResult(
            ok=True,
            server_version=str(version),
            round_trip_ms=(time.perf_counter() - started) * 1000,
        )

    def _backstop_sql(self, timeout_seconds: float) -> str:
        """The server's own limit for the statement (the query timeout plus a margin), so the
        server stops it even if the daemon dies before it can KILL it."""
        seconds = float(timeout_seconds) + SERVER_BACKSTOP_SECONDS
        if "mariadb" in str(self._conn.get_server_info()).lower():
            return f"SET SESSION max_statement_time = {seconds:.3f}"
        return f"SET SESSION max_execution_time = {int(seconds * 1000)}"

    @property
    def thread_id(self) -> int:
        return int(self._conn.thread_id())

    async def _kill_query(self) -> None:
        """Stop the running statement from a second connection (bounded), then drop ours."""
        conn, self._conn = self._conn, None
        if conn is None:
            return
        thread_id = conn.thread_id()
        try:
            async with asyncio.timeout(CANCEL_GRACE_SECONDS):
                killer = await self._connect()
                try:
                    async with killer.cursor() as cursor:
                        await cursor.execute(f"KILL QUERY {int(thread_id)}")
                finally:
                    killer.close()
        except (OSError, TimeoutError, pymysql.err.MySQLError):
            pass  # the connection is dropped below; the server ends the query when it notices
        finally:
            conn.close()

    @contextlib.asynccontextmanager
    async def _running(
        self, request: QueryRequest
    ) -> AsyncIterator[tuple[Any, list[Column], list[int]]]:
        """Start the statement in a read-only transaction; yield the connection, columns and
        per-column handling codes with the stream positioned at the first row."""
        bound = params.bind(request.sql, request.parameters, params.Style.PYFORMAT, dialect="mysql")
        if self._conn is None:
            if not self._connect_kwargs:
                raise self._fail("the query failed", "not connected")
            try:
                await self._reconnect()
            except (OSError, TimeoutError, pymysql.err.MySQLError) as exc:
                raise self._fail("cannot connect", exc) from None
        conn = self._conn
        cursor = aiomysql.SSCursor(conn)
        try:
            try:
                await cursor.execute("START TRANSACTION READ ONLY")
                if request.timeout_seconds:
                    await cursor.execute(self._backstop_sql(request.timeout_seconds))
                await cursor.execute(bound.sql, bound.args())
            except pymysql.err.MySQLError as exc:
                raise self._fail("the query failed", exc) from None
            result = conn._result
            if result is None or not result.unbuffered_active or not result.fields:
                raise self._fail("the query failed", "the statement returns no rows")
            described = [_column(field) for field in result.fields]
            yield conn, [c for c, _ in described], [code for _, code in described]
        except asyncio.CancelledError:
            await self._kill_query()
            raise
        except BaseException:
            await self._end(conn)
            raise
        else:
            await self._end(conn)

    async def _end(self, conn: Any) -> None:
        """Finish an interrupted result and roll back; drop the connection if that fails."""
        if self._conn is None:
            return
        try:
            async with asyncio.timeout(CANCEL_GRACE_SECONDS):
                result = conn._result
                if result is not None and result.unbuffered_active:
                    # Reading the rest would take as long as the query: stop it instead.
                    await asyncio.shield(self._kill_query())
                    return
                await asyncio.shield(conn.rollback())
        except (OSError, TimeoutError, pymysql.err.MySQLError):
            self._conn = None
            conn.close()

    @contextlib.asynccontextmanager
    async def stream(self, request: QueryRequest) -> AsyncIterator[QueryResult]:
        async with self._running(request) as (conn, columns, codes):
            reader = _RowReader(conn, _value_splitter(codes))
            size = request.batch_size

            async def batches() -> AsyncIterator[list[Row]]:
                pending: list[Row] = []
                while True:
                    try:
                        raw = await reader.chunk()
                    except pymysql.err.MySQLError as exc:
                        raise self._fail("the query failed", exc) from None
                    if raw:
                        pending.extend(raw)
                    await asyncio.sleep(0)
                    while len(pending) >= size or (pending and reader.done):
                        yield pending[:size]
                        del pending[:size]
                    if reader.done:
                        return

            yield _Result(columns, batches)

    @contextlib.asynccontextmanager
    async def stream_csv(
        self, request: QueryRequest, spec: ServerCSV, *, limit: int | None = None
    ) -> AsyncIterator[RenderedResult | None]:
        """Yield CSV rendered from the raw text of each value (see the module docstring), or
        None when the options need Python rendering. `limit`: stop after that many rows."""
        if any(ch in spec.null_text for ch in (spec.delimiter, spec.quote_char, "\r", "\n")):
            yield None
            return
        async with self._running(request) as (conn, columns, codes):
            reader = _RowReader(conn, _csv_splitter(codes, spec))
            eol = spec.line_ending.encode()

            async def chunks() -> AsyncIterator[tuple[bytes, int]]:
                total = 0
                while True:
                    try:
                        raw = await reader.chunk()
                    except pymysql.err.MySQLError as exc:
                        raise self._fail("the query failed", exc) from None
                    if limit is not None and total + len(raw) > limit:
                        raw = raw[: limit - total]
                    if raw:
                        total += len(raw)
                        raw.append(b"")
                        yield eol.join(raw), len(raw) - 1
                    await asyncio.sleep(0)  # a buffered stream read does not yield by itself
                    if reader.done or (limit is not None and total >= limit):
                        return

            yield RenderedResult(columns, chunks)


_FIELD = """
    n = buf[p]
    if n < 251:
        p += 1
        f{i} = buf[p : p + n]
        p += n
{post}
    elif n == 251:
        f{i} = NULL
        p += 1
    else:
        f{i}, p = _long_field(buf, p)
{post}
"""
_POST = {
    _AS_TEXT: "        if special(f{i}):\n            f{i} = Q + f{i}.replace(Q, QQ) + Q",
    _AS_TIME: "        if special(f{i}):\n            f{i} = Q + f{i}.replace(Q, QQ) + Q",
    _AS_DATE: "        if f{i}[:4] == b'0000':\n            f{i} = NULL",
    _AS_DATETIME: "        f{i} = _db_datetime(f{i}, NULL)",
    _AS_FLOAT: "        f{i} = repr(float(f{i})).encode()",
    _AS_BINARY: "        f{i} = b64(f{i})",
    _AS_BIT: "        f{i} = str(int.from_bytes(f{i}, 'big')).encode()",
}
_ROW_LOOP = """
def split(buf, out):
    pos = 0
    end = len(buf)
    append = out.append
    while pos + 4 <= end:
        plen = buf[pos] | (buf[pos + 1] << 8) | (buf[pos + 2] << 16)
        stop = pos + 4 + plen
        if stop > end:
            return pos
        p = pos + 4
        first = buf[p]
        if (first == 0xFE and plen < 9) or first == 0xFF:
            return -(pos + 1)
        if plen == 0xFFFFFF:
            raise ConnectorError("rows larger than 16 MB are not supported")
{fields}
{single}
        append({emit})
        pos = stop
    return pos
"""


def _long_field(buf: bytes, p: int) -> tuple[bytes, int]:
    n = buf[p]
    if n == 252:
        n = buf[p + 1] | (buf[p + 2] << 8)
        p += 3
    elif n == 253:
        n = buf[p + 1] | (buf[p + 2] << 8) | (buf[p + 3] << 16)
        p += 4
    else:
        n = int.from_bytes(buf[p + 1 : p + 9], "little")
        p += 9
    return buf[p : p + n], p + n


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
        fields.append(_FIELD.format(i=i, post=post))
    body = "".join(fields).replace("\n    ", "\n        ")
    single = "        if f0 == b'':\n            f0 = QQ" if len(codes) == 1 else ""
    names = ", ".join(f"f{i}" for i in range(len(codes)))
    source = _ROW_LOOP.format(fields=body, single=single, emit=f"D.join(({names},))")
    namespace: dict[str, Any] = {
        "D": delimiter,
        "Q": quote,
        "QQ": quote + quote,
        "NULL": spec.null_text.encode(),
        "special": special,
        "b64": base64.b64encode,
        "_long_field": _long_field,
        "_db_datetime": _db_datetime,
        "ConnectorError": ConnectorError,
    }
    exec(compile(source, "<mysql-csv-splitter>", "exec"), namespace)  # generated, no user text
    split: Callable[[bytes, list[Any]], int] = namespace["split"]
    return split


_IN_PLACE = {_AS_INT, _AS_DECIMAL, _AS_TEXT, _AS_TIME, _AS_DATE, _AS_DATETIME}
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
    _AS_DATE: f"                if {_ZERO_DATE}:\n"
    "                    q = -1\n                    break",
    _AS_DATETIME: f"                if n != 19 or {_ZERO_DATE}:\n"
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


def _csv_splitter(codes: Sequence[int], spec: ServerCSV) -> Callable[[bytes, list[Any]], int]:
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


_DECODE = {
    _AS_INT: "        f{i} = int(f{i})",
    _AS_DECIMAL: "        f{i} = Decimal(f{i}.decode())",
    _AS_FLOAT: "        f{i} = float(f{i})",
    _AS_TEXT: "        f{i} = f{i}.decode('utf-8', 'surrogateescape')",
    _AS_TIME: "        f{i} = f{i}.decode()",
    _AS_DATE: "        f{i} = None if f{i}[:4] == b'0000' else date_(f{i}.decode())",
    _AS_DATETIME: "        f{i} = None if f{i}[:4] == b'0000' else datetime_(f{i}.decode())",
    _AS_BIT: "        f{i} = int.from_bytes(f{i}, 'big')",
}


def _value_splitter(codes: Sequence[int]) -> Callable[[bytes, list[Any]], int]:
    """Compile a row splitter that decodes each row packet into a tuple of Python values with
    C-level constructors (`int`, `Decimal`, `datetime.fromisoformat`), unrolled per column."""
    fields = []
    for i, code in enumerate(codes):
        post = _DECODE.get(code, "        pass").format(i=i)
        fields.append(_FIELD.format(i=i, post=post))
    body = "".join(fields).replace("\n    ", "\n        ")
    names = ", ".join(f"f{i}" for i in range(len(codes)))
    source = _ROW_LOOP.format(fields=body, single="", emit=f"({names},)")
    namespace: dict[str, Any] = {
        "NULL": None,
        "Decimal": Decimal,
        "date_": date.fromisoformat,
        "datetime_": datetime.fromisoformat,
        "_long_field": _long_field,
        "ConnectorError": ConnectorError,
    }
    exec(compile(source, "<mysql-value-splitter>", "exec"), namespace)  # generated, no user text
    split: Callable[[bytes, list[Any]], int] = namespace["split"]
    return split
