"""CSV: a streaming writer with every `format_options` key of issue 4 (see `formats/csvoptions.py`).

Values follow the canonical text forms of `formats/values.py` (decimals exact and fixed-point,
booleans `true`/`false`, dates ISO 8601, bytes base64, JSON compact), except timestamps, which
CSV writes as the database tools do: `2026-11-29 08:30:00`, a fraction only when there is one,
without trailing zeros (`08:30:00.25`), and the offset when the value has a zone (`+01:00`).

Rendering runs in a worker thread, one batch at a time and overlapped with fetching the next
batch, so the event loop stays responsive. Connectors that can have the database render CSV
itself (PostgreSQL COPY, the MySQL raw-row path) get a `ServerCSV` description from
`server_csv()` and feed already-rendered UTF-8 lines through `write_rendered`, gathered into
writes of `RENDERED_BUFFER` bytes.
"""

from __future__ import annotations

import asyncio
import base64
import codecs
import contextlib
import csv
import gzip
import hashlib
import io
import json
import zipfile
from collections.abc import Callable, Sequence
from datetime import date, datetime, time
from decimal import Decimal
from pathlib import Path
from typing import Any, ClassVar
from zoneinfo import ZoneInfo

from reporthubd.connectors.base import Column, ColumnKind, Row, ServerCSV
from reporthubd.formats import columns as colfmt
from reporthubd.formats import localize
from reporthubd.formats.base import FormatError, FormatWriter, RenderContext, WrittenFile
from reporthubd.formats.csvoptions import QUOTING, CSVOptions

RENDERED_BUFFER = 1 << 20


class _Sink(io.RawIOBase):
    """The file on disk, counting bytes and hashing them as they are written."""

    def __init__(self, path: Path) -> None:
        self._file = path.open("wb")
        self.size = 0
        self.digest = hashlib.sha256()

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        view = memoryview(data)
        self._file.write(view)
        self.digest.update(view)
        self.size += view.nbytes
        return view.nbytes

    def close(self) -> None:
        if not self._file.closed:
            self._file.close()
        super().close()


def _render_bool(true_text: str, false_text: str) -> Callable[[Any], str]:
    table = {True: true_text, False: false_text}

    def render(value: Any) -> str:
        return table.get(value) or (true_text if value else false_text)

    return render


def _render_decimal(value: Any) -> str:
    if isinstance(value, Decimal):
        if value.is_finite():
            return format(value, "f")
        if value.is_nan():
            return "NaN"
        return "Infinity" if value > 0 else "-Infinity"
    return str(value)


def _render_float(value: Any) -> str:
    if isinstance(value, float):
        if value != value:
            return "NaN"
        if value in (float("inf"), float("-inf")):
            return "Infinity" if value > 0 else "-Infinity"
        return repr(value)
    return str(value)


def _render_json(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)


def _render_binary(value: Any) -> str:
    if isinstance(value, bytes | bytearray | memoryview):
        return base64.b64encode(bytes(value)).decode("ascii")
    return str(value)


def _iso(value: Any) -> str:
    return value.isoformat() if isinstance(value, date | time) else str(value)


def _generic(value: Any) -> Any:
    """For OTHER columns: whatever the driver gave, in canonical form."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Decimal):
        return _render_decimal(value)
    if isinstance(value, date | time):
        return value.isoformat()
    if isinstance(value, bytes | bytearray | memoryview):
        return _render_binary(value)
    if isinstance(value, dict | list):
        return _render_json(value)
    return value


class CSVWriter(FormatWriter):
    extension: ClassVar[str] = "csv"
    media_type: ClassVar[str] = "text/csv"

    def __init__(self, options: Any, context: RenderContext) -> None:
        super().__init__(options, context)
        self.csv = CSVOptions.parse(dict(options) if options is not None else None)
        # Column formats: raw values unless `formatted` asks for the locale's text (a bad spec
        # is refused either way, as in every format).
        raw = options or {}
        self.spec = colfmt.parse("csv", raw.get("columns"))
        self.locale = localize.parse_locale("csv", raw.get("locale"))
        self.formatted = raw.get("formatted", False)
        if not isinstance(self.formatted, bool):
            raise FormatError("csv format option 'formatted' must be true or false")
        self._text_rows: localize.TextRows | None = None
        self._path: Path | None = None
        self._sink: _Sink | None = None
        self._archive: zipfile.ZipFile | None = None
        self._binary: Any = None
        self._text: io.TextIOWrapper | None = None
        self._writer: Any = None
        self._converters: list[tuple[int, Callable[[Any], Any]]] = []
        self._rows = 0
        self._pending: asyncio.Future[None] | None = None
        self._buffer = bytearray()

    @property
    def file_extension(self) -> str:
        if self.csv.compression == "gzip":
            return "csv.gz"
        if self.csv.compression == "zip":
            return "zip"
        return "csv"

    @property
    def truncate_past_max_rows(self) -> bool:
        return self.csv.truncate

    def server_csv(self) -> ServerCSV | None:
        """The rendering a database may do for us, or None when the options need Python."""
        if self.formatted and self.spec:
            return None
        return self.csv.server_csv()

    # -- lifecycle ------------------------------------------------------------------------------

    async def open(self, path: Path, columns: Sequence[Column]) -> None:
        self._path = path
        if self.formatted and self.spec:
            bound = self.spec.bind("csv", columns)
            zone = self.csv.timezone or ZoneInfo("UTC")
            self._text_rows = localize.TextRows(columns, bound, self.locale, zone)
            columns = self._text_rows.columns
        self._converters = self._column_converters(columns)
        await asyncio.to_thread(self._open_sync, path, [c.name for c in columns])

    def _open_sync(self, path: Path, header: list[str]) -> None:
        o = self.csv
        self._sink = _Sink(path)
        binary: Any = self._sink
        if o.compression == "gzip":
            binary = gzip.GzipFile(
                filename=path.name.removesuffix(".gz"),
                mode="wb",
                fileobj=self._sink,
                compresslevel=o.compression_level,
                mtime=0,
            )
        elif o.compression == "zip":
            self._archive = zipfile.ZipFile(
                self._sink, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=o.compression_level
            )
            inner = path.name.removesuffix(".zip") + ".csv"
            entry = zipfile.ZipInfo(inner, (1980, 1, 1, 0, 0, 0))
            entry.compress_type = zipfile.ZIP_DEFLATED
            entry._compresslevel = o.compression_level  # type: ignore[attr-defined]
            binary = self._archive.open(entry, "w", force_zip64=True)
        self._binary = binary
        if o.bom:
            binary.write(codecs.BOM_UTF8)
        self._text = io.TextIOWrapper(
            binary, encoding=o.encoding, errors=o.encoding_errors, newline="", write_through=False
        )
        self._writer = csv.writer(
            self._text,
            delimiter=o.delimiter,
            quotechar=o.quote_char,
            quoting=QUOTING[o.quoting],
            escapechar=o.escape_char,
            lineterminator=o.line_ending,
            doublequote=o.escape_char is None,
        )
        if o.header:
            self._guarded(self._writer.writerow, header)

    def _column_converters(
        self, columns: Sequence[Column]
    ) -> list[tuple[int, Callable[[Any], Any]]]:
        o = self.csv
        out: list[tuple[int, Callable[[Any], Any]]] = []
        for index, column in enumerate(columns):
            kind = column.kind
            fn: Callable[[Any], Any] | None = None
            if kind is ColumnKind.BOOLEAN:
                fn = _render_bool(o.true_text, o.false_text)
            elif kind is ColumnKind.DECIMAL:
                fn = _render_decimal
            elif kind is ColumnKind.FLOAT:
                fn = _render_float
            elif kind is ColumnKind.DATE:
                fn = _strftime(o.date_format) if o.date_format else _iso
            elif kind in (ColumnKind.DATETIME, ColumnKind.DATETIME_TZ):
                zone = o.timezone
                pattern = o.datetime_format
                fn = _datetime_renderer(pattern, zone)
            elif kind is ColumnKind.TIME:
                fn = _strftime(o.time_format) if o.time_format else _iso
            elif kind is ColumnKind.JSON:
                fn = _render_json
            elif kind is ColumnKind.BINARY:
                fn = _render_binary
            elif kind is ColumnKind.OTHER:
                fn = _generic
            if fn is not None:
                out.append((index, fn))
        return out

    def _convert(self, rows: Sequence[Row]) -> Sequence[Sequence[Any]]:
        null = self.csv.null_text
        if not self._converters and not null:
            return rows
        columns = [list(c) for c in zip(*rows, strict=True)]
        for index, fn in self._converters:
            columns[index] = [None if v is None else fn(v) for v in columns[index]]
        if null:
            columns = [[null if v is None else v for v in col] for col in columns]
        return list(zip(*columns, strict=True))

    def _write_sync(self, rows: Sequence[Row]) -> None:
        if self._text_rows is not None:
            rows = self._text_rows.apply(rows)
        self._guarded(self._writer.writerows, self._convert(rows))

    def _guarded(self, fn: Callable[[Any], Any], arg: Any) -> None:
        try:
            fn(arg)
        except UnicodeEncodeError as exc:
            bad = exc.object[exc.start : exc.end]
            raise FormatError(
                f"a value holds {bad!r}, which the csv encoding {self.csv.encoding} cannot "
                "represent (set format option encoding_errors to 'replace' to substitute it)"
            ) from None
        except csv.Error as exc:
            raise FormatError(f"csv: {exc}") from None

    async def _wait_pending(self) -> None:
        if self._pending is not None:
            pending, self._pending = self._pending, None
            await pending

    async def _settle(self) -> None:
        """Return once everything handed over so far is written."""
        await self._wait_pending()
        if self._buffer:
            data, self._buffer = bytes(self._buffer), bytearray()
            await asyncio.get_running_loop().run_in_executor(None, self._write_rendered_sync, data)

    async def write_batch(self, rows: Sequence[Row]) -> None:
        """Hand the batch to a worker thread and return once the previous one is written, so
        rendering batch N overlaps fetching batch N+1 and at most two batches are in memory."""
        await self._settle()
        if not rows:
            return
        self._rows += len(rows)
        loop = asyncio.get_running_loop()
        self._pending = loop.run_in_executor(None, self._write_sync, rows)

    async def write_rendered(self, data: bytes, rows: int) -> None:
        """Append CSV lines a database rendered (UTF-8, see `ServerCSV`), `rows` records.
        Small chunks are gathered up to `RENDERED_BUFFER` bytes before a thread writes them."""
        self._rows += rows
        if data:
            self._buffer += data
        if len(self._buffer) >= RENDERED_BUFFER:
            await self._flush_rendered()

    async def _flush_rendered(self) -> None:
        await self._wait_pending()
        if not self._buffer:
            return
        data, self._buffer = bytes(self._buffer), bytearray()
        loop = asyncio.get_running_loop()
        self._pending = loop.run_in_executor(None, self._write_rendered_sync, data)

    def _write_rendered_sync(self, data: bytes) -> None:
        assert self._text is not None
        self._text.flush()
        if self.csv.encoding == "utf-8":
            self._binary.write(data)
        else:
            self._guarded(self._text.write, data.decode("utf-8"))

    async def note_truncated(self, max_rows: int) -> None:
        await self._settle()
        note = self.csv.truncated_note.replace("{max_rows}", str(max_rows))
        await asyncio.to_thread(self._guarded, self._writer.writerow, [note])

    async def close(self) -> WrittenFile:
        await self._settle()
        await asyncio.to_thread(self._close_sync)
        assert self._sink is not None and self._path is not None
        return WrittenFile(
            path=self._path,
            size=self._sink.size,
            sha256=self._sink.digest.hexdigest(),
            rows=self._rows,
            media_type="application/gzip"
            if self.csv.compression == "gzip"
            else "application/zip"
            if self.csv.compression == "zip"
            else f"text/csv; charset={self.csv.encoding}",
        )

    def _close_sync(self) -> None:
        if self._text is not None:
            self._text.flush()
            self._text.detach()
            self._text = None
        if self._binary is not None and self._binary is not self._sink:
            self._binary.close()
        if self._archive is not None:
            self._archive.close()
        if self._sink is not None:
            self._sink.close()

    async def abort(self) -> None:
        pending, self._pending = self._pending, None
        if pending is not None:
            with contextlib.suppress(Exception):  # a failed write: the file is removed anyway
                await asyncio.shield(pending)
        await asyncio.to_thread(self._abort_sync)

    def _abort_sync(self) -> None:
        try:
            self._close_sync()
        except Exception:  # a half-written archive may refuse to close; it is removed below
            if self._sink is not None:
                self._sink.close()
        if self._path is not None:
            self._path.unlink(missing_ok=True)


def csv_datetime(value: datetime) -> str:
    """A timestamp as CSV writes it: `2026-11-29 08:30:00`, the fraction only when there is one
    and without trailing zeros (`08:30:00.5`), the offset when the value has a zone
    (`+01:00`) — what psql and mariadb print, so the databases can render it themselves."""
    text = value.isoformat(sep=" ")
    if not value.microsecond:
        return text
    return text[:26].rstrip("0") + text[26:]


def _strftime(pattern: str) -> Callable[[Any], str]:
    def render(value: Any) -> str:
        return value.strftime(pattern) if isinstance(value, date | time) else str(value)

    return render


def _datetime_renderer(pattern: str | None, zone: ZoneInfo | None) -> Callable[[Any], str]:
    def render(value: Any) -> str:
        if not isinstance(value, datetime):
            return _iso(value)
        if zone is not None and value.tzinfo is not None:
            value = value.astimezone(zone)
        if pattern:
            return str(value.strftime(pattern))
        return csv_datetime(value)

    return render
