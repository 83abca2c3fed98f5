"""One harness per data-source type: how to reach it here, and the contract cases in its dialect.

Every harness answers the same questions (the SQL or JSON for each case, what it cannot do and
why); `test_contract.py` runs the same cases against all of them through the `source` fixture.
A case a fallback server cannot exercise is a `Limit`: the test skips with that reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sqlite3
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from reporthubd.connectors.base import ColumnKind
from reporthubd.domain import Datasource, DatasourceType
from tests import servers

ROWS = 200_000
EARLY_ROWS = 20_000
"""Rows of the early-exit case: many batches, without paying for the big stream twice."""
ROW_TEXT = 300
"""Width of the text column of the 200,000-row stream: the whole result is ~60 MB of text, so a
connector (or driver) that buffers it cannot stay under the memory bounds."""

PLUS_TWO = timezone(timedelta(hours=2))
CANON: dict[str, Any] = {
    "i": 42,
    "big": 9007199254740993,
    "dec": Decimal("1234567890123456789012345678.0123456789"),
    "flt": 1.5,
    "flag": True,
    "day": date(2024, 2, 29),
    "ts": datetime(2024, 1, 2, 3, 4, 5, 123456),
    "tstz": datetime(2024, 1, 2, 3, 4, 5, 123456, tzinfo=PLUS_TWO),
    "txt": "héllo 😀 漢字 ünï",
    "nul": None,
    "bin": b"\x00\x01\xff",
    "js": {"a": [1, 2], "b": "x"},
}
KINDS: dict[str, ColumnKind | None] = {
    "i": ColumnKind.INTEGER,
    "big": ColumnKind.INTEGER,
    "dec": ColumnKind.DECIMAL,
    "flt": ColumnKind.FLOAT,
    "flag": ColumnKind.BOOLEAN,
    "day": ColumnKind.DATE,
    "ts": ColumnKind.DATETIME,
    "tstz": ColumnKind.DATETIME_TZ,
    "txt": ColumnKind.TEXT,
    "nul": None,  # any kind
    "bin": ColumnKind.BINARY,
    "js": ColumnKind.JSON,
}
TYPE_NAMES = tuple(CANON)
PARAM_KINDS = ("i", "big", "dec", "flt", "flag", "day", "ts", "tstz", "txt", "nul", "bin")

SECRET_PASSWORD = "Wr0ng-Sekret-Pa55"


@dataclass(frozen=True)
class Limit:
    """A case this source (or its fallback server) cannot exercise, and why."""

    reason: str


Expect = tuple[ColumnKind | None, Any]


@dataclass
class Source:
    type: DatasourceType
    label: str
    config: dict[str, Any]
    where: str
    """A fragment every error message must contain (the host or database)."""
    type_matrix: str | Limit
    type_overrides: dict[str, Expect | Limit] = field(default_factory=dict)
    param_sql: Callable[[str], str | Limit] | None = None
    param_overrides: dict[str, Expect | Limit] = field(default_factory=dict)
    rows_sql: Callable[[int], str] | None = None
    memory: Limit | None = None
    slow_sql: str | Limit = Limit("no slow query")
    server_stopped: Callable[[], bool] | None = None
    """True once the server runs no statement of the slow query (checked after a timeout)."""
    server_stop_limit: Limit | None = None
    syntax_error: str = "SELEC 1"
    wrong_password: dict[str, Any] | Limit = Limit("no authentication")
    unreachable: Callable[[int], dict[str, Any]] | Limit = Limit("not a network source")
    write_sql: str | Limit = Limit("no read-only session")
    write_absent: Callable[[], bool] | None = None
    server_version: bool | Limit = True
    known_bugs: dict[str, str] = field(default_factory=dict)
    """Case → a bug found by this suite in a connector owned elsewhere: the case still runs and
    is reported as XFAIL (or XPASS once fixed; then drop the entry)."""
    no_server: Limit | None = None
    """Set when no server of this type runs here: only the unreachable-host cases run."""
    extra: dict[str, Any] = field(default_factory=dict)

    def datasource(self, config: dict[str, Any] | None = None) -> Datasource:
        return Datasource(
            id=1,
            name=f"contract-{self.label}",
            type=self.type,
            connection_config=self.config if config is None else config,
        )


def rows_expected(n: int) -> tuple[int, str]:
    """The last row of `rows_sql(n)`: (n, text)."""
    return n, "x" * ROW_TEXT


# --- MongoDB --------------------------------------------------------------------------------


def mongo_source(uri: str, database: str, *, real: bool, seeded: bool = False) -> Source:
    import pymongo
    from bson import Binary, Decimal128

    client: pymongo.MongoClient[dict[str, Any]] = pymongo.MongoClient(
        uri, tz_aware=True, uuidRepresentation="standard", serverSelectionTimeoutMS=5000
    )
    db = client[database]
    matrix_doc: dict[str, Any] = {
        "i": 42,
        "big": CANON["big"],
        "flt": 1.5,
        "flag": True,
        "tstz": CANON["tstz"],
        "txt": CANON["txt"],
        "nul": None,
        "bin": Binary(CANON["bin"]),
        "js": CANON["js"],
        "arr": [1, {"a": 2}],
    }
    if real:
        matrix_doc["dec"] = Decimal128(CANON["dec"])
    db.matrix.delete_many({})
    db.matrix.insert_one(matrix_doc)
    typed = [
        {"k": "i", "v": 42},
        {"k": "big", "v": CANON["big"]},
        {"k": "flt", "v": 1.5},
        {"k": "flag", "v": True},
        {"k": "day", "v": datetime(2024, 2, 29, tzinfo=UTC)},
        {"k": "ts", "v": datetime(2024, 1, 2, 3, 4, 5, 123000, tzinfo=UTC)},
        {"k": "tstz", "v": datetime(2024, 1, 2, 1, 4, 5, 123000, tzinfo=UTC)},
        {"k": "txt", "v": CANON["txt"]},
        {"k": "nul", "v": None},
        {"k": "bin", "v": Binary(CANON["bin"])},
        {"k": "decoy", "v": "42"},
    ]
    if real:
        typed.append({"k": "dec", "v": Decimal128(CANON["dec"])})
    db.typed.delete_many({})
    db.typed.insert_many(typed)
    rows_ready: list[int] = [ROWS, EARLY_ROWS] if seeded else []

    def rows_sql(n: int) -> str:
        if n not in rows_ready:
            db[f"rows{n}"].drop()
            text = "x" * ROW_TEXT
            for start in range(0, n, 20_000):
                db[f"rows{n}"].insert_many(
                    [{"n": k, "s": text} for k in range(start + 1, min(n, start + 20_000) + 1)],
                    ordered=False,
                )
            rows_ready.append(n)
        return json.dumps(
            {"collection": f"rows{n}", "filter": {}, "projection": {"_id": 0, "n": 1, "s": 1}}
        )

    def param_sql(kind: str) -> str:
        return json.dumps(
            {
                "collection": "typed",
                "filter": {"k": kind, "v": {"$param": "val"}},
                "projection": {"_id": 0, "v": 1},
            }
        )

    fallback = "nx-27017 (MongoDB fallback)"
    overrides: dict[str, Expect | Limit] = {
        "i": (ColumnKind.INTEGER, 42),
        "day": Limit("BSON has no date-only type (dates are datetimes)"),
        "ts": Limit("BSON datetimes are UTC instants; there is no zone-less timestamp"),
        # BSON datetimes hold milliseconds.
        "tstz": (ColumnKind.DATETIME_TZ, datetime(2024, 1, 2, 1, 4, 5, 123000, tzinfo=UTC)),
        "txt": (ColumnKind.TEXT, CANON["txt"]),
        "bin": (ColumnKind.BINARY, CANON["bin"]),
        "js": Limit("documents are flattened to dotted columns (test_mongodb.py checks them)"),
    }
    if not real:
        overrides["dec"] = Limit(f"{fallback} cannot store Decimal128 values")
    param_overrides: dict[str, Expect | Limit] = {
        "day": (ColumnKind.DATETIME_TZ, datetime(2024, 2, 29, tzinfo=UTC)),
        "ts": (ColumnKind.DATETIME_TZ, datetime(2024, 1, 2, 3, 4, 5, 123000, tzinfo=UTC)),
        "tstz": (ColumnKind.DATETIME_TZ, datetime(2024, 1, 2, 1, 4, 5, 123000, tzinfo=UTC)),
    }
    if not real:
        param_overrides["dec"] = Limit(f"{fallback} cannot store Decimal128 values")
        param_overrides["bin"] = Limit(f"{fallback} does not match binary values in filters")
    host_port = uri.split("//", 1)[1].split("/", 1)[0].split("@")[-1]

    def mongo_stopped() -> bool:
        ops = list(
            client.admin.aggregate(
                [{"$currentOp": {}}, {"$match": {"command.comment": {"$regex": "^reporthubd:"}}}]
            )
        )
        return not ops

    return Source(
        type=DatasourceType.MONGODB,
        label="mongodb" if not real else "mongodb-real",
        config={
            "uri": uri,
            "database": database,
            # nx-27017 answers on one thread: a long find delays its heartbeat replies.
            "options": {"connect_timeout_seconds": 30},
        },
        where=database,
        type_matrix=json.dumps({"collection": "matrix", "filter": {}, "projection": {"_id": 0}}),
        type_overrides=overrides,
        param_sql=param_sql,
        param_overrides=param_overrides,
        rows_sql=rows_sql,
        slow_sql=(
            json.dumps(
                {"collection": "typed", "filter": {"$where": "sleep(100) || true"}, "limit": 0}
            )
            if real
            else Limit(f"{fallback} has no slow operator ($where/$function are unsupported)")
        ),
        server_stopped=mongo_stopped if real else None,
        server_stop_limit=None if real else Limit(f"{fallback} has no $currentOp"),
        syntax_error=json.dumps({"collection": "typed", "filter": {"v": {"$nosuchop": 1}}}),
        wrong_password=(
            {
                "host": host_port.split(":")[0],
                "port": int(host_port.split(":")[1]) if ":" in host_port else 27017,
                "username": "reporthub_nobody",
                "password": SECRET_PASSWORD,
                "database": database,
                "options": {"connect_timeout_seconds": 3, "direct_connection": True},
            }
            if real
            else Limit(f"{fallback} has no authentication")
        ),
        unreachable=lambda port: {
            "host": "127.0.0.1",
            "port": port,
            "database": database,
            "username": "u",
            "password": SECRET_PASSWORD,
            "options": {"connect_timeout_seconds": 1, "direct_connection": True},
        },
        write_sql=json.dumps({"collection": "typed", "pipeline": [{"$out": "stolen"}]}),
        write_absent=lambda: "stolen" not in db.list_collection_names(),
        server_version=True if real else Limit(f"{fallback} reports no server version"),
        extra={"client": client, "db": db},
    )


def wait_until(check: Callable[[], bool], seconds: float = 15.0) -> bool:
    """Poll `check` until true or `seconds` pass (a bound on waiting, not a speed assertion)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.1)
    return check()


@contextlib.contextmanager
def env(name: str) -> Iterator[str]:
    value = os.environ.get(name)
    if not value:
        pytest.skip(f"{name} is not set (no real server here)")
    yield value


def sqlite_file(path: Path) -> None:
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE IF NOT EXISTS rh_guard (x INTEGER)")
    conn.commit()
    conn.close()


def run(coro: Any) -> Any:
    return asyncio.run(coro)


# --- BigQuery (bqemulator) ------------------------------------------------------------------


def bigquery_source(endpoint: str) -> Source:
    from google.api_core import exceptions as google_errors
    from google.api_core.client_options import ClientOptions
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import bigquery

    client = bigquery.Client(
        project="rh-test",
        credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
        client_options=ClientOptions(api_endpoint=endpoint),
    )
    fallback = "bqemulator (BigQuery fallback)"
    casts = {
        "i": "INT64",
        "big": "INT64",
        "dec": "BIGNUMERIC",
        "flt": "FLOAT64",
        "flag": "BOOL",
        "day": "DATE",
        "ts": "DATETIME",
        "tstz": "TIMESTAMP",
        "txt": "STRING",
        "nul": "STRING",
        "bin": "BYTES",
    }

    def absent() -> bool:
        try:
            client.get_dataset("stolen")
        except google_errors.NotFound:
            return True
        return False

    return Source(
        type=DatasourceType.BIGQUERY,
        label="bigquery",
        config={
            "project": "rh-test",
            "maximum_bytes_billed": 10**12,
            "options": {"api_endpoint": endpoint, "anonymous": True, "connect_timeout_seconds": 20},
        },
        where="rh-test",
        type_matrix=(
            "SELECT 42 AS i, 9007199254740993 AS big,"
            " CAST('1234567890123456789012345678.0123456789' AS BIGNUMERIC) AS dec,"
            " 1.5 AS flt, TRUE AS flag, DATE '2024-02-29' AS day,"
            " DATETIME '2024-01-02 03:04:05.123456' AS ts,"
            " TIMESTAMP '2024-01-02 03:04:05.123456+02:00' AS tstz,"
            f" '{CANON['txt']}' AS txt, CAST(NULL AS STRING) AS nul,"
            ' FROM_BASE64(\'AAH/\') AS bin, JSON \'{"a": [1, 2], "b": "x"}\' AS js'
        ),
        type_overrides={
            "dec": Limit(f"{fallback} truncates BIGNUMERIC to 5 decimal places"),
        },
        param_sql=lambda kind: f"SELECT CAST(:val AS {casts[kind]}) AS v",
        param_overrides={
            "dec": Limit(f"{fallback} binds BIGNUMERIC parameters as FLOAT64"),
            "bin": Limit(f"{fallback} returns BYTES parameters as base64 STRING"),
        },
        rows_sql=lambda n: (
            f"SELECT x AS n, REPEAT('x', {ROW_TEXT}) AS s FROM UNNEST(GENERATE_ARRAY(1, {n})) AS x"
        ),
        # ~3 s of DuckDB work: the timeout lands while the SDK blocks in jobs.insert.
        slow_sql=(
            "SELECT COUNT(*) FROM UNNEST(GENERATE_ARRAY(1, 2000)) a"
            " CROSS JOIN UNNEST(GENERATE_ARRAY(1, 1000)) b"
            " CROSS JOIN UNNEST(GENERATE_ARRAY(1, 300)) c WHERE MOD(a * b + c, 7) = 3"
        ),
        server_stop_limit=Limit(
            f"{fallback} runs each query to completion inside jobs.insert and ignores jobs.cancel"
        ),
        syntax_error="SELEC 1",
        wrong_password=Limit(f"{fallback} accepts anonymous credentials only"),
        unreachable=lambda port: {
            "project": "rh-test",
            "options": {
                "api_endpoint": f"http://127.0.0.1:{port}",
                "anonymous": True,
                "connect_timeout_seconds": 1,
            },
        },
        write_sql="CREATE SCHEMA stolen",
        write_absent=absent,
        server_version=Limit("BigQuery has no server version"),
        extra={"client": client},
    )


# --- Snowflake (fakesnow) -------------------------------------------------------------------


def snowflake_source(port: int) -> Source:
    fallback = "fakesnow (Snowflake fallback)"
    casts = {
        "i": "INT",
        "big": "BIGINT",
        "dec": "NUMBER(38,10)",
        "flt": "FLOAT",
        "flag": "BOOLEAN",
        "day": "DATE",
        "ts": "TIMESTAMP_NTZ",
        "tstz": "TIMESTAMP_TZ",
        "txt": "VARCHAR",
        "nul": "VARCHAR",
        "bin": "BINARY",
    }
    server = {"host": "127.0.0.1", "port": port, "protocol": "http"}
    return Source(
        type=DatasourceType.SNOWFLAKE,
        label="snowflake",
        config={
            "account": "fakesnow",
            "username": "fake",
            "password": "snow",
            "database": "RH_CONTRACT",
            "schema": "PUBLIC",
            "options": {**server, "connect_timeout_seconds": 5},
        },
        where="fakesnow",
        type_matrix=(
            "SELECT 42::INT AS i, 9007199254740993::BIGINT AS big,"
            " '1234567890123456789012345678.0123456789'::NUMBER(38,10) AS dec,"
            " 1.5::FLOAT AS flt, TRUE AS flag, '2024-02-29'::DATE AS day,"
            " '2024-01-02 03:04:05.123456'::TIMESTAMP_NTZ AS ts,"
            " '2024-01-02 03:04:05.123456 +02:00'::TIMESTAMP_TZ AS tstz,"
            f" '{CANON['txt']}' AS txt, NULL::VARCHAR AS nul,"
            " TO_BINARY('0001FF', 'HEX') AS bin,"
            ' PARSE_JSON(\'{"a": [1, 2], "b": "x"}\') AS js'
        ),
        param_sql=lambda kind: f"SELECT CAST(:val AS {casts[kind]}) AS v",
        param_overrides={
            "dec": Limit(f"{fallback} converts FIXED bindings with int(), so decimals fail"),
        },
        rows_sql=lambda n: (
            f"SELECT seq4() + 1 AS n, REPEAT('x', {ROW_TEXT}) AS s"
            f" FROM TABLE(GENERATOR(ROWCOUNT => {n}))"
        ),
        memory=Limit(
            f"{fallback} returns the whole result inline in one response "
            "(real Snowflake sends result chunks that fetchmany downloads as it goes)"
        ),
        # ~3 s of DuckDB work: the timeout lands while the SDK blocks in execute().
        slow_sql=(
            "SELECT SUM(HASH(a.n, b.n)) FROM"
            " (SELECT seq4() AS n FROM TABLE(GENERATOR(ROWCOUNT => 30000))) a CROSS JOIN"
            " (SELECT seq4() AS n FROM TABLE(GENERATOR(ROWCOUNT => 40000))) b"
        ),
        server_stop_limit=Limit(
            f"{fallback} has no SYSTEM$CANCEL_QUERY / SYSTEM$CANCEL_ALL_QUERIES: the statement "
            "runs to its end on the server"
        ),
        syntax_error="SELEC 1",
        wrong_password=Limit(f"{fallback} accepts any password"),
        unreachable=lambda p: {
            "account": "fakesnow",
            "username": "fake",
            "password": SECRET_PASSWORD,
            "options": {
                "host": "127.0.0.1",
                "port": p,
                "protocol": "http",
                "connect_timeout_seconds": 1,
            },
        },
        write_sql=Limit(
            "Snowflake has no read-only session (grant the role SELECT only); "
            "the connector rolls back every stream so DML never commits"
        ),
        server_version=True,
    )


# --- PostgreSQL and MariaDB (native connectors and the ODBC path of the SQL Server one) ------

PG_CASTS = {
    "i": "integer",
    "big": "bigint",
    "dec": "numeric(38,10)",
    "flt": "float8",
    "flag": "boolean",
    "day": "date",
    "ts": "timestamp",
    "tstz": "timestamptz",
    "txt": "text",
    "nul": "text",
    "bin": "bytea",
}
PG_MATRIX = (
    "SELECT 42::integer AS i, 9007199254740993::bigint AS big,"
    " 1234567890123456789012345678.0123456789::numeric(38,10) AS dec, 1.5::float8 AS flt,"
    " true AS flag, DATE '2024-02-29' AS day, TIMESTAMP '2024-01-02 03:04:05.123456' AS ts,"
    " TIMESTAMPTZ '2024-01-02 03:04:05.123456+02:00' AS tstz,"
    f" '{CANON['txt']}'::text AS txt, NULL::text AS nul, '\\x0001ff'::bytea AS bin,"
    ' \'{"a": [1, 2], "b": "x"}\'::jsonb AS js'
)
MARIADB_CASTS = {
    "i": "SIGNED",
    "big": "SIGNED",
    "dec": "DECIMAL(38,10)",
    "flt": "DOUBLE",
    "flag": "SIGNED",
    "day": "DATE",
    "ts": "DATETIME(6)",
    "tstz": "DATETIME(6)",
    "txt": "CHAR CHARACTER SET utf8mb4",
    "nul": "CHAR",
    "bin": "BINARY",
}
MARIADB_MATRIX = (
    "SELECT 42 AS i, CAST(9007199254740993 AS SIGNED) AS big,"
    " CAST('1234567890123456789012345678.0123456789' AS DECIMAL(38,10)) AS `dec`,"
    " CAST(1.5 AS DOUBLE) AS flt, TRUE AS flag, DATE '2024-02-29' AS day,"
    " CAST('2024-01-02 03:04:05.123456' AS DATETIME(6)) AS ts,"
    f" _utf8mb4'{CANON['txt']}' AS txt, NULL AS nul, X'0001FF' AS bin,"
    " JSON_OBJECT('a', JSON_ARRAY(1, 2), 'b', 'x') AS js"
)


def pg_stopped(marker: str) -> Callable[[], bool]:
    def check() -> bool:
        async def query() -> int:
            import asyncpg

            conn = await asyncpg.connect(
                host=servers.POSTGRES_HOST,
                port=servers.POSTGRES_PORT,
                user="postgres",
                database="postgres",
            )
            try:
                return int(
                    await conn.fetchval(
                        "SELECT count(*) FROM pg_stat_activity WHERE state = 'active'"
                        " AND pid <> pg_backend_pid() AND query LIKE $1",
                        f"%{marker}%",
                    )
                )
            finally:
                await conn.close()

        return asyncio.run(query()) == 0

    return check


def pg_count(database: str) -> Callable[[], bool]:
    def check() -> bool:
        async def query() -> int:
            import asyncpg

            conn = await asyncpg.connect(
                host=servers.POSTGRES_HOST,
                port=servers.POSTGRES_PORT,
                user="postgres",
                database=database,
            )
            try:
                return int(await conn.fetchval("SELECT count(*) FROM rh_guard"))
            finally:
                await conn.close()

        return asyncio.run(query()) == 0

    return check


def mariadb_admin(sql: str, database: str | None = None) -> list[tuple[Any, ...]]:
    import pymysql

    conn = pymysql.connect(
        host=servers.MARIADB_HOST,
        port=servers.MARIADB_PORT,
        user="root",
        password="",
        database=database,
        autocommit=True,
    )
    try:
        with conn.cursor() as cursor:
            cursor.execute(sql)
            return list(cursor.fetchall())
    finally:
        conn.close()


def mariadb_stopped(marker: str) -> Callable[[], bool]:
    def check() -> bool:
        rows = mariadb_admin(
            "SELECT COUNT(*) FROM information_schema.processlist"
            f" WHERE info LIKE '%{marker}%' AND id <> CONNECTION_ID()"
        )
        return int(rows[0][0]) == 0

    return check


def postgres_like(
    type_: DatasourceType,
    label: str,
    config: dict[str, Any],
    database: str,
    sleep: int,
    *,
    odbc: bool,
) -> Source:
    overrides: dict[str, Expect | Limit] = {}
    param_overrides: dict[str, Expect | Limit] = {}
    if odbc:
        overrides["tstz"] = Limit("psqlODBC reports timestamptz as a zone-less SQL timestamp")
        overrides["js"] = Limit("psqlODBC reports jsonb as text (ODBC has no JSON type)")
        param_overrides["tstz"] = overrides["tstz"]
    return Source(
        type=type_,
        label=label,
        config=config,
        where=database,
        type_matrix=PG_MATRIX,
        type_overrides=overrides,
        param_sql=lambda kind: f"SELECT CAST(:val AS {PG_CASTS[kind]}) AS v",
        param_overrides=param_overrides,
        rows_sql=lambda n: (
            f"SELECT n, repeat('x', {ROW_TEXT}) AS s FROM generate_series(1, {n}) AS n"
        ),
        slow_sql=f"SELECT pg_sleep({sleep})",
        server_stopped=pg_stopped(f"pg_sleep({sleep})"),
        syntax_error="SELEC 1",
        wrong_password=Limit(
            "the local PostgreSQL uses trust authentication (any password passes)"
        ),
        unreachable=lambda port: {
            **config,
            "host": "127.0.0.1",
            "port": port,
            "password": SECRET_PASSWORD,
            "options": {**config.get("options", {}), "connect_timeout_seconds": 1},
        },
        write_sql="INSERT INTO rh_guard VALUES (1)",
        write_absent=pg_count(database),
    )


def mariadb_like(
    type_: DatasourceType,
    label: str,
    config: dict[str, Any],
    database: str,
    sleep: int,
    *,
    odbc: bool,
) -> Source:
    overrides: dict[str, Expect | Limit] = {
        "flag": (ColumnKind.INTEGER, 1),
        "tstz": Limit("MariaDB has no time-zone-aware timestamp type"),
        "js": Limit("MariaDB's JSON is an alias of LONGTEXT"),
    }
    param_overrides: dict[str, Expect | Limit] = {
        "flag": (ColumnKind.INTEGER, 1),
        "tstz": Limit("MariaDB has no time-zone-aware timestamp type"),
    }
    memory = None
    if odbc:
        param_overrides["ts"] = Limit(
            "MariaDB Connector/ODBC drops the fraction of bound timestamp parameters"
        )
        memory = Limit(
            "MariaDB Connector/ODBC buffers the whole result client-side "
            "(NO_CACHE/FORWARDONLY had no effect here; RSS grew ~70 MiB for 60 MB of rows)"
        )
    return Source(
        memory=memory,
        type=type_,
        label=label,
        config=config,
        where=database,
        type_matrix=MARIADB_MATRIX,
        type_overrides=overrides,
        param_sql=lambda kind: f"SELECT CAST(:val AS {MARIADB_CASTS[kind]}) AS v",
        param_overrides=param_overrides,
        rows_sql=lambda n: f"SELECT seq AS n, REPEAT('x', {ROW_TEXT}) AS s FROM seq_1_to_{n}",
        slow_sql=f"SELECT SLEEP({sleep})",
        server_stopped=mariadb_stopped(f"SLEEP({sleep})"),
        syntax_error="SELEC 1",
        wrong_password={**config, "password": SECRET_PASSWORD},
        unreachable=lambda port: {
            **config,
            "host": "127.0.0.1",
            "port": port,
            "password": SECRET_PASSWORD,
            "options": {**config.get("options", {}), "connect_timeout_seconds": 1},
        },
        write_sql="INSERT INTO rh_guard VALUES (1)",
        write_absent=lambda: (
            int(mariadb_admin("SELECT COUNT(*) FROM rh_guard", database)[0][0]) == 0
        ),
    )


# --- SQLite, Oracle, SQL Server without their own server --------------------------------------


def sqlite_source(path: Path) -> Source:
    conn = sqlite3.connect(path)
    conn.executescript(
        """
        CREATE TABLE rh_guard (x INTEGER);
        CREATE TABLE matrix (i INTEGER, big BIGINT, dec DECIMAL(38,10), flt REAL, flag BOOLEAN,
            day DATE, ts TIMESTAMP, tstz TIMESTAMPTZ, txt TEXT, nul TEXT, bin BLOB, js JSON);
        """
    )
    conn.execute(
        "INSERT INTO matrix VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            42,
            CANON["big"],
            str(CANON["dec"]),
            1.5,
            1,
            "2024-02-29",
            "2024-01-02 03:04:05.123456",
            "2024-01-02T03:04:05.123456+02:00",
            CANON["txt"],
            None,
            CANON["bin"],
            json.dumps(CANON["js"]),
        ),
    )
    conn.commit()
    conn.close()
    limit = "SQLite stores no such type (values are text or numbers)"
    return Source(
        type=DatasourceType.SQLITE,
        label="sqlite",
        config={"path": str(path)},
        where=path.name,
        type_matrix="SELECT * FROM matrix",
        type_overrides={
            "dec": Limit("SQLite has no exact decimal storage"),
            # SQLite stores booleans as integers and dates, timestamps and JSON as text.
            "flag": (ColumnKind.INTEGER, 1),
            "day": (ColumnKind.TEXT, "2024-02-29"),
            "ts": (ColumnKind.TEXT, "2024-01-02 03:04:05.123456"),
            "tstz": (ColumnKind.TEXT, "2024-01-02T03:04:05.123456+02:00"),
            "js": (ColumnKind.TEXT, json.dumps(CANON["js"])),
        },
        param_sql=lambda kind: "SELECT :val AS v",
        param_overrides={
            "dec": Limit(limit),
            "flag": (ColumnKind.INTEGER, 1),
            "day": Limit(limit),
            "ts": Limit(limit),
            "tstz": Limit(limit),
        },
        rows_sql=lambda n: (
            "WITH RECURSIVE c(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM c WHERE n < "
            f"{n}) SELECT n, replace(hex(zeroblob({ROW_TEXT // 2})), '00', 'xx') AS s FROM c"
        ),
        slow_sql=(
            "WITH RECURSIVE c(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM c) SELECT count(*) FROM c"
        ),
        server_stop_limit=Limit("SQLite runs in-process: interrupt() is the stop, no server"),
        syntax_error="SELEC 1",
        wrong_password=Limit("SQLite has no authentication"),
        unreachable=Limit("SQLite is a local file, no network"),
        write_sql="INSERT INTO rh_guard VALUES (1)",
        write_absent=lambda: (
            sqlite3.connect(path).execute("SELECT count(*) FROM rh_guard").fetchone()[0] == 0
        ),
    )


def no_server_source(
    type_: DatasourceType, label: str, reason: str, unreachable: Callable[[int], dict[str, Any]]
) -> Source:
    return Source(
        type=type_,
        label=label,
        config={},
        where="127.0.0.1",
        type_matrix=Limit(reason),
        no_server=Limit(reason),
        unreachable=unreachable,
    )


# --- real Oracle and SQL Server (only when their DSNs are given) ------------------------------


def oracle_source(dsn: str) -> Source:
    """`REPORTHUB_TEST_ORACLE_DSN` = user/password@host:port/service_name."""
    import oracledb

    credentials, _, target = dsn.rpartition("@")
    user, _, password = credentials.partition("/")
    with oracledb.connect(user=user, password=password, dsn=target) as conn, conn.cursor() as cur:
        cur.execute(
            "BEGIN EXECUTE IMMEDIATE 'CREATE TABLE rh_guard (x NUMBER)';"
            " EXCEPTION WHEN OTHERS THEN IF SQLCODE != -955 THEN RAISE; END IF; END;"
        )
        cur.execute("DELETE FROM rh_guard")
        conn.commit()

    def absent() -> bool:
        with (
            oracledb.connect(user=user, password=password, dsn=target) as conn,
            conn.cursor() as cur,
        ):
            cur.execute("SELECT COUNT(*) FROM rh_guard")
            row = cur.fetchone()
        return row is not None and row[0] == 0

    casts = {
        "i": "NUMBER(10)",
        "big": "NUMBER(19)",
        "dec": "NUMBER(38,10)",
        "flt": "BINARY_DOUBLE",
        "day": "DATE",
        "ts": "TIMESTAMP(6)",
        "tstz": "TIMESTAMP(6) WITH TIME ZONE",
        "txt": "NVARCHAR2(100)",
        "nul": "VARCHAR2(10)",
        "bin": "RAW(16)",
    }
    host = target.split(":")[0].split("/")[0]
    config = {"dsn": target, "username": user, "password": password}

    def param_sql(kind: str) -> str | Limit:
        if kind == "flag":
            return Limit("BOOLEAN in SQL needs Oracle 23ai")
        return f"SELECT CAST(:val AS {casts[kind]}) AS v FROM dual"

    return Source(
        type=DatasourceType.ORACLE,
        label="oracle-real",
        config=config,
        where=host,
        type_matrix=(
            "SELECT CAST(42 AS NUMBER(10)) AS i, CAST(9007199254740993 AS NUMBER(19)) AS big,"
            " CAST(1234567890123456789012345678.0123456789 AS NUMBER(38,10)) AS dec,"
            " CAST(1.5 AS BINARY_DOUBLE) AS flt, DATE '2024-02-29' AS day,"
            " TIMESTAMP '2024-01-02 03:04:05.123456' AS ts,"
            " TIMESTAMP '2024-01-02 03:04:05.123456 +02:00' AS tstz,"
            f" N'{CANON['txt']}' AS txt, CAST(NULL AS VARCHAR2(10)) AS nul,"
            " HEXTORAW('0001FF') AS bin FROM dual"
        ),
        type_overrides={
            "flag": Limit("BOOLEAN in SQL needs Oracle 23ai"),
            "day": (ColumnKind.DATETIME, datetime(2024, 2, 29)),
            "js": Limit("a JSON column type needs Oracle 21c"),
        },
        param_sql=param_sql,
        param_overrides={"day": (ColumnKind.DATETIME, datetime(2024, 2, 29))},
        rows_sql=lambda n: (
            f"SELECT LEVEL AS n, RPAD('x', {ROW_TEXT}, 'x') AS s FROM dual CONNECT BY LEVEL <= {n}"
        ),
        slow_sql="SELECT COUNT(*) FROM all_objects a, all_objects b, all_objects c",
        server_stop_limit=Limit("checking V$SESSION needs privileges the test user may lack"),
        syntax_error="SELEC 1 FROM dual",
        wrong_password={**config, "password": SECRET_PASSWORD},
        unreachable=lambda port: {
            "host": "127.0.0.1",
            "port": port,
            "service_name": "X",
            "username": user,
            "password": SECRET_PASSWORD,
            "options": {"connect_timeout_seconds": 1},
        },
        write_sql="INSERT INTO rh_guard VALUES (1)",
        write_absent=absent,
    )


MSSQL_WAITING = "\n".join(
    [
        "SELECT 1 FROM sys.dm_exec_requests r",
        "CROSS APPLY sys.dm_exec_sql_text(r.sql_handle) t",
        "WHERE t.text LIKE '%WAITFOR DELAY ''00:00:31''%' AND r.session_id <> @@SPID",
    ]
)


def sqlserver_source(url: str) -> Source:
    """`REPORTHUB_TEST_SQLSERVER_DSN` =
    sqlserver://user:password@host:port/database?trust_server_certificate=yes&encrypt=yes"""
    from urllib.parse import parse_qs, unquote, urlsplit

    import pyodbc

    from reporthubd.connectors.sqlserver import connection_string

    parts = urlsplit(url)
    query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
    database = parts.path.lstrip("/")
    config: dict[str, Any] = {
        "host": parts.hostname,
        "port": parts.port or 1433,
        "database": database,
        "username": unquote(parts.username or ""),
        "password": unquote(parts.password or ""),
        "encrypt": query.get("encrypt", "yes"),
        "trust_server_certificate": query.get("trust_server_certificate") == "yes",
        "options": {"connect_timeout_seconds": 10},
    }
    admin = connection_string(config, config["password"], 10)

    def run(sql: str) -> list[Any]:
        with pyodbc.connect(admin, autocommit=True) as conn:
            cursor = conn.cursor()
            cursor.execute(sql)
            return cursor.fetchall() if cursor.description else []

    run("IF OBJECT_ID('rh_guard') IS NULL CREATE TABLE rh_guard (x int)")
    casts = {
        "i": "int",
        "big": "bigint",
        "dec": "decimal(38,10)",
        "flt": "float",
        "flag": "bit",
        "day": "date",
        "ts": "datetime2(6)",
        "tstz": "datetimeoffset(6)",
        "txt": "nvarchar(100)",
        "nul": "nvarchar(10)",
        "bin": "varbinary(16)",
    }
    return Source(
        type=DatasourceType.SQLSERVER,
        label="sqlserver-real",
        config=config,
        where=database,
        type_matrix=(
            "SELECT CAST(42 AS int) AS i, CAST(9007199254740993 AS bigint) AS big,"
            " CAST('1234567890123456789012345678.0123456789' AS decimal(38,10)) AS dec,"
            " CAST(1.5 AS float) AS flt, CAST(1 AS bit) AS flag, CAST('2024-02-29' AS date) AS day,"
            " CAST('2024-01-02 03:04:05.123456' AS datetime2(6)) AS ts,"
            " CAST('2024-01-02 03:04:05.123456 +02:00' AS datetimeoffset(6)) AS tstz,"
            f" N'{CANON['txt']}' AS txt, CAST(NULL AS nvarchar(10)) AS nul,"
            " 0x0001FF AS bin"
        ),
        type_overrides={"js": Limit("SQL Server keeps JSON in nvarchar (json type from 2025)")},
        param_sql=lambda kind: f"SELECT CAST(:val AS {casts[kind]}) AS v",
        rows_sql=lambda n: (
            f"SELECT TOP ({n}) ROW_NUMBER() OVER (ORDER BY (SELECT NULL)) AS n,"
            f" REPLICATE('x', {ROW_TEXT}) AS s FROM sys.all_objects a CROSS JOIN sys.all_objects b"
        ),
        slow_sql="WAITFOR DELAY '00:00:31'",
        server_stopped=lambda: not run(MSSQL_WAITING),
        syntax_error="SELEC 1",
        wrong_password={**config, "password": SECRET_PASSWORD},
        unreachable=lambda port: {
            **config,
            "host": "127.0.0.1",
            "port": port,
            "password": SECRET_PASSWORD,
            "options": {"connect_timeout_seconds": 1},
        },
        write_sql=Limit(
            "SQL Server has no read-only session; the connector rolls back every stream"
        ),
    )


def collect_pymongo_leaks() -> None:
    """Finalise sockets that pymongo's async monitor leaks when a client is closed while it is
    still trying to connect (a cancelled `sock_connect` in `_async_create_connection` is not
    closed: pymongo 4.20). Collected here with their ResourceWarning silenced, so they do not
    surface as an unraisable-exception error in whatever test the garbage collector runs next.
    """
    import gc
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        gc.collect()
