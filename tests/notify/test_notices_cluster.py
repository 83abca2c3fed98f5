"""Exactly once across nodes (issue 17, acceptance): three real daemons share one MariaDB
store; a per-second report fails for 30 s, then its table is created. Its rule: `failed` and
`recovered` to the owner, by email through aiosmtpd.

The SMTP server holds the first notice's conversation at RCPT; the node sending it (the one
the ledger shows SENDING) is killed with SIGKILL there. Then:
- another node takes the notice over after its lease and sends it: one `failed` message;
- thirty failures on three nodes make one incident: no second `failed` notice;
- the first good run after the fix sends one `recovered` notice;
- the ledger holds exactly those two rows, SENT; the failed one on its second attempt, by a
  node other than the killed one.

Thirty seconds of failures and a lease to run out: marked background."""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from reporthubd.store import schema
from reporthubd.store.database import Store
from tests.deliverers import peers
from tests.notify.helpers import (
    OWNER,
    add_failing_report,
    fix_data,
    notice_rows,
    smtp_section,
    texts,
    wait_for,
)
from tests.reliability.conftest import Daemon
from tests.scheduler.nodes import mariadb_store

pytestmark = pytest.mark.background

FAILING_SECONDS = 30
LEASE_SECONDS = 5.0
NODES = ("notice-a", "notice-b", "notice-c")
RULE = {"events": ["failed", "recovered"], "notify": ["owners"]}


class HoldingMailbox(peers.Mailbox):
    """Holds the first conversation at RCPT until `release` (the sender is killed there)."""

    def __init__(self) -> None:
        super().__init__()
        self.held = False
        self.released = False

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: Any
    ) -> str:
        if not self.held:
            self.held = True
            while not self.released:
                await asyncio.sleep(0.05)
            return "451 4.3.0 held by the test"
        return await super().handle_RCPT(server, session, envelope, address, rcpt_options)


@pytest.fixture
async def shared_store(tmp_path: Path) -> AsyncIterator[tuple[Store, str]]:
    async with mariadb_store(tmp_path) as found:
        yield found


async def test_one_notice_per_incident_on_three_nodes_and_a_killed_sender(
    tmp_path: Path, shared_store: tuple[Store, str]
) -> None:
    store, url = shared_store
    mailbox = HoldingMailbox()
    smtp = peers.SMTPServer(tmp_path / "smtp", mode="plain")
    smtp.mailbox = mailbox
    smtp.controller.handler = mailbox
    smtp.start()
    data = tmp_path / "data.db"
    await add_failing_report(
        store, data, notify={"owners": [OWNER], "rules": [RULE]}, cron="* * * * * *"
    )
    started = time.monotonic()
    daemons: dict[str, Daemon] = {}
    try:
        for node in NODES:
            (tmp_path / node).mkdir()
            daemons[node] = Daemon(
                tmp_path / node,
                store_url=url,
                scheduler={
                    "node_id": node,
                    "heartbeat_interval_seconds": 2.0,
                    "node_lost_after_seconds": 8.0,
                },
                smtp=smtp_section(smtp),
                notifications={
                    "lease_seconds": LEASE_SECONDS,
                    "poll_interval_seconds": 1.0,
                    "retry_interval_seconds": 1.0,
                },
                logging={"format": "json", "level": "INFO"},
            )
        await asyncio.gather(*(daemon.ready() for daemon in daemons.values()))

        await wait_for(lambda: mailbox.held, "the first notice's conversation held at RCPT")
        holder = await wait_for(lambda: _sending(store), "the node sending the first notice")
        killed = daemons[holder]
        killed.process.proc.send_signal(signal.SIGKILL)
        await asyncio.to_thread(killed.process.proc.wait, 10)
        mailbox.released = True  # the dead node's conversation is gone; nothing was sent

        await wait_for(lambda: len(mailbox.messages) >= 1, "the failed notice, taken over")
        subject, body = texts(mailbox)[0]
        assert "FAILED" in subject and "no such table: sales" in body, body

        failures = await wait_for(
            lambda: _failures_after(store, started + FAILING_SECONDS),
            f"{FAILING_SECONDS} s of failures",
            timeout=FAILING_SECONDS + 60,
        )
        fix_data(data)
        await wait_for(lambda: len(mailbox.messages) >= 2, "the recovered notice")
        subject, _ = texts(mailbox)[1]
        assert "RECOVERED" in subject, subject

        rows = await wait_for(lambda: _all_sent(store), "every notice SENT")
        assert [row.event for row in rows] == ["failed", "recovered"], rows
        failed = rows[0]
        assert failed.attempt == 2 and failed.node_id != holder, failed
        assert len({row.incident_key for row in rows}) == 1
        assert failures >= FAILING_SECONDS // 2, failures
        # the survivors went on failing and recovering: still exactly two messages
        for daemon in daemons.values():
            if daemon is not killed:
                await daemon.close()
        assert len(mailbox.messages) == 2, texts(mailbox)
        assert len(await notice_rows(store)) == 2
    finally:
        mailbox.released = True
        for daemon in daemons.values():
            await daemon.close()
        smtp.stop()


async def _sending(store: Store) -> str | None:
    rows = await notice_rows(store)
    for row in rows:
        if row.status == "SENDING" and row.node_id:
            return str(row.node_id)
    return None


async def _failures_after(store: Store, until: float) -> int | None:
    """The count of FAILED runs once `until` (monotonic) has passed."""
    if time.monotonic() < until:
        return None
    e = schema.executions
    async with store.engine.connect() as conn:
        count = (
            await conn.execute(sa.select(sa.func.count()).where(e.c.status == "FAILED"))
        ).scalar()
    return int(count or 0)


async def _all_sent(store: Store) -> list[Any] | None:
    rows = await notice_rows(store)
    return rows if len(rows) >= 2 and all(row.status == "SENT" for row in rows) else None
