"""When the engine cuts a result at max_rows (truncate: true), every file says so at its end."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from reporthubd.connectors.base import Column, ColumnKind
from reporthubd.formats.threaded import truncation_note
from tests.formats import helpers

COLUMNS = [
    Column(name="id", kind=ColumnKind.INTEGER, source_type="int"),
    Column(name="name", kind=ColumnKind.TEXT, source_type="text"),
]
ROWS = [(1, "a"), (2, "b")]
NOTE = truncation_note(2)


async def _write(fmt: str, tmp_path: Path, options: dict[str, object]) -> Path:
    writer = helpers.make_writer(fmt, options)
    path = tmp_path / f"cut.{writer.file_extension}"
    await writer.open(path, COLUMNS)
    await writer.write_batch(ROWS)
    await writer.note_truncated(2)
    written = await writer.close()
    assert written.rows == 2  # the note is not a row
    return written.path


@pytest.mark.parametrize("engine", ["stream", "xlsxwriter"])
async def test_excel(tmp_path: Path, engine: str) -> None:
    path = await _write("excel", tmp_path, {"engine": engine})
    assert helpers.read_xlsx(path)["Report"] == [("id", "name"), (1, "a"), (2, "b"), (NOTE, None)]


@pytest.mark.parametrize("layout", ["array", "lines"])
async def test_json(tmp_path: Path, layout: str) -> None:
    path = await _write("json", tmp_path, {"layout": layout})
    objects = helpers.read_json(path, lines=layout == "lines")
    assert objects[:2] == [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}]
    assert objects[2] == {"_reporthubd_truncated": {"max_rows": 2, "message": NOTE}}
    if layout == "array":
        json.loads(path.read_text())  # still one valid document


async def test_pdf(tmp_path: Path) -> None:
    path = await _write("pdf", tmp_path, {})
    assert NOTE in helpers.pdf_text(path)[-1]
