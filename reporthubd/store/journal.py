"""Store writes that outlive a store outage: an append-only journal on local disk.

The engine and the delivery ledger record what happened (an execution's final status, its file,
each delivery attempt) through `durable(store, name, **args)`. While the store answers, that is a
plain write. When the store cannot be reached, the write is appended to the journal instead (one
JSON object per line, fsynced) and the caller goes on as if it had been written: a run that
finishes during an outage is not lost, and does not fail because of it. The flusher task replays
the journal in order as soon as the store answers again, and at start-up (so a crash during an
outage loses nothing either). While a write about an execution waits in the journal, later writes
about the same execution queue behind it, so the store sees each row's writes in the order they
were made; writes about other executions go straight to the store (one stuck row, a deadlock under
load, does not turn every later write into a journal entry).

Replaying is safe more than once: status moves are conditional updates, delivery-log rows have a
unique key (a duplicate is "already written"), and other updates set the same values again.

Only writes that record facts go through here. Claims (a fire, PENDING → RUNNING, a retry's
lease) need the store's answer and are never journaled: without the store nothing new starts.

    journal = Journal(store, path)
    await journal.open()            # loads what a previous process left; store.journal = journal
    tasks.spawn("store-journal", journal.flush_loop())
    await durable(store, "update_execution", execution_id=..., only_if_status=[...], values={...})
"""

from __future__ import annotations

import asyncio
import base64
import collections
import contextlib
import enum
import fcntl
import json
import os
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from reporthubd import logs, metrics
from reporthubd.store.database import Store, StoreUnavailable, error_line

log = logs.get(__name__)

Operation = Callable[..., Awaitable[Any]]

_OPERATIONS: dict[str, Operation] = {}

RETRY_FIRST_SECONDS = 0.5
CONFLICT_RETRIES = 3
RETRY_MAX_SECONDS = 5.0


def operation(name: str) -> Callable[[Operation], Operation]:
    """Register `fn(store, **args)` as the replayable write called `name` (its arguments must be
    JSON with datetimes, decimals and bytes)."""

    def register(fn: Operation) -> Operation:
        _OPERATIONS[name] = fn
        return fn

    return register


# The MySQL client's "no connection" codes (CR_CONNECTION_ERROR, CR_CONN_HOST_ERROR,
# CR_SERVER_GONE_ERROR, CR_SERVER_LOST, CR_SERVER_LOST_EXTENDED), as pymysql raises them.
_MYSQL_CONNECTION_LOST = frozenset({2002, 2003, 2006, 2013, 2055})


def unreachable(exc: BaseException) -> bool:
    """Whether `exc` means the store did not answer (worth waiting out), not that it refused.

    Besides SQLAlchemy's wrapped errors this knows the driver's own, raw: a call that goes to
    the driver connection outside SQLAlchemy's error wrapping (setting AUTOCOMMIT on a pooled
    connection, a hot path sent on the driver connection) raises pymysql's OperationalError
    or InterfaceError as is, with the socket's error as its cause."""
    if isinstance(exc, sa.exc.IntegrityError | sa.exc.ProgrammingError | sa.exc.DataError):
        return False
    if isinstance(
        exc,
        OSError
        | EOFError  # asyncio.IncompleteReadError: the server closed the socket mid-packet
        | TimeoutError
        | StoreUnavailable
        | sa.exc.OperationalError
        | sa.exc.InterfaceError
        | sa.exc.TimeoutError
        | sa.exc.DisconnectionError,
    ) or bool(getattr(exc, "connection_invalidated", False)):
        return True
    if _driver_connection_lost(exc):
        return True
    cause = exc.__cause__
    return cause is not None and cause is not exc and _driver_connection_lost(cause, deep=True)


def _driver_connection_lost(exc: BaseException, *, deep: bool = False) -> bool:
    """A raw driver error that says the connection is gone (pymysql/aiomysql), or, `deep`, a
    socket error under one."""
    if deep and isinstance(exc, OSError | EOFError | TimeoutError):
        return True
    if not type(exc).__module__.startswith("pymysql"):
        return False
    if type(exc).__name__ == "InterfaceError":  # "(0, 'Not connected')": the socket is closed
        return True
    code = exc.args[0] if exc.args else None
    return type(exc).__name__ == "OperationalError" and code in _MYSQL_CONNECTION_LOST


def conflict(exc: BaseException) -> bool:
    """A deadlock or lock wait timeout (MySQL 1213/1205, PostgreSQL 40001/40P01): the store is
    up, and the same write, tried again, will usually go through."""
    orig = getattr(exc, "orig", None)
    code = getattr(orig, "args", (None,))[0] if orig is not None else None
    sqlstate = getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None)
    return code in (1205, 1213) or sqlstate in ("40001", "40P01")


async def durable(store: Store, name: str, **args: Any) -> Any:
    """Run the registered write `name`; when the store is unreachable (or writes already wait in
    its journal), journal it and return None. Without a journal, the write's error propagates."""
    journal: Journal | None = store.journal
    if journal is None:
        return await _OPERATIONS[name](store, **args)
    return await journal.write(name, args)


async def until_reachable(
    what: str, call: Callable[[], Awaitable[Any]], *, log_fields: dict[str, Any] | None = None
) -> Any:
    """`await call()`, again and again (backing off) while the store is unreachable: for a step
    that needs the store's answer and may as well wait for it. Cancellation ends the wait."""
    delay = RETRY_FIRST_SECONDS
    warned = False
    while True:
        try:
            return await call()
        except Exception as exc:
            if not unreachable(exc):
                raise
            if not warned:
                log.warning(
                    "store unreachable; waiting",
                    step=what,
                    error=error_line(exc),
                    **(log_fields or {}),
                )
                warned = True
        await asyncio.sleep(delay)
        delay = min(RETRY_MAX_SECONDS, delay * 2)


@dataclass
class _Entry:
    seq: int
    name: str
    args: dict[str, Any]

    @property
    def key(self) -> str:
        """The row the write is about: its execution. Writes of one key reach the store in
        order; writes of other keys need not wait behind them."""
        if "execution_id" in self.args:
            return str(self.args["execution_id"])
        rows = self.args.get("rows") or [{}]
        return str(rows[0].get("execution_id", ""))


class Journal:
    def __init__(self, store: Store, path: Path) -> None:
        self.store = store
        self.path = path
        self._pending: collections.deque[_Entry] = collections.deque()
        self._keys: collections.Counter[str] = collections.Counter()
        self._seq = 0
        self._wake = asyncio.Event()
        self._file_lock = asyncio.Lock()
        self._flushing = asyncio.Lock()
        self.flushed = 0
        self.dropped = 0
        self.down_since: datetime | None = None
        self._lock_fd: int | None = None

    # -- lifecycle ------------------------------------------------------------------------------

    async def open(self) -> int:
        """Load the records a previous process left unflushed; attach to the store. Returns how
        many wait to be replayed."""
        entries = await asyncio.to_thread(_load, self.path)
        self._pending.extend(entries)
        self._keys.update(entry.key for entry in entries)
        self._seq = max((e.seq for e in entries), default=0)
        self._lock_fd = await asyncio.to_thread(_lock, self.path)
        self.store.journal = self
        metrics.observe_gauges({metrics.JOURNAL_PENDING: lambda: float(len(self._pending))})
        if entries:
            log.warning(
                "store journal holds unflushed writes from before",
                path=str(self.path),
                records=len(entries),
            )
            self._wake.set()
        return len(entries)

    async def close(self, flush_seconds: float = 5.0) -> None:
        """A last flush (bounded: whatever the store does not take stays in the file for the
        next start), then detach from the store and unlock."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(flush_seconds):
                await self.flush()
        if self._pending:
            log.warning(
                "store journal keeps unflushed writes for the next start",
                path=str(self.path),
                records=len(self._pending),
            )
        self.store.journal = None
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    @property
    def pending(self) -> int:
        return len(self._pending)

    # -- writing --------------------------------------------------------------------------------

    async def write(self, name: str, args: dict[str, Any]) -> Any:
        if name not in _OPERATIONS:
            raise KeyError(f"unknown journaled write {name!r}")
        if not self._keys[_Entry(0, name, args).key]:
            for attempt in range(CONFLICT_RETRIES + 1):
                try:
                    return await _OPERATIONS[name](self.store, **args)
                except Exception as exc:
                    if not unreachable(exc):
                        raise
                    error = exc
                if not conflict(error) or attempt == CONFLICT_RETRIES:
                    break
                # A deadlock or lock timeout under load: "try restarting transaction".
                await asyncio.sleep(random.uniform(0.02, 0.2) * (attempt + 1))
            if self.down_since is None and not conflict(error):
                self.down_since = datetime.now(UTC)
            log.warning(
                "store write failed; kept in the journal",
                write=name,
                error=error_line(error),
            )
        await self._append(name, args)
        return None

    async def _append(self, name: str, args: dict[str, Any]) -> None:
        self._seq += 1
        entry = _Entry(self._seq, name, args)
        line = _dumps({"seq": entry.seq, "op": name, "args": args})
        self._pending.append(entry)  # in order, before any await
        self._keys[entry.key] += 1
        self._wake.set()
        async with self._file_lock:
            await asyncio.to_thread(_append_lines, self.path, [line])

    # -- flushing -------------------------------------------------------------------------------

    async def flush_loop(self) -> None:
        """Forever: replay waiting records in order as soon as the store takes them."""
        while True:
            await self._wake.wait()
            self._wake.clear()
            await self.flush()

    async def flush(self) -> int:
        """Replay every waiting record, waiting out the store; returns how many were replayed.
        One flush at a time: each record is applied once per process."""
        async with self._flushing:
            return await self._flush()

    async def _flush(self) -> int:
        done = 0
        delay = RETRY_FIRST_SECONDS
        while self._pending:
            entry = self._pending[0]
            try:
                await _OPERATIONS[entry.name](self.store, **entry.args)
            except Exception as exc:
                if unreachable(exc):
                    await asyncio.sleep(delay)
                    delay = min(RETRY_MAX_SECONDS, delay * 2)
                    continue
                # The store refused it (a row another service removed, a value it rejects):
                # retrying cannot help. Logged with what it was, then dropped.
                self.dropped += 1
                log.error(
                    "journaled write refused by the store; dropped",
                    write=entry.name,
                    args=_summary(entry.args),
                    error=error_line(exc),
                )
            delay = RETRY_FIRST_SECONDS
            self._pending.popleft()
            self._keys[entry.key] -= 1
            if not self._keys[entry.key]:
                del self._keys[entry.key]
            done += 1
            self.flushed += 1
            if self._pending:
                async with self._file_lock:
                    await asyncio.to_thread(_append_lines, self.path, [_dumps({"done": entry.seq})])
        if done:
            async with self._file_lock:
                if not self._pending:
                    await asyncio.to_thread(_truncate, self.path)
            log.info(
                "store journal flushed",
                records=done,
                down_since=self.down_since.isoformat() if self.down_since else None,
            )
            self.down_since = None
        return done


# -- the file -----------------------------------------------------------------------------------


def _load(path: Path) -> list[_Entry]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    entries: dict[int, _Entry] = {}
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line, object_hook=_decode)
        except ValueError:
            # The last line of a process killed mid-write; anything else is damage worth a word.
            log.warning("store journal: unreadable line skipped", path=str(path), line=number)
            continue
        if "done" in record:
            entries.pop(int(record["done"]), None)
        elif record.get("op") in _OPERATIONS:
            entries[int(record["seq"])] = _Entry(int(record["seq"]), record["op"], record["args"])
        else:
            log.warning("store journal: unknown record skipped", path=str(path), line=number)
    return [entries[seq] for seq in sorted(entries)]


class JournalBusy(Exception):
    """Another process holds the journal file."""


def _lock(path: Path) -> int:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise JournalBusy(
            f"the store journal {path} is held by another reporthubd process: give each daemon "
            "its own workspace or store.journal_path"
        ) from None
    return fd


def _append_lines(path: Path, lines: list[str]) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, "".join(line + "\n" for line in lines).encode("utf-8"))
        os.fsync(fd)
    finally:
        os.close(fd)


def _truncate(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError), path.open("r+", encoding="utf-8") as handle:
        handle.truncate(0)
        os.fsync(handle.fileno())


def _encode(value: Any) -> Any:
    if isinstance(value, datetime):
        return {"$datetime": value.isoformat()}
    if isinstance(value, date):
        return {"$date": value.isoformat()}
    if isinstance(value, Decimal):
        return {"$decimal": str(value)}
    if isinstance(value, bytes):
        return {"$bytes": base64.b64encode(value).decode("ascii")}
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, tuple | set | frozenset):
        return list(value)
    raise TypeError(f"cannot journal a {type(value).__name__}")


def _decode(obj: dict[str, Any]) -> Any:
    if len(obj) == 1:
        ((key, value),) = obj.items()
        if key == "$datetime":
            return datetime.fromisoformat(value)
        if key == "$date":
            return date.fromisoformat(value)
        if key == "$decimal":
            return Decimal(value)
        if key == "$bytes":
            return base64.b64decode(value)
    return obj


def _dumps(record: dict[str, Any]) -> str:
    return json.dumps(record, default=_encode, ensure_ascii=False, separators=(",", ":"))


def _summary(args: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in args.items() if isinstance(v, str | int) and len(str(v)) < 100}
