"""Data-driven runs through the engine and the real delivery ledger (SQLite store, a SQLite
data source, a local webhook receiver): each driver row becomes one child run with its own file
and delivery; the parent ends with the counts; a bad driver fails the parent, naming the column
or the key, before anything is sent."""

from __future__ import annotations

import csv
import io
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from reporthubd import domain
from reporthubd.domain import TriggerType
from reporthubd.engine import Engine, dryrun
from reporthubd.engine.ledger import DeliveryLedger
from reporthubd.store import audiences as audience_rows
from reporthubd.store import executions, schema
from reporthubd.store.database import Store
from tests.deliverers.peers import WebhookReceiver
from tests.deliverers.peers import wait_until as peers_wait
from tests.engine.conftest import add_config, add_datasource, engine_settings, run_to_end

BRANCHES = 40


@pytest.fixture
async def receiver() -> AsyncIterator[WebhookReceiver]:
    hook = WebhookReceiver()
    await hook.start()
    yield hook
    await hook.stop()


@pytest.fixture
def data(tmp_path: Path) -> Path:
    path = tmp_path / "data.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE branches (code TEXT, manager TEXT, city TEXT)")
        conn.execute("CREATE TABLE sales (branch TEXT, amount INTEGER)")
        conn.executemany(
            "INSERT INTO branches VALUES (?, ?, ?)",
            [(f"B{i:03d}", f"m{i}@example.com", f"City {i}") for i in range(BRANCHES)],
        )
        conn.executemany(
            "INSERT INTO sales VALUES (?, ?)",
            [(f"B{i:03d}", i * 10 + n) for i in range(BRANCHES) for n in range(i % 4)],
        )
    conn.close()
    return path


async def add_driver(
    store: Store, config_id: int, datasource_id: int, query: str, **values: Any
) -> None:
    async with store.engine.begin() as conn:
        await conn.execute(
            sa.insert(schema.audience_drivers).values(
                config_id=config_id, datasource_id=datasource_id, query_text=query, **values
            )
        )


async def add_webhook(store: Store, config_id: int, url: str) -> None:
    async with store.engine.begin() as conn:
        await conn.execute(
            sa.insert(schema.deliveries).values(
                config_id=config_id,
                name=f"hook-{config_id}",
                method="webhook",
                delivery_config={"url": url, "mode": "multipart"},
            )
        )


@pytest.fixture
async def engine(tmp_path: Path, engine_store: Store) -> AsyncIterator[Engine]:
    settings = engine_settings(tmp_path, max_concurrent_executions=4)
    ledger = DeliveryLedger(settings, engine_store, node_id="test-node")
    eng = Engine(settings, engine_store, node_id="test-node", deliveries=ledger)
    await eng.start()
    yield eng
    await eng.stop()


async def children(store: Store, burst_id: str) -> list[Any]:
    a, e = schema.audiences, schema.executions
    async with store.engine.connect() as conn:
        return list(
            (
                await conn.execute(
                    sa.select(a.c.audience_key, e.c.status, e.c.trigger_type, e.c.row_count)
                    .join(e, e.c.id == a.c.child_id)
                    .where(a.c.burst_id == burst_id)
                )
            ).all()
        )


async def test_each_branch_gets_its_own_file(
    engine: Engine, engine_store: Store, data: Path, receiver: WebhookReceiver
) -> None:
    ds = await add_datasource(engine_store, "sqlite", {"path": str(data)})
    config = await add_config(
        engine_store,
        ds,
        "SELECT branch, amount FROM sales WHERE branch = :branch ORDER BY amount",
        name="Branch statement",
        file_name_template="statement_{{ branch }}",
        empty_result_policy="skip",
    )
    await add_driver(
        engine_store,
        config,
        ds,
        "SELECT code AS branch, manager AS recipients, 'st_' || code AS file_name FROM branches",
        key_column="branch",
    )
    await add_webhook(engine_store, config, receiver.url)

    parent = await run_to_end(engine, config)

    assert parent.status.value == "COMPLETED", parent.error_message
    assert parent.row_count == BRANCHES
    burst = await audience_rows.get_burst(engine_store, parent.id)
    assert burst is not None
    empty = sum(1 for i in range(BRANCHES) if i % 4 == 0)
    assert (burst.audiences, burst.delivered, burst.failed, burst.skipped) == (
        BRANCHES,
        BRANCHES - empty,
        0,
        empty,
    )
    rows = await children(engine_store, parent.id)
    assert len(rows) == BRANCHES
    assert {r.trigger_type for r in rows} == {TriggerType.AUDIENCE.value}
    assert {r.status for r in rows} == {"COMPLETED"}
    keys = [hit.headers["Idempotency-Key"] for hit in receiver.hits]
    assert len(keys) == len(set(keys)) == BRANCHES - empty
    seen = set()
    for hit in receiver.hits:
        metadata, body = hit.multipart_file()
        table = list(csv.reader(io.StringIO(body.decode())))
        branch = table[1][0]
        assert {row[0] for row in table[1:]} == {branch}  # its own rows only
        assert metadata["file"]["name"] == f"st_{branch}.csv"
        assert metadata["parameters"]["branch"] == branch
        seen.add(branch)
    assert len(seen) == BRANCHES - empty


@pytest.mark.parametrize(
    ("driver", "key_column", "expected"),
    [
        (
            "SELECT code AS branch, manager AS recipients FROM branches UNION ALL "
            "SELECT 'B003', 'x@example.com'",
            "branch",
            "duplicate audience key 'B003'",
        ),
        (
            "SELECT code AS branch, manager AS recipients, city AS town FROM branches",
            "branch",
            "driver column 'town' is not a parameter of report",
        ),
        (
            "SELECT code AS branch, manager AS recipients FROM branches",
            "code",
            "driver key_column 'code' is not a column of the driver query",
        ),
        (
            "SELECT code AS branch, manager AS recipients, 'Mars/Olympus' AS timezone "
            "FROM branches",
            None,
            "timezone 'Mars/Olympus' is not an IANA time zone",
        ),
    ],
)
async def test_a_bad_driver_sends_nothing(
    engine: Engine,
    engine_store: Store,
    data: Path,
    receiver: WebhookReceiver,
    driver: str,
    key_column: str | None,
    expected: str,
) -> None:
    ds = await add_datasource(engine_store, "sqlite", {"path": str(data)})
    config = await add_config(
        engine_store, ds, "SELECT branch, amount FROM sales WHERE branch = :branch"
    )
    await add_driver(engine_store, config, ds, driver, key_column=key_column)
    await add_webhook(engine_store, config, receiver.url)

    parent = await run_to_end(engine, config)

    assert parent.status.value == "FAILED"
    assert expected in (parent.error_message or "")
    assert receiver.hits == []
    assert await children(engine_store, parent.id) == []


async def test_a_row_without_recipients_fails_an_email_report(
    engine: Engine, engine_store: Store, data: Path
) -> None:
    ds = await add_datasource(engine_store, "sqlite", {"path": str(data)})
    config = await add_config(
        engine_store, ds, "SELECT branch, amount FROM sales WHERE branch = :branch"
    )
    await add_driver(
        engine_store,
        config,
        ds,
        "SELECT code AS branch, CASE WHEN code = 'B007' THEN NULL ELSE manager END AS recipients "
        "FROM branches",
        key_column="branch",
    )
    async with engine_store.engine.begin() as conn:
        await conn.execute(
            sa.insert(schema.deliveries).values(
                config_id=config, name="mail", method="email", delivery_config={}
            )
        )
    parent = await run_to_end(engine, config)
    assert parent.status.value == "FAILED"
    assert parent.error_message == (
        "driver row 8 (audience 'B007') has no recipients in column 'recipients'"
    )


async def test_a_report_without_a_driver_runs_as_before(
    engine: Engine, engine_store: Store, data: Path
) -> None:
    ds = await add_datasource(engine_store, "sqlite", {"path": str(data)})
    config = await add_config(engine_store, ds, "SELECT code FROM branches")
    run = await run_to_end(engine, config)
    assert run.status.value == "COMPLETED" and run.row_count == BRANCHES
    assert await audience_rows.get_burst(engine_store, run.id) is None
    assert (await executions.get_execution(engine_store, run.id)) is not None


async def test_the_dry_run_lists_what_a_run_sends(
    tmp_path: Path, engine: Engine, engine_store: Store, data: Path, receiver: WebhookReceiver
) -> None:
    ds = await add_datasource(engine_store, "sqlite", {"path": str(data)})
    config = await add_config(
        engine_store,
        ds,
        "SELECT branch, amount FROM sales WHERE branch = :branch AND amount >= :floor",
        parameters={"floor": 0},
    )
    await add_driver(engine_store, config, ds, "SELECT code AS branch FROM branches")
    await add_webhook(engine_store, config, receiver.url)
    settings = engine_settings(tmp_path)

    listing = await dryrun.dry_run(engine_store, settings, config, parameters={"floor": "5"})
    async with engine_store.engine.connect() as conn:
        written = (
            await conn.execute(sa.select(sa.func.count()).select_from(schema.executions))
        ).scalar()
    assert written == 0  # nothing run
    parent = await run_to_end(engine, config, parameters={"floor": "5"})

    assert parent.status.value == "COMPLETED", parent.error_message
    assert len(listing.audiences) == BRANCHES
    assert {e["targets"][0].split(":")[0] for e in listing.audiences} == {"webhook"}
    sent = sorted(
        (
            hit.multipart_file()[0]["parameters"]["branch"],
            hit.multipart_file()[0]["parameters"]["floor"],
        )
        for hit in receiver.hits
    )
    listed = sorted(
        (e["parameters"]["branch"], e["parameters"]["floor"]) for e in listing.audiences
    )
    assert sent == listed
    with pytest.raises(dryrun.NoDriver):
        await dryrun.dry_run(engine_store, settings, config + 1000)


async def test_a_drain_leaves_the_parent_running_for_its_recovery(
    tmp_path: Path, engine_store: Store, data: Path, receiver: WebhookReceiver
) -> None:
    settings = engine_settings(tmp_path, max_concurrent_executions=1)
    ledger = DeliveryLedger(settings, engine_store, node_id="test-node")
    engine = Engine(settings, engine_store, node_id="test-node", deliveries=ledger)
    await engine.start()
    ds = await add_datasource(engine_store, "sqlite", {"path": str(data)})
    config = await add_config(
        engine_store, ds, "SELECT branch, amount FROM sales WHERE branch = :branch"
    )
    await add_driver(engine_store, config, ds, "SELECT code AS branch FROM branches")
    await add_webhook(engine_store, config, receiver.url)
    parent = await engine.create_and_submit(config, trigger_type=TriggerType.MANUAL)
    await peers_wait(lambda: len(receiver.hits) >= 3)
    await engine.drain(0)

    row = await executions.get_execution(engine_store, parent)
    assert row is not None and row.status.value == "RUNNING"  # for the recovery sweep
    counts = await audience_rows.counts(engine_store, parent)
    assert counts.audiences == BRANCHES and counts.unfinished > 0
    burst = await audience_rows.get_burst(engine_store, parent)
    assert burst is not None and burst.finished_at is None


async def test_the_role_of_a_run(engine_store: Store, data: Path) -> None:
    ds = await add_datasource(engine_store, "sqlite", {"path": str(data)})
    config = await add_config(engine_store, ds, "SELECT 1 WHERE 1 = :branch")
    plain = await add_config(engine_store, ds, "SELECT 1")
    await add_driver(engine_store, config, ds, "SELECT code AS branch FROM branches")

    def run(config_id: int, execution_id: str, recovers_id: str | None = None) -> Any:
        return domain.Execution(
            id=execution_id,
            config_id=config_id,
            schedule_id=None,
            trigger_type=TriggerType.MANUAL,
            scheduled_for=None,
            status=domain.ExecutionStatus.PENDING,
            recovers_id=recovers_id,
        )

    assert await audience_rows.role(engine_store, run(plain, "p1")) == audience_rows.Role()
    assert (await audience_rows.role(engine_store, run(config, "p2"))).is_parent
    await audience_rows.open_burst(engine_store, "p2", config)
    audience = audience_rows.Audience(burst_id="p2", key="B1", seq=0, parameters={"branch": "B1"})
    await audience_rows.add_audiences(engine_store, [audience])
    child = await audience_rows.role(engine_store, run(config, audience.child_id))
    assert child.audience == audience and not child.is_parent
    recovered_child = await audience_rows.role(
        engine_store, run(config, "r1", recovers_id=audience.child_id)
    )
    assert recovered_child.audience == audience
    async with engine_store.engine.begin() as conn:
        await conn.execute(sa.update(schema.audience_drivers).values(is_active=False))
    assert await audience_rows.role(engine_store, run(config, "p3")) == audience_rows.Role()
    # The recovery of a parent whose burst started carries on, driver switched off or not.
    assert (await audience_rows.role(engine_store, run(config, "p4", recovers_id="p2"))).is_parent
