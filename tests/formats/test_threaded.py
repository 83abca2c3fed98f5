"""The worker-thread base: bounded queue (backpressure), errors, abort, a free event loop."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import ClassVar

import pytest

from reporthubd.connectors.base import Column, ColumnKind, Row
from reporthubd.formats.base import FormatError
from reporthubd.formats.threaded import ThreadedWriter
from tests.formats import helpers

COLUMNS = [Column(name="n", kind=ColumnKind.INTEGER, source_type="int")]


class GatedWriter(ThreadedWriter):
    """Renders a batch only when the test opens the gate; fails on a batch holding -1."""

    extension: ClassVar[str] = "txt"
    media_type: ClassVar[str] = "text/plain"
    queue_batches = 2

    def __init__(self) -> None:
        super().__init__({}, helpers.CONTEXT)
        self.gate = threading.Semaphore(0)
        self.rendered: list[int] = []
        self.entered: list[int] = []  # batches whose rendering has started
        self.thread_names: set[str] = set()

    def render_open(self, path: Path, columns: Sequence[Column]) -> None:
        self.file = path.open("w")

    def render_batch(self, rows: Sequence[Row]) -> None:
        self.thread_names.add(threading.current_thread().name)
        self.entered.append(rows[0][0])
        self.gate.acquire()
        if rows[0][0] == -1:
            raise ValueError("bad value -1")
        self.rendered.extend(r[0] for r in rows)
        self.file.write("".join(f"{r[0]}\n" for r in rows))

    def render_close(self) -> None:
        self.file.close()

    def render_abort(self) -> None:
        self.file.close()


async def test_write_batch_waits_when_the_queue_is_full(tmp_path: Path) -> None:
    writer = GatedWriter()
    await writer.open(tmp_path / "out.txt", COLUMNS)
    # Two batches in flight (one rendering, blocked on the gate, one queued) fill the queue.
    for n in range(2):
        await writer.write_batch([(n,)])
    third = asyncio.create_task(writer.write_batch([(2,)]), name="third-batch")
    ticks = 0
    for _ in range(20):  # the loop keeps running while the producer waits
        await asyncio.sleep(0)
        ticks += 1
    assert not third.done()
    writer.gate.release()  # one batch done → one slot free
    await asyncio.wait_for(third, 30)
    for _ in range(2):
        writer.gate.release()
    written = await asyncio.wait_for(writer.close(), 30)
    assert ticks == 20
    assert writer.rendered == [0, 1, 2]
    assert written.rows == 3
    assert written.path.read_text() == "0\n1\n2\n"
    assert writer.thread_names == {"reporthubd-format-txt-exec-formats-1"}


async def test_render_error_reaches_the_producer_and_the_file_is_removed(tmp_path: Path) -> None:
    writer = GatedWriter()
    path = tmp_path / "out.txt"
    await writer.open(path, COLUMNS)
    await writer.write_batch([(-1,)])
    writer.gate.release()
    with pytest.raises(FormatError, match="bad value -1"):
        for n in range(10):  # fails as soon as the error is seen, at the latest on close
            await writer.write_batch([(n,)])
            writer.gate.release()
        await writer.close()
    await writer.abort()
    assert not path.exists()


async def test_abort_stops_without_rendering_queued_batches(tmp_path: Path) -> None:
    writer = GatedWriter()
    path = tmp_path / "out.txt"
    await writer.open(path, COLUMNS)
    await writer.write_batch([(1,)])
    await writer.write_batch([(2,)])
    writer.gate.release()  # batch 1 renders; batch 2 starts and waits at the gate
    for _ in range(3000):
        if writer.entered == [1, 2]:
            break
        await asyncio.sleep(0.01)
    assert writer.entered == [1, 2]
    await writer.write_batch([(3,)])  # queued behind batch 2
    aborting = asyncio.create_task(writer.abort(), name="abort")
    await asyncio.sleep(0)  # abort has asked the worker to stop
    for _ in range(3):
        writer.gate.release()
    await asyncio.wait_for(aborting, 30)
    assert not path.exists()
    assert writer.rendered == [1, 2]  # batch 3 was dropped, not rendered


async def test_cancelled_producer_then_abort(tmp_path: Path) -> None:
    writer = GatedWriter()
    path = tmp_path / "out.txt"
    await writer.open(path, COLUMNS)
    for n in range(2):
        await writer.write_batch([(n,)])
    blocked = asyncio.create_task(writer.write_batch([(9,)]), name="blocked-batch")
    await asyncio.sleep(0)
    blocked.cancel()
    with pytest.raises(asyncio.CancelledError):
        await blocked
    for _ in range(5):
        writer.gate.release()
    await writer.abort()
    assert not path.exists()


async def test_cancelled_close_then_abort(tmp_path: Path) -> None:
    writer = GatedWriter()
    path = tmp_path / "out.txt"
    await writer.open(path, COLUMNS)
    await writer.write_batch([(1,)])
    closing = asyncio.create_task(writer.close(), name="closing")
    await asyncio.sleep(0)
    closing.cancel()
    with pytest.raises(asyncio.CancelledError):
        await closing
    writer.gate.release()
    await asyncio.wait_for(writer.abort(), 30)
    assert not path.exists()
    assert writer.rendered in ([], [1])
