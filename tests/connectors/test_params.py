"""`:name` placeholders → driver parameter styles (unit tests, no server)."""

from __future__ import annotations

import sqlite3

import pytest

from reporthubd.connectors import params
from reporthubd.connectors.params import MissingParameterError, Style

SQL = "SELECT * FROM t WHERE a = :a AND b > :b OR a2 = :a"
VALUES = {"a": 1, "b": "x", "unused": 3}


@pytest.mark.parametrize(
    ("style", "sql", "args"),
    [
        ("numeric", "SELECT * FROM t WHERE a = $1 AND b > $2 OR a2 = $1", (1, "x")),
        (
            "pyformat",
            "SELECT * FROM t WHERE a = %(a)s AND b > %(b)s OR a2 = %(a)s",
            {"a": 1, "b": "x"},
        ),
        ("format", "SELECT * FROM t WHERE a = %s AND b > %s OR a2 = %s", (1, "x", 1)),
        ("named", "SELECT * FROM t WHERE a = :a AND b > :b OR a2 = :a", {"a": 1, "b": "x"}),
        ("qmark", "SELECT * FROM t WHERE a = ? AND b > ? OR a2 = ?", (1, "x", 1)),
        ("at", "SELECT * FROM t WHERE a = @a AND b > @b OR a2 = @a", {"a": 1, "b": "x"}),
        ("colon_num", "SELECT * FROM t WHERE a = :1 AND b > :2 OR a2 = :1", (1, "x")),
    ],
)
def test_each_style(style: str, sql: str, args: object) -> None:
    q = params.bind(SQL, VALUES, style)
    assert q.sql == sql
    assert q.args() == args
    assert q.style is Style(style)


def test_names_and_mapping() -> None:
    q = params.bind(SQL, VALUES, Style.QMARK)
    assert q.names == ("a", "b", "a")
    assert q.mapping == {"a": 1, "b": "x"}
    assert params.referenced(SQL) == ["a", "b"]


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT ':a' AS s",
        "SELECT 'it''s :a' AS s",
        'SELECT ":a" FROM t',
        "SELECT `:a` FROM t",
        "SELECT 1 -- where x = :a\n",
        "SELECT 1 /* :a */",
        "SELECT 1 /* outer /* :a */ still comment :a */",
        "SELECT $$ :a $$",
        "SELECT $body$ it's :a $$ nested $body$",
        "SELECT E'\\' :a '",
        "SELECT x::date, y::text[] FROM t",
        "SELECT arr[1:2], arr[lo:hi] FROM t",
        "SELECT '10:30'::time, 10:30",
        "SELECT 1 WHERE x := 3",
        "SELECT \\:a",
    ],
)
def test_not_placeholders(sql: str) -> None:
    assert params.referenced(sql) == []
    q = params.bind(sql, {}, "numeric")
    expected = sql.replace("\\:", ":")
    assert q.sql == expected
    assert q.args() == ()


def test_casts_next_to_placeholders() -> None:
    q = params.bind("SELECT :d::date, (:n)::int, :t::text[]", {"d": 1, "n": 2, "t": 3}, "numeric")
    assert q.sql == "SELECT $1::date, ($2)::int, $3::text[]"
    assert q.args() == (1, 2, 3)


def test_placeholder_after_string_and_comment() -> None:
    sql = "SELECT 'x:y' || :a /* :b */ -- :c\n, $$:d$$, :e"
    assert params.referenced(sql) == ["a", "e"]
    assert params.bind(sql, {"a": 1, "e": 2}, "qmark").sql == (
        "SELECT 'x:y' || ? /* :b */ -- :c\n, $$:d$$, ?"
    )


def test_positional_dollar_is_not_a_dollar_quote() -> None:
    sql = "SELECT $1, :a, a$b$c FROM t WHERE :b = 1"
    assert params.referenced(sql) == ["a", "b"]


def test_unclosed_string_swallows_rest() -> None:
    assert params.referenced("SELECT 'open :a") == []


def test_percent_doubled_for_pyformat_and_format() -> None:
    sql = "SELECT '50%' AS p, x % 2 FROM t WHERE n LIKE :pat /* 100% */"
    q = params.bind(sql, {"pat": "a%"}, "pyformat")
    assert q.sql == "SELECT '50%%' AS p, x %% 2 FROM t WHERE n LIKE %(pat)s /* 100%% */"
    assert q.sql % {"pat": "'a%'"} == sql.replace(":pat", "'a%'")
    q2 = params.bind(sql, {"pat": "a%"}, "format")
    assert q2.sql.count("%%") == 3
    assert params.bind(sql, {"pat": 1}, "numeric").sql.count("%%") == 0


def test_mysql_dialect_backslashes_and_hash_comments() -> None:
    sql = "SELECT 'it\\'s :a', \"q\\\" :b\" # :c\n, :d"
    assert params.referenced(sql, dialect="mysql") == ["d"]
    # Standard SQL: the backslash does not escape, so the text after it is outside the string.
    assert params.referenced("SELECT 'C:\\', :a") == ["a"]
    # MySQL block comments do not nest.
    assert params.referenced("SELECT /* /* */ :a */", dialect="mysql") == ["a"]


def test_missing_parameter_names_all_missing() -> None:
    with pytest.raises(MissingParameterError) as err:
        params.bind("SELECT :a, :b, :a, :c", {"b": 1}, "numeric")
    assert err.value.missing == ("a", "c")
    assert ":a" in str(err.value) and ":c" in str(err.value)
    assert ":b" not in str(err.value)
    with pytest.raises(MissingParameterError, match="parameter :x "):
        params.check("SELECT :x", {})
    params.check("SELECT :x", {"x": None})


def test_none_is_a_value() -> None:
    assert params.bind("SELECT :x", {"x": None}, "numeric").args() == (None,)


def test_unknown_style() -> None:
    with pytest.raises(ValueError):
        params.bind("SELECT 1", {}, "percent")


def test_unicode_identifiers() -> None:
    q = params.bind("SELECT :région, :日付", {"région": 1, "日付": 2}, "numeric")
    assert q.sql == "SELECT $1, $2"


@pytest.mark.parametrize("style", ["named", "qmark"])
def test_sqlite_binds_converted_text(style: str) -> None:
    sql = "SELECT :a || ':a' || :b, :a -- :zz\n"
    q = params.bind(sql, {"a": "x", "b": "y"}, style)
    with sqlite3.connect(":memory:") as conn:
        row = conn.execute(q.sql, q.args()).fetchone()
    assert row == ("x:ay", "x")
