"""What `reporthubd check --connect` says about column formats and charts: each report's
`format_options.columns` and `chart` (and each sheet's `columns`) against the real columns of
its query, as the data source describes them without running the query in full
(`Connector.describe`: PostgreSQL's and MySQL's prepared statements, SQLite's zero-row wrap).

The problems are the run's own (formats.columns `bind`, formats.charts `ChartData`), each naming
the report, the key and the column: a column the result lacks, a kind its values cannot take, a
chart over a text column. A query the source refuses is a problem of the report, a datasource
that cannot be reached one of the datasource. Where the source types values, not columns
(SQLite), only the names are checked; a source that cannot describe a query (MongoDB, the cloud
warehouses) gets a note, not a problem.

The query's parameters are the report's defaults and its first schedule's values, templates
rendered now, and NULL for the rest: describing needs no value on PostgreSQL and MySQL, and
SQLite's zero-row wrap returns no row whatever the values.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from reporthubd import domain, templates
from reporthubd.config import Settings
from reporthubd.connectors import base as connectors
from reporthubd.connectors import params
from reporthubd.connectors.base import ConnectorError, Description, QueryRequest
from reporthubd.engine import parameters
from reporthubd.formats import charts, workbook
from reporthubd.formats import columns as colfmt
from reporthubd.formats.base import FormatError
from reporthubd.store.definitions import Definitions
from reporthubd.timeutil import utcnow

DESCRIBE_TIMEOUT_SECONDS = 30.0
"""Connecting and describing, per datasource (a describe runs nothing, so this is generous)."""


@dataclass(frozen=True, kw_only=True)
class Target:
    """One query whose columns the spec names: the report's own, or a sheet's."""

    config: domain.ReportConfig
    key: str
    """`query_text` or `format_options.sheets[n].query`."""
    prefix: str
    """What goes before the run's message: '' or `format option 'sheets[n].columns': `."""
    query: str
    spec: colfmt.ColumnSpec
    chart: charts.ChartSpec | None
    split_by: str | None = None
    """The column a split-by-key report cuts its rows by (engine/splitting.py)."""


def targets(config: domain.ReportConfig) -> list[tuple[str | None, Target]]:
    """(datasource name or None for the report's own, target) for each query whose columns its
    options name; nothing for options the format refuses (reported with the format options)."""
    fmt = config.output_format.value
    options = dict(config.format_options)
    try:
        plan = workbook.split(fmt, options)
        spec = colfmt.parse(fmt, options.get("columns"))
        chart = charts.parse(options.get("chart"))
    except FormatError:
        return []
    out: list[tuple[str | None, Target]] = []
    split_by = options.get("split_by")
    split_by = split_by.strip() if isinstance(split_by, str) and split_by.strip() else None
    if spec or chart is not None or split_by is not None:
        out.append(
            (
                None,
                Target(
                    config=config,
                    key="query_text",
                    prefix="",
                    query=config.query_text,
                    spec=spec,
                    chart=chart,
                    split_by=split_by,
                ),
            )
        )
    for section in plan.sections if plan is not None else ():
        if section.spec:
            key = f"sheets[{section.number}]"
            out.append(
                (
                    section.datasource,
                    Target(
                        config=config,
                        key=f"format_options.{key}.query",
                        prefix=f"format option '{key}.columns': ",
                        query=section.query,
                        spec=section.spec,
                        chart=None,
                    ),
                )
            )
    return out


def spec_problems(target: Target, fmt: str, described: Description) -> list[str]:
    """The run's problems with `described`'s columns: every missing name, then (where the kinds
    are known) the first kind the spec or the chart cannot take."""
    columns = list(described.columns)
    names = {c.name for c in columns}
    listing = ", ".join(c.name for c in columns) or "(none)"
    found = [
        f"{target.prefix}{fmt} format option 'columns.{spec.name}': the result has no "
        f"column {spec.name!r} (its columns: {listing})"
        for spec in target.spec.formats
        if spec.name not in names
    ]
    if target.split_by is not None and target.split_by not in names:
        found.append(
            f"format option 'split_by': the result has no column {target.split_by!r} "
            f"(its columns: {listing})"
        )
    chart = target.chart
    if chart is not None:
        wanted = [("x", chart.x), *(("y", y) for y in chart.y)]
        if chart.series:
            wanted.append(("series", chart.series))
        found += [
            f"format option 'chart.{key}': the result has no column {name!r} "
            f"(its columns: {listing})"
            for key, name in wanted
            if name not in names
        ]
    if found or not described.kinds_known:
        return found
    try:
        target.spec.bind(fmt, columns)
        if chart is not None:
            charts.ChartData(chart, columns, str)
    except FormatError as exc:
        return [f"{target.prefix}{exc}"]
    return []


def check_parameters(
    config: domain.ReportConfig, schedules: Sequence[domain.Schedule], zone: ZoneInfo
) -> dict[str, Any]:
    """The report's defaults and its first schedule's values, templates rendered now; a value
    whose template fails is None (the run reports it, this check is about columns)."""
    schedule = next(iter(sorted(schedules, key=lambda s: s.id)), None)
    now: datetime = utcnow()
    base = parameters.time_base(
        scheduled_for=None, created_at=now, schedule=schedule, default_zone=zone, now=now
    )
    variables = templates.time_variables(base.logical_time, base.zone)
    variables.update(parameters.business_day_variables(schedule, base.logical_time, base.zone))
    merged = parameters.merge(config.parameters, schedule.parameters if schedule else None)
    out: dict[str, Any] = {}
    for name, value in merged.items():
        try:
            out[name] = parameters.resolve({name: value}, variables)[name]
        except templates.TemplateError:
            out[name] = None
    return out


def _dialect(source: domain.Datasource) -> str:
    return "mysql" if source.type is domain.DatasourceType.MYSQL else "standard"


async def problems(
    found: Definitions, settings: Settings
) -> tuple[list[domain.RowError], list[str]]:
    """The problems (rows) and notes (lines) of describing every report's queries."""
    by_name = {source.name: source for source in found.datasources.values()}
    work: dict[int, list[Target]] = {}
    for config in found.configs.values():
        own = found.datasources.get(config.datasource_id)
        for source_name, target in targets(config):
            source = own if source_name is None else by_name.get(source_name)
            if source is not None:  # an unknown sheet datasource: commands/section_checks.py
                work.setdefault(source.id, []).append(target)
    errors: list[domain.RowError] = []
    notes: list[str] = []
    zone = ZoneInfo(settings.scheduler.timezone)
    for source_id, source_targets in sorted(work.items()):
        source = found.datasources[source_id]
        try:
            connector = connectors.create(source)
        except ConnectorError as exc:
            errors.append(_source_error(source, exc))
            continue
        try:
            async with asyncio.timeout(DESCRIBE_TIMEOUT_SECONDS):
                await connector.open()
                outcomes = [
                    await _describe(connector, source, target, found, zone, errors)
                    for target in source_targets
                ]
            if skipped := outcomes.count("not described"):
                notes.append(
                    f"datasource {source.name!r}: the columns of {_queries(skipped)} not "
                    f"checked (the {source.type} connector cannot describe a query without "
                    "running it)"
                )
            if untyped := outcomes.count("names only"):
                notes.append(
                    f"datasource {source.name!r}: the column names of {_queries(untyped)} "
                    f"checked, not their kinds ({source.type} types values, not columns)"
                )
        except ConnectorError as exc:
            errors.append(_source_error(source, exc))
        except TimeoutError:
            errors.append(
                _source_error(source, f"no answer within {DESCRIBE_TIMEOUT_SECONDS:.0f} s")
            )
        finally:
            with contextlib.suppress(Exception):
                await asyncio.shield(connector.close())
    return errors, notes


def _queries(count: int) -> str:
    return "1 query" if count == 1 else f"{count} queries"


async def _describe(
    connector: connectors.Connector,
    source: domain.Datasource,
    target: Target,
    found: Definitions,
    zone: ZoneInfo,
    errors: list[domain.RowError],
) -> str:
    """Describe one target's query and add its problems to `errors`; how far it was checked:
    "checked", "names only", "not described" or "refused"."""
    config = target.config
    schedules = [s for s in found.schedules.values() if s.config_id == config.id]
    values: Mapping[str, Any] = check_parameters(config, schedules, zone)
    names = params.referenced(target.query, dialect=_dialect(source))
    request_values = {name: values.get(name) for name in names}
    try:
        described = await connector.describe(
            QueryRequest(sql=target.query, parameters=request_values, batch_size=1)
        )
    except ConnectorError as exc:
        errors.append(_config_error(config, f"{target.key}: {exc}"))
        return "refused"
    if described is None:
        return "not described"
    errors.extend(
        _config_error(config, problem)
        for problem in spec_problems(target, config.output_format.value, described)
    )
    return "checked" if described.kinds_known else "names only"


def _config_error(config: domain.ReportConfig, problem: str) -> domain.RowError:
    return domain.RowError(
        table="report_configs", row_id=config.id, problems=(f"{config.name!r}: {problem}",)
    )


def _source_error(source: domain.Datasource, exc: BaseException | str) -> domain.RowError:
    return domain.RowError(
        table="report_datasources",
        row_id=source.id,
        problems=(f"{source.name!r}: the reports' columns could not be checked: {exc}",),
    )
