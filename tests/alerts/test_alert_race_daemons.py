"""Runs of one on_transition report ending at once on two real daemons sharing a MariaDB or
PostgreSQL store (the alert state's compare-and-set, store/alerts.transition). Each round the
test sets the data (an error row present or not) and starts three manual runs on each daemon
at once; the six runs read the same data, so their truth is the same:

- the condition turned true: exactly one of the six is sent (one webhook delivery), the other
  five are recorded `skip` "still holds";
- it turned false: exactly one records `resolved`, and one "resolved" notice arrives;
- it stayed: none is sent.

Whatever order the runs end in, the recorded decisions are those of some serial order; before
the compare-and-set, runs that read the state together were each sent.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from reporthubd.config import StoreSettings
from reporthubd.store import migrate, schema
from reporthubd.store.database import Store
from tests import servers
from tests.deliverers import peers
from tests.engine.conftest import add_config, add_datasource
from tests.notify.helpers import notice_rows, wait_for
from tests.reliability.conftest import Daemon

ALERT = {
    "mode": "on_transition",
    "condition": {"any_row": {"column": "status", "op": "==", "value": "error"}},
}
QUERY = "SELECT status FROM events ORDER BY status"
RUNS_PER_NODE = 3
ROUNDS = [True, True, False, True]  # error present? turned true, stays, resolved, true again


def _set_data(path: Path, *, error: bool) -> None:
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS events (status TEXT)")
        conn.execute("DELETE FROM events")
        conn.execute("INSERT INTO events VALUES ('ok')")
        if error:
            conn.execute("INSERT INTO events VALUES ('error')")


@pytest.fixture(params=["mariadb", "postgresql"])
def shared_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    database = servers.create_database(str(request.param), tmp_path)
    yield database.url
    database.drop()


@pytest.fixture
async def shared(shared_url: str) -> AsyncIterator[Store]:
    store = Store(StoreSettings(url=shared_url))
    await store.start()
    await migrate.upgrade(store)
    yield store
    await store.stop()


async def _sent_notices(store: Store) -> list[Any] | None:
    rows = await notice_rows(store)
    return rows if rows and all(row.status == "SENT" for row in rows) else None


def _kinds(receiver: peers.WebhookReceiver) -> list[str]:
    return [hit.headers.get("X-Reporthub-Event", "") for hit in receiver.accepted]


async def test_simultaneous_runs_on_two_daemons_send_each_transition_once(
    tmp_path: Path, shared: Store, shared_url: str
) -> None:
    data = tmp_path / "data.db"
    _set_data(data, error=False)
    receiver = peers.WebhookReceiver()
    await receiver.start()
    daemons: list[Daemon] = []
    try:
        source = await add_datasource(shared, "sqlite", {"path": str(data)})
        config_id = await add_config(shared, source, QUERY, name="error-watch", alert=ALERT)
        async with shared.engine.begin() as conn:
            inserted = await conn.execute(
                sa.insert(schema.deliveries).values(
                    config_id=config_id,
                    name="hook",
                    method="webhook",
                    delivery_config={"url": receiver.url},
                    max_retry=0,
                )
            )
        hook = int(inserted.inserted_primary_key[0])
        for node in ("race-a", "race-b"):
            (tmp_path / node).mkdir()
            daemons.append(
                Daemon(
                    tmp_path / node,
                    store_url=shared_url,
                    scheduler={"node_id": node},
                    notifications={"poll_interval_seconds": 1.0, "default_rule": {}},
                )
            )
        await asyncio.gather(*(daemon.ready() for daemon in daemons))

        previous = False
        for n, error in enumerate(ROUNDS):
            _set_data(data, error=error)
            started = await asyncio.gather(
                *(d.execute(config_id) for d in daemons for _ in range(RUNS_PER_NODE))
            )
            runs: list[dict[str, Any]] = await asyncio.gather(
                *(daemons[i // RUNS_PER_NODE].wait_status(r) for i, r in enumerate(started))
            )
            assert {r["status"] for r in runs} == {"COMPLETED"}, runs
            decisions = sorted(r["alert_decision"] for r in runs)
            if error and not previous:
                want = ["deliver"] + ["skip"] * (len(runs) - 1)
            elif previous and not error:
                want = ["resolved"] + ["skip"] * (len(runs) - 1)
            else:
                want = ["skip"] * len(runs)
            assert decisions == sorted(want), (n, [(r["node_id"], r["alert_reason"]) for r in runs])
            assert {r["node_id"] for r in runs} == {"race-a", "race-b"}
            previous = error
        # One delivery per turn to true (rounds 1 and 4), one resolved notice (round 3).
        sent = await wait_for(lambda: _sent_notices(shared), "the resolved notice SENT")
        assert [(n.event, n.target) for n in sent] == [("resolved", f"delivery:{hook}")]
        assert sorted(_kinds(receiver)) == ["report.delivered", "report.delivered", "report.notice"]
    finally:
        for daemon in daemons:
            await daemon.close()
        await receiver.stop()
