"""The SQL behind a report's `[reports.audiences]` in `reporthubd apply` and `export`
(reporthubd/catalog_audiences.py): one `report_audience_drivers` row per report."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from reporthubd import catalog as cat
from reporthubd.catalog_audiences import AudienceSpec
from reporthubd.config import Problem
from reporthubd.store import schema

_d = schema.audience_drivers


async def apply_driver(
    conn: AsyncConnection,
    *,
    index: int,
    report: cat.ReportSpec,
    config_id: int,
    ds_ids: Mapping[str, int],
    now: datetime,
    prune: bool,
    changes: list[cat.Change],
) -> None:
    """Upsert the report's driver; a report without one has its stored driver deactivated
    (deleted with `prune`). A datasource name that does not exist is a CatalogError."""
    spec: AudienceSpec | None = report.audiences
    old = (await conn.execute(sa.select(_d).where(_d.c.config_id == config_id))).first()
    label = f"{report.name}/audiences"
    if spec is None:
        if old is None:
            return
        if prune:
            await conn.execute(sa.delete(_d).where(_d.c.id == old.id))
            changes.append(cat.Change(action="delete", kind="audience driver", label=label))
        elif old.is_active:
            await conn.execute(
                sa.update(_d).where(_d.c.id == old.id).values(is_active=False, updated_at=now)
            )
            changes.append(
                cat.Change(
                    action="update", kind="audience driver", label=label, fields=("is_active",)
                )
            )
        return
    source = spec.datasource or report.datasource
    if source not in ds_ids:
        raise cat.CatalogError(
            "catalog",
            [
                Problem(
                    where=f"reports[{index}].audiences.datasource",
                    message=f"no datasource named {source!r}",
                )
            ],
        )
    values: dict[str, Any] = {
        "datasource_id": ds_ids[source],
        "query_text": spec.query,
        "key_column": spec.key_column,
        "recipients_column": spec.recipients_column,
        "is_active": spec.is_active,
    }
    if old is None:
        await conn.execute(sa.insert(_d).values(config_id=config_id, updated_at=now, **values))
        changes.append(cat.Change(action="create", kind="audience driver", label=label))
        return
    changed = tuple(k for k, v in values.items() if old._mapping[k] != v)
    if changed:
        await conn.execute(sa.update(_d).where(_d.c.id == old.id).values(updated_at=now, **values))
        changes.append(
            cat.Change(action="update", kind="audience driver", label=label, fields=changed)
        )


async def delete_driver(conn: AsyncConnection, config_id: int) -> None:
    await conn.execute(sa.delete(_d).where(_d.c.config_id == config_id))


async def drivers_by_config(conn: AsyncConnection) -> dict[int, Mapping[str, Any]]:
    rows = (await conn.execute(sa.select(_d))).all()
    return {int(row.config_id): dict(row._mapping) for row in rows}


def spec_data(
    row: Mapping[str, Any] | None, report_datasource_id: int, ds_names: Mapping[int, str]
) -> dict[str, Any] | None:
    """A stored driver as the catalog's `audiences` table (its datasource by name, left out when
    it is the report's own)."""
    if row is None:
        return None
    datasource = None
    if row["datasource_id"] != report_datasource_id:
        datasource = ds_names.get(row["datasource_id"], f"#{row['datasource_id']}")
    return {
        "query": row["query_text"],
        "datasource": datasource,
        "key_column": row["key_column"],
        "recipients_column": row["recipients_column"],
        "is_active": bool(row["is_active"]),
    }
