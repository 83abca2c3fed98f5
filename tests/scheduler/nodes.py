"""Real `reporthubd run` processes sharing one MariaDB store, for the multi-node tests."""

from __future__ import annotations

import asyncio
import json
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from reporthubd.config import StoreSettings
from reporthubd.store import migrate
from reporthubd.store.database import Store
from tests import servers
from tests.daemon_process import DaemonProcess, write_config


@asynccontextmanager
async def mariadb_store(tmp_path: Path) -> AsyncIterator[tuple[Store, str]]:
    """A fresh, migrated MariaDB database (the multi-node tests need a server store)."""
    async with server_store(tmp_path, "mariadb") as found:
        yield found


@asynccontextmanager
async def server_store(tmp_path: Path, backend: str) -> AsyncIterator[tuple[Store, str]]:
    """A fresh, migrated database on `backend` (mariadb or postgresql)."""
    # in a thread: the PostgreSQL admin runs its own event loop
    database = await asyncio.to_thread(servers.create_database, backend, tmp_path)
    store = Store(StoreSettings(url=database.url, pool_size=10))
    await store.start()
    try:
        await migrate.upgrade(store)
        yield store, database.url
    finally:
        await store.stop()
        await asyncio.to_thread(database.drop)


class Node:
    def __init__(
        self,
        directory: Path,
        store_url: str,
        node_id: str,
        execution: dict[str, Any] | None = None,
        **scheduler: Any,
    ) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.node_id = node_id
        config, self.port = write_config(
            directory,
            store_url,
            scheduler={"node_id": node_id, **scheduler},
            execution=execution or {},
            logging={"format": "json", "level": "WARNING"},
        )
        self.process = DaemonProcess(config)

    def request(self, method: str, path: str, body: Any = None) -> dict[str, Any]:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(
            f"http://127.0.0.1:{self.port}{path}", data=data, method=method
        )
        req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=30) as answer:
                return json.loads(answer.read())  # type: ignore[no-any-return]
        except urllib.error.HTTPError as exc:
            return json.loads(exc.read())  # type: ignore[no-any-return]

    async def ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.proc.poll() is not None:
                raise AssertionError(f"{self.node_id} exited:\n{self.process.output()}")
            try:
                answer = await asyncio.to_thread(self.request, "GET", "/api/scheduler/status")
            except OSError:
                answer = {}
            if answer.get("status") == "success":
                return
            await asyncio.sleep(0.2)
        raise AssertionError(f"{self.node_id} not ready:\n{self.process.output()}")

    def stop(self) -> None:
        self.process.stop()

    def terminate(self, timeout: float = 30.0) -> int:
        import signal

        self.process.signal(signal.SIGTERM)
        return self.process.wait(timeout)
