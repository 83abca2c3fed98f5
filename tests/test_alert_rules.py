"""Conditional alerts, the pure part (issue 17, item 2): conditions parsed naming the key,
evaluated batch by batch as rows stream, and each send mode's decisions over six runs whose
data toggles between them."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from reporthubd.alert_rules import AlertError, Evaluator, decide, parse_alert, parse_condition

COLUMNS = ["region", "amount", "status"]
ROWS: list[tuple[Any, ...]] = [
    ("north", Decimal("10.50"), "ok"),
    ("south", 7, "ok"),
    ("east", None, "error"),
    ("west", 2.5, "ok"),
]


def _evaluate(raw: dict[str, Any], rows: list[tuple[Any, ...]] = ROWS) -> tuple[Any, bool]:
    evaluator = Evaluator(parse_condition(raw))
    for start in range(0, len(rows), 3):  # batches, as the connector yields them
        evaluator.feed(COLUMNS, rows[start : start + 3])
    return evaluator.result()


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ({"row_count": {"op": ">", "value": 3}}, (4, True)),
        ({"row_count": {"op": "==", "value": 0}}, (4, False)),
        (
            {"aggregate": {"fn": "sum", "column": "amount", "op": ">=", "value": 20}},
            (Decimal("20.0"), True),
        ),
        (
            {"aggregate": {"fn": "count", "column": "amount", "op": "==", "value": 3}},
            (Decimal(3), True),
        ),
        (
            {"aggregate": {"fn": "max", "column": "amount", "op": "<", "value": 10}},
            (Decimal("10.50"), False),
        ),
        (
            {"aggregate": {"fn": "min", "column": "amount", "op": "<", "value": 3}},
            (Decimal("2.5"), True),
        ),
        ({"any_row": {"column": "status", "op": "==", "value": "error"}}, (True, True)),
        ({"all_rows": {"column": "status", "op": "==", "value": "ok"}}, (False, False)),
        ({"all_rows": {"column": "region", "op": "!=", "value": "mars"}}, (True, True)),
    ],
)
def test_conditions_over_streamed_batches(raw: dict[str, Any], expected: tuple[Any, bool]) -> None:
    assert _evaluate(raw) == expected


def test_all_rows_of_an_empty_result_does_not_hold() -> None:
    assert _evaluate({"all_rows": {"column": "status", "op": "==", "value": "ok"}}, []) == (
        False,
        False,
    )


def test_a_missing_column_is_named() -> None:
    with pytest.raises(AlertError, match="condition column 'amout' is not in the result"):
        _evaluate({"any_row": {"column": "amout", "op": ">", "value": 1}})


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (
            {"condition": {"rows": {"op": ">", "value": 0}}},
            "alert.condition.rows: unknown condition",
        ),
        (
            {"condition": {"row_count": {"op": "=>", "value": 0}}},
            "alert.condition.row_count.op: unknown comparison '=>'",
        ),
        ({"condition": {"row_count": {"op": ">"}}}, "alert.condition.row_count.value: required"),
        (
            {"condition": {"row_count": {"op": ">", "value": "many"}}},
            "alert.condition.row_count.value: must be a number",
        ),
        (
            {"condition": {"aggregate": {"fn": "avg", "column": "a", "op": ">", "value": 1}}},
            "alert.condition.aggregate.fn: unknown function 'avg'",
        ),
        (
            {"condition": {"any_row": {"op": ">", "value": 1}}},
            "alert.condition.any_row.column: required",
        ),
        (
            {"mode": "sometimes", "condition": {"row_count": {"op": ">", "value": 0}}},
            "alert.mode: unknown mode 'sometimes'",
        ),
        ({"mode": "when_true"}, "alert.condition: required with mode when_true"),
        (
            {"condition": {"row_count": {"op": ">", "value": 0}}, "when": 1},
            "alert.when: unknown key",
        ),
    ],
)
def test_bad_alerts_name_the_key(raw: dict[str, Any], message: str) -> None:
    with pytest.raises(AlertError) as caught:
        parse_alert(raw)
    assert message in str(caught.value)


TRUTHS = [False, True, True, False, False, True]
"""The condition over six runs, the data toggled between them."""
SHAS = ["a", "a", "b", "b", "b", "c"]
"""The file each run produced."""


def _six(mode: str) -> list[tuple[bool, bool]]:
    raw: dict[str, Any] = {"mode": mode}
    if mode != "on_change":
        raw["condition"] = {"row_count": {"op": ">", "value": 0}}
    alert = parse_alert(raw)
    previous: bool | None = None
    delivered: str | None = None
    out = []
    for truth, sha in zip(TRUTHS, SHAS, strict=True):
        decision = decide(
            alert,
            truth=truth if alert.condition is not None else None,
            previous_truth=previous,
            file_sha256=sha,
            previous_delivered_sha256=delivered,
        )
        assert decision.reason
        out.append((decision.deliver, decision.resolved))
        previous = truth
        if decision.deliver:
            delivered = sha
    return out


def test_each_send_mode_over_six_runs() -> None:
    no, yes, resolved = (False, False), (True, False), (False, True)
    assert _six("always") == [yes] * 6
    assert _six("when_true") == [no, yes, yes, no, no, yes]
    assert _six("on_transition") == [no, yes, no, resolved, no, yes]
    assert _six("on_change") == [yes, no, yes, no, no, yes]
