"""Column types shared by the schema and its migrations (keep them stable: migrations import them).

- `UTCDateTime`: stored as a naive UTC DATETIME (microseconds on MySQL); aware datetimes in,
  aware UTC datetimes out. A naive datetime handed in is a programming error.
- `JSONDocument`: a JSON column. SQLite has no JSON validation, so there it is TEXT read back
  leniently: malformed text becomes a `MalformedJSON` value that validation reports per row.
- `utcnow()`: a server-side "now in UTC" default for each dialect.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import mysql
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement


class UTCDateTime(sa.TypeDecorator[datetime]):
    impl = sa.DateTime
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> sa.types.TypeEngine[Any]:
        if dialect.name in {"mysql", "mariadb"}:
            return dialect.type_descriptor(mysql.DATETIME(fsp=6))
        return dialect.type_descriptor(sa.DateTime(timezone=False))

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r} given to a UTC column")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if isinstance(value, str):  # SQLite rows written by hand
            value = datetime.fromisoformat(value)
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)  # type: ignore[no-any-return]
        return value.astimezone(UTC)  # type: ignore[no-any-return]


@dataclass(frozen=True)
class MalformedJSON:
    raw: str
    error: str


class JSONDocument(sa.TypeDecorator[Any]):
    impl = sa.JSON
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> sa.types.TypeEngine[Any]:
        if dialect.name == "sqlite":
            return dialect.type_descriptor(sa.Text())
        return dialect.type_descriptor(sa.JSON())

    def process_bind_param(self, value: Any, dialect: Dialect) -> Any:
        if dialect.name == "sqlite" and value is not None:
            return json.dumps(value, default=str)
        return value

    def process_result_value(self, value: Any, dialect: Dialect) -> Any:
        if isinstance(value, str) and dialect.name == "sqlite":
            try:
                return json.loads(value)
            except ValueError as exc:
                return MalformedJSON(raw=value[:200], error=str(exc))
        return value


class utcnow(FunctionElement[datetime]):
    type = sa.DateTime()
    inherit_cache = True


@compiles(utcnow, "postgresql")
def _pg_utcnow(element: utcnow, compiler: SQLCompiler, **kw: Any) -> str:
    return "timezone('utc', now())"


@compiles(utcnow, "mysql")
@compiles(utcnow, "mariadb")
def _mysql_utcnow(element: utcnow, compiler: SQLCompiler, **kw: Any) -> str:
    return "(UTC_TIMESTAMP(6))"


@compiles(utcnow, "sqlite")
def _sqlite_utcnow(element: utcnow, compiler: SQLCompiler, **kw: Any) -> str:
    return "(strftime('%Y-%m-%d %H:%M:%f', 'now'))"


def id_column(name: str = "id") -> sa.Column[int]:
    """An auto-increment integer key: BIGINT on servers, INTEGER (rowid alias) on SQLite."""
    return sa.Column(
        name,
        sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
        primary_key=True,
        autoincrement=True,
    )


def created_at() -> sa.Column[datetime]:
    return sa.Column("created_at", UTCDateTime(), nullable=False, server_default=utcnow())


def updated_at() -> sa.Column[datetime]:
    return sa.Column("updated_at", UTCDateTime(), nullable=False, server_default=utcnow())


def is_active() -> sa.Column[bool]:
    return sa.Column("is_active", sa.Boolean(), nullable=False, server_default=sa.true())
