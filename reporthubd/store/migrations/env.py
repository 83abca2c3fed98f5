"""Alembic environment: runs on a connection handed in by reporthubd.store.migrate."""

from alembic import context

from reporthubd.store.schema import metadata
from reporthubd.store.migrate import VERSION_TABLE

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations through `reporthubd db upgrade`, not the alembic CLI")

context.configure(
    connection=connection,
    target_metadata=metadata,
    version_table=VERSION_TABLE,
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
