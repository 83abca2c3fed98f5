"""A workbook's queries, one after another, into one file (formats.workbook has the model).

`prepare` runs before anything connects: each extra sheet's datasource is looked up by name
and its query's placeholders are checked against the report's resolved parameters, so a bad
sheet fails the run naming its key. `write_all` then streams the report's own query into the
first sheet and each sheet's query into the next, through engine.streaming exactly as a
one-table report (one connection open at a time, no result held); a failure anywhere aborts the
whole file.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from reporthubd import domain
from reporthubd.connectors import base as connectors
from reporthubd.connectors import params
from reporthubd.engine import streaming
from reporthubd.engine.streaming import Progress
from reporthubd.formats import base as formats
from reporthubd.formats import workbook
from reporthubd.store import sections as store_sections
from reporthubd.store.database import Store


class SectionError(Exception):
    """A sheet the run cannot fill; the message names its key."""


@dataclass(frozen=True)
class Prepared:
    section: workbook.Section
    datasource: domain.Datasource


def dialect(source: domain.Datasource) -> str:
    return "mysql" if source.type is domain.DatasourceType.MYSQL else "standard"


async def prepare(
    store: Store,
    plan: workbook.Plan,
    source: domain.Datasource,
    resolved: Mapping[str, Any],
) -> list[Prepared]:
    out = []
    for section in plan.sections:
        key = f"format option 'sheets[{section.number}]"
        target: domain.Datasource | str = source
        if section.datasource is not None and section.datasource != source.name:
            target = await store_sections.datasource_named(store, section.datasource)
        if isinstance(target, str):
            raise SectionError(f"{key}.datasource': {target}")
        try:
            params.check(section.query, resolved, dialect=dialect(target))
        except params.ParameterError as exc:
            raise SectionError(
                f"{key}.query' ({section.name!r}): {exc} (the report does not take it)"
            ) from None
        out.append(Prepared(section, target))
    return out


async def write_all(
    connector: connectors.Connector,
    writer: formats.FormatWriter,
    path: Path,
    request: connectors.QueryRequest,
    plan: workbook.Plan,
    prepared: list[Prepared],
    *,
    max_rows: int | None,
    truncate: bool,
    progress: Progress,
) -> formats.WrittenFile:
    """Every sheet's query into `writer`'s one file; raises what engine.streaming raises.
    The timeout (the caller's) spans every query."""
    book = workbook.Book(writer, plan)
    try:
        written = await streaming.write_result(
            connector,
            book.part(0),
            path,
            request,
            max_rows=max_rows,
            truncate=truncate,
            progress=progress,
        )
        for index, item in enumerate(prepared, start=1):
            cls = await asyncio.to_thread(connectors.connector_class, item.datasource.type.value)
            other = cls(item.datasource)
            try:
                written = await streaming.write_result(
                    other,
                    book.part(index),
                    path,
                    replace(request, sql=item.section.query),
                    max_rows=max_rows,
                    truncate=truncate,
                    progress=progress,
                )
            finally:
                with contextlib.suppress(Exception):
                    await asyncio.shield(other.close())
    except BaseException:
        await asyncio.shield(book.abort())
        raise
    progress.rows = written.rows  # the last close gives the whole file's rows
    return written
