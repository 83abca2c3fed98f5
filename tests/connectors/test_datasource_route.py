"""Every connector's `test()` through POST /api/test-datasource/{id}, over a real port.

The control plane runs in-process here (the app of reporthubd/control/app.py on an aiohttp test
server bound to a free port, a real HTTP client), with a store holding one datasource of each
contract source. Sources with a server here answer ok with their round trip (and version where the
server gives one); those without (Oracle, SQL Server) answer ok=false with a clean reason.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer

from reporthubd.config import StoreSettings
from reporthubd.control.app import build_app
from reporthubd.store import migrate
from reporthubd.store.database import Store
from tests import servers
from tests.connectors.sources import Limit, Source
from tests.engine.conftest import add_datasource


class _Runtime:
    node_id = "route-test"
    started_at = datetime.now(UTC)
    draining = False

    def __init__(self, store: Store) -> None:
        self.store = store


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    store = Store(StoreSettings(url=f"sqlite:///{tmp_path / 'store.db'}"))
    await store.start()
    await migrate.upgrade(store)
    yield store
    await store.stop()


async def test_test_datasource_route(source: Source, store: Store) -> None:
    config = source.config
    if source.no_server:  # no server of this type here: point it at a closed local port
        assert not isinstance(source.unreachable, Limit)
        config = source.unreachable(servers.free_port())
    datasource_id = await add_datasource(store, source.type.value, config)
    app = build_app(_Runtime(store), max_body_bytes=1 << 20)  # type: ignore[arg-type]
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        answer = await client.post(f"/api/test-datasource/{datasource_id}")
        body = await answer.json()
    assert answer.status == 200 and body["status"] == "success"
    data = body["data"]
    if source.no_server:
        assert data["ok"] is False and source.where in data["error"]
        return
    assert data["ok"] is True, data
    assert data["round_trip_ms"] >= 0
    if not isinstance(source.server_version, Limit):
        assert data["server_version"]
