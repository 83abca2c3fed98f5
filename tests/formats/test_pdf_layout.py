"""PDF layout (issue 19, item 4), read back by poppler and pypdf: right-to-left text shaped and
ordered, the orientation fitted to the content, long text wrapped, the header and "Page X of Y"
on every page, the optional first page with the parameters, row count and chart."""

from __future__ import annotations

import shutil
import subprocess
import unicodedata
from pathlib import Path

import pypdf
import pytest

from reporthubd.connectors.base import Column, ColumnKind
from tests.formats import report_samples as samples

pytestmark = pytest.mark.skipif(shutil.which("pdftotext") is None, reason="needs poppler-utils")

TEXT = Column(name="city", kind=ColumnKind.TEXT, source_type="text")
NUMBER = Column(name="n", kind=ColumnKind.INTEGER, source_type="integer")
BIDI_CONTROLS = dict.fromkeys(
    map(ord, "\u202a\u202b\u202c\u202d\u202e\u200e\u200f\u2066\u2067\u2069")
)


def _pages(path: Path) -> list[str]:
    count = len(pypdf.PdfReader(path).pages)
    return [
        subprocess.run(
            ["pdftotext", "-layout", "-f", str(p), "-l", str(p), str(path), "-"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        for p in range(1, count + 1)
    ]


def test_arabic_is_joined_and_right_to_left_text_reads_in_order(tmp_path: Path) -> None:
    arabic, hebrew = "مرحبا بالعالم", "שלום עולם"
    rows = [(arabic, 1), (hebrew, 2), (f"{hebrew} 2026 {arabic}", 3), ("Zürich", 4)]
    written = samples.write(
        "pdf", {}, [TEXT, NUMBER], rows, tmp_path / "rtl.pdf", samples.context("rtl")
    )
    (raw,) = _pages(written.path)
    # The glyphs drawn for Arabic are its joined (presentation) forms, not isolated letters...
    assert any("\ufe70" <= ch <= "\ufeff" for ch in raw)
    # ...and a reader recovers the logical text: the drawn order was the visual one.
    text = unicodedata.normalize("NFKC", raw).translate(BIDI_CONTROLS)
    assert arabic in text
    assert hebrew in text
    assert "Zürich" in text


def test_orientation_follows_the_content(tmp_path: Path) -> None:
    narrow = samples.write(
        "pdf", {}, [TEXT, NUMBER], [("a", 1)], tmp_path / "n.pdf", samples.context("n")
    )
    wide_columns = [
        Column(name=f"c{i}", kind=ColumnKind.TEXT, source_type="text") for i in range(5)
    ]
    wide_rows = [tuple(f"value number {i} of a rather wide column" for i in range(5))]
    wide = samples.write(
        "pdf", {}, wide_columns, wide_rows, tmp_path / "w.pdf", samples.context("w")
    )
    (portrait,) = pypdf.PdfReader(narrow.path).pages
    (landscape,) = pypdf.PdfReader(wide.path).pages
    assert portrait.mediabox.width < portrait.mediabox.height
    assert landscape.mediabox.width > landscape.mediabox.height
    # Asked for, it is what was asked, whatever the content.
    forced = samples.write(
        "pdf",
        {"orientation": "portrait"},
        wide_columns,
        wide_rows,
        tmp_path / "f.pdf",
        samples.context("f"),
    )
    (page,) = pypdf.PdfReader(forced.path).pages
    assert page.mediabox.width < page.mediabox.height


def test_long_text_wraps_and_every_page_has_the_header_and_page_x_of_y(tmp_path: Path) -> None:
    story = " ".join(f"word{i}" for i in range(40))
    rows = [(f"{story} row{r}", r) for r in range(120)]
    options = {"columns": {"city": {"label": "Long story"}, "n": {"label": "Number"}}}
    written = samples.write(
        "pdf", options, [TEXT, NUMBER], rows, tmp_path / "long.pdf", samples.context("long")
    )
    pages = _pages(written.path)
    assert len(pages) > 2
    for number, page in enumerate(pages, start=1):
        assert "Long story" in page and "Number" in page, f"page {number} lacks the header"
        assert f"Page {number} of {len(pages)}" in page
    # Wrapped, not cut: the first row's words are all there, over several lines.
    first = pages[0]
    assert all(f"word{i}" in first for i in (0, 10, 20))
    line_of = {w: i for i, line in enumerate(first.splitlines()) for w in line.split()}
    assert line_of["word0"] < line_of["word20"]


def test_the_cover_page_has_the_parameters_row_count_and_chart(tmp_path: Path) -> None:
    options = {
        "cover_page": True,
        "locale": "de_DE",
        "chart": {"type": "pie", "x": "city", "y": "n", "title": "Share of n"},
    }
    rows = [(f"City {i % 4}", i) for i in range(2000)]
    written = samples.write(
        "pdf",
        options,
        [TEXT, NUMBER],
        rows,
        tmp_path / "cover.pdf",
        samples.context("Cover", {"region": "EMEA", "since": "2026-11-01"}),
    )
    pages = _pages(written.path)
    cover = pages[0]
    assert "region" in cover and "EMEA" in cover and "2026-11-01" in cover
    assert "Rows" in cover and "2.000" in cover  # counted at the end, in the locale's form
    assert "Share of n" in cover and "City 0" in cover  # the chart with its legend
    assert "city" not in cover.split("Share of n")[0]  # no table on the cover
    assert "city" in pages[1] and "Page 2 of" in pages[1]
