"""Conditional alerts (issue 17, item 2), first part: the condition model, its evaluation over
the rows as they stream, and the send decision of each mode. Pure: no store, no clock. Wired
by engine/alerting.py (the writer around the run's writer, the check query, the decision
recorded on the execution), store/alerts.py (report_alert_states) and the catalog's
`[reports.alert]`.

    alert = {condition = {row_count = {op = ">", value = 0}}, mode = "on_transition"}
    alert = {condition = {aggregate = {fn = "sum", column = "amount", op = ">=", value = 1000}}}
    alert = {condition = {any_row = {column = "status", op = "==", value = "error"}}}
    alert = {condition = {all_rows = {column = "ok", op = "==", value = true}}, mode = "when_true"}

`Evaluator.feed(columns, rows)` takes each batch the connector yields (no second query, no row
kept), `result()` gives the condition's value and truth. `decide` says, from the mode, the
truth, the previous run's truth and file hashes, whether this run is delivered and why (a run
that is not delivered is recorded with that reason, never as a silent success):

- `always`: delivered;
- `when_true`: delivered while the condition holds;
- `on_transition`: delivered when it turns true; when it turns false one "resolved" notice;
- `on_change`: delivered when the file differs from the previous delivered run's `file_sha256`.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from typing import Any


class Mode(StrEnum):
    ALWAYS = "always"
    WHEN_TRUE = "when_true"
    ON_TRANSITION = "on_transition"
    ON_CHANGE = "on_change"


class AlertError(ValueError):
    """A condition that cannot be used; the message names the key."""


OPS: dict[str, Callable[[Any, Any], bool]] = {
    ">": operator.gt,
    ">=": operator.ge,
    "<": operator.lt,
    "<=": operator.le,
    "==": operator.eq,
    "!=": operator.ne,
}
KINDS = ("row_count", "aggregate", "any_row", "all_rows")
FUNCTIONS = ("count", "sum", "min", "max")
ALERT_KEYS = frozenset({"condition", "mode", "check_query"})


@dataclass(frozen=True, kw_only=True)
class Condition:
    kind: str
    op: str
    value: Any
    column: str | None = None
    fn: str | None = None

    def describe(self) -> str:
        """As an author wrote it, e.g. "sum(amount) >= 1000", "any row status == 'error'"."""
        value = _shown(self.value)
        if self.kind == "row_count":
            return f"row_count {self.op} {value}"
        if self.kind == "aggregate":
            return f"{self.fn}({self.column}) {self.op} {value}"
        return f"{self.kind.replace('_', ' ')} {self.column} {self.op} {value}"


def _shown(value: Any) -> str:
    """A comparison's value in a reason line: numbers as written (no Decimal('...')), text
    quoted, booleans as in TOML."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Decimal):
        return format(value.normalize(), "f") if value == value.to_integral() else str(value)
    return repr(value) if isinstance(value, str) else str(value)


@dataclass(frozen=True, kw_only=True)
class Alert:
    condition: Condition | None
    """None: no condition (mode always or on_change)."""
    mode: Mode = Mode.WHEN_TRUE
    check_query: str | None = None
    """A cheap query run before the report: the condition is evaluated over its rows, and the
    report runs only when the decision is to deliver."""


def _scalar(value: object, key: str) -> Any:
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int | float):
        return Decimal(str(value))
    raise AlertError(f"{key}: must be a number, a string, true/false or null")


def parse_alert(raw: Mapping[str, Any], *, key: str = "alert") -> Alert:
    """An alert from its TOML/JSON form; AlertError naming the key otherwise."""
    unknown = sorted(set(raw) - ALERT_KEYS)
    if unknown:
        known = ", ".join(sorted(ALERT_KEYS))
        raise AlertError(f"{key}.{unknown[0]}: unknown key (known: {known})")
    try:
        mode = Mode(raw.get("mode", Mode.WHEN_TRUE.value))
    except ValueError:
        known = ", ".join(m.value for m in Mode)
        raise AlertError(f"{key}.mode: unknown mode {raw.get('mode')!r} (known: {known})") from None
    check = raw.get("check_query")
    if check is not None and (not isinstance(check, str) or not check.strip()):
        raise AlertError(f"{key}.check_query: must be a non-empty SQL text")
    condition_raw = raw.get("condition")
    if condition_raw is None:
        if mode in (Mode.WHEN_TRUE, Mode.ON_TRANSITION):
            raise AlertError(f"{key}.condition: required with mode {mode.value}")
        return Alert(condition=None, mode=mode, check_query=check)
    return Alert(
        condition=parse_condition(condition_raw, key=f"{key}.condition"),
        mode=mode,
        check_query=check,
    )


def parse_condition(raw: object, *, key: str = "condition") -> Condition:
    if not isinstance(raw, Mapping) or len(raw) != 1:
        raise AlertError(
            f'{key}: one of {", ".join(KINDS)}, e.g. {{row_count = {{op = ">", value = 0}}}}'
        )
    ((kind, spec),) = raw.items()
    if kind not in KINDS:
        raise AlertError(f"{key}.{kind}: unknown condition (known: {', '.join(KINDS)})")
    where = f"{key}.{kind}"
    if not isinstance(spec, Mapping):
        raise AlertError(f"{where}: must be an object with op and value")
    allowed = {"op", "value"} | ({"column"} if kind != "row_count" else set())
    allowed |= {"fn"} if kind == "aggregate" else set()
    unknown = sorted(set(spec) - allowed)
    if unknown:
        raise AlertError(f"{where}.{unknown[0]}: unknown key (known: {', '.join(sorted(allowed))})")
    op = spec.get("op")
    if op not in OPS:
        raise AlertError(f"{where}.op: unknown comparison {op!r} (known: {', '.join(OPS)})")
    if "value" not in spec:
        raise AlertError(f"{where}.value: required")
    value = _scalar(spec["value"], f"{where}.value")
    column = spec.get("column")
    if kind != "row_count" and (not isinstance(column, str) or not column):
        raise AlertError(f"{where}.column: required, the name of a result column")
    fn = spec.get("fn")
    if kind == "aggregate" and fn not in FUNCTIONS:
        raise AlertError(f"{where}.fn: unknown function {fn!r} (known: {', '.join(FUNCTIONS)})")
    text_extreme = kind == "aggregate" and fn in ("min", "max") and isinstance(value, str)
    if kind in ("row_count", "aggregate") and not isinstance(value, Decimal) and not text_extreme:
        raise AlertError(f"{where}.value: must be a number")
    return Condition(kind=kind, op=op, value=value, column=column, fn=fn)


def _comparable(value: object) -> Any:
    if isinstance(value, bool) or value is None or isinstance(value, Decimal):
        return value
    if isinstance(value, int):
        return Decimal(value)  # exact, and far cheaper than through str
    if isinstance(value, float):
        try:
            return Decimal(str(value))
        except InvalidOperation:
            return None
    return value


def _holds(op: str, left: Any, right: Any) -> bool:
    if left is None or right is None:
        if op == "==":
            return left is right
        return op == "!=" and (left is None) != (right is None)
    try:
        return OPS[op](left, right)
    except TypeError:  # a string against a number: the comparison does not hold
        return op == "!="


class Evaluator:
    """The condition over a result, fed batch by batch as the rows stream."""

    def __init__(self, condition: Condition) -> None:
        self.condition = condition
        self.rows = 0
        self._index: int | None = None
        self._count = 0
        self._sum = Decimal(0)
        self._min: Any = None
        self._max: Any = None
        self._any = False
        self._all = True

    def feed(self, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
        c = self.condition
        if c.column is not None and self._index is None:
            if c.column not in columns:
                raise AlertError(
                    f"condition column {c.column!r} is not in the result "
                    f"(columns: {', '.join(columns)})"
                )
            self._index = list(columns).index(c.column)
        batch = rows if isinstance(rows, Sequence) else list(rows)
        self.rows += len(batch)
        index = self._index
        if index is None:
            return
        if c.kind != "aggregate":
            # Only what can still change the answer is compared: any_row until one holds,
            # all_rows until one does not.
            if (c.kind == "any_row" and self._any) or (c.kind == "all_rows" and not self._all):
                return
            for row in batch:
                holds = _holds(c.op, _comparable(row[index]), c.value)
                self._any = self._any or holds
                self._all = self._all and holds
            return
        fn = c.fn
        for row in batch:
            value = _comparable(row[index])
            if value is None:
                continue
            self._count += 1
            if fn == "sum":
                if isinstance(value, Decimal):
                    self._sum += value
            elif fn == "min":
                if self._min is None or _holds("<", value, self._min):
                    self._min = value
            elif fn == "max" and (self._max is None or _holds(">", value, self._max)):
                self._max = value

    def result(self) -> tuple[Any, bool]:
        """(the condition's value, whether it holds)."""
        c = self.condition
        if c.kind == "row_count":
            value: Any = self.rows
            return value, _holds(c.op, Decimal(self.rows), c.value)
        if c.kind == "aggregate":
            value = {"count": Decimal(self._count), "sum": self._sum}.get(c.fn or "")
            if c.fn == "min":
                value = self._min
            elif c.fn == "max":
                value = self._max
            return value, _holds(c.op, value, c.value)
        if c.kind == "any_row":
            return self._any, self._any
        holds = self._all and self.rows > 0
        return holds, holds


@dataclass(frozen=True, kw_only=True)
class Decision:
    deliver: bool
    reason: str
    resolved: bool = False
    """on_transition from true to false: one "resolved" notice goes out."""


def decide(
    alert: Alert,
    *,
    truth: bool | None,
    previous_truth: bool | None,
    file_sha256: str | None,
    previous_delivered_sha256: str | None,
) -> Decision:
    """Whether this run is delivered. `truth`: the condition's (None without one);
    `previous_truth`: the last evaluated run's (None: none yet, from the alert state);
    the hashes for on_change."""
    described = alert.condition.describe() if alert.condition is not None else "no condition"
    if alert.mode is Mode.ALWAYS:
        return Decision(deliver=True, reason="mode always")
    if alert.mode is Mode.ON_CHANGE:
        if previous_delivered_sha256 is None:
            return Decision(deliver=True, reason="on_change: no delivered run before")
        if file_sha256 == previous_delivered_sha256:
            return Decision(
                deliver=False, reason="on_change: same content as the previous delivered run"
            )
        return Decision(deliver=True, reason="on_change: the content changed")
    assert truth is not None, "when_true and on_transition need a condition"
    if alert.mode is Mode.WHEN_TRUE:
        if truth:
            return Decision(deliver=True, reason=f"when_true: {described} holds")
        return Decision(deliver=False, reason=f"when_true: {described} does not hold")
    if truth and not previous_truth:
        return Decision(deliver=True, reason=f"on_transition: {described} turned true")
    if not truth and previous_truth:
        return Decision(
            deliver=False, resolved=True, reason=f"on_transition: {described} turned false"
        )
    state = "still holds" if truth else "still does not hold"
    return Decision(deliver=False, reason=f"on_transition: {described} {state}")
