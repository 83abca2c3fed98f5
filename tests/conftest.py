"""Shared fixtures. Store fixtures are parametrized over every backend (SQLite, the running
MariaDB, the running PostgreSQL): a test that takes `store_url` or `store` is a contract test and
runs three times."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from reporthubd.config import StoreSettings
from reporthubd.store import migrate
from reporthubd.store.database import Store
from tests import servers


@pytest.fixture(params=servers.BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def store_url(backend: str, tmp_path: Path) -> Iterator[str]:
    """The URL of a fresh, empty database on `backend` (no schema)."""
    database = servers.create_database(backend, tmp_path)
    yield database.url
    database.drop()


@pytest.fixture
async def empty_store(store_url: str) -> AsyncIterator[Store]:
    store = Store(StoreSettings(url=store_url))
    await store.start()
    yield store
    await store.stop()


@pytest.fixture
async def store(empty_store: Store) -> Store:
    """A started Store on a fresh database of each backend, migrated to head."""
    await migrate.upgrade(empty_store)
    return empty_store
