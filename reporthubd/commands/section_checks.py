"""What `reporthubd check` says about workbooks' sheets (formats.workbook): a sheet on a
datasource that does not exist (or is inactive), and a sheet whose query uses a parameter the
report does not take (neither its own query, nor its defaults, nor one of its schedules' values
give it). The sheets' names and keys are checked with the format options (commands/check.py)."""

from __future__ import annotations

from reporthubd import domain
from reporthubd.connectors import params
from reporthubd.formats import workbook
from reporthubd.formats.base import FormatError
from reporthubd.store import audiences as audience_rows
from reporthubd.store.database import Store
from reporthubd.store.definitions import Definitions


def _dialect(source: domain.Datasource | None) -> str:
    return (
        "mysql" if source is not None and source.type is domain.DatasourceType.MYSQL else "standard"
    )


async def driven(store: Store) -> set[int]:
    """The reports with an active audience driver: its columns give parameters too, known only
    when it runs, so `check` leaves their sheets' parameters to the run."""
    return {driver.config_id for driver in await audience_rows.active_drivers(store)}


def problems(
    found: Definitions, driven: set[int] | frozenset[int] = frozenset()
) -> list[domain.RowError]:
    by_name = {source.name: source for source in found.datasources.values()}
    out: list[domain.RowError] = []
    for config in found.configs.values():
        if "sheets" not in config.format_options:
            continue
        try:
            plan = workbook.split(config.output_format.value, dict(config.format_options))
        except FormatError:
            continue  # reported with the format options
        if plan is None:
            continue
        own = found.datasources.get(config.datasource_id)
        taken = set(config.parameters or {})
        taken |= set(params.referenced(config.query_text, dialect=_dialect(own)))
        for schedule in found.schedules.values():
            if schedule.config_id == config.id:
                taken |= set(schedule.parameters or {})
        found_problems = []
        for section in plan.sections:
            key = f"format_options.sheets[{section.number}]"
            source = own
            if section.datasource is not None:
                source = by_name.get(section.datasource)
                if source is None:
                    found_problems.append(
                        f"{config.name!r}: {key}.datasource: no active datasource named "
                        f"{section.datasource!r}"
                    )
                    continue
            missing = [
                name
                for name in params.referenced(section.query, dialect=_dialect(source))
                if name not in taken and config.id not in driven
            ]
            if missing:
                found_problems.append(
                    f"{config.name!r}: {key}.query ({section.name!r}) uses "
                    f"{', '.join(repr(m) for m in missing)}, a parameter the report does not take"
                )
        if found_problems:
            out.append(
                domain.RowError(
                    table="report_configs", row_id=config.id, problems=tuple(found_problems)
                )
            )
    return out
