"""How each contract source is reached here: a real server, a fallback server started for the
session, or (Oracle, SQL Server without their servers) only the cases that need no server."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator

import pytest

from tests import servers
from tests.connectors import fallback_servers, sources

Builder = Callable[[pytest.TempPathFactory], Iterator[sources.Source]]
SOURCES: dict[str, Builder] = {}


def builder(label: str) -> Callable[[Builder], Builder]:
    def register(fn: Builder) -> Builder:
        SOURCES[label] = fn
        return fn

    return register


@builder("mongodb")
def nx_mongodb(factory: pytest.TempPathFactory) -> Iterator[sources.Source]:
    missing = fallback_servers.nx_available()
    if missing:
        servers.unavailable(missing)
    server = fallback_servers.NxMongo(factory.mktemp("nx"))
    server.start()
    try:
        source = sources.mongo_source(server.uri, "rh_contract", real=False)
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
