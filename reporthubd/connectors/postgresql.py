"""PostgreSQL through asyncpg: a server-side cursor inside a read-only transaction.

`connection_config`: host, port (5432), database, username, password (inline or a secret
reference), ssl (`{"mode": "disable|prefer|require|verify-ca|verify-full", "ca_file": ...,
"cert_file": ..., "key_file": ...}`), options (`connect_timeout_seconds`, `server_settings`).

Each `stream` runs `BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY`, prepares the statement
(so a syntax error, an unknown column or a write statement fails before any row), binds the
parameters as `$n` (strings are parsed to the parameter's type first, so `"2026-01-01"` binds to
a `date`), and fetches `batch_size` rows at a time from a portal. The transaction is rolled back
at the end. `statement_timeout` is set to the query timeout plus a margin, so the server stops
the query even if the daemon dies before it can cancel.

CSV fast path (`stream_csv`): when the CSV options can be rendered by the server (see
`connectors.base.ServerCSV`) and every column is of a type whose PostgreSQL text form equals the
canonical one (or is cast to it: booleans, timestamps), the rows are produced by
`COPY (SELECT ... FROM (<query>) AS q(c1..cn)) TO STDOUT (FORMAT csv)`, inside the same
read-only transaction. COPY cannot take bind parameters, so parameters are set with
`set_config('reporthubd.p<n>', $1, true)` (bound) and read back in the query as
`current_setting('reporthubd.p<n>')::<type>`: no value is ever pasted into SQL text. One
difference with the generic path remains: COPY quotes empty strings (`""`) to tell them from NULL.

Cancellation: asyncpg sends a cancel request when the awaiting task is cancelled; we wait (at
most a few seconds) for it to reach the server, then drop the connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import re
import ssl as ssl_module
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from datetime import date, datetime
from datetime import time as dtime
from decimal import Decimal, InvalidOperation
from typing import Any, ClassVar

import asyncpg

from reporthubd import secrets
from reporthubd.connectors import params
from reporthubd.connectors.base import (
    Column,
    ColumnKind,
    Connector,
    ConnectorError,
    Description,
    QueryRequest,
    QueryResult,
    RenderedCSV,
    RenderedSink,
    Row,
    ServerCSV,
    TestResult,
)

CANCEL_GRACE_SECONDS = 5.0
SERVER_BACKSTOP_SECONDS = 10.0
"""The server's own statement timeout is the query timeout plus this (the engine cancels first)."""

_KINDS: dict[str, ColumnKind] = {
    "int2": ColumnKind.INTEGER,
    "int4": ColumnKind.INTEGER,
    "int8": ColumnKind.INTEGER,
    "oid": ColumnKind.INTEGER,
    "numeric": ColumnKind.DECIMAL,
    "money": ColumnKind.TEXT,
    "float4": ColumnKind.FLOAT,
    "float8": ColumnKind.FLOAT,
    "bool": ColumnKind.BOOLEAN,
    "date": ColumnKind.DATE,
    "timestamp": ColumnKind.DATETIME,
    "timestamptz": ColumnKind.DATETIME_TZ,
    "time": ColumnKind.TIME,
    "timetz": ColumnKind.TIME,
    "text": ColumnKind.TEXT,
    "varchar": ColumnKind.TEXT,
    "bpchar": ColumnKind.TEXT,
    "char": ColumnKind.TEXT,
    "name": ColumnKind.TEXT,
    "citext": ColumnKind.TEXT,
    "uuid": ColumnKind.TEXT,
    "bytea": ColumnKind.BINARY,
    "json": ColumnKind.JSON,
    "jsonb": ColumnKind.JSON,
}

# Types whose PostgreSQL text output already is the canonical CSV text.
_COPY_AS_IS = {
    "int2",
    "int4",
    "int8",
    "oid",
    "numeric",
    "text",
    "varchar",
    "bpchar",
    "char",
    "name",
    "citext",
    "uuid",
}


def _conninfo(config: Mapping[str, Any]) -> tuple[str, int, str, str]:
    host = str(config.get("host") or "localhost")
    port = int(config.get("port") or 5432)
    database = str(config.get("database") or "postgres")
    user = str(config.get("username") or "postgres")
    return host, port, database, user


def _ssl_context(spec: Any) -> Any:
    if not spec:
        return None
    if not isinstance(spec, Mapping):
        raise ConnectorError("ssl must be a JSON object")
    mode = str(spec.get("mode", "require"))
    if mode in {"disable", "allow", "prefer"}:
        return mode if mode != "disable" else False
    context = ssl_module.create_default_context(cafile=spec.get("ca_file"))
    if spec.get("cert_file"):
        context.load_cert_chain(spec["cert_file"], spec.get("key_file"))
    if mode == "require":
        context.check_hostname = False
        context.verify_mode = ssl_module.CERT_NONE
    elif mode == "verify-ca":
        context.check_hostname = False
    elif mode != "verify-full":
        raise ConnectorError(
            f"ssl.mode {mode!r} is not one of disable, prefer, require, verify-ca, verify-full"
        )
    return context


def _detail(exc: BaseException) -> str:
    if isinstance(exc, asyncpg.PostgresError):
        text = exc.args[0] if exc.args else str(exc)
        detail = getattr(exc, "detail", None)
        hint = getattr(exc, "hint", None)
        parts = [str(text)]
        if detail:
            parts.append(str(detail))
        if hint:
            parts.append(f"hint: {hint}")
        text = "; ".join(parts)
    elif isinstance(exc, TimeoutError):
        text = "timed out"
    else:
        text = str(exc) or type(exc).__name__
    return secrets.redact_text(" ".join(str(text).split()))


def _coerce(value: Any, type_name: str) -> Any:
    """Strings (from JSON triggers and the CLI) parsed to what asyncpg expects for the type."""
    if value is None:
        return None
    if type_name in {"json", "jsonb"} and not isinstance(value, str):
        return json.dumps(value)
    if not isinstance(value, str):
        if type_name in {"timestamp"} and isinstance(value, datetime) and value.tzinfo:
            return value.replace(tzinfo=None)  # the wall time of the template's zone
        if type_name == "date" and isinstance(value, datetime):
            return value.date()
        if type_name in {"numeric"} and isinstance(value, int | float):
            return Decimal(str(value))
        if type_name in {"text", "varchar", "bpchar"} and not isinstance(value, str):
            return _as_text(value)
        return value
    text = value.strip()
    try:
        if type_name in {"int2", "int4", "int8", "oid"}:
            return int(text)
        if type_name == "numeric":
            return Decimal(text)
        if type_name in {"float4", "float8"}:
            return float(text)
        if type_name == "bool":
            lowered = text.lower()
            if lowered in {"true", "t", "yes", "y", "1", "on"}:
                return True
            if lowered in {"false", "f", "no", "n", "0", "off"}:
                return False
            raise ValueError(text)
        if type_name == "date":
            return date.fromisoformat(text[:10]) if len(text) > 10 else date.fromisoformat(text)
        if type_name == "timestamp":
            parsed = datetime.fromisoformat(text)
            return parsed.replace(tzinfo=None) if parsed.tzinfo else parsed
        if type_name == "timestamptz":
            parsed = datetime.fromisoformat(text)
            if parsed.tzinfo is None:
                raise ValueError("a timestamp with time zone needs an offset")
            return parsed
        if type_name == "time":
            return dtime.fromisoformat(text)
        if type_name == "uuid":
            return uuid.UUID(text)
        if type_name in {"json", "jsonb"}:
            return value
    except (ValueError, InvalidOperation) as exc:
        raise ValueError(f"{value!r} is not a valid {type_name} ({exc})") from None
    return value


def _json_text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def _as_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, date | datetime | dtime):
        return value.isoformat()
    if isinstance(value, dict | list):
        return json.dumps(value)
    return str(value)


class PostgreSQLResult(QueryResult):
    """What `stream` yields: the columns, then batches fetched from the portal."""

    def __init__(self, columns: Sequence[Column], fetch: Callable[[], Awaitable[list[Row]]]):
        self.columns = columns
        self._fetch = fetch

    async def batches(self) -> AsyncIterator[list[Row]]:
        while True:
            rows = await self._fetch()
            if not rows:
                return
            yield rows


class PostgreSQLCopy(RenderedCSV):
    """What `stream_csv` yields: the columns, then the CSV that `COPY ... TO STDOUT` renders."""

    fast_path: ClassVar[str] = "postgresql-copy"

    def __init__(
        self,
        columns: Sequence[Column],
        run: Callable[[Callable[[bytes], Awaitable[None]]], Awaitable[int]],
    ):
        self.columns = columns
        self._run = run

    async def copy_to(self, sink: RenderedSink) -> int:
        # COPY hands its chunks to a callback without a count and reports the rows at the end;
        # the partial keeps the per-chunk call as cheap as passing `sink` itself.
        rows = await self._run(functools.partial(sink, rows=0))
        await sink(b"", rows)
        return rows


class PostgresConnector(Connector):
    paramstyle = params.Style.NUMERIC

    def __init__(self, datasource: Any) -> None:
        super().__init__(datasource)
        self._conn: asyncpg.Connection | None = None
        host, port, database, _ = _conninfo(datasource.connection_config)
        self.where = f"{host}:{port}/{database}"

    def _error(self, what: str, exc: BaseException | str) -> ConnectorError:
        detail = exc if isinstance(exc, str) else _detail(exc)
        return ConnectorError(f"postgresql {self.where}: {what}: {detail}")

    async def open(self) -> None:
        config = self.datasource.connection_config
        host, port, database, user = _conninfo(config)
        options = config.get("options") or {}
        if not isinstance(options, Mapping):
            raise ConnectorError(f"postgresql {self.where}: options must be a JSON object")
        password = config.get("password")
        try:
            secret = secrets.resolve(password, where="password") if password else None
        except secrets.SecretError as exc:
            raise self._error("cannot read the password", str(exc)) from None
        server_settings = {"application_name": "reporthubd"}
        extra = options.get("server_settings") or {}
        if isinstance(extra, Mapping):
            server_settings |= {str(k): str(v) for k, v in extra.items()}
        timeout = float(options.get("connect_timeout_seconds", 10))
        try:
            self._conn = await asyncpg.connect(
                host=host,
                port=port,
                user=user,
                password=secret,
                database=database,
                timeout=timeout,
                ssl=_ssl_context(config.get("ssl")),
                server_settings=server_settings,
                statement_cache_size=0,
            )
        except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            raise self._error("cannot connect", exc) from None
        # JSON values as dicts and lists (the connector contract), not as their text.
        for type_name in ("json", "jsonb"):
            await self._conn.set_type_codec(
                type_name, encoder=_json_text, decoder=json.loads, schema="pg_catalog"
            )

    @property
    def connection(self) -> asyncpg.Connection:
        if self._conn is None:
            raise ConnectorError(f"postgresql {self.where}: not connected")
        return self._conn

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None and not conn.is_closed():
            try:
                async with asyncio.timeout(5):
                    await conn.close()
            except (TimeoutError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
                conn.terminate()

    async def test(self) -> TestResult:
        started = time.perf_counter()
        version = await self.connection.fetchval("SELECT version()")
        return TestResult(
            ok=True,
            server_version=str(version).split(",")[0],
            round_trip_ms=(time.perf_counter() - started) * 1000,
        )

    @property
    def server_pid(self) -> int:
        return int(self.connection.get_server_pid())

    # -- streaming ------------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def _transaction(
        self, timeout_seconds: float | None = None
    ) -> AsyncIterator[asyncpg.Connection]:
        conn = self.connection
        try:
            await conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            if timeout_seconds:
                # A backstop: should the daemon die mid-query, the server still stops it.
                backstop = int((timeout_seconds + SERVER_BACKSTOP_SECONDS) * 1000)
                await conn.execute(f"SET LOCAL statement_timeout = {backstop}")
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            raise self._error("cannot start a read-only transaction", exc) from None
        try:
            yield conn
        except asyncio.CancelledError:
            await self._after_cancel()
            raise
        except BaseException:
            await self._rollback()
            raise
        else:
            await self._rollback()

    async def _rollback(self) -> None:
        conn = self._conn
        if conn is None or conn.is_closed():
            return
        try:
            async with asyncio.timeout(CANCEL_GRACE_SECONDS):
                await asyncio.shield(conn.execute("ROLLBACK"))
        except (
            TimeoutError,
            OSError,
            asyncpg.PostgresError,
            asyncpg.InterfaceError,
            asyncpg.InternalClientError,
        ):
            conn.terminate()
            self._conn = None

    async def _after_cancel(self) -> None:
        """asyncpg has sent a cancel request for the interrupted command: let it reach the
        server (bounded), then drop the connection so nothing of the query survives."""
        conn, self._conn = self._conn, None
        if conn is None:
            return
        pending = list(getattr(conn, "_cancellations", ()) or ())
        if pending:
            with contextlib.suppress(Exception):
                await asyncio.shield(asyncio.wait(pending, timeout=CANCEL_GRACE_SECONDS))
        conn.terminate()

    async def _prepare(
        self, conn: asyncpg.Connection, request: QueryRequest
    ) -> tuple[Any, list[Any], list[Column]]:
        bound = params.bind(request.sql, request.parameters, params.Style.NUMERIC)
        try:
            statement = await conn.prepare(bound.sql)
        except (asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            raise self._error("the query failed", exc) from None
        types = statement.get_parameters()
        args: list[Any] = []
        for name, value, pg_type in zip(bound.names, bound.values, types, strict=True):
            try:
                args.append(_coerce(value, pg_type.name))
            except ValueError as exc:
                raise self._error(f"parameter :{name}", str(exc)) from None
        columns = [_column(attr) for attr in statement.get_attributes()]
        return statement, args, columns

    @contextlib.asynccontextmanager
    async def stream(self, request: QueryRequest) -> AsyncIterator[QueryResult]:
        async with self._transaction(request.timeout_seconds) as conn:
            statement, args, columns = await self._prepare(conn, request)
            try:
                cursor = await statement.cursor(*args)
            except (asyncpg.PostgresError, asyncpg.InterfaceError, OverflowError) as exc:
                raise self._error("the query failed", exc) from None

            async def fetch() -> list[Row]:
                try:
                    records = await cursor.fetch(request.batch_size)
                except (
                    asyncpg.PostgresError,
                    asyncpg.InterfaceError,
                    asyncpg.InternalClientError,
                ) as exc:
                    # A backend terminated between two fetches leaves asyncpg's protocol in a
                    # state it reports as an InternalClientError: the connection is gone.
                    if conn.is_closed() or isinstance(exc, asyncpg.InternalClientError):
                        raise self._error("the connection to the server was lost", exc) from None
                    raise self._error("the query failed", exc) from None
                return [tuple(r) for r in records]

            yield PostgreSQLResult(columns, fetch)

    async def describe(self, request: QueryRequest) -> Description:
        """The prepared statement's columns (asyncpg's prepare: parsed and planned, not run),
        inside the same read-only transaction as a run; no parameter value is needed."""
        bound = params.bind(request.sql, request.parameters, params.Style.NUMERIC)
        async with self._transaction(request.timeout_seconds) as conn:
            try:
                statement = await conn.prepare(bound.sql)
            except (asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                raise self._error("the query failed", exc) from None
            return Description(columns=[_column(attr) for attr in statement.get_attributes()])

    @contextlib.asynccontextmanager
    async def stream_csv(
        self, request: QueryRequest, spec: ServerCSV, *, limit: int | None = None
    ) -> AsyncIterator[RenderedCSV | None]:
        """Yield a `PostgreSQLCopy` when the server can render this result as CSV, else None
        (the caller then uses `stream`). `limit` caps the rows (LIMIT), for max_rows checks."""
        async with self._transaction(request.timeout_seconds) as conn:
            statement, args, columns = await self._prepare(conn, request)
            attributes = statement.get_attributes()
            parameter_types = statement.get_parameters()
            copy_sql = await self._copy_query(
                conn, request, attributes, parameter_types, args, spec, limit
            )
            if copy_sql is None:
                yield None
                return

            async def run(sink: Callable[[bytes], Awaitable[None]]) -> int:
                try:
                    status = await conn.copy_from_query(
                        copy_sql,
                        output=sink,
                        format="csv",
                        delimiter=spec.delimiter,
                        quote=spec.quote_char,
                        null=spec.null_text,
                        force_quote=True if spec.quote_all else None,
                    )
                except (asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                    raise self._error("the query failed", exc) from None
                return int(str(status).split()[-1])

            yield PostgreSQLCopy(columns, run)

    async def _copy_query(
        self,
        conn: asyncpg.Connection,
        request: QueryRequest,
        attributes: Sequence[Any],
        parameter_types: Sequence[Any],
        args: list[Any],
        spec: ServerCSV,
        limit: int | None,
    ) -> str | None:
        if spec.line_ending != "\n" or len(spec.delimiter) != 1:
            return None
        if not attributes or _first_keyword(request.sql) not in {"select", "with", "values"}:
            return None  # not a plain query: the generic path reports what the server says
        if any(ch in spec.null_text for ch in (spec.delimiter, spec.quote_char, "\r", "\n")):
            return None
        date_style = str(await conn.fetchval("SELECT current_setting('DateStyle')"))
        iso_dates = date_style.upper().startswith("ISO")
        expressions = []
        for index, attr in enumerate(attributes, start=1):
            expr = _copy_expression(f"c{index}", attr.type.name, spec, iso_dates=iso_dates)
            if expr is None:
                return None
            expressions.append(f'{expr} AS "c{index}"')
        names = await self._parameter_names(conn, request, parameter_types)
        if names is None:
            return None
        for index, (name, value) in enumerate(zip(names, args, strict=False), start=1):
            text = None if value is None else _as_text(value)
            try:
                await conn.execute(
                    "SELECT set_config($1, $2, true)", f"reporthubd.p{index}", text or ""
                )
            except (asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                # e.g. a NUL byte or a lone surrogate, which PostgreSQL text cannot hold
                raise self._error(f"parameter :{name}", exc) from None
        order = {name: i for i, name in enumerate(names.keys(), start=1)}

        def placeholder(name: str) -> str:
            index = order[name]
            type_sql = names[name]
            if args[index - 1] is None:
                return f"NULL::{type_sql}"
            return f"current_setting('reporthubd.p{index}')::{type_sql}"

        inner = params.rewrite(request.sql.strip().rstrip(";"), placeholder)
        aliases = ", ".join(f"c{i}" for i in range(1, len(attributes) + 1))
        query = f"SELECT {', '.join(expressions)} FROM ({inner}\n) AS rh_q({aliases})"
        if limit is not None:
            query += f" LIMIT {int(limit)}"
        return query

    async def _parameter_names(
        self, conn: asyncpg.Connection, request: QueryRequest, types: Sequence[Any]
    ) -> dict[str, str] | None:
        names = params.referenced(request.sql)
        if len(names) != len(types):
            return None
        rendered: dict[str, str] = {}
        for name, pg_type in zip(names, types, strict=True):
            type_sql = await conn.fetchval("SELECT format_type($1::oid, NULL)", pg_type.oid)
            rendered[name] = str(type_sql)
        return rendered


def _first_keyword(sql: str) -> str:
    """The statement's first word, after comments and opening parentheses (lower case)."""
    text = sql
    while True:
        text = text.lstrip().lstrip("(").lstrip()
        if text.startswith("--"):
            text = text.partition("\n")[2]
        elif text.startswith("/*"):
            text = text.partition("*/")[2]
        else:
            break
    word = re.match(r"[A-Za-z]+", text)
    return word.group(0).lower() if word else ""


def _column(attr: Any) -> Column:
    type_name = attr.type.name
    kind = _KINDS.get(type_name, ColumnKind.OTHER)
    if attr.type.kind == "array" or attr.type.kind == "composite":
        kind = ColumnKind.OTHER
    return Column(name=attr.name, kind=kind, source_type=type_name)


def _copy_expression(name: str, type_name: str, spec: ServerCSV, *, iso_dates: bool) -> str | None:
    if type_name in _COPY_AS_IS:
        return name
    if type_name == "bool":
        true_text = spec.true_text.replace("'", "''")
        false_text = spec.false_text.replace("'", "''")
        return f"CASE WHEN {name} THEN '{true_text}' WHEN NOT {name} THEN '{false_text}' END"
    if type_name == "date":
        return name if iso_dates else f"to_char({name}, 'YYYY-MM-DD')"
    if type_name == "timestamp":
        # PostgreSQL's ISO text is the CSV form already (space, fraction without zeros).
        return name if iso_dates else None
    if type_name == "timestamptz":
        # asyncpg hands these over in UTC: render them in UTC, whatever the session's zone.
        utc = f"({name} AT TIME ZONE 'UTC')"
        return f"rtrim(rtrim(to_char({utc}, 'YYYY-MM-DD HH24:MI:SS.US'), '0'), '.') || '+00:00'"
    return None
