"""The SQL behind `reporthubd apply` and `reporthubd export` (see reporthubd/catalog.py)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from reporthubd import catalog as cat
from reporthubd import catalog_sheets, catalog_waits, domain
from reporthubd.calendars import CalendarPolicy
from reporthubd.config import Problem
from reporthubd.store import audience_catalog, catalog_dependencies, catalog_schedules, schema
from reporthubd.store.database import Store
from reporthubd.store.types import MalformedJSON


class _DryRun(Exception):
    """Raised inside the transaction to roll a dry run back."""


def _now() -> datetime:
    return datetime.now(UTC)


def _json(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


async def _rows(conn: AsyncConnection, table: sa.Table) -> list[dict[str, Any]]:
    result = await conn.execute(sa.select(table).order_by(table.c.id))
    return [dict(row) for row in result.mappings()]


def _diff(old: Mapping[str, Any], new: Mapping[str, Any]) -> tuple[str, ...]:
    return tuple(key for key, value in new.items() if old.get(key) != value)


async def apply(
    store: Store, catalog: cat.Catalog, *, prune: bool = False, dry_run: bool = False
) -> cat.Plan:
    """Upsert everything the catalog names in ONE transaction; with `prune`, delete what it does
    not name. Raises CatalogError (nothing written) when a reference cannot be resolved."""
    changes: list[cat.Change] = []
    notes: list[str] = []
    try:
        async with store.engine.begin() as conn:
            await _apply(conn, catalog, prune=prune, changes=changes, notes=notes)
            if dry_run:
                raise _DryRun
    except _DryRun:
        pass
    return cat.Plan(changes=tuple(changes), notes=tuple(notes))


async def _apply(
    conn: AsyncConnection,
    catalog: cat.Catalog,
    *,
    prune: bool,
    changes: list[cat.Change],
    notes: list[str],
) -> None:
    now = _now()
    stored_ds = {row["name"]: row for row in await _rows(conn, schema.datasources)}
    file_ds = {ds.name for ds in catalog.datasources}
    problems = [
        Problem(where=f"reports[{i}].datasource", message=f"no datasource named {r.datasource!r}")
        for i, r in enumerate(catalog.reports)
        if r.datasource not in file_ds and r.datasource not in stored_ds
    ]
    problems += catalog_sheets.unknown_datasources(catalog.reports, file_ds | set(stored_ds))
    stored_cal = {row["name"]: row for row in await _rows(conn, schema.calendars)}
    known_cal = {c.name for c in catalog.calendars} | set(stored_cal)
    problems += [
        Problem(
            where=f"reports[{i}].schedules[{j}].calendar",
            message=f"unknown calendar name {sched.calendar!r} (in neither [[calendars]] nor "
            "the store)",
        )
        for i, r in enumerate(catalog.reports)
        for j, sched in enumerate(r.schedules)
        if sched.calendar is not None and sched.calendar not in known_cal
    ]
    stored_reports = {row["name"] for row in await _rows(conn, schema.configs)}
    problems += catalog_waits.unknown_reports(
        catalog.reports, stored_reports | {r.name for r in catalog.reports}
    )
    problems += await catalog_dependencies.check(conn, catalog, prune=prune)
    if problems:
        raise cat.CatalogError("catalog", problems)

    # Calendars, by name (never pruned: a schedule outside the file may follow one)
    for cal in catalog.calendars:
        old_cal = stored_cal.get(cal.name)
        cal_values: dict[str, Any] = {
            "country": cal.country,
            "subdivision": cal.subdivision,
            "added_dates": cal.added,
            "removed_dates": cal.removed,
            "is_active": cal.is_active,
        }
        if old_cal is not None:
            old_cal = {
                **old_cal,
                "added_dates": old_cal["added_dates"] or {},
                "removed_dates": old_cal["removed_dates"] or [],
            }
        await _upsert(
            conn,
            schema.calendars,
            old_cal,
            {"name": cal.name, **cal_values},
            cal_values,
            now,
            changes,
            "calendar",
            cal.name,
        )

    # Datasources
    ds_ids: dict[str, int] = {name: row["id"] for name, row in stored_ds.items()}
    for ds in catalog.datasources:
        old = stored_ds.get(ds.name)
        values: dict[str, Any] = {
            "type": ds.type.value,
            "connection_config": cat.keep_stored_secrets(
                ds.connection_config, _json(old["connection_config"]) if old else None
            ),
            "max_concurrent_queries": ds.max_concurrent_queries,
            "is_active": ds.is_active,
        }
        ds_ids[ds.name] = await _upsert(
            conn,
            schema.datasources,
            old,
            {"name": ds.name, **values},
            values,
            now,
            changes,
            "datasource",
            ds.name,
        )

    # Reports and their children
    stored_cfg = {row["name"]: row for row in await _rows(conn, schema.configs)}
    stored_sched = await _rows(conn, schema.schedules)
    stored_deliv = await _rows(conn, schema.deliveries)
    stored_recip = await _rows(conn, schema.recipients)
    for report in catalog.reports:
        old = stored_cfg.get(report.name)
        values = {
            "datasource_id": ds_ids[report.datasource],
            "description": report.description,
            "query_text": report.query,
            "parameters": report.parameters,
            "output_format": report.output_format.value,
            "format_options": report.format_options,
            "file_name_template": report.file_name_template,
            "timeout_seconds": report.timeout_seconds,
            "max_rows": report.max_rows,
            "empty_result_policy": report.empty_result_policy.value,
            "is_active": report.is_active,
            "notify": report.notify,
            "alert": report.alert,
        }
        if old is not None:
            old = {
                **old,
                "parameters": _json(old["parameters"]),
                "format_options": _json(old["format_options"]),
                "notify": _json(old["notify"]) if old.get("notify") is not None else None,
                "alert": _json(old["alert"]) if old.get("alert") is not None else None,
            }
        config_id = await _upsert(
            conn,
            schema.configs,
            old,
            {"name": report.name, **values},
            values,
            now,
            changes,
            "report",
            report.name,
        )
        await audience_catalog.apply_driver(
            conn,
            index=catalog.reports.index(report),
            report=report,
            config_id=config_id,
            ds_ids=ds_ids,
            now=now,
            prune=prune,
            changes=changes,
        )

        # Schedules: by name, else by (cron, timezone) within the report (catalog_schedules).
        matched = catalog_schedules.match(
            report.schedules, [s for s in stored_sched if s["config_id"] == config_id]
        )
        for sched, found in matched.pairs:
            label = f"{report.name}" + (f"/{sched.name}" if sched.name else "")
            label += f" [{sched.cron}]" + (f" {sched.timezone}" if sched.timezone else "")
            values = {
                "name": sched.name,
                "cron_expression": sched.cron,
                "timezone": sched.timezone,
                "calendar_name": sched.calendar,
                "calendar_policy": (
                    None
                    if sched.calendar is None
                    else (sched.calendar_policy or CalendarPolicy.NEXT_BUSINESS_DAY).value
                ),
                "parameters": sched.parameters,
                "misfire_policy": sched.misfire_policy.value,
                "misfire_grace_seconds": sched.misfire_grace_seconds,
                "start_at": sched.start_at,
                "end_at": sched.end_at,
                "is_active": sched.is_active,
                "deadline": sched.deadline,
                **catalog_waits.columns(sched),
            }
            if found is not None:
                found = {**found, "parameters": _json(found["parameters"])}
            await _upsert(
                conn,
                schema.schedules,
                found,
                {"config_id": config_id, **values},
                values,
                now,
                changes,
                "schedule",
                label,
            )
        if prune:
            for s in matched.leftovers:
                await conn.execute(
                    sa.delete(schema.schedules).where(schema.schedules.c.id == s["id"])
                )
                changes.append(
                    cat.Change(
                        action="delete",
                        kind="schedule",
                        label=f"{report.name} {catalog_schedules.describe(s)}",
                    )
                )
        else:
            notes += catalog_schedules.notes(report.name, report.schedules, matched.leftovers)

        # Deliveries: matched by name within the report; recipients by email within the delivery.
        mine_d = {d["name"]: d for d in stored_deliv if d["config_id"] == config_id}
        for delivery in report.deliveries:
            old_d = mine_d.get(delivery.name)
            values = {
                "method": delivery.method.value,
                "delivery_config": cat.keep_stored_secrets(
                    delivery.config,
                    _json(old_d["delivery_config"]) if old_d else None,
                    domain.DELIVERY_SECRET_KEYS.get(delivery.method, frozenset()),
                ),
                "max_retry": delivery.max_retry,
                "retry_interval_minutes": delivery.retry_interval_minutes,
                "is_active": delivery.is_active,
            }
            delivery_id = await _upsert(
                conn,
                schema.deliveries,
                old_d,
                {"config_id": config_id, "name": delivery.name, **values},
                values,
                now,
                changes,
                "delivery",
                f"{report.name}/{delivery.name}",
            )
            mine_r = {
                r["email"].lower(): r for r in stored_recip if r["delivery_id"] == delivery_id
            }
            named = set()
            for person in delivery.recipients:
                named.add(person.email.lower())
                values = {
                    "email": person.email,
                    "recipient_type": person.type.value,
                    "name": person.name,
                    "is_active": person.is_active,
                }
                await _upsert(
                    conn,
                    schema.recipients,
                    mine_r.get(person.email.lower()),
                    {"delivery_id": delivery_id, **values},
                    values,
                    None,
                    changes,
                    "recipient",
                    f"{report.name}/{delivery.name}/{person.email}",
                )
            if prune:
                for email, r in mine_r.items():
                    if email not in named:
                        await conn.execute(
                            sa.delete(schema.recipients).where(schema.recipients.c.id == r["id"])
                        )
                        changes.append(
                            cat.Change(
                                action="delete",
                                kind="recipient",
                                label=f"{report.name}/{delivery.name}/{r['email']}",
                            )
                        )
        if prune:
            for name, d in mine_d.items():
                if name not in {x.name for x in report.deliveries}:
                    await _delete_delivery(conn, d["id"])
                    changes.append(
                        cat.Change(action="delete", kind="delivery", label=f"{report.name}/{name}")
                    )

    if prune:
        named_reports = {r.name for r in catalog.reports}
        for name, row in stored_cfg.items():
            if name not in named_reports:
                await _delete_report(conn, row["id"])
                changes.append(cat.Change(action="delete", kind="report", label=name))
        used = {r.datasource for r in catalog.reports} | catalog_sheets.datasources(catalog.reports)
        for name, row in stored_ds.items():
            if name in file_ds:
                continue
            if name in used:
                continue
            still_used = await conn.scalar(
                sa.select(sa.func.count())
                .select_from(schema.configs)
                .where(schema.configs.c.datasource_id == row["id"])
            )
            if not still_used:
                await conn.execute(
                    sa.delete(schema.datasources).where(schema.datasources.c.id == row["id"])
                )
                changes.append(cat.Change(action="delete", kind="datasource", label=name))


async def _upsert(
    conn: AsyncConnection,
    table: sa.Table,
    old: Mapping[str, Any] | None,
    insert_values: Mapping[str, Any],
    compare_values: Mapping[str, Any],
    now: datetime | None,
    changes: list[cat.Change],
    kind: str,
    label: str,
) -> int:
    stamp = {"updated_at": now} if now is not None and "updated_at" in table.c else {}
    if old is None:
        result = await conn.execute(sa.insert(table).values(**insert_values, **stamp))
        changes.append(cat.Change(action="create", kind=kind, label=label))
        key = result.inserted_primary_key
        assert key is not None
        return int(key[0])
    changed = _diff(old, compare_values)
    if changed:
        await conn.execute(
            sa.update(table).where(table.c.id == old["id"]).values(**compare_values, **stamp)
        )
        changes.append(cat.Change(action="update", kind=kind, label=label, fields=changed))
    return int(old["id"])


async def _delete_delivery(conn: AsyncConnection, delivery_id: int) -> None:
    await conn.execute(
        sa.delete(schema.recipients).where(schema.recipients.c.delivery_id == delivery_id)
    )
    await conn.execute(sa.delete(schema.deliveries).where(schema.deliveries.c.id == delivery_id))


async def _delete_report(conn: AsyncConnection, config_id: int) -> None:
    delivery_ids = (
        (
            await conn.execute(
                sa.select(schema.deliveries.c.id).where(schema.deliveries.c.config_id == config_id)
            )
        )
        .scalars()
        .all()
    )
    for delivery_id in delivery_ids:
        await _delete_delivery(conn, delivery_id)
    await audience_catalog.delete_driver(conn, config_id)
    await conn.execute(sa.delete(schema.schedules).where(schema.schedules.c.config_id == config_id))
    await conn.execute(sa.delete(schema.configs).where(schema.configs.c.id == config_id))


async def export(store: Store) -> tuple[cat.Catalog, list[domain.RowError]]:
    """Every definition row (active or not) as a Catalog; rows that cannot be expressed (bad JSON,
    unknown strings, broken references) are returned as RowErrors instead of crashing."""
    errors: list[domain.RowError] = []
    async with store.engine.connect() as conn:
        ds_rows = await _rows(conn, schema.datasources)
        cfg_rows = await _rows(conn, schema.configs)
        sched_rows = await _rows(conn, schema.schedules)
        deliv_rows = await _rows(conn, schema.deliveries)
        recip_rows = await _rows(conn, schema.recipients)
        cal_rows = await _rows(conn, schema.calendars)
        drivers = await audience_catalog.drivers_by_config(conn)
    config_names = {int(row["id"]): row["name"] for row in cfg_rows}

    def spec(
        model: type[cat._Spec], table: str, row: Mapping[str, Any], data: dict[str, Any]
    ) -> Any:
        bad = [k for k, v in data.items() if isinstance(v, MalformedJSON)]
        if bad:
            errors.append(
                domain.RowError(
                    table=table,
                    row_id=row["id"],
                    problems=tuple(f"{k}: malformed JSON" for k in bad),
                )
            )
            return None
        try:
            return model.model_validate(data)
        except Exception as exc:
            errors.append(
                domain.RowError(table=table, row_id=row["id"], problems=(str(exc).splitlines()[0],))
            )
            return None

    calendar_specs = [
        c
        for c in (
            spec(
                cat.CalendarSpec,
                "report_calendars",
                row,
                {
                    "name": row["name"],
                    "country": row["country"],
                    "subdivision": row["subdivision"],
                    "added": row["added_dates"] if row["added_dates"] is not None else {},
                    "removed": row["removed_dates"] if row["removed_dates"] is not None else [],
                    "is_active": bool(row["is_active"]),
                },
            )
            for row in cal_rows
        )
        if c is not None
    ]

    datasources = []
    ds_names: dict[int, str] = {}
    for row in ds_rows:
        item = spec(
            cat.DatasourceSpec,
            "report_datasources",
            row,
            {
                "name": row["name"],
                "type": row["type"],
                "connection_config": row["connection_config"],
                "max_concurrent_queries": row["max_concurrent_queries"],
                "is_active": bool(row["is_active"]),
            },
        )
        if item is not None:
            datasources.append(item)
            ds_names[row["id"]] = row["name"]

    recipients_of: dict[int, list[cat.RecipientSpec]] = {}
    for row in recip_rows:
        item = spec(
            cat.RecipientSpec,
            "report_delivery_recipients",
            row,
            {
                "email": row["email"],
                "type": row["recipient_type"],
                "name": row["name"],
                "is_active": bool(row["is_active"]),
            },
        )
        if item is not None:
            recipients_of.setdefault(row["delivery_id"], []).append(item)

    reports = []
    for row in cfg_rows:
        if row["datasource_id"] not in ds_names:
            errors.append(
                domain.RowError(
                    table="report_configs",
                    row_id=row["id"],
                    problems=("datasource missing or invalid",),
                )
            )
            continue
        schedules = [
            s
            for s in (
                spec(
                    cat.ScheduleSpec,
                    "report_schedules",
                    srow,
                    {
                        "name": srow.get("name"),
                        "cron": srow["cron_expression"],
                        "timezone": srow["timezone"],
                        "calendar": srow["calendar_name"],
                        "calendar_policy": srow["calendar_policy"],
                        "parameters": srow["parameters"] if srow["parameters"] is not None else {},
                        "misfire_policy": srow["misfire_policy"],
                        "misfire_grace_seconds": srow["misfire_grace_seconds"],
                        "start_at": srow["start_at"],
                        "end_at": srow["end_at"],
                        "is_active": bool(srow["is_active"]),
                        "deadline": srow["deadline"],
                        **catalog_waits.from_row(srow, config_names),
                    },
                )
                for srow in sched_rows
                if srow["config_id"] == row["id"]
            )
            if s is not None
        ]
        deliveries = [
            d
            for d in (
                spec(
                    cat.DeliverySpec,
                    "report_deliveries",
                    drow,
                    {
                        "name": drow["name"],
                        "method": drow["method"],
                        "config": drow["delivery_config"],
                        "max_retry": drow["max_retry"],
                        "retry_interval_minutes": drow["retry_interval_minutes"],
                        "is_active": bool(drow["is_active"]),
                        "recipients": recipients_of.get(drow["id"], []),
                    },
                )
                for drow in deliv_rows
                if drow["config_id"] == row["id"]
            )
            if d is not None
        ]
        item = spec(
            cat.ReportSpec,
            "report_configs",
            row,
            {
                "name": row["name"],
                "datasource": ds_names[row["datasource_id"]],
                "query": row["query_text"],
                "output_format": row["output_format"],
                "description": row["description"],
                "parameters": row["parameters"] if row["parameters"] is not None else {},
                "format_options": row["format_options"]
                if row["format_options"] is not None
                else {},
                "file_name_template": row["file_name_template"],
                "timeout_seconds": row["timeout_seconds"],
                "max_rows": row["max_rows"],
                "empty_result_policy": row["empty_result_policy"],
                "is_active": bool(row["is_active"]),
                "notify": row["notify"] if isinstance(row["notify"], dict) else None,
                "alert": row["alert"] if isinstance(row["alert"], dict) else None,
                "schedules": schedules,
                "deliveries": deliveries,
                "audiences": audience_catalog.spec_data(
                    drivers.get(row["id"]), row["datasource_id"], ds_names
                ),
            },
        )
        if item is not None:
            reports.append(item)
    catalog = cat.Catalog(calendars=calendar_specs, datasources=datasources, reports=reports)
    return catalog, errors


async def delivery_id(store: Store, report_name: str, delivery_name: str) -> int | None:
    """The id of the delivery named `delivery_name` of the report named `report_name` (what a
    notice target `delivery:ID` names), or None when there is none."""
    c, d = schema.configs, schema.deliveries
    async with store.engine.connect() as conn:
        found = (
            await conn.execute(
                sa.select(d.c.id)
                .join(c, c.c.id == d.c.config_id)
                .where(c.c.name == report_name, d.c.name == delivery_name)
                .order_by(d.c.id)
                .limit(1)
            )
        ).scalar()
    return None if found is None else int(found)
