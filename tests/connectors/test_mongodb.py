"""MongoDB specifics: the query document, typed `$param` substitution, flattening, the column
rule for late keys — pure functions, then through the nx-27017 wire-protocol server."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path

import pytest
from bson import Binary, Decimal128, ObjectId

from reporthubd.connectors import base
from reporthubd.connectors.base import ColumnKind, ConnectorError, QueryRequest
from reporthubd.connectors.mongodb import flatten, parse_query, to_bson
from reporthubd.domain import Datasource, DatasourceType
from tests import servers
from tests.connectors import fallback_servers, sources


def test_params_are_substituted_as_typed_values_anywhere():
    query = parse_query(
        json.dumps(
            {
                "collection": "orders",
                "pipeline": [
                    {"$match": {"total": {"$gte": {"$param": "min"}}, "day": {"$param": "day"}}},
                    {"$match": {"$expr": {"$in": ["$region", {"$param": "regions"}]}}},
                ],
            }
        ),
        {"min": Decimal("10.50"), "day": date(2024, 2, 29), "regions": ["EU", "US"]},
    )
    assert query.pipeline is not None
    first = query.pipeline[0]["$match"]
    assert first["total"]["$gte"] == Decimal128("10.50")
    assert first["day"] == datetime(2024, 2, 29, tzinfo=UTC)
    assert query.pipeline[1]["$match"]["$expr"]["$in"][1] == ["EU", "US"]


def test_a_param_value_is_never_parsed_as_query_syntax():
    query = parse_query(
        json.dumps({"collection": "c", "filter": {"name": {"$param": "name"}}}),
        {"name": '{"$ne": null}'},
    )
    assert query.filter == {"name": '{"$ne": null}'}


def test_missing_params_are_named():
    with pytest.raises(ConnectorError, match="since, until"):
        parse_query(
            json.dumps(
                {"collection": "c", "filter": {"a": {"$param": "since"}, "b": {"$param": "until"}}}
            ),
            {},
        )


@pytest.mark.parametrize(
    "pipeline",
    [
        [{"$out": "copy"}],
        [{"$match": {}}, {"$merge": {"into": "copy"}}],
        [{"$facet": {"x": [{"$out": "copy"}]}}],
    ],
)
def test_writing_stages_are_refused(pipeline):
    with pytest.raises(ConnectorError, match="read-only"):
        parse_query(json.dumps({"collection": "c", "pipeline": pipeline}), {})


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("not json", "not valid JSON"),
        ("[]", "collection"),
        ('{"collection": "c", "pipeline": {}}', "list of stages"),
        ('{"collection": "c", "pipeline": [], "filter": {}}', "not both"),
        ('{"collection": "c", "where": {}}', "unknown keys: where"),
    ],
)
def test_bad_documents_are_explained(text, problem):
    with pytest.raises(ConnectorError, match=problem):
        parse_query(text, {})


def test_find_options():
    query = parse_query(
        json.dumps(
            {"collection": "c", "filter": {}, "sort": {"a": -1, "b": 1}, "limit": 5, "skip": 2}
        ),
        {},
    )
    assert query.sort == [("a", -1), ("b", 1)]
    assert (query.limit, query.skip) == (5, 2)


def test_flatten_and_convert():
    oid = ObjectId()
    uid = uuid.uuid4()
    row = flatten(
        {
            "_id": oid,
            "customer": {"name": "Zoë", "address": {"city": "東京"}},
            "tags": ["a", {"b": 1}],
            "empty": {},
            "total": Decimal128("12.3400"),
            "when": datetime(2024, 1, 2, 3, 4, 5),
            "uid": Binary.from_uuid(uid),
            "raw": Binary(b"\x00\x01"),
        }
    )
    assert row == {
        "_id": str(oid),
        "customer.name": "Zoë",
        "customer.address.city": "東京",
        "tags": '["a",{"b":1}]',
        "empty": "{}",
        "total": Decimal("12.3400"),
        "when": datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC),
        "uid": str(uid),
        "raw": b"\x00\x01",
    }


def test_to_bson_keeps_aware_times_and_assumes_utc_for_naive():
    aware = datetime(2024, 1, 1, tzinfo=UTC)
    assert to_bson(aware) is aware
    assert to_bson(datetime(2024, 1, 1)) == aware


# --- through the wire protocol ------------------------------------------------------------


@pytest.fixture(scope="module")
def nx(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    missing = fallback_servers.nx_available()
    if missing:
        servers.unavailable(missing)
    server = fallback_servers.NxMongo(tmp_path_factory.mktemp("nx-unit"))
    server.start()
    import pymongo

    client: pymongo.MongoClient[dict[str, object]] = pymongo.MongoClient(server.uri)
    client.shop.orders.insert_many(
        [
            {"n": 1, "customer": {"name": "Ann", "address": {"city": "Oslo"}}},
            {"n": 2, "customer": {"name": "Bo"}, "total": 2.5},
            {"n": 3, "customer": {"name": "Cy"}, "late": "dropped", "total": 3},
        ]
    )
    client.close()
    yield server.uri
    server.stop()


@pytest.fixture
async def shop(nx: str) -> AsyncIterator[base.Connector]:
    conn = base.create(
        Datasource(
            id=1,
            name="shop",
            type=DatasourceType.MONGODB,
            connection_config={"uri": nx, "database": "shop", "options": {"sample_size": 2}},
        )
    )
    await conn.open()
    yield conn
    await conn.close()


async def test_columns_are_the_union_of_the_sample_and_late_keys_are_dropped(shop):
    query = json.dumps(
        {"collection": "orders", "filter": {}, "projection": {"_id": 0}, "sort": {"n": 1}}
    )
    async with shop.stream(QueryRequest(sql=query, batch_size=2)) as result:
        names = [c.name for c in result.columns]
        kinds = {c.name: c.kind for c in result.columns}
        rows = [row async for batch in result.batches() for row in batch]
    assert names == ["n", "customer.name", "customer.address.city", "total"]
    assert kinds["total"] is ColumnKind.FLOAT
    assert kinds["n"] is ColumnKind.INTEGER
    assert rows == [
        (1, "Ann", "Oslo", None),
        (2, "Bo", None, 2.5),
        (3, "Cy", None, 3),  # "late" first appears after the 2-document sample: dropped
    ]


async def test_typed_param_does_not_match_its_text(shop):
    query = json.dumps(
        {"collection": "orders", "filter": {"n": {"$param": "n"}}, "projection": {"_id": 0}}
    )
    for value, expected in ((2, 1), ("2", 0)):
        async with shop.stream(QueryRequest(sql=query, parameters={"n": value})) as result:
            rows = [row async for batch in result.batches() for row in batch]
        assert len(rows) == expected


async def test_uri_from_a_file_reference_stays_out_of_errors(nx: str, tmp_path: Path):
    secret_file = tmp_path / "uri"
    secret_file.write_text(nx.replace("127.0.0.1:", "reporter:S3cr3t-Uri-Pw@127.0.0.1:") + "\n")
    conn = base.create(
        Datasource(
            id=1,
            name="shop",
            type=DatasourceType.MONGODB,
            connection_config={"uri": {"file": str(secret_file)}, "database": "shop"},
        )
    )
    try:
        await conn.open()
        with pytest.raises(ConnectorError) as caught:
            async with conn.stream(QueryRequest(sql='{"collection": "orders", "bad": 1}')):
                pass
    except ConnectorError as exc:  # a server with auth would refuse the user instead
        caught = pytest.ExceptionInfo.from_exception(exc)
    finally:
        await conn.close()
        sources.collect_pymongo_leaks()
    assert "S3cr3t-Uri-Pw" not in str(caught.value)


async def test_tls_setting_reaches_the_driver(nx: str):
    """nx-27017 speaks no TLS: with `options.tls` the handshake must fail, cleanly."""
    conn = base.create(
        Datasource(
            id=1,
            name="shop",
            type=DatasourceType.MONGODB,
            connection_config={
                "uri": nx,
                "database": "shop",
                "options": {"tls": True, "connect_timeout_seconds": 1},
            },
        )
    )
    with pytest.raises(ConnectorError, match="cannot connect"):
        await conn.open()
    await conn.close()
    sources.collect_pymongo_leaks()
