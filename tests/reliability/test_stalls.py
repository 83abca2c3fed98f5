"""A data source that stops answering after the connection is up: a TCP proxy in front of the
running PostgreSQL and MariaDB that forwards faithfully until told to stall, then swallows every
byte both ways (a hung server, a dead network path) and holds every new connection silent — so
the server-side cancel (asyncpg's cancel request, MySQL's KILL QUERY, both made over a new
connection through the same proxy) cannot get through either. The run must still end, with a
readable error, inside its timeout plus the cancel grace, and its slot must be freed."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from reporthubd.store.database import Store
from tests import servers
from tests.engine.conftest import Source, add_config, add_datasource
from tests.reliability.conftest import Daemon


class StallingProxy:
    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.pass_eof = True
        self.stalled = asyncio.Event()
        self.server: asyncio.Server | None = None
        self.port = 0
        self.tasks: set[asyncio.Task[None]] = set()
        self.writers: list[asyncio.StreamWriter] = []

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.writers.append(writer)
        if self.stalled.is_set():
            return  # held open, silent
        up_reader, up_writer = await asyncio.open_connection(*self.target)
        self.writers.append(up_writer)
        for source, sink in ((reader, up_writer), (up_reader, writer)):
            task = asyncio.create_task(self._pipe(source, sink), name="stall-proxy-pipe")
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)

    async def _pipe(self, source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, OSError):
            while True:
                data = await source.read(65536)
                if not data:
                    break
                if self.stalled.is_set():
                    await asyncio.Event().wait()  # swallow: never forward, never read again
                sink.write(data)
                await sink.drain()
            if self.pass_eof:
                sink.close()  # pass the end of the connection on, as the network would

    async def stop(self) -> None:
        assert self.server is not None
        self.server.close()
        for task in list(self.tasks):
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        for writer in self.writers:
            writer.close()
        await self.server.wait_closed()


@pytest.fixture
async def proxy(source: Source) -> AsyncIterator[StallingProxy]:
    if source.type == "postgresql":
        target = (servers.POSTGRES_HOST, servers.POSTGRES_PORT)
    else:
        target = (servers.MARIADB_HOST, servers.MARIADB_PORT)
    stalling = StallingProxy(*target)
    await stalling.start()
    yield stalling
    await stalling.stop()


@pytest.mark.parametrize("when", ["before rows", "mid-stream"])
async def test_a_source_that_stalls_after_connecting_ends_the_run_and_frees_the_slot(
    tmp_path: Path, rstore: Store, source: Source, proxy: StallingProxy, when: str
) -> None:
    if source.type == "postgresql":
        # generate_series in the select list streams its rows (ProjectSet); in FROM it is
        # materialised first, which under load took longer than the 3 s timeout before a row.
        query = "SELECT generate_series(1, 50000000) AS n, repeat('x', 100) AS pad"
    else:
        query = "SELECT seq AS n, REPEAT('x', 100) AS pad FROM seq_1_to_50000000 WHERE SLEEP(0) = 0"
    config = {**source.config, "port": proxy.port, "host": "127.0.0.1"}
    config["options"] = {"connect_timeout_seconds": 2}
    ds = await add_datasource(rstore, source.type, config, max_concurrent_queries=1)
    report = await add_config(rstore, ds, query, timeout_seconds=3)
    quick = await add_config(rstore, ds, "SELECT 1 AS one", timeout_seconds=3)
    data = tmp_path / "good.db"
    with sqlite3.connect(data) as conn:
        conn.execute("CREATE TABLE t (id INTEGER)")
    conn.close()
    good = await add_config(
        rstore, await add_datasource(rstore, "sqlite", {"path": str(data)}), "SELECT id FROM t"
    )
    daemon = Daemon(tmp_path, execution={"max_concurrent_executions": 1})
    try:
        await daemon.ready()
        if when == "before rows":
            # Connected and idle in the pool, then the path dies before the next query.
            warm = await daemon.wait_status(await daemon.execute(quick))
            assert warm["status"] == "COMPLETED", warm["error_message"]
            proxy.stalled.set()
            execution_id = await daemon.execute(report)
        else:
            execution_id = await daemon.execute(report)
            for _ in range(600):
                info = await daemon.execution(execution_id)
                progress = info.get("progress") or {}
                if progress.get("rows", 0) > 0 or progress.get("bytes", 0) > 0:
                    break
                assert info["status"] in {"PENDING", "RUNNING"}, info["error_message"]
                await asyncio.sleep(0.05)
            proxy.stalled.set()
        after = await daemon.execute(good)
        ended = await daemon.wait_status(execution_id, timeout=90)
        assert ended["status"] in {"TIMEOUT", "FAILED"}, ended
        message = ended["error_message"] or ""
        assert message and "Traceback" not in message, message
        assert not list((daemon.workspace / execution_id).rglob("*"))
        done = await daemon.wait_status(after, timeout=90)
        assert done["status"] == "COMPLETED", done
    finally:
        await daemon.close()


async def test_a_close_that_lingers_after_the_result_does_not_turn_it_into_a_timeout(
    tmp_path: Path, rstore: Store, pg_source: Source
) -> None:
    """The server's end of the connection never reaches the client (a lost FIN): asyncpg's close
    waits for it, bounded by the connector. The result had fully arrived: COMPLETED."""
    proxy = StallingProxy(servers.POSTGRES_HOST, servers.POSTGRES_PORT)
    proxy.pass_eof = False
    await proxy.start()
    config = {**pg_source.config, "port": proxy.port, "host": "127.0.0.1"}
    ds = await add_datasource(rstore, "postgresql", config)
    report = await add_config(
        rstore, ds, "SELECT g FROM generate_series(1, 3) g", timeout_seconds=2
    )
    daemon = Daemon(tmp_path)
    try:
        await daemon.ready()
        done = await daemon.wait_status(await daemon.execute(report), timeout=90)
    finally:
        await daemon.close()
        await proxy.stop()
    assert done["status"] == "COMPLETED", done["error_message"]
    assert done["row_count"] == 3
