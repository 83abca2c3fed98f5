"""Engine fixtures: a migrated SQLite store, source databases on the running PostgreSQL and
MariaDB (one fresh database each, dropped afterwards), and a started Engine."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from reporthubd.config import Settings
from reporthubd.deliverers.base import DeliveryJob, DeliveryReport
from reporthubd.engine import Engine
from reporthubd.store import migrate, schema
from reporthubd.store.database import Store
from tests import servers

_names = itertools.count(1)


@dataclass
class Source:
    type: str
    config: dict[str, Any]
    name: str

    async def execute(self, *statements: str) -> None:
        if self.type == "postgresql":
            import asyncpg

            conn = await asyncpg.connect(
                host=servers.POSTGRES_HOST,
                port=servers.POSTGRES_PORT,
                user="postgres",
                database=self.name,
            )
            try:
                for statement in statements:
                    await conn.execute(statement)
            finally:
                await conn.close()
        else:
            import aiomysql

            conn = await aiomysql.connect(
                host=servers.MARIADB_HOST,
                port=servers.MARIADB_PORT,
                user="root",
                password="",
                db=self.name,
                autocommit=True,
            )
            try:
                async with conn.cursor() as cursor:
                    for statement in statements:
                        await cursor.execute(statement)
            finally:
                conn.close()

    async def fetch(self, query: str) -> list[tuple[Any, ...]]:
        if self.type == "postgresql":
            import asyncpg

            conn = await asyncpg.connect(
                host=servers.POSTGRES_HOST,
                port=servers.POSTGRES_PORT,
                user="postgres",
                database=self.name,
            )
            try:
                return [tuple(r) for r in await conn.fetch(query)]
            finally:
                await conn.close()
        import aiomysql

        conn = await aiomysql.connect(
            host=servers.MARIADB_HOST,
            port=servers.MARIADB_PORT,
            user="root",
            password="",
            db=self.name,
            autocommit=True,
        )
        try:
            async with conn.cursor() as cursor:
                await cursor.execute(query)
                return list(await cursor.fetchall())
        finally:
            conn.close()


def _pg_source() -> Iterator[Source]:
    if not servers._reachable(servers.POSTGRES_HOST, servers.POSTGRES_PORT):
        servers.unavailable("PostgreSQL not reachable")
    name = f"rh_src_{servers.SESSION}_{next(_names)}"
    asyncio.run(servers._pg_admin(f'CREATE DATABASE "{name}"'))
    yield Source(
        "postgresql",
        {
            "host": servers.POSTGRES_HOST,
            "port": servers.POSTGRES_PORT,
            "username": "postgres",
            "database": name,
        },
        name,
    )
    asyncio.run(servers._pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def _my_source() -> Iterator[Source]:
    if not servers._reachable(servers.MARIADB_HOST, servers.MARIADB_PORT):
        servers.unavailable("MariaDB not reachable")
    name = f"rh_src_{servers.SESSION}_{next(_names)}"
    servers._mariadb_admin(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4")
    yield Source(
        "mysql",
        {
            "host": servers.MARIADB_HOST,
            "port": servers.MARIADB_PORT,
            "username": "root",
            "password": "",
            "database": name,
        },
        name,
    )
    servers._mariadb_admin(f"DROP DATABASE IF EXISTS `{name}`")


@pytest.fixture
def pg_source() -> Iterator[Source]:
    yield from _pg_source()


@pytest.fixture
def my_source() -> Iterator[Source]:
    yield from _my_source()


@pytest.fixture(params=["postgresql", "mysql"])
def source(request: pytest.FixtureRequest) -> Iterator[Source]:
    yield from (_pg_source() if request.param == "postgresql" else _my_source())


@pytest.fixture
async def engine_store(tmp_path: Path) -> AsyncIterator[Store]:
    settings = Settings.model_validate({"store": {"url": f"sqlite:///{tmp_path}/store.db"}})
    store = Store(settings.store)
    await store.start()
    await migrate.upgrade(store)
    yield store
    await store.stop()


def engine_settings(tmp_path: Path, **execution: Any) -> Settings:
    return Settings.model_validate(
        {
            "store": {"url": f"sqlite:///{tmp_path}/store.db"},
            "execution": {"workspace": str(tmp_path / "workspace"), **execution},
        }
    )


@dataclass
class RecordingRunner:
    """A DeliveryRunner that records jobs and answers with a preset report."""

    report: DeliveryReport = field(default_factory=DeliveryReport)
    jobs: list[DeliveryJob] = field(default_factory=list)

    async def run(self, job: DeliveryJob) -> DeliveryReport:
        self.jobs.append(job)
        return self.report


@pytest.fixture
async def engine(tmp_path: Path, engine_store: Store) -> AsyncIterator[Engine]:
    runner = RecordingRunner()
    eng = Engine(engine_settings(tmp_path), engine_store, node_id="test-node", deliveries=runner)
    await eng.start()
    yield eng
    await eng.stop()


_unique = itertools.count(1)


async def add_datasource(
    store: Store, kind: str, config: dict[str, Any], *, max_concurrent_queries: int | None = None
) -> int:
    async with store.engine.begin() as conn:
        result = await conn.execute(
            sa.insert(schema.datasources).values(
                name=f"ds-{next(_unique)}",
                type=kind,
                connection_config=config,
                max_concurrent_queries=max_concurrent_queries,
            )
        )
        return int(result.inserted_primary_key[0])


async def add_config(
    store: Store,
    datasource_id: int,
    query: str,
    *,
    output_format: str = "csv",
    **values: Any,
) -> int:
    async with store.engine.begin() as conn:
        result = await conn.execute(
            sa.insert(schema.configs).values(
                name=values.pop("name", f"report-{next(_unique)}"),
                datasource_id=datasource_id,
                query_text=query,
                output_format=output_format,
                **values,
            )
        )
        return int(result.inserted_primary_key[0])


async def add_schedule(store: Store, config_id: int, cron: str, **values: Any) -> int:
    async with store.engine.begin() as conn:
        result = await conn.execute(
            sa.insert(schema.schedules).values(config_id=config_id, cron_expression=cron, **values)
        )
        return int(result.inserted_primary_key[0])


async def add_delivery(store: Store, config_id: int, method: str = "webhook") -> int:
    async with store.engine.begin() as conn:
        result = await conn.execute(
            sa.insert(schema.deliveries).values(
                config_id=config_id,
                name=f"delivery-{next(_unique)}",
                method=method,
                delivery_config={"url": "http://127.0.0.1:9/"},
            )
        )
        return int(result.inserted_primary_key[0])


async def run_to_end(engine: Engine, config_id: int, **kwargs: Any) -> Any:
    """Trigger `config_id` and wait for its task; return the final execution record."""
    from reporthubd.domain import TriggerType
    from reporthubd.store import executions

    execution_id = await engine.create_and_submit(
        config_id, trigger_type=kwargs.pop("trigger_type", TriggerType.MANUAL), **kwargs
    )
    task = engine.task(execution_id)
    if task is not None:
        await asyncio.gather(task, return_exceptions=True)
    return await executions.get_execution(engine.store, execution_id)
