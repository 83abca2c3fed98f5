"""Oracle without a server: binding, type mapping and clean connection errors (python-oracledb thin
mode needs no client libraries). The contract suite runs against a real Oracle when
REPORTHUB_TEST_ORACLE_DSN is set."""

from __future__ import annotations

from decimal import Decimal

import oracledb
import pytest

from reporthubd.connectors import base, params
from reporthubd.connectors.base import ColumnKind, ConnectorError
from reporthubd.connectors.oracle import bind, column_of
from reporthubd.domain import Datasource, DatasourceType
from tests.connectors import fallback_servers


def test_named_binds_stay_oracle_named_and_strings_are_left_alone():
    sql, binds = bind(
        "SELECT ':skip' AS s, x FROM t /* :nor_this */ WHERE a = :a AND b > :b -- :c\nAND d = :a",
        {"a": 1, "b": Decimal("2.5"), "unused": 3},
    )
    assert sql == (
        "SELECT ':skip' AS s, x FROM t /* :nor_this */ WHERE a = :a AND b > :b -- :c\nAND d = :a"
    )
    assert binds == {"a": 1, "b": Decimal("2.5")}


def test_json_objects_bind_as_text_and_missing_names_are_reported():
    _, binds = bind("SELECT :doc FROM dual", {"doc": {"k": [1]}})
    assert binds == {"doc": '{"k": [1]}'}
    with pytest.raises(params.MissingParameterError, match=":since"):
        bind("SELECT * FROM t WHERE d >= :since", {})


@pytest.mark.parametrize(
    ("db_type", "precision", "scale", "kind"),
    [
        (oracledb.DB_TYPE_NUMBER, 10, 0, ColumnKind.INTEGER),
        (oracledb.DB_TYPE_NUMBER, 38, 10, ColumnKind.DECIMAL),
        (oracledb.DB_TYPE_NUMBER, 0, -127, ColumnKind.DECIMAL),  # unconstrained NUMBER
        (oracledb.DB_TYPE_NUMBER, 126, -127, ColumnKind.FLOAT),  # FLOAT
        (oracledb.DB_TYPE_BINARY_DOUBLE, 0, 0, ColumnKind.FLOAT),
        (oracledb.DB_TYPE_DATE, 0, 0, ColumnKind.DATETIME),
        (oracledb.DB_TYPE_TIMESTAMP_TZ, 0, 0, ColumnKind.DATETIME_TZ),
        (oracledb.DB_TYPE_NVARCHAR, 0, 0, ColumnKind.TEXT),
        (oracledb.DB_TYPE_CLOB, 0, 0, ColumnKind.TEXT),
        (oracledb.DB_TYPE_RAW, 0, 0, ColumnKind.BINARY),
        (oracledb.DB_TYPE_JSON, 0, 0, ColumnKind.JSON),
        (oracledb.DB_TYPE_BOOLEAN, 0, 0, ColumnKind.BOOLEAN),
    ],
)
def test_column_kinds(db_type, precision, scale, kind):
    column = column_of(("C", db_type, None, None, precision, scale, True))
    assert column.kind is kind


def oracle(**config: object) -> base.Connector:
    return base.create(
        Datasource(id=9, name="ledger", type=DatasourceType.ORACLE, connection_config=config)
    )


async def test_closed_port_fails_cleanly_without_the_password():
    conn = oracle(
        host="127.0.0.1",
        port=fallback_servers.closed_port(),
        service_name="FREEPDB1",
        username="reports",
        password="0racle-Secret",
        options={"connect_timeout_seconds": 2},
    )
    with pytest.raises(ConnectorError) as caught:
        await conn.open()
    await conn.close()
    message = str(caught.value)
    assert "127.0.0.1" in message and "FREEPDB1" in message
    assert "DPY-6005" in message
    assert "0racle-Secret" not in message


async def test_dsn_form_names_the_target():
    conn = oracle(
        dsn=f"127.0.0.1:{fallback_servers.closed_port()}/ORCL",
        username="reports",
        password={"env": "RH_TEST_UNSET_ORACLE_PASSWORD"},
    )
    with pytest.raises(ConnectorError, match="RH_TEST_UNSET_ORACLE_PASSWORD is not set"):
        await conn.open()


async def test_service_name_or_dsn_is_required():
    with pytest.raises(ConnectorError, match="service_name"):
        await oracle(host="h", username="u", password="p").open()


def test_zoned_timestamps_come_back_aware():
    from datetime import datetime, timedelta, timezone

    from reporthubd.connectors.oracle import parse_timestamp_tz

    value = parse_timestamp_tz("2024-01-02T03:04:05.123456+02:00")
    assert value == datetime(2024, 1, 2, 3, 4, 5, 123456, tzinfo=timezone(timedelta(hours=2)))
    assert parse_timestamp_tz(None) is None
