"""How each contract source is reached here: a real server, a fallback server started for the
session, or (Oracle, SQL Server without their servers) only the cases that need no server."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from reporthubd.domain import DatasourceType
from tests import servers
from tests.connectors import fallback_servers, sources

Builder = Callable[[pytest.TempPathFactory], Iterator[sources.Source]]
SOURCES: dict[str, Builder] = {}
KINDS: dict[str, str] = {}
"""Source label → datasource type (several labels exercise one connector)."""


def builder(label: str, kind: str | None = None) -> Callable[[Builder], Builder]:
    def register(fn: Builder) -> Builder:
        SOURCES[label] = fn
        KINDS[label] = kind or label.split("-")[0]
        return fn

    return register


@builder("mongodb")
def nx_mongodb(factory: pytest.TempPathFactory) -> Iterator[sources.Source]:
    missing = fallback_servers.nx_available()
    if missing:
        servers.unavailable(missing)
    server = fallback_servers.NxMongo(factory.mktemp("nx"))
    for rows in (sources.ROWS, sources.EARLY_ROWS):
        server.seed(f"rows{rows}", rows, "x" * sources.ROW_TEXT)
    server.start()
    try:
        source = sources.mongo_source(server.uri, "rh_contract", real=False, seeded=True)
        yield source
        source.extra["client"].close()
    finally:
        server.stop()


@builder("mongodb-real")
def real_mongodb(factory: pytest.TempPathFactory) -> Iterator[sources.Source]:
    uri = os.environ.get("REPORTHUB_TEST_MONGODB_URI")
    if not uri:
        pytest.skip("REPORTHUB_TEST_MONGODB_URI is not set (real MongoDB variant)")
    database = f"rh_contract_{servers.SESSION}"
    source = sources.mongo_source(uri, database, real=True)
    yield source
    source.extra["client"].drop_database(database)
    source.extra["client"].close()


@builder("bigquery")
def bqemulator(factory: pytest.TempPathFactory) -> Iterator[sources.Source]:
    missing = fallback_servers.bqemulator_available()
    if missing:
        servers.unavailable(missing)
    server = fallback_servers.BigQueryEmulator(factory.mktemp("bqemulator"))
    server.start()
    try:
        source = sources.bigquery_source(server.endpoint)
        yield source
        source.extra["client"].close()
    finally:
        server.stop()


@builder("snowflake")
def fakesnow(factory: pytest.TempPathFactory) -> Iterator[sources.Source]:
    missing = fallback_servers.fakesnow_available()
    if missing:
        servers.unavailable(missing)
    server = fallback_servers.FakeSnowflake(factory.mktemp("fakesnow"))
    server.start()
    try:
        yield sources.snowflake_source(server.port)
    finally:
        server.stop()


def _database(backend: str, factory: pytest.TempPathFactory) -> Iterator[servers.TestDatabase]:
    database = servers.create_database(backend, factory.mktemp(backend))
    try:
        yield database
    finally:
        database.drop()


def _pg_guard(name: str) -> None:
    async def create() -> None:
        import asyncpg

        conn = await asyncpg.connect(
            host=servers.POSTGRES_HOST, port=servers.POSTGRES_PORT, user="postgres", database=name
        )
        try:
            await conn.execute("CREATE TABLE rh_guard (x integer)")
        finally:
            await conn.close()

    asyncio.run(create())


def _pg_config(name: str, **extra: Any) -> dict[str, Any]:
    return {
        "host": servers.POSTGRES_HOST,
        "port": servers.POSTGRES_PORT,
        "database": name,
        "username": "postgres",
        "password": "",
        "options": {"connect_timeout_seconds": 5},
        **extra,
    }


def _mariadb_config(name: str, **extra: Any) -> dict[str, Any]:
    return {
        "host": servers.MARIADB_HOST,
        "port": servers.MARIADB_PORT,
        "database": name,
        "username": "root",
        "password": "",
        "options": {"connect_timeout_seconds": 5},
        **extra,
    }


@builder("postgresql")
def postgresql(factory: pytest.TempPathFactory) -> Iterator[sources.Source]:
    for database in _database("postgresql", factory):
        _pg_guard(database.name)
        yield sources.postgres_like(
            DatasourceType.POSTGRESQL,
            "postgresql",
            _pg_config(database.name),
            database.name,
            31,
            odbc=False,
        )


@builder("mysql")
def mysql(factory: pytest.TempPathFactory) -> Iterator[sources.Source]:
    for database in _database("mariadb", factory):
        sources.mariadb_admin("CREATE TABLE rh_guard (x integer)", database.name)
        yield sources.mariadb_like(
            DatasourceType.MYSQL,
            "mysql",
            _mariadb_config(database.name),
            database.name,
            33,
            odbc=False,
        )


@builder("sqlite")
def sqlite(factory: pytest.TempPathFactory) -> Iterator[sources.Source]:
    yield sources.sqlite_source(factory.mktemp("sqlite") / "contract.db")


def _odbc_ready(driver: str) -> None:
    if not fallback_servers.odbc_driver_registered(driver):
        servers.unavailable(
            f"ODBC driver [{driver}] not registered (apt-get install unixodbc odbc-postgresql "
            "odbc-mariadb)"
        )


@builder("sqlserver-odbc-postgresql")
def odbc_postgresql(factory: pytest.TempPathFactory) -> Iterator[sources.Source]:
    _odbc_ready("PostgreSQL Unicode")
    for database in _database("postgresql", factory):
        _pg_guard(database.name)
        config = _pg_config(database.name, driver="PostgreSQL Unicode")
        yield sources.postgres_like(
            DatasourceType.SQLSERVER,
            "sqlserver-odbc-postgresql",
            config,
            database.name,
            32,
            odbc=True,
        )


@builder("sqlserver-odbc-mariadb")
def odbc_mariadb(factory: pytest.TempPathFactory) -> Iterator[sources.Source]:
    _odbc_ready("MariaDB Unicode")
    for database in _database("mariadb", factory):
        sources.mariadb_admin("CREATE TABLE rh_guard (x integer)", database.name)
        config = _mariadb_config(database.name, driver="MariaDB Unicode")
        yield sources.mariadb_like(
            DatasourceType.SQLSERVER,
            "sqlserver-odbc-mariadb",
            config,
            database.name,
            34,
            odbc=True,
        )


@builder("sqlserver")
def sqlserver(factory: pytest.TempPathFactory) -> Iterator[sources.Source]:
    """Microsoft's ODBC Driver 18 (from the mssql-python wheel): connection errors only, unless
    REPORTHUB_TEST_SQLSERVER_DSN names a real server."""
    if not fallback_servers.register_msodbcsql(factory.mktemp("odbcsys")):
        servers.unavailable("Microsoft ODBC Driver 18 not found (pip install mssql-python)")

    def unreachable(port: int) -> dict[str, Any]:
        return {
            "host": "127.0.0.1",
            "port": port,
            "database": "reports",
            "username": "sa",
            "password": sources.SECRET_PASSWORD,
            "options": {"connect_timeout_seconds": 1},
        }

    yield sources.no_server_source(
        DatasourceType.SQLSERVER,
        "sqlserver",
        "no SQL Server here: set REPORTHUB_TEST_SQLSERVER_DSN for the real-server run",
        unreachable,
    )


@builder("oracle")
def oracle(factory: pytest.TempPathFactory) -> Iterator[sources.Source]:
    def unreachable(port: int) -> dict[str, Any]:
        return {
            "host": "127.0.0.1",
            "port": port,
            "service_name": "FREEPDB1",
            "username": "reports",
            "password": sources.SECRET_PASSWORD,
            "options": {"connect_timeout_seconds": 1},
        }

    yield sources.no_server_source(
        DatasourceType.ORACLE,
        "oracle",
        "no Oracle server here: set REPORTHUB_TEST_ORACLE_DSN for the real-server run",
        unreachable,
    )


@builder("oracle-real", "oracle")
def real_oracle(factory: pytest.TempPathFactory) -> Iterator[sources.Source]:
    dsn = os.environ.get("REPORTHUB_TEST_ORACLE_DSN")
    if not dsn:
        pytest.skip("REPORTHUB_TEST_ORACLE_DSN is not set (real Oracle variant)")
    yield sources.oracle_source(dsn)


@builder("sqlserver-real", "sqlserver")
def real_sqlserver(factory: pytest.TempPathFactory) -> Iterator[sources.Source]:
    url = os.environ.get("REPORTHUB_TEST_SQLSERVER_DSN")
    if not url:
        pytest.skip("REPORTHUB_TEST_SQLSERVER_DSN is not set (real SQL Server variant)")
    fallback_servers.register_msodbcsql(factory.mktemp("odbcsys"))
    yield sources.sqlserver_source(url)
