"""Split by key, one pass: a data-driven report whose query runs once, its rows cut into one file
per value of a key column, each file its audience's.

A report with an audience driver (engine/audiences.py) and `format_options.split_by = "COLUMN"`
does not run its query once per audience. Its parent run (engine/fanout.py):

1. reads the driver's audiences as any data-driven run does (key -> recipients, overrides);
2. runs the report's query ONCE (in a slot of the report's datasource, within its timeout) and
   spills each row to its key's file in the workspace (engine/spill.py: memory flat, open files
   bounded, ordered input or not); the key of a row is the split column's text, trimmed, matched
   to the driver's `key_column`;
3. fans out as usual: each audience's child run is claimed exactly once (per parent run and
   audience key), and its pipeline reads the rows of its key from the spill instead of the data
   source (`rows_for`), into its own file with its own overrides, ledger rows, retries and
   status. A child that runs where the spill is not (a recovery on another node) runs the query
   and keeps its key's rows: the same file, at the cost of a full query.

Nothing is dropped silently. An audience whose key has no rows is skipped as empty (its child
completes without a file and its deliveries are recorded SKIPPED), whatever the report's
empty_result_policy; rows whose key has no audience, and rows with a NULL or empty key, are sent
to nobody; the parent's message names them, with their counts.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import shutil
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reporthubd import alert_rules, domain, logs
from reporthubd.config import Settings
from reporthubd.connectors import base as connectors
from reporthubd.connectors import params
from reporthubd.engine import alerting, spill
from reporthubd.engine.pool import Pool
from reporthubd.engine.streaming import Progress
from reporthubd.formats import base as formats
from reporthubd.formats import capture, workbook
from reporthubd.store import audiences as audience_rows
from reporthubd.store import executions
from reporthubd.store.database import Store

log = logs.get(__name__)

OPTION = "split_by"
NAMED = 10
"""Keys named in the parent's message, per kind (the counts are always whole)."""
CUT_BYTES = 1 << 20
"""Rendered lines cut by key at once (see `_spill_rendered`)."""


class SplitFailed(Exception):
    """The split could not be made; the message names the option or column."""


def split_column(config: domain.ReportConfig) -> str | None:
    value = config.format_options.get(OPTION)
    return value.strip() if isinstance(value, str) and value.strip() else None


def check_option(options: Mapping[str, Any], *, has_key_column: bool | None = None) -> None:
    """The option's own shape (ValueError naming it); `has_key_column` when the driver is known."""
    value = options.get(OPTION)
    if value is None:
        return
    if not isinstance(value, str) or not value.strip() or len(value) > 255:
        raise ValueError(
            f"format option {OPTION!r} must be the name of a column of the report's query "
            "(a non-empty string of at most 255 characters)"
        )
    if has_key_column is False:
        raise ValueError(
            f"format option {OPTION!r} needs the report's audience driver to have a key_column "
            "(each file goes to the audience of the same key)"
        )


def directory_of(workspace: str | Path, burst_id: str) -> Path:
    return Path(workspace) / burst_id / "split"


_HEADERS: dict[Path, spill.Header] = {}
"""Finished spills' headers, by directory: the parent's own, or read once by the first child
that runs where its parent is not; its children read no header file (a hop to a thread and an
unpickling each). Kept until the parent discards the spill; at most HEADERS_KEPT."""
HEADERS_KEPT = 256


async def header_of(directory: Path) -> spill.Header | None:
    """The finished spill's header (None: no spill here, or an unfinished one)."""
    header = _HEADERS.get(directory)
    if header is None:
        header = await asyncio.to_thread(spill.read_header, directory)
        if header is not None:
            _keep_header(directory, header)
    return header


def _keep_header(directory: Path, header: spill.Header) -> None:
    _HEADERS.pop(directory, None)
    _HEADERS[directory] = header
    while len(_HEADERS) > HEADERS_KEPT:
        del _HEADERS[next(iter(_HEADERS))]


# -- a child: its rows from the spill -------------------------------------------------------------


def for_child(
    definitions: executions.RunDefinitions, audience: audience_rows.Audience
) -> executions.RunDefinitions:
    """A split report's child: its key's part instead of the query's rows; a key without rows
    is skipped as empty (the option leaves the format options: no writer takes it)."""
    column = split_column(definitions.config)
    if column is None:
        return definitions
    config = definitions.config
    options = {k: v for k, v in config.format_options.items() if k != OPTION}
    config = dataclasses.replace(
        config, format_options=options, empty_result_policy=domain.EmptyResultPolicy.SKIP
    )
    part = executions.SplitPart(column=column, key=audience.key, burst_id=audience.burst_id)
    return dataclasses.replace(definitions, config=config, split=part)


def empty_reason(definitions: executions.RunDefinitions) -> str:
    """Why an empty run's deliveries were skipped (the delivery log's reason)."""
    part = definitions.split
    if part is None:
        return "the result is empty and empty_result_policy is skip"
    return (
        f"no rows for audience {part.key!r}: the report's result has no row with "
        f"{part.column} = {part.key!r} (split by key)"
    )


def rows_for(
    connector: connectors.Connector, definitions: executions.RunDefinitions, workspace: Path
) -> connectors.Connector:
    """The connector a run reads its rows from: its own, or for a split child its key's part."""
    part = definitions.split
    if part is None:
        return connector
    return SplitRows(connector, part, directory_of(workspace, part.burst_id))


class SplitRows(connectors.Connector):
    """One key's part: from the finished spill, else from the query, filtered to the key.

    A rendered spill (CSV records) answers `stream_csv` when the child's writer asks for the
    same rendering, as the database would for a query filtered to the key; a pickled spill
    answers `stream`. Where the spill is not (another node's), or cannot answer what the child's
    writer asks, the query runs and its rows are filtered (the same file, at a full query's
    cost)."""

    def __init__(
        self, inner: connectors.Connector, part: executions.SplitPart, directory: Path
    ) -> None:
        super().__init__(inner.datasource)
        self.inner = inner
        self.part = part
        self.directory = directory
        self._header: spill.Header | None = None
        self._opened = False

    async def open(self) -> None:
        self._header = await header_of(self.directory)

    async def _open_inner(self, why: str) -> None:
        if not self._opened:
            log.info(
                "split part read from the query, filtered to its key",
                burst_id=self.part.burst_id,
                reason=why,
            )
            await self.inner.open()
            self._opened = True

    async def close(self) -> None:
        if self._opened:
            await self.inner.close()

    async def test(self) -> connectors.TestResult:
        return await self.inner.test()

    @contextlib.asynccontextmanager
    async def stream_csv(
        self,
        request: connectors.QueryRequest,
        spec: connectors.ServerCSV,
        *,
        limit: int | None = None,
    ) -> AsyncIterator[connectors.RenderedCSV | None]:
        header = self._header
        if header is None or header.csv is None or header.csv != spec:
            yield None  # rows, through stream()
            return
        chunks = spill.KeyChunks(self.directory, self.part.key)
        try:
            yield _SpilledCSV(header.columns, chunks)
        finally:
            if not chunks.finished:
                await asyncio.shield(asyncio.to_thread(chunks.close))

    @contextlib.asynccontextmanager
    async def stream(
        self, request: connectors.QueryRequest
    ) -> AsyncIterator[connectors.QueryResult]:
        header = self._header
        if header is not None and header.csv is None:
            reader = spill.KeyRows(self.directory, self.part.key, batch_size=request.batch_size)
            try:
                yield _Spilled(header.columns, reader)
            finally:
                if not reader.finished:
                    await asyncio.shield(asyncio.to_thread(reader.close))
            return
        await self._open_inner("not spilled here" if header is None else "spilled as CSV")
        async with self.inner.stream(request) as result:
            index = column_index(result.columns, self.part.column)
            yield _Filtered(result, index, self.part.key)


class _Spilled(connectors.QueryResult):
    def __init__(self, columns: Sequence[connectors.Column], reader: spill.KeyRows) -> None:
        self.columns = columns
        self.reader = reader

    async def batches(self) -> AsyncIterator[list[connectors.Row]]:
        reader = self.reader
        while not reader.finished and (batch := await asyncio.to_thread(reader.next_batch)):
            yield batch


class _SpilledCSV(connectors.RenderedCSV):
    fast_path = "split-spill"

    def __init__(self, columns: Sequence[connectors.Column], chunks: spill.KeyChunks) -> None:
        self.columns = columns
        self.chunks = chunks

    async def copy_to(self, sink: connectors.RenderedSink) -> int:
        chunks, total = self.chunks, 0
        # A part under CHUNK_BYTES (most) is one hop: it is read to its end and closed.
        while not chunks.finished and (chunk := await asyncio.to_thread(chunks.next_chunk)):
            rows, data = chunk
            await sink(data, rows)
            total += rows
        return total


class _Filtered(connectors.QueryResult):
    def __init__(self, result: connectors.QueryResult, index: int, key: str) -> None:
        self.columns = result.columns
        self.result = result
        self.index = index
        self.key = key

    async def batches(self) -> AsyncIterator[list[connectors.Row]]:
        index, key = self.index, self.key
        async for rows in self.result.batches():
            kept = [row for row in rows if spill.key_of(row[index]) == key]
            if kept:
                yield kept


def column_index(columns: Sequence[connectors.Column], column: str) -> int:
    names = [c.name for c in columns]
    if column not in names:
        raise connectors.ConnectorError(
            f"format option {OPTION!r}: the result has no column {column!r} "
            f"(its columns: {', '.join(names)})"
        )
    return names.index(column)


# -- the parent: one pass over the query ----------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class SplitOutcome:
    column: str
    rows: int
    files: int
    empty: tuple[str, ...]
    """Audiences whose key has no rows (skipped as empty), the first NAMED."""
    empty_count: int
    orphans: tuple[str, ...]
    """Keys of the result with no audience, the first NAMED."""
    orphan_count: int
    orphan_rows: int
    null_rows: int
    max_open: int

    def note(self) -> str:
        parts = [f"split by {self.column!r}: {self.rows} rows, {self.files} files"]
        if self.empty_count:
            parts.append(
                f"{self.empty_count} audiences without rows, skipped as empty: "
                + _named(self.empty, self.empty_count)
            )
        if self.orphan_count:
            parts.append(
                f"{self.orphan_count} keys of the result have no audience ({self.orphan_rows} "
                "rows sent to nobody): " + _named(self.orphans, self.orphan_count)
            )
        if self.null_rows:
            parts.append(f"{self.null_rows} rows with an empty {self.column!r} sent to nobody")
        return "; ".join(parts)


def _named(keys: Sequence[str], count: int) -> str:
    text = ", ".join(repr(k) for k in keys)
    return text + (f" and {count - len(keys)} more" if count > len(keys) else "")


async def split_rows(
    settings: Settings,
    store: Store,
    pool: Pool,
    execution: domain.Execution,
    definitions: executions.RunDefinitions,
    driver: audience_rows.AudienceDriver,
    resolved: Mapping[str, Any],
    *,
    burst_id: str,
    seq: int,
    on_queued: Callable[[], None],
    progress: Progress,
) -> SplitOutcome | None:
    """Spill the report's rows by key (once per burst on this node: a finished spill is kept
    until the parent ends); None for a report that is not split. Raises SplitFailed."""
    if definitions.config.format_options.get(OPTION) is None:
        return None
    try:
        check_option(
            definitions.config.format_options, has_key_column=driver.key_column is not None
        )
    except ValueError as exc:
        raise SplitFailed(str(exc)) from None
    column = split_column(definitions.config)
    assert column is not None  # checked above
    directory = directory_of(settings.execution.workspace, burst_id)
    keys, rendered_apart = await _audience_keys(store, burst_id)
    manifest = await asyncio.to_thread(spill.read_manifest, directory)
    if manifest is None:
        progress.phase = "splitting"
        rendering = None
        if not rendered_apart:
            rendering = await asyncio.to_thread(csv_rendering, definitions, execution)
        manifest = await _spill(
            settings, pool, execution, definitions, resolved, column, keys, directory, seq,
            on_queued, progress, rendering,
        )  # fmt: skip
    _keep_header(directory, manifest.header)
    outcome = _outcome(column, manifest, keys)
    log.info(
        "split by key",
        execution_id=execution.id,
        burst_id=burst_id,
        rows=outcome.rows,
        files=outcome.files,
        empty=outcome.empty_count,
        without_audience=outcome.orphan_count,
        max_open_files=outcome.max_open,
    )
    return outcome


async def discard(settings: Settings, burst_id: str) -> None:
    """The spill of a burst whose children have all ended."""
    directory = directory_of(settings.execution.workspace, burst_id)
    _HEADERS.pop(directory, None)
    with contextlib.suppress(OSError):
        await asyncio.to_thread(shutil.rmtree, directory, True)


async def _audience_keys(store: Store, burst_id: str) -> tuple[frozenset[str], bool]:
    """The burst's audience keys, and whether any audience renders apart (its own locale or
    time zone: its file cannot be cut from one rendering)."""
    keys: set[str] = set()
    apart = False
    page = 1000
    while True:
        batch = await audience_rows.list_audiences(store, burst_id, offset=len(keys), limit=page)
        keys.update(a.key for a in batch)
        apart = apart or any("locale" in a.overrides or "timezone" in a.overrides for a in batch)
        if len(batch) < page:
            return frozenset(keys), apart


def _outcome(column: str, manifest: spill.Manifest, keys: frozenset[str]) -> SplitOutcome:
    found = manifest.rows
    empty = sorted(k for k in keys if k not in found)
    orphans = sorted(k for k in found if k not in keys)
    return SplitOutcome(
        column=column,
        rows=manifest.total,
        files=len(keys) - len(empty),
        empty=tuple(empty[:NAMED]),
        empty_count=len(empty),
        orphans=tuple(orphans[:NAMED]),
        orphan_count=len(orphans),
        orphan_rows=sum(found[k] for k in orphans),
        null_rows=manifest.null_rows,
        max_open=manifest.max_open,
    )


async def _spill(
    settings: Settings,
    pool: Pool,
    execution: domain.Execution,
    definitions: executions.RunDefinitions,
    resolved: Mapping[str, Any],
    column: str,
    keys: frozenset[str],
    directory: Path,
    seq: int,
    on_queued: Callable[[], None],
    progress: Progress,
    rendering: connectors.ServerCSV | None,
) -> spill.Manifest:
    config, source = definitions.config, definitions.datasource
    dialect = "mysql" if source.type is domain.DatasourceType.MYSQL else "standard"
    try:
        params.check(config.query_text, resolved, dialect=dialect)
    except params.ParameterError as exc:
        raise SplitFailed(str(exc)) from None
    timeout = config.timeout_seconds or settings.execution.query_timeout_seconds
    request = connectors.QueryRequest(
        sql=config.query_text,
        parameters=resolved,
        batch_size=settings.execution.batch_size,
        timeout_seconds=timeout,
        execution_id=execution.id,
    )
    _HEADERS.pop(directory, None)
    await asyncio.to_thread(shutil.rmtree, directory, True)  # an unfinished earlier pass
    await asyncio.to_thread(directory.mkdir, parents=True, exist_ok=True)
    try:
        connector_cls = await asyncio.to_thread(connectors.connector_class, source.type.value)
        connector = connector_cls(source)
    except connectors.ConnectorError as exc:
        raise SplitFailed(str(exc)) from None
    spilled: list[spill.KeySpill] = []
    try:
        async with pool.slot(
            f"datasource-{source.id}", source.max_concurrent_queries, seq, on_queued
        ):
            try:
                async with asyncio.timeout(timeout):
                    await connector.open()
                    if rendering is not None:
                        manifest = await _spill_rendered(
                            connector, request, rendering, column, keys, directory, spilled,
                            progress,
                        )  # fmt: skip
                        if manifest is not None:
                            return manifest
                    async with connector.stream(request) as result:
                        index = column_index(result.columns, column)
                        spilled.append(spill.KeySpill(directory, key_index=index, keep=keys))
                        async for batch in result.batches():
                            await asyncio.to_thread(spilled[0].add, batch)
                            progress.rows += len(batch)
                        return await asyncio.to_thread(spilled[0].finish, result.columns)
            finally:
                with contextlib.suppress(Exception):
                    await asyncio.shield(connector.close())
    except BaseException as exc:
        if spilled:
            await asyncio.shield(asyncio.to_thread(spilled[0].abort))
        await asyncio.shield(asyncio.to_thread(shutil.rmtree, directory, True))
        if isinstance(exc, connectors.ConnectorError):
            raise SplitFailed(str(exc)) from None
        if isinstance(exc, TimeoutError):
            raise SplitFailed(
                f"the query ran longer than its timeout of {timeout:g} s while it was split"
            ) from None
        if isinstance(exc, OSError):
            raise SplitFailed(f"cannot write the split to the workspace: {exc}") from None
        if isinstance(exc, ValueError):
            raise SplitFailed(f"the result could not be split: {exc}") from None
        raise


async def _spill_rendered(
    connector: connectors.Connector,
    request: connectors.QueryRequest,
    rendering: connectors.ServerCSV,
    column: str,
    keys: frozenset[str],
    directory: Path,
    spilled: list[spill.KeySpill],
    progress: Progress,
) -> spill.Manifest | None:
    """The CSV fast path: the records the database rendered, cut by key; None where the source
    cannot render this result (the rows are then spilled)."""
    async with connector.stream_csv(request, rendering) as rendered:
        if rendered is None:
            return None
        index = column_index(rendered.columns, column)
        part = spill.KeySpill(directory, key_index=index, csv=rendering, keep=keys)
        spilled.append(part)
        progress.fast_path = rendered.fast_path

        # The database's chunks (32 KiB from MySQL) are cut a MiB at a time: a cut groups its
        # records by key (spill.KeySpill.add_rendered), and each hand-over is a thread's hop.
        held: list[bytes] = []
        size = 0

        async def sink(data: bytes, rows: int) -> None:
            nonlocal size
            held.append(bytes(data))
            size += len(data)
            progress.rows += rows
            if size >= CUT_BYTES:
                await cut()

        async def cut() -> None:
            nonlocal size
            data = b"".join(held)
            held.clear()
            size = 0
            await asyncio.to_thread(part.add_rendered, data)

        await rendered.copy_to(sink)
        await cut()
        return await asyncio.to_thread(part.finish, rendered.columns)


def csv_rendering(
    definitions: executions.RunDefinitions, execution: domain.Execution
) -> connectors.ServerCSV | None:
    """The rendering the children's writers will ask the database for (the CSV fast path, as
    engine/pipeline.py builds the writer: format options, capture, alert), or None where they
    take rows. Blocking (the first use imports the writer)."""
    config = definitions.config
    options = {k: v for k, v in config.format_options.items() if k != OPTION}
    if options.pop("truncate", False) and config.max_rows:
        return None  # the cut and its note belong to the row path
    try:
        alert = alerting.alert_of(config)
        workbook.split(config.output_format.value, options)
        writer_cls = formats.writer_class(config.output_format.value)
        context = formats.RenderContext(report_name=config.name, execution_id=execution.id)
        writer = capture.wrap(writer_cls(options, context), options)
    except (formats.FormatError, alert_rules.AlertError):
        return None  # each child reports it
    condition = alert.condition if alert is not None and alert.check_query is None else None
    if condition is not None and condition.kind != "row_count":
        return None  # the condition reads the rows (engine/alerting.py AlertingWriter)
    return writer.server_csv()
