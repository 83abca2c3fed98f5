"""A deadline (issue 17, item 3, acceptance): a schedule fires once, its run sleeps 40 s on
PostgreSQL, and its deadline is "+20s". A real daemon sends one `late` notice through aiosmtpd
to the report's owner by the configured default rule (the report has no rules of its own),
naming the deadline and the run still RUNNING; reporthubd_late_runs counts the fire once; the
run then completes and nothing else is sent.

The PostgreSQL sleep and the wait on it take about 50 s: marked background."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from reporthubd.store.database import Store
from tests.deliverers import peers
from tests.engine.conftest import Source, add_config, add_datasource, add_schedule
from tests.notify.helpers import OWNER, notice_rows, smtp_section, texts, wait_for
from tests.reliability.conftest import Daemon

pytestmark = pytest.mark.background

RUN_SECONDS = 40
LEAD_SECONDS = 6


@pytest.fixture
def smtp(tmp_path: Path) -> Iterator[peers.SMTPServer]:
    server = peers.SMTPServer(tmp_path / "smtp", mode="plain")
    server.start()
    yield server
    server.stop()


async def test_one_late_notice_when_the_run_outlasts_its_deadline(
    tmp_path: Path, rstore: Store, smtp: peers.SMTPServer, pg_source: Source
) -> None:
    datasource_id = await add_datasource(rstore, pg_source.type, pg_source.config)
    config_id = await add_config(
        rstore,
        datasource_id,
        f"SELECT 1 AS n, pg_sleep({RUN_SECONDS}) AS s",
        name="slow-ledger",
        notify={"owners": [OWNER]},
    )
    fire = (datetime.now(UTC) + timedelta(seconds=LEAD_SECONDS + 3)).replace(microsecond=0)
    cron = f"{fire.second} {fire.minute} {fire.hour} {fire.day} {fire.month} *"
    schedule_id = await add_schedule(rstore, config_id, cron, timezone="UTC", deadline="+20s")
    daemon = Daemon(tmp_path, smtp=smtp_section(smtp), notifications={"poll_interval_seconds": 1.0})
    try:
        await daemon.ready()
        await wait_for(lambda: len(smtp.mailbox.messages) >= 1, "the late notice", timeout=90)
        subject, body = texts(smtp.mailbox)[0]
        assert "LATE" in subject and "slow-ledger" in subject, subject
        assert f"Fire: {fire.isoformat()}" in body, body
        assert "deadline +20s passed at" in body and "is RUNNING" in body, body
        assert smtp.mailbox.messages[0].rcpt_tos == [OWNER]

        rows = await notice_rows(rstore)
        assert [(r.event, r.incident_key) for r in rows] == [
            ("late", f"late:{schedule_id}:{fire.isoformat()}")
        ]
        run_id = rows[0].execution_id
        assert run_id and f"Run: {run_id}" in body, body
        done = await daemon.wait_status(run_id, timeout=RUN_SECONDS + 30)
        assert done["status"] == "COMPLETED", done
        status, metrics = 0, ""
        async with daemon.http.get(f"{daemon.base}/metrics") as response:
            status, metrics = response.status, await response.text()
        assert status == 200
        assert "reporthubd_late_runs_total 1.0" in metrics, metrics
        assert len(smtp.mailbox.messages) == 1, texts(smtp.mailbox)
        assert len(await notice_rows(rstore)) == 1
    finally:
        await daemon.close()
