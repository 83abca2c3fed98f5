"""The store's connection: an async SQLAlchemy engine over aiomysql, asyncpg or aiosqlite."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from reporthubd import logs, secrets
from reporthubd.config import StoreSettings

log = logs.get(__name__)

_DRIVERS = {
    "mysql": "mysql+aiomysql",
    "postgresql": "postgresql+asyncpg",
    "sqlite": "sqlite+aiosqlite",
}


def engine_url(settings: StoreSettings) -> URL:
    """Translate `store.url` to a SQLAlchemy URL for our async driver, password resolved."""
    url = make_url(settings.url).set(drivername=_DRIVERS[settings.backend])
    if settings.password is not None:
        url = url.set(password=secrets.resolve(settings.password, where="store.password"))
    elif url.password:
        secrets.remember(str(url.password))
    if settings.backend == "mysql":
        url = url.update_query_dict({"charset": "utf8mb4"})
    return url


def describe(url: URL) -> str:
    """Where the store is, for messages: never the password."""
    return url.render_as_string(hide_password=True)


# A pooled connection is pinged before use only when it has sat idle this long: a connection
# the store answered on a moment ago is taken as alive (if it died since, the statement fails,
# SQLAlchemy drops every pooled connection, and the caller's own error path runs, as for any
# store error). Pinging at every checkout cost a round trip per claim.
PING_AFTER_IDLE_SECONDS = 5.0
_IDLE_SINCE = "reporthubd_idle_since"
# Set on a pooled connection whose last statement was a COMMIT sent around SQLAlchemy: its
# return to the pool needs no ROLLBACK round trip (see mark_clean).
_CLEAN = "reporthubd_clean"


class StoreUnavailable(Exception):
    """The store's server cannot be reached or did not answer in time."""


class Store:
    """Owns the engine: `start()` creates it (connections open on first use), `stop()` disposes."""

    def __init__(self, settings: StoreSettings) -> None:
        self.settings = settings
        self._engine: AsyncEngine | None = None
        self.journal: Any = None
        """The daemon's store.journal.Journal: where recording writes wait out an outage."""
        self.claim_line = ClaimLine(self)
        """The connection the scheduler's claims go through (see ClaimLine)."""

    @property
    def engine(self) -> AsyncEngine:
        if self._engine is None:
            raise RuntimeError("store not started")
        return self._engine

    @property
    def dialect(self) -> str:
        return self.settings.backend

    async def start(self) -> None:
        url = engine_url(self.settings)
        self.location = describe(url)
        # returned connections are rolled back by _reset_unless_clean, not by the pool itself
        kwargs: dict[str, Any] = {"pool_reset_on_return": None}
        timeout = self.settings.connect_timeout_seconds
        if self.settings.backend == "mysql":
            kwargs["connect_args"] = {
                "connect_timeout": int(max(1, timeout)),
                "init_command": (
                    "SET time_zone = '+00:00', "
                    f"innodb_lock_wait_timeout = {int(self.settings.lock_wait_timeout_seconds)}"
                ),
                "autocommit": False,
            }
            kwargs |= {
                "pool_size": self.settings.pool_size,
                "pool_recycle": 3600,
                "pool_use_lifo": True,
            }
        elif self.settings.backend == "postgresql":
            kwargs["connect_args"] = {
                "timeout": timeout,
                "server_settings": {
                    "timezone": "UTC",
                    "application_name": "reporthubd",
                    "lock_timeout": f"{int(self.settings.lock_wait_timeout_seconds * 1000)}",
                    "idle_in_transaction_session_timeout": (
                        f"{int(self.settings.idle_transaction_timeout_seconds * 1000)}"
                    ),
                },
            }
            kwargs |= {"pool_size": self.settings.pool_size, "pool_use_lifo": True}
        else:
            database = url.database or ""
            if database and database != ":memory:":
                await asyncio.to_thread(_make_parent, database)
            kwargs["connect_args"] = {"timeout": timeout}
        engine = create_async_engine(url, **kwargs)
        _reset_unless_clean(engine)
        if self.settings.backend == "sqlite":
            sa.event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        else:
            _ping_when_idle(engine)
        if self.settings.backend == "mysql":
            idle = int(self.settings.idle_transaction_timeout_seconds)
            sa.event.listen(
                engine.sync_engine, "connect", lambda conn, _record: _mariadb_idle(conn, idle)
            )
        self._engine = engine

    async def stop(self) -> None:
        await self.claim_line.close()
        if self._engine is not None:
            await self._engine.dispose()
            self._engine = None

    async def ping(self, limit_seconds: float = 3.0) -> None:
        """Raise StoreUnavailable unless a trivial query answers within `limit_seconds`."""
        try:
            async with asyncio.timeout(limit_seconds):
                async with self.engine.connect() as conn:
                    await conn.execute(sa.text("SELECT 1"))
        except (TimeoutError, OSError, sa.exc.SQLAlchemyError) as exc:
            reason = "timed out" if isinstance(exc, TimeoutError) else error_line(exc)
            raise StoreUnavailable(f"store {self.location} unreachable: {reason}") from None


class ClaimLine:
    """One store connection kept checked out for the scheduler's claims, so that a claim skips
    the pool's checkout and return (about 0.45 ms of SQLAlchemy's async layers per claim,
    bench/README.md). One claim at a time has it; a claim that finds it busy (the parallel
    slices of a big instant) takes a pooled connection instead. Like a pooled connection it is
    pinged before use only after PING_AFTER_IDLE_SECONDS idle, and a new one is opened when
    the ping fails (the server closed it). A claim that fails on it drops it, invalidated (the
    statement may have half-run, or the server closed it: its state is unknown); the next
    claim opens a new one. Whoever uses it ends its transaction (COMMIT or ROLLBACK)."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._conn: AsyncConnection | None = None
        self._driver: Any = None
        self._busy = False
        self._used_at = 0.0

    @contextlib.asynccontextmanager
    async def connect(self) -> AsyncIterator[AsyncConnection]:
        if self._busy:
            async with self._store.engine.connect() as pooled:
                yield pooled
            return
        self._busy = True
        try:
            conn = await self._ready()
            try:
                yield conn
            except BaseException:
                self._conn = self._driver = None
                await _drop(conn)
                raise
            self._used_at = time.monotonic()
        finally:
            self._busy = False

    async def _ready(self) -> AsyncConnection:
        conn = self._conn
        if conn is not None and (conn.closed or conn.invalidated):
            conn = self._conn = self._driver = None
        if conn is not None and time.monotonic() - self._used_at >= PING_AFTER_IDLE_SECONDS:
            try:
                await conn.run_sync(_ping)
            except Exception as exc:  # closed by the server while idle: open a new one
                log.debug("claim connection lost while idle", error=error_line(exc))
                self._conn = self._driver = None
                await _drop(conn)
                conn = None
        if conn is None:
            conn = await self._store.engine.connect()
            if self._store.dialect == "mysql":
                # the claims' isolation, set once for the session (reset when it goes back to
                # the pool), not in each claim's round trip
                await conn.execution_options(isolation_level="READ COMMITTED")
                self._driver = await driver_of(conn)
            self._conn = conn
        return conn

    async def driver(self, conn: AsyncConnection) -> Any:
        """`driver_of(conn)`, looked up once for the line's own connection (each lookup is a
        greenlet switch through SQLAlchemy's async layer)."""
        if conn is self._conn and self._driver is not None:
            return self._driver
        return await driver_of(conn)

    def is_read_committed(self, conn: AsyncConnection) -> bool:
        """Whether `conn` is this line's MySQL/MariaDB session, READ COMMITTED throughout."""
        return conn is self._conn and self._store.dialect == "mysql"

    async def close(self) -> None:
        conn, self._conn, self._driver = self._conn, None, None
        if conn is not None:
            with contextlib.suppress(Exception):
                await conn.close()


def _ping(conn: sa.Connection) -> None:
    dbapi_connection = conn.connection.dbapi_connection
    if dbapi_connection is None:
        raise sa.exc.DisconnectionError("the claim connection has no driver connection")
    conn.dialect.do_ping(dbapi_connection)


async def _drop(conn: AsyncConnection) -> None:
    with contextlib.suppress(Exception):
        if not conn.invalidated:
            await conn.invalidate()
    with contextlib.suppress(Exception):
        await conn.close()


def _ping_when_idle(engine: AsyncEngine) -> None:
    """Ping a pooled connection at checkout when it has been idle PING_AFTER_IDLE_SECONDS or
    more (most recently used first, so a busy daemon keeps reusing live ones); a dead one
    invalidates the pool and the checkout gets a new connection."""
    dialect = engine.dialect

    def checkout(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        idle_since = record.info.get(_IDLE_SINCE)
        if idle_since is None or time.monotonic() - idle_since < PING_AFTER_IDLE_SECONDS:
            return
        try:
            dialect.do_ping(dbapi_connection)
        except Exception as exc:  # whatever broke it: drop it and connect anew
            raise sa.exc.InvalidatePoolError(f"ping failed: {type(exc).__name__}") from exc

    def checkin(_dbapi_connection: Any, record: Any) -> None:
        record.info[_IDLE_SINCE] = time.monotonic()

    sa.event.listen(engine.sync_engine.pool, "checkout", checkout)
    sa.event.listen(engine.sync_engine.pool, "checkin", checkin)


def mysql_time(value: datetime) -> str:
    """An aware datetime as MySQL/MariaDB DATETIME text in UTC (the store's session zone)."""
    return value.astimezone(UTC).replace(tzinfo=None).isoformat(sep=" ", timespec="microseconds")


async def driver_of(conn: AsyncConnection) -> Any:
    """The driver's own connection (aiomysql) under a pooled SQLAlchemy connection: for hot
    paths that send several statements in one round trip. Whoever uses it ends with COMMIT
    (then mark_clean) or invalidates `conn`."""
    driver = (await conn.get_raw_connection()).driver_connection
    if driver is None:
        raise RuntimeError("the store connection has no driver connection")
    return driver


async def mark_clean(conn: AsyncConnection) -> None:
    """Say that `conn`'s last statement, sent on its driver connection around SQLAlchemy, was a
    COMMIT that succeeded: nothing is left to roll back when it returns to the pool."""
    (await conn.get_raw_connection()).info[_CLEAN] = True


def _reset_unless_clean(engine: AsyncEngine) -> None:
    """What the pool's own rollback-on-return does, less the round trips it can skip: a
    transaction SQLAlchemy already ended inline, and a connection marked clean."""
    dialect = engine.dialect

    def reset(dbapi_connection: Any, record: Any, state: Any) -> None:
        clean = record.info.pop(_CLEAN, False)
        if clean or state.transaction_was_reset or not state.asyncio_safe:
            return
        dialect.do_rollback(dbapi_connection)

    sa.event.listen(engine.sync_engine.pool, "reset", reset)


def _mariadb_idle(dbapi_connection: Any, seconds: int) -> None:
    """MariaDB ends a session whose write transaction sits idle `seconds` (a frozen node's);
    MySQL has no such variable, and refuses it: nothing to do there."""
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute(f"SET SESSION idle_write_transaction_timeout = {int(seconds)}")
    except Exception as exc:  # MySQL: "Unknown system variable"
        log.debug("store has no idle_write_transaction_timeout", error=error_line(exc))
    finally:
        cursor.close()
    dbapi_connection.commit()


def lock_wait_timed_out(exc: BaseException) -> bool:
    """Whether a store error is a lock wait that ran out (another session holds the row): a
    conflict, not an outage."""
    orig = getattr(exc, "orig", None) or exc
    code = getattr(orig, "args", (None,))[0] if getattr(orig, "args", None) else None
    if code == 1205:  # MySQL/MariaDB ER_LOCK_WAIT_TIMEOUT
        return True
    return getattr(orig, "sqlstate", None) == "55P03" or "LockNotAvailable" in type(orig).__name__


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def error_line(exc: BaseException) -> str:
    """The first line of a store error (the driver's own message), secrets redacted: for logs."""
    text = str(getattr(exc, "orig", None) or exc)
    return secrets.redact_text(text.splitlines()[0] if text else type(exc).__name__)


def _make_parent(database: str) -> None:
    Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
