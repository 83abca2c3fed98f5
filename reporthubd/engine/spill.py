"""Rows spilled to the workspace, one file per key: the one pass of a split-by-key run.

    spill = KeySpill(directory, key_index=2)            # rows (any format)
    spill.add(batch)                                    # any number of times, in a worker thread
    spill = KeySpill(directory, key_index=2, csv=spec)  # or lines the database rendered (CSV)
    spill.add_rendered(data)
    manifest = spill.finish(columns)                    # every buffer flushed, every file closed
    rows = KeyRows(directory, key, batch_size=5000)     # a child: rows.next_batch() ...
    chunks = KeyChunks(directory, key)                  # or chunks.next_chunk() -> (rows, data)

Memory stays flat and open files bounded whatever the order of the rows:

- each batch is grouped by key (each group pickled at once), or each rendered record appended as
  it is, to that key's buffer; the buffers together hold at most `buffer_bytes`, then every
  buffer is appended to its key's file;
- at most `max_open` files are open at once (least recently used closed first; a key's file is
  reopened for appending), so 1,000 keys in random order never hold 1,000 descriptors;
- rows come ordered by key or not: the same code; ordered input fills one buffer at a time and
  keeps one file open.

Rendered CSV (the CSV fast path, `formats.base.FormatWriter.server_csv`) is cut into records as
the CSV writer quotes them: a record ends at a line break outside quotes (quotes are doubled
inside a quoted field, so a record with an odd number of quote characters goes on); the key is
the text of its field. A record without a quote character up to its key's field (most) is cut
with one `split`.

Each key's row count, then the header (columns and the CSV description; last, by an atomic
rename: the mark of a finished spill) go beside the files: a directory without the header is an
unfinished spill, never read. The files are this daemon's own, in its own workspace: pickle
reads back exactly the values the connector gave (Decimal, dates, bytes, None), which the writers
then render as they would have rendered the query's own rows.
"""

from __future__ import annotations

import collections
import csv
import hashlib
import os
import pickle
import struct
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from reporthubd.connectors.base import Column, Row, ServerCSV

HEADER = "header.pickle"
"""Written last: the spill is finished (a child reads only this)."""
COUNTS = "counts.pickle"
MAX_OPEN = 32
BUFFER_BYTES = 4 << 20
"""4 MiB across all keys: about 50,000 pickled rows of a ten-column report."""
CHUNK_BYTES = 256 << 10
"""What a child hands its writer at once from a rendered spill."""
_FRAME = struct.Struct("<II")
"""A rendered spill's frame: rows, bytes; then the bytes (whole records)."""


def key_of(value: Any) -> str | None:
    """A split column's value as an audience key: its text, trimmed (as a driver's key is);
    None for NULL or an empty text (no audience can have it)."""
    if value is None:
        return None
    key = str(value).strip()
    return key or None


def file_of(key: str) -> str:
    return hashlib.blake2b(key.encode(), digest_size=16).hexdigest() + ".part"


@dataclass(frozen=True, kw_only=True)
class Header:
    columns: tuple[Column, ...]
    csv: ServerCSV | None = None
    """The rendering of a rendered spill (its parts are CSV records); None: pickled rows."""


@dataclass(frozen=True, kw_only=True)
class Manifest:
    header: Header
    rows: dict[str, int]
    """Rows per key (keys with at least one row)."""
    null_rows: int = 0
    """Rows whose key is NULL or empty (no audience can have them)."""
    max_open: int = 0
    """The most spill files that were open at once."""

    @property
    def total(self) -> int:
        return sum(self.rows.values()) + self.null_rows


@dataclass
class KeySpill:
    directory: Path
    key_index: int
    csv: ServerCSV | None = None
    max_open: int = MAX_OPEN
    buffer_bytes: int = BUFFER_BYTES
    keep: frozenset[str] | None = None
    """Keys to spill; the rows of any other key are only counted (they go to no file)."""
    rows: dict[str, int] = field(default_factory=dict)
    null_rows: int = 0
    max_open_seen: int = 0
    _buffers: dict[str, bytearray] = field(default_factory=dict)
    _buffer_rows: dict[str, int] = field(default_factory=dict)
    _buffered: int = 0
    _open: collections.OrderedDict[str, IO[bytes]] = field(default_factory=collections.OrderedDict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    """An abort after a cancelled `add` waits for that add's thread to finish."""
    _keys: dict[bytes, str | None] = field(default_factory=dict)
    _pending: bytes | None = None
    """A rendered record begun in an earlier line (a quoted line break), without its line's
    break."""
    _tail: bytes = b""
    """The start of a line whose break comes in the next chunk."""

    # -- rows -----------------------------------------------------------------------------------

    def add(self, batch: Sequence[Row]) -> None:
        """Spill one batch of rows (blocking: call it in a worker thread)."""
        with self._lock:
            groups: dict[str | None, list[Row]] = {}
            index = self.key_index
            for row in batch:
                key = key_of(row[index])
                group = groups.get(key)
                if group is None:
                    groups[key] = [row]
                else:
                    group.append(row)
            for key, rows in groups.items():
                kept = self._counted(key, len(rows))
                if kept is not None:
                    self._buffer(kept, pickle.dumps(rows, protocol=pickle.HIGHEST_PROTOCOL), 0)
            if self._buffered > self.buffer_bytes:
                self._flush()

    # -- rendered CSV ---------------------------------------------------------------------------

    def add_rendered(self, data: bytes) -> None:
        """Spill lines the database rendered to `csv` (whole lines; a record may go on in the
        next chunk). Blocking: call it in a worker thread.

        The records of one call are grouped by key first (through the raw text of the key's
        field), and each group is counted and appended at once: per record only the line is
        cut, its field found (bytes methods) and the record put in its group, so the cost per
        record does not include the key's text, its count or its buffer (1M records: 3.2 s of
        CPU before, 1.3 s after, bench/README.md). Hand it about a MiB at a time: the groups of
        a smaller call hold one record each when the keys are interleaved."""
        assert self.csv is not None
        with self._lock:
            quote = self.csv.quote_char.encode()
            delimiter = self.csv.delimiter.encode()
            index = self.key_index
            stop = index + 1
            groups: dict[bytes, list[bytes]] = {}
            by_key: dict[str | None, list[bytes]] = {}
            pieces = bytes(data).split(b"\n")  # COPY hands a bytearray
            tail = pieces.pop()  # b"" after whole lines
            pending = self._pending
            if self._tail:  # the line begun in the last chunk
                if pieces:
                    pieces[0] = self._tail + pieces[0]
                else:
                    tail = self._tail + tail
            for piece in pieces:
                if pending is not None:  # a record that began on an earlier line
                    record = pending + b"\n" + piece
                    if record.count(quote) % 2:
                        pending = record
                        continue
                    pending = None
                    raw = self._quoted_field(record)
                else:
                    record = piece
                    fields = piece.split(delimiter, stop)
                    quotes = piece.count(quote)
                    if not quotes:
                        try:
                            raw = fields[index]
                        except IndexError:
                            raw = b""
                    elif quotes % 2:
                        pending = piece  # a quoted line break: the record goes on
                        continue
                    elif len(fields) > stop and fields[stop].count(quote) == quotes:
                        raw = fields[index]  # every quote comes after the key's field
                    else:  # a quote up to the key's field may hide a delimiter
                        raw = self._quoted_field(piece)
                group = groups.get(raw)
                if group is None:  # a raw text first seen in this call: its key's group
                    group = groups[raw] = self._group(raw, by_key)
                group.append(record)
            self._pending = pending
            self._tail = tail
            self._spill_groups(by_key)

    def _group(self, raw: bytes, by_key: dict[str | None, list[bytes]]) -> list[bytes]:
        """The records of this call with the key of `raw`: one list per key, shared by the raw
        texts of that key (" A" and "A"), so that they keep their order."""
        key = self._keys[raw] if raw in self._keys else self._key_text(raw)
        group = by_key.get(key)
        if group is None:
            group = by_key[key] = []
        return group

    def _spill_groups(self, by_key: dict[str | None, list[bytes]]) -> None:
        """Count each key's records and append the kept ones to its buffer."""
        counts, keep = self.rows, self.keep
        buffers, buffer_rows = self._buffers, self._buffer_rows
        size = 0
        for key, group in by_key.items():
            rows = len(group)
            if key is None:
                self.null_rows += rows
                continue
            counts[key] = counts.get(key, 0) + rows
            if keep is not None and key not in keep:
                continue
            group.append(b"")  # the last record's line break
            records = b"\n".join(group)
            buffer = buffers.get(key)
            if buffer is None:
                buffers[key] = bytearray(records)
                buffer_rows[key] = rows
            else:
                buffer += records
                buffer_rows[key] += rows
            size += len(records)
        self._buffered += size
        if self._buffered > self.buffer_bytes:
            self._flush()

    def _quoted_field(self, record: bytes) -> bytes:
        assert self.csv is not None
        reader = csv.reader(
            [record.decode()], delimiter=self.csv.delimiter, quotechar=self.csv.quote_char
        )
        fields = next(reader, [])
        return fields[self.key_index].encode() if self.key_index < len(fields) else b""

    def _key_text(self, raw: bytes) -> str | None:
        assert self.csv is not None
        text = raw.decode()
        key = None if text == self.csv.null_text else key_of(text)
        if len(self._keys) < 100_000:
            self._keys[raw] = key
        return key

    # -- both -----------------------------------------------------------------------------------

    def _counted(self, key: str | None, rows: int) -> str | None:
        """Count `rows` of `key`; the key if they go to its file."""
        if key is None:
            self.null_rows += rows
            return None
        self.rows[key] = self.rows.get(key, 0) + rows
        return key if self.keep is None or key in self.keep else None

    def _buffer(self, key: str, data: bytes, rows: int) -> None:
        buffer = self._buffers.get(key)
        if buffer is None:
            self._buffers[key] = bytearray(data)
            self._buffer_rows[key] = rows
        else:
            buffer += data
            self._buffer_rows[key] += rows
        self._buffered += len(data)

    def finish(self, columns: Sequence[Column]) -> Manifest:
        """Flush, close every file and write the header (blocking)."""
        with self._lock:
            if self._pending is not None or self._tail.strip():
                raise ValueError("the rendered result ends inside a quoted field")
            self._flush()
            self._close_all()
            manifest = Manifest(
                header=Header(columns=tuple(columns), csv=self.csv),
                rows=dict(self.rows),
                null_rows=self.null_rows,
                max_open=self.max_open_seen,
            )
            _write(self.directory / COUNTS, (manifest.rows, manifest.null_rows, manifest.max_open))
            _write(self.directory / HEADER, manifest.header)
            return manifest

    def abort(self) -> None:
        """Close every file (the caller removes the directory)."""
        with self._lock:
            self._buffers.clear()
            self._close_all()

    def _flush(self) -> None:
        rendered = self.csv is not None
        for key, buffer in self._buffers.items():
            out = self._file(key)
            if rendered:
                out.write(_FRAME.pack(self._buffer_rows[key], len(buffer)))
            out.write(buffer)
        self._buffers.clear()
        self._buffer_rows.clear()
        self._buffered = 0

    def _file(self, key: str) -> IO[bytes]:
        handle = self._open.get(key)
        if handle is not None:
            self._open.move_to_end(key)
            return handle
        while len(self._open) >= self.max_open:
            _, oldest = self._open.popitem(last=False)
            oldest.close()
        handle = (self.directory / file_of(key)).open("ab")
        self._open[key] = handle
        self.max_open_seen = max(self.max_open_seen, len(self._open))
        return handle

    def _close_all(self) -> None:
        while self._open:
            _, handle = self._open.popitem(last=False)
            handle.close()


def _write(path: Path, value: Any) -> None:
    temporary = path.with_name(path.name + ".tmp")
    with temporary.open("wb") as out:
        pickle.dump(value, out, protocol=pickle.HIGHEST_PROTOCOL)
        out.flush()
        os.fsync(out.fileno())
    os.replace(temporary, path)


def _read(path: Path) -> Any:
    try:
        with path.open("rb") as source:
            return pickle.load(source)
    except FileNotFoundError:
        return None


def read_header(directory: Path) -> Header | None:
    """The finished spill's header, or None (no spill here, or an unfinished one)."""
    header = _read(directory / HEADER)
    return header if isinstance(header, Header) else None


def read_manifest(directory: Path) -> Manifest | None:
    """The finished spill's header and counts, or None."""
    header = read_header(directory)
    counts = _read(directory / COUNTS)
    if header is None or not isinstance(counts, tuple):
        return None
    rows, null_rows, max_open = counts
    return Manifest(header=header, rows=rows, null_rows=null_rows, max_open=max_open)


class _Part:
    """One key's file, read by worker threads; a lock keeps a close that follows a cancelled
    read from touching the file while that read still runs."""

    def __init__(self, directory: Path, key: str) -> None:
        self.path = directory / file_of(key)
        self._lock = threading.Lock()
        self._source: IO[bytes] | None = None
        self._done = False

    def _file(self) -> IO[bytes] | None:
        if self._source is None and not self._done:
            try:
                self._source = self.path.open("rb")
            except FileNotFoundError:  # a key without rows
                self._done = True
        return self._source

    @property
    def finished(self) -> bool:
        """Read to its end and closed: nothing more to read, nothing to close (the caller
        needs no further hop to a thread)."""
        return self._done and self._source is None

    def _end(self) -> None:
        """The end of the file was read: close it at once (lock held)."""
        self._done = True
        if self._source is not None:
            self._source.close()
            self._source = None

    def close(self) -> None:
        with self._lock:
            self._end()


class KeyRows(_Part):
    """One key's pickled rows in batches of at most `batch_size`, in the order they came."""

    def __init__(self, directory: Path, key: str, *, batch_size: int) -> None:
        super().__init__(directory, key)
        self.batch_size = batch_size
        self._pending: list[Row] = []

    @property
    def finished(self) -> bool:
        return super().finished and not self._pending

    def next_batch(self) -> list[Row] | None:
        """The next batch, or None after the last."""
        with self._lock:
            while not self._done and len(self._pending) < self.batch_size:
                source = self._file()
                if source is None:
                    break
                try:
                    self._pending.extend(pickle.load(source))
                except EOFError:
                    self._end()
            if not self._pending:
                return None
            batch = self._pending[: self.batch_size]
            del self._pending[: self.batch_size]
            return batch


class KeyChunks(_Part):
    """One key's rendered records, in chunks of about CHUNK_BYTES, with their row counts."""

    def next_chunk(self) -> tuple[int, bytes] | None:
        """The next (rows, data), or None after the last."""
        with self._lock:
            rows, parts, size = 0, [], 0
            while not self._done and size < CHUNK_BYTES:
                source = self._file()
                if source is None:
                    break
                frame = source.read(_FRAME.size)
                if len(frame) < _FRAME.size:
                    self._end()
                    break
                count, length = _FRAME.unpack(frame)
                parts.append(source.read(length))
                rows += count
                size += length
            if not parts:
                return None
            return rows, b"".join(parts)
