"""Pieces shared by the connectors: settings read from `connection_config`, secret-free errors,
and a bounded hand-over from a synchronous SDK running in a worker thread to the event loop.

Connector-specific tuning lives under `connection_config["options"]` (the store contract's
extension point), e.g. `{"options": {"connect_timeout_seconds": 5}}`.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Any

from reporthubd import secrets
from reporthubd.connectors.base import Column, ConnectorError, QueryResult, Row
from reporthubd.domain import Datasource

DEFAULT_CONNECT_TIMEOUT = 10.0
CANCEL_GRACE_SECONDS = 5.0
"""How long a connector waits for the server to confirm a cancel before giving up on it."""


def options(datasource: Datasource) -> Mapping[str, Any]:
    value = datasource.connection_config.get("options") or {}
    if not isinstance(value, Mapping):
        raise config_error(datasource, '"options" must be a JSON object')
    return value


def connect_timeout(datasource: Datasource) -> float:
    value = options(datasource).get("connect_timeout_seconds", DEFAULT_CONNECT_TIMEOUT)
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        raise config_error(datasource, "options.connect_timeout_seconds must be a number") from None
    if seconds <= 0:
        raise config_error(datasource, "options.connect_timeout_seconds must be positive")
    return seconds


def secret(datasource: Datasource, key: str, *, required: bool = False) -> str | None:
    """Resolve an inline / {"env"} / {"file"} secret of `connection_config`; None when absent."""
    value = datasource.connection_config.get(key)
    if value is None or value == "":
        if required:
            raise config_error(datasource, f"{key} is required")
        return None
    try:
        return secrets.resolve(value, where=f"datasource {datasource.name!r} {key}")
    except secrets.SecretError as exc:
        raise ConnectorError(str(exc)) from None


def setting(datasource: Datasource, key: str, default: Any = None) -> Any:
    value = datasource.connection_config.get(key)
    return default if value is None else value


def config_error(datasource: Datasource, problem: str) -> ConnectorError:
    return ConnectorError(f"{datasource.type} datasource {datasource.name!r}: {problem}")


def failure(
    datasource: Datasource, where: str, what: str, exc: BaseException | str
) -> ConnectorError:
    """A `ConnectorError` naming the datasource, its host/database (`where`) and the driver's
    reason, with every known secret blanked out of the driver's text."""
    detail = exc if isinstance(exc, str) else (str(exc).strip() or type(exc).__name__)
    detail = secrets.redact_text(" ".join(detail.split()))
    return ConnectorError(
        f"{datasource.type} datasource {datasource.name!r} ({where}): {what}: {detail}"
    )


class FeedStopped(Exception):
    """Raised inside the producer thread when the consumer has gone away."""


_ITEM, _END, _ERROR = "item", "end", "error"


class ThreadFeed:
    """Runs a blocking producer in a daemon thread and hands its items to the event loop.

    At most `depth` items are in flight: the producer blocks in `put` until the consumer has taken
    one, so a fast SDK never buffers the result set in memory. `stop()` makes the next (or the
    pending) `put` raise `FeedStopped` inside the producer, which then unwinds; `join` waits for it
    a bounded time. The thread is a daemon so a driver call stuck in the network cannot keep the
    process alive at exit.
    """

    def __init__(
        self,
        name: str,
        produce: Callable[[ThreadFeed], None],
        *,
        translate: Callable[[BaseException], BaseException] | None = None,
        depth: int = 2,
    ):
        self._name = name
        self._translate = translate
        self._produce = produce
        self._slots = threading.BoundedSemaphore(depth)
        self._stopped = threading.Event()
        self._queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self.finished = False
        """The producer ended (normally or with an error) and the consumer has seen it."""

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
        self._thread.start()

    @property
    def stopping(self) -> bool:
        return self._stopped.is_set()

    def put(self, item: Any) -> None:
        """Called by the producer thread: hand one item over, blocking while `depth` are pending."""
        while not self._slots.acquire(timeout=0.1):
            if self._stopped.is_set():
                raise FeedStopped
        if self._stopped.is_set():
            raise FeedStopped
        self._send(_ITEM, item)

    def _send(self, kind: str, value: Any) -> None:
        assert self._loop is not None
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody is listening
            self._loop.call_soon_threadsafe(self._queue.put_nowait, (kind, value))

    def _run(self) -> None:
        try:
            self._produce(self)
        except FeedStopped:
            pass
        except BaseException as exc:
            self._send(_ERROR, exc)
        else:
            self._send(_END, None)

    async def get(self) -> Any:
        """The next item; raises `StopAsyncIteration` at the end, or the producer's exception."""
        if self.finished:
            raise StopAsyncIteration
        kind, value = await self._queue.get()
        if kind == _ITEM:
            self._slots.release()
            return value
        self.finished = True
        if kind == _ERROR:
            if self._translate is not None:
                raise self._translate(value) from None
            raise value
        raise StopAsyncIteration

    def stop(self) -> None:
        self._stopped.set()

    async def join(self, grace: float = CANCEL_GRACE_SECONDS) -> bool:
        """Wait (bounded) for the producer thread to end; True when it did."""
        thread = self._thread
        if thread is None:
            return True
        deadline = asyncio.get_running_loop().time() + grace
        while thread.is_alive():
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                return False
            # Short sleeps only while a cancelled query unwinds; this is not a polling loop of the
            # steady state.
            await asyncio.sleep(min(0.05, remaining))
        return True


class FeedResult(QueryResult):
    """A `QueryResult` whose batches come from a `ThreadFeed` (lists of row tuples)."""

    def __init__(self, columns: Sequence[Column], feed: ThreadFeed) -> None:
        self.columns = columns
        self._feed = feed

    async def batches(self) -> AsyncIterator[list[Row]]:
        while True:
            try:
                batch: list[Row] = await self._feed.get()
            except StopAsyncIteration:
                return
            if batch:
                yield batch


@contextlib.asynccontextmanager
async def feed_result(
    feed: ThreadFeed, *, on_abandon: Callable[[], Awaitable[None]]
) -> AsyncIterator[FeedResult]:
    """Start `feed` (whose first item is the column list), yield its result, and on the way out
    stop it; when the consumer left before the end (early exit, timeout, cancel), `on_abandon`
    stops the work on the server (a job cancel, an abort) before the thread is joined."""
    feed.start()
    try:
        try:
            columns = await feed.get()
        except StopAsyncIteration:
            columns = []
        yield FeedResult(columns, feed)
    finally:
        feed.stop()
        if not feed.finished:
            await on_abandon()
        await feed.join()


def chunked(rows: Iterable[Row], size: int) -> Iterable[list[Row]]:
    batch: list[Row] = []
    for row in rows:
        batch.append(row)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch
