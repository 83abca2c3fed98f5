"""What the notice tests share: an aiosmtpd mailbox, a report on a SQLite datasource whose
query fails until its table is created, the notice ledger read back, and waiting on both."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from reporthubd.store import schema
from reporthubd.store.database import Store
from tests.deliverers import peers
from tests.engine.conftest import add_config, add_datasource, add_schedule

OWNER = "owner@example.com"
QUERY = "SELECT region, amount FROM sales ORDER BY region"


def smtp_section(server: peers.SMTPServer) -> dict[str, object]:
    return {"host": "127.0.0.1", "port": server.port, "tls": "none", "timeout_seconds": 10.0}


def fix_data(data: Path) -> None:
    """Create the table the report reads: its query succeeds from now on."""
    with sqlite3.connect(data) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS sales (region TEXT, amount INTEGER)")
        conn.execute("INSERT INTO sales VALUES ('north', 10)")


async def add_failing_report(
    store: Store,
    data: Path,
    *,
    notify: dict[str, Any],
    cron: str = "0 0 1 1 *",
    name: str = "sales-daily",
    query: str = QUERY,
    **schedule: Any,
) -> tuple[int, int]:
    """(config_id, schedule_id) of a report whose query fails: `data` has no table `sales`."""
    sqlite3.connect(data).close()
    datasource_id = await add_datasource(store, "sqlite", {"path": str(data)})
    config_id = await add_config(store, datasource_id, query, name=name, notify=notify)
    schedule_id = await add_schedule(store, config_id, cron, **schedule)
    return config_id, schedule_id


async def notice_rows(store: Store) -> list[Any]:
    n = schema.notices
    async with store.engine.connect() as conn:
        rows = (await conn.execute(sa.select(n).order_by(n.c.created_at, n.c.id))).all()
    return list(rows)


async def wait_for(
    predicate: Callable[[], Any], what: str, *, timeout: float = 60.0, interval: float = 0.05
) -> Any:
    """Poll `predicate` (sync or async) until it is truthy; the limit only ends a hung test."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        value = predicate()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(interval)


def texts(mailbox: peers.Mailbox) -> list[tuple[str, str]]:
    """(subject, plain text body) of each message received, in order."""
    found = []
    for received in mailbox.messages:
        message = received.message()
        body = message.get_body(preferencelist=("plain",))
        found.append((str(message["Subject"]), body.get_content() if body is not None else ""))
    return found
