"""Graceful stop: SIGTERM to a real daemon while 10 executions run on the running PostgreSQL and
MariaDB (short sleeps and 300-second ones). The short ones finish COMPLETED inside
`drain_grace_seconds`, the long ones end CANCELLED with the reason, their queries are gone from
the servers (a pg_sleep or SLEEP left running would stay in pg_stat_activity / the process list:
neither server notices a closed client while sleeping), and the daemon exits 0."""

from __future__ import annotations

import asyncio
import secrets
import signal
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from reporthubd.domain import Execution
from reporthubd.store import executions
from reporthubd.store.database import Store
from tests.engine.conftest import Source, _my_source, _pg_source, add_config, add_datasource
from tests.reliability.conftest import Daemon
from tests.reliability.test_faults import _my_threads, _pg_backends

SHORT = 2
GRACE = 8


@pytest.fixture
def both_sources() -> Iterator[tuple[Source, Source]]:
    pg = _pg_source()
    my = _my_source()
    pg_source = next(pg)
    my_source = next(my)
    yield pg_source, my_source
    for generator in (pg, my):
        for _ in generator:
            pass


async def test_sigterm_finishes_short_runs_and_cancels_long_ones_on_the_server(
    tmp_path: Path, rstore: Store, both_sources: tuple[Source, Source]
) -> None:
    pg_source, my_source = both_sources
    marker = f"drainmark_{secrets.token_hex(4)}"
    pg = await add_datasource(rstore, "postgresql", pg_source.config)
    my = await add_datasource(rstore, "mysql", my_source.config)
    long_reports = [
        await add_config(rstore, pg, f"SELECT '{marker}' AS m, pg_sleep(300) AS s"),
        await add_config(rstore, my, f"SELECT '{marker}' AS m, SLEEP(300) AS s"),
    ]
    short_reports = [
        await add_config(rstore, pg, f"SELECT 'short' AS m, pg_sleep({SHORT}) AS s"),
        await add_config(rstore, my, f"SELECT 'short' AS m, SLEEP({SHORT}) AS s"),
    ]
    daemon = Daemon(
        tmp_path,
        execution={"max_concurrent_executions": 10, "drain_grace_seconds": GRACE},
    )
    try:
        await daemon.ready()
        long_ids = [await daemon.execute(long_reports[i % 2]) for i in range(5)]
        for execution_id in long_ids:
            await daemon.wait_status(execution_id, {"RUNNING"})
        for _ in range(200):  # every long query is on its server
            on_pg = await _pg_backends(pg_source, marker)
            on_my = await asyncio.to_thread(_my_threads, marker)
            if len(on_pg) == 3 and len(on_my) == 2:
                break
            await asyncio.sleep(0.05)
        else:
            raise AssertionError(f"long queries not seen: {on_pg} {on_my}")
        short_ids = [await daemon.execute(short_reports[i % 2]) for i in range(5)]
        for execution_id in short_ids:
            await daemon.wait_status(execution_id, {"RUNNING"})
        daemon.process.signal(signal.SIGTERM)
        # While draining, new work is refused with a clear answer (or the port is closed). The
        # signal reaches the daemon's loop asynchronously: a request it reads before handling
        # the signal is still accepted (as one sent a moment before the signal would be), and
        # must then end like any accepted run; from the first refusal on, everything is refused.
        answers: list[tuple[int, object]] = []
        for _ in range(20):
            try:
                answers.append(await daemon.request("POST", f"/api/execute/{short_reports[0]}"))
                answers.append(await daemon.request("GET", "/readyz"))
            except aiohttp.ClientError:
                break
            await asyncio.sleep(0.1)
        code = await asyncio.to_thread(daemon.process.wait, GRACE + 60)
        print("during drain:", answers[:4])
        first_refusal = next((i for i, (status, _) in enumerate(answers) if status == 503), 0)
        accepted_before = answers[:first_refusal]
        assert len(accepted_before) <= 2, accepted_before  # one execute (and its readyz) at most
        for status, answer in answers[first_refusal:]:
            assert status == 503 and isinstance(answer, dict), (status, answer)
            assert answer["status"] == "error" and answer["error"], answer
        raced = [
            answer["data"]["execution_id"]
            for status, answer in accepted_before
            if status == 202 and isinstance(answer, dict)
        ]
        assert code == 0, daemon.process.output()[-3000:]
    finally:
        await daemon.close()
    for execution_id in short_ids:
        data = await _execution(rstore, execution_id)
        assert data.status.value == "COMPLETED", data
    for execution_id in raced:  # accepted just before the signal was handled: not lost
        data = await _execution(rstore, execution_id)
        # run in the grace, cancelled by the drain, or queued for the next node to adopt
        assert data.status.value in ("COMPLETED", "CANCELLED", "PENDING"), data
    for execution_id in long_ids:
        data = await _execution(rstore, execution_id)
        assert data.status.value == "CANCELLED", data
        assert "drain" in (data.error_message or ""), data
        assert not (daemon.workspace / execution_id).exists()
    # Cancelled on the servers: nothing of ours still sleeps there.
    left_pg: list[int] = []
    left_my: list[int] = []
    for _ in range(100):
        left_pg = await _pg_backends(pg_source, marker)
        left_my = await asyncio.to_thread(_my_threads, marker)
        if not left_pg and not left_my:
            break
        await asyncio.sleep(0.1)
    assert left_pg == [] and left_my == [], (left_pg, left_my)


async def _execution(store: Store, execution_id: str) -> Execution:
    found = await executions.get_execution(store, execution_id)
    assert found is not None
    return found
