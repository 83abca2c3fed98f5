"""How a command gets a usable store: started, answering, at the schema this version expects.

Every command that works on the store opens it here: the daemon (`run`, and `demo` through it),
`check`, `execute`, `apply`, `export`, `next SCHEDULE_ID`, `db upgrade` and `db current`. The
order is always the same:

1. start the store's engine (connections open on first use; a password given as a reference
   is resolved here);
2. ping it, within `store.connect_timeout_seconds`;
3. read its schema revision, then accept it (this version's head), upgrade it (when the caller
   says so: `db upgrade`, the demo, a daemon whose `store.auto_upgrade` allows it) or refuse it.

A store that cannot be used raises `StoreRefused`, whose text is the one line to show an operator:
it names the store by its location (never its password) and says what to do; a driver's own
words pass through `store.database.error_line`, which redacts every known secret. The commands
print that line and exit 1; the daemon logs it and exits 1. Leaving the context stops the store,
after a refusal too.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import sqlalchemy as sa

from reporthubd import secrets
from reporthubd.config import Settings
from reporthubd.store import migrate
from reporthubd.store.database import Store, StoreUnavailable, error_line


class StoreRefused(Exception):
    """The store cannot be used by this command; the message is the line for the operator."""


@dataclass(frozen=True, kw_only=True)
class OpenStore:
    store: Store
    found: str | None
    """The schema revision found on opening; None for a store without our schema."""
    revision: str
    """The revision the store is at now: this version's head."""

    @property
    def upgraded(self) -> bool:
        return self.found != self.revision


@asynccontextmanager
async def connect(settings: Settings) -> AsyncIterator[Store]:
    """The store, started and answering; its schema is not looked at (`db current` reads it)."""
    store = Store(settings.store)
    try:
        await _start(store, settings)
        yield store
    finally:
        await store.stop()


@asynccontextmanager
async def open_store(settings: Settings, *, upgrade: bool = False) -> AsyncIterator[OpenStore]:
    """The store, started, answering and at this version's schema revision. With `upgrade`, a
    store behind (or empty) is upgraded first; a revision this version does not know (written
    by a newer reporthubd) is always refused."""
    async with connect(settings) as store:
        state = await schema_state(store)
        problem = state.problem()
        if problem is not None and not (upgrade and state.known):
            raise StoreRefused(f"store {store.location}: {problem}")
        if problem is not None:
            try:
                await migrate.upgrade(store)
            except (sa.exc.SQLAlchemyError, OSError) as exc:
                raise StoreRefused(
                    f"store {store.location}: upgrade from {state.current or '(empty)'} to "
                    f"{state.head} failed: {error_line(exc)}"
                ) from None
        yield OpenStore(store=store, found=state.current, revision=state.head)


async def schema_state(store: Store) -> migrate.SchemaState:
    """The store's schema revision against this version's; StoreRefused when it cannot be read."""
    try:
        return await migrate.schema_state(store)
    except (sa.exc.SQLAlchemyError, OSError) as exc:
        raise StoreRefused(
            f"store {store.location}: cannot read the schema revision: {error_line(exc)}"
        ) from None


async def _start(store: Store, settings: Settings) -> None:
    try:
        await store.start()
    except secrets.SecretError as exc:  # names the reference ("store.password: ..."), no value
        raise StoreRefused(str(exc)) from None
    except OSError as exc:  # a SQLite store's folder that cannot be created
        raise StoreRefused(f"store: {error_line(exc)}") from None
    try:
        await store.ping(limit_seconds=settings.store.connect_timeout_seconds)
    except StoreUnavailable as exc:  # already one redacted line, location included
        raise StoreRefused(str(exc)) from None
