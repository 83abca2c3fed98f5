"""Schema migrations with Alembic, run on the store's own async engine.

Our version table is `reporthubd_alembic_version`, so other services sharing the database may
use Alembic for their own tables without clashing.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from typing import TYPE_CHECKING

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection

if TYPE_CHECKING:
    from reporthubd.store.database import Store

VERSION_TABLE = "reporthubd_alembic_version"


def alembic_config() -> Config:
    cfg = Config()
    cfg.set_main_option(
        "script_location", str(resources.files("reporthubd.store").joinpath("migrations"))
    )
    return cfg


def head_revision() -> str:
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None
    return head


def known_revisions() -> set[str]:
    return {
        script.revision for script in ScriptDirectory.from_config(alembic_config()).walk_revisions()
    }


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
    context = MigrationContext.configure(connection, opts={"version_table": VERSION_TABLE})
    return context.get_current_revision()


async def schema_state(store: Store) -> SchemaState:
    async with store.engine.connect() as conn:
        current = await conn.run_sync(_current)
    return SchemaState(
        current=current, head=head_revision(), known=current is None or current in known_revisions()
    )


def _upgrade(connection: Connection, target: str) -> None:
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
