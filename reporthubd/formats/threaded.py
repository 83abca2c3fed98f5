"""A FormatWriter whose rendering runs in one worker thread, fed through a bounded queue.

Subclasses implement the synchronous `render_open`, `render_batch` (any number of times),
`render_truncated` (optional) and `render_close` — or `render_abort` instead of the last —
which all run in the worker thread, in that order. The event loop only hands batches over:
`write_batch` waits (without blocking the loop) while `queue_batches` batches are in flight, so
a slow renderer slows the query down instead of growing memory (backpressure). A batch must not
be changed by the caller once handed over. A rendering error is raised from the next
`write_batch` or from `close`; `abort` stops at the next batch and removes the file.

Only one worker thread renders at a time, process-wide (`_RENDER_TURN`): rendering is Python
code that holds the GIL, so parallel renderers would not be faster, only starve the loop.
"""

from __future__ import annotations

import abc
import asyncio
import concurrent.futures
import contextlib
import hashlib
import queue
import sys
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from reporthubd import logs
from reporthubd.connectors.base import Column, Row
from reporthubd.formats.base import FormatError, FormatWriter, WrittenFile

log = logs.get(__name__)

DEFAULT_QUEUE_BATCHES: Final = 4
_CLOSE: Final = object()


@dataclass(frozen=True)
class _Truncated:
    max_rows: int


@dataclass(frozen=True)
class _Section:
    name: str
    columns: tuple[Column, ...]
    spec: Any


def truncation_note(max_rows: int) -> str:
    """What a truncated file says, in every format."""
    return f"Truncated: only the first {max_rows:,} rows of the result are included."


# Rendering is pure Python: threads cannot render in parallel (the GIL), but every rendering
# thread competes with the event loop for the GIL, and with four of them the loop waited up to
# seconds (bench/formats.py, suite `lag`). One renderer at a time leaves the loop a single
# competitor, so it gets the GIL back within a switch interval, at no cost in throughput.
_RENDER_TURN: Final = threading.Lock()


def file_digest(path: Path) -> tuple[int, str]:
    """Size and SHA-256 of a finished file (read in chunks, never whole)."""
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
            size += len(chunk)
    return size, digest.hexdigest()


class ThreadedWriter(FormatWriter):
    """Runs `render_*` in a named worker thread; the loop side only queues batches."""

    queue_batches: int = DEFAULT_QUEUE_BATCHES

    _path: Path
    _columns: Sequence[Column]
    _rows: int = 0
    _thread: threading.Thread | None = None
    _done: concurrent.futures.Future[int] | None = None
    _slots: asyncio.Semaphore
    _loop: asyncio.AbstractEventLoop
    _queue: queue.SimpleQueue[Any]
    _stop: threading.Event

    # -- worker-thread side, implemented by each format -------------------------------------

    @abc.abstractmethod
    def render_open(self, path: Path, columns: Sequence[Column]) -> None:
        """Create the file and write whatever precedes the rows."""

    @abc.abstractmethod
    def render_batch(self, rows: Sequence[Row]) -> None:
        """Write one batch of rows."""

    @abc.abstractmethod
    def render_close(self) -> None:
        """Finish and close the file."""

    def render_abort(self) -> None:
        """Release what `render_open` took (open handles); the file is removed afterwards."""

    def render_truncated(self, max_rows: int) -> None:
        """Say in the file that the engine cut the result at `max_rows` (after the last batch).
        The default adds a last row holding `truncation_note` in the first column."""
        if self._columns:
            self.render_batch([(truncation_note(max_rows),) + (None,) * (len(self._columns) - 1)])

    def render_section(self, name: str, columns: Sequence[Column], spec: Any) -> None:
        """Finish the current sheet or section and start the next one, `name`, with its own
        columns and column formats (`spec`, formats.columns.parse); formats.workbook drives it.
        The default refuses: the format holds one table."""
        raise FormatError(f"the {self.extension} format holds one table, not several sheets")

    def accept_batch(self, rows: Sequence[Row]) -> None:
        """Checked on the loop before a batch is queued (e.g. a row cap); raise FormatError."""

    # -- loop side ---------------------------------------------------------------------------

    async def open(self, path: Path, columns: Sequence[Column]) -> None:
        self._path = path
        self._columns = tuple(columns)
        self._loop = asyncio.get_running_loop()
        self._slots = asyncio.Semaphore(self.queue_batches)
        self._queue = queue.SimpleQueue()
        self._stop = threading.Event()
        self._done = concurrent.futures.Future()
        # Running from the start: a cancelled `close()` must not cancel the worker's future
        # (the worker would then fail to report), it only stops waiting for it.
        self._done.set_running_or_notify_cancel()
        self._thread = threading.Thread(
            target=self._run,
            name=f"reporthubd-format-{self.extension}-{self.context.execution_id}",
            daemon=True,
        )
        self._thread.start()

    async def write_batch(self, rows: Sequence[Row]) -> None:
        self._raise_if_failed()
        if not rows:
            return
        self.accept_batch(rows)
        await self._slots.acquire()
        self._raise_if_failed()
        self._rows += len(rows)
        self._queue.put(rows)

    async def note_truncated(self, max_rows: int) -> None:
        self._raise_if_failed()
        await self._slots.acquire()
        self._queue.put(_Truncated(max_rows))

    async def begin_section(self, name: str, columns: Sequence[Column], spec: Any) -> None:
        """After the last batch of one section, before the first of the next (formats.workbook)."""
        self._raise_if_failed()
        await self._slots.acquire()
        self._queue.put(_Section(name, tuple(columns), spec))

    async def close(self) -> WrittenFile:
        done = self._require_started()
        self._queue.put(_CLOSE)
        try:
            rows = await asyncio.wrap_future(done)
        except FormatError:
            self._remove_partial()
            raise
        except Exception as exc:
            self._remove_partial()
            raise FormatError(f"writing the {self.extension} file failed: {exc}") from exc
        size, sha256 = await asyncio.to_thread(file_digest, self._path)
        return WrittenFile(
            path=self._path, size=size, sha256=sha256, rows=rows, media_type=self.written_media_type
        )

    @property
    def written_media_type(self) -> str:
        """The media type of the produced file (a format option may change it)."""
        return self.media_type

    async def abort(self) -> None:
        if self._done is None:
            return
        self._stop.set()
        self._queue.put(_CLOSE)
        # Wait for the worker (it stops at the next batch boundary) before removing its file;
        # shielded so that a second cancellation does not leave the thread writing the file.
        with contextlib.suppress(Exception):
            await asyncio.shield(asyncio.wrap_future(self._done))
        self._remove_partial()

    @property
    def rows_written(self) -> int:
        """Rows accepted so far (queued or rendered)."""
        return self._rows

    def _require_started(self) -> concurrent.futures.Future[int]:
        if self._done is None:
            raise RuntimeError("writer used before open()")
        return self._done

    def _raise_if_failed(self) -> None:
        done = self._require_started()
        if done.done():
            exc = done.exception()
            if isinstance(exc, FormatError):
                raise exc
            if exc is not None:
                raise FormatError(f"writing the {self.extension} file failed: {exc}") from exc
            raise RuntimeError("writer already closed")

    def _remove_partial(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self._path.unlink()

    def _release_slot(self) -> None:
        self._slots.release()

    def _run(self) -> None:
        assert self._done is not None
        rendered = 0
        try:
            with _RENDER_TURN:
                self.render_open(self._path, self._columns)
            while True:
                item = self._queue.get()
                if item is _CLOSE:
                    break
                try:
                    if self._stop.is_set():
                        pass
                    elif isinstance(item, _Truncated):
                        with _RENDER_TURN:
                            self.render_truncated(item.max_rows)
                    elif isinstance(item, _Section):
                        with _RENDER_TURN:
                            self._columns = item.columns
                            self.render_section(item.name, item.columns, item.spec)
                    else:
                        with _RENDER_TURN:
                            self.render_batch(item)
                        rendered += len(item)
                finally:
                    self._call_on_loop(self._release_slot)
            with _RENDER_TURN:
                if self._stop.is_set():
                    self.render_abort()
                else:
                    self.render_close()
        except BaseException as exc:
            with contextlib.suppress(Exception):
                self.render_abort()
            # Failed first, then wake a producer waiting in write_batch: it must see the failure.
            self._done.set_exception(exc)
            self._call_on_loop(self._drain_after_failure)
            try:
                log.warning("format_render_failed", format=self.extension, error=str(exc))
            except Exception as log_exc:  # logging must never hide the failure
                sys.stderr.write(f"format_render_failed {exc!r} (logging failed: {log_exc!r})\n")
            return
        self._done.set_result(rendered)

    def _call_on_loop(self, callback: Callable[[], None]) -> None:
        # The loop may already be closed when an abandoned writer finishes.
        with contextlib.suppress(RuntimeError):
            self._loop.call_soon_threadsafe(callback)

    def _drain_after_failure(self) -> None:
        # Called on the loop: wake every waiter; they then see the failure.
        for _ in range(self.queue_batches + 1):
            self._slots.release()
