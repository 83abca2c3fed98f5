"""Report query text with `:name` placeholders → each driver's parameter style.

Report authors write one query text for every data source::

    SELECT * FROM sales WHERE region = :region AND sold_at >= :since::date

A connector turns it into what its driver binds, with `bind`::

    q = params.bind(sql, {"region": "EMEA", "since": "2026-01-01"}, "numeric")
    q.sql     # 'SELECT * FROM sales WHERE region = $1 AND sold_at >= $2::date'
    q.args()  # ('EMEA', '2026-01-01')          → await conn.fetch(q.sql, *q.args())

Styles (`Style`):

=========  ======================  ==========================  =====================================
style      placeholder             `args()`                    drivers
=========  ======================  ==========================  =====================================
numeric    `$1`, `$2` (repeats     tuple, one per distinct     asyncpg
           reuse their number)     name
pyformat   `%(name)s`              dict                        aiomysql/PyMySQL, psycopg, snowflake
format     `%s`                    tuple, one per occurrence   aiomysql/PyMySQL (positional)
named      `:name`                 dict                        sqlite3, oracledb, snowflake
qmark      `?`                     tuple, one per occurrence   ODBC (aioodbc), sqlite3
at         `@name`                 dict                        BigQuery, SQL Server (T-SQL names)
colon_num  `:1`, `:2` (repeats     tuple, one per distinct     oracledb / snowflake numeric
           reuse their number)     name
=========  ======================  ==========================  =====================================

For `pyformat` and `format` every literal `%` of the text (in strings and comments too, since the
driver applies `%` formatting to the whole text) is doubled; always pass `args()` to the driver,
even when it is empty, or the doubled `%%` would reach the server.

What counts as a placeholder: a `:` followed by a letter or `_` and then letters, digits or `_`,
not preceded by a letter, digit, `_`, `:` or `\\`, and not followed by a single `:` (SQLAlchemy's
`text()` rule, except that `:since::date` is a placeholder with a cast). So `x::date` (casts),
`a[1:n]` and `arr[lo:hi]` (slices), `:=` (assignments) and `10:30` are left alone.
Nothing inside a string or comment is a placeholder:
`'...'` (with `''` escapes), `"..."` identifiers, `` `...` `` identifiers, PostgreSQL dollar quotes
(`$$...$$`, `$tag$...$tag$`), `E'...'` escape strings, `-- ...` line comments and `/* ... */` block
comments (nested ones too, as PostgreSQL allows). With `dialect="mysql"` or `"bigquery"`,
backslash escapes apply inside `'...'` and `"..."` (which are strings there), `#` starts a line
comment and block comments do not nest. `\\:name` writes a literal `:name`.

A name used in the query but absent from the values raises `MissingParameterError`, which names
every missing parameter; call `bind` (or `referenced`) before connecting. Values given but not
used are ignored. Values are passed as they are; converting them (dates, decimals) is the
driver's job.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any


class Style(enum.StrEnum):
    NUMERIC = "numeric"
    PYFORMAT = "pyformat"
    FORMAT = "format"
    NAMED = "named"
    QMARK = "qmark"
    AT = "at"
    COLON_NUMERIC = "colon_num"


_POSITIONAL_PER_OCCURRENCE = {Style.FORMAT, Style.QMARK}
_POSITIONAL_PER_NAME = {Style.NUMERIC, Style.COLON_NUMERIC}
_BACKSLASH_DIALECTS = {"mysql", "bigquery"}


class ParameterError(ValueError):
    """A problem with the query's parameters, in words a report author understands."""


class MissingParameterError(ParameterError):
    def __init__(self, missing: list[str]) -> None:
        self.missing = tuple(missing)
        names = ", ".join(f":{n}" for n in missing)
        noun = "parameter" if len(missing) == 1 else "parameters"
        super().__init__(f"the query uses {noun} {names} but no value was given")


@dataclass(frozen=True, kw_only=True)
class BoundQuery:
    sql: str
    """The converted query text."""
    style: Style
    names: tuple[str, ...]
    """The name behind each bound value: per occurrence for `qmark`/`format`, per distinct name
    (in order of first use) for the other styles."""
    values: tuple[Any, ...]
    """The values, aligned with `names`."""

    def args(self) -> tuple[Any, ...] | dict[str, Any]:
        """What to hand the driver: a tuple for positional styles, a dict for named ones."""
        if self.style in _POSITIONAL_PER_OCCURRENCE or self.style in _POSITIONAL_PER_NAME:
            return self.values
        return dict(zip(self.names, self.values, strict=True))

    @property
    def mapping(self) -> dict[str, Any]:
        """Name → value for every referenced name."""
        return dict(zip(self.names, self.values, strict=True))


def _is_ident_char(ch: str) -> bool:
    return ch.isalnum() or ch == "_"


def _is_ident_start(ch: str) -> bool:
    return ch.isalpha() or ch == "_"


def _scan(sql: str, dialect: str) -> list[tuple[str, str]]:
    """Split `sql` into ("text", chunk) / ("param", name) / ("lit", chunk) tokens.

    "lit" chunks are strings, identifiers and comments: copied verbatim (except `%` doubling).
    """
    backslash = dialect in _BACKSLASH_DIALECTS
    hash_comments = dialect in _BACKSLASH_DIALECTS
    nested_comments = dialect not in _BACKSLASH_DIALECTS
    out: list[tuple[str, str]] = []
    text_start = 0
    i = 0
    n = len(sql)

    def flush(upto: int) -> None:
        if upto > text_start:
            out.append(("text", sql[text_start:upto]))

    while i < n:
        ch = sql[i]
        end = -1
        if ch in "'\"`":
            prev = sql[i - 1] if i > 0 else ""
            escape_string = (
                ch == "'"
                and prev != ""
                and prev in "eE"
                and (i < 2 or not _is_ident_char(sql[i - 2]))
                and dialect not in _BACKSLASH_DIALECTS
            )
            end = _quoted_end(sql, i, ch, backslash=(backslash and ch != "`") or escape_string)
        elif (ch == "-" and sql.startswith("--", i)) or (ch == "#" and hash_comments):
            nl = sql.find("\n", i)
            end = n if nl < 0 else nl
        elif ch == "/" and sql.startswith("/*", i):
            end = _block_comment_end(sql, i, nested=nested_comments)
        elif ch == "$" and (i == 0 or not _is_ident_char(sql[i - 1])):
            end = _dollar_end(sql, i)
        elif ch == "\\" and sql.startswith("\\:", i):
            flush(i)
            out.append(("lit", ":"))
            i += 2
            text_start = i
            continue
        elif ch == ":":
            if sql.startswith("::", i):
                i += 2
                continue
            prev = sql[i - 1] if i > 0 else ""
            if i + 1 < n and _is_ident_start(sql[i + 1]) and not _is_ident_char(prev):
                j = i + 2
                while j < n and _is_ident_char(sql[j]):
                    j += 1
                if not sql.startswith(":", j) or sql.startswith("::", j):
                    flush(i)
                    out.append(("param", sql[i + 1 : j]))
                    i = j
                    text_start = i
                    continue
                i = j
                continue
        if end >= 0:
            flush(i)
            out.append(("lit", sql[i:end]))
            i = end
            text_start = i
            continue
        i += 1
    flush(n)
    return out


def _quoted_end(sql: str, start: int, quote: str, *, backslash: bool) -> int:
    """Index just past the closing quote (doubled quotes are escapes); len(sql) if unclosed."""
    i = start + 1
    n = len(sql)
    while i < n:
        ch = sql[i]
        if backslash and ch == "\\":
            i += 2
            continue
        if ch == quote:
            if i + 1 < n and sql[i + 1] == quote:
                i += 2
                continue
            return i + 1
        i += 1
    return n


def _block_comment_end(sql: str, start: int, *, nested: bool) -> int:
    depth = 0
    i = start
    n = len(sql)
    while i < n:
        if sql.startswith("/*", i):
            depth = depth + 1 if nested or depth == 0 else depth
            i += 2
        elif sql.startswith("*/", i):
            depth -= 1
            i += 2
            if depth == 0:
                return i
        else:
            i += 1
    return n


def _dollar_end(sql: str, start: int) -> int:
    """If a dollar quote opens at `start`, the index past its close; else -1."""
    j = start + 1
    n = len(sql)
    if j < n and _is_ident_start(sql[j]):
        while j < n and _is_ident_char(sql[j]) and sql[j] != "$":
            j += 1
    if j >= n or sql[j] != "$":
        return -1
    tag = sql[start : j + 1]
    close = sql.find(tag, j + 1)
    return n if close < 0 else close + len(tag)


def referenced(sql: str, *, dialect: str = "standard") -> list[str]:
    """The distinct placeholder names of `sql`, in order of first use."""
    seen: dict[str, None] = {}
    for kind, value in _scan(sql, dialect):
        if kind == "param":
            seen.setdefault(value, None)
    return list(seen)


def rewrite(sql: str, render: Callable[[str], str], *, dialect: str = "standard") -> str:
    """Replace each placeholder with `render(name)`, leaving strings and comments alone (for
    drivers whose statements cannot take bind parameters, e.g. PostgreSQL COPY: `render` then
    yields an expression reading a bound value, never the value itself)."""
    parts = []
    for kind, value in _scan(sql, dialect):
        parts.append(render(value) if kind == "param" else value)
    return "".join(parts)


def check(sql: str, values: Mapping[str, Any], *, dialect: str = "standard") -> None:
    """Raise `MissingParameterError` if `sql` uses a name that `values` lacks."""
    missing = [name for name in referenced(sql, dialect=dialect) if name not in values]
    if missing:
        raise MissingParameterError(missing)


def bind(
    sql: str,
    values: Mapping[str, Any],
    style: Style | str,
    *,
    dialect: str = "standard",
) -> BoundQuery:
    """Convert `sql`'s `:name` placeholders to `style` and collect the values to bind.

    `dialect` is "standard" (PostgreSQL, SQLite, Oracle, SQL Server, Snowflake) or "mysql" /
    "bigquery" (backslash escapes in strings, `#` comments).
    """
    style = Style(style)
    tokens = _scan(sql, dialect)
    missing = [v for k, v in tokens if k == "param" and v not in values]
    if missing:
        raise MissingParameterError(list(dict.fromkeys(missing)))
    double_percent = style in (Style.PYFORMAT, Style.FORMAT)
    parts: list[str] = []
    names: list[str] = []
    numbers: dict[str, int] = {}
    for kind, value in tokens:
        if kind != "param":
            parts.append(value.replace("%", "%%") if double_percent else value)
            continue
        if style in _POSITIONAL_PER_NAME:
            if value not in numbers:
                names.append(value)
                numbers[value] = len(names)
            prefix = "$" if style is Style.NUMERIC else ":"
            parts.append(f"{prefix}{numbers[value]}")
        elif style in _POSITIONAL_PER_OCCURRENCE:
            names.append(value)
            parts.append("?" if style is Style.QMARK else "%s")
        else:
            if value not in numbers:
                names.append(value)
                numbers[value] = len(names)
            if style is Style.PYFORMAT:
                parts.append(f"%({value})s")
            elif style is Style.AT:
                parts.append(f"@{value}")
            else:
                parts.append(f":{value}")
    return BoundQuery(
        sql="".join(parts),
        style=style,
        names=tuple(names),
        values=tuple(values[name] for name in names),
    )
