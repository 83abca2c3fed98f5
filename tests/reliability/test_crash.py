"""Crash: a real daemon over a MariaDB store is killed with SIGKILL while 20 executions run
(PostgreSQL sleeps: 10 claimed by schedule fires, 12 started by POST /api/execute, on a
datasource of 20 slots, so 2 wait PENDING) and 10 webhook deliveries wait for a retry (RETRYING
rows with `next_retry_at` ahead). Per-second schedules of every misfire policy keep firing until
the kill, and a few of their runs are on the server when it comes.

Then either the same node restarts after about ten seconds (its own leftovers are found at once,
whatever `node_lost_after_seconds` says), or a second node that runs beside it recovers them once
their heartbeats are older than `node_lost_after_seconds` (and the first node restarts later).

Afterwards: nothing is PENDING or RUNNING; each interrupted (RUNNING) execution is FAILED ("node
lost") and has exactly one recovery run (trigger_type recovery, same config, schedule,
scheduled_for and parameters, the next attempt, `recovers_id` naming it) that completed; each
queued (PENDING) one was adopted and ran as it was; each pending retry was made exactly once and
its execution settled COMPLETED; every second between a per-second schedule's first and last fire
has exactly one fire row, and the fires the daemon was down for follow the schedule's misfire
policy (runs, or SKIPPED rows with the reason); the webhook receiver got one copy per
Idempotency-Key and per execution, and none for an execution that was lost.

Two shorter cases: deliveries in flight at the kill (the receiver has the body, the answer never
comes back) are sent again by the recovery under the lost run's Idempotency-Key; and a kill
between a retry's record and its settling leaves nothing RUNNING after the restart.
"""

from __future__ import annotations

import asyncio
import math
import re
import signal
import sqlite3
import time
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from aiohttp import web

from reporthubd.store import schema
from reporthubd.store.database import Store
from tests import servers
from tests.engine.conftest import Source, _pg_source, add_config, add_datasource, add_schedule
from tests.reliability.conftest import TERMINAL, Daemon, WebhookReceiver
from tests.reliability.test_faults import _pg_backends, _pg_kill

pytestmark = pytest.mark.background

MARK = "crashmark_sleep"
SLEEPERS_SCHEDULED = 10
SLEEPERS_MANUAL = 12
SLEEP_SLOTS = 20  # the sleepers' datasource max_concurrent_queries: 20 run, 2 wait (PENDING)
RETRIES = 10
DOWN_SECONDS = 10.0
ON_TIME_SECONDS = 5.0  # scheduler/misfire.py: a fire claimed this late is on time
SHORT_GRACE = 8
# retry_interval_minutes=1 x retry_time_scale: the retry is due about 18 s (±10 %) after the
# first attempt, well after the kill and, for a restart, around the time it comes back.
RETRY_SCALE = 0.3
POLICIES = {
    "run_once": {"misfire_policy": "run_once"},
    "skip": {"misfire_policy": "skip"},
    "run_all": {"misfire_policy": "run_all"},
    "run_all_grace": {"misfire_policy": "run_all", "misfire_grace_seconds": SHORT_GRACE},
}
E = schema.executions
L = schema.delivery_logs


class Receiver(WebhookReceiver):
    """Webhook receiver: /retry answers 503 until `healthy`, /ok always 200. Records every
    request (path, Idempotency-Key, the execution id in the JSON body, the answer)."""

    def __init__(self) -> None:
        super().__init__()
        self.healthy = False
        self.requests: list[dict[str, Any]] = []

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.json()
        status = 200 if request.path == "/ok" or self.healthy else 503
        self.requests.append(
            {
                "path": request.path,
                "key": request.headers.get("Idempotency-Key", ""),
                "execution_id": body.get("execution_id"),
                "status": status,
            }
        )
        return web.Response(status=status, text="ok" if status == 200 else "unavailable")

    def delivered(self, path: str) -> list[dict[str, Any]]:
        return [r for r in self.requests if r["path"] == path and r["status"] == 200]


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    hook = Receiver()
    await hook.start()
    yield hook
    await hook.stop()


@pytest.fixture
def pg() -> Iterator[Source]:
    yield from _pg_source()


@dataclass
class Setup:
    sleeper: int
    retried: int
    ticker: int
    tickers: dict[str, int] = field(default_factory=dict)  # policy name -> schedule id
    sleeper_schedules: list[int] = field(default_factory=list)
    manual_sleepers: list[str] = field(default_factory=list)
    retrying: list[str] = field(default_factory=list)
    fire_at: datetime | None = None


async def _definitions(store: Store, pg: Source, tmp_path: Path, hook: Receiver) -> Setup:
    await pg.execute(
        "CREATE TABLE crash_control (seconds double precision)",
        "INSERT INTO crash_control VALUES (600)",
    )
    lite = tmp_path / "source.db"
    with sqlite3.connect(lite) as conn:
        conn.execute("CREATE TABLE t (id INTEGER)")
        conn.executemany("INSERT INTO t VALUES (?)", [(i,) for i in range(5)])
    conn.close()
    pg_ds = await add_datasource(store, "postgresql", pg.config, max_concurrent_queries=SLEEP_SLOTS)
    lite_ds = await add_datasource(store, "sqlite", {"path": str(lite)})
    sleeper = await add_config(
        store,
        pg_ds,
        f"SELECT '{MARK}' AS m, pg_sleep((SELECT seconds FROM crash_control)) AS s, "
        "CAST(:n AS integer) AS n",
        parameters={"n": 0},
    )
    retried = await add_config(store, lite_ds, "SELECT id FROM t")
    # half a second on the server: a few per-second runs are in flight whenever the kill comes
    ticker = await add_config(
        store,
        await add_datasource(store, "postgresql", pg.config),
        "SELECT 'tick' AS m, pg_sleep(0.5) AS s",
    )
    async with store.engine.begin() as conn:
        for config_id, path, max_retry in ((sleeper, "/ok", 0), (retried, "/retry", 3)):
            await conn.execute(
                sa.insert(schema.deliveries).values(
                    config_id=config_id,
                    name=f"hook{path}",
                    method="webhook",
                    delivery_config={"url": f"http://127.0.0.1:{hook.port}{path}"},
                    max_retry=max_retry,
                    retry_interval_minutes=1,
                )
            )
    return Setup(sleeper=sleeper, retried=retried, ticker=ticker)


async def _schedules(store: Store, setup: Setup) -> None:
    """Ten one-shot schedules of the sleeper a few seconds ahead, and the per-second tickers."""
    fire = datetime.fromtimestamp(math.ceil(time.time()) + 3, UTC)
    setup.fire_at = fire
    once = f"{fire.second} {fire.minute} {fire.hour} {fire.day} {fire.month} *"
    for i in range(SLEEPERS_SCHEDULED):
        setup.sleeper_schedules.append(
            await add_schedule(store, setup.sleeper, once, parameters={"n": 100 + i})
        )
    for name, values in POLICIES.items():
        setup.tickers[name] = await add_schedule(store, setup.ticker, "* * * * * *", **values)


async def _rows(store: Store, *where: Any) -> list[Any]:
    async with store.engine.connect() as conn:
        return list(await conn.execute(sa.select(E).where(*where)))


async def _logs(store: Store) -> list[Any]:
    async with store.engine.connect() as conn:
        return list(await conn.execute(sa.select(L).order_by(L.c.execution_id, L.c.attempt)))


async def _wait(what: str, check: Any, timeout: float = 60, poll: float = 0.2) -> Any:
    """Poll `check()` until it returns something truthy (the limit only ends a hung test)."""
    deadline = time.monotonic() + timeout
    while True:
        result = await check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(poll)


async def _start_work(daemon: Daemon, store: Store, pg: Source, setup: Setup) -> None:
    """Reload the schedules in, start the manual runs and wait until 20 sleepers run on the
    server and 10 retries are pending."""
    await _schedules(store, setup)
    status, answer = await daemon.request("POST", "/api/scheduler/reload")
    assert status == 200, answer
    for i in range(SLEEPERS_MANUAL):
        body: dict[str, Any] = {"parameters": {"n": i}}
        if i % 2:  # half of them with a logical time of their own
            body["scheduled_for"] = f"2026-01-{i + 1:02d}T06:00:00+00:00"
        setup.manual_sleepers.append(await daemon.execute(setup.sleeper, **body))
    for _ in range(RETRIES):
        setup.retrying.append(await daemon.execute(setup.retried))

    async def sleeping() -> bool:
        rows = await _rows(store, E.c.config_id == setup.sleeper)
        on_server = await _pg_backends(pg, "pg_sleep((SELECT seconds FROM crash_control))")
        running = sum(r.status == "RUNNING" for r in rows)
        waiting = sum(r.status == "PENDING" for r in rows)
        return (running, waiting, len(on_server)) == (
            SLEEP_SLOTS,
            SLEEPERS_SCHEDULED + SLEEPERS_MANUAL - SLEEP_SLOTS,
            SLEEP_SLOTS,
        )

    async def pending_retries() -> bool:
        rows = await _logs(store)
        return sum(r.status == "RETRYING" and r.next_retry_at is not None for r in rows) == RETRIES

    await _wait("20 sleepers running on PostgreSQL and 2 waiting for a slot", sleeping)
    await _wait("10 pending delivery retries", pending_retries)
    await asyncio.sleep(1.5)  # a few more per-second fires


async def _kill(
    daemon: Daemon, store: Store, pg: Source, setup: Setup, hook: Receiver
) -> dict[str, Any]:
    """SIGKILL; return what was RUNNING (interrupted) or PENDING (queued) at that moment. Then
    clean up what the dead process left on the source server, make the sleep short and the
    receiver healthy."""

    async def ticking() -> bool:  # kill while per-second runs are on the server too
        mine = E.c.config_id == setup.ticker, E.c.node_id == "crash-a", E.c.status == "RUNNING"
        return bool(await _rows(store, *mine))

    await _wait("per-second runs in flight", ticking, poll=0.02)
    daemon.process.signal(signal.SIGKILL)
    await asyncio.to_thread(daemon.process.wait, 10)
    killed_at = datetime.now(UTC)
    await daemon.close()
    logs = await _logs(store)
    pending_ids = {r.execution_id for r in logs if r.status == "RETRYING"}
    # Not one retry was made (or claimed) before the kill: each waits for its own time.
    assert [r["status"] for r in hook.requests if r["path"] == "/retry"] == [503] * RETRIES
    due = [r.next_retry_at for r in logs if r.status == "RETRYING"]
    assert min(due) > killed_at and max(due) < killed_at + timedelta(minutes=1), due
    active = await _rows(store, E.c.status.in_(["PENDING", "RUNNING"]))
    owned_by_ledger = {r.id for r in active if r.id in pending_ids}
    assert owned_by_ledger == set(setup.retrying)
    interrupted = {r.id: r for r in active if r.id not in pending_ids and r.status == "RUNNING"}
    queued = {r.id: r for r in active if r.status == "PENDING"}
    sleepers = [r for r in active if r.config_id == setup.sleeper]
    assert Counter(r.status for r in sleepers) == {
        "RUNNING": SLEEP_SLOTS,
        "PENDING": SLEEPERS_SCHEDULED + SLEEPERS_MANUAL - SLEEP_SLOTS,
    }
    assert set(setup.manual_sleepers) <= {r.id for r in sleepers}
    # A sleeper's query outlives the killed client (the server notices nothing while it
    # sleeps): end them, as an operator would, and let the re-runs sleep 0 s.
    await _pg_kill(await _pg_backends(pg, "pg_sleep((SELECT seconds FROM crash_control))"))
    await pg.execute("UPDATE crash_control SET seconds = 0")
    hook.healthy = True
    async with store.engine.connect() as conn:
        last_beat = (
            await conn.execute(
                sa.select(schema.nodes.c.heartbeat_at).where(schema.nodes.c.node_id == "crash-a")
            )
        ).scalar_one()
    return {"at": killed_at, "interrupted": interrupted, "queued": queued, "last_beat": last_beat}


async def _settled(store: Store, setup: Setup, killed: dict[str, Any]) -> Any:
    """Every interrupted run has a finished recovery, every queued one ran, and every retried
    execution settled."""
    rows = await _rows(store)
    recoveries = [r for r in rows if r.trigger_type == "recovery"]
    if len(recoveries) < len(killed["interrupted"]):
        return None
    if any(r.status not in TERMINAL for r in recoveries):
        return None
    by_id = {r.id: r for r in rows}
    if any(by_id[i].status not in TERMINAL for i in [*setup.retrying, *killed["queued"]]):
        return None
    return rows


async def _stop_tickers(daemon: Daemon, store: Store, setup: Setup) -> None:
    """Deactivate the per-second schedules and let the runs in flight end."""
    async with store.engine.begin() as conn:
        await conn.execute(
            sa.update(schema.schedules)
            .where(schema.schedules.c.id.in_(list(setup.tickers.values())))
            .values(is_active=False)
        )
    status, answer = await daemon.request("POST", "/api/scheduler/reload")
    assert status == 200, answer

    async def quiet() -> bool:
        return not await _rows(store, E.c.status.in_(["PENDING", "RUNNING"]))

    await _wait("no PENDING or RUNNING execution", quiet)


def _config(node_id: str, **scheduler: object) -> dict[str, dict[str, object]]:
    return {
        "scheduler": {"node_id": node_id, **scheduler},
        "execution": {"max_concurrent_executions": 40, "retry_time_scale": RETRY_SCALE},
    }


@pytest.mark.parametrize("recovered_by", ["same-node", "second-node"])
async def test_sigkill_with_running_executions_and_pending_retries(
    tmp_path: Path,
    mariadb_store: tuple[Store, str],
    pg: Source,
    receiver: Receiver,
    recovered_by: str,
) -> None:
    store, url = mariadb_store
    started = time.monotonic()
    setup = await _definitions(store, pg, tmp_path, receiver)
    # The restarting node keeps the default 60 s node_lost_after_seconds: it must find its own
    # leftovers at start, not after the limit. The cluster variant uses a short limit.
    if recovered_by == "same-node":
        timing: dict[str, object] = {}
        lost_after = 60.0
    else:
        timing = {"heartbeat_interval_seconds": 1.0, "node_lost_after_seconds": 3.0}
        lost_after = 3.0
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    a = Daemon(tmp_path / "a", store_url=url, **_config("crash-a", **timing))
    b: Daemon | None = None
    try:
        await a.ready()
        await _start_work(a, store, pg, setup)
        if recovered_by == "second-node":
            b = Daemon(tmp_path / "b", store_url=url, **_config("crash-b", **timing))
            await b.ready()
        killed = await _kill(a, store, pg, setup, receiver)
        interrupted: dict[str, Any] = killed["interrupted"]
        if b is not None:
            rows = await _wait(
                "node crash-b to recover and settle everything",
                lambda: _settled(store, setup, killed),
            )
        down = (datetime.now(UTC) - killed["at"]).total_seconds()
        await asyncio.sleep(max(0.0, DOWN_SECONDS - down))
        restarted_at = datetime.now(UTC)
        a = Daemon(tmp_path / "a", store_url=url, **_config("crash-a", **timing))
        await a.ready()
        rows = await _wait("the recoveries and the retries", lambda: _settled(store, setup, killed))
        await asyncio.sleep(3)  # more fires, sweeps and retry-worker turns: nothing may change
        await _stop_tickers(a, store, setup)
        status, answer = await a.request("GET", "/api/scheduler/status")
        assert status == 200, answer
        recovered_here = answer["data"]["recovered"], answer["data"]["adopted"]
    finally:
        await a.close()
        if b is not None:
            await b.close()
    rows = await _rows(store)
    logs = await _logs(store)
    elapsed = time.monotonic() - started

    # Nothing is left PENDING or RUNNING.
    assert Counter(r.status for r in rows if r.status not in TERMINAL) == Counter()
    by_id = {r.id: r for r in rows}

    # Each interrupted run: FAILED "node lost", and exactly one completed recovery of it.
    recoveries = [r for r in rows if r.trigger_type == "recovery"]
    assert len(recoveries) == len(interrupted), [(r.id, r.config_id) for r in recoveries]
    unmatched = list(recoveries)
    recoverer = "crash-b" if recovered_by == "second-node" else "crash-a"
    for lost in interrupted.values():
        final = by_id[lost.id]
        assert final.status == "FAILED", final
        assert final.error_message.startswith("node lost: node crash-a"), final.error_message
        if recovered_by == "same-node":
            assert final.error_message == "node lost: node crash-a restarted before the run ended"
            assert final.finished_at >= restarted_at
        else:
            # never before the limit, counted from the run's last heartbeat
            beat = final.heartbeat_at or final.started_at or final.created_at
            assert final.error_message.startswith("node lost: node crash-a stopped heartbeating")
            assert final.finished_at >= beat + timedelta(seconds=lost_after), (final, beat)
        same = [
            r
            for r in unmatched
            if r.config_id == lost.config_id
            and r.schedule_id == lost.schedule_id
            and r.scheduled_for == lost.scheduled_for
            # a run writes its resolved parameters back when it starts: one killed before
            # that has none yet (its recovery resolves them as the run would have)
            and (lost.parameters is None or r.parameters == lost.parameters)
        ]
        assert len(same) == 1, (
            dict(lost._mapping),
            dict(final._mapping),
            [dict(r._mapping) for r in recoveries if r.schedule_id == lost.schedule_id],
        )
        again = same[0]
        unmatched.remove(again)
        assert again.attempt == lost.attempt + 1, (lost.attempt, again.attempt)
        assert again.recovers_id == lost.id, again
        assert again.status == "COMPLETED", again
        assert again.node_id == recoverer, again
    # Each queued run (never started): adopted, the same row ran to the end, not re-run.
    for waiting in killed["queued"].values():
        final = by_id[waiting.id]
        assert final.status == "COMPLETED" and final.node_id == recoverer, final
        assert final.attempt == waiting.attempt and final.trigger_type == waiting.trigger_type
        assert not [r for r in recoveries if r.recovers_id == waiting.id]
    sleeper_recoveries = [r for r in recoveries if r.config_id == setup.sleeper]
    adopted = [by_id[i] for i in killed["queued"] if by_id[i].config_id == setup.sleeper]
    assert len(sleeper_recoveries) == SLEEP_SLOTS
    # every sleeper ran once more, with the parameters it was meant to have (the trigger's,
    # or the schedule's) and, for a fire, its scheduled_for
    reruns = sleeper_recoveries + adopted
    expected_n = {(None, i) for i in range(SLEEPERS_MANUAL)} | {
        (sid, 100 + i) for i, sid in enumerate(setup.sleeper_schedules)
    }
    assert sorted((r.schedule_id or 0, r.parameters["n"]) for r in reruns) == sorted(
        (sid or 0, n) for sid, n in expected_n
    )
    assert {r.scheduled_for for r in reruns if r.schedule_id is not None} == {setup.fire_at}

    # Each pending retry was made exactly once, after the kill, and its execution settled.
    by_execution: dict[str, list[Any]] = defaultdict(list)
    for log in logs:
        by_execution[log.execution_id].append(log)
    for execution_id in setup.retrying:
        assert by_id[execution_id].status == "COMPLETED", by_id[execution_id]
        attempts = [(r.attempt, r.status) for r in by_execution[execution_id]]
        assert attempts == [(1, "RETRYING"), (2, "SUCCESS")], attempts
        assert by_execution[execution_id][0].next_retry_at is None
        assert by_execution[execution_id][1].started_at > killed["at"]
    retry_requests = [r for r in receiver.requests if r["path"] == "/retry"]
    assert Counter(r["key"] for r in retry_requests) == {
        f"{e}:{by_execution[e][0].delivery_id}": 2 for e in setup.retrying
    }
    assert sorted(r["execution_id"] for r in receiver.delivered("/retry")) == sorted(setup.retrying)

    # Nothing delivered twice; nothing from a lost run; every sleeper delivered once, a
    # recovery under the key of the run it stands in for.
    ok = receiver.delivered("/ok")
    assert len({r["key"] for r in ok}) == len(ok), Counter(r["key"] for r in ok)
    assert sorted(r["execution_id"] for r in ok) == sorted(r.id for r in reruns)
    assert {r["key"].split(":")[0] for r in ok} == {r.recovers_id or r.id for r in reruns}
    assert not {r["execution_id"] for r in ok} & set(interrupted)
    assert [log for log in logs if log.execution_id in interrupted] == []

    # The restarted node counts what it recovered and adopted itself (in the cluster case:
    # nothing was left to it).
    queued = killed["queued"]
    expected = (len(interrupted), len(queued)) if recovered_by == "same-node" else (0, 0)
    assert recovered_here == expected

    # Per-second schedules: one fire row per second, the down window decided by policy.
    decided = _check_tickers(rows, setup, recovered_by)
    failed_after = max((by_id[i].finished_at - killed["at"]).total_seconds() for i in interrupted)
    rerun_after = max((r.finished_at - killed["at"]).total_seconds() for r in recoveries)
    print(
        f"\n{recovered_by}: {elapsed:.1f} s; interrupted {len(interrupted)} "
        f"({len(interrupted) - len(sleeper_recoveries)} per-second runs among them), "
        f"queued {len(queued)} (adopted), "
        f"recovered {len(recoveries)}, retries made {len(setup.retrying)}, "
        f"webhook copies {len(receiver.delivered('/ok')) + len(receiver.delivered('/retry'))}; "
        f"all marked FAILED {failed_after:.1f} s and re-run {rerun_after:.1f} s after the kill; "
        f"down window: {decided}"
    )


REASON = re.compile(r"^missed: daemon down from (\S+) to (\S+) \((.*)\)$")


def _iso(value: datetime) -> str:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _reason(message: str) -> tuple[str, str, str]:
    found = REASON.match(message)
    assert found is not None, f"not a catch-up after a stop: {message!r}"
    base, now, why = found.groups()
    return base, now, why


def _check_tickers(rows: list[Any], setup: Setup, recovered_by: str) -> dict[str, Counter[str]]:
    decided: dict[str, Counter[str]] = {}
    catch_up_now: set[str] = set()
    for name, schedule_id in setup.tickers.items():
        fires = sorted(
            (r for r in rows if r.schedule_id == schedule_id and r.attempt == 0),
            key=lambda r: r.scheduled_for,
        )
        times = [r.scheduled_for for r in fires]
        assert len(times) == len(set(times))
        span = int((times[-1] - times[0]).total_seconds()) + 1
        missing = {times[0] + timedelta(seconds=s) for s in range(span)} - set(times)
        assert not missing, (name, sorted(missing))
        for r in fires:
            if r.status != "SKIPPED":
                assert r.trigger_type == "schedule"
                assert r.status == "COMPLETED" or (
                    r.status == "FAILED" and r.error_message.startswith("node lost")
                ), (name, r.scheduled_for, r.status, r.error_message)
        skipped = [r for r in fires if r.status == "SKIPPED"]
        if recovered_by == "second-node":
            # Node crash-b claimed every fire while crash-a was down: nothing was missed.
            assert skipped == [], [(r.scheduled_for, r.error_message) for r in skipped]
            decided[name] = Counter(run=len(fires))
            continue
        # the catch-up window (base, now]: each reason names it
        reasons = {r.scheduled_for: _reason(r.error_message) for r in skipped}
        windows = {reason[:2] for reason in reasons.values()}
        assert len(windows) <= 1, windows
        if name == "run_all":  # every missed fire within the grace runs
            assert skipped == [], [(r.scheduled_for, r.error_message) for r in skipped]
            continue
        assert windows, f"{name}: no fire was missed across a {DOWN_SECONDS} s stop"
        base_text, now_text = windows.pop()
        catch_up_now.add(now_text)
        base = datetime.fromisoformat(base_text.replace("Z", "+00:00"))
        now = datetime.fromisoformat(now_text.replace("Z", "+00:00"))
        window = [r for r in fires if base < r.scheduled_for <= now]
        # base is the last sign of life: the killed node's last heartbeat when it came after its
        # last claimed fire (within that second), else that fire; the window starts right after
        assert window and 0 < (window[0].scheduled_for - base).total_seconds() <= 1, name
        assert (now - window[-1].scheduled_for).total_seconds() < 1, name
        on_time = [r for r in window if (now - r.scheduled_for).total_seconds() <= ON_TIME_SECONDS]
        assert on_time, name
        counts: Counter[str] = Counter()
        for r in window:
            late = (now - r.scheduled_for).total_seconds()
            if late <= ON_TIME_SECONDS:
                expected = None  # on time whatever the policy: runs
            elif name == "skip":
                expected = "misfire_policy skip"
            elif name == "run_once":
                expected = f"run_once: coalesced into the run for {_iso(on_time[-1].scheduled_for)}"
            elif late > SHORT_GRACE:  # run_all_grace
                expected = f"beyond the misfire grace of {SHORT_GRACE} s"
            else:
                expected = None
            got = reasons[r.scheduled_for][2] if r.status == "SKIPPED" else None
            assert got == expected, (name, r.scheduled_for, late, r.status, r.error_message)
            counts["skipped" if expected else "run"] += 1
        # nothing outside the window was skipped
        assert {r.id for r in skipped} <= {r.id for r in window}, name
        decided[name] = counts
    if recovered_by == "same-node":  # one catch-up decided every schedule's window
        assert len(catch_up_now) == 1, catch_up_now
        decided["run_all"] = Counter(run=sum(decided["skip"].values()))
    return decided


class HoldingReceiver(Receiver):
    """Reads each request's body, then holds the answer until `release` is set (a slow
    receiver: the daemon dies while its request is in flight)."""

    def __init__(self) -> None:
        super().__init__()
        self.release = asyncio.Event()

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.requests.append(
            {
                "path": request.path,
                "key": request.headers.get("Idempotency-Key", ""),
                "execution_id": body.get("execution_id"),
                "scheduled_for": body.get("scheduled_for"),
                "status": 200,
            }
        )
        await self.release.wait()
        return web.Response(text="ok")


async def test_a_delivery_in_flight_at_the_kill_is_sent_again_under_the_same_key(
    tmp_path: Path, mariadb_store: tuple[Store, str]
) -> None:
    store, url = mariadb_store
    hook = HoldingReceiver()
    await hook.start()
    lite = tmp_path / "source.db"
    with sqlite3.connect(lite) as conn:
        conn.execute("CREATE TABLE t (id INTEGER)")
        conn.execute("INSERT INTO t VALUES (1)")
    conn.close()
    report = await add_config(
        store, await add_datasource(store, "sqlite", {"path": str(lite)}), "SELECT id FROM t"
    )
    async with store.engine.begin() as conn:
        result = await conn.execute(
            sa.insert(schema.deliveries).values(
                config_id=report,
                name="slow hook",
                method="webhook",
                delivery_config={"url": f"http://127.0.0.1:{hook.port}/ok"},
            )
        )
        delivery_id = int(result.inserted_primary_key[0])
    a = Daemon(tmp_path, store_url=url, **_config("crash-a"))
    try:
        await a.ready()
        ids = [await a.execute(report) for _ in range(3)]

        async def all_in_flight() -> bool:
            return len(hook.requests) == len(ids)

        await _wait("three deliveries in flight", all_in_flight)
        a.process.signal(signal.SIGKILL)
        await asyncio.to_thread(a.process.wait, 10)
        await a.close()
        hook.release.set()  # the receiver has each body: those reports arrived
        a = Daemon(tmp_path, store_url=url, **_config("crash-a"))
        await a.ready()

        async def settled() -> Any:
            rows = await _rows(store)
            done = [r for r in rows if r.trigger_type == "recovery" and r.status in TERMINAL]
            return rows if len(done) == len(ids) else None

        rows = await _wait("the recoveries", settled)
        await asyncio.sleep(1)  # a late extra delivery would show up here
    finally:
        await a.close()
        await hook.stop()
    by_id = {r.id: r for r in rows}
    assert all(by_id[i].status == "FAILED" for i in ids), [by_id[i] for i in ids]
    recoveries = [r for r in rows if r.trigger_type == "recovery"]
    assert sorted(r.recovers_id for r in recoveries) == sorted(ids)
    assert all(r.status == "COMPLETED" for r in recoveries), recoveries
    print(f"\nin flight at the kill: {len(ids)} reports; copies received: {len(hook.requests)}")
    # The body reached the receiver before the kill, so the recovery sends it again (at least
    # once), under the key of the run it stands in for: a receiver keeps one copy per run.
    keys = Counter(r["key"] for r in hook.requests)
    assert keys == {f"{i}:{delivery_id}": 2 for i in ids}, hook.requests


async def _lock_wait(query_start: str) -> bool:
    """Whether a MariaDB transaction waits for a row lock in a statement starting so (its
    identifiers quoted or not: a run's writes on MariaDB are sent on the driver connection,
    store/executions._update_mysql, with backquoted names)."""
    import aiomysql

    conn = await aiomysql.connect(
        host=servers.MARIADB_HOST, port=servers.MARIADB_PORT, user="root", password=""
    )
    try:
        async with conn.cursor() as cursor:
            await cursor.execute(
                "SELECT COUNT(*) FROM information_schema.INNODB_TRX "
                "WHERE trx_state = 'LOCK WAIT' AND REPLACE(trx_query, '`', '') LIKE %s",
                (f"{query_start}%",),
            )
            (count,) = await cursor.fetchone()
    finally:
        conn.close()
    return bool(count)


async def test_a_kill_between_a_retry_and_its_settling_is_settled_after_restart(
    tmp_path: Path, mariadb_store: tuple[Store, str], receiver: Receiver
) -> None:
    """The retry was made and recorded (SUCCESS), and the daemon died before moving the
    execution from RUNNING to COMPLETED. A share lock the test holds on the execution row lets
    the ledger write its rows (a foreign-key check takes a share lock too) and holds the
    settling UPDATE back; the kill comes while that UPDATE waits, and the test then ends the
    UPDATE's server thread (see below). The restarted node (same id)
    must settle it: its own heartbeats must not keep it RUNNING for ever."""
    import aiomysql

    store, url = mariadb_store
    lite = tmp_path / "source.db"
    with sqlite3.connect(lite) as conn:
        conn.execute("CREATE TABLE t (id INTEGER)")
        conn.execute("INSERT INTO t VALUES (1)")
    conn.close()
    report = await add_config(
        store, await add_datasource(store, "sqlite", {"path": str(lite)}), "SELECT id FROM t"
    )
    async with store.engine.begin() as conn:
        await conn.execute(
            sa.insert(schema.deliveries).values(
                config_id=report,
                name="hook",
                method="webhook",
                delivery_config={"url": f"http://127.0.0.1:{receiver.port}/retry"},
                max_retry=3,
                retry_interval_minutes=1,
            )
        )
    # A 3-second retry. No heartbeat before the kill (its UPDATE would queue behind the test's
    # lock, and the ledger's foreign-key check behind it). After the restart: heartbeats every
    # 2 s, lost after 10 s: a row left to go stale would be settled at the retry worker's next
    # turn (30 s), one whose heartbeat the node keeps fresh never.
    config = _config("crash-a", heartbeat_interval_seconds=30.0, node_lost_after_seconds=61.0)
    config["execution"]["retry_time_scale"] = 0.05
    a = Daemon(tmp_path, store_url=url, **config)
    database = url.rsplit("/", 1)[1]
    locker = await aiomysql.connect(
        host=servers.MARIADB_HOST, port=servers.MARIADB_PORT, user="root", password="", db=database
    )
    try:
        await a.ready()
        execution_id = await a.execute(report)

        async def retrying() -> bool:
            return any(r.status == "RETRYING" for r in await _logs(store))

        await _wait("the first attempt to fail", retrying)
        receiver.healthy = True
        async with locker.cursor() as cursor:
            await cursor.execute("BEGIN")
            await cursor.execute(
                "SELECT id FROM report_executions WHERE id = %s LOCK IN SHARE MODE",
                (execution_id,),
            )

        async def recorded_and_waiting() -> bool:
            succeeded = any(r.status == "SUCCESS" for r in await _logs(store))
            return succeeded and await _lock_wait("UPDATE report_executions SET status")

        await _wait("the retry recorded and its settling waiting", recorded_and_waiting)
        a.process.signal(signal.SIGKILL)
        await asyncio.to_thread(a.process.wait, 10)
        await a.close()
        # The settling UPDATE and its COMMIT went to the server in one round trip, so the
        # server would finish them after the client's death (safe: the write is conditional on
        # RUNNING and this node). Killing the waiting server thread rolls it back, as if the
        # kill had come before the statement left the daemon.
        async with locker.cursor() as cursor:
            await cursor.execute(
                "SELECT trx_mysql_thread_id FROM information_schema.INNODB_TRX "
                "WHERE trx_state = 'LOCK WAIT' AND REPLACE(trx_query, '`', '') LIKE %s",
                ("UPDATE report_executions SET status%",),
            )
            waiting = [thread for (thread,) in await cursor.fetchall()]
            assert waiting, "the settling UPDATE no longer waits"
            for thread in waiting:
                await cursor.execute(f"KILL {int(thread)}")
        await locker.rollback()
        (row,) = await _rows(store, E.c.id == execution_id)
        assert row.status == "RUNNING"  # what the kill left
        config = _config("crash-a", heartbeat_interval_seconds=2.0, node_lost_after_seconds=10.0)
        a = Daemon(tmp_path, store_url=url, **config)
        await a.ready()
        # Longer than node_lost_after_seconds plus the retry worker's 30 s turn: a row whose
        # heartbeat goes stale would be settled by then. It must be settled at once.
        data = await a.wait_status(execution_id, timeout=40)
    finally:
        locker.close()
        await a.close()
    assert data["status"] == "COMPLETED", data
    logs = [(r.attempt, r.status) for r in await _logs(store)]
    assert logs == [(1, "RETRYING"), (2, "SUCCESS")], logs
    assert [r["status"] for r in receiver.requests] == [503, 200], receiver.requests
