"""Conditional alerts with a real daemon (issue 17, item 2): four reports read one SQLite table
`events` that the test toggles between six manual runs (an error row of amount 100 present in
runs 2, 3 and 6; absent in 1, 4, 5). Each report delivers to its own aiohttp webhook receiver:

- `sum-when-true`: when_true, sum(amount) >= 100 evaluated while the rows stream;
- `error-transition`: on_transition, any row with status == 'error': sent when it turns true
  (runs 2 and 6), one "resolved" notice (through the notifier, to the same webhook) when it
  turns false (run 4);
- `content-change`: on_change, no condition: sent when the file differs from the previous
  delivered run's file_sha256 (runs 1, 2, 4, 6);
- `check-first`: when_true with a check_query (row_count > 0 over the error rows) run before the
  report: a run not sent never runs the report's query (no file);
- `change-refused`: on_change, its receiver refusing run 2's delivery for good (HTTP 400): run 3,
  with run 2's content, is sent again (the previous *delivered* file is run 1's).

Exactly those deliveries and notices arrive, and every run records its value and decision (a run
not sent is COMPLETED with its deliveries SKIPPED and the reason).
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from reporthubd.store import schema
from reporthubd.store.database import Store
from tests.deliverers import peers
from tests.engine.conftest import add_config, add_datasource
from tests.notify.helpers import wait_for
from tests.reliability.conftest import Daemon

QUERY = "SELECT status, amount FROM events ORDER BY status, amount"
ERROR_IN = [False, True, True, False, False, True]
ERROR = {"column": "status", "op": "==", "value": "error"}
REPORTS: dict[str, dict[str, Any]] = {
    "sum-when-true": {
        "mode": "when_true",
        "condition": {"aggregate": {"fn": "sum", "column": "amount", "op": ">=", "value": 100}},
    },
    "error-transition": {"mode": "on_transition", "condition": {"any_row": ERROR}},
    "content-change": {"mode": "on_change"},
    "check-first": {
        "mode": "when_true",
        "condition": {"row_count": {"op": ">", "value": 0}},
        "check_query": "SELECT status FROM events WHERE status = 'error'",
    },
}
EXPECTED = {
    "sum-when-true": ["skip", "deliver", "deliver", "skip", "skip", "deliver"],
    "error-transition": ["skip", "deliver", "skip", "resolved", "skip", "deliver"],
    "content-change": ["deliver", "deliver", "skip", "deliver", "skip", "deliver"],
    "check-first": ["skip", "deliver", "deliver", "skip", "skip", "deliver"],
}
VALUES = {
    "sum-when-true": ["10", "110", "110", "10", "10", "110"],
    "error-transition": ["False", "True", "True", "False", "False", "True"],
    "content-change": [None] * 6,
    "check-first": ["0", "1", "1", "0", "0", "1"],
}


def _set_data(path: Path, *, error: bool) -> None:
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS events (status TEXT, amount INTEGER)")
        conn.execute("DELETE FROM events")
        conn.execute("INSERT INTO events VALUES ('ok', 10)")
        if error:
            conn.execute("INSERT INTO events VALUES ('error', 100)")


async def _webhook(store: Store, config_id: int, url: str) -> int:
    async with store.engine.begin() as conn:
        inserted = await conn.execute(
            sa.insert(schema.deliveries).values(
                config_id=config_id,
                name=f"hook-{config_id}",
                method="webhook",
                delivery_config={"url": url},
                max_retry=0,
            )
        )
    return int(inserted.inserted_primary_key[0])


def _delivered(receiver: peers.WebhookReceiver) -> list[str]:
    """The execution ids of the report deliveries received (notices left out), in order."""
    return [
        hit.headers["Idempotency-Key"].split(":")[0]
        for hit in receiver.accepted
        if hit.headers.get("X-Reporthub-Event") == "report.delivered"
    ]


def _notices(receiver: peers.WebhookReceiver) -> list[dict[str, Any]]:
    return [
        hit.json["notice"]
        for hit in receiver.accepted
        if hit.headers.get("X-Reporthub-Event") == "report.notice"
    ]


async def test_six_runs_deliver_exactly_what_each_send_mode_says(
    tmp_path: Path, rstore: Store
) -> None:
    data = tmp_path / "data.db"
    _set_data(data, error=False)
    names = [*REPORTS, "change-refused"]
    receivers = {name: peers.WebhookReceiver() for name in names}
    receivers["change-refused"].answers = [(200, {}), (400, {})]
    for receiver in receivers.values():
        await receiver.start()
    daemon: Daemon | None = None
    try:
        source = await add_datasource(rstore, "sqlite", {"path": str(data)})
        configs: dict[str, int] = {}
        hooks: dict[str, int] = {}
        for name, alert in REPORTS.items():
            configs[name] = await add_config(rstore, source, QUERY, name=name, alert=alert)
            hooks[name] = await _webhook(rstore, configs[name], receivers[name].url)
        configs["change-refused"] = await add_config(
            rstore, source, QUERY, name="change-refused", alert={"mode": "on_change"}
        )
        await _webhook(rstore, configs["change-refused"], receivers["change-refused"].url)
        daemon = Daemon(tmp_path, notifications={"poll_interval_seconds": 1.0})
        await daemon.ready()
        runs: dict[str, list[dict[str, Any]]] = {name: [] for name in names}
        for error in ERROR_IN:
            _set_data(data, error=error)
            started = {name: await daemon.execute(configs[name]) for name in names}
            for name, run in started.items():
                runs[name].append(await daemon.wait_status(run))

        for name in REPORTS:
            got = [(r["status"], r["alert_decision"], r["alert_value"]) for r in runs[name]]
            want = [("COMPLETED", d, v) for d, v in zip(EXPECTED[name], VALUES[name], strict=True)]
            assert got == want, (name, [r["error_message"] for r in runs[name]])
            sent = [
                r["id"] for r, d in zip(runs[name], EXPECTED[name], strict=True) if d == "deliver"
            ]
            # Sent runs reached the receiver in order; nothing else did (no silent success:
            # a run not sent shows its delivery SKIPPED with the reason).
            await wait_for(lambda n=name, k=sent: len(_delivered(receivers[n])) >= len(k), name)
            assert _delivered(receivers[name]) == sent, name
            for run, decision in zip(runs[name], EXPECTED[name], strict=True):
                (ledger,) = run["deliveries"]
                statuses = [a["status"] for a in ledger["attempts"]]
                if decision == "deliver":
                    assert statuses == ["SUCCESS"], (name, run)
                    continue
                assert statuses == ["SKIPPED"], (name, run)
                reason = ledger["attempts"][0]["error"]
                assert reason and reason.startswith("not sent: ") and run["alert_reason"] in reason
        on_change = runs["content-change"]
        assert on_change[2]["file_sha256"] == on_change[1]["file_sha256"]
        assert on_change[3]["file_sha256"] != on_change[1]["file_sha256"]
        assert "same content as the previous delivered run" in on_change[4]["alert_reason"]
        refused = runs["change-refused"]
        assert [(r["status"], r["alert_decision"]) for r in refused] == [
            ("COMPLETED", "deliver"),
            ("FAILED", "deliver"),
            ("COMPLETED", "deliver"),
            ("COMPLETED", "deliver"),
            ("COMPLETED", "skip"),
            ("COMPLETED", "deliver"),
        ], refused
        assert refused[2]["file_sha256"] == refused[1]["file_sha256"], refused
        assert refused[2]["alert_reason"] == "on_change: the content changed", refused
        # The check query decided before the report ran: a run not sent has no file.
        assert [r["file_name"] is None for r in runs["check-first"]] == [
            d != "deliver" for d in EXPECTED["check-first"]
        ]

        # One "resolved" notice, for run 4 of the transition report, to its own webhook.
        transition = receivers["error-transition"]
        await wait_for(lambda: _notices(transition), "the resolved notice")
        resolved_run = runs["error-transition"][3]["id"]
        (notice,) = _notices(transition)
        assert notice["event"] == "resolved" and resolved_run in notice["text"], notice
        assert "turned false" in notice["text"], notice
        for name in ("sum-when-true", "content-change", "check-first"):
            assert _notices(receivers[name]) == [], name
        async with rstore.engine.connect() as conn:
            state = (
                await conn.execute(
                    sa.select(schema.alert_states).where(
                        schema.alert_states.c.config_id == configs["error-transition"]
                    )
                )
            ).one()
        assert state.last_truth is True
        assert state.delivered_execution_id == runs["error-transition"][5]["id"]
        status, answer = await daemon.request(
            "GET", f"/api/reports/{configs['error-transition']}/alert"
        )
        assert status == 200, answer
        shown = answer["data"]
        assert shown["mode"] == "on_transition" and shown["problem"] is None, shown
        assert shown["condition"] == "any row status == 'error'", shown
        assert shown["state"]["last_truth"] is True, shown
        assert shown["state"]["delivered_execution_id"] == state.delivered_execution_id, shown
        status, answer = await daemon.request("GET", "/api/reports/999999/alert")
        assert status == 404, answer

        # A condition over a column the result lacks, a stored alert the daemon refuses: FAILED,
        # naming the column and the key.
        missing = {"condition": {"any_row": {"column": "nope", "op": "==", "value": 1}}}
        broken = {"mode": "when_true", "condition": {"row_count": {"op": "~", "value": 1}}}
        for alert, says in (
            (missing, "condition column 'nope' is not in the result"),
            (broken, "alert.condition.row_count.op: unknown comparison '~'"),
        ):
            config = await add_config(rstore, source, QUERY, alert=alert)
            await _webhook(rstore, config, receivers["sum-when-true"].url)
            await daemon.request("POST", "/api/scheduler/reload")
            failed = await daemon.wait_status(await daemon.execute(config))
            assert failed["status"] == "FAILED" and says in failed["error_message"], failed
        assert len(_delivered(receivers["sum-when-true"])) == 3
    finally:
        if daemon is not None:
            await daemon.close()
        for receiver in receivers.values():
            await receiver.stop()
