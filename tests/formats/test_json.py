from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import pytest

from reporthubd.connectors.base import Column, ColumnKind
from reporthubd.formats.base import FormatError
from reporthubd.formats.json import JSONWriter
from tests.formats import helpers

COLUMNS = [
    Column(name="id", kind=ColumnKind.INTEGER, source_type="int"),
    Column(name="id", kind=ColumnKind.DECIMAL, source_type="numeric(38,10)", scale=10),
    Column(name="doc", kind=ColumnKind.JSON, source_type="json"),
]
HUGE = 2**70
EXACT = Decimal("1234567890123456789012345678.0123456789")


@pytest.mark.parametrize("layout", ["array", "lines"])
@pytest.mark.parametrize("decimals", ["string", "number"])
async def test_layouts_and_decimals(tmp_path: Path, layout: str, decimals: str) -> None:
    batches = [
        [(1, EXACT, '{"k": [1, 2]}'), (HUGE, None, "not json")],
        [],
        [(3, Decimal("-0.5"), {"n": None})],
    ]
    written = await helpers.write_file(
        "json", tmp_path, COLUMNS, batches, {"layout": layout, "decimals": decimals}
    )
    assert written.path.suffix == (".jsonl" if layout == "lines" else ".json")
    assert written.media_type == (
        "application/x-ndjson" if layout == "lines" else "application/json"
    )
    objects = helpers.read_json(written.path, lines=layout == "lines")
    exact = EXACT if decimals == "number" else str(EXACT)
    half = Decimal("-0.5") if decimals == "number" else "-0.5"
    assert objects == [
        {"id": 1, "id_2": exact, "doc": {"k": [1, 2]}},
        {"id": HUGE, "id_2": None, "doc": "not json"},
        {"id": 3, "id_2": half, "doc": {"n": None}},
    ]
    if layout == "lines":
        assert written.path.read_text().count("\n") == 3


async def test_empty_result_is_an_empty_array(tmp_path: Path) -> None:
    written = await helpers.write_file("json", tmp_path, COLUMNS, [])
    assert json.loads(written.path.read_text()) == []
    assert written.rows == 0


async def test_non_finite_floats_become_null(tmp_path: Path) -> None:
    columns = [Column(name="f", kind=ColumnKind.FLOAT, source_type="float8")]
    written = await helpers.write_file(
        "json", tmp_path, columns, [[(float("nan"),), (float("inf"),), (1.5,)]]
    )
    assert helpers.read_json(written.path) == [{"f": None}, {"f": None}, {"f": Decimal("1.5")}]


@pytest.mark.parametrize(
    "options", [{"layout": "xml"}, {"decimals": "float"}, {"indent": 2}, {"layout": 1}]
)
def test_bad_options_are_rejected(options: dict[str, object]) -> None:
    with pytest.raises(FormatError):
        JSONWriter(options, helpers.CONTEXT)


async def test_json_lines_split_is_safe_for_any_text(tmp_path: Path) -> None:
    """Scalar-only rows are encoded as one array and split between objects: text that looks
    like an object boundary must stay inside its value."""
    columns = [
        Column(name="a", kind=ColumnKind.TEXT, source_type="text"),
        Column(name='b"},{"', kind=ColumnKind.TEXT, source_type="text"),
        Column(name="n", kind=ColumnKind.INTEGER, source_type="int"),
    ]
    tricky = ['},{"', 'x},{"y":1}', "back\\", '\\"},{"', "line\nbreak", "{}", "", "😀"]
    rows = [(t, t[::-1], i) for i, t in enumerate(tricky)]
    written = await helpers.write_file("json", tmp_path, columns, [rows], {"layout": "lines"})
    lines = written.path.read_text(encoding="utf-8").splitlines()
    assert len(lines) == len(rows)
    assert [json.loads(line) for line in lines] == [
        {"a": a, 'b"},{"': b, "n": n} for a, b, n in rows
    ]
