"""SQL Server specifics: the ODBC connection string, and clean errors from Microsoft's ODBC
Driver 18 (loaded from the mssql-python wheel) where no SQL Server runs."""

from __future__ import annotations

from pathlib import Path

import pytest

from reporthubd.connectors import base
from reporthubd.connectors.base import ConnectorError
from reporthubd.connectors.sqlserver import connection_string, flavour_of
from reporthubd.domain import Datasource, DatasourceType
from tests import servers
from tests.connectors import fallback_servers


def attributes(text: str) -> dict[str, str]:
    """Split a connection string whose values hold no `;` except inside braces."""
    out: dict[str, str] = {}
    key, value, depth, buf = "", "", 0, ""
    for ch in text + ";":
        if ch == "{" and depth == 0:
            depth = 1
        elif ch == "}" and depth == 1:
            depth = 0
        if ch == ";" and depth == 0:
            key, _, value = buf.partition("=")
            out[key] = value
            buf = ""
        else:
            buf += ch
    return out


def test_sql_server_string_is_explicit_about_tls_and_intent():
    text = connection_string(
        {
            "host": "db.example.com",
            "port": 14330,
            "database": "sales",
            "username": "reporter",
            "encrypt": True,
            "trust_server_certificate": False,
        },
        "p;w}d=1",
        7.5,
    )
    attrs = attributes(text)
    assert attrs["Driver"] == "{ODBC Driver 18 for SQL Server}"
    assert attrs["Server"] == "tcp:db.example.com,14330"
    assert attrs["Database"] == "sales"
    assert attrs["UID"] == "reporter"
    assert attrs["PWD"] == "{p;w}}d=1}"
    assert attrs["Encrypt"] == "yes"
    assert attrs["TrustServerCertificate"] == "no"
    assert attrs["ApplicationIntent"] == "ReadOnly"
    assert attrs["LoginTimeout"] == "8"


def test_trusted_connection_and_strict_encryption():
    attrs = attributes(
        connection_string(
            {
                "host": "h",
                "database": "d",
                "encrypt": "strict",
                "trust_server_certificate": True,
                "options": {"trusted_connection": True, "application_intent": "ReadWrite"},
            },
            None,
            10,
        )
    )
    assert attrs["Trusted_Connection"] == "yes"
    assert "PWD" not in attrs
    assert attrs["Encrypt"] == "strict"
    assert attrs["TrustServerCertificate"] == "yes"
    assert attrs["ApplicationIntent"] == "ReadWrite"
    assert attrs["Server"] == "tcp:h,1433"


def test_other_odbc_flavours_stream_with_cursors():
    pg = attributes(connection_string({"driver": "PostgreSQL Unicode", "database": "d"}, "", 5))
    assert pg["UseDeclareFetch"] == "1"
    assert pg["Port"] == "5432"
    maria = attributes(connection_string({"driver": "MariaDB Unicode", "database": "d"}, "", 5))
    assert maria["NO_CACHE"] == "1"
    assert maria["Port"] == "3306"
    assert [flavour_of(d) for d in ("ODBC Driver 18 for SQL Server", "MariaDB", "psql")] == [
        "sqlserver",
        "mariadb",
        "sqlserver",
    ]


def test_extra_odbc_attributes_are_braced_when_needed():
    attrs = attributes(
        connection_string(
            {"database": "d", "options": {"odbc": {"MultiSubnetFailover": "yes", "X": "a;b"}}},
            "pw",
            5,
        )
    )
    assert attrs["MultiSubnetFailover"] == "yes"
    assert attrs["X"] == "{a;b}"


@pytest.fixture(scope="module")
def driver18(tmp_path_factory: pytest.TempPathFactory) -> None:
    if not fallback_servers.register_msodbcsql(tmp_path_factory.mktemp("odbcsys")):
        servers.unavailable("Microsoft ODBC Driver 18 not found (pip install mssql-python)")


async def test_driver18_login_failure_is_clean(driver18: None, tmp_path: Path):
    secret = tmp_path / "pw"
    secret.write_text("Sq1-S3cret;{x}\n")
    conn = base.create(
        Datasource(
            id=3,
            name="erp",
            type=DatasourceType.SQLSERVER,
            connection_config={
                "host": "127.0.0.1",
                "port": fallback_servers.closed_port(),
                "database": "erp",
                "username": "sa",
                "password": {"file": str(secret)},
                "options": {"connect_timeout_seconds": 1},
            },
        )
    )
    with pytest.raises(ConnectorError) as caught:
        await conn.open()
    await conn.close()
    message = str(caught.value)
    assert "127.0.0.1" in message and "erp" in message
    assert "S3cret" not in message


async def test_missing_database_is_a_config_error():
    conn = base.create(
        Datasource(id=3, name="erp", type=DatasourceType.SQLSERVER, connection_config={"host": "h"})
    )
    with pytest.raises(ConnectorError, match="database is required"):
        await conn.open()


@pytest.mark.parametrize(
    ("driver", "port"),
    [("PostgreSQL Unicode", servers.POSTGRES_PORT), ("MariaDB Unicode", servers.MARIADB_PORT)],
)
async def test_required_tls_is_enforced_by_the_driver(driver: str, port: int):
    """The local servers run without TLS: asking for it must fail the connection cleanly."""
    if not fallback_servers.odbc_driver_registered(driver):
        servers.unavailable(f"ODBC driver [{driver}] not registered")
    conn = base.create(
        Datasource(
            id=4,
            name="tls",
            type=DatasourceType.SQLSERVER,
            connection_config={
                "driver": driver,
                "host": "127.0.0.1",
                "port": port,
                "database": "postgres" if "Postgre" in driver else "mysql",
                "username": "postgres" if "Postgre" in driver else "root",
                "password": "",
                "encrypt": True,
                "options": {"connect_timeout_seconds": 5},
            },
        )
    )
    with pytest.raises(ConnectorError, match="cannot connect"):
        await conn.open()
    await conn.close()
