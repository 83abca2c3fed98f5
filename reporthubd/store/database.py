"""The store's connection: an async SQLAlchemy engine over aiomysql, asyncpg or aiosqlite."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

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


class StoreUnavailable(Exception):
    """The store's server cannot be reached or did not answer in time."""


class Store:
    """Owns the engine: `start()` creates it (connections open on first use), `stop()` disposes."""

    def __init__(self, settings: StoreSettings) -> None:
        self.settings = settings
        self._engine: AsyncEngine | None = None
        self.journal: Any = None
        """The daemon's store.journal.Journal: where recording writes wait out an outage."""

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
        kwargs: dict[str, Any] = {"pool_pre_ping": True}
        timeout = self.settings.connect_timeout_seconds
        if self.settings.backend == "mysql":
            kwargs["connect_args"] = {
                "connect_timeout": int(max(1, timeout)),
                "init_command": "SET time_zone = '+00:00'",
                "autocommit": False,
            }
            kwargs |= {"pool_size": self.settings.pool_size, "pool_recycle": 3600}
        elif self.settings.backend == "postgresql":
            kwargs["connect_args"] = {
                "timeout": timeout,
                "server_settings": {"timezone": "UTC", "application_name": "reporthubd"},
            }
            kwargs["pool_size"] = self.settings.pool_size
        else:
            database = url.database or ""
            if database and database != ":memory:":
                await asyncio.to_thread(_make_parent, database)
            kwargs["connect_args"] = {"timeout": timeout}
        engine = create_async_engine(url, **kwargs)
        if self.settings.backend == "sqlite":
            sa.event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        self._engine = engine

    async def stop(self) -> None:
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
