"""Snowflake through snowflake-connector-python (synchronous; run in worker threads).

`connection_config`: `account`, `username`, `password` (a secret) or `private_key_file` (key-pair
auth; `options.private_key_passphrase` is a secret), `warehouse`, `database`, `schema`, `role`.
`options`: `connect_timeout_seconds` (login timeout), `host`/`port`/`protocol` (private link,
proxies, test servers), `ocsp_fail_open`, `authenticator`.

Why threads and not the connector's asyncio API: the async variant is newer, needs its own extra
and does not stream `fetchmany` any better; the thread feed keeps at most two batches in memory
and the loop free (see `common.ThreadFeed`).

Each statement carries `QUERY_TAG` (the execution id) and `STATEMENT_TIMEOUT_IN_SECONDS` (the
request's timeout) as statement parameters, binds parameters server-side (`qmark`), streams with
`fetchmany`, and on cancellation aborts the statement on the server (`SYSTEM$CANCEL_QUERY` with
the query id, or `SYSTEM$CANCEL_ALL_QUERIES` for the session while it is still being submitted).
Snowflake has no read-only session: give the role SELECT grants only. The session runs with
autocommit off and every stream ends with a rollback, so DML never commits (DDL still would).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

import snowflake.connector
from snowflake.connector.constants import FIELD_ID_TO_NAME
from snowflake.connector.errors import Error as SnowflakeError

from reporthubd import secrets
from reporthubd.connectors import common, params
from reporthubd.connectors.base import (
    Column,
    ColumnKind,
    Connector,
    ConnectorError,
    QueryRequest,
    QueryResult,
    TestResult,
)

_KINDS: Mapping[str, ColumnKind] = {
    "REAL": ColumnKind.FLOAT,
    "TEXT": ColumnKind.TEXT,
    "DATE": ColumnKind.DATE,
    "TIMESTAMP": ColumnKind.DATETIME,
    "TIMESTAMP_NTZ": ColumnKind.DATETIME,
    "TIMESTAMP_LTZ": ColumnKind.DATETIME_TZ,
    "TIMESTAMP_TZ": ColumnKind.DATETIME_TZ,
    "TIME": ColumnKind.TIME,
    "BOOLEAN": ColumnKind.BOOLEAN,
    "BINARY": ColumnKind.BINARY,
    "VARIANT": ColumnKind.JSON,
    "OBJECT": ColumnKind.JSON,
    "ARRAY": ColumnKind.JSON,
    "GEOGRAPHY": ColumnKind.TEXT,
    "GEOMETRY": ColumnKind.TEXT,
}
_ERRORS = (SnowflakeError, OSError)


def column_of(description: Any) -> Column:
    source = FIELD_ID_TO_NAME.get(description.type_code, str(description.type_code))
    if source == "FIXED":
        kind = ColumnKind.INTEGER if not description.scale else ColumnKind.DECIMAL
        source_type = f"NUMBER({description.precision},{description.scale})"
    else:
        kind = _KINDS.get(source, ColumnKind.OTHER)
        source_type = source
    return Column(
        name=description.name,
        kind=kind,
        source_type=source_type,
        precision=description.precision if source == "FIXED" else None,
        scale=description.scale if source == "FIXED" else None,
    )


def _converter(column: Column) -> Any:
    if column.kind is ColumnKind.JSON:
        return lambda value: json.loads(value) if isinstance(value, str) else value
    if column.kind is ColumnKind.BINARY:
        return lambda value: bytes(value) if isinstance(value, bytearray) else value
    return None


def _tag(value: str) -> str:
    """A query tag from our own execution id (letters, digits, `-`, `_`, `:` only)."""
    return re.sub(r"[^A-Za-z0-9_:-]", "_", value)[:200]


class SnowflakeConnector(Connector):
    _conn: Any = None

    def _settings(self) -> dict[str, Any]:
        ds = self.datasource
        config = ds.connection_config
        opts = common.options(ds)
        self._timeout = common.connect_timeout(ds)
        account = config.get("account")
        user = config.get("username")
        if not account or not user:
            raise common.config_error(ds, "account and username are required")
        self._where = f"account {account}" + (
            f", database {config['database']}" if config.get("database") else ""
        )
        kwargs: dict[str, Any] = {
            "account": str(account),
            "user": str(user),
            "login_timeout": self._timeout,
            "network_timeout": max(self._timeout, 60.0),
            "paramstyle": "qmark",
            "autocommit": False,
            "application": "reporthubd",
            "client_session_keep_alive": False,
            "session_parameters": {"CLIENT_OUT_OF_BAND_TELEMETRY_ENABLED": False},
        }
        for key in ("warehouse", "database", "schema", "role"):
            if config.get(key):
                kwargs[key] = str(config[key])
        if config.get("private_key_file"):
            kwargs["private_key_file"] = str(config["private_key_file"])
            kwargs["authenticator"] = "SNOWFLAKE_JWT"
            if opts.get("private_key_passphrase") is not None:
                try:
                    kwargs["private_key_file_pwd"] = secrets.resolve(
                        opts["private_key_passphrase"], where="private_key_passphrase"
                    )
                except secrets.SecretError as exc:
                    raise ConnectorError(str(exc)) from None
        else:
            kwargs["password"] = common.secret(ds, "password", required=True)
        for key in ("host", "port", "protocol", "ocsp_fail_open", "authenticator"):
            if key in opts:
                kwargs[key] = opts[key]
        if "host" in opts:
            self._where += f" at {opts['host']}:{opts.get('port', 443)}"
        return kwargs

    def _error(self, what: str, exc: BaseException | str) -> ConnectorError:
        detail = exc if isinstance(exc, str) else (getattr(exc, "msg", None) or str(exc))
        return common.failure(self.datasource, self._where, what, str(detail))

    async def open(self) -> None:
        kwargs = self._settings()
        try:
            async with asyncio.timeout(self._timeout):
                self._conn = await asyncio.to_thread(snowflake.connector.connect, **kwargs)
        except TimeoutError:
            raise self._error("cannot connect", f"no answer within {self._timeout:g} s") from None
        except (*_ERRORS, ValueError) as exc:
            raise self._error("cannot connect", exc) from None

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(*_ERRORS):
                await asyncio.to_thread(conn.close)

    def _require(self) -> Any:
        if self._conn is None:
            raise ConnectorError(f"snowflake datasource {self.datasource.name!r} is not open")
        return self._conn

    async def test(self) -> TestResult:
        conn = self._require()

        def version() -> str:
            with conn.cursor() as cursor:
                row = cursor.execute("SELECT CURRENT_VERSION()").fetchone()
            return str(row[0])

        started = time.perf_counter()
        try:
            server_version = await asyncio.to_thread(version)
        except _ERRORS as exc:
            raise self._error("test query failed", exc) from None
        return TestResult(
            ok=True,
            server_version=server_version,
            round_trip_ms=(time.perf_counter() - started) * 1000,
        )

    @asynccontextmanager
    async def stream(self, request: QueryRequest) -> AsyncIterator[QueryResult]:
        conn = self._require()
        bound = params.bind(request.sql, request.parameters, "qmark")
        query_id: list[str] = []

        def produce(feed: common.ThreadFeed) -> None:
            cursor = conn.cursor()
            try:
                # Statement-level parameters (as Snowpark sends them): the tag and the server
                # timeout apply to this statement only, whatever else shares the session.
                statement_params = {
                    "QUERY_TAG": _tag(f"reporthubd:{request.execution_id or 'adhoc'}")
                }
                if request.timeout_seconds:
                    seconds = max(1, int(request.timeout_seconds + 0.999))
                    statement_params["STATEMENT_TIMEOUT_IN_SECONDS"] = str(seconds)
                if feed.stopping:
                    return
                cursor.execute(bound.sql, bound.args(), _statement_params=statement_params)
                if cursor.sfqid:
                    query_id.append(cursor.sfqid)
                columns = [column_of(d) for d in cursor.description or ()]
                feed.put(columns)
                converters = [_converter(c) for c in columns]
                convert = any(converters)
                while True:
                    rows = cursor.fetchmany(request.batch_size)
                    if not rows:
                        break
                    if convert:
                        rows = [
                            tuple(
                                f(v) if f is not None and v is not None else v
                                for f, v in zip(converters, row, strict=True)
                            )
                            for row in rows
                        ]
                    feed.put([tuple(row) for row in rows])
            finally:
                with contextlib.suppress(*_ERRORS):
                    cursor.close()
                with contextlib.suppress(*_ERRORS):
                    conn.rollback()  # reports never commit

        feed = common.ThreadFeed("snowflake-query", produce, translate=self._translate)
        async with common.feed_result(
            feed, on_abandon=lambda: self._abort(conn, query_id)
        ) as result:
            yield result

    def _translate(self, exc: BaseException) -> BaseException:
        if isinstance(exc, _ERRORS):
            return self._error("query failed", exc)
        return exc

    async def _abort(self, conn: Any, query_id: list[str]) -> None:
        def abort() -> None:
            with conn.cursor() as cursor:
                if query_id:
                    cursor.execute("SELECT SYSTEM$CANCEL_QUERY(?)", (query_id[0],))
                elif getattr(conn, "session_id", None):
                    cursor.execute("SELECT SYSTEM$CANCEL_ALL_QUERIES(?)", (conn.session_id,))

        with contextlib.suppress(*_ERRORS, TimeoutError, asyncio.CancelledError):
            await asyncio.wait_for(
                asyncio.shield(asyncio.to_thread(abort)), common.CANCEL_GRACE_SECONDS
            )
