"""The store's pooled connections, against the running MariaDB and PostgreSQL: a connection idle
for a while is pinged and replaced when dead; a connection returned with work left open is
rolled back; a claim on MariaDB is one round trip, its bookkeeping included, and a failed
bookkeeping write leaves the claim standing. The claim line (the connection kept for claims,
database.ClaimLine) is replaced when the server killed it, idle or not, and no claim is lost or
doubled by it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
import structlog

from reporthubd.config import StoreSettings
from reporthubd.store import claims, database, migrate, schema
from reporthubd.store.database import Store, driver_of
from reporthubd.store.journal import unreachable
from tests import servers
from tests.scheduler.helpers import add_schedule, seed_config
from tests.servers import TestDatabase as Database

SERVERS = ("mariadb", "postgresql")


@pytest.fixture(params=SERVERS)
def server_database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    db = servers.create_database(str(request.param), tmp_path)
    yield db
    db.drop()


@pytest.fixture
def mariadb_database(tmp_path: Path) -> Iterator[Database]:
    db = servers.create_database("mariadb", tmp_path)
    yield db
    db.drop()


async def _single(db: Database) -> Store:
    """A migrated store whose pool keeps a single connection, so that consecutive uses share
    it."""
    store = Store(StoreSettings(url=db.url, pool_size=1))
    await store.start()
    await migrate.upgrade(store)
    return store


@pytest.fixture
async def one_connection(server_database: Database) -> AsyncIterator[Store]:
    store = await _single(server_database)
    yield store
    await store.stop()


@pytest.fixture
async def one_mariadb_connection(mariadb_database: Database) -> AsyncIterator[Store]:
    store = await _single(mariadb_database)
    yield store
    await store.stop()


async def _session_id(store: Store) -> int:
    query = "SELECT CONNECTION_ID()" if store.dialect == "mysql" else "SELECT pg_backend_pid()"
    async with store.engine.connect() as conn:
        return int((await conn.execute(sa.text(query))).scalar_one())


async def _kill(store: Store, session: int) -> None:
    if store.dialect == "mysql":
        servers._mariadb_admin(f"KILL {session}")
    else:
        await servers._pg_admin(f"SELECT pg_terminate_backend({session})")


async def _kill_the_pooled_connection(store: Store) -> int:
    """Use the pool's only connection, then have the server kill it; returns its session."""
    session = await _session_id(store)
    await _kill(store, session)
    return session


async def test_an_idle_dead_connection_is_replaced_at_checkout(
    one_connection: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = one_connection
    monkeypatch.setattr(database, "PING_AFTER_IDLE_SECONDS", 0.0)
    first = await _kill_the_pooled_connection(store)
    # the ping at checkout finds it dead: the pool connects anew and the query succeeds
    second = await _session_id(store)
    assert second != first


async def test_a_recently_used_dead_connection_fails_once_then_is_replaced(
    one_connection: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = one_connection
    monkeypatch.setattr(database, "PING_AFTER_IDLE_SECONDS", 3600.0)
    first = await _kill_the_pooled_connection(store)
    # not pinged (used a moment ago): the statement fails, and the pool drops the connection
    with pytest.raises(sa.exc.DBAPIError) as failed:
        await _session_id(store)
    assert failed.value.connection_invalidated
    assert await _session_id(store) != first


async def test_work_left_open_on_a_returned_connection_is_rolled_back(
    one_connection: Store,
) -> None:
    """The pool's own rollback-on-return is replaced (database._reset_unless_clean): an INSERT
    sent behind SQLAlchemy's back (on the DBAPI cursor) and never committed must not survive
    the connection's return, nor be committed by its next user."""
    store = one_connection
    config_id = await seed_config(store)
    placeholder = "%s" if store.dialect == "mysql" else "$1"
    insert = (
        "INSERT INTO report_schedules (config_id, cron_expression) "
        f"VALUES ({placeholder}, '* * * * *')"
    )

    def insert_uncommitted(sync_conn: sa.Connection) -> None:
        dbapi = sync_conn.connection.dbapi_connection
        assert dbapi is not None
        dbapi.cursor().execute(insert, (config_id,))

    async with store.engine.connect() as conn:
        await conn.run_sync(insert_uncommitted)
    async with store.engine.begin() as conn:  # the same (only) connection; commits
        query = sa.select(sa.func.count()).select_from(schema.schedules)
        count = (await conn.execute(query)).scalar()
    assert count == 0


async def _session_counters(store: Store) -> dict[str, int]:
    """The claim line's statement counters, read without a statement of their own: SHOW STATUS
    counts as none of them and starts no transaction."""
    async with store.claim_line.connect() as conn, (await driver_of(conn)).cursor() as cursor:
        await cursor.execute(
            "SHOW SESSION STATUS WHERE Variable_name IN "
            "('Com_insert', 'Com_update', 'Com_select', 'Com_commit', 'Com_rollback')"
        )
        rows = await cursor.fetchall()
    return {name: int(value) for name, value in rows}


async def test_a_claim_on_mariadb_is_one_round_trip_with_its_bookkeeping(
    one_mariadb_connection: Store,
) -> None:
    store = one_mariadb_connection
    config_id = await seed_config(store)
    schedule_id = await add_schedule(store, config_id, "* * * * *")
    fire = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)
    following = fire + timedelta(minutes=1)
    before = await _session_counters(store)
    claimed, _ = await claims.claim_fires(
        store,
        [claims.FireClaim(schedule_id=schedule_id, config_id=config_id, scheduled_for=fire)],
        node_id="node-a",
        then_record=[(schedule_id, fire, following)],
    )
    after = await _session_counters(store)
    async with store.engine.connect() as conn:
        query = sa.select(schema.schedules.c.last_run_at, schema.schedules.c.next_run_at)
        row = (await conn.execute(query)).one()
    assert len(claimed) == 1
    assert (row.last_run_at, row.next_run_at) == (fire, following)
    change = {name: after[name] - before[name] for name in before}
    # one UPDATE and one INSERT, committed together; no read-back SELECT, no ROLLBACK on
    # return (the SHOW STATUS that reads the counters is not a Com_select)
    assert change == {
        "Com_insert": 1,
        "Com_update": 1,
        "Com_select": 0,
        "Com_commit": 1,
        "Com_rollback": 0,
    }


async def test_a_failed_bookkeeping_write_leaves_the_claim_standing(
    one_mariadb_connection: Store, mariadb_database: Database
) -> None:
    """The schedule row is locked by another session, so the claim's UPDATE of last_run_at
    (the first statement of its transaction) times out: the claim is sent again alone,
    committed and returned, the failure is logged, and the connection is clean for its next
    user."""
    import pymysql

    store = one_mariadb_connection
    config_id = await seed_config(store)
    schedule_id = await add_schedule(store, config_id, "* * * * *")
    async with store.claim_line.connect() as conn:
        await conn.exec_driver_sql("SET SESSION innodb_lock_wait_timeout = 1")
        session = (await conn.exec_driver_sql("SELECT CONNECTION_ID()")).scalar()
        await conn.commit()
    admin = pymysql.connect(
        host=servers.MARIADB_HOST,
        port=servers.MARIADB_PORT,
        user="root",
        database=mariadb_database.name,
        autocommit=True,
    )
    locker = pymysql.connect(
        host=servers.MARIADB_HOST,
        port=servers.MARIADB_PORT,
        user="root",
        database=mariadb_database.name,
    )
    try:
        with locker.cursor() as cursor:
            cursor.execute("BEGIN")
            cursor.execute(
                "SELECT id FROM report_schedules WHERE id = %s FOR UPDATE", (schedule_id,)
            )
        fire = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)
        with structlog.testing.capture_logs() as logged:
            claimed, _ = await claims.claim_fires(
                store,
                [
                    claims.FireClaim(
                        schedule_id=schedule_id, config_id=config_id, scheduled_for=fire
                    )
                ],
                node_id="node-a",
                then_record=[(schedule_id, fire, fire + timedelta(minutes=1))],
            )
        # the claim line holds no transaction
        with admin.cursor() as cursor:
            cursor.execute(
                "SELECT COUNT(*) FROM information_schema.innodb_trx WHERE trx_mysql_thread_id = %s",
                (session,),
            )
            (open_transactions,) = cursor.fetchone() or (None,)
    finally:
        locker.rollback()
        locker.close()
        admin.close()
    async with store.claim_line.connect() as conn:
        assert (await conn.exec_driver_sql("SELECT CONNECTION_ID()")).scalar() == session
        executions = (await conn.execute(sa.select(schema.executions.c.id))).scalars().all()
        last = (await conn.execute(sa.select(schema.schedules.c.last_run_at))).scalar()
        await conn.rollback()
    assert [c.execution_id for c in claimed] == list(executions)
    assert last is None
    assert open_transactions == 0
    [warning] = [entry for entry in logged if entry["log_level"] == "warning"]
    assert warning["event"] == "writing last_run_at failed"
    assert "Lock wait timeout" in warning["error"]


async def _line_session(store: Store) -> int:
    query = "SELECT CONNECTION_ID()" if store.dialect == "mysql" else "SELECT pg_backend_pid()"
    async with store.claim_line.connect() as conn:
        session = int((await conn.execute(sa.text(query))).scalar_one())
        await conn.rollback()
    return session


async def _claim_one(
    store: Store, schedule_id: int, config_id: int, fire: datetime, *, ids: list[str] | None = None
) -> list[claims.Claimed]:
    claim = claims.FireClaim(schedule_id=schedule_id, config_id=config_id, scheduled_for=fire)
    prepared = claims.ready_claims([claim], node_id="node-a")
    if ids is not None:  # a retry of a claim whose reply was lost: the same id again
        prepared = claims.ready_claims(
            [claim], node_id="node-a", reuse={(schedule_id, fire): ids[0]}
        )
    claimed, _ = await claims.claim_prepared(
        store, prepared, then_record=[(schedule_id, fire, fire + timedelta(minutes=1))]
    )
    return claimed


async def _execution_rows(store: Store) -> list[tuple[str, datetime]]:
    async with store.engine.connect() as conn:
        query = sa.select(schema.executions.c.id, schema.executions.c.scheduled_for)
        return [(row.id, row.scheduled_for) for row in await conn.execute(query)]


async def test_the_claim_line_killed_while_idle_is_replaced_before_the_claim(
    one_connection: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = one_connection
    monkeypatch.setattr(database, "PING_AFTER_IDLE_SECONDS", 0.0)
    config_id = await seed_config(store)
    schedule_id = await add_schedule(store, config_id, "* * * * *")
    fire = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)
    assert len(await _claim_one(store, schedule_id, config_id, fire)) == 1
    first = await _line_session(store)
    await _kill(store, first)
    # the ping before the claim finds it dead: a new line, and the claim goes through
    later = fire + timedelta(minutes=1)
    assert len(await _claim_one(store, schedule_id, config_id, later)) == 1
    assert await _line_session(store) != first
    assert sorted(when for _, when in await _execution_rows(store)) == [fire, later]


async def test_a_claim_on_a_just_killed_line_fails_and_its_retry_is_exact(
    one_connection: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Killed between two claims a moment apart (not pinged): the claim fails as a store
    outage (journal.unreachable), the line is dropped, and the retry with the same id on a
    new line claims the fire once."""
    store = one_connection
    monkeypatch.setattr(database, "PING_AFTER_IDLE_SECONDS", 3600.0)
    config_id = await seed_config(store)
    schedule_id = await add_schedule(store, config_id, "* * * * *")
    fire = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)
    assert len(await _claim_one(store, schedule_id, config_id, fire)) == 1
    first = await _line_session(store)
    await _kill(store, first)
    later = fire + timedelta(minutes=1)
    claim = claims.FireClaim(schedule_id=schedule_id, config_id=config_id, scheduled_for=later)
    prepared = claims.ready_claims([claim], node_id="node-a")
    with pytest.raises(Exception) as failed:
        await claims.claim_prepared(store, prepared)
    assert unreachable(failed.value)
    retried = await _claim_one(store, schedule_id, config_id, later, ids=list(prepared.ids))
    assert [c.execution_id for c in retried] == list(prepared.ids)
    assert await _line_session(store) != first
    rows = await _execution_rows(store)
    assert sorted(when for _, when in rows) == [fire, later]
