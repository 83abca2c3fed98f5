"""`reporthubd demo`, tried as a new user would: a real subprocess on a fresh folder, its printed
curl command run as printed, Ctrl-C (SIGINT), then a second run on the same folder."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, TypeVar

import pytest

from reporthubd.demo import dataset
from reporthubd.demo import listen as demo_listen
from reporthubd.demo import reports as demo_reports
from tests import servers

T = TypeVar("T")
FILE_REPORTS = ("daily-orders", "regional-sales", "sales-summary", "orders-feed")
"""The reports whose start-up run always leaves a file."""
DEMO_REPORTS = (*FILE_REPORTS, "big-orders", "inventory-check")
NOTICE_CHANNEL = "on-call-notices"
DEFINITION_TABLES = (
    "report_datasources",
    "report_configs",
    "report_schedules",
    "report_deliveries",
    "report_delivery_recipients",
)
TERMINAL = {"COMPLETED", "PARTIAL", "FAILED", "TIMEOUT", "CANCELLED", "SKIPPED"}


def _wait_for(check: Callable[[], T | None], what: str, *, timeout: float = 90.0) -> T:
    """Poll `check` until it returns something; a hang guard, not a timing assertion."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"gave up waiting for {what}")


def _command() -> list[str]:
    script = Path(sys.executable).parent / "reporthubd"
    return [str(script)] if script.exists() else [sys.executable, "-m", "reporthubd"]


class Demo:
    """One `reporthubd demo` process; stdout and stderr go to files in the test's folder."""

    def __init__(
        self,
        folder: Path,
        port: int,
        run: int,
        *,
        cwd: Path | None = None,
        extra_env: dict[str, str] | None = None,
    ) -> None:
        self.out_path = folder.parent / f"demo-{run}.out"
        self.err_path = folder.parent / f"demo-{run}.err"
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith("REPORTHUBD_") and k != "NOTIFY_SOCKET"
        } | (extra_env or {})
        with self.out_path.open("wb") as out, self.err_path.open("wb") as err:
            self.proc = subprocess.Popen(
                [*_command(), "demo", "--dir", str(folder), "--listen", f"127.0.0.1:{port}"],
                stdout=out,
                stderr=err,
                env=env,
                cwd=cwd,
            )

    @property
    def stdout(self) -> str:
        return self.out_path.read_text(encoding="utf-8")

    def wait_ready(self) -> str:
        def banner() -> str | None:
            if self.proc.poll() is not None:
                raise AssertionError(
                    f"demo exited with {self.proc.returncode}:\n{self.stdout}\n"
                    + self.err_path.read_text(encoding="utf-8")[-4000:]
                )
            text = self.stdout
            return text if "curl -X POST" in text else None

        return _wait_for(banner, "the demo's banner")

    def interrupt(self) -> int:
        self.proc.send_signal(signal.SIGINT)
        return self.proc.wait(timeout=60)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)


@pytest.fixture
def demos(tmp_path: Path) -> Iterator[list[Demo]]:
    started: list[Demo] = []
    yield started
    for process in started:
        process.kill()


def _get(url: str) -> tuple[int, str]:
    with urllib.request.urlopen(url, timeout=30) as response:
        return response.status, response.read().decode("utf-8")


def _post(url: str, body: dict[str, Any]) -> dict[str, Any]:
    request = urllib.request.Request(
        url,
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=90) as response:
        answer: dict[str, Any] = json.loads(response.read())
        return answer


def _run_printed_curl(command: str) -> dict[str, Any]:
    """The printed command, run as printed (curl when installed, else the same request)."""
    argv = shlex.split(command)
    if shutil.which("curl"):
        result = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=True)
        answer: dict[str, Any] = json.loads(result.stdout)
        return answer
    url = next(arg for arg in argv if arg.startswith("http"))
    body = json.loads(argv[argv.index("-d") + 1]) if "-d" in argv else {}
    return _post(url, body)


def _report_files(reports: Path) -> list[Path]:
    return sorted(path for path in reports.rglob("*") if path.is_file())


def _counts(folder: Path) -> dict[str, int]:
    conn = sqlite3.connect(folder / "store.db")
    try:
        counts = {
            t: conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in DEFINITION_TABLES
        }
    finally:
        conn.close()
    sales = sqlite3.connect(folder / "sales.db")
    try:
        counts["orders"] = sales.execute("SELECT count(*) FROM orders").fetchone()[0]
        counts["customers"] = sales.execute("SELECT count(*) FROM customers").fetchone()[0]
    finally:
        sales.close()
    return counts


def _finished(base: str, execution_id: str) -> dict[str, Any] | None:
    _, text = _get(f"{base}/api/execution/{execution_id}")
    data: dict[str, Any] = json.loads(text)["data"]
    return data if data["status"] in TERMINAL else None


def _delivered(base: str, execution_id: str) -> Path | None:
    """The file the execution's file-share delivery wrote, once it has."""
    _, text = _get(f"{base}/api/execution/{execution_id}")
    for delivery in json.loads(text)["data"]["deliveries"]:
        for attempt in delivery["attempts"]:
            if attempt["status"] == "SUCCESS":
                return Path(attempt["target"])
    return None


def test_demo_end_to_end_as_a_new_user(tmp_path: Path, demos: list[Demo]) -> None:
    folder = tmp_path / "reporthubd-demo"
    reports = folder / "reports"
    port = servers.free_port()
    base = f"http://127.0.0.1:{port}"

    started_on = datetime.now(UTC).date()
    first = Demo(folder, port, 1)
    demos.append(first)
    banner = first.wait_ready()
    assert f"open:          {base}/" in banner
    assert f"console:       {base}/console" in banner
    assert str(reports) in banner
    assert "sample data: generated" in banner
    listed = re.findall(r"^    id (\d+)  (\S+) +(?:csv|excel|pdf|json) ", banner, re.MULTILINE)
    ids = {name: int(i) for i, name in listed}
    assert set(DEMO_REPORTS) <= set(ids), banner

    # Report files land in the reports folder: the start-up run of each report.
    def one_of_each() -> dict[str, Path] | None:
        found = {
            path.parent.name: path
            for path in _report_files(reports)
            if path.parent.name in FILE_REPORTS
        }
        return found if set(found) >= set(FILE_REPORTS) else None

    landed = _wait_for(one_of_each, "a first file of each demo report")
    magic = {
        "daily-orders": b"\xef\xbb\xbforder_id,",
        "regional-sales": b"PK\x03\x04",
        "sales-summary": b"%PDF",
        "orders-feed": b"[",
    }
    for name, path in landed.items():
        _wait_for(lambda path=path: path.stat().st_size > 0, f"{path} written")
        assert path.read_bytes().startswith(magic[name]), path

    # The printed console answers (its shell page; the views load through its own script).
    status, page = _get(f"{base}/console")
    assert status == 200 and "<script" in page, page[:500]

    # The status page shows the demo schedules.
    status, page = _get(f"{base}/")
    assert status == 200
    for name in FILE_REPORTS:
        assert name in page
    for zone in ("Europe/Berlin", "America/New_York", "Asia/Tokyo", "Australia/Sydney"):
        assert zone in page
    assert "All active definitions are valid." in page, page  # nothing refused
    _, jobs = _get(f"{base}/api/scheduler/jobs")
    assert len(json.loads(jobs)["data"]["jobs"]) == 8

    # The printed curl command triggers another run, whose file lands too (a new file, even
    # within the same second as the start-up run: the delivery never overwrites).
    before = set(_report_files(reports))
    curl = re.search(r"^\s*(curl -X POST \S+/api/execute/\d+)\s*$", banner, re.MULTILINE)
    assert curl is not None, banner
    answer = _run_printed_curl(curl.group(1))
    assert answer["status"] == "success", answer
    execution_id = answer["data"]["execution_id"]
    execution = _wait_for(lambda: _finished(base, execution_id), "the triggered run")
    assert execution["status"] == "COMPLETED", execution
    assert execution["row_count"] > 0
    triggered = _wait_for(lambda: _delivered(base, execution_id), "the triggered run's file")
    assert triggered.parent == reports / "daily-orders"
    assert triggered.is_file() and triggered not in before
    text = triggered.read_text(encoding="utf-8-sig")
    assert text.startswith("order_id,ordered_at_utc,customer,")
    assert not text.isascii(), "accented and CJK customer names"

    # The printed schedule trigger fires a schedule (trigger type manual, its parameters).
    fire = re.search(r"^\s*(curl -X POST \S+/api/scheduler/trigger/\d+)", banner, re.MULTILINE)
    assert fire is not None, banner
    answer = _run_printed_curl(fire.group(1))
    assert answer["status"] == "success", answer
    fired = _wait_for(lambda: _finished(base, answer["data"]["execution_id"]), "the fired run")
    assert fired["status"] == "COMPLETED", fired
    assert fired["schedule_id"] == answer["data"]["schedule_id"]

    # The printed pause and resume commands pause that schedule, with the reason, and resume it.
    for verb, paused in (("pause", True), ("resume", False)):
        printed = re.search(rf"^\s*(curl -X POST \S+/api/schedules/\d+/{verb}.*)$", banner, re.M)
        assert printed is not None, banner
        answer = _run_printed_curl(printed.group(1))
        assert (answer["status"], answer["data"]["paused"]) == ("success", paused), answer
    assert answer["data"]["resumed_by"] == "api"

    # A report run through the API with wait: the JSON feed holds objects.
    done = _post(f"{base}/api/execute/{ids['orders-feed']}", {"wait": 60})["data"]
    assert done["status"] == "COMPLETED", done
    delivered = reports / "orders-feed" / done["file_name"]
    _wait_for(delivered.is_file, f"{delivered}")
    feed = json.loads(delivered.read_text(encoding="utf-8"))
    assert isinstance(feed, list)
    if feed:  # the hour before the run; the sample data has about 30 orders an hour
        assert {"order_id", "customer", "amount"} <= set(feed[0])

    _notices_and_alerts_work(folder, base, banner, ids)

    counts = _counts(folder)
    assert counts["orders"] == dataset.ORDERS
    assert counts["report_configs"] == 7  # six reports and the notice channel
    assert counts["report_schedules"] == 8
    assert first.interrupt() == 0
    assert "reporthubd demo: stopped" in first.stdout

    # Running it again on the same folder: same definitions, same data, starts again.
    second = Demo(folder, port, 2)
    demos.append(second)
    banner = second.wait_ready()
    if datetime.now(UTC).date() == started_on:  # a new UTC day regenerates the dataset
        assert "sample data: reused" in banner
    assert "demo reports: no changes" in banner
    assert _get(f"{base}/healthz")[0] == 200
    assert _counts(folder) == counts
    assert second.interrupt() == 0


def _notice_files(folder: Path) -> dict[str, str]:
    return {
        path.name: path.read_text(encoding="utf-8")
        for path in sorted((folder / "reports" / "notices").glob("notice-*.txt"))
    }


def _notices_and_alerts_work(folder: Path, base: str, banner: str, ids: dict[str, int]) -> None:
    """What the banner says about notices and alerts, checked as a user would follow it."""
    notices_folder = folder / "reports" / "notices"
    assert "notices (who is told, once per incident):" in banner
    assert f"{notices_folder}/" in banner
    assert f"curl {base}/api/notices" in banner
    assert "a conditional alert (sent only when it matters):" in banner
    assert f"curl {base}/api/reports/{ids['big-orders']}/alert" in banner

    # inventory-check's start-up run (a fire of its schedule) failed: one `failed` notice, in
    # the on-call folder. Its scheduled fires (every two minutes) are the same incident.
    section = banner.split("notices (who is told, once per incident):")[1]
    trigger = re.search(r"^\s*(curl -X POST \S+/api/scheduler/trigger/(\d+))\s*$", section, re.M)
    assert trigger is not None, banner
    schedule_id = int(trigger.group(2))

    def failed_notice() -> dict[str, str] | None:
        found = {k: v for k, v in _notice_files(folder).items() if k.startswith("notice-failed")}
        return found or None

    (text,) = _wait_for(failed_notice, "the failed notice in reports/notices/").values()
    assert "FAILED: inventory-check" in text and "no such table: stock" in text, text
    _, ledger = _get(f"{base}/api/notices")
    (notice,) = [n for n in json.loads(ledger)["data"]["notices"] if n["event"] == "failed"]
    assert notice["status"] == "SENT" and notice["execution_id"] in text, notice
    assert notice["schedule_id"] == schedule_id, notice

    def fire_now() -> dict[str, Any]:
        answer = _run_printed_curl(trigger.group(1))
        assert answer["status"] == "success", answer
        execution_id = answer["data"]["execution_id"]
        return _wait_for(lambda: _finished(base, execution_id), "the fired inventory-check run")

    # A second failed run is the same incident: no second `failed` notice.
    again = fire_now()
    assert again["status"] == "FAILED", again
    # The fix the banner prints, then a fire: one `recovered` notice lands beside it.
    printed = re.search(r"^\s*sqlite3 (\S+) '(CREATE TABLE stock [^']+)'$", banner, re.MULTILINE)
    assert printed is not None, banner
    assert printed.group(1) == str(folder / "sales.db")
    sales = sqlite3.connect(printed.group(1))
    try:
        sales.execute(printed.group(2))
        sales.execute("INSERT INTO stock VALUES (1, 3)")
        sales.commit()
    finally:
        sales.close()
    fixed = fire_now()
    assert fixed["status"] == "COMPLETED", fixed

    def recovered() -> list[str] | None:
        found = [k for k in _notice_files(folder) if k.startswith("notice-recovered")]
        return found or None

    _wait_for(recovered, "the recovered notice in reports/notices/")
    names = sorted(_notice_files(folder))
    assert [n.split("-")[1] for n in names].count("failed") == 1, names
    assert [n.split("-")[1] for n in names].count("recovered") == 1, names
    assert (folder / "reports" / "inventory-check").is_dir()  # the fixed run's own file

    # big-orders: every run records its alert decision; a run not sent is recorded SKIPPED.
    run = _post(f"{base}/api/execute/{ids['big-orders']}", {"wait": 60})["data"]
    assert run["status"] == "COMPLETED", run
    _, text = _get(f"{base}/api/execution/{run['id']}")
    execution = json.loads(text)["data"]
    assert execution["alert_decision"] in {"deliver", "skip"}, execution
    assert execution["alert_reason"].startswith("on_transition: row_count > 0 "), execution
    assert execution["alert_value"] == str(execution["row_count"]), execution
    attempts = [a for d in execution["deliveries"] for a in d["attempts"]]
    if execution["alert_decision"] == "skip":
        assert [a["status"] for a in attempts] == ["SKIPPED"], attempts
    _, text = _get(f"{base}/api/reports/{ids['big-orders']}/alert")
    state = json.loads(text)["data"]["state"]  # the latest run's (a scheduled one may follow)
    assert state["last_execution_id"] is not None and state["last_truth"] in (True, False), state


def test_the_dataset_is_deterministic_and_reused(tmp_path: Path) -> None:
    day = date(2026, 3, 29)  # a DST change in Europe: the data is UTC, it does not care
    one, two = tmp_path / "one.db", tmp_path / "two.db"
    dataset.generate(one, last_day=day)
    dataset.generate(two, last_day=day)

    def rows(path: Path) -> list[tuple[Any, ...]]:
        conn = sqlite3.connect(path)
        try:
            return conn.execute(
                "SELECT o.*, c.name, c.region FROM orders o JOIN customers c USING (customer_id)"
                " ORDER BY order_id"
            ).fetchall()
        finally:
            conn.close()

    first = rows(one)
    assert first == rows(two)
    assert len(first) == dataset.ORDERS
    assert first[0][1] >= "2025-12-30 00:00:00"
    assert first[-1][1] <= "2026-03-29 23:59:59"
    assert {row[-1] for row in first} == {"Europe", "Americas", "Asia-Pacific"}
    assert any(not row[-2].isascii() for row in first)
    conn = sqlite3.connect(one)
    try:
        # Amounts are computed as exact decimals (cents); SQLite keeps NUMERIC as a double.
        assert conn.execute(
            "SELECT count(*) FROM orders WHERE abs(amount * 100 - round(amount * 100)) > 1e-6"
        ).fetchone() == (0,)
    finally:
        conn.close()

    before = one.stat().st_mtime_ns
    reused = dataset.ensure_dataset(one, today=day)
    assert not reused.generated and reused.orders == dataset.ORDERS
    assert one.stat().st_mtime_ns == before
    # The next day the same rows move one day on, so "yesterday" and "the last hour" hold orders.
    stale = dataset.ensure_dataset(one, today=date(2026, 3, 30))
    assert stale.generated and stale.last_day == date(2026, 3, 30)
    assert len(rows(one)) == dataset.ORDERS
    assert not list(tmp_path.glob(".*.tmp"))


def test_a_taken_default_port_is_replaced_by_a_free_one() -> None:
    host, port = "127.0.0.1", 8000
    holder = socket.socket()
    try:
        try:
            holder.bind((host, port))
            holder.listen()
        except OSError:
            pass  # something else holds it already: the same situation
        listen, note = demo_listen.choose_listen(None)
        assert listen.startswith("127.0.0.1:") and listen != "127.0.0.1:8000"
        assert note is not None and "8000 is taken" in note
        with pytest.raises(demo_listen.ListenError, match="is taken"):
            demo_listen.choose_listen("127.0.0.1:8000")  # an explicit address is never swapped
    finally:
        holder.close()
    assert demo_listen.choose_listen("127.0.0.1:9999") == ("127.0.0.1:9999", None)


def test_the_packaged_catalog_is_valid_with_absolute_paths(tmp_path: Path) -> None:
    parsed = demo_reports.demo_catalog(tmp_path)
    assert [r.name for r in parsed.reports] == [*DEMO_REPORTS, NOTICE_CHANNEL]
    assert {r.output_format.value for r in parsed.reports} == {"csv", "excel", "pdf", "json"}
    by_name = {r.name: r for r in parsed.reports}
    assert by_name["big-orders"].alert == {
        "mode": "on_transition",
        "condition": {"row_count": {"op": ">", "value": 0}},
    }
    assert by_name[NOTICE_CHANNEL].is_active and not by_name[NOTICE_CHANNEL].schedules
    # The rule's target is the channel's delivery row, by id once the row exists.
    assert by_name["inventory-check"].notify is None
    resolved = {r.name: r for r in demo_reports.demo_catalog(tmp_path, 42).reports}
    assert resolved["inventory-check"].notify == {
        "rules": [{"events": ["failed", "recovered"], "notify": ["delivery:42"]}]
    }
    assert parsed.datasources[0].connection_config["path"] == str(tmp_path / "sales.db")
    for report in parsed.reports:
        for delivery in report.deliveries:
            assert delivery.config["path"] == str(tmp_path / "reports")
    zones = {s.timezone for r in parsed.reports for s in r.schedules}
    assert len(zones) >= 4


def test_a_seed_deployment_around_the_demo_is_left_alone(tmp_path: Path, demos: list[Demo]) -> None:
    """A seed `.env` in the working directory and DB_* in the environment configure `run`, not
    the demo: it starts on its own SQLite store and says what it left alone."""
    here = tmp_path / "deployment"
    here.mkdir()
    (here / ".env").write_text(
        "DB_HOST=127.0.0.1\nDB_PORT=3306\nDB_USER=reporthub\nDB_PASSWORD=not-for-the-demo\n"
        "DB_NAME=report_hub\nEXECUTION_API_PORT=8000\n",
        encoding="utf-8",
    )
    folder = tmp_path / "demo"
    demo = Demo(folder, servers.free_port(), 1, cwd=here, extra_env={"DB_NAME": "elsewhere"})
    demos.append(demo)
    out = demo.wait_ready()
    assert f"leaving the seed's deployment settings alone ({here / '.env'}, DB_NAME)" in out
    assert (folder / "store.db").is_file()
    assert "not-for-the-demo" not in out + demo.err_path.read_text(encoding="utf-8")
    assert demo.interrupt() == 0
