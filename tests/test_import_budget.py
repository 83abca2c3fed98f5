"""The commands that serve nothing import only what they use (issue 16).

Each command runs in a fresh interpreter (`reporthubd.cli.main` called by `python -c`, which then
reports `sys.modules`), so what an earlier test imported cannot hide or add anything. Two checks:

- a fixed budget of modules per command, `BUDGETS`: today's count (bench/imports.py prints it)
  plus room for small additions; a new module-level import of a big library breaks it;
- named heavy libraries absent: no driver, no HTTP stack, no output-format or delivery library,
  no Alembic (a store at its schema is checked without it), and for `version` and `next --cron`
  not even SQLAlchemy or pydantic's settings; `check` loads its own store's driver and dialect
  only (on every backend; the MySQL dialect aside, whose column variants the schema declares).

The daemon's module is checked too: it loads no connector, format or deliverer that a registry
names (they load when a report uses them), no Alembic, Jinja2 or unused dialect.

Measured when the budgets were set (interpreter alone: 73 modules; asyncio: 151; SQLAlchemy's
asyncio layer with aiosqlite: 357): version 173, next --cron 296, check on a SQLite store 592;
`execute` of a CSV report on SQLite, the run included, 740 (852 while it
imported the control plane's aiohttp for one JSON helper).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import reporthubd
from reporthubd.store import migrate

PACKAGE_PARENT = Path(reporthubd.__file__).resolve().parent.parent

BUDGETS = {"version": 200, "next --cron": 350, "check": 700, "execute": 780}
"""The most modules (`len(sys.modules)`, the interpreter's own included) each command may load."""

DRIVERS_AND_PLUGINS = (
    "aiohttp",
    "asyncpg",
    "aiomysql",
    "pymysql",
    "oracledb",
    "pymongo",
    "motor",
    "snowflake",
    "google.cloud.bigquery",
    "openpyxl",
    "xlsxwriter",
    "reportlab",
    "boto3",
    "botocore",
    "aiobotocore",
    "asyncssh",
    "paramiko",
    "aiosmtplib",
    "pandas",
    "alembic",
    "mako",
    "jinja2",
)
"""Absent from every command here."""

NO_STORE = ("sqlalchemy", "aiosqlite", "structlog")
"""Absent also from `version` and `next --cron`, which open no store."""

_RUNNER = """
import json, sys
from reporthubd import cli
try:
    rc = cli.main(sys.argv[1:])
except SystemExit as exc:
    rc = exc.code
print("\\n" + json.dumps({"rc": rc, "modules": sorted(sys.modules)}))
"""


def _run(argv: list[str], cwd: Path) -> tuple[int, set[str]]:
    done = subprocess.run(
        [sys.executable, "-c", _RUNNER, *argv],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={
            "PATH": "/usr/bin:/bin",
            "HOME": str(cwd),
            "REPORTHUBD_ENV_FILE": "",
            "PYTHONPATH": str(PACKAGE_PARENT),  # the tree under test, not another checkout's
        },
        timeout=120,
        check=False,
    )
    assert done.stdout.strip(), done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    return int(report["rc"]), set(report["modules"])


def _loaded(modules: set[str], names: tuple[str, ...]) -> list[str]:
    return sorted(n for n in names if n in modules or any(m.startswith(n + ".") for m in modules))


def test_version_imports_almost_nothing(tmp_path: Path) -> None:
    rc, modules = _run(["version"], tmp_path)
    assert rc == 0
    assert len(modules) <= BUDGETS["version"], len(modules)
    assert _loaded(modules, DRIVERS_AND_PLUGINS + NO_STORE) == []
    assert _loaded(modules, ("pydantic", "croniter")) == []


def test_next_cron_imports_no_store_and_no_server(tmp_path: Path) -> None:
    rc, modules = _run(
        ["next", "--cron", "0 6 * * 1-5", "--tz", "Europe/Paris", "-n", "3"], tmp_path
    )
    assert rc == 0
    assert len(modules) <= BUDGETS["next --cron"], len(modules)
    assert _loaded(modules, DRIVERS_AND_PLUGINS + NO_STORE) == []


def test_execute_imports_no_server_and_only_the_report_s_own_plugins(tmp_path: Path) -> None:
    """A cold `reporthubd execute` (issue 16's cold export) pays for what its run uses: the
    report's connector and format, not the control plane or another driver."""
    sqlite3_db = tmp_path / "data.db"
    config = tmp_path / "config.toml"
    config.write_text(
        f'[store]\nurl = "sqlite:///{tmp_path / "store.db"}"\n\n'
        f'[execution]\nworkspace = "{tmp_path / "ws"}"\n',
        encoding="utf-8",
    )
    catalog = tmp_path / "catalog.toml"
    catalog.write_text(
        f"""[[datasources]]\nname = "data"\ntype = "sqlite"\n"""
        f"""connection_config = {{ path = "{sqlite3_db}" }}\n\n"""
        """[[reports]]\nname = "one"\ndatasource = "data"\noutput_format = "csv"\n"""
        """query = "SELECT 1 AS one, 'two' AS two"\n""",
        encoding="utf-8",
    )
    import sqlite3

    sqlite3.connect(sqlite3_db).close()
    assert _run(["db", "upgrade", "-c", str(config)], tmp_path)[0] == 0
    assert _run(["apply", "-c", str(config), str(catalog)], tmp_path)[0] == 0
    rc, modules = _run(["execute", "-c", str(config), "1", "--no-deliver", "--json"], tmp_path)
    assert rc == 0
    assert len(modules) <= BUDGETS["execute"], len(modules)
    assert "reporthubd.connectors.sqlite" in modules and "reporthubd.formats.csv" in modules
    unwanted = [n for n in DRIVERS_AND_PLUGINS if n not in ("jinja2",)]  # the file name's template
    assert _loaded(modules, (*unwanted, "sqlalchemy.dialects.postgresql")) == []


STORE_DRIVERS = {
    "sqlite": ("aiosqlite", "sqlalchemy.dialects.sqlite"),
    "mariadb": ("aiomysql", "sqlalchemy.dialects.mysql"),
    "postgresql": ("asyncpg", "sqlalchemy.dialects.postgresql"),
}


def test_check_imports_only_its_stores_driver(backend: str, store_url: str, tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text(
        f'[store]\nurl = "{store_url}"\n\n[execution]\nworkspace = "{tmp_path / "ws"}"\n',
        encoding="utf-8",
    )
    rc, _ = _run(["db", "upgrade", "-c", str(config)], tmp_path)
    assert rc == 0
    rc, modules = _run(["check", "-c", str(config)], tmp_path)
    assert rc == 0
    assert len(modules) <= BUDGETS["check"], len(modules)
    own_driver, own_dialect = STORE_DRIVERS[backend]
    assert own_driver in modules and own_dialect in modules
    others = [name for kind, pair in STORE_DRIVERS.items() if kind != backend for name in pair]
    if backend != "mariadb":  # the store's schema declares MySQL column variants (LONGTEXT)
        others.remove("sqlalchemy.dialects.mysql")
    allowed = {own_driver, "pymysql"} if backend == "mariadb" else {own_driver}  # aiomysql's base
    unwanted = [n for n in DRIVERS_AND_PLUGINS if n not in allowed]
    assert _loaded(modules, (*unwanted, *others)) == []


def test_the_revision_graph_read_without_alembic_is_alembics() -> None:
    """migrate reads revisions from the migration files' source; Alembic must agree."""
    from alembic.script import ScriptDirectory

    scripts = ScriptDirectory.from_config(migrate.alembic_config())
    assert migrate.head_revision() == scripts.get_current_head()
    assert migrate.known_revisions() == {s.revision for s in scripts.walk_revisions()}
    assert migrate.revision_graph() == {
        s.revision: s.down_revision for s in scripts.walk_revisions()
    }


_DAEMON_IMPORT = """
import json, sys
import reporthubd.daemon
print(json.dumps(sorted(sys.modules)))
"""


def _plugin_modules() -> set[str]:
    """Every module a registry names: the connectors, formats and deliverers themselves."""
    from reporthubd.connectors import base as connectors
    from reporthubd.deliverers import base as deliverers
    from reporthubd.formats import base as formats

    registries = (connectors.REGISTRY, formats.REGISTRY, deliverers.REGISTRY)
    return {target.partition(":")[0] for registry in registries for target in registry.values()}


def test_the_daemon_imports_no_plugin_and_no_unused_dialect(tmp_path: Path) -> None:
    """A daemon at start loads the control plane, the scheduler and the engine it serves, but no
    connector, format or deliverer (they load when a report uses them), no Alembic (only an
    upgrade needs it) and no Jinja2 (loaded by the first template)."""
    done = subprocess.run(
        [sys.executable, "-c", _DAEMON_IMPORT],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "PYTHONPATH": str(PACKAGE_PARENT)},
        timeout=120,
        check=True,
    )
    modules = set(json.loads(done.stdout))
    assert len(_plugin_modules()) >= 15
    assert sorted(_plugin_modules() & modules) == []
    heavy = [n for n in DRIVERS_AND_PLUGINS if n != "aiohttp"]
    assert _loaded(modules, (*heavy, "sqlalchemy.dialects.postgresql")) == []
    assert "aiohttp.web" in modules  # the control plane it serves


def test_lazy_registries_still_name_unknown_kinds_and_missing_libraries() -> None:
    from reporthubd import plugins
    from reporthubd.connectors.base import ConnectorError, connector_class
    from reporthubd.deliverers.base import DeliveryError, deliverer_class
    from reporthubd.formats.base import FormatError, writer_class

    with pytest.raises(ConnectorError, match="no connector for datasource type 'nosuch'"):
        connector_class("nosuch")
    with pytest.raises(FormatError, match="unknown output format 'nosuch'"):
        writer_class("nosuch")
    with pytest.raises(DeliveryError, match="unknown delivery method 'nosuch'"):
        deliverer_class("nosuch")
    with pytest.raises(plugins.MissingLibrary) as missing:
        plugins.load({"x": "reporthubd_no_such_driver.module:Plugin"}, "x")
    assert missing.value.name == "reporthubd_no_such_driver"
    assert connector_class("sqlite").__name__ == "SQLiteConnector"
