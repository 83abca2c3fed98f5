"""Chinese and Japanese chart labels are drawn with the shipped CJK font (formats/fonts:
WenQuanYi Micro Hei), in the PDF's vector chart and in the email's PNG, not as empty boxes:
each label is split into runs of one font, as the PDF's table text is (formats.pdffonts)."""

from __future__ import annotations

import json
import shutil
import subprocess
from decimal import Decimal
from pathlib import Path

import pytest

from reporthubd.connectors.base import Column, ColumnKind
from reporthubd.formats import capture, chartpaint, pdffonts
from tests import servers
from tests.formats import report_samples as samples

LABELS = ("北京", "東京", "大阪", "上海")
TITLE = "売上高（地域別）"


def _ink(png: bytes, box: tuple[int, int, int, int]) -> tuple[int, bytes]:
    """The dark pixels of `box` in the PNG: how many, and the crop's bytes."""
    import io

    from PIL import Image

    with Image.open(io.BytesIO(png)) as image:
        crop = image.convert("L").crop(box)
        data = crop.tobytes()
    return sum(1 for v in data if v < 160), data


def test_png_labels_in_chinese_and_japanese_are_glyphs_not_boxes() -> None:
    """Four different labels draw four different pictures; in a font without CJK glyphs each
    would be the same two .notdef boxes. Mixed text keeps its Latin part in the base font."""
    drawing = chartpaint.Drawing(width=400, height=60)
    for i, label in enumerate(LABELS):
        drawing.add(chartpaint.String(20 + i * 90, 20, label, fontSize=14))
    drawing.add(chartpaint.String(20, 45, "Q3 売上 2026", fontSize=14))
    png = chartpaint.to_png(drawing, 2.0)
    crops = []
    for i in range(len(LABELS)):
        x = (20 + i * 90) * 2
        ink, data = _ink(png, (x - 2, 2 * (60 - 20) - 32, x + 64, 2 * (60 - 20) + 8))
        assert ink > 60, (LABELS[i], ink)
        crops.append(data)
    assert len(set(crops)) == len(LABELS)
    parts = chartpaint.runs(chartpaint.String(0, 0, "Q3 売上 2026"))
    assert [name for name, _ in parts] == [pdffonts.REGULAR, pdffonts.CJK, pdffonts.REGULAR]


def test_the_pdf_chart_and_the_email_png_draw_cjk_labels(tmp_path: Path) -> None:
    """The report's chart, cropped out of the PDF page by its placement, reads back as the
    labels and the title (pdftotext); the email's PNG has a distinct picture per label."""
    if shutil.which("pdftotext") is None:
        servers.unavailable("pdftotext (Debian poppler-utils) is not installed")
        return
    columns = [
        Column(name="region", kind=ColumnKind.TEXT, source_type="text"),
        Column(name="revenue", kind=ColumnKind.DECIMAL, source_type="numeric", scale=2),
    ]
    rows = [(label, Decimal(300 * (i + 2))) for i, label in enumerate(LABELS)]
    options = {"chart": {"type": "bar", "x": "region", "y": "revenue", "title": TITLE}}
    written = samples.write(
        "pdf", options, columns, rows, tmp_path / "r.pdf", samples.context("レポート")
    )
    data = json.loads(capture.capture_path(written.path).read_text(encoding="utf-8"))
    x, y, scale = data["chart"]["placement"]
    width, height = data["chart"]["width"] * scale, data["chart"]["height"] * scale
    info = subprocess.run(
        ["pdfinfo", str(written.path)], check=True, capture_output=True, text=True
    ).stdout
    page_h = float(
        next(line for line in info.splitlines() if line.startswith("Page size")).split()[4]
    )
    crop = [
        "-x", str(int(x)), "-y", str(int(page_h - y - height)),
        "-W", str(int(width) + 1), "-H", str(int(height) + 1),
    ]  # fmt: skip
    text = subprocess.run(
        ["pdftotext", "-f", "1", "-l", "1", *crop, str(written.path), "-"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    words = text.split()
    assert all(label in words for label in LABELS), text
    assert "売上高" in text and "地域別" in text, text

    png = capture.chart_path(written.path).read_bytes()
    drawn = data["chart"]["drawn"]
    k = data["chart"]["png_scale"]
    crops = set()
    for point in drawn:  # each bar's label sits under it, centred on the bar
        centre = round(point["x"] * k)
        bottom = round((data["chart"]["height"] - data["chart"]["zero_y"]) * k)
        ink, pixels = _ink(png, (centre - 16, bottom + 2, centre + 16, bottom + 22))
        assert ink > 20, (point, ink)
        crops.add(pixels)
    assert len(crops) == len(LABELS)


@pytest.mark.parametrize("text", ["한국어", "ひらがな カタカナ", "繁體中文"])
def test_every_cjk_script_has_its_glyphs_in_the_shipped_font(text: str) -> None:
    """No placeholder ([U+XXXX]) for Korean, kana or traditional Chinese: all in one font."""
    parts = chartpaint.runs(chartpaint.String(0, 0, text))
    assert "[U+" not in "".join(part for _, part in parts)
    assert {name for name, part in parts if part.strip()} == {pdffonts.CJK}
