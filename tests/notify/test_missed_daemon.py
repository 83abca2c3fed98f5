"""Missed fires after downtime (issue 17, acceptance): a daemon runs a report every 10 s
(misfire policy skip) and is stopped for 3 minutes. After the restart its catch-up records the
fires of the outage SKIPPED "missed: daemon down from ... to ...", and one `missed` notice goes
out through aiosmtpd naming that down window, however many fires it covers.

Three minutes of waiting: marked background. REPORTHUB_TEST_DOWN_SECONDS shortens the outage
for a quick look."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

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

DOWN_SECONDS = float(os.environ.get("REPORTHUB_TEST_DOWN_SECONDS", "180"))
pytestmark = [pytest.mark.background, pytest.mark.timeout(DOWN_SECONDS + 150)]
RULE = {"events": ["missed", "failed"], "notify": ["owners"]}


@pytest.fixture
def smtp(tmp_path: Path) -> Iterator[peers.SMTPServer]:
    server = peers.SMTPServer(tmp_path / "smtp", mode="plain")
    server.start()
    yield server
    server.stop()


async def test_one_missed_notice_naming_the_down_window(
    tmp_path: Path, rstore: Store, smtp: peers.SMTPServer
) -> None:
    data = tmp_path / "data.db"
    fix_data(data)
    _, schedule_id = await add_failing_report(
        rstore,
        data,
        notify={"owners": [OWNER], "rules": [RULE]},
        cron="*/10 * * * * *",
        misfire_policy="skip",
    )
    sections = {"smtp": smtp_section(smtp), "notifications": {"poll_interval_seconds": 1.0}}
    first = Daemon(tmp_path, **sections)
    try:
        await first.ready()
        await wait_for(lambda: _statuses(rstore, "COMPLETED"), "a fire completed", timeout=30)
    finally:
        first.process.signal(signal.SIGTERM)
        await asyncio.to_thread(first.process.wait, 30)
        await first.close()
    stopped = datetime.now(UTC)
    await asyncio.sleep(DOWN_SECONDS)
    second = Daemon(tmp_path, **sections)
    try:
        await second.ready()
        await wait_for(lambda: len(smtp.mailbox.messages) >= 1, "the missed notice")
        subject, body = texts(smtp.mailbox)[0]
        assert "MISSED" in subject, subject
        assert "Why: missed: daemon down from " in body, body
        skipped = await _statuses(rstore, "SKIPPED")
        assert len(skipped) >= DOWN_SECONDS // 10 - 1, skipped
        window = {reason.split(" (")[0] for reason in skipped}
        assert len(window) == 1 and next(iter(window)) in body, (window, body)
        started_from = body.split("daemon down from ")[1].split(" to ")[0]
        assert datetime.fromisoformat(started_from) <= stopped, (started_from, stopped)
        # the fires after the restart run on time; the outage stays one notice
        done = len(await _statuses(rstore, "COMPLETED"))
        await wait_for(
            lambda: _more(rstore, done), "a fire completed after the restart", timeout=30
        )
        rows = await notice_rows(rstore)
        assert [(row.event, row.schedule_id) for row in rows] == [("missed", schedule_id)]
        assert len(smtp.mailbox.messages) == 1, texts(smtp.mailbox)
    finally:
        await second.close()


async def _statuses(store: Store, status: str) -> list[str]:
    e = schema.executions
    async with store.engine.connect() as conn:
        rows = (
            await conn.execute(
                sa.select(e.c.error_message).where(e.c.status == status).order_by(e.c.created_at)
            )
        ).all()
    return [str(row.error_message or "") for row in rows]


async def _more(store: Store, count: int) -> bool:
    return len(await _statuses(store, "COMPLETED")) > count
