"""Fencing (lifecycle/fencing.py) against a real MariaDB store: `confirm` passes while the run is
RUNNING and this node's, raises OwnershipLost once another node has taken it, and goes on when
the store cannot answer, including when a pooled connection was closed by the server between
two uses (the raw driver error that then comes out of the AUTOCOMMIT switch is an outage, not a
crash: CI saw a run fail "execution crashed" on it while the store was being stopped)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pymysql
import pytest
import sqlalchemy as sa

from reporthubd import domain
from reporthubd.config import StoreSettings
from reporthubd.domain import OwnershipLost
from reporthubd.lifecycle.fencing import Ownership
from reporthubd.store import executions, migrate
from reporthubd.store.database import Store
from reporthubd.store.journal import unreachable
from tests import servers
from tests.engine.conftest import add_config, add_datasource

NODE = "node-a"


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    database = await asyncio.to_thread(servers.create_database, "mariadb", tmp_path)
    store = Store(StoreSettings(url=database.url))
    await store.start()
    await migrate.upgrade(store)
    try:
        yield store
    finally:
        await store.stop()
        await asyncio.to_thread(database.drop)


async def running(store: Store, node_id: str) -> str:
    source = await add_datasource(store, "sqlite", {"database": ":memory:"})
    config_id = await add_config(store, source, "SELECT 1")
    execution_id = await executions.insert_execution(
        store,
        config_id=config_id,
        trigger_type=domain.TriggerType.MANUAL,
        status=domain.ExecutionStatus.RUNNING,
        node_id=node_id,
    )
    assert execution_id is not None
    return execution_id


async def kill_pooled_connection(store: Store) -> None:
    """Close the pool's idle connection from the server's side, as a server going down does."""
    async with store.engine.connect() as conn:
        connection_id = (await conn.execute(sa.text("SELECT CONNECTION_ID()"))).scalar_one()

    def kill() -> None:
        admin = pymysql.connect(
            host=servers.MARIADB_HOST, port=servers.MARIADB_PORT, user="root", password=""
        )
        try:
            with admin.cursor() as cursor:
                cursor.execute("KILL %s", (connection_id,))
        finally:
            admin.close()

    await asyncio.to_thread(kill)
    await asyncio.sleep(0.1)


async def test_confirm_passes_for_this_nodes_run_and_raises_once_another_node_has_it(
    store: Store,
) -> None:
    execution_id = await running(store, NODE)
    ownership = Ownership(store, node_id=NODE)
    ownership.hold(execution_id)
    await ownership.confirm(execution_id, what="recording the file")

    taken = await executions.update_execution(  # another node judged this one lost
        store,
        execution_id,
        only_if_status=(domain.ExecutionStatus.RUNNING,),
        status=domain.ExecutionStatus.FAILED.value,
        error_message="node lost",
    )
    assert taken
    with pytest.raises(OwnershipLost):
        await ownership.confirm(execution_id, what="delivering")
    assert ownership.was_lost(execution_id)
    with pytest.raises(OwnershipLost):  # and from memory, without asking the store again
        await ownership.confirm(execution_id, what="delivering")


async def test_a_pooled_connection_closed_by_the_server_is_an_outage_not_a_crash(
    store: Store,
) -> None:
    execution_id = await running(store, NODE)
    ownership = Ownership(store, node_id=NODE)
    ownership.hold(execution_id)
    await kill_pooled_connection(store)

    await ownership.confirm(execution_id, what="recording the file")  # goes on, does not raise
    assert not ownership.was_lost(execution_id)
    # The pool dropped the dead connection: the next check reaches the store and passes.
    await ownership.confirm(execution_id, what="delivering")


def test_raw_driver_errors_of_a_lost_connection_count_as_unreachable() -> None:
    lost = pymysql.err.OperationalError(2013, "Lost connection to MySQL server during query")
    lost.__cause__ = asyncio.IncompleteReadError(b"", 4)
    assert unreachable(lost)
    assert unreachable(pymysql.err.OperationalError(2006, "MySQL server has gone away"))
    assert unreachable(pymysql.err.InterfaceError(0, "Not connected"))
    assert unreachable(asyncio.IncompleteReadError(b"", 4))
    # A refusal from a server that answered is not an outage.
    assert not unreachable(pymysql.err.OperationalError(1045, "Access denied"))
    assert not unreachable(pymysql.err.IntegrityError(1062, "Duplicate entry"))
    assert not unreachable(ValueError("a bug"))


async def test_a_run_this_node_ended_is_released_not_lost(store: Store) -> None:
    """(A revalidation that raced a run's end called it lost and cancelled its finished task:
    358 times in a 10,000-audience fan-out on one daemon.)"""
    from reporthubd.lifecycle.executions import Lifecycle

    lifecycle = Lifecycle(store, node_id=NODE)
    ended, taken = await running(store, NODE), await running(store, NODE)
    stopped: list[str] = []
    for execution_id in (ended, taken):
        lifecycle.ownership.hold(execution_id, lambda reason, e=execution_id: stopped.append(e))
    execution = await executions.get_execution(store, ended)
    assert execution is not None
    assert await lifecycle.finish(execution, domain.ExecutionStatus.COMPLETED)
    await executions.update_execution(store, taken, status=domain.ExecutionStatus.FAILED)

    # Ended here: released with its final write; ended by another node: lost.
    assert await lifecycle.ownership.revalidate() == {taken}
    assert stopped == [taken]
    assert not lifecycle.ownership.holds(ended) and not lifecycle.ownership.was_lost(ended)

    # A revalidation between the final write and its answer (the row ended, the run still
    # held): marked ending first, it is not lost either.
    racing = await running(store, NODE)
    lifecycle.ownership.hold(racing, lambda reason: stopped.append(racing))
    lifecycle.ownership.ending(racing)
    await executions.update_execution(store, racing, status=domain.ExecutionStatus.COMPLETED)
    assert racing not in await lifecycle.ownership.revalidate()
    assert stopped == [taken]
