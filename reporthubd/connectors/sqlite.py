"""SQLite (the embedded default): the standard library driver in one worker thread.

`connection_config`: `path` (a database file). It is opened read-only (`mode=ro`), so a write
statement fails. Parameters bind as `:name`. Column kinds come from the declared column types
where SQLite knows them, else from the first non-NULL value. Cancellation calls
`Connection.interrupt()`, which stops the running statement at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
import time
from collections.abc import AsyncIterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import date, datetime
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

from reporthubd.connectors import params
from reporthubd.connectors.base import (
    Column,
    ColumnKind,
    Connector,
    ConnectorError,
    Description,
    QueryRequest,
    QueryResult,
    Row,
    TestResult,
)

T = TypeVar("T")


def _kind_of_value(value: Any) -> ColumnKind:
    if isinstance(value, bool):
        return ColumnKind.BOOLEAN
    if isinstance(value, int):
        return ColumnKind.INTEGER
    if isinstance(value, float):
        return ColumnKind.FLOAT
    if isinstance(value, bytes):
        return ColumnKind.BINARY
    if isinstance(value, str):
        return ColumnKind.TEXT
    return ColumnKind.OTHER


def _adapt(value: Any) -> Any:
    """Dates and timestamps bind as ISO text (sqlite3's implicit adapters are deprecated)."""
    if isinstance(value, datetime | date):
        return value.isoformat(sep=" ") if isinstance(value, datetime) else value.isoformat()
    if isinstance(value, dict | list):
        return json.dumps(value)
    return value


class SQLiteResult(QueryResult):
    """What `stream` yields: the first batch (fetched with the statement), then the rest."""

    def __init__(
        self,
        connector: SQLiteConnector,
        cursor: sqlite3.Cursor,
        first: list[Row],
        columns: Sequence[Column],
        batch_size: int,
    ) -> None:
        self.columns = columns
        self._connector = connector
        self._cursor = cursor
        self._first = first
        self._batch_size = batch_size

    async def batches(self) -> AsyncIterator[list[Row]]:
        rows = self._first
        self._first = []
        while rows:
            yield rows
            if len(rows) < self._batch_size:
                return
            rows = await self._connector._call(self._cursor.fetchmany, self._batch_size)


class SQLiteConnector(Connector):
    paramstyle = params.Style.NAMED

    def __init__(self, datasource: Any) -> None:
        super().__init__(datasource)
        self._conn: sqlite3.Connection | None = None
        self._executor: ThreadPoolExecutor | None = None
        self.path = str(datasource.connection_config.get("path") or "")

    def _error(self, what: str, exc: BaseException | str) -> ConnectorError:
        return ConnectorError(f"sqlite {self.path}: {what}: {exc}")

    async def _call(self, fn: Any, *args: Any) -> Any:
        """Run `fn` in the connection's thread; on cancellation interrupt the statement and wait
        for the thread to notice, then re-raise."""
        assert self._executor is not None
        loop = asyncio.get_running_loop()
        future = loop.run_in_executor(self._executor, fn, *args)
        try:
            return await asyncio.shield(future)
        except asyncio.CancelledError:
            await self._interrupt(future)
            raise
        except sqlite3.Error as exc:
            raise self._error("the query failed", exc) from None

    async def _interrupt(self, future: asyncio.Future[Any]) -> None:
        """Interrupt until the statement in the thread stops (an interrupt that lands before
        the statement started is lost, so repeat it), for at most a few seconds."""
        for _ in range(50):
            if self._conn is not None:
                self._conn.interrupt()
            done, _ = await asyncio.wait({future}, timeout=0.1)
            if done:
                with contextlib.suppress(Exception):
                    future.result()
                return

    async def open(self) -> None:
        if not self.path:
            raise ConnectorError("sqlite datasource: connection_config.path is required")
        path = await asyncio.to_thread(lambda: Path(self.path).expanduser().resolve())
        if not await asyncio.to_thread(path.is_file):
            raise self._error("cannot open", "no such database file")
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite-connector")
        uri = f"file:{quote(str(path))}?mode=ro"

        def connect() -> sqlite3.Connection:
            conn = sqlite3.connect(uri, uri=True, check_same_thread=False, isolation_level=None)
            conn.execute("PRAGMA query_only = ON")
            return conn

        try:
            self._conn = await self._call(connect)
        except ConnectorError:
            raise
        except sqlite3.Error as exc:
            raise self._error("cannot open", exc) from None

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        executor, self._executor = self._executor, None
        if executor is None:
            return
        if conn is not None:
            conn.interrupt()  # a statement still running in the thread stops
            future = asyncio.get_running_loop().run_in_executor(executor, conn.close)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.shield(future), timeout=5)
        executor.shutdown(wait=False)

    async def test(self) -> TestResult:
        started = time.perf_counter()
        assert self._conn is not None
        version = await self._call(lambda: self._conn.execute("SELECT sqlite_version()").fetchone())
        return TestResult(
            ok=True,
            server_version=f"SQLite {version[0]}",
            round_trip_ms=(time.perf_counter() - started) * 1000,
        )

    @contextlib.asynccontextmanager
    async def stream(self, request: QueryRequest) -> AsyncIterator[QueryResult]:
        if self._conn is None:
            raise self._error("the query failed", "not connected")
        conn = self._conn
        bound = params.bind(request.sql, request.parameters, params.Style.NAMED)
        args = {k: _adapt(v) for k, v in bound.mapping.items()}

        def start() -> tuple[sqlite3.Cursor, list[Row]]:
            cursor = conn.cursor()
            cursor.execute(bound.sql, args)
            return cursor, cursor.fetchmany(request.batch_size) if cursor.description else []

        cursor, first = await self._call(start)
        try:
            if cursor.description is None:
                raise self._error("the query failed", "the statement returns no rows")
            columns = self._columns(cursor, first)
            yield SQLiteResult(self, cursor, first, columns, request.batch_size)
        finally:
            with contextlib.suppress(Exception):
                await self._call(cursor.close)

    async def describe(self, request: QueryRequest) -> Description:
        """The names of the result's columns: the query wrapped to return no row (`LIMIT 0`,
        which SQLite checks before it runs the inner query). SQLite types values, not columns,
        so the kinds are unknown (`kinds_known` False). Two columns of one name come back as
        `name` and `name:1`, as SQLite names them in a subquery."""
        if self._conn is None:
            raise self._error("the query failed", "not connected")
        conn = self._conn
        inner = request.sql.strip().rstrip(";")
        bound = params.bind(
            f"SELECT * FROM (\n{inner}\n) LIMIT 0", request.parameters, params.Style.NAMED
        )
        args = {k: _adapt(v) for k, v in bound.mapping.items()}

        def names() -> list[str]:
            cursor = conn.execute(bound.sql, args)
            try:
                return [d[0] for d in cursor.description or ()]
            finally:
                cursor.close()

        found = await self._call(names)
        columns = [Column(name=n, kind=ColumnKind.OTHER, source_type="sqlite") for n in found]
        return Description(columns=columns, kinds_known=False)

    def _columns(self, cursor: sqlite3.Cursor, first: list[Row]) -> list[Column]:
        columns = []
        for index, description in enumerate(cursor.description):
            sample = next((row[index] for row in first if row[index] is not None), None)
            kind = _kind_of_value(sample) if sample is not None else ColumnKind.TEXT
            columns.append(Column(name=description[0], kind=kind, source_type="sqlite"))
        return columns
