"""Oracle Database through python-oracledb in thin mode (pure Python, async API).

`connection_config`: `dsn` (Easy Connect or a TNS alias) or `host`, `port` (1521) and
`service_name`; `username`, `password` (a secret). `options`: `connect_timeout_seconds`,
`protocol` ("tcps" for TLS), `wallet_location`, `wallet_password` (a secret), `config_dir`,
`ssl_server_dn_match`, `ssl_server_cert_dn`, `https_proxy`, `https_proxy_port`.

Binds are Oracle's own `:name` (checked by `params.bind`, which names a missing parameter).
`arraysize` and `prefetchrows` are the batch size, so each fetch is one round trip of one batch.
Each stream starts with `SET TRANSACTION READ ONLY` (writes fail with ORA-01456) and ends with a
rollback. TIMESTAMP WITH (LOCAL) TIME ZONE columns come back aware (see `SESSION_SETUP`).
The request's timeout is the connection's `call_timeout`, and cancellation sends a
break (`Connection.cancel()`), which stops the statement on the server.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import oracledb

from reporthubd import secrets
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

_KINDS: Mapping[Any, ColumnKind] = {
    oracledb.DB_TYPE_BINARY_FLOAT: ColumnKind.FLOAT,
    oracledb.DB_TYPE_BINARY_DOUBLE: ColumnKind.FLOAT,
    oracledb.DB_TYPE_BINARY_INTEGER: ColumnKind.INTEGER,
    oracledb.DB_TYPE_VARCHAR: ColumnKind.TEXT,
    oracledb.DB_TYPE_NVARCHAR: ColumnKind.TEXT,
    oracledb.DB_TYPE_CHAR: ColumnKind.TEXT,
    oracledb.DB_TYPE_NCHAR: ColumnKind.TEXT,
    oracledb.DB_TYPE_LONG: ColumnKind.TEXT,
    oracledb.DB_TYPE_CLOB: ColumnKind.TEXT,
    oracledb.DB_TYPE_NCLOB: ColumnKind.TEXT,
    oracledb.DB_TYPE_ROWID: ColumnKind.TEXT,
    oracledb.DB_TYPE_DATE: ColumnKind.DATETIME,
    oracledb.DB_TYPE_TIMESTAMP: ColumnKind.DATETIME,
    oracledb.DB_TYPE_TIMESTAMP_LTZ: ColumnKind.DATETIME_TZ,
    oracledb.DB_TYPE_TIMESTAMP_TZ: ColumnKind.DATETIME_TZ,
    oracledb.DB_TYPE_RAW: ColumnKind.BINARY,
    oracledb.DB_TYPE_LONG_RAW: ColumnKind.BINARY,
    oracledb.DB_TYPE_BLOB: ColumnKind.BINARY,
    oracledb.DB_TYPE_JSON: ColumnKind.JSON,
    oracledb.DB_TYPE_BOOLEAN: ColumnKind.BOOLEAN,
}


def column_of(description: Any) -> Column:
    """Our column for one `cursor.description` entry (oracledb's FetchInfo or a 7-tuple)."""
    name, db_type, _display, _size, precision, scale, _null = tuple(description)
    if db_type is oracledb.DB_TYPE_NUMBER:
        if scale == -127 and precision:  # FLOAT(b)
            kind = ColumnKind.FLOAT
        elif scale == 0 and precision:
            kind = ColumnKind.INTEGER
        else:
            kind = ColumnKind.DECIMAL
        source = f"NUMBER({precision},{scale})" if precision else "NUMBER"
        return Column(name=name, kind=kind, source_type=source, precision=precision, scale=scale)
    return Column(
        name=name, kind=_KINDS.get(db_type, ColumnKind.OTHER), source_type=str(db_type.name)
    )


TSTZ_FORMAT = 'YYYY-MM-DD"T"HH24:MI:SS.FF6TZH:TZM'
SESSION_SETUP = (
    # python-oracledb returns TIMESTAMP WITH TIME ZONE as a naive wall-clock time (the zone is
    # dropped), so those columns are fetched as ISO text with their offset and parsed back;
    # TIMESTAMP WITH LOCAL TIME ZONE comes in the session zone, which is UTC.
    f"ALTER SESSION SET NLS_TIMESTAMP_TZ_FORMAT = '{TSTZ_FORMAT}'",
    "ALTER SESSION SET TIME_ZONE = 'UTC'",
)


def parse_timestamp_tz(text: str | None) -> datetime | None:
    """'2024-01-02T03:04:05.123456+02:00' (NLS_TIMESTAMP_TZ_FORMAT above) → aware datetime."""
    return None if text is None else datetime.fromisoformat(text.strip())


def _as_utc(value: datetime | None) -> datetime | None:
    return None if value is None else value.replace(tzinfo=UTC)


def _output_type_handler(cursor: Any, metadata: Any) -> Any:
    """Exact decimals for NUMBER with a fraction, LOBs fetched inline as str/bytes, aware
    datetimes for the zoned timestamp types."""
    db_type = metadata.type_code
    if db_type is oracledb.DB_TYPE_TIMESTAMP_TZ:
        return cursor.var(
            oracledb.DB_TYPE_VARCHAR,
            size=64,
            arraysize=cursor.arraysize,
            outconverter=parse_timestamp_tz,
        )
    if db_type is oracledb.DB_TYPE_TIMESTAMP_LTZ:
        return cursor.var(db_type, arraysize=cursor.arraysize, outconverter=_as_utc)
    if (
        db_type is oracledb.DB_TYPE_NUMBER
        and column_of(
            (metadata.name, db_type, None, None, metadata.precision, metadata.scale, None)
        ).kind
        is ColumnKind.DECIMAL
    ):
        return cursor.var(Decimal, arraysize=cursor.arraysize)
    if db_type in (oracledb.DB_TYPE_CLOB, oracledb.DB_TYPE_NCLOB):
        return cursor.var(oracledb.DB_TYPE_LONG, arraysize=cursor.arraysize)
    if db_type is oracledb.DB_TYPE_BLOB:
        return cursor.var(oracledb.DB_TYPE_LONG_RAW, arraysize=cursor.arraysize)
    return None


def bind(sql: str, values: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    """The statement and the bind dictionary (named style; a missing name raises)."""
    bound = params.bind(sql, values, "named")
    return bound.sql, {
        name: json.dumps(value) if isinstance(value, dict) else value
        for name, value in bound.mapping.items()
    }


class OracleConnector(Connector):
    _conn: Any = None

    def _settings(self) -> dict[str, Any]:
        ds = self.datasource
        config = ds.connection_config
        opts = common.options(ds)
        self._timeout = common.connect_timeout(ds)
        kwargs: dict[str, Any] = {
            "user": config.get("username"),
            "password": common.secret(ds, "password"),
            "tcp_connect_timeout": self._timeout,
            "retry_count": 0,
        }
        if config.get("dsn"):
            kwargs["dsn"] = str(config["dsn"])
            self._where = str(config["dsn"]).split("@")[-1]
        else:
            host = str(config.get("host") or "127.0.0.1")
            port = int(config.get("port") or 1521)
            service = config.get("service_name")
            if not service:
                raise common.config_error(ds, "service_name (or dsn) is required")
            kwargs.update(host=host, port=port, service_name=str(service))
            self._where = f"{host}:{port}/{service}"
        for key in (
            "protocol",
            "wallet_location",
            "config_dir",
            "ssl_server_dn_match",
            "ssl_server_cert_dn",
            "https_proxy",
            "https_proxy_port",
        ):
            if key in opts:
                kwargs[key] = opts[key]
        if opts.get("wallet_password") is not None:
            try:
                kwargs["wallet_password"] = secrets.resolve(
                    opts["wallet_password"], where="wallet_password"
                )
            except secrets.SecretError as exc:
                raise ConnectorError(str(exc)) from None
        return kwargs

    def _error(self, what: str, exc: BaseException | str) -> ConnectorError:
        if isinstance(exc, oracledb.Error) and exc.args:
            error = exc.args[0]
            detail = getattr(error, "message", None) or str(error)
        else:
            detail = exc if isinstance(exc, str) else str(exc)
        return common.failure(self.datasource, getattr(self, "_where", "?"), what, str(detail))

    async def open(self) -> None:
        kwargs = self._settings()
        try:
            async with asyncio.timeout(self._timeout):
                self._conn = await oracledb.connect_async(**kwargs)
                with self._conn.cursor() as cursor:
                    for statement in SESSION_SETUP:
                        await cursor.execute(statement)
        except TimeoutError:
            await self.close()
            raise self._error("cannot connect", f"no answer within {self._timeout:g} s") from None
        except oracledb.Error as exc:
            await self.close()
            raise self._error("cannot connect", exc) from None

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(oracledb.Error):
                await conn.close()

    def _require(self) -> Any:
        if self._conn is None:
            raise ConnectorError(f"oracle datasource {self.datasource.name!r} is not open")
        return self._conn

    async def test(self) -> TestResult:
        conn = self._require()
        started = time.perf_counter()
        try:
            await conn.ping()
        except oracledb.Error as exc:
            raise self._error("ping failed", exc) from None
        return TestResult(
            ok=True,
            server_version=str(conn.version),
            round_trip_ms=(time.perf_counter() - started) * 1000,
        )

    @asynccontextmanager
    async def stream(self, request: QueryRequest) -> AsyncIterator[QueryResult]:
        conn = self._require()
        sql, binds = bind(request.sql, request.parameters)
        conn.call_timeout = int(request.timeout_seconds * 1000) if request.timeout_seconds else 0
        cursor = conn.cursor()
        cursor.arraysize = request.batch_size
        cursor.prefetchrows = request.batch_size + 1
        cursor.outputtypehandler = _output_type_handler
        result: _OracleResult | None = None
        try:
            try:
                await cursor.execute("SET TRANSACTION READ ONLY")
                await cursor.execute(sql, binds)
            except oracledb.Error as exc:
                raise self._error("query failed", exc) from None
            if cursor.description is None:
                raise self._error("query failed", "the statement returned no rows")
            result = _OracleResult(self, cursor, request.batch_size)
            yield result
        finally:
            if result is None or not result.exhausted:
                await self._cancel(conn)
            with contextlib.suppress(oracledb.Error):
                cursor.close()
            with contextlib.suppress(oracledb.Error):
                await conn.rollback()

    async def _cancel(self, conn: Any) -> None:
        async def cancel() -> None:
            outcome = conn.cancel()
            if asyncio.iscoroutine(outcome):
                await outcome

        with contextlib.suppress(oracledb.Error, TimeoutError, asyncio.CancelledError):
            await asyncio.wait_for(asyncio.shield(cancel()), common.CANCEL_GRACE_SECONDS)


class _OracleResult(QueryResult):
    def __init__(self, connector: OracleConnector, cursor: Any, batch_size: int) -> None:
        self._connector = connector
        self._cursor = cursor
        self._batch_size = batch_size
        self.exhausted = False
        self.columns = [column_of(d) for d in cursor.description]

    async def batches(self) -> AsyncIterator[list[Row]]:
        while True:
            try:
                rows = await self._cursor.fetchmany(self._batch_size)
            except oracledb.Error as exc:
                raise self._connector._error("fetch failed", exc) from None
            if not rows:
                self.exhausted = True
                return
            yield [tuple(row) for row in rows]
