from __future__ import annotations

import datetime as dt
import shutil
import subprocess
from pathlib import Path

import pytest

from reporthubd.connectors.base import Column, ColumnKind
from reporthubd.formats import pdffonts
from reporthubd.formats.base import FormatError, RenderContext
from reporthubd.formats.pdf import DEFAULT_MAX_ROWS, PDFWriter
from tests.formats import helpers

COLUMNS = [
    Column(name="id", kind=ColumnKind.INTEGER, source_type="int"),
    Column(name="customer name", kind=ColumnKind.TEXT, source_type="text"),
    Column(name="note", kind=ColumnKind.TEXT, source_type="text"),
]
SCRIPTS = "漢字 かな カナ 한국어 Привет мир Ελληνικά ٠١٢٣٤٥٦٧٨٩"
CONTEXT = RenderContext(
    report_name="Monthly sales",
    execution_id="exec-pdf-7",
    parameters={"region": "Север", "month": dt.date(2026, 11, 1)},
    generated_at=dt.datetime(2026, 11, 29, 8, 0, tzinfo=dt.UTC),
)


def rows(n: int) -> list[tuple[object, ...]]:
    return [(i, f"Customer {i}", f"note {i}") for i in range(n)]


async def test_header_footer_and_repeating_column_header(tmp_path: Path) -> None:
    written = await helpers.write_file(
        "pdf", tmp_path, COLUMNS, [rows(150), rows(150)], {"title": "Sales — Q4"}, CONTEXT
    )
    pages = helpers.pdf_text(written.path)
    assert len(pages) >= 3
    for number, text in enumerate(pages, start=1):
        assert "Sales — Q4" in text
        assert "Generated 2026-11-29 08:00:00 UTC" in text
        assert "exec-pdf-7" in text
        assert "region = Север; month = 2026-11-01" in text
        assert "customer" in text and "note" in text  # the column header, on every page
        # The total is a form drawn at the end: extractors put it on a line of its own.
        assert f"Page{number}of{len(pages)}" in helpers.squash(text)
    everything = helpers.squash("".join(pages))
    assert all(helpers.squash(f"Customer {i}") in everything for i in range(150))


@pytest.mark.parametrize(
    ("options", "landscape"),
    [({"orientation": "portrait"}, False), ({"orientation": "landscape"}, True), ({}, False)],
)
async def test_orientation(tmp_path: Path, options: dict[str, str], landscape: bool) -> None:
    from pypdf import PdfReader

    written = await helpers.write_file("pdf", tmp_path, COLUMNS, [rows(3)], options)
    box = PdfReader(written.path).pages[0].mediabox
    assert (box.width > box.height) is landscape


async def test_row_cap_fails_clearly(tmp_path: Path) -> None:
    assert DEFAULT_MAX_ROWS == 50_000
    writer = helpers.make_writer("pdf", {"max_rows": 10})
    path = tmp_path / "capped.pdf"
    await writer.open(path, COLUMNS)
    await writer.write_batch(rows(6))
    with pytest.raises(FormatError, match="more than 10 rows, the PDF row cap"):
        await writer.write_batch(rows(6))
    await writer.abort()
    assert not path.exists()


async def test_long_text_wraps_and_is_cut_with_ellipsis(tmp_path: Path) -> None:
    words = " ".join(f"word{i}" for i in range(400))
    written = await helpers.write_file(
        "pdf", tmp_path, COLUMNS, [[(1, "x", words), (2, "y", "short")]], {"max_lines_per_cell": 50}
    )
    text = helpers.pdf_text(written.path)[0]
    assert helpers.squash(words) in helpers.squash(text)  # nothing lost, only wrapped
    cut = tmp_path / "cut"
    cut.mkdir()
    written = await helpers.write_file("pdf", cut, COLUMNS, [[(1, "x", words)]])
    text = helpers.pdf_text(written.path)[0]
    assert "…" in text and "word399" not in text


async def test_non_latin_scripts_render_with_embedded_fonts(tmp_path: Path) -> None:
    emoji = "😀🎉👍"
    written = await helpers.write_file(
        "pdf",
        tmp_path,
        COLUMNS,
        [[(1, SCRIPTS, emoji), (2, "\ue000 private", "tab\there")]],
        {},
        CONTEXT,
    )
    text = helpers.pdf_text(written.path)[0]
    for word in SCRIPTS.split():
        assert word in text
    for ch in emoji:
        assert ch in text
    assert "[U+E000] private" in text  # the documented visible fallback
    assert "tab here" in text
    fonts = helpers.fonts_of(written.path)
    assert {"DejaVuSans", "DejaVuSans-Bold", "Symbola"} <= fonts
    assert any(f.startswith("WenQuanYiMicroHei") for f in fonts)

    png = helpers.render_png(written.path, 1, tmp_path / "page")  # to look at when it fails
    assert png.stat().st_size > 10_000
    assert _dark_pixels(written.path, tmp_path / "grey") > 500


def test_every_character_maps_to_a_real_glyph() -> None:
    """No character of the sample is drawn with glyph 0 (.notdef, the empty box)."""
    family = pdffonts.FontFamily(pdffonts.REGULAR, 7)
    for font_name, part in family.runs(SCRIPTS + "😀🎉👍 ✓★"):
        cmap = pdffonts._font(font_name).face.charToGlyph
        for ch in part:
            assert cmap.get(ord(ch), 0) != 0, (font_name, ch)


def test_bad_options_are_rejected() -> None:
    for options in (
        {"orientation": "sideways"},
        {"max_rows": 0},
        {"font_size": 40},
        {"page_size": "A3"},
        {"colour": "red"},
    ):
        with pytest.raises(FormatError):
            PDFWriter(options, helpers.CONTEXT)


def _dark_pixels(pdf: Path, out_prefix: Path) -> int:
    """Dark pixels of page 1 rendered in grey (poppler's PGM: a P5 header, then one byte each)."""
    exe = shutil.which("pdftoppm")
    assert exe is not None
    subprocess.run(
        [exe, "-r", "60", "-gray", "-f", "1", "-l", "1", "-singlefile", pdf, out_prefix],
        check=True,
        timeout=60,
    )
    data = out_prefix.with_suffix(".pgm").read_bytes()
    magic, width, height, maxval, pixels = data.split(maxsplit=4)
    assert magic == b"P5" and maxval == b"255"
    assert len(pixels) == int(width) * int(height)
    return sum(1 for b in pixels if b < 128)
