"""Pause and kill (issue 15, acceptance): two real daemons share a MariaDB store (heartbeat every
2 s, a node is lost after 10 s). A scheduled fire and a manual run of a MariaDB report whose
query sleeps 8 s (CSV, delivered by file share, email, SFTP and S3) run on one node, and that node
is stopped while both queries sleep on the server. Whichever node claims the fire is the one
stopped; the manual run is started there too. Three ways of stopping it:

- sigstop: SIGSTOP at a moment of the test's choosing (a paused VM);
- sigstop-in-heartbeat: SIGSTOP right after the node sent its heartbeat's UPDATE of
  report_executions, before it could COMMIT (the node's store connections go through a relay
  that sends the signal): a frozen node that holds the store's row locks;
- sigkill: SIGKILL, then the same node is started again.

Then, while the first node is still frozen (or dead):
- the other node marks both runs lost (FAILED, "node lost ..."), and
- its recovery runs (trigger_type recovery, recovers_id naming the lost run) complete within the
  query's own duration plus 8 s of the lost mark.
After SIGCONT (or the restart), and long enough for the woken node to finish its query, reach
delivery and sweep past its own node-lost limit:
- the lost runs stay FAILED and the woken node delivers nothing for them;
- it judges none of the other node's runs lost: one recovery per lost run, nothing run a third
  time;
- each peer holds exactly one copy of each report (files in the share and in the SFTP
  directory, messages in the mailbox, objects in the bucket), and the delivery log has exactly
  one SUCCESS per delivery, all of them the recovery's.

Each check is made and the failures are reported together, with the executions, the delivery
log, the copies found, the nodes' warnings and, when a run was not recovered in time, the store
server's transactions and lock waits taken while the first node was still frozen.
"""

from __future__ import annotations

import asyncio
import math
import signal
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
import psutil
import pymysql
import pytest
import sqlalchemy as sa

from reporthubd.config import StoreSettings
from reporthubd.store import migrate, schema
from reporthubd.store.database import Store
from tests import servers
from tests.deliverers import peers
from tests.engine.conftest import Source, add_config, add_datasource, add_schedule
from tests.reliability.conftest import TERMINAL, Daemon
from tests.reliability.pause_peers import (
    METHODS,
    FreezingRelay,
    Peers,
    add_deliveries,
    lock_picture,
    lock_waits_on,
)

pytestmark = pytest.mark.background

HEARTBEAT_SECONDS = 2.0
LOST_AFTER_SECONDS = 10.0
QUERY_SECONDS = 8
RECOVERY_SLACK_SECONDS = 8.0  # a recovery completes within QUERY_SECONDS + this of the lost mark
# The lost mark is due node_lost_after_seconds after the last heartbeat, at the next sweep (one
# heartbeat interval); a little more for a loaded machine.
MARK_WITHIN_SECONDS = LOST_AFTER_SECONDS + 2 * HEARTBEAT_SECONDS + 4
FIRE_LEAD_SECONDS = 4  # the one-shot schedule fires this long after the reload
# After the wake: the woken node's query is done already (it slept on the server meanwhile), so
# it reaches delivery at once; past its own node-lost limit and two more sweeps it has had every
# chance to misjudge the other node's runs.
AFTER_WAKE_SECONDS = LOST_AFTER_SECONDS + 2 * HEARTBEAT_SECONDS + 2
KINDS = ("manual", "scheduled")
NODES = ("pause-a", "pause-b")
E = schema.executions
L = schema.delivery_logs


@dataclass(frozen=True)
class Fault:
    name: str
    signal: signal.Signals
    in_heartbeat: bool = False
    """Frozen right after sending the heartbeat's UPDATE of report_executions (its COMMIT not
    sent): the node's store connections go through a FreezingRelay."""


FAULTS = [
    Fault("sigstop", signal.SIGSTOP),
    Fault("sigstop-in-heartbeat", signal.SIGSTOP, in_heartbeat=True),
    Fault("sigkill", signal.SIGKILL),
]
HEARTBEAT_WRITE = (b"UPDATE report_executions", b"heartbeat_at")


@pytest.fixture(scope="module")
def pause_peers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Peers]:
    """sshd, aiosmtpd and moto for the whole module (each case's reports have their own names)."""
    root = tmp_path_factory.mktemp("pause-peers")
    (root / "share").mkdir()  # a file share is mounted before the daemon delivers to it
    sshd = peers.SSHServer(root / "sshd")  # skips (fails in CI) without OpenSSH
    smtp = peers.SMTPServer(root / "smtp")
    s3 = peers.S3Server()
    started: list[peers.SSHServer | peers.SMTPServer | peers.S3Server] = []
    try:
        for peer in (sshd, smtp, s3):
            peer.start()
            started.append(peer)
        bucket = f"pause-{servers.SESSION}"
        boto3.client("s3", **s3.client_args()).create_bucket(Bucket=bucket)
        yield Peers(root=root, sshd=sshd, smtp=smtp, s3=s3, bucket=bucket)
    finally:
        for peer in reversed(started):
            peer.stop()


@pytest.fixture
async def pause_store(tmp_path: Path) -> AsyncIterator[tuple[Store, str]]:
    """A fresh, migrated database on the running MariaDB: the nodes' shared store."""
    database = servers.create_database("mariadb", tmp_path)
    store = Store(StoreSettings(url=database.url))
    await store.start()
    try:
        await migrate.upgrade(store)
        yield store, database.url
    finally:
        await store.stop()
        database.drop()


@dataclass
class Findings:
    """Every failed check of a case, reported together with the evidence."""

    problems: list[str] = field(default_factory=list)
    evidence: list[str] = field(default_factory=list)

    def check(self, ok: bool, what: str) -> None:
        if not ok:
            self.problems.append(what)


@dataclass
class Cluster:
    """The two nodes (and, for a freeze in the heartbeat, a relay in front of each)."""

    tmp_path: Path
    store_url: str
    nodes: dict[str, Daemon] = field(default_factory=dict)
    relays: dict[str, FreezingRelay] = field(default_factory=dict)
    retired: list[Daemon] = field(default_factory=list)

    async def start(self, name: str) -> Daemon:
        directory = self.tmp_path / name
        directory.mkdir(exist_ok=True)
        url = self.store_url
        if name in self.relays:
            url = self.relays[name].store_url(url)
        node = Daemon(
            directory,
            store_url=url,
            scheduler={
                "node_id": name,
                "heartbeat_interval_seconds": HEARTBEAT_SECONDS,
                "node_lost_after_seconds": LOST_AFTER_SECONDS,
            },
        )
        if name in self.nodes:
            self.retired.append(self.nodes[name])
        self.nodes[name] = node
        await node.ready()
        return node

    def databases(self, source: Source) -> list[str]:
        return [self.store_url.rpartition("/")[2], source.name]

    def picture(self, source: Source) -> str:
        pids = {name: node.process.proc.pid for name, node in self.nodes.items()}
        relayed = {
            port: name for name, relay in self.relays.items() for port in relay.upstream_ports
        }
        return lock_picture(pids, self.databases(source), relayed)

    def warnings(self) -> list[str]:
        """The nodes' log lines worth reading beside a failure: lost runs, warnings, errors."""
        keep = ('"warning"', '"error"', "lost", "recover")
        lines = []
        for node in [*self.retired, *self.nodes.values()]:
            name = node.process.config.parent.name
            output = node.process.output().splitlines()
            lines += [f"{name}: {line[:700]}" for line in output if any(k in line for k in keep)]
        return lines

    async def close(self) -> None:
        for node in [*self.retired, *self.nodes.values()]:  # never leave a frozen daemon behind
            node.process.proc.send_signal(signal.SIGCONT)
        for node in [*self.retired, *self.nodes.values()]:
            await node.close()
        for relay in self.relays.values():
            await relay.stop()


def _query(report: str) -> str:
    return f"SELECT '{report}' AS report, SLEEP({QUERY_SECONDS}) AS slept"


async def _rows(store: Store, *where: Any) -> list[Any]:
    async with store.engine.connect() as conn:
        return list(await conn.execute(sa.select(E).where(*where).order_by(E.c.created_at)))


async def _logs(store: Store) -> list[Any]:
    async with store.engine.connect() as conn:
        return list(await conn.execute(sa.select(L).order_by(L.c.execution_id, L.c.attempt)))


async def _wait(what: str, check: Any, timeout: float, poll: float = 0.2) -> Any:
    """Poll `check()` until it returns something truthy (the limit only ends a hung test)."""
    deadline = time.monotonic() + timeout
    while True:
        result = await check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        await asyncio.sleep(poll)


def _sleeping_on_server(database: str) -> list[str]:
    """The report queries (SLEEP) running on the source database now."""
    conn = pymysql.connect(
        host=servers.MARIADB_HOST, port=servers.MARIADB_PORT, user="root", password=""
    )
    try:
        with conn.cursor() as cursor:
            cursor.execute(
                "SELECT info FROM information_schema.processlist WHERE db = %s AND info LIKE %s",
                (database, "%SLEEP(%"),
            )
            return [str(row[0]) for row in cursor.fetchall()]
    finally:
        conn.close()


def _is_frozen(node: Daemon) -> bool:
    try:
        return psutil.Process(node.process.proc.pid).status() == psutil.STATUS_STOPPED
    except psutil.NoSuchProcess:
        return False


async def _seed(
    store: Store, source: Source, pause_peers: Peers, prefix: str
) -> tuple[dict[str, str], dict[str, int], dict[str, dict[str, int]]]:
    """One report per kind (same query, datasource and four deliveries); returns names, config
    ids and delivery ids (method -> id) per kind."""
    datasource = await add_datasource(store, "mysql", source.config)
    names = {kind: f"{prefix}-{kind}" for kind in KINDS}
    configs = {}
    deliveries = {}
    for kind, name in names.items():
        configs[kind] = await add_config(store, datasource, _query(name), name=name)
        deliveries[kind] = await add_deliveries(store, configs[kind], pause_peers)
    return names, configs, deliveries


async def _start_both_runs(
    store: Store, cluster: Cluster, configs: dict[str, int], source: Source
) -> tuple[str, dict[str, Any]]:
    """A one-shot schedule a few seconds ahead, reloaded into both nodes; the manual run is
    started on whichever node claimed the fire. Returns that node's name and the two RUNNING
    rows, once both queries sleep on the server."""
    fire = datetime.fromtimestamp(math.ceil(time.time()) + FIRE_LEAD_SECONDS, UTC)
    cron = f"{fire.second} {fire.minute} {fire.hour} {fire.day} {fire.month} *"
    await add_schedule(store, configs["scheduled"], cron)
    for node in cluster.nodes.values():
        status, answer = await node.request("POST", "/api/scheduler/reload")
        assert status == 200, answer

    async def fired() -> Any:
        rows = await _rows(store, E.c.config_id == configs["scheduled"], E.c.status == "RUNNING")
        return rows[0] if rows else None

    scheduled = await _wait("the fire to run on a node", fired, timeout=FIRE_LEAD_SECONDS + 30)
    holder = str(scheduled.node_id)
    manual_id = await cluster.nodes[holder].execute(configs["manual"])

    async def both_sleeping() -> bool:
        rows = await _rows(store, E.c.id == manual_id)
        on_server = await asyncio.to_thread(_sleeping_on_server, source.name)
        return bool(rows) and rows[0].status == "RUNNING" and len(on_server) == len(KINDS)

    await _wait("both queries sleeping on the server", both_sleeping, timeout=30)
    (manual,) = await _rows(store, E.c.id == manual_id)
    assert manual.node_id == holder, manual
    return holder, {"manual": manual, "scheduled": scheduled}


async def _stop_holder(cluster: Cluster, holder: str, fault: Fault, findings: Findings) -> None:
    node = cluster.nodes[holder]
    if not fault.in_heartbeat:
        node.process.signal(fault.signal)
        if fault.signal is signal.SIGKILL:
            await asyncio.to_thread(node.process.wait, 10)
        return
    relay = cluster.relays[holder]
    relay.arm(node.process.proc.pid, *HEARTBEAT_WRITE)
    try:
        await asyncio.wait_for(relay.frozen.wait(), 3 * HEARTBEAT_SECONDS + 2)
    except TimeoutError:
        raise AssertionError(
            f"{holder} sent no heartbeat UPDATE of report_executions through its store "
            f"connection within {3 * HEARTBEAT_SECONDS + 2:.0f} s"
        ) from None
    findings.evidence.append(f"{holder} frozen right after sending: {relay.statement!r}")


async def _while_frozen(
    store: Store,
    lost: dict[str, Any],
    configs: dict[str, int],
    frozen_at: float,
    cluster: Cluster,
    source: Source,
) -> tuple[dict[str, Any], dict[str, Any], str | None]:
    """Watch the store until both lost runs are marked and recovered, or their time is up (the
    mark within MARK_WITHIN_SECONDS of the freeze, the recovery within QUERY_SECONDS +
    RECOVERY_SLACK_SECONDS of its mark). Returns the marked rows and the recoveries that
    COMPLETED in time, by kind, and the store server's lock picture taken at the first lock
    wait on the test's databases (None when no statement waited)."""
    marked: dict[str, Any] = {}
    recovered: dict[str, Any] = {}
    picture: str | None = None
    while True:
        now = time.time()
        if picture is None and await asyncio.to_thread(lock_waits_on, cluster.databases(source)):
            picture = await asyncio.to_thread(cluster.picture, source)
        for kind, row in lost.items():
            if kind not in marked:
                (current,) = await _rows(store, E.c.id == row.id)
                if current.status != "RUNNING":
                    marked[kind] = current
            if kind in marked and kind not in recovered:
                done = await _rows(
                    store,
                    E.c.config_id == configs[kind],
                    E.c.trigger_type == "recovery",
                    E.c.status == "COMPLETED",
                )
                due = marked[kind].finished_at.timestamp() + QUERY_SECONDS + RECOVERY_SLACK_SECONDS
                if done and done[0].finished_at.timestamp() <= due:
                    recovered[kind] = done[0]
        if len(recovered) == len(lost):
            return marked, recovered, picture
        if len(marked) < len(lost):
            deadline = frozen_at + MARK_WITHIN_SECONDS
        else:
            deadline = max(
                row.finished_at.timestamp() + QUERY_SECONDS + RECOVERY_SLACK_SECONDS
                for row in marked.values()
            )
        if now > deadline:
            return marked, recovered, picture
        await asyncio.sleep(0.2)


def _clock(moment: datetime | None) -> str:
    return f"{moment:%H:%M:%S.%f}" if moment is not None else "-"


def _describe(
    rows: list[Any], logs: list[Any], roles: dict[str, str], methods: dict[int, str]
) -> str:
    lines = ["executions:"]
    lines += [
        f"  {roles.get(r.id, 'unexpected')} {r.id} {r.trigger_type} on {r.node_id}: {r.status}, "
        f"started {_clock(r.started_at)} finished {_clock(r.finished_at)}, "
        f"recovers {r.recovers_id}, error {r.error_message!r}"
        for r in rows
    ]
    lines.append("delivery log:")
    lines += [
        f"  {roles.get(log.execution_id, log.execution_id)} {methods.get(log.delivery_id)} "
        f"attempt {log.attempt}: {log.status} at {_clock(log.finished_at)} -> {log.target} "
        f"{log.error_message or ''}"
        for log in logs
    ]
    return "\n".join(lines)


def _check_report(
    findings: Findings,
    kind: str,
    original: Any,
    rows: list[Any],
    logs: list[Any],
    deliveries: dict[str, int],
    copies: dict[str, list[str]],
    healthy: str,
) -> None:
    """The end state of one report: its lost run FAILED, one COMPLETED recovery on the healthy
    node and nothing else, one SUCCESS per delivery (the recovery's), one copy per peer."""
    recoveries = [r for r in rows if r.trigger_type == "recovery"]
    (final,) = [r for r in rows if r.id == original.id]
    findings.check(
        final.status == "FAILED" and (final.error_message or "").startswith("node lost"),
        f"{kind}: after the wake the lost run is {final.status} {final.error_message!r}",
    )
    findings.check(len(recoveries) == 1, f"{kind}: {len(recoveries)} recovery runs, expected one")
    findings.check(
        len(rows) == 2, f"{kind}: {len(rows)} executions, expected the lost run and its recovery"
    )
    first = recoveries[0] if recoveries else None
    if first is not None:
        findings.check(
            (first.status, first.recovers_id, first.node_id) == ("COMPLETED", original.id, healthy),
            f"{kind}: the recovery is {first.status} on {first.node_id} recovering "
            f"{first.recovers_id}; expected COMPLETED on {healthy} recovering {original.id}",
        )
        if kind == "scheduled":
            findings.check(
                (first.schedule_id, first.scheduled_for, first.attempt)
                == (original.schedule_id, original.scheduled_for, 1),
                f"scheduled: the recovery is not attempt 1 of the fire: {first}",
            )
    ours = [log for log in logs if log.execution_id in {r.id for r in rows}]
    success = Counter(log.delivery_id for log in ours if log.status == "SUCCESS")
    for method, delivery_id in deliveries.items():
        findings.check(
            success[delivery_id] == 1,
            f"{kind}/{method}: {success[delivery_id]} SUCCESS delivery rows, expected one",
        )
    delivered_by = {log.execution_id for log in ours if log.status == "SUCCESS"}
    findings.check(
        delivered_by <= {first.id if first is not None else None},
        f"{kind}: SUCCESS delivery rows of other runs than the recovery: {delivered_by}",
    )
    findings.check(
        not any(
            log.execution_id == original.id and log.status in ("SUCCESS", "RETRYING")
            for log in ours
        ),
        f"{kind}: the lost run delivered (or has a delivery retry pending)",
    )
    for method in METHODS:
        findings.check(
            len(copies[method]) == 1,
            f"{kind}/{method}: {len(copies[method])} copies at the peer, expected one: "
            f"{copies[method]}",
        )


@pytest.mark.timeout(240)
@pytest.mark.parametrize("fault", FAULTS, ids=[f.name for f in FAULTS])
async def test_a_frozen_or_killed_node_s_runs_reach_every_peer_once_through_their_recovery(
    tmp_path: Path,
    pause_store: tuple[Store, str],
    my_source: Source,
    pause_peers: Peers,
    fault: Fault,
) -> None:
    store, url = pause_store
    began = time.monotonic()
    findings = Findings()
    names, configs, deliveries = await _seed(
        store, my_source, pause_peers, f"pause-{fault.name}-{servers.SESSION}"
    )
    cluster = Cluster(tmp_path, url)
    try:
        for name in NODES:
            if fault.in_heartbeat:
                cluster.relays[name] = FreezingRelay()
                await cluster.relays[name].start()
            # one after the other: two registrations in the same instant can deadlock on MariaDB
            await cluster.start(name)
        holder, lost = await _start_both_runs(store, cluster, configs, my_source)
        (healthy,) = set(NODES) - {holder}
        await _stop_holder(cluster, holder, fault, findings)
        frozen_at = time.time()

        marked, recovered, waiting = await _while_frozen(
            store, lost, configs, frozen_at, cluster, my_source
        )
        for kind in KINDS:
            row = marked.get(kind)
            findings.check(
                row is not None
                and row.status == "FAILED"
                and (row.error_message or "").startswith("node lost"),
                f"{kind}: the lost run is not marked FAILED node lost within "
                f"{MARK_WITHIN_SECONDS:.0f} s of the freeze, while {holder} was frozen: "
                + (f"{row.status} {row.error_message!r}" if row is not None else "still RUNNING"),
            )
            findings.check(
                kind in recovered or kind not in marked,
                f"{kind}: no recovery COMPLETED within {QUERY_SECONDS} s + "
                f"{RECOVERY_SLACK_SECONDS:.0f} s of the lost mark while {holder} was frozen",
            )
        if fault.signal is signal.SIGSTOP:
            assert _is_frozen(cluster.nodes[holder]), f"{holder} woke before the checks"
        if waiting is not None:
            findings.evidence.append(f"store server at the first lock wait:\n{waiting}")
        if len(recovered) < len(KINDS):  # why: the store server's view while still frozen
            picture = await asyncio.to_thread(cluster.picture, my_source)
            findings.evidence.append(f"store server while {holder} was still frozen:\n{picture}")
        timings = {
            "lost marked after": {
                k: round(r.finished_at.timestamp() - frozen_at, 1) for k, r in marked.items()
            },
            "recovered after the mark": {
                k: round(r.finished_at.timestamp() - marked[k].finished_at.timestamp(), 1)
                for k, r in recovered.items()
            },
            "frozen for": round(time.time() - frozen_at, 1),
        }

        # Wake (or restart) the first node, and give it every chance to deliver or misjudge.
        if fault.signal is signal.SIGSTOP:
            cluster.nodes[holder].process.signal(signal.SIGCONT)
        else:
            await cluster.start(holder)
        woke_at = time.monotonic()

        async def quiet() -> bool:
            busy = await _rows(store, E.c.status.in_(["PENDING", "RUNNING"]))
            return not busy and time.monotonic() - woke_at >= AFTER_WAKE_SECONDS

        await _wait("nothing PENDING or RUNNING after the wake", quiet, AFTER_WAKE_SECONDS + 90)
        warnings = cluster.warnings()
    finally:
        await cluster.close()

    rows = await _rows(store)
    logs = await _logs(store)
    methods = {d: m for per_kind in deliveries.values() for m, d in per_kind.items()}
    roles: dict[str, str] = {}
    for kind, config_id in configs.items():
        mine = [r for r in rows if r.config_id == config_id]
        roles[lost[kind].id] = f"{kind}/lost"
        for number, r in enumerate(x for x in mine if x.trigger_type == "recovery"):
            roles[r.id] = f"{kind}/recovery" + (f"#{number + 1}" if number else "")
        copies = pause_peers.copies(names[kind])
        findings.evidence.append(f"{kind} copies: {copies}")
        _check_report(findings, kind, lost[kind], mine, logs, deliveries[kind], copies, healthy)
    misjudged = [
        (r.id, r.error_message)
        for r in rows
        if r.node_id == healthy and (r.error_message or "").startswith("node lost")
    ]
    findings.check(not misjudged, f"runs of the healthy node {healthy} marked lost: {misjudged}")
    recovery_rows = sum(r.trigger_type == "recovery" for r in rows)
    findings.check(
        recovery_rows == len(KINDS), f"{recovery_rows} recovery rows in all, expected {len(KINDS)}"
    )
    findings.check(all(r.status in TERMINAL for r in rows), "an execution is not terminal")

    summary = (
        f"{fault.name}: {holder} held both runs, {healthy} recovered; {timings}; "
        f"case took {time.monotonic() - began:.0f} s"
    )
    print(summary)
    report = [_describe(rows, logs, roles, methods), *findings.evidence, *warnings]
    if findings.problems:
        pytest.fail("\n".join([summary, *findings.problems, "", *report]), pytrace=False)
