"""Workbooks and multi-section documents: several queries, one file, one delivery.

A report's `format_options.sheets` lists the sheets (Excel) or sections (PDF) that follow the
report's own query, each filled by its own query with the report's parameters:

    sheets = [
      { name = "Refunds", query = "SELECT ... WHERE day = :day" },
      { name = "Stock", datasource = "warehouse", query = "...", columns = [...] },
    ]

- `name` — the sheet's name (Excel's rules: 1 to 31 characters, none of []:*?/\\, not starting
  or ending with ', not "History", unique without regard to case) or the section's heading
  (1 to 100 characters, unique);
- `query` — the SQL, bound to the report's resolved parameters (a placeholder the report does
  not take fails the run and `check`, naming the sheet);
- `datasource` — the name of a report_datasources row (default: the report's own);
- `columns` — the sheet's column formats (formats.columns); the report's own `columns` apply to
  its first sheet only, since each query has its own columns.

The first sheet is the report's query, named by `sheet_name` (default "Report"; for a PDF the
first section's heading, then each section starts a page titled `<title> — <name>`).

Each sheet streams exactly like a single-sheet file: the writer gets `begin_section` between the
queries (formats.threaded), and engine/sections.py runs the queries one after another through
`SectionWriter`s, so at most one result is open at a time and no result is held. The row cap
(`max_rows`, `truncate`) applies to each query. Only the stream engine of Excel and the PDF take
sheets; CSV and JSON hold one table and refuse them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from reporthubd.connectors.base import Column, Row, ServerCSV
from reporthubd.formats import columns as colfmt
from reporthubd.formats.base import FormatError, FormatWriter, WrittenFile

SHEET_FORMATS: Final = frozenset({"excel", "pdf"})
MAX_SHEETS: Final = 50
MAX_HEADING: Final = 100
_FORBIDDEN: Final = frozenset("[]:*?/\\")
_SECTION_KEYS: Final = frozenset({"name", "query", "datasource", "columns"})


@dataclass(frozen=True)
class Section:
    """One sheet after the first: its name, query, datasource name (None: the report's own)."""

    number: int
    """1-based position in `sheets` (the key errors name: `sheets[2].query`)."""
    name: str
    query: str
    datasource: str | None
    spec: colfmt.ColumnSpec


@dataclass(frozen=True)
class Plan:
    first_name: str
    sections: tuple[Section, ...]


def excel_name_problem(name: str) -> str | None:
    """Why Excel refuses `name` as a sheet name, or None."""
    if not name or len(name) > 31:
        return "must be 1 to 31 characters"
    bad = sorted({ch for ch in name if ch in _FORBIDDEN})
    if bad:
        return f"must not contain {''.join(bad)!r} (Excel refuses []:*?/\\ in sheet names)"
    if name.startswith("'") or name.endswith("'"):
        return "must not start or end with '"
    if name.casefold() == "history":
        return "must not be 'History' (Excel reserves it)"
    return None


def split(output_format: str, options: dict[str, Any]) -> Plan | None:
    """Take `sheets` (and, for a PDF with sheets, `sheet_name`) out of `options`, in place, so
    the writer sees only its own options; the plan, or None for a one-table report. Raises
    FormatError naming the key."""
    raw = options.pop("sheets", None)
    if raw is None:
        return None
    if output_format not in SHEET_FORMATS:
        raise FormatError(
            f"format option 'sheets': the {output_format} format holds one table; "
            "sheets need excel or pdf"
        )
    if output_format == "excel" and options.get("engine", "stream") != "stream":
        raise FormatError("excel format option 'sheets' needs the stream engine")
    if not isinstance(raw, list) or not raw:
        raise FormatError("format option 'sheets' must be a non-empty list of tables")
    if len(raw) > MAX_SHEETS:
        raise FormatError(f"format option 'sheets' holds at most {MAX_SHEETS} sheets")
    excel = output_format == "excel"
    first = options.get("sheet_name", "Report") if excel else options.pop("sheet_name", "Report")
    if not isinstance(first, str):
        raise FormatError("format option 'sheet_name' must be a string")
    _check_name("sheet_name", first, excel=excel)
    seen = {first.casefold(): "sheet_name"}
    sections = []
    for number, item in enumerate(raw, start=1):
        key = f"sheets[{number}]"
        if not isinstance(item, Mapping):
            raise FormatError(f"format option '{key}' must be a table (name, query)")
        unknown = sorted(set(item) - _SECTION_KEYS)
        if unknown:
            raise FormatError(
                f"format option '{key}': unknown key {unknown[0]!r} "
                f"(known: {', '.join(sorted(_SECTION_KEYS))})"
            )
        name = item.get("name")
        if not isinstance(name, str):
            raise FormatError(f"format option '{key}.name' must be a string")
        _check_name(f"{key}.name", name, excel=excel)
        if name.casefold() in seen:
            raise FormatError(
                f"format option '{key}.name': {name!r} is already the name of "
                f"'{seen[name.casefold()]}' (sheet names are unique, whatever their case)"
            )
        seen[name.casefold()] = f"{key}.name"
        query = item.get("query")
        if not isinstance(query, str) or not query.strip():
            raise FormatError(f"format option '{key}.query' must be a non-empty SQL string")
        source = item.get("datasource")
        if source is not None and (not isinstance(source, str) or not source):
            raise FormatError(f"format option '{key}.datasource' must be a datasource's name")
        try:
            spec = colfmt.parse(output_format, item.get("columns"))
        except FormatError as exc:
            raise FormatError(f"format option '{key}.columns': {exc}") from None
        sections.append(Section(number, name, query, source, spec))
    return Plan(first_name=first, sections=tuple(sections))


def _check_name(key: str, name: str, *, excel: bool) -> None:
    if excel:
        problem = excel_name_problem(name)
    elif not name.strip() or len(name) > MAX_HEADING:
        problem = f"must be 1 to {MAX_HEADING} characters"
    else:
        problem = None
    if problem:
        raise FormatError(f"format option '{key}' {problem}: {name!r}")


def _threaded(writer: FormatWriter) -> Any:
    """The rendering writer under the capture (formats.capture wraps it as `inner`)."""
    inner = writer
    while hasattr(inner, "inner"):
        inner = inner.inner
    if not hasattr(inner, "begin_section"):
        raise FormatError(f"the {writer.extension} format holds one table, not several sheets")
    return inner


class Book:
    """One file written by several queries: `part(i)` is the writer the i-th query streams into
    (0 is the report's own). The first part opens the file through `outer` (the capture sees the
    first sheet's rows), later parts start their sheet on the rendering writer; only the last
    part's close finishes the file."""

    def __init__(self, outer: FormatWriter, plan: Plan) -> None:
        self.outer = outer
        self.plan = plan
        self.inner = _threaded(outer)
        if hasattr(self.inner, "heading"):  # the PDF's first section heading
            self.inner.heading = f"{self.inner.title} — {plan.first_name}"
        self.opened = False
        self.finished = False

    @property
    def count(self) -> int:
        return 1 + len(self.plan.sections)

    def part(self, index: int) -> SectionWriter:
        return SectionWriter(self, index)

    async def abort(self) -> None:
        if self.opened and not self.finished:
            self.finished = True
            await self.outer.abort()


class SectionWriter(FormatWriter):
    """The FormatWriter one query of a Book writes into (engine.streaming drives it)."""

    extension = "xlsx"
    media_type = "application/octet-stream"

    def __init__(self, book: Book, index: int) -> None:
        super().__init__(book.outer.options, book.outer.context)
        self.book = book
        self.index = index
        self.last = index == book.count - 1
        self.extension = book.outer.extension  # type: ignore[misc]
        self.media_type = book.outer.media_type  # type: ignore[misc]
        self._rows = 0
        self._path: Path | None = None

    @property
    def file_extension(self) -> str:
        return self.book.outer.file_extension

    def server_csv(self) -> ServerCSV | None:
        return None

    @property
    def _target(self) -> Any:
        return self.book.outer if self.index == 0 else self.book.inner

    async def open(self, path: Path, columns: Sequence[Column]) -> None:
        self._path = path
        if self.index == 0:
            await self.book.outer.open(path, columns)
            self.book.opened = True
        else:
            section = self.book.plan.sections[self.index - 1]
            await self.book.inner.begin_section(section.name, columns, section.spec)

    async def write_batch(self, rows: Sequence[Row]) -> None:
        self._rows += len(rows)
        await self._target.write_batch(rows)

    async def note_truncated(self, max_rows: int) -> None:
        await self._target.note_truncated(max_rows)

    async def close(self) -> WrittenFile:
        if self.last:
            self.book.finished = True
            return await self.book.outer.close()
        assert self._path is not None
        return WrittenFile(
            path=self._path, size=0, sha256="", rows=self._rows, media_type=self.media_type
        )

    async def abort(self) -> None:
        await self.book.abort()


def openapi_components(ref: Any) -> dict[str, Any]:
    """`format_options.sheets` as OpenAPI components (WorkbookSheets, WorkbookSheet)."""
    return {
        "WorkbookSheets": {
            "description": (
                "format_options.sheets (excel with the stream engine, pdf): the sheets or "
                "sections after the report's own query (named by sheet_name, default Report), "
                "each filled by its own query with the report's parameters, in one file and one "
                f"delivery; at most {MAX_SHEETS}. A bad sheet fails the run (and `check`) with "
                "an error naming its key, e.g. format option 'sheets[2].name'."
            ),
            "type": "array",
            "minItems": 1,
            "maxItems": MAX_SHEETS,
            "items": ref("WorkbookSheet"),
        },
        "WorkbookSheet": {
            "type": "object",
            "required": ["name", "query"],
            "additionalProperties": False,
            "properties": {
                "name": {
                    "type": "string",
                    "minLength": 1,
                    "maxLength": MAX_HEADING,
                    "description": (
                        "Excel: 1 to 31 characters, none of []:*?/\\, not starting or ending "
                        "with ', not History, unique regardless of case; PDF: the section's "
                        "heading (up to 100 characters)"
                    ),
                },
                "query": {
                    "type": "string",
                    "minLength": 1,
                    "description": "SQL with :name placeholders bound to the report's parameters",
                },
                "datasource": {
                    "type": "string",
                    "description": "a report_datasources name; default: the report's own",
                },
                "columns": ref("ColumnFormats"),
            },
        },
    }
