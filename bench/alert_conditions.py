"""Conditional alerts (issue 17, item 2): the cost of evaluating a condition while the rows stream
(alert_rules.Evaluator.feed, what engine/alerting.AlertingWriter adds per batch), against
Python's csv.writer writing the same rows to memory, measured in the same run.

    .venv/bin/python bench/alert_conditions.py [--rows 1000000]
"""

from __future__ import annotations

import argparse
import csv
import io
import time
from collections.abc import Callable

from reporthubd.alert_rules import Condition, Evaluator, parse_alert

CONDITIONS = [
    {"row_count": {"op": ">", "value": 0}},
    {"aggregate": {"fn": "sum", "column": "amount", "op": ">=", "value": 100}},
    {"aggregate": {"fn": "max", "column": "amount", "op": ">=", "value": 100}},
    {"any_row": {"column": "status", "op": "==", "value": "never"}},
    {"all_rows": {"column": "amount", "op": ">=", "value": 0}},
]


def _best(fn: Callable[[], None], rounds: int = 3) -> float:
    best = float("inf")
    for _ in range(rounds):
        started = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - started)
    return best


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    args = parser.parse_args()
    batch = [("ok" if i % 7 else "error", i) for i in range(10_000)]
    batches = max(1, args.rows // len(batch))
    rows = batches * len(batch)

    def baseline() -> None:
        writer = csv.writer(io.StringIO())
        for _ in range(batches):
            writer.writerows(batch)

    base = _best(baseline)
    print(f"rows {rows:,}; baseline csv.writer to memory: {rows / base / 1e6:.2f} M rows/s")
    for raw in CONDITIONS:
        alert = parse_alert({"condition": raw, "mode": "when_true"})
        assert alert.condition is not None
        condition = alert.condition

        def run(condition: Condition = condition) -> None:
            evaluator = Evaluator(condition)
            for _ in range(batches):
                evaluator.feed(["status", "amount"], batch)

        took = _best(run)
        print(
            f"{condition.describe():<32} {rows / took / 1e6:10.2f} M rows/s  "
            f"{took / base:5.2f}x the baseline's time"
        )


if __name__ == "__main__":
    main()
