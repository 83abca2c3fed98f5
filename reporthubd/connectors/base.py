"""The connector interface: how rows get from a data source to the engine, in batches.

Every connector (async driver or thread-bound SDK alike) implements `Connector`. The engine uses it
in this order, and an implementation may rely on it:

1. `Connector(datasource)` — no I/O in the constructor.
2. `await open()` — connect, within the datasource's connect timeout. Raise `ConnectorError`
   whose message names the host and database but never a secret.
3. `await test()` (for POST /api/test-datasource) and/or `stream(request)` any number of times.
   `stream` is an async context manager: on entry the query has started and `columns` is known;
   `batches()` yields lists of at most `request.batch_size` rows until the result is exhausted.
   The session is read-only where the source offers it; parameters are bound by the driver.
   For a CSV report the engine first tries `stream_csv(request, spec, limit=...)`: a source that
   can render the result as CSV itself (PostgreSQL COPY, MySQL's raw text) yields a
   `RenderedCSV`; the default yields None, and the engine then uses `stream`.
   `reporthubd check --connect` calls `await describe(request)` instead: the result's columns
   without running the query in full, or None where the source cannot tell them (the default).
4. `await close()` — always called, also after errors and cancellation.

Cancellation is the one mechanism for timeouts and user cancels: the engine cancels the task that
is inside `stream()`. The connector must then stop the query on the server (asyncpg's cancel
request, MySQL `KILL QUERY` from a second connection, a job cancel for BigQuery/Snowflake) before
the cancellation propagates, bounded to a few seconds, and re-raise `CancelledError`.

Rows are tuples of plain Python values, in column order: int, float, Decimal, bool, str, bytes,
date, datetime (aware when the source type carries a zone, naive otherwise), time, dict/list for
JSON, None for NULL.
"""

from __future__ import annotations

import abc
import contextlib
import enum
from collections.abc import AsyncIterator, Awaitable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol, cast

from reporthubd import plugins
from reporthubd.domain import Datasource

Row = tuple[Any, ...]


class ColumnKind(enum.StrEnum):
    """The normalised type of a column, which writers use to render values faithfully."""

    INTEGER = "integer"
    DECIMAL = "decimal"
    FLOAT = "float"
    BOOLEAN = "boolean"
    DATE = "date"
    DATETIME = "datetime"
    """A timestamp without a zone (naive values)."""
    DATETIME_TZ = "datetime_tz"
    """A timestamp with a zone (aware values)."""
    TIME = "time"
    TEXT = "text"
    BINARY = "binary"
    JSON = "json"
    OTHER = "other"


@dataclass(frozen=True, kw_only=True)
class Column:
    name: str
    kind: ColumnKind
    source_type: str
    """The type name as the source reports it (e.g. `numeric(38,10)`, `DATETIME`)."""
    precision: int | None = None
    scale: int | None = None


@dataclass(frozen=True, kw_only=True)
class QueryRequest:
    sql: str
    """The report's query text with `:name` placeholders (see connectors.params)."""
    parameters: Mapping[str, Any] = field(default_factory=dict)
    batch_size: int = 5000
    timeout_seconds: float | None = None
    """Also enforced by the engine through cancellation; connectors may pass it to the server."""
    execution_id: str | None = None
    """For tagging the query on the server (e.g. Snowflake QUERY_TAG, application_name)."""


@dataclass(frozen=True, kw_only=True)
class TestResult:
    __test__ = False  # not a pytest class

    ok: bool
    server_version: str | None
    round_trip_ms: float
    message: str = ""


@dataclass(frozen=True, kw_only=True)
class Description:
    """What `Connector.describe` learns of a query's result without running it."""

    columns: Sequence[Column]
    kinds_known: bool = True
    """False where the source types a column by its values only (SQLite): the kinds are then
    placeholders and only the names may be checked."""


class ConnectorError(Exception):
    """A data-source failure with a readable, secret-free message (host and database named)."""


class QueryResult(abc.ABC):
    """What `Connector.stream` yields: the columns, then the rows in batches."""

    columns: Sequence[Column]

    @abc.abstractmethod
    def batches(self) -> AsyncIterator[list[Row]]:
        """Yield lists of at most `batch_size` rows; never the whole result at once."""


@dataclass(frozen=True, kw_only=True)
class ServerCSV:
    """The CSV a database must render for its output to equal the CSV writer's, line for line
    (the writer derives it from its options: `FormatWriter.server_csv()`).

    Lines are UTF-8, fields separated by `delimiter`, each value in the canonical text form
    (`formats/values.py`, timestamps as `formats.csv.csv_datetime`); NULL is `null_text`; a field
    is quoted with `quote_char` (quotes doubled) when it contains the delimiter, the quote or a
    line break, or always when `quote_all`. Each line ends with `line_ending`.
    """

    delimiter: str
    quote_char: str
    quote_all: bool
    null_text: str
    true_text: str
    false_text: str
    line_ending: str


class RenderedSink(Protocol):
    """Where a `RenderedCSV` hands its lines: `data` holds whole lines, `rows` how many."""

    def __call__(self, data: bytes, rows: int) -> Awaitable[None]: ...


class RenderedCSV(abc.ABC):
    """What `Connector.stream_csv` yields: the columns, then the result as CSV lines that the
    database rendered to a `ServerCSV` (no header: the writer writes it from `columns`)."""

    columns: Sequence[Column]
    fast_path: ClassVar[str]
    """The path's name in progress and logs (`postgresql-copy`, `mysql-raw-text`)."""

    @abc.abstractmethod
    async def copy_to(self, sink: RenderedSink) -> int:
        """Hand the whole result to `sink`, in order and in chunks of bounded size (never the
        whole result at once), and return the number of rows. The `rows` given with the chunks
        add up to that number: a source that learns its count only at the end (COPY) gives 0
        with each chunk and the count with a last, empty chunk."""


class Connector(abc.ABC):
    def __init__(self, datasource: Datasource) -> None:
        self.datasource = datasource

    @abc.abstractmethod
    async def open(self) -> None: ...

    @abc.abstractmethod
    async def close(self) -> None: ...

    @abc.abstractmethod
    async def test(self) -> TestResult: ...

    @abc.abstractmethod
    def stream(self, request: QueryRequest) -> AbstractAsyncContextManager[QueryResult]: ...

    @contextlib.asynccontextmanager
    async def stream_csv(
        self, request: QueryRequest, spec: ServerCSV, *, limit: int | None = None
    ) -> AsyncIterator[RenderedCSV | None]:
        """The CSV fast path: yield the result rendered by the database to `spec`, or None when
        this source (the default) or this result cannot have it rendered; the caller then uses
        `stream`. `limit` caps the rows (for the engine's `max_rows` check: it asks for one
        more). Entered like `stream`, on an open connector; the same cancellation rules hold."""
        yield None

    async def describe(self, request: QueryRequest) -> Description | None:
        """The columns `stream(request)` would have, without running the query in full (a
        prepared statement's metadata, or the query wrapped to return no rows), on an open
        connector, read-only like `stream`; or None where this source cannot tell them without
        running the query (the default). A parameter's value may be None (`check` knows only
        the report's defaults); a query the source refuses raises `ConnectorError`."""
        return None

    async def __aenter__(self) -> Connector:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


# The registry: `report_datasources.type` → "module:Class", imported only when used, so a driver
# that is not installed (an extra) costs nothing until a datasource of its type runs.
REGISTRY: dict[str, str] = {
    "postgresql": "reporthubd.connectors.postgresql:PostgresConnector",
    "mysql": "reporthubd.connectors.mysql:MySQLConnector",
    "sqlite": "reporthubd.connectors.sqlite:SQLiteConnector",
    "oracle": "reporthubd.connectors.oracle:OracleConnector",
    "sqlserver": "reporthubd.connectors.sqlserver:SQLServerConnector",
    "mongodb": "reporthubd.connectors.mongodb:MongoConnector",
    "bigquery": "reporthubd.connectors.bigquery:BigQueryConnector",
    "snowflake": "reporthubd.connectors.snowflake:SnowflakeConnector",
}


def connector_class(kind: str) -> type[Connector]:
    try:
        cls = plugins.load(REGISTRY, kind)
    except plugins.MissingLibrary as exc:
        raise ConnectorError(
            f"the {kind} connector needs a driver that is not installed ({exc.name}); "
            f"install reporthubd[{kind}]"
        ) from None
    if cls is None:
        raise ConnectorError(f"no connector for datasource type {kind!r} in this version")
    return cast(type[Connector], cls)


def create(datasource: Datasource) -> Connector:
    return connector_class(datasource.type.value)(datasource)
