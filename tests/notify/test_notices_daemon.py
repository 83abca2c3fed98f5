"""Notices from a real daemon through a real SMTP server (issue 17, acceptance): a report whose
SQL fails, owned by owner@example.com, with the rule "failed and recovered to the owners,
suspend after 3". Through aiosmtpd:
- the first failure sends one notice carrying the error line and the run's id (and its link);
- the second failure sends none;
- the third pauses the schedule (the reason recorded and shown by the API) and a notice says so;
- after the fix and the resume, the first good run sends one `recovered` notice;
- every notice is SENT in the ledger, once, by the node that recorded it.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

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

RULE = {"events": ["failed", "recovered"], "notify": ["owners"], "suspend_after": 3}


@pytest.fixture
def smtp(tmp_path: Path) -> Iterator[peers.SMTPServer]:
    server = peers.SMTPServer(tmp_path / "smtp", mode="plain")
    server.start()
    yield server
    server.stop()


async def test_failure_once_suspension_and_recovery_by_email(
    tmp_path: Path, rstore: Store, smtp: peers.SMTPServer
) -> None:
    data = tmp_path / "data.db"
    config_id, schedule_id = await add_failing_report(
        rstore, data, notify={"owners": [OWNER], "rules": [RULE]}
    )
    daemon = Daemon(
        tmp_path,
        smtp=smtp_section(smtp),
        notifications={"poll_interval_seconds": 1.0},
    )
    try:
        await daemon.ready()
        trigger = f"/api/scheduler/trigger/{schedule_id}"

        async def run_once(expected: str) -> str:
            status, answer = await daemon.request("POST", trigger, json={})
            assert status == 202, answer
            execution_id = str(answer["data"]["execution_id"])
            done = await daemon.wait_status(execution_id)
            assert done["status"] == expected, done
            return execution_id

        first = await run_once("FAILED")
        await wait_for(lambda: len(smtp.mailbox.messages) >= 1, "the first failure's notice")
        subject, body = texts(smtp.mailbox)[0]
        assert smtp.mailbox.messages[0].rcpt_tos == [OWNER]
        assert "FAILED" in subject and "sales-daily" in subject, subject
        assert "no such table: sales" in body, body
        assert f"Run: {first}" in body, body
        assert f"/api/execution/{first}" in body, body

        await run_once("FAILED")
        third = await run_once("FAILED")
        # the third failure's notice says the schedule paused itself; the second sent none
        await wait_for(lambda: len(smtp.mailbox.messages) >= 2, "the suspension notice")
        subject, body = texts(smtp.mailbox)[1]
        assert "SUSPENDED" in subject, subject
        assert "3 consecutive failures" in body and f"Run: {third}" in body, body
        status, answer = await daemon.request("POST", "/api/scheduler/reload")
        assert status == 200, answer
        status, answer = await daemon.request("GET", "/api/scheduler/jobs")
        assert status == 200, answer
        jobs = {job["schedule_id"]: job for job in answer["data"]["jobs"]}
        paused = jobs[schedule_id]["paused"]
        assert paused and paused["by"] == "reporthubd", jobs[schedule_id]
        assert paused["reason"].startswith("suspended after 3 consecutive failures"), paused
        assert third in paused["reason"] and "no such table: sales" in paused["reason"], paused

        fix_data(data)
        status, answer = await daemon.request(
            "POST", f"/api/schedules/{schedule_id}/resume", json={"by": "ann"}
        )
        assert status == 200, answer
        good = await run_once("COMPLETED")
        await wait_for(lambda: len(smtp.mailbox.messages) >= 3, "the recovered notice")
        subject, body = texts(smtp.mailbox)[2]
        assert "RECOVERED" in subject, subject
        assert f"Run: {good}" in body and first in body, body

        rows = await wait_for(
            lambda: _all_sent(rstore), "every notice SENT in the ledger", timeout=30
        )
        assert [(row.event, row.sequence) for row in rows] == [
            ("failed", 0),
            ("suspended", 0),
            ("recovered", 0),
        ]
        assert {row.incident_key for row in rows} == {f"incident:{first}"}
        assert all(row.target == f"email:{OWNER}" and row.attempt == 1 for row in rows)
        assert len(smtp.mailbox.messages) == 3

        # the ledger and the rules through the API
        status, answer = await daemon.request("GET", f"/api/notices?execution_id={first}")
        assert status == 200, answer
        (listed,) = answer["data"]["notices"]
        assert listed["event"] == "failed" and listed["status"] == "SENT", listed
        assert listed["target"] == f"email:{OWNER}" and listed["sent_at"], listed
        status, answer = await daemon.request("GET", "/api/notices?status=LOST")
        assert status == 400 and "status: unknown status 'LOST'" in answer["error"], answer
        status, answer = await daemon.request("GET", "/api/notices?colour=red")
        assert status == 400 and answer["error"].startswith("colour: unknown"), answer
        status, answer = await daemon.request("GET", f"/api/reports/{config_id}/notify")
        assert status == 200, answer
        assert answer["data"]["uses_default_rule"] is False, answer
        (rule,) = answer["data"]["rules"]
        assert rule["targets"] == [f"email:{OWNER}"] and rule["suspend_after"] == 3, rule
    finally:
        await daemon.close()


async def _all_sent(store: Store) -> list[object] | None:
    rows = await notice_rows(store)
    return rows if rows and all(row.status == "SENT" for row in rows) else None
