"""Reliability fixtures: a migrated SQLite store in tmp_path, rows added straight into it, and a
real `reporthubd run` subprocess started over it (its control plane driven with aiohttp)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from reporthubd.config import StoreSettings
from reporthubd.store import migrate
from reporthubd.store.database import Store
from tests import servers
from tests.daemon_process import DaemonProcess, write_config
from tests.engine.conftest import Source, _my_source, _pg_source

TERMINAL = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "SKIPPED"}


@pytest.fixture
def pg_source() -> Iterator[Source]:
    yield from _pg_source()


@pytest.fixture
def my_source() -> Iterator[Source]:
    yield from _my_source()


@pytest.fixture(params=["postgresql", "mysql"])
def source(request: pytest.FixtureRequest) -> Iterator[Source]:
    yield from (_pg_source() if request.param == "postgresql" else _my_source())


STORE_BACKEND = os.environ.get("REPORTHUB_RELIABILITY_STORE", "sqlite")
"""The store the reliability daemons use: sqlite (default, in CI) or mariadb / postgresql (a
fresh database on the running server) for a manual run."""


@pytest.fixture
async def mariadb_store(tmp_path: Path) -> AsyncIterator[tuple[Store, str]]:
    """A fresh database on the running MariaDB (production's store), migrated."""
    database = servers.create_database("mariadb", tmp_path)
    store = Store(StoreSettings(url=database.url))
    await store.start()
    await migrate.upgrade(store)
    yield store, database.url
    await store.stop()
    database.drop()


@pytest.fixture
def rstore_url(tmp_path: Path) -> Iterator[str]:
    if STORE_BACKEND == "sqlite":
        yield f"sqlite:///{tmp_path}/store.db"
        return
    database = servers.create_database(STORE_BACKEND, tmp_path)
    STORE_URLS.append(database.url)
    yield database.url
    database.drop()


@pytest.fixture
async def rstore(rstore_url: str) -> AsyncIterator[Store]:
    store = Store(StoreSettings(url=rstore_url))
    await store.start()
    await migrate.upgrade(store)
    yield store
    await store.stop()


# Log events that mean a bug inside the daemon, whatever the test provoked: an execution that
# ended through the engine's catch-all, a control-plane handler that raised, a task that died.
CRASH_MARKERS = (
    '"execution crashed"',
    '"control plane handler failed"',
    "Task exception was never retrieved",
    '"Unhandled exception"',
)
STARTED: list[Daemon] = []
STORE_URLS: list[str] = []


@pytest.fixture(autouse=True)
def no_crash_in_daemon_logs() -> Iterator[None]:
    STARTED.clear()
    yield
    crashes = [
        line[:2000]
        for daemon in STARTED
        for line in daemon.process.output().splitlines()
        if any(marker in line for marker in CRASH_MARKERS)
    ]
    STARTED.clear()
    assert crashes == [], "\n".join(crashes)


class Daemon:
    """One daemon subprocess over the test's store (SQLite unless `store_url` or
    REPORTHUB_RELIABILITY_STORE says otherwise), with an HTTP session to it."""

    def __init__(
        self, tmp_path: Path, *, store_url: str | None = None, **sections: dict[str, object]
    ) -> None:
        url = f"sqlite:///{tmp_path}/store.db"
        if store_url is not None:  # a store the test chose itself
            url = store_url
        elif STORE_BACKEND != "sqlite":  # the database rstore_url made (one per test)
            url = STORE_URLS[-1]
        config, self.port = write_config(tmp_path, url, **sections)
        self.workspace = tmp_path / "workspace"
        self.process = DaemonProcess(config)
        self.base = f"http://127.0.0.1:{self.port}"
        self.http = aiohttp.ClientSession()
        STARTED.append(self)

    async def ready(self) -> None:
        for _ in range(600):
            if self.process.proc.poll() is not None:
                raise AssertionError(f"daemon exited: {self.process.output()[-3000:]}")
            try:
                async with self.http.get(f"{self.base}/readyz") as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.05)
        raise AssertionError(f"daemon never ready: {self.process.output()[-3000:]}")

    async def request(
        self, method: str, path: str, *, json: Any = None, data: bytes | None = None
    ) -> tuple[int, dict[str, Any]]:
        async with self.http.request(method, f"{self.base}{path}", json=json, data=data) as r:
            return r.status, await r.json(content_type=None)

    async def execute(self, config_id: int, **body: Any) -> str:
        status, answer = await self.request("POST", f"/api/execute/{config_id}", json=body or None)
        assert status in (200, 202), answer
        return str(answer["data"]["execution_id"])

    async def execution(self, execution_id: str) -> dict[str, Any]:
        status, answer = await self.request("GET", f"/api/execution/{execution_id}")
        assert status == 200, answer
        data: dict[str, Any] = answer["data"]
        return data

    async def wait_status(
        self, execution_id: str, statuses: set[str] = TERMINAL, timeout: float = 60
    ) -> dict[str, Any]:
        """Poll until the execution reaches one of `statuses` (a generous limit only to end a
        hung test, not a timing assertion)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            data = await self.execution(execution_id)
            if data["status"] in statuses:
                return data
            if loop.time() > deadline:
                raise AssertionError(f"{execution_id} still {data['status']}: {data}")
            await asyncio.sleep(0.1)

    async def close(self) -> None:
        await self.http.close()
        if self.process.proc.poll() is None:
            self.process.signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                await asyncio.to_thread(self.process.wait, 20)
        self.process.stop()


class WebhookReceiver:
    """An HTTP receiver on a free local port taking POSTs on any path; a test's subclass decides
    the answers in `handle`."""

    def __init__(self) -> None:
        self.runner: web.AppRunner | None = None
        self.port = 0

    async def handle(self, request: web.Request) -> web.Response:
        raise NotImplementedError

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/{path:.*}", self.handle)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def stop(self) -> None:
        assert self.runner is not None
        await self.runner.cleanup()
