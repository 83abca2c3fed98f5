"""The streaming writer interface: rows in batches → one file in the execution's workspace.

The engine drives a writer in this order, and an implementation may rely on it:

1. `Writer(options, context)` — validate `format_options` here and raise `FormatError` naming the
   bad option; no I/O.
2. `await open(path, columns)` — once; `path` is the final file name in the workspace.
3. `await write_batch(rows)` — any number of times, each with at most `batch_size` rows;
   then, only if the result was cut at `max_rows`, `await note_truncated(max_rows)`.
   CPU-heavy rendering must not block the event loop for long: render off the loop (a worker
   thread fed through a bounded queue, so a slow writer slows the query down, never memory up).
   Instead of `write_batch`, only when `server_csv()` described a rendering and the connector
   produced it: `await write_rendered(data, rows)` any number of times, with lines the database
   rendered (the CSV fast path; the default `server_csv()` is None, so other writers never see it).
4. `await close()` — once after the last batch; flush, finish the file, return a `WrittenFile`.
   Or `await abort()` instead, on any failure or cancellation: stop and remove partial output.

Memory must not grow with the number of rows: no writer holds the whole result.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, ClassVar, cast

from reporthubd import plugins
from reporthubd.connectors.base import Column, Row, ServerCSV


class FormatError(Exception):
    """Bad format options or a value the format cannot hold; the message says which."""


@dataclass(frozen=True, kw_only=True)
class RenderContext:
    """What a writer may show about the run (titles, headers of PDFs, summaries)."""

    report_name: str
    execution_id: str
    parameters: Mapping[str, Any] = field(default_factory=dict)
    scheduled_for: datetime | None = None
    generated_at: datetime | None = None


@dataclass(frozen=True, kw_only=True)
class WrittenFile:
    path: Path
    size: int
    sha256: str
    rows: int
    media_type: str


class FormatWriter(abc.ABC):
    extension: ClassVar[str]
    """File extension without the dot, before compression (csv, xlsx, json, pdf)."""
    media_type: ClassVar[str]

    def __init__(self, options: Mapping[str, Any], context: RenderContext) -> None:
        self.options = options
        self.context = context

    @property
    def file_extension(self) -> str:
        """The extension of the produced file, compression included (e.g. `csv.gz`)."""
        return self.extension

    @abc.abstractmethod
    async def open(self, path: Path, columns: Sequence[Column]) -> None: ...

    @abc.abstractmethod
    async def write_batch(self, rows: Sequence[Row]) -> None: ...

    def server_csv(self) -> ServerCSV | None:
        """The CSV a database may render for this writer with these options (the fast path),
        or None when the rows must come through `write_batch`. The default is None."""
        return None

    async def write_rendered(self, data: bytes, rows: int) -> None:
        """Append `rows` records rendered by the database to the `server_csv()` description
        (whole UTF-8 lines). Called only on a writer whose `server_csv()` gave one."""
        raise NotImplementedError(f"{type(self).__name__} takes rows only (server_csv is None)")

    chart_placement: tuple[float, float, float] | None = None
    """Where the writer drew the attached chart: x, y of its lower left corner and its scale, in
    the file's units (PDF points from the page's lower left); None where it drew none."""

    def attach_chart(self, chart: Any) -> None:
        """Called before `close()` with the chart the result's rows made (a formats.chartdraw
        Chart), when `format_options.chart` asks for one. A writer that can show it (the PDF)
        keeps it; the default ignores it."""
        return None

    async def note_truncated(self, max_rows: int) -> None:
        """Called before `close()` when the engine cut the result at `max_rows` (the config's
        format options asked to truncate rather than fail): the file must say so, e.g. a last
        line, a footer or a field. The default writes nothing."""
        return None

    @abc.abstractmethod
    async def close(self) -> WrittenFile: ...

    @abc.abstractmethod
    async def abort(self) -> None: ...


# `report_configs.output_format` → "module:Class", imported only when used.
REGISTRY: dict[str, str] = {
    "csv": "reporthubd.formats.csv:CSVWriter",
    "excel": "reporthubd.formats.excel:ExcelWriter",
    "json": "reporthubd.formats.json:JSONWriter",
    "pdf": "reporthubd.formats.pdf:PDFWriter",
}


def writer_class(name: str) -> type[FormatWriter]:
    try:
        cls = plugins.load(REGISTRY, name)
    except plugins.MissingLibrary as exc:
        raise FormatError(
            f"the {name} format needs a library that is not installed ({exc.name})"
        ) from None
    if cls is None:
        raise FormatError(f"unknown output format {name!r}")
    return cast(type[FormatWriter], cls)


def check_options(name: str, options: Mapping[str, Any]) -> None:
    """Validate a report's `format_options` for its output format as a run would (the writer's
    constructor reads every option, the column formats included, without I/O); FormatError
    names the bad option. What needs the result's columns (an unknown column name) is checked
    when the writer opens."""
    opts = dict(options)
    opts.pop("truncate", None)  # the engine's own option (engine.pipeline)
    split = opts.pop("split_by", None)  # the engine's too: split by key (engine.splitting)
    if split is not None and (not isinstance(split, str) or not split.strip() or len(split) > 255):
        raise FormatError(
            "format option 'split_by' must be the name of a column of the report's query "
            "(a non-empty string of at most 255 characters)"
        )
    context = RenderContext(report_name="check", execution_id="check")
    writer_class(name)(opts, context)
