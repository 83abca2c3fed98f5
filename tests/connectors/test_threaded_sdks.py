"""The worker-thread feed behind BigQuery and Snowflake, BigQuery parameter typing, and the
Snowflake and BigQuery specifics that the contract cases do not cover."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from datetime import UTC, date, datetime, time
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from reporthubd.connectors import base, common
from reporthubd.connectors.base import ConnectorError, QueryRequest
from reporthubd.domain import Datasource, DatasourceType
from tests import servers
from tests.connectors import fallback_servers

# --- ThreadFeed ------------------------------------------------------------------------------


async def test_feed_keeps_at_most_depth_items_in_flight_and_stops_the_producer():
    produced: list[int] = []
    ended = threading.Event()

    def produce(feed: common.ThreadFeed) -> None:
        try:
            for i in range(1_000_000):
                feed.put(i)
                produced.append(i)
        finally:
            ended.set()

    feed = common.ThreadFeed("test-feed", produce, depth=2)
    feed.start()
    assert await feed.get() == 0
    assert await feed.get() == 1
    await asyncio.sleep(0.2)  # let the producer run ahead as far as it may
    assert len(produced) <= 4
    feed.stop()
    assert await feed.join()
    assert ended.is_set()


async def test_feed_translates_producer_errors_and_ends():
    def produce(feed: common.ThreadFeed) -> None:
        feed.put("first")
        raise ValueError("driver said no")

    feed = common.ThreadFeed(
        "test-feed", produce, translate=lambda exc: ConnectorError(f"mapped: {exc}")
    )
    feed.start()
    assert await feed.get() == "first"
    with pytest.raises(ConnectorError, match="mapped: driver said no"):
        await feed.get()
    assert feed.finished
    with pytest.raises(StopAsyncIteration):
        await feed.get()


async def test_cancelling_the_consumer_does_not_block_the_loop():
    started = threading.Event()

    def produce(feed: common.ThreadFeed) -> None:
        started.set()
        feed.put("never taken twice")
        feed.put("blocks until stopped")
        feed.put("third")

    feed = common.ThreadFeed("test-feed", produce, depth=1)
    feed.start()
    assert await feed.get() == "never taken twice"
    feed.stop()
    assert await feed.join()


# --- BigQuery parameters -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "kind"),
    [
        (True, "BOOL"),
        (7, "INT64"),
        (1.5, "FLOAT64"),
        (Decimal("12.345"), "NUMERIC"),
        (Decimal("1234567890123456789012345678.0123456789"), "BIGNUMERIC"),
        ("x", "STRING"),
        (None, "STRING"),
        (b"\x00", "BYTES"),
        (date(2024, 1, 1), "DATE"),
        (datetime(2024, 1, 1), "DATETIME"),
        (datetime(2024, 1, 1, tzinfo=UTC), "TIMESTAMP"),
        (time(12, 0), "TIME"),
        ({"a": 1}, "JSON"),
    ],
)
def test_bigquery_parameter_types(value: Any, kind: str):
    from reporthubd.connectors.bigquery import query_parameter

    parameter = query_parameter("p", value)
    assert parameter.type_ == kind


def test_bigquery_array_parameters():
    from reporthubd.connectors.bigquery import query_parameter

    parameter = query_parameter("ids", [3, 4])
    assert parameter.array_type == "INT64"
    assert parameter.values == [3, 4]


async def test_bigquery_bad_credentials_file_is_a_clean_error(tmp_path: Path):
    credentials = tmp_path / "sa.json"
    credentials.write_text(json.dumps({"type": "service_account", "private_key": "Zz-Secret"}))
    conn = base.create(
        Datasource(
            id=5,
            name="warehouse",
            type=DatasourceType.BIGQUERY,
            connection_config={"project": "acme-prod", "credentials_file": str(credentials)},
        )
    )
    with pytest.raises(ConnectorError) as caught:
        await conn.open()
    await conn.close()
    assert "acme-prod" in str(caught.value)
    assert "Zz-Secret" not in str(caught.value)


# --- Snowflake on fakesnow -----------------------------------------------------------------


@pytest.fixture(scope="module")
def fakesnow_port(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    missing = fallback_servers.fakesnow_available()
    if missing:
        servers.unavailable(missing)
    server = fallback_servers.FakeSnowflake(tmp_path_factory.mktemp("fakesnow-unit"))
    server.start()
    yield server.port
    server.stop()


def snowflake(port: int, **extra: Any) -> base.Connector:
    return base.create(
        Datasource(
            id=6,
            name="snow",
            type=DatasourceType.SNOWFLAKE,
            connection_config={
                "account": "fakesnow",
                "username": "fake",
                "password": {"env": "RH_TEST_SNOWFLAKE_PASSWORD"},
                "database": "RH_UNIT",
                "schema": "PUBLIC",
                "options": {"host": "127.0.0.1", "port": port, "protocol": "http"},
                **extra,
            },
        )
    )


async def test_snowflake_never_commits_what_a_report_writes(
    fakesnow_port: int, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv("RH_TEST_SNOWFLAKE_PASSWORD", "snow")
    conn = snowflake(fakesnow_port)
    await conn.open()
    try:
        for sql in ("CREATE TABLE IF NOT EXISTS guard (x INT)", "INSERT INTO guard VALUES (1)"):
            async with conn.stream(QueryRequest(sql=sql)) as result:
                [row async for batch in result.batches() for row in batch]
        async with conn.stream(QueryRequest(sql="SELECT COUNT(*) AS n FROM guard")) as result:
            rows = [row async for batch in result.batches() for row in batch]
    finally:
        await conn.close()
    assert rows == [(0,)]


async def test_snowflake_missing_password_reference_is_named(
    fakesnow_port: int, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.delenv("RH_TEST_SNOWFLAKE_PASSWORD", raising=False)
    with pytest.raises(ConnectorError, match="RH_TEST_SNOWFLAKE_PASSWORD"):
        await snowflake(fakesnow_port).open()


async def test_bigquery_without_any_credentials_is_a_clean_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
):
    """No credentials file and no default chain (no ADC file, no metadata server)."""
    monkeypatch.delenv("GOOGLE_APPLICATION_CREDENTIALS", raising=False)
    monkeypatch.setenv("CLOUDSDK_CONFIG", str(tmp_path))  # no gcloud ADC here
    monkeypatch.setenv("GCE_METADATA_HOST", "127.0.0.1:9")  # nothing answers
    monkeypatch.setenv("GCE_METADATA_IP", "127.0.0.1:9")
    conn = base.create(
        Datasource(
            id=5,
            name="warehouse",
            type=DatasourceType.BIGQUERY,
            connection_config={"project": "acme-prod", "options": {"connect_timeout_seconds": 5}},
        )
    )
    with pytest.raises(ConnectorError, match="acme-prod"):
        await conn.open()
    await conn.close()
