"""Drive a FormatWriter the way the engine does, and read the files back."""

from __future__ import annotations

import csv
import importlib.util
import io
import json
import re
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any

from reporthubd.connectors.base import Column, Row
from reporthubd.formats.base import FormatWriter, RenderContext, WrittenFile, writer_class

CONTEXT = RenderContext(
    report_name="Type fidelity",
    execution_id="exec-formats-1",
    parameters={"region": "Nord-Süd", "since": "2026-11-01"},
)


def csv_available() -> bool:
    return importlib.util.find_spec("reporthubd.formats.csv") is not None


def make_writer(
    fmt: str, options: Mapping[str, Any] | None = None, context: RenderContext = CONTEXT
) -> FormatWriter:
    return writer_class(fmt)(options or {}, context)


async def write_file(
    fmt: str,
    directory: Path,
    columns: Sequence[Column],
    batches: Sequence[Sequence[Row]],
    options: Mapping[str, Any] | None = None,
    context: RenderContext = CONTEXT,
) -> WrittenFile:
    writer = make_writer(fmt, options, context)
    path = directory / f"out.{writer.file_extension}"
    await writer.open(path, columns)
    try:
        for batch in batches:
            await writer.write_batch(batch)
    except BaseException:
        await writer.abort()
        raise
    return await writer.close()


def read_xlsx(path: Path) -> dict[str, list[tuple[Any, ...]]]:
    import openpyxl

    book = openpyxl.load_workbook(path, read_only=True)
    try:
        return {
            sheet.title: [tuple(r) for r in sheet.iter_rows(values_only=True)]
            for sheet in book.worksheets
        }
    finally:
        book.close()


def read_json(path: Path, *, lines: bool = False) -> list[dict[str, Any]]:
    text = path.read_text(encoding="utf-8")
    if lines:
        return [json.loads(line, parse_float=Decimal) for line in text.splitlines() if line]
    data = json.loads(text, parse_float=Decimal)
    assert isinstance(data, list)
    return data


def read_csv(path: Path) -> list[list[str]]:
    with path.open(encoding="utf-8", newline="") as handle:
        return list(csv.reader(io.StringIO(handle.read())))


def pdf_text(path: Path) -> list[str]:
    """The text of each page (pypdf's extraction)."""
    from pypdf import PdfReader

    return [page.extract_text() or "" for page in PdfReader(path).pages]


def squash(text: str) -> str:
    """Text without whitespace: wrapping inside a PDF cell must not fail a comparison."""
    return re.sub(r"\s+", "", text)


def render_png(pdf: Path, page: int, out_prefix: Path, dpi: int = 110) -> Path:
    exe = shutil.which("pdftoppm")
    if exe is None:
        from tests import servers

        servers.unavailable("pdftoppm (Debian poppler-utils) is not installed")
    subprocess.run(
        [
            exe,
            "-r",
            str(dpi),
            "-png",
            "-f",
            str(page),
            "-l",
            str(page),
            "-singlefile",
            pdf,
            out_prefix,
        ],
        check=True,
        timeout=60,
    )
    return out_prefix.with_suffix(".png")


def fonts_of(pdf: Path) -> set[str]:
    """Base font names used on the PDF's pages (subset prefixes removed)."""
    from pypdf import PdfReader

    names: set[str] = set()
    for page in PdfReader(pdf).pages:
        resources = page.get("/Resources") or {}
        fonts = resources.get("/Font") or {}
        for ref in fonts.values():
            base = str(ref.get_object().get("/BaseFont", ""))
            names.add(base.split("+", 1)[-1].lstrip("/"))
    return names
