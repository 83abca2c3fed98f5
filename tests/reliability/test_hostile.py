"""Hostile input against one real daemon: broken definition rows, a 10 MB query, every kind of
broken cron and zone, SQL injection through parameters, escaping file names and paths, a webhook
pointed at the control plane itself, and malformed control-plane requests. Each gets a clear
error (4xx in the envelope, or a FAILED run with a readable message); none gets a 5xx, the daemon
stays up, and a good report run alongside still completes."""

from __future__ import annotations

import asyncio
import sqlite3
import uuid
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from reporthubd.store import schema
from reporthubd.store.database import Store
from tests.engine.conftest import Source, add_config, add_datasource, add_schedule
from tests.reliability.conftest import STORE_BACKEND, Daemon

BROKEN_CRONS = [
    "",
    "   ",
    "* * *",
    "* * * * * * * *",
    "61 * * * *",
    "* 25 * * *",
    "* * 32 * *",
    "* * * 13 *",
    "* * * * 8",
    "*/0 * * * *",
    "5-1 * * * *",
    "1,,2 * * * *",
    "a b c d e",
    "@reboot",
    "@never",
    "-1 * * * *",
    "1-2-3 * * * *",
    "0 0 31 2 *",  # valid fields, never fires (February 31st)
    "0 0 30 2 *",
    ",".join(str(i % 60) for i in range(5000)) + " * * * *",
    "* * * * *\n* * * * *",
    "* * * * * ; DROP TABLE report_schedules",
    "\x00 * * * *",
    "٣ * * * *",
]
# Accepted on purpose: a wrapping range (5-1 = 5..59 and 0..1, as croniter reads it) and a long
# but valid list. February 30th/31st parse but never fire: disabled with that reason.
ACCEPTED_CRONS = {
    "5-1 * * * *",
    ",".join(str(i % 60) for i in range(5000)) + " * * * *",
}
BROKEN_ZONES = ["Mars/Olympus_Mons", "UTC+25", "../../etc/passwd", "/etc/localtime", "\x00", " "]


def good_data(tmp_path: Path) -> Path:
    path = tmp_path / "good.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE t (id INTEGER, label TEXT)")
        conn.executemany("INSERT INTO t VALUES (?, ?)", [(i, f"row {i}") for i in range(100)])
    conn.close()
    return path


async def raw(store: Store, sql: str, **params: Any) -> None:
    async with store.engine.begin() as conn:
        await conn.execute(sa.text(sql), params)


SQLITE_ONLY = pytest.mark.skipif(
    STORE_BACKEND != "sqlite",
    reason="writes malformed JSON into JSON columns, which MariaDB and PostgreSQL refuse",
)


@SQLITE_ONLY
async def test_hostile_definitions_and_requests_get_clear_errors(
    tmp_path: Path, rstore: Store, pg_source: Source
) -> None:
    data = good_data(tmp_path)
    good_ds = await add_datasource(rstore, "sqlite", {"path": str(data)})
    good = await add_config(rstore, good_ds, "SELECT id, label FROM t")
    good_schedule = await add_schedule(rstore, good, "*/5 * * * *", timezone="Europe/Berlin")

    # Broken rows.
    bad_type = await add_datasource(rstore, "sqlite", {"path": str(data)})
    await raw(rstore, "UPDATE report_datasources SET type = 'oracle9000' WHERE id = :i", i=bad_type)
    on_bad_type = await add_config(rstore, bad_type, "SELECT 1")
    bad_json = await add_config(rstore, good_ds, "SELECT 1")
    await raw(
        rstore, "UPDATE report_configs SET format_options = '{not json' WHERE id = :i", i=bad_json
    )
    bad_params_json = await add_config(rstore, good_ds, "SELECT 1")
    await raw(
        rstore, "UPDATE report_configs SET parameters = '[1, 2' WHERE id = :i", i=bad_params_json
    )
    bad_ds_json = await add_datasource(rstore, "sqlite", {"path": str(data)})
    await raw(
        rstore,
        "UPDATE report_datasources SET connection_config = 'nope' WHERE id = :i",
        i=bad_ds_json,
    )
    on_bad_ds_json = await add_config(rstore, bad_ds_json, "SELECT 1")
    bad_format = await add_config(rstore, good_ds, "SELECT 1", output_format="docx")
    huge_query = await add_config(
        rstore, good_ds, "SELECT id FROM t /* " + "x" * (10 * 1024 * 1024) + " */"
    )
    huge_broken = await add_config(rstore, good_ds, "SELECT " + "1 +" * (3 * 1024 * 1024))
    bad_schedules = [await add_schedule(rstore, good, cron) for cron in BROKEN_CRONS]
    bad_zone_schedules = [
        await add_schedule(rstore, good, "* * * * *", timezone=zone) for zone in BROKEN_ZONES
    ]

    # SQL injection through a parameter, on PostgreSQL.
    await pg_source.execute("CREATE TABLE victims (id int)", "INSERT INTO victims VALUES (1)")
    pg = await add_datasource(rstore, "postgresql", pg_source.config)
    injected = await add_config(
        rstore, pg, "SELECT :name AS name, (SELECT count(*) FROM victims) AS n"
    )
    injection = "'; DROP TABLE victims; --"

    # File names that try to escape the workspace.
    escapes = {
        "../../../../tmp/escaped-{execution_id}": None,
        "/etc/cron.d/evil": None,
        "a\x00b\nc\rd\x1be": None,
        "..": None,
        "{{ '../' * 20 }}etc/passwd": None,
        "x" * 5000: None,
        "{now:%Y/%m/../../%d}": None,
        "{{ ''.__class__.__mro__[1].__subclasses__() }}": None,
        "{{ cycler.__init__.__globals__.os.popen('touch /tmp/rh-pwned').read() }}": None,
        "{{ range(10**9) | list }}": None,
    }
    for template in escapes:
        escapes[template] = await add_config(
            rstore, good_ds, "SELECT id FROM t", file_name_template=template
        )

    # A file share whose sub_path tries to leave the base.
    share = tmp_path / "share"
    share.mkdir()
    share_report = await add_config(rstore, good_ds, "SELECT id FROM t")
    async with rstore.engine.begin() as conn:
        for sub in ["../outside", "/tmp/abs-outside", "{{ '..' }}/x", "a/../../b"]:
            await conn.execute(
                sa.insert(schema.deliveries).values(
                    config_id=share_report,
                    name=f"escape {sub}",
                    method="file_share",
                    delivery_config={"path": str(share), "sub_path": sub},
                    max_retry=0,
                )
            )

    daemon = Daemon(tmp_path, control={"max_body_bytes": 65536})
    try:
        await daemon.ready()
        # A webhook that points at this daemon's own control plane: executing the same report.
        loop_report = await add_config(rstore, good_ds, "SELECT id FROM t")
        async with rstore.engine.begin() as conn:
            await conn.execute(
                sa.insert(schema.deliveries).values(
                    config_id=loop_report,
                    name="self",
                    method="webhook",
                    delivery_config={
                        "url": f"http://127.0.0.1:{daemon.port}/api/execute/{loop_report}"
                    },
                    max_retry=0,
                )
            )
        good_before = await daemon.execute(good)
        results: dict[str, dict[str, Any]] = {}
        for label, config_id in [
            ("bad type", on_bad_type),
            ("bad format json", bad_json),
            ("bad parameters json", bad_params_json),
            ("bad connection json", on_bad_ds_json),
            ("bad format", bad_format),
            ("10 MB query", huge_query),
            ("10 MB broken query", huge_broken),
        ]:
            results[label] = await daemon.wait_status(await daemon.execute(config_id))
        for label, data in results.items():
            message = data["error_message"] or ""
            if label == "10 MB query":
                assert data["status"] == "COMPLETED", data
                continue
            assert data["status"] == "FAILED", (label, data)
            assert message and "Traceback" not in message, (label, message)
            assert len(message) < 4000, (label, len(message))

        # Deliveries of an unknown method and with malformed JSON: recorded failures.
        bad_delivery_report = await add_config(rstore, good_ds, "SELECT id FROM t")
        async with rstore.engine.begin() as conn:
            for method in ("carrier_pigeon", "webhook"):
                await conn.execute(
                    sa.insert(schema.deliveries).values(
                        config_id=bad_delivery_report,
                        name=f"broken {method}",
                        method=method,
                        delivery_config={"url": "http://127.0.0.1:9/"},
                        max_retry=0,
                    )
                )
        await raw(
            rstore,
            "UPDATE report_deliveries SET delivery_config = '{bad' WHERE method = 'webhook' "
            "AND config_id = :i",
            i=bad_delivery_report,
        )
        broken = await daemon.wait_status(await daemon.execute(bad_delivery_report))
        # Both rows are left out as invalid; the run says so instead of COMPLETED.
        assert broken["status"] == "FAILED", broken
        assert "2 invalid delivery or recipient row(s) left out" in broken["error_message"], broken

        # Injection arrives as a value.
        ran = await daemon.wait_status(
            await daemon.execute(injected, parameters={"name": injection})
        )
        assert ran["status"] == "COMPLETED", ran
        assert await pg_source.fetch("SELECT count(*) FROM victims") == [(1,)]
        async with daemon.http.get(f"{daemon.base}/api/execution/{ran['id']}/file") as r:
            assert r.status == 200
            body = await r.text()
        assert "'; DROP TABLE victims; --" in body, body

        # Parameters of hostile types and sizes: a clear FAILED or a value, never a crash.
        pg_huge_broken = await add_config(rstore, pg, "SELECT " + "1 +" * (3 * 1024 * 1024))
        hostile_values: list[Any] = [
            {"a": [1, {"b": None}]},
            [1, 2, 3],
            10**100,
            -(2**63) - 1,
            1e308,
            "x" * 50_000,
            "\x00nul",
            "\udcff",
            True,
        ]
        for value in hostile_values:
            code, answer = await daemon.request(
                "POST", f"/api/execute/{injected}", json={"parameters": {"name": value}}
            )
            if code == 400:
                assert answer["status"] == "error" and answer["error"], answer
                continue
            assert code == 202, answer
            data = await daemon.wait_status(answer["data"]["execution_id"])
            assert data["status"] in {"COMPLETED", "FAILED"}, (repr(value)[:80], data)
            if data["status"] == "FAILED":
                message = data["error_message"] or ""
                assert message and "Traceback" not in message, (repr(value)[:80], message)
                assert not message.startswith("internal error"), (repr(value)[:80], message)
                assert len(message) < 4000, (repr(value)[:80], len(message))
        data = await daemon.wait_status(await daemon.execute(pg_huge_broken))
        assert data["status"] == "FAILED", data
        assert len(data["error_message"] or "") < 4000, len(data["error_message"] or "")
        assert await pg_source.fetch("SELECT count(*) FROM victims") == [(1,)]

        # Escaping file names stay inside the execution's directory.
        for template, config_id in escapes.items():
            data = await daemon.wait_status(await daemon.execute(config_id))
            if data["status"] == "COMPLETED":
                path = Path(data["file_path"]).resolve()
                assert path.is_relative_to((daemon.workspace / data["id"]).resolve()), (
                    template,
                    path,
                )
                name = data["file_name"]
                assert "/" not in name and "\x00" not in name and "\n" not in name, name
                assert name not in {".", ".."} and len(name.encode()) <= 255, name
            else:
                assert data["status"] == "FAILED" and data["error_message"], (template, data)
        assert not list(Path("/tmp").glob("escaped-*"))
        assert not Path("/tmp/rh-pwned").exists()

        # A parameter default that tries to leave the template sandbox.
        sandboxed = await add_config(
            rstore,
            good_ds,
            "SELECT :x AS x",
            parameters={
                "x": "{{ self.__init__.__globals__.__builtins__.open('/etc/passwd').read() }}"
            },
        )
        data = await daemon.wait_status(await daemon.execute(sandboxed))
        assert data["status"] == "FAILED", data
        assert "root:" not in (data["error_message"] or ""), data

        # Sub paths that escape the share are refused, nothing written outside it.
        shared = await daemon.wait_status(await daemon.execute(share_report))
        # Every delivery failing fails the run, with the count (the file itself was produced).
        assert shared["status"] == "FAILED", shared
        assert "4 of 4 deliveries failed" in shared["error_message"], shared
        logs: list[Any] = []
        for _ in range(300):
            async with rstore.engine.connect() as conn:
                logs = list(
                    await conn.execute(
                        sa.select(schema.delivery_logs).where(
                            schema.delivery_logs.c.execution_id == shared["id"]
                        )
                    )
                )
            if len(logs) == 4 and all(row.status == "FAILED" for row in logs):
                break
            await asyncio.sleep(0.1)
        assert sorted(row.status for row in logs) == ["FAILED"] * 4, [
            (row.status, row.error_message) for row in logs
        ]
        assert not (tmp_path / "outside").exists() and not Path("/tmp/abs-outside").exists()
        assert list(share.rglob("*")) == []

        # The self-pointing webhook: a clear failure, no loop of executions.
        looped = await daemon.wait_status(await daemon.execute(loop_report))
        assert looped["status"] in {"COMPLETED", "FAILED"}, looped
        for _ in range(300):
            async with rstore.engine.connect() as conn:
                hook = list(
                    await conn.execute(
                        sa.select(schema.delivery_logs).where(
                            schema.delivery_logs.c.execution_id == looped["id"]
                        )
                    )
                )
            if hook and hook[-1].status in {"FAILED", "SUCCESS"}:
                break
            await asyncio.sleep(0.1)
        await asyncio.sleep(1)
        async with rstore.engine.connect() as conn:
            runs = (
                await conn.execute(
                    sa.select(sa.func.count()).where(schema.executions.c.config_id == loop_report)
                )
            ).scalar_one()
        assert runs == 1, f"the webhook to the control plane started {runs - 1} more runs"
        assert hook[-1].status == "FAILED" and "loop" in (hook[-1].error_message or ""), hook

        # Broken schedules: the scheduler reports them, the good one is planned, none crashes it.
        status, state = await daemon.request("GET", "/api/scheduler/status")
        assert status == 200, state
        disabled = {
            entry["schedule_id"]: entry["reason"] for entry in state["data"]["schedules_disabled"]
        }
        for cron, schedule_id in zip(BROKEN_CRONS, bad_schedules, strict=True):
            if cron in ACCEPTED_CRONS:
                assert schedule_id not in disabled, (cron, disabled[schedule_id])
                continue
            assert disabled.get(schedule_id, "").startswith("cron_expression: "), (cron, disabled)
        for zone, schedule_id in zip(BROKEN_ZONES, bad_zone_schedules, strict=True):
            assert disabled.get(schedule_id, "").startswith("timezone: "), (zone, disabled)
        status, jobs = await daemon.request("GET", "/api/scheduler/jobs")
        assert status == 200, jobs
        text = str(jobs["data"])
        assert str(good_schedule) in text
        for schedule_id in bad_schedules + bad_zone_schedules:
            code, answer = await daemon.request("POST", f"/api/scheduler/trigger/{schedule_id}")
            assert code < 500, (schedule_id, answer)
            code, answer = await daemon.request("GET", f"/api/schedules/{schedule_id}/next")
            assert code < 500 and answer["status"] in {"success", "error"}, (schedule_id, answer)
        code, answer = await daemon.request("GET", f"/api/schedules/{good_schedule}/next")
        assert code == 200, answer
        code, answer = await daemon.request("POST", "/api/scheduler/reload")
        assert code < 500, answer

        await control_plane_abuse(daemon, good)

        # The good report, run before and after all this, completed.
        assert (await daemon.wait_status(good_before))["status"] == "COMPLETED"
        good_after = await daemon.wait_status(await daemon.execute(good))
        assert good_after["status"] == "COMPLETED" and good_after["row_count"] == 100
        code, _ = await daemon.request("GET", "/healthz")
        assert code == 200
        assert daemon.process.proc.poll() is None
    finally:
        output = daemon.process.output()
        await daemon.close()
    assert "Traceback" not in output or "Unhandled" not in output, output[-4000:]


async def control_plane_abuse(daemon: Daemon, good: int) -> None:
    huge = b'{"parameters": {"x": "' + b"y" * 200_000 + b'"}}'
    long_id = "9" * 4000
    cases: list[tuple[str, str, Any, set[int]]] = [
        ("POST", f"/api/execute/{good}", huge, {413}),
        ("POST", f"/api/execute/{good}", b"{not json", {400}),
        ("POST", f"/api/execute/{good}", b"[1, 2]", {400}),
        ("POST", f"/api/execute/{good}", b"null", {400}),
        ("POST", f"/api/execute/{good}", b'"text"', {400}),
        ("POST", f"/api/execute/{good}", b'{"parameters": [1]}', {400}),
        ("POST", f"/api/execute/{good}", b'{"parameters": {"a": {"b": [1e308]}}}', {202, 400}),
        ("POST", f"/api/execute/{good}", b'{"deliver": "yes"}', {400}),
        ("POST", f"/api/execute/{good}", b'{"wait": "soon"}', {400}),
        ("POST", f"/api/execute/{good}", b'{"wait": -1}', {400}),
        ("POST", f"/api/execute/{good}", b'{"wait": 1e309}', {400}),
        ("POST", f"/api/execute/{good}", b'{"scheduled_for": "yesterday"}', {400}),
        ("POST", f"/api/execute/{good}", b'{"scheduled_for": "2024-01-01T00:00:00"}', {400}),
        ("POST", f"/api/execute/{good}", b'{"scheduled_for": 12}', {400}),
        ("POST", f"/api/execute/{good}", b"\xff\xfe\x00garbage", {400}),
        ("POST", "/api/execute/999999", None, {404}),
        ("POST", "/api/execute/0", None, {400, 404}),
        ("POST", "/api/execute/-1", None, {400, 404}),
        ("POST", "/api/execute/1e3", None, {400, 404}),
        ("POST", "/api/execute/%C2%B2", None, {400, 404}),
        ("POST", "/api/execute/%D9%A3", None, {400, 404}),
        ("POST", "/api/execute/99999999999999999999999999", None, {400, 404}),
        ("POST", f"/api/execute/{long_id}", None, {400, 404, 414}),
        ("GET", f"/api/execution/{uuid.uuid4()}", None, {404}),
        ("GET", "/api/execution/not-a-uuid", None, {400, 404}),
        ("GET", f"/api/execution/{'a' * 4000}", None, {400, 404, 414}),
        ("GET", "/api/execution/..%2F..%2Fetc%2Fpasswd/file", None, {400, 404}),
        ("GET", "/api/execution/%2e%2e/file", None, {400, 404}),
        ("GET", "/api/execution/..%252F..%252Fetc%252Fpasswd/file", None, {400, 404}),
        ("GET", f"/api/execution/{uuid.uuid4()}/file", None, {404}),
        ("GET", "/api/execution/%00/file", None, {400, 404}),
        ("POST", f"/api/execution/{uuid.uuid4()}/cancel", None, {404, 409}),
        ("POST", f"/api/execution/{uuid.uuid4()}/cancel", b'{"reason": 5}', {400, 404, 409}),
        ("POST", f"/api/execution/{uuid.uuid4()}/redeliver", None, {404}),
        ("POST", "/api/test-datasource/999999", None, {404}),
        ("POST", "/api/test-delivery/999999", None, {404}),
        ("POST", "/api/scheduler/trigger/999999", None, {404}),
        ("POST", "/api/scheduler/trigger/abc", None, {400, 404}),
        ("POST", "/api/scheduler/trigger/1", b'{"parameters": "x"}', {400}),
        ("GET", "/api/schedules/999999/next", None, {404}),
        ("GET", "/api/schedules/1/next?n=-5", None, {400}),
        ("GET", "/api/schedules/1/next?n=100000000", None, {200, 400}),
        ("GET", "/api/schedules/1/next?n=abc", None, {400}),
        ("GET", "/api/executions?limit=abc", None, {400}),
        ("GET", "/api/executions?limit=-1", None, {400}),
        ("GET", "/api/executions?limit=100000000000000000000", None, {200, 400}),
        ("GET", "/api/executions?status=BOGUS", None, {400}),
        ("GET", "/api/executions?since=notadate", None, {400}),
        ("GET", "/api/executions?config_id=%27%3B%20DROP%20TABLE%20x", None, {400}),
        ("GET", "/api/schedules/1/next?n=%C2%B2", None, {400}),
        ("GET", "/api/executions?limit=%C2%B2", None, {400}),
        ("GET", "/api/nowhere", None, {404}),
        ("DELETE", f"/api/execute/{good}", None, {405}),
        ("GET", "/api/../../etc/passwd", None, {404}),
    ]
    failures = []
    for method, path, body, expected in cases:
        async with daemon.http.request(method, f"{daemon.base}{path}", data=body) as response:
            text = await response.text()
            status = response.status
        try:
            import json

            envelope = json.loads(text)
        except ValueError:
            envelope = None
        ok = (
            status in expected
            and isinstance(envelope, dict)
            and (status < 400 or (envelope.get("status") == "error" and envelope.get("error")))
        )
        if not ok:
            failures.append((method, path[:80], status, text[:200]))
    assert failures == [], failures
    # Beyond aiohttp's parser limits (8190-byte request line or header, 100+ headers) the HTTP
    # parser refuses the request before the application sees it: still a 400 in the envelope,
    # saying what was too long, and the daemon carries on.
    for path, headers, says in [
        ("/api/execution/" + "a" * 10_000, {}, "Got more than 8190 bytes when reading"),
        ("/healthz", {"X-Big": "b" * 20_000}, "Got more than 8190 bytes"),
        ("/healthz", {f"X-H{i}": "v" for i in range(200)}, "Too many headers"),
    ]:
        async with daemon.http.get(f"{daemon.base}{path}", headers=headers) as response:
            answer = await response.json(content_type=None)
            assert response.status == 400, (path[:40], response.status)
        assert answer["status"] == "error" and answer["message"] == "Bad Request", answer
        assert says in answer["error"] and "aaaa" not in answer["error"], answer
    assert daemon.process.proc.poll() is None


async def test_a_schedule_that_can_never_fire_is_disabled_with_a_reason(
    tmp_path: Path, rstore: Store
) -> None:
    ds = await add_datasource(rstore, "sqlite", {"path": str(good_data(tmp_path))})
    report = await add_config(rstore, ds, "SELECT id FROM t")
    never = await add_schedule(rstore, report, "0 0 31 2 *")
    daemon = Daemon(tmp_path)
    try:
        await daemon.ready()
        status, state = await daemon.request("GET", "/api/scheduler/status")
    finally:
        await daemon.close()
    assert status == 200, state
    disabled = {e["schedule_id"]: e["reason"] for e in state["data"]["schedules_disabled"]}
    assert "never" in disabled.get(never, ""), disabled


def test_a_hostile_retry_after_header_is_bounded_or_ignored() -> None:
    from datetime import timedelta

    from reporthubd.deliverers.webhook import retry_after

    assert retry_after("120") == timedelta(seconds=120)
    assert retry_after("\u00b2") is None  # a superscript two: isdigit() but not a number
    assert retry_after("\u0663") is None  # an Arabic-Indic three
    huge = retry_after("9" * 40)
    assert huge is not None and timedelta(days=365) < huge < timedelta(days=365 * 100)
    for value in ["Fri, 31 Dec 99999 23:59:59 GMT", "Mon, 00 Jan 0000 00:00:00 GMT", "-5", "1e9"]:
        after = retry_after(value)
        assert after is None or after >= timedelta(0), (value, after)


@SQLITE_ONLY
async def test_hostile_execution_rows_written_by_another_service(
    tmp_path: Path, rstore: Store
) -> None:
    """The store is shared: an execution row may carry any file name, path, status or JSON. The
    file route and the listings answer without a 5xx and never serve a file outside the
    workspace."""
    from reporthubd.domain import ExecutionStatus, TriggerType
    from reporthubd.store import executions

    ds = await add_datasource(rstore, "sqlite", {"path": str(good_data(tmp_path))})
    report = await add_config(rstore, ds, "SELECT id FROM t")
    inside = tmp_path / "workspace" / "x"
    inside.mkdir(parents=True)
    (inside / "f.csv").write_text("id\n1\n")
    names = {
        "header injection": "a\r\nX-Evil: 1.csv",
        "quotes and unicode": 'rapport "final" é ü 日本.csv',
        "nul": "a\x00b.csv",
        "long": "n" * 500 + ".csv",
    }
    ids: dict[str, str] = {}
    for label, name in names.items():
        execution_id = await executions.insert_execution(
            rstore,
            config_id=report,
            trigger_type=TriggerType.MANUAL,
            status=ExecutionStatus.COMPLETED,
        )
        assert execution_id is not None
        await raw(
            rstore,
            "UPDATE report_executions SET file_name = :n, file_path = :p WHERE id = :i",
            n=name,
            p=str(inside / "f.csv"),
            i=execution_id,
        )
        ids[label] = execution_id
    outside = await executions.insert_execution(
        rstore, config_id=report, trigger_type=TriggerType.MANUAL, status=ExecutionStatus.COMPLETED
    )
    assert outside is not None
    await raw(
        rstore,
        "UPDATE report_executions SET file_name = 'passwd', file_path = :p WHERE id = :i",
        p=str(tmp_path / "workspace" / ".." / ".." / ".." / "etc" / "passwd"),
        i=outside,
    )
    weird = await executions.insert_execution(
        rstore, config_id=report, trigger_type=TriggerType.MANUAL
    )
    assert weird is not None
    await raw(
        rstore,
        "UPDATE report_executions SET status = 'EXPLODED', parameters = '{bad' WHERE id = :i",
        i=weird,
    )
    async with rstore.engine.begin() as conn:
        delivery = await conn.execute(
            sa.insert(schema.deliveries).values(
                config_id=report,
                name="foreign",
                method="webhook",
                delivery_config={"url": "http://127.0.0.1:9/"},
                is_active=False,
            )
        )
        delivery_id = int(delivery.inserted_primary_key[0])
    for status, details in [("BOGUS", "{bad"), ("RETRYING", "[1"), ("SUCCESS", "null")]:
        await raw(
            rstore,
            "INSERT INTO report_delivery_logs (execution_id, delivery_id, attempt, status, "
            "details, recipient_group) VALUES (:e, :d, 1, :s, :j, :g)",
            e=ids["quotes and unicode"],
            d=delivery_id,
            s=status,
            j=details,
            g=status,
        )
    daemon = Daemon(tmp_path)
    try:
        await daemon.ready()
        for label, execution_id in ids.items():
            async with daemon.http.get(f"{daemon.base}/api/execution/{execution_id}/file") as r:
                body = await r.read()
                assert r.status == 200, (label, r.status, body[:300])
                assert body == b"id\n1\n", label
                assert "X-Evil" not in r.headers, label
                disposition = r.headers["Content-Disposition"]
                assert disposition.startswith('attachment; filename="'), disposition
                assert "filename*=UTF-8''" in disposition, disposition
        broken: list[tuple[str, int, str]] = []
        code, answer = await daemon.request("GET", f"/api/execution/{outside}/file")
        assert code == 404 and answer["status"] == "error", answer
        for path in (
            f"/api/execution/{ids['quotes and unicode']}",
            f"/api/execution/{weird}",
            f"/api/execution/{weird}/file",
            "/api/executions",
            f"/api/executions?config_id={report}",
            "/",
            "/api/scheduler/status",
        ):
            async with daemon.http.get(f"{daemon.base}{path}") as r:
                if r.status >= 500:
                    broken.append((path, r.status, (await r.text())[:300]))
        assert broken == [], broken
        code, answer = await daemon.request("GET", f"/api/execution/{weird}")
        assert code == 422 and "EXPLODED" in answer["error"], answer
        code, answer = await daemon.request("GET", "/api/executions")
        assert code == 200 and weird not in str(answer["data"]), answer
        good = await daemon.wait_status(await daemon.execute(report))
        assert good["status"] == "COMPLETED", good
    finally:
        await daemon.close()
