"""Microsoft SQL Server through aioodbc (pyodbc in a dedicated worker thread).

`connection_config`: `host`, `port` (1433), `database`, `username` + `password` (a secret) or
`options.trusted_connection`, `driver` (default "ODBC Driver 18 for SQL Server"), `encrypt`
("yes"/"no"/"strict", default "yes"), `trust_server_certificate` (default false). `options`:
`connect_timeout_seconds` (LoginTimeout), `application_intent` (default "ReadOnly"),
`isolation_level` (default "READ COMMITTED"), `host_name_in_certificate`, `server_certificate`,
`odbc` (extra connection-string attributes).

Binds are `?` (qmark); rows stream with `fetchmany`. The request's timeout becomes the ODBC query
timeout, and cancellation (timeout or user) calls SQLCancel on the statement from a second thread,
which stops it on the server. SQL Server has no read-only session: the connection asks for
`ApplicationIntent=ReadOnly` (routing to a readable secondary where there is one), runs with
autocommit off and rolls back after every stream, so writes never commit.

The same code drives other ODBC drivers by their flavour (the driver name): PostgreSQL's psqlODBC
and MariaDB Connector/ODBC, which get their own connection-string keys, cursor streaming options
and a real read-only session. That is how the aioodbc path is tested where no SQL Server runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
import time
from collections.abc import AsyncIterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from datetime import date, datetime, timedelta, timezone
from datetime import time as time_of_day
from decimal import Decimal
from typing import Any

import aioodbc
import pyodbc

from reporthubd.connectors import common, params
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

DEFAULT_DRIVER = "ODBC Driver 18 for SQL Server"
SQL_SS_TIMESTAMPOFFSET = -155
_PY_KINDS: Mapping[type, ColumnKind] = {
    bool: ColumnKind.BOOLEAN,
    int: ColumnKind.INTEGER,
    float: ColumnKind.FLOAT,
    Decimal: ColumnKind.DECIMAL,
    str: ColumnKind.TEXT,
    bytes: ColumnKind.BINARY,
    bytearray: ColumnKind.BINARY,
    date: ColumnKind.DATE,
    datetime: ColumnKind.DATETIME,
    time_of_day: ColumnKind.TIME,
}


def _braced(value: str) -> str:
    """An ODBC connection-string value, safe whatever characters it holds: braced (with `}`
    doubled) when it holds `;`, braces, `=` or edge spaces — some drivers (psqlODBC) take braces
    literally, so plain values stay plain."""
    if any(ch in value for ch in ";{}=") or value != value.strip():
        return "{" + value.replace("}", "}}") + "}"
    return value


def flavour_of(driver: str) -> str:
    lowered = driver.lower()
    if "postgres" in lowered:
        return "postgresql"
    if "maria" in lowered or "mysql" in lowered:
        return "mariadb"
    return "sqlserver"


def _yes_no(value: Any) -> str:
    if isinstance(value, str):
        return value
    return "yes" if value else "no"


def connection_string(config: Mapping[str, Any], password: str | None, timeout: float) -> str:
    """The ODBC connection string for `connection_config` (password already resolved)."""
    opts: Mapping[str, Any] = config.get("options") or {}
    driver = str(config.get("driver") or DEFAULT_DRIVER)
    flavour = flavour_of(driver)
    host = str(config.get("host") or "127.0.0.1")
    database = config.get("database")
    parts: list[tuple[str, str]] = [("Driver", "{" + driver.replace("}", "}}") + "}")]
    if flavour == "sqlserver":
        port = int(config.get("port") or 1433)
        parts.append(("Server", f"tcp:{host},{port}"))
        if database:
            parts.append(("Database", _braced(str(database))))
        if opts.get("trusted_connection"):
            parts.append(("Trusted_Connection", "yes"))
        else:
            parts.append(("UID", _braced(str(config.get("username") or ""))))
            parts.append(("PWD", _braced(password or "")))
        parts.append(("Encrypt", _yes_no(config.get("encrypt", "yes"))))
        parts.append(
            ("TrustServerCertificate", _yes_no(bool(config.get("trust_server_certificate"))))
        )
        if opts.get("host_name_in_certificate"):
            parts.append(("HostNameInCertificate", str(opts["host_name_in_certificate"])))
        if opts.get("server_certificate"):
            parts.append(("ServerCertificate", _braced(str(opts["server_certificate"]))))
        parts.append(("ApplicationIntent", str(opts.get("application_intent", "ReadOnly"))))
        parts.append(("LoginTimeout", str(max(1, round(timeout)))))
        parts.append(("APP", "reporthubd"))
    else:
        default_port = 5432 if flavour == "postgresql" else 3306
        parts.append(("Server", host))
        parts.append(("Port", str(int(config.get("port") or default_port))))
        if database:
            parts.append(("Database", _braced(str(database))))
        parts.append(("UID", _braced(str(config.get("username") or ""))))
        parts.append(("PWD", _braced(password or "")))
        if flavour == "postgresql":
            # Cursor-based fetching (not the whole result in the driver) and real booleans/bytes.
            parts += [
                ("UseDeclareFetch", "1"),
                ("Fetch", "2000"),
                ("BoolsAsChar", "0"),
                ("ByteaAsLongVarBinary", "1"),
            ]
            if config.get("encrypt") is not None:
                parts.append(("SSLmode", "require" if config.get("encrypt") else "disable"))
        else:
            parts += [("NO_CACHE", "1"), ("FORWARDONLY", "1")]
            if config.get("encrypt"):
                parts.append(("SSLENFORCE", "1"))
                parts.append(("SSLVERIFY", "0" if config.get("trust_server_certificate") else "1"))
    for key, value in (opts.get("odbc") or {}).items():
        parts.append((str(key), _braced(str(value))))
    return ";".join(f"{key}={value}" for key, value in parts)


def _datetimeoffset(raw: bytes) -> datetime:
    """SQL Server DATETIMEOFFSET (ODBC type -155) → aware datetime."""
    year, month, day, hour, minute, second, nanos, tz_hour, tz_minute = struct.unpack("<6hI2h", raw)
    zone = timezone(timedelta(hours=tz_hour, minutes=tz_minute))
    return datetime(year, month, day, hour, minute, second, nanos // 1000, tzinfo=zone)


def _bind_value(value: Any) -> Any:
    if isinstance(value, datetime) and value.tzinfo is not None:
        # ODBC has no zone-aware timestamp parameter; ISO text converts to datetimeoffset
        # (SQL Server) or timestamptz (PostgreSQL) exactly.
        return value.isoformat()
    if isinstance(value, bytearray):
        return bytes(value)
    return value


class SQLServerConnector(Connector):
    _conn: Any = None
    _executor: ThreadPoolExecutor | None = None

    def _settings(self) -> str:
        ds = self.datasource
        config = ds.connection_config
        self._timeout = common.connect_timeout(ds)
        driver = str(config.get("driver") or DEFAULT_DRIVER)
        self._flavour = flavour_of(driver)
        host = config.get("host") or "127.0.0.1"
        port = config.get("port") or {"sqlserver": 1433, "postgresql": 5432}.get(
            self._flavour, 3306
        )
        self._where = f"{host}:{port}/{config.get('database') or ''}"
        if not config.get("database"):
            raise common.config_error(ds, "database is required")
        password = common.secret(ds, "password")
        return connection_string(config, password, self._timeout)

    def _error(self, what: str, exc: BaseException | str) -> ConnectorError:
        if isinstance(exc, pyodbc.Error) and len(exc.args) >= 2:
            detail = f"[{exc.args[0]}] {exc.args[1]}"
        else:
            detail = exc if isinstance(exc, str) else str(exc)
        return common.failure(self.datasource, self._where, what, detail)

    async def open(self) -> None:
        dsn = self._settings()
        self._executor = ThreadPoolExecutor(1, thread_name_prefix=f"odbc-{self.datasource.id}")
        try:
            async with asyncio.timeout(self._timeout):
                self._conn = await aioodbc.connect(
                    dsn=dsn,
                    autocommit=False,
                    timeout=max(1, round(self._timeout)),
                    executor=self._executor,
                )
                if self._flavour == "sqlserver":
                    self._conn._conn.add_output_converter(SQL_SS_TIMESTAMPOFFSET, _datetimeoffset)
                await self._start_session()
        except TimeoutError:
            await self.close()
            raise self._error("cannot connect", f"no answer within {self._timeout:g} s") from None
        except pyodbc.Error as exc:
            await self.close()
            raise self._error("cannot connect", exc) from None

    async def _start_session(self) -> None:
        isolation = str(common.options(self.datasource).get("isolation_level", "READ COMMITTED"))
        if isolation.upper() not in {
            "READ UNCOMMITTED",
            "READ COMMITTED",
            "REPEATABLE READ",
            "SNAPSHOT",
            "SERIALIZABLE",
        }:
            raise common.config_error(self.datasource, f"unknown isolation_level {isolation!r}")
        statements = {
            "sqlserver": [f"SET TRANSACTION ISOLATION LEVEL {isolation.upper()}"],
            "postgresql": ["SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY"],
            "mariadb": ["SET SESSION TRANSACTION READ ONLY"],
        }[self._flavour]
        async with self._conn.cursor() as cursor:
            for statement in statements:
                await cursor.execute(statement)
        await self._conn.commit()

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(pyodbc.Error):
                await conn.rollback()
            with contextlib.suppress(pyodbc.Error):
                await conn.close()
        executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=False, cancel_futures=True)

    def _require(self) -> Any:
        if self._conn is None:
            raise ConnectorError(f"sqlserver datasource {self.datasource.name!r} is not open")
        return self._conn

    async def test(self) -> TestResult:
        conn = self._require()
        started = time.perf_counter()
        try:
            async with conn.cursor() as cursor:
                await cursor.execute("SELECT 1")
                await cursor.fetchone()
            round_trip_ms = (time.perf_counter() - started) * 1000
            name = await conn.getinfo(pyodbc.SQL_DBMS_NAME)
            version = await conn.getinfo(pyodbc.SQL_DBMS_VER)
            await conn.rollback()
        except pyodbc.Error as exc:
            raise self._error("test query failed", exc) from None
        return TestResult(ok=True, server_version=f"{name} {version}", round_trip_ms=round_trip_ms)

    @asynccontextmanager
    async def stream(self, request: QueryRequest) -> AsyncIterator[QueryResult]:
        conn = self._require()
        bound = params.bind(
            request.sql,
            request.parameters,
            "qmark",
            dialect="mysql" if self._flavour == "mariadb" else "standard",
        )
        args = [_bind_value(value) for value in bound.values]
        # The driver's query timeout, applied to cursors created after it is set (SQL Server
        # cancels the statement when it fires); 0 turns it off. Some drivers do not offer it;
        # cancellation below still stops the statement.
        with contextlib.suppress(pyodbc.Error):
            conn._conn.timeout = (
                int(request.timeout_seconds + 0.999) if request.timeout_seconds else 0
            )
        cursor = await conn.cursor()
        result: _OdbcResult | None = None
        try:
            try:
                await cursor.execute(bound.sql, *args)
                if cursor.description is None:
                    raise ConnectorError("the statement returned no result set")
                first = await cursor.fetchmany(request.batch_size)
            except pyodbc.Error as exc:
                raise self._error("query failed", exc) from None
            except ConnectorError as exc:
                raise self._error("query failed", str(exc)) from None
            result = _OdbcResult(self, cursor, first, request.batch_size)
            yield result
        finally:
            if result is None or not result.exhausted:
                await self._cancel(cursor)
            with contextlib.suppress(pyodbc.Error):
                await cursor.close()
            with contextlib.suppress(pyodbc.Error):
                await conn.rollback()  # reports never commit

    async def _cancel(self, cursor: Any) -> None:
        """SQLCancel from a thread other than the connection's busy worker."""
        with contextlib.suppress(pyodbc.Error, TimeoutError, asyncio.CancelledError):
            await asyncio.wait_for(
                asyncio.shield(asyncio.to_thread(cursor._impl.cancel)),
                common.CANCEL_GRACE_SECONDS,
            )


class _OdbcResult(QueryResult):
    def __init__(
        self, connector: SQLServerConnector, cursor: Any, first: list[Any], batch_size: int
    ) -> None:
        self._connector = connector
        self._cursor = cursor
        self._first: list[Any] | None = first
        self._batch_size = batch_size
        self.exhausted = False
        self.columns = [self._column(i, d, first) for i, d in enumerate(cursor.description)]

    @staticmethod
    def _column(index: int, description: Any, first: list[Any]) -> Column:
        name, type_code, _display, _internal_size, precision, scale, _null = description
        kind = _PY_KINDS.get(type_code, ColumnKind.OTHER)
        if type_code is datetime or kind is ColumnKind.OTHER:
            sample = next((row[index] for row in first if row[index] is not None), None)
            if isinstance(sample, datetime):
                kind = ColumnKind.DATETIME_TZ if sample.tzinfo else ColumnKind.DATETIME
        source = getattr(type_code, "__name__", str(type_code))
        if kind is ColumnKind.DECIMAL:
            return Column(
                name=name, kind=kind, source_type=source, precision=precision, scale=scale
            )
        return Column(name=name, kind=kind, source_type=source)

    @staticmethod
    def _rows(rows: list[Any]) -> list[Row]:
        return [tuple(bytes(v) if isinstance(v, bytearray) else v for v in row) for row in rows]

    async def batches(self) -> AsyncIterator[list[Row]]:
        first, self._first = self._first, None
        if first:
            yield self._rows(first)
            if len(first) < self._batch_size:
                self.exhausted = True
                return
        elif first is not None:
            self.exhausted = True
            return
        while True:
            try:
                rows = await self._cursor.fetchmany(self._batch_size)
            except pyodbc.Error as exc:
                raise self._connector._error("fetch failed", exc) from None
            if not rows:
                self.exhausted = True
                return
            yield self._rows(rows)
