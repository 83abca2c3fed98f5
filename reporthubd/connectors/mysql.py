"""MySQL / MariaDB through aiomysql: an unbuffered result inside a read-only transaction.

`connection_config`: host, port (3306), database, username, password (inline or a secret
reference), ssl (`{"ca_file": ..., "cert_file": ..., "key_file": ..., "verify": true}`), options
(`connect_timeout_seconds`).

The session is utf8mb4 with `time_zone = '+00:00'` and read-only (`SET SESSION TRANSACTION READ
ONLY`, then `START TRANSACTION READ ONLY`), so writes and DDL are refused. Parameters are bound by
the driver (`%(name)s`, escaped by PyMySQL). The statement is sent with aiomysql's unbuffered
cursor, so the server streams rows and nothing accumulates in memory.

Speed: after aiomysql has read the column descriptions, the row packets are read straight from
the connection's stream and split by code compiled for the result's columns
(`connectors/mysqlrows.py`). For CSV (`stream_csv`) no value is converted at all: MySQL's text
becomes the CSV lines (`connectors/mysqlcsv.py`).

Cancellation: `KILL QUERY <connection id>` from a second connection, then the first connection is
dropped. As a backstop the session's statement time limit (`max_statement_time` on MariaDB,
`max_execution_time` on MySQL) is the query timeout plus a margin.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl as ssl_module
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Mapping, Sequence
from typing import Any

import aiomysql
import pymysql  # type: ignore[import-untyped]
import pymysql.converters  # type: ignore[import-untyped]

from reporthubd import secrets
from reporthubd.connectors import params
from reporthubd.connectors.base import (
    Column,
    Connector,
    ConnectorError,
    Description,
    QueryRequest,
    QueryResult,
    RenderedCSV,
    Row,
    ServerCSV,
    TestResult,
)
from reporthubd.connectors.mysqlcsv import MySQLRawText, csv_splitter
from reporthubd.connectors.mysqlprepare import prepared_columns
from reporthubd.connectors.mysqlrows import RowReader, column_of, value_splitter

CANCEL_GRACE_SECONDS = 5.0
SERVER_BACKSTOP_SECONDS = 10.0


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


class MySQLResult(QueryResult):
    """What `stream` yields: the columns, then batches decoded from the row packets."""

    def __init__(self, columns: Sequence[Column], batches: Callable[[], AsyncIterator[list[Row]]]):
        self.columns = columns
        self._batches = batches

    def batches(self) -> AsyncIterator[list[Row]]:
        return self._batches()


def _shielded(work: Coroutine[Any, Any, object]) -> asyncio.Future[object]:
    """`asyncio.shield(work)`, whose outcome is retrieved even when the wait for it was given up
    (the grace ran out): the work may still fail later, on a connection the server has closed,
    and nobody would read that error ("Task exception was never retrieved")."""
    task = asyncio.ensure_future(work)
    task.add_done_callback(_retrieve)
    return asyncio.shield(task)


def _retrieve(task: asyncio.Future[object]) -> None:
    if not task.cancelled():
        task.exception()  # read, so that a late failure of the clean-up is not reported as lost


class MySQLConnector(Connector):
    paramstyle = params.Style.PYFORMAT

    def __init__(self, datasource: Any) -> None:
        super().__init__(datasource)
        self._conn: Any = None
        host, port, database, _ = _conninfo(datasource.connection_config)
        self.where = f"{host}:{port}/{database}"
        self._connect_kwargs: dict[str, Any] = {}

    def _error(self, what: str, exc: BaseException | str) -> ConnectorError:
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
            raise self._error("cannot read the password", str(exc)) from None
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
            raise self._error("cannot connect", exc) from None

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
                raise self._error("the query failed", "not connected")
            try:
                await self._reconnect()
            except (OSError, TimeoutError, pymysql.err.MySQLError) as exc:
                raise self._error("cannot connect", exc) from None
        conn = self._conn
        cursor = aiomysql.SSCursor(conn)
        try:
            try:
                await cursor.execute("START TRANSACTION READ ONLY")
                if request.timeout_seconds:
                    await cursor.execute(self._backstop_sql(request.timeout_seconds))
                await cursor.execute(bound.sql, bound.args())
            except pymysql.err.MySQLError as exc:
                raise self._error("the query failed", exc) from None
            result = conn._result
            if result is None or not result.unbuffered_active or not result.fields:
                raise self._error("the query failed", "the statement returns no rows")
            described = [column_of(field) for field in result.fields]
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
                    await _shielded(self._kill_query())
                    return
                await _shielded(conn.rollback())
        except (OSError, TimeoutError, pymysql.err.MySQLError):
            self._conn = None
            conn.close()

    async def describe(self, request: QueryRequest) -> Description:
        """The columns of the statement prepared on the server (COM_STMT_PREPARE, nothing
        executed: connectors/mysqlprepare.py), with `?` placeholders: no value is needed."""
        bound = params.bind(request.sql, request.parameters, params.Style.QMARK, dialect="mysql")
        if self._conn is None:
            if not self._connect_kwargs:
                raise self._error("the query failed", "not connected")
            try:
                await self._reconnect()
            except (OSError, TimeoutError, pymysql.err.MySQLError) as exc:
                raise self._error("cannot connect", exc) from None
        try:
            columns = await prepared_columns(self._conn, bound.sql)
        except pymysql.err.MySQLError as exc:
            if isinstance(exc, pymysql.err.OperationalError) and exc.args[0] in (2006, 2013):
                self._conn = None  # the connection is gone
            raise self._error("the query failed", exc) from None
        if not columns:
            raise self._error("the query failed", "the statement returns no rows")
        return Description(columns=columns)

    @contextlib.asynccontextmanager
    async def stream(self, request: QueryRequest) -> AsyncIterator[QueryResult]:
        async with self._running(request) as (conn, columns, codes):
            reader = RowReader(conn, value_splitter(codes))
            size = request.batch_size

            async def batches() -> AsyncIterator[list[Row]]:
                pending: list[Row] = []
                while True:
                    try:
                        raw = await reader.chunk()
                    except pymysql.err.MySQLError as exc:
                        raise self._error("the query failed", exc) from None
                    if raw:
                        pending.extend(raw)
                    await asyncio.sleep(0)
                    while len(pending) >= size or (pending and reader.done):
                        yield pending[:size]
                        del pending[:size]
                    if reader.done:
                        return

            yield MySQLResult(columns, batches)

    @contextlib.asynccontextmanager
    async def stream_csv(
        self, request: QueryRequest, spec: ServerCSV, *, limit: int | None = None
    ) -> AsyncIterator[RenderedCSV | None]:
        """Yield CSV rendered from the raw text of each value (`MySQLRawText`), or None when
        the options need Python rendering. `limit`: stop after that many rows."""
        if any(ch in spec.null_text for ch in (spec.delimiter, spec.quote_char, "\r", "\n")):
            yield None
            return
        async with self._running(request) as (conn, columns, codes):
            reader = RowReader(conn, csv_splitter(codes, spec))
            yield MySQLRawText(columns, reader, spec, limit=limit, error=self._error)
