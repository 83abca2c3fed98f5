"""Schema migrations with Alembic, run on the store's own async engine.

Our version table is `reporthubd_alembic_version`, so other services sharing the database may
use Alembic for their own tables without clashing.

Alembic (with Mako and every dialect's DDL, about 100 ms and 7 MB) is imported only to upgrade.
Checking a store's revision, which every command and the daemon do at start, reads the version
table with one SELECT and the revision graph from the migration files' `revision` and
`down_revision` assignments, parsed with `ast` (no migration module is imported);
tests/test_import_budget.py checks that graph against Alembic's own.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from importlib import resources
from typing import TYPE_CHECKING

import sqlalchemy as sa
from sqlalchemy import Connection

if TYPE_CHECKING:
    from alembic.config import Config

    from reporthubd.store.database import Store

VERSION_TABLE = "reporthubd_alembic_version"


def alembic_config() -> Config:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option(
        "script_location", str(resources.files("reporthubd.store").joinpath("migrations"))
    )
    return cfg


def revision_graph() -> dict[str, str | None]:
    """Each migration's revision and the one it revises (None for the first), read from the
    module-level assignments of the files in migrations/versions/."""
    graph: dict[str, str | None] = {}
    versions = resources.files("reporthubd.store").joinpath("migrations", "versions")
    for entry in versions.iterdir():
        if not entry.name.endswith(".py"):
            continue
        values: dict[str, object] = {}
        for node in ast.parse(entry.read_text(encoding="utf-8")).body:
            if isinstance(node, ast.Assign) and len(node.targets) == 1:
                target = node.targets[0]
                if isinstance(target, ast.Name) and target.id in ("revision", "down_revision"):
                    values[target.id] = ast.literal_eval(node.value)
        revision, down = values.get("revision"), values.get("down_revision")
        if not isinstance(revision, str) or not (down is None or isinstance(down, str)):
            raise RuntimeError(f"migration {entry.name}: no plain revision / down_revision")
        graph[revision] = down
    return graph


def head_revision() -> str:
    graph = revision_graph()
    heads = sorted(set(graph) - {down for down in graph.values() if down is not None})
    if len(heads) != 1:
        raise RuntimeError(f"the store's migrations have {len(heads)} heads: {heads}")
    return heads[0]


def known_revisions() -> set[str]:
    return set(revision_graph())


@dataclass(frozen=True, kw_only=True)
class SchemaState:
    current: str | None
    head: str
    known: bool

    @property
    def up_to_date(self) -> bool:
        return self.current == self.head

    def problem(self) -> str | None:
        """A message for an operator, or None when the schema is what this version expects."""
        if self.up_to_date:
            return None
        if self.current is None:
            return "the store has no reporthubd schema yet: run `reporthubd db upgrade`"
        if not self.known:
            return (
                f"the store's schema revision {self.current} is unknown to this reporthubd "
                f"(expects {self.head}); it was probably written by a newer version: upgrade "
                "reporthubd, or run `reporthubd db current` to see where the store stands"
            )
        return (
            f"the store's schema is at revision {self.current}, older than {self.head}: "
            "run `reporthubd db upgrade`"
        )


def _current(connection: Connection) -> str | None:
    if not sa.inspect(connection).has_table(VERSION_TABLE):
        return None
    version = sa.table(VERSION_TABLE, sa.column("version_num"))
    rows = connection.execute(sa.select(version.c.version_num)).all()
    if len(rows) > 1:
        raise RuntimeError(f"{VERSION_TABLE} holds {len(rows)} revisions (branches)")
    return str(rows[0][0]) if rows else None


async def schema_state(store: Store) -> SchemaState:
    async with store.engine.connect() as conn:
        current = await conn.run_sync(_current)
    return SchemaState(
        current=current, head=head_revision(), known=current is None or current in known_revisions()
    )


def _upgrade(connection: Connection, target: str) -> None:
    from alembic import command

    cfg = alembic_config()
    cfg.attributes["connection"] = connection
    command.upgrade(cfg, target)


async def upgrade(store: Store, target: str = "head") -> tuple[str | None, str | None]:
    """Upgrade to `target`; idempotent. Returns (revision before, revision after)."""
    before = (await schema_state(store)).current
    async with store.engine.connect() as conn:
        sqlite = conn.dialect.name == "sqlite"
        if sqlite:
            # Batch migrations recreate SQLite tables; with foreign keys on, dropping the old
            # copy of a referenced table (report_executions) would cascade-delete the rows that
            # refer to it. SQLite ignores this pragma inside a transaction: set it before.
            await conn.exec_driver_sql("PRAGMA foreign_keys=OFF")
            await conn.commit()
        try:
            async with conn.begin():
                await conn.run_sync(_upgrade, target)
        finally:
            if sqlite:
                await conn.exec_driver_sql("PRAGMA foreign_keys=ON")
                await conn.commit()
    after = (await schema_state(store)).current
    return before, after
