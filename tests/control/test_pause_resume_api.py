"""Pause and resume through the API and the command line, on real daemons: two `reporthubd run`
processes sharing one MariaDB store fire a per-second schedule; it is paused through one node's
API (behind the token) and resumed through the other's. While paused its fires are recorded
SKIPPED "paused by ... since ...: ...", once each; after the resume it runs again, with no
catch-up of the pause; no fire is lost or doubled. The command line is tested on SQLite."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from reporthubd import cli
from reporthubd.config import StoreSettings
from reporthubd.store import migrate
from reporthubd.store.database import Store
from tests.daemon_process import DaemonProcess, call, write_config
from tests.scheduler.helpers import add_schedule, executions, seed_config
from tests.scheduler.nodes import mariadb_store

TOKEN = "pause-test-token-0123456789"


def _daemon(directory: Path, url: str, node_id: str, tokens: Path) -> tuple[DaemonProcess, int]:
    directory.mkdir(parents=True, exist_ok=True)
    config, port = write_config(
        directory,
        url,
        scheduler={"node_id": node_id, "reload_interval_seconds": 1.0},
        control={"token_file": str(tokens)},
        logging={"format": "json", "level": "WARNING"},
    )
    return DaemonProcess(config), port


async def _api(
    port: int, path: str, body: object | None = None, *, token: str | None = TOKEN
) -> tuple[int, dict[str, object]]:
    """GET without a body, POST with one."""
    method = "GET" if body is None else "POST"
    return await asyncio.to_thread(call, port, path, method=method, body=body, token=token)


async def _ready(daemon: DaemonProcess, port: int) -> None:
    for _ in range(300):
        assert daemon.proc.poll() is None, daemon.output()
        try:
            status, _ = await _api(port, "/api/scheduler/status")
        except OSError:
            status = 0
        if status == 200:
            return
        await asyncio.sleep(0.2)
    raise AssertionError(daemon.output())


def _at(value: object) -> datetime:
    return datetime.fromisoformat(str(value))


async def _wait_past(instant: datetime, seconds: float) -> None:
    """Until the wall clock is `seconds` past `instant` (fires are per second)."""
    left = (instant + timedelta(seconds=seconds) - datetime.now(UTC)).total_seconds()
    await asyncio.sleep(max(0.0, left))


async def test_pause_and_resume_through_the_api_of_two_nodes(tmp_path: Path) -> None:
    tokens = tmp_path / "tokens"
    tokens.write_text(TOKEN + "\n", encoding="utf-8")
    async with mariadb_store(tmp_path) as (store, url):
        config_id = await seed_config(store, path=str(tmp_path / "src.db"))
        schedule_id = await add_schedule(store, config_id, "* * * * * *", misfire_policy="run_all")
        (a, port_a), (b, port_b) = (
            _daemon(tmp_path / name, url, f"node-{name}", tokens) for name in ("a", "b")
        )
        try:
            await _ready(a, port_a)
            await _ready(b, port_b)
            await asyncio.sleep(2)
            pause = f"/api/schedules/{schedule_id}/pause"
            body = {"by": "ann", "reason": "warehouse maintenance"}
            status, answer = await _api(port_a, pause, body, token=None)
            assert status == 401, answer
            status, answer = await _api(port_a, "/api/schedules/999999/pause", body)
            assert (status, answer["error"]) == (
                404,
                "schedule_id: no schedule 999999 in report_schedules",
            )
            status, answer = await _api(port_a, pause, {"by": "ann"})
            assert status == 400 and str(answer["error"]).startswith("reason: required"), answer
            status, answer = await _api(port_a, pause, {"reason": "x", "who": "ann"})
            assert status == 400 and "who: unknown key" in str(answer["error"]), answer
            status, answer = await _api(port_a, f"/api/schedules/{schedule_id}/resume", {})
            assert status == 409 and "is not paused" in str(answer["error"]), answer

            status, answer = await _api(port_a, pause, body)
            assert status == 200, answer
            state = answer["data"]
            assert isinstance(state, dict) and state["paused_by"] == "ann"
            paused_at = _at(state["paused_at"])
            status, answer = await _api(port_b, pause, {"by": "bob", "reason": "again"})
            assert status == 409 and "already paused (by ann since" in str(answer["error"])
            # node b applies the pause on its next definitions poll; reloading it makes sure
            status, _ = await _api(port_b, "/api/scheduler/reload", {})
            assert status == 200
            b_knows = datetime.now(UTC)
            status, answer = await _api(port_a, "/api/scheduler/jobs")
            data = answer["data"]
            assert isinstance(data, dict)
            job = next(j for j in data["jobs"] if j["schedule_id"] == schedule_id)
            reason = f"paused by ann since {paused_at.isoformat().replace('+00:00', 'Z')}: "
            reason += "warehouse maintenance"
            assert job["paused"]["by"] == "ann" and job["paused"]["skip_reason"] == reason
            page = await asyncio.to_thread(_page, port_a)
            assert "paused by ann since" in page

            await _wait_past(b_knows, 4)
            status, answer = await _api(port_b, f"/api/schedules/{schedule_id}/resume", {})
            assert status == 200, answer
            resumed = answer["data"]
            assert isinstance(resumed, dict) and resumed["resumed_by"] == "api"
            assert resumed["paused"] is False
            status, _ = await _api(port_a, "/api/scheduler/reload", {})
            assert status == 200
            a_knows = datetime.now(UTC)
            await _wait_past(a_knows, 3)
        finally:
            for daemon in (a, b):
                daemon.stop()
        rows = [row for row in await executions(store, schedule_id) if row.attempt == 0]
        fires = [row.scheduled_for for row in rows]
        assert len(fires) == len(set(fires))  # nothing doubled (the unique key)
        seconds = [int(f.timestamp()) for f in fires]
        assert seconds == list(range(seconds[0], seconds[-1] + 1))  # nothing lost
        resumed_at = _at(resumed["resumed_at"])
        paused_rows = [row for row in rows if row.error_message == reason]
        assert {row.status for row in paused_rows} == {"SKIPPED"}
        for row in rows:
            fire = row.scheduled_for
            if b_knows < fire < resumed_at:  # both nodes knew: every fire is a paused skip
                assert row.error_message == reason, row
            if fire < paused_at or fire > a_knows:  # not paused: it ran, nothing was caught up
                assert row.status != "SKIPPED", row
        assert len(paused_rows) >= 3
        assert any(row.scheduled_for > a_knows for row in rows)


def _page(port: int) -> str:
    import urllib.request

    request = urllib.request.Request(f"http://127.0.0.1:{port}/")
    request.add_header("Authorization", f"Bearer {TOKEN}")
    with urllib.request.urlopen(request, timeout=10) as answer:
        return str(answer.read().decode())


def test_the_command_line_pauses_and_resumes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path / 'store.db'}"

    async def seed() -> int:
        store = Store(StoreSettings(url=url))
        await store.start()
        try:
            await migrate.upgrade(store)
            config_id = await seed_config(store, path=str(tmp_path / "src.db"))
            return await add_schedule(store, config_id, "0 9 * * *")
        finally:
            await store.stop()

    schedule_id = asyncio.run(seed())
    config, _ = write_config(tmp_path, url, logging={"format": "json", "level": "WARNING"})
    base = ["-c", str(config)]
    sid = str(schedule_id)
    assert cli.main(["pause", sid, "--reason", "quarter close", "--by", "ann", *base]) == 0
    assert f"schedule {schedule_id} paused by ann since " in capsys.readouterr().out
    assert cli.main(["pause", sid, "--reason", "again", *base]) == 1
    assert "already paused (by ann since" in capsys.readouterr().err
    assert cli.main(["pause", "999999", "--reason", "x", *base]) == 1
    assert "schedule_id: no schedule 999999" in capsys.readouterr().err
    assert cli.main(["pause", sid, "--reason", "  ", *base]) == 2
    assert "reason: required" in capsys.readouterr().err
    assert cli.main(["resume", sid, "--json", *base]) == 0
    state = json.loads(capsys.readouterr().out)
    assert state["paused"] is False and state["resumed_by"].count("@") == 1
    assert cli.main(["resume", sid, *base]) == 1
    assert "is not paused" in capsys.readouterr().err
