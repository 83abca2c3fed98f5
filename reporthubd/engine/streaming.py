"""A run's query into its file: connect, stream the result into the format writer, close the file.

`write_result` drives a connector (`connectors/base.py`) and a writer (`formats/base.py`) in
the order their contracts state, with one code path for every pair:

1. `connector.open()` (phase `connecting`), then phase `querying`.
2. The CSV fast path, when the writer describes a rendering a database may do
   (`writer.server_csv()`) and the connector can do it (`connector.stream_csv(...)` yields a
   `RenderedCSV`): the lines the database rendered go to `writer.write_rendered`, and
   `Progress.fast_path` names the path. Not when `max_rows` truncates: the cut and its note
   belong to the row path.
3. Otherwise `connector.stream(request)`, its batches into `writer.write_batch`.

`max_rows` caps the result: past it the run fails with `MaxRowsExceeded`, or, with the format
option `truncate`, the rows past it are dropped and the writer notes the cut
(`note_truncated`). Any error or cancellation after the writer opened its file aborts the writer
(shielded, so a cancelled run still removes its partial file) and propagates. Closing the
connector is the caller's job: it must not count against the query's timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from pathlib import Path

from reporthubd.connectors import base as connectors
from reporthubd.formats import base as formats


@dataclass
class Progress:
    """What the CLI and the control plane can see of a run while it goes."""

    execution_id: str
    phase: str = "queued"
    rows: int = 0
    bytes: int = 0
    started: float | None = None
    fast_path: str | None = None

    def elapsed(self) -> float:
        return time.monotonic() - self.started if self.started is not None else 0.0


class MaxRowsExceeded(Exception):
    """The result has more rows than the report's `max_rows`, and truncating is not allowed."""


async def write_result(
    connector: connectors.Connector,
    writer: formats.FormatWriter,
    path: Path,
    request: connectors.QueryRequest,
    *,
    max_rows: int | None,
    truncate: bool,
    progress: Progress,
) -> formats.WrittenFile:
    """Run `request` on `connector` and write its result to `path` with `writer` (see the module
    docstring); raises `ConnectorError`, `FormatError`, `OSError` or `MaxRowsExceeded`."""
    progress.phase = "connecting"
    await connector.open()
    progress.phase = "querying"
    written = await _server_rendered(
        connector, writer, path, request, max_rows=max_rows, truncate=truncate, progress=progress
    )
    if written is None:
        written = await _streamed(
            connector,
            writer,
            path,
            request,
            max_rows=max_rows,
            truncate=truncate,
            progress=progress,
        )
    return written


async def _server_rendered(
    connector: connectors.Connector,
    writer: formats.FormatWriter,
    path: Path,
    request: connectors.QueryRequest,
    *,
    max_rows: int | None,
    truncate: bool,
    progress: Progress,
) -> formats.WrittenFile | None:
    """The CSV fast path (PostgreSQL COPY, MySQL raw text), or None when it does not apply."""
    spec = writer.server_csv()
    if spec is None or (truncate and max_rows):
        return None
    limit = max_rows + 1 if max_rows else None
    opened = False
    try:
        async with connector.stream_csv(request, spec, limit=limit) as rendered:
            if rendered is None:
                return None
            await writer.open(path, rendered.columns)
            opened = True
            progress.phase = "writing"
            progress.fast_path = rendered.fast_path

            # Called once per chunk of the export benchmark's hot path: nothing more than the
            # counters and the hand-over.
            async def sink(data: bytes, rows: int) -> None:
                progress.rows += rows
                progress.bytes += len(data)
                await writer.write_rendered(data, rows)

            rows = await rendered.copy_to(sink)
            progress.rows = rows
            if max_rows and rows > max_rows:
                raise MaxRowsExceeded(_too_many(max_rows))
        return await writer.close()
    except BaseException:
        if opened:
            await asyncio.shield(writer.abort())
        raise


async def _streamed(
    connector: connectors.Connector,
    writer: formats.FormatWriter,
    path: Path,
    request: connectors.QueryRequest,
    *,
    max_rows: int | None,
    truncate: bool,
    progress: Progress,
) -> formats.WrittenFile:
    opened = False
    count = 0
    try:
        async with connector.stream(request) as result:
            await writer.open(path, result.columns)
            opened = True
            progress.phase = "writing"
            cut = False
            async with contextlib.aclosing(_batches(result)) as batches:
                async for batch in batches:
                    if max_rows and count + len(batch) > max_rows:
                        if not truncate:
                            raise MaxRowsExceeded(_too_many(max_rows))
                        batch = batch[: max_rows - count]
                        cut = True
                    if batch:
                        await writer.write_batch(batch)
                    count += len(batch)
                    progress.rows = count
                    if cut:
                        break
            if cut:
                await writer.note_truncated(max_rows or 0)
        return await writer.close()
    except BaseException:
        if opened:
            await asyncio.shield(writer.abort())
        raise


def _too_many(max_rows: int) -> str:
    return (
        f"the result has more than max_rows ({max_rows}) rows; raise max_rows, or set the "
        'format option "truncate": true to cut it instead'
    )


async def _batches(result: connectors.QueryResult) -> AsyncGenerator[list[connectors.Row], None]:
    # A generator of our own: `batches()` promises only an AsyncIterator, `aclosing` needs
    # `aclose`.
    async for batch in result.batches():
        yield batch
