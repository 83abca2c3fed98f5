"""Real database servers for the tests (see ../shared/TESTING.md).

MariaDB and PostgreSQL already run on the development and CI machines. Each test that needs a
store gets a fresh database on them (`rh_test_<session>_<n>`), dropped afterwards. A server that
cannot be reached skips its tests with the reason, except when REPORTHUB_REQUIRE_SERVICES=1 (CI),
where it fails them.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import secrets
import socket
from dataclasses import dataclass
from pathlib import Path

import pytest

MARIADB_HOST = os.environ.get("REPORTHUB_TEST_MARIADB_HOST", "127.0.0.1")
MARIADB_PORT = int(os.environ.get("REPORTHUB_TEST_MARIADB_PORT", "3306"))
POSTGRES_HOST = os.environ.get("REPORTHUB_TEST_POSTGRES_HOST", "127.0.0.1")
POSTGRES_PORT = int(os.environ.get("REPORTHUB_TEST_POSTGRES_PORT", "5432"))

SESSION = secrets.token_hex(3)
_counter = itertools.count(1)
BACKENDS = ("sqlite", "mariadb", "postgresql")


def services_required() -> bool:
    return os.environ.get("REPORTHUB_REQUIRE_SERVICES") == "1"


def unavailable(reason: str) -> None:
    """Skip, or fail in CI where every listed server must run."""
    if services_required():
        pytest.fail(f"required service missing: {reason}", pytrace=False)
    pytest.skip(reason)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


@dataclass
class TestDatabase:
    backend: str
    name: str
    url: str

    def drop(self) -> None:
        if self.backend == "mariadb":
            _mariadb_admin(f"DROP DATABASE IF EXISTS `{self.name}`")
        elif self.backend == "postgresql":
            asyncio.run(_pg_admin(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)'))


def _mariadb_admin(sql: str) -> None:
    import pymysql

    conn = pymysql.connect(host=MARIADB_HOST, port=MARIADB_PORT, user="root", password="")
    try:
        with conn.cursor() as cursor:
            cursor.execute(sql)
    finally:
        conn.close()


async def _pg_admin(sql: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(
        host=POSTGRES_HOST, port=POSTGRES_PORT, user="postgres", database="postgres"
    )
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def create_database(backend: str, tmp_path: Path) -> TestDatabase:
    """A fresh, empty database on `backend`, or a skip/fail naming the missing server."""
    name = f"rh_test_{SESSION}_{next(_counter)}"
    if backend == "sqlite":
        path = tmp_path / f"{name}.db"
        return TestDatabase(backend, name, f"sqlite:///{path}")
    if backend == "mariadb":
        if not _reachable(MARIADB_HOST, MARIADB_PORT):
            unavailable(f"MariaDB not reachable on {MARIADB_HOST}:{MARIADB_PORT}")
        _mariadb_admin(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci")
        return TestDatabase(backend, name, f"mysql://root@{MARIADB_HOST}:{MARIADB_PORT}/{name}")
    if backend == "postgresql":
        if not _reachable(POSTGRES_HOST, POSTGRES_PORT):
            unavailable(f"PostgreSQL not reachable on {POSTGRES_HOST}:{POSTGRES_PORT}")
        asyncio.run(_pg_admin(f'CREATE DATABASE "{name}"'))
        return TestDatabase(
            backend, name, f"postgresql://postgres@{POSTGRES_HOST}:{POSTGRES_PORT}/{name}"
        )
    raise ValueError(backend)
