"""A notice is retried (issue 17): the SMTP server is down when a report fails, so its notice
is RETRYING in the ledger with the connection error; once the server is up the retry sends it,
once, on its second attempt."""

from __future__ import annotations

from pathlib import Path

from reporthubd.store.database import Store
from tests.deliverers import peers
from tests.notify.helpers import OWNER, add_failing_report, notice_rows, smtp_section, wait_for
from tests.reliability.conftest import Daemon

RULE = {"events": ["failed"], "notify": ["owners"]}


async def test_a_notice_waits_out_a_down_smtp_server(tmp_path: Path, rstore: Store) -> None:
    smtp = peers.SMTPServer(tmp_path / "smtp", mode="plain")  # not started yet
    config_id, _ = await add_failing_report(
        rstore, tmp_path / "data.db", notify={"owners": [OWNER], "rules": [RULE]}
    )
    daemon = Daemon(
        tmp_path,
        smtp=smtp_section(smtp),
        notifications={"poll_interval_seconds": 1.0, "retry_interval_seconds": 1.0},
    )
    try:
        await daemon.ready()
        run = await daemon.execute(config_id)
        assert (await daemon.wait_status(run))["status"] == "FAILED"
        retrying = await wait_for(
            lambda: _with_status(rstore, "RETRYING"), "the notice RETRYING", timeout=30
        )
        assert retrying.attempt == 1 and "connect" in (retrying.error_message or "").lower()
        smtp.start()
        try:
            sent = await wait_for(lambda: _with_status(rstore, "SENT"), "the notice SENT")
            assert sent.attempt >= 2 and sent.error_message is None, sent
            assert len(smtp.mailbox.messages) == 1
            assert f"Run: {run}" in smtp.mailbox.messages[0].content.decode()
        finally:
            smtp.stop()
    finally:
        await daemon.close()
    assert len(await notice_rows(rstore)) == 1


async def _with_status(store: Store, status: str) -> object | None:
    rows = await notice_rows(store)
    return next((row for row in rows if row.status == status), None)
