"""A workbook's queries, one after another, into one file (formats.workbook has the model).

`prepare` runs before anything connects: each extra sheet's datasource is looked up by name
and its query's placeholders are checked against the report's resolved parameters, so a bad
sheet fails the run naming its key. `write_all` then streams the report's own query into the
first sheet and each sheet's query into the next, through engine.streaming exactly as a
one-table report (one connection open at a time, no result held); a failure anywhere aborts the
whole file. Each query runs under its own datasource's limit (`max_concurrent_queries`): before
it, the run's pool slot moves to that datasource (`use`, engine/pool.py `Slot.move`), waiting
there for room like any run of that datasource.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Mapping
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
    use: Callable[[domain.Datasource], Awaitable[None]] | None = None,
) -> formats.WrittenFile:
    """Every sheet's query into `writer`'s one file; raises what engine.streaming raises.
    The timeout (the caller's) spans every query. `use(datasource)` is awaited before each
    query of a sheet and returns once that datasource has room for it."""
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
        # The first sheet's connection is done with: it closes before the next one opens.
        with contextlib.suppress(Exception):
            await asyncio.shield(connector.close())
        for index, item in enumerate(prepared, start=1):
            if use is not None:
                await use(item.datasource)
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
