"""The fan-out acceptance scenario of issue 18, for any number of audiences: real daemons over a
MariaDB store run a data-driven report whose driver query, on MariaDB, returns N audiences, each
delivered by webhook (multipart: the file itself) to a local receiver. The checks:

- every audience key reached the receiver under exactly one Idempotency-Key, and every key once
  (the receiver drops a repeat of a key it has, as a receiver of reporthubd's webhooks does: a
  delivery in flight at a kill is sent again by the recovery under the same key, and counted);
- no two audiences got the same content, and each file holds its audience's rows only;
- the parent's counts are right (all delivered, none failed);
- the dry run's list (POST /api/audiences/{id}/dry-run) equals what was sent;
- while it runs (`Sampler`), each daemon's store connections as MariaDB itself lists them
  (information_schema.PROCESSLIST, matched to the daemon's own sockets) stay within its pool,
  its data source connections within the datasource's limit, and its RSS flat.

test_fanout.py / test_fanout_kill.py run it with 300 audiences (the quick variants), and
test_fanout_10k.py / test_fanout_10k_kill.py with the issue's 10,000 (background).
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import hashlib
import io
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import pytest
import sqlalchemy as sa
from aiohttp import web

from reporthubd.store import schema
from reporthubd.store.database import Store
from tests import servers
from tests.deliverers.peers import Hit
from tests.engine.conftest import Source, _my_source, add_config, add_datasource
from tests.reliability.conftest import TERMINAL, Daemon, WebhookReceiver

SOURCE_LIMIT = 6
"""The data source's max_concurrent_queries (per node)."""
POOL_SLOTS = 12
"""Each daemon's max_concurrent_executions."""
STORE_POOL = 5 + 10
"""Each daemon's store pool: pool_size 5 (the default) and SQLAlchemy's overflow of 10."""


class Receiver(WebhookReceiver):
    """Records every request; answers 200; a key it has seen is dropped (answered 200)."""

    def __init__(self) -> None:
        super().__init__()
        self.hits: list[Hit] = []
        self.accepted: dict[str, Hit] = {}

    async def handle(self, request: web.Request) -> web.Response:
        hit = Hit(headers=dict(request.headers), body=await request.read(), at=0.0)
        self.hits.append(hit)
        self.accepted.setdefault(hit.headers.get("Idempotency-Key", ""), hit)
        return web.Response(status=200, text="ok")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    hook = Receiver()
    await hook.start()
    yield hook
    await hook.stop()


@pytest.fixture
def source() -> Iterator[Source]:
    yield from _my_source()


async def definitions(store: Store, source: Source, receiver: Receiver, audiences: int) -> int:
    """The branches (one audience each, two statement lines each) and the report; its id."""
    await source.execute(
        "CREATE TABLE branches (code VARCHAR(16) PRIMARY KEY, manager VARCHAR(255))",
        "CREATE TABLE statement_lines (branch VARCHAR(16), line INT, amount INT, KEY (branch))",
    )
    for start in range(0, audiences, 1000):
        part = range(start, min(audiences, start + 1000))
        values = ", ".join(f"('A{i:05d}', 'manager{i}@example.com')" for i in part)
        lines = ", ".join(f"('A{i:05d}', {n}, {i * 7 + n})" for i in part for n in (1, 2))
        await source.execute(
            f"INSERT INTO branches VALUES {values}", f"INSERT INTO statement_lines VALUES {lines}"
        )
    ds = await add_datasource(store, "mysql", source.config, max_concurrent_queries=SOURCE_LIMIT)
    config = await add_config(
        store,
        ds,
        "SELECT branch, line, amount FROM statement_lines WHERE branch = :branch ORDER BY line",
        name="Branch statements",
        file_name_template="statement_{{ branch }}",
    )
    async with store.engine.begin() as conn:
        await conn.execute(
            sa.insert(schema.audience_drivers).values(
                config_id=config,
                datasource_id=ds,
                query_text="SELECT code AS branch, manager AS recipients FROM branches",
                key_column="branch",
            )
        )
        await conn.execute(
            sa.insert(schema.deliveries).values(
                config_id=config,
                name="archive",
                method="webhook",
                delivery_config={"url": receiver.url, "mode": "multipart"},
                max_retry=3,
                retry_interval_minutes=1,
            )
        )
    return config


def daemon(tmp_path: Path, url: str, node: str) -> Daemon:
    (tmp_path / node).mkdir(exist_ok=True)
    return Daemon(
        tmp_path / node,
        store_url=url,
        scheduler={
            "node_id": node,
            "heartbeat_interval_seconds": 1.0,
            "node_lost_after_seconds": 3.5,
        },
        execution={"max_concurrent_executions": POOL_SLOTS, "retry_time_scale": 0.05},
    )


async def until(predicate: Any, what: str, timeout: float = 240.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not await predicate():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.2)


async def parent_chain(store: Store, parent_id: str) -> list[Any]:
    e = schema.executions
    async with store.engine.connect() as conn:
        return list(
            (
                await conn.execute(
                    sa.select(e.c.id, e.c.status, e.c.row_count, e.c.node_id)
                    .where(sa.or_(e.c.id == parent_id, e.c.recovers_id == parent_id))
                    .order_by(e.c.created_at)
                )
            ).all()
        )


def check_sent(receiver: Receiver, listing: dict[str, Any], audiences: int) -> dict[str, int]:
    keys_of: dict[str, set[str]] = defaultdict(set)
    contents: Counter[str] = Counter()
    for key, hit in receiver.accepted.items():
        metadata, body = hit.multipart_file()
        branch = metadata["parameters"]["branch"]
        keys_of[branch].add(key)
        contents[hashlib.sha256(body).hexdigest()] += 1
        table = list(csv.reader(io.StringIO(body.decode())))
        assert table[0] == ["branch", "line", "amount"]
        number = int(branch[1:])
        assert table[1:] == [[branch, "1", str(number * 7 + 1)], [branch, "2", str(number * 7 + 2)]]
        assert metadata["file"]["name"] == f"statement_{branch}.csv"
    assert len(receiver.accepted) == audiences
    assert {b: len(k) for b, k in keys_of.items() if len(k) != 1} == {}  # one key per audience
    assert len(keys_of) == audiences
    assert [c for c, n in contents.items() if n > 1] == []  # no two audiences share a file
    listed = sorted((a["key"], a["parameters"]["branch"]) for a in listing["audiences"])
    assert listed == sorted((b, b) for b in keys_of)
    assert {t for a in listing["audiences"] for t in a["targets"]} == {"webhook:archive"}
    repeats = len(receiver.hits) - len(receiver.accepted)
    return {"requests": len(receiver.hits), "repeats_under_the_same_key": repeats}


async def dry_run(daemon: Daemon, config: int, audiences: int) -> dict[str, Any]:
    status, answer = await daemon.request("POST", f"/api/audiences/{config}/dry-run")
    assert status == 200, answer
    data: dict[str, Any] = answer["data"]
    assert data["count"] == audiences
    return data


async def counts(daemon: Daemon, execution_id: str) -> dict[str, int]:
    status, answer = await daemon.request("GET", f"/api/execution/{execution_id}/audiences")
    assert status == 200, answer
    found: dict[str, int] = answer["data"]["counts"]
    return found


def all_delivered(audiences: int) -> dict[str, int]:
    return {
        "audiences": audiences,
        "delivered": audiences,
        "failed": 0,
        "skipped": 0,
        "unfinished": 0,
    }


@dataclass
class Sample:
    delivered: int
    rss: int
    store_connections: int
    source_connections: int


@dataclass
class Sampler:
    """Every `interval` seconds while a fan-out runs: each daemon's RSS (psutil) and its
    connections to the store's and the source's databases as the MariaDB server lists them
    (PROCESSLIST rows whose client port is one of the daemon's own sockets)."""

    store_database: str
    source_database: str
    receiver: Receiver
    interval: float = 0.5
    samples: dict[int, list[Sample]] = field(default_factory=lambda: defaultdict(list))

    async def run(self, daemons: list[Daemon]) -> None:
        import aiomysql

        conn = await aiomysql.connect(
            host=servers.MARIADB_HOST, port=servers.MARIADB_PORT, user="root", password=""
        )
        try:
            while True:
                async with conn.cursor() as cursor:
                    await cursor.execute(
                        "SELECT HOST, DB FROM information_schema.PROCESSLIST WHERE DB IN (%s, %s)",
                        (self.store_database, self.source_database),
                    )
                    listed = [(str(host), str(db)) for host, db in await cursor.fetchall()]
                await conn.commit()
                for one in daemons:
                    self._sample(one, listed)
                await asyncio.sleep(self.interval)
        finally:
            conn.close()

    def _sample(self, one: Daemon, listed: list[tuple[str, str]]) -> None:
        try:
            process = psutil.Process(one.process.proc.pid)
            rss = process.memory_info().rss
            ports = {c.laddr.port for c in process.net_connections(kind="tcp") if c.raddr}
        except psutil.Error:
            return  # killed
        mine = [db for host, db in listed if _port(host) in ports]
        self.samples[one.process.proc.pid].append(
            Sample(
                delivered=len(self.receiver.accepted),
                rss=rss,
                store_connections=mine.count(self.store_database),
                source_connections=mine.count(self.source_database),
            )
        )

    @contextlib.asynccontextmanager
    async def watching(self, daemons: list[Daemon]) -> AsyncIterator[Sampler]:
        task = asyncio.create_task(self.run(daemons), name="fanout-sampler")
        try:
            yield self
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def check(self, audiences: int) -> dict[int, dict[str, int]]:
        """Store and source connections within their bounds; RSS flat: the peak over the
        second half of the fan-out within 25% (and 40 MiB) of the peak over its first
        quarter (an audience's leak of even 4 KiB would add 20 MiB at 10,000)."""
        found = {}
        for pid, samples in self.samples.items():
            assert samples, pid
            store = max(s.store_connections for s in samples)
            source = max(s.source_connections for s in samples)
            assert store <= STORE_POOL, (pid, store)
            # the data source's limit, the driver's own read, and a KILL QUERY connection
            assert source <= SOURCE_LIMIT + 2, (pid, source)
            early = [s.rss for s in samples if s.delivered <= audiences // 4]
            late = [s.rss for s in samples if s.delivered >= audiences // 2]
            found[pid] = {
                "samples": len(samples),
                "store_connections_peak": store,
                "source_connections_peak": source,
                "rss_peak_first_quarter_mib": max(early, default=0) // 2**20,
                "rss_peak_second_half_mib": max(late, default=0) // 2**20,
            }
            if early and late:
                assert max(late) <= max(max(early) * 1.25, max(early) + 40 * 2**20), found[pid]
        return found


def _port(host: str) -> int | None:
    _, _, port = host.rpartition(":")
    return int(port) if port.isdigit() else None


def _databases(store_url: str, source: Source) -> tuple[str, str]:
    return sa.engine.make_url(store_url).database or "", str(source.config["database"])


async def one_daemon(
    tmp_path: Path,
    mariadb_store: tuple[Store, str],
    source: Source,
    receiver: Receiver,
    audiences: int,
) -> dict[str, Any]:
    """One daemon sends the whole burst; returns the figures it saw."""
    store, url = mariadb_store
    config = await definitions(store, source, receiver, audiences)
    a = daemon(tmp_path, url, "fan-a")
    sampler = Sampler(*_databases(url, source), receiver)
    try:
        await a.ready()
        listing = await dry_run(a, config, audiences)
        assert receiver.hits == []  # the dry run sent nothing
        async with sampler.watching([a]):
            parent = await a.execute(config)
            done = await a.wait_status(parent, TERMINAL, timeout=240 + audiences * 0.1)
        assert done["status"] == "COMPLETED", done
        assert done["row_count"] == audiences
        found = await counts(a, parent)
    finally:
        await a.close()
    assert found == all_delivered(audiences)
    sent = check_sent(receiver, listing, audiences)
    assert sent["repeats_under_the_same_key"] == 0
    return {**sent, "daemons": sampler.check(audiences)}


async def kill_one_of_two(
    tmp_path: Path,
    mariadb_store: tuple[Store, str],
    source: Source,
    receiver: Receiver,
    audiences: int,
) -> dict[str, Any]:
    """Two daemons; the one running the parent is killed with SIGKILL a third of the way
    through the fan-out; the other recovers the parent and sends the rest."""
    import signal

    store, url = mariadb_store
    config = await definitions(store, source, receiver, audiences)
    a = daemon(tmp_path, url, "fan-a")
    b = daemon(tmp_path, url, "fan-b")
    sampler = Sampler(*_databases(url, source), receiver)
    limit = 240 + audiences * 0.1
    try:
        await asyncio.gather(a.ready(), b.ready())
        listing = await dry_run(b, config, audiences)
        async with sampler.watching([a, b]):
            parent = await a.execute(config)

            async def a_third_sent() -> bool:
                return len(receiver.hits) >= audiences // 3

            await until(a_third_sent, "a third of the deliveries", limit)
            a.process.signal(signal.SIGKILL)
            killed_at = len(receiver.hits)
            assert killed_at < audiences  # the kill came mid-fan-out

            async def parent_ended() -> bool:
                chain = await parent_chain(store, parent)
                return len(chain) > 1 and chain[-1].status in TERMINAL

            await until(parent_ended, "the recovered parent to end", limit)
        chain = await parent_chain(store, parent)
        found = await counts(b, chain[-1].id)
    finally:
        await asyncio.gather(a.close(), b.close())
    assert [r.status for r in chain] == ["FAILED", "COMPLETED"]  # lost, then recovered by b
    assert chain[-1].node_id == "fan-b" and chain[-1].row_count == audiences
    assert found == all_delivered(audiences)
    sent = check_sent(receiver, listing, audiences)
    # A repeat is a delivery in flight at the kill, sent again under its own key: at most one
    # per run a's pool held.
    assert sent["repeats_under_the_same_key"] <= POOL_SLOTS, sent
    return {**sent, "killed_at": killed_at, "daemons": sampler.check(audiences)}
