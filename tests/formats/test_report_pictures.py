"""Issue 19, pictures: the demo's PDF report (its first page through poppler's pdftoppm) and the
default email of the same report (its HTML part through headless Chromium) compared with
checked-in references at a small pixel tolerance; the chart in both: present, the right size,
and its drawn points equal to the data (an SQL GROUP BY over the same rows).

References live in tests/formats/references/. To accept a deliberate change of the pictures,
run with REPORTHUB_UPDATE_REFERENCES=1 and look at the new PNGs before committing them.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image, ImageChops

from reporthubd.formats import capture, chartdraw
from tests.formats import report_samples as samples

REFERENCES = Path(__file__).parent / "references"
CHROMIUM = "/usr/bin/chromium"
TOLERANCE = 0.004
"""Share of pixels allowed to differ visibly (anti-aliasing, font hinting across versions)."""
BAR = (0x25, 0x63, 0xEB)

pytestmark = pytest.mark.skipif(
    shutil.which("pdftoppm") is None or not Path(CHROMIUM).exists(),
    reason="needs poppler-utils (pdftoppm) and Debian's chromium",
)


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """The demo's sales-summary PDF over the demo dataset, and the email of it."""
    folder = tmp_path_factory.mktemp("demo-pictures")
    report = samples.demo_report("sales-summary")
    database = samples.demo_database(folder)
    since = f"{samples.DEMO_LAST_DAY.replace(day=1).isoformat()} 00:00:00"
    columns, rows = samples.query(database, report["query"], {"since": since})
    options = report["format_options"]
    written = samples.write(
        "pdf",
        options,
        columns,
        rows,
        folder / "sales-summary.pdf",
        samples.context(report["name"], {"since": since}),
    )
    file = samples.produced(written)
    config = samples.config(report["name"], "pdf", options)
    message = samples.message(
        config, file, {"preview_rows": 8, "body": "Good morning."}, parameters={"since": since}
    )
    yield {
        "folder": folder,
        "database": database,
        "since": since,
        "report": report,
        "file": file,
        "message": message,
        "capture": capture.load(file.path),
    }


def _compare(actual: Path, name: str) -> None:
    reference = REFERENCES / name
    if os.environ.get("REPORTHUB_UPDATE_REFERENCES") == "1" or not reference.exists():
        REFERENCES.mkdir(exist_ok=True)
        shutil.copyfile(actual, reference)
        if os.environ.get("REPORTHUB_UPDATE_REFERENCES") != "1":
            pytest.fail(f"no reference {reference} yet: written from this run; look at it")
    got = Image.open(actual).convert("RGB")
    want = Image.open(reference).convert("RGB")
    assert got.size == want.size, f"{name}: {got.size} instead of {want.size}"
    diff = ImageChops.difference(got, want).convert("L").point(lambda v: 255 if v > 48 else 0)
    changed = diff.histogram()[255]
    share = changed / (got.width * got.height)
    if share > TOLERANCE:
        diff.save(actual.with_name(f"diff-{name}"))
    assert share <= TOLERANCE, f"{name}: {share:.2%} of the pixels differ from the reference"


def _group_sums(demo: dict[str, Any]) -> dict[str, float]:
    import sqlite3

    sql = f"SELECT region, SUM(revenue) FROM ({demo['report']['query']}) GROUP BY region"
    with sqlite3.connect(demo["database"]) as connection:
        return {r: v for r, v in connection.execute(sql, {"since": demo["since"]})}


def test_the_demo_pdf_first_page_matches_its_reference(
    demo: dict[str, Any], tmp_path: Path
) -> None:
    out = tmp_path / "pdf-page"
    subprocess.run(
        [
            "pdftoppm",
            "-png",
            "-r",
            "60",
            "-f",
            "1",
            "-l",
            "1",
            "-singlefile",
            str(demo["file"].path),
            str(out),
        ],
        check=True,
    )
    _compare(out.with_suffix(".png"), "demo-sales-summary-page1.png")


def test_the_pdf_chart_is_there_at_its_size_and_draws_the_data(
    demo: dict[str, Any], tmp_path: Path
) -> None:
    captured = demo["capture"]
    chart = captured["chart"]
    sums = _group_sums(demo)
    # The aggregated points are the SQL sums, region by region, in the query's order.
    assert dict(zip(chart["labels"], chart["values"][0], strict=True)) == pytest.approx(sums)
    drawn = {p["label"]: p for p in chart["drawn"]}
    assert set(drawn) == set(sums)
    # Rendered at 72 dpi, one pixel is one point: each bar's top (its drawn point) is blue,
    # a few points above it is not; the bars' heights are in proportion to the sums.
    out = tmp_path / "page"
    subprocess.run(
        [
            "pdftoppm",
            "-png",
            "-r",
            "72",
            "-f",
            "1",
            "-l",
            "1",
            "-singlefile",
            str(demo["file"].path),
            str(out),
        ],
        check=True,
    )
    page = Image.open(out.with_suffix(".png")).convert("RGB")
    x0, y0, scale = chart["placement"]
    # Its own size (520 × 260 points) where it fits across the page, else shrunk to the width.
    assert scale == pytest.approx(min(1.0, (page.width - 2 * x0) / chart["width"]), abs=0.01)
    assert (chart["width"], chart["height"]) == (520, 260)
    height = page.height
    zero = None
    for label, point in drawn.items():
        px = round(x0 + point["x"] * scale)
        top = height - (y0 + point["y"] * scale)
        inside = page.getpixel((px, round(top + 2)))
        above = page.getpixel((px, round(top - 3)))
        assert _near(inside, BAR), (label, inside)
        assert not _near(above, BAR), (label, above)
        zero = zero or point
    values = [p["value"] for p in drawn.values()]
    ys = [p["y"] for p in drawn.values()]
    base = chart["zero_y"]
    ratios = {(y - base) / v for y, v in zip(ys, values, strict=True) if v}
    assert max(ratios) - min(ratios) < 1e-6 * max(ratios) + 0.01


def _near(pixel: Any, color: tuple[int, int, int], tolerance: int = 40) -> bool:
    return all(abs(a - b) <= tolerance for a, b in zip(pixel[:3], color, strict=True))


def _screenshot(html: str, folder: Path, name: str) -> Path:
    page = folder / f"{name}.html"
    page.write_text(html, encoding="utf-8")
    shot = folder / f"{name}.png"
    profile = tempfile.mkdtemp(prefix="rh-chromium-")
    try:
        subprocess.run(
            [
                CHROMIUM,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
                "--hide-scrollbars",
                "--force-device-scale-factor=1",
                f"--user-data-dir={profile}",
                "--window-size=720,1400",
                f"--screenshot={shot}",
                page.as_uri(),
            ],
            check=True,
            capture_output=True,
            timeout=60,
        )
    finally:
        shutil.rmtree(profile, ignore_errors=True)
    return shot


def _html_with_images(message: Any) -> tuple[str, dict[str, bytes]]:
    html_part = message.get_body(preferencelist=("html",))
    html = html_part.get_content()
    images = {}
    for part in message.walk():
        if part.get_content_maintype() == "image":
            images[part["Content-ID"].strip("<>")] = part.get_payload(decode=True)
    return html, images


def test_the_default_email_matches_its_reference(demo: dict[str, Any], tmp_path: Path) -> None:
    html, images = _html_with_images(demo["message"])
    # A mail client shows the CID image from the message itself; the browser gets it inline.
    for cid, data in images.items():
        html = html.replace(
            f"cid:{cid}", "data:image/png;base64," + base64.b64encode(data).decode()
        )
    assert "cid:" not in html and "http://" not in html and "https://" not in html
    shot = _screenshot(html, tmp_path, "email")
    _compare(shot, "demo-sales-summary-email.png")


def test_the_email_chart_is_an_inline_cid_png_of_the_right_size(demo: dict[str, Any]) -> None:
    message = demo["message"]
    html, images = _html_with_images(message)
    ((cid, data),) = images.items()
    assert f'src="cid:{cid}"' in html
    chart = demo["capture"]["chart"]
    path = demo["folder"] / "chart.png"
    path.write_bytes(data)
    picture = Image.open(path)
    assert picture.format == "PNG"
    assert picture.size == (
        round(chart["width"] * chartdraw.PNG_SCALE),
        round(chart["height"] * chartdraw.PNG_SCALE),
    )
    assert f'width="{round(chart["width"])}"' in html
    # Its drawn points: each bar's top is the bar colour in the PNG (y from the bottom).
    for point in chart["drawn"]:
        x = round(point["x"] * chartdraw.PNG_SCALE)
        y = picture.height - round(point["y"] * chartdraw.PNG_SCALE)
        assert _near(picture.convert("RGB").getpixel((x, y + 3)), BAR), point
    assert json.dumps(chart["values"])  # exported beside the picture
