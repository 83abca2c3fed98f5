"""Conditional alerts in a run (issue 17, item 2; the rules: reporthubd/alert_rules.py).

- `AlertingWriter` puts the condition's `Evaluator` around the run's writer: each batch is fed to
  it as it streams to the file (no second query, no row kept). With a row_count condition the
  CSV fast path stays (its chunks carry their row counts); any other condition needs the rows.
- `check` runs a report's `check_query` (cheap, before the expensive report) on its datasource
  and evaluates the condition over its rows.
- `judge` decides from the report's alert state in the store (store/alerts.py), and `settle`
  records the value and decision on the execution and moves the state; the pipeline calls it only
  while this node owns the run. The move is a compare-and-set on the state the run was judged
  on: when two runs of one report end at once (two nodes), the second to settle finds the state
  moved, judges again on the state as the first left it, and records that decision instead, so
  no transition is sent twice and none is lost.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

from reporthubd import alert_rules, domain
from reporthubd.alert_rules import Alert, AlertError, Decision, Evaluator, Mode
from reporthubd.connectors import base as connectors
from reporthubd.connectors import params
from reporthubd.connectors.base import Column, Row, ServerCSV
from reporthubd.formats.base import FormatWriter, WrittenFile
from reporthubd.store import alerts
from reporthubd.store.database import Store

DECIDED_DELIVER = "deliver"
DECIDED_SKIP = "skip"
DECIDED_RESOLVED = "resolved"
SETTLE_ATTEMPTS = 8
"""Judgements of one run while other runs keep moving the state under it (each loss means
another run settled in between)."""


def alert_of(config: domain.ReportConfig) -> Alert | None:
    """The report's alert, or AlertError naming the key."""
    raw = config.alert
    if raw is None:
        return None
    return alert_rules.parse_alert(raw, key="alert")


class AlertingWriter(FormatWriter):
    """A writer around a writer that feeds every batch to the condition's evaluator."""

    def __init__(self, inner: FormatWriter, evaluator: Evaluator) -> None:
        super().__init__(inner.options, inner.context)
        self.inner = inner
        self.evaluator = evaluator
        self.media_type = inner.media_type  # type: ignore[misc]
        self.extension = inner.extension  # type: ignore[misc]
        self._names: list[str] = []

    @property
    def file_extension(self) -> str:
        return self.inner.file_extension

    def server_csv(self) -> ServerCSV | None:
        if self.evaluator.condition.kind != "row_count":
            return None
        return self.inner.server_csv()

    async def open(self, path: Path, columns: Sequence[Column]) -> None:
        self._names = [c.name for c in columns]
        self.evaluator.feed(self._names, ())  # a missing column fails before any row
        await self.inner.open(path, columns)

    async def write_batch(self, rows: Sequence[Row]) -> None:
        self.evaluator.feed(self._names, rows)
        await self.inner.write_batch(rows)

    async def write_rendered(self, data: bytes, rows: int) -> None:
        self.evaluator.rows += rows
        await self.inner.write_rendered(data, rows)

    def attach_chart(self, chart: Any) -> None:
        self.inner.attach_chart(chart)

    async def note_truncated(self, max_rows: int) -> None:
        await self.inner.note_truncated(max_rows)

    async def close(self) -> WrittenFile:
        return await self.inner.close()

    async def abort(self) -> None:
        await self.inner.abort()


async def check(
    connector: connectors.Connector, request: connectors.QueryRequest, evaluator: Evaluator
) -> None:
    """The check query's rows through the evaluator (AlertError: its column is missing)."""
    try:
        await connector.open()
        async with connector.stream(request) as result:
            names = [c.name for c in result.columns]
            evaluator.feed(names, ())
            async for batch in result.batches():
                evaluator.feed(names, batch)
    finally:
        with contextlib.suppress(Exception):
            await connector.close()


async def check_first(
    connector: connectors.Connector,
    sql: str,
    evaluator: Evaluator,
    parameters: Mapping[str, Any],
    *,
    mysql: bool,
    batch_size: int,
    seconds: float,
    execution_id: str,
) -> None:
    """The report's check_query within `seconds`, its rows through the evaluator; AlertError
    with the message the run records otherwise (its placeholders, the source's error)."""
    try:
        params.check(sql, parameters, dialect="mysql" if mysql else "standard")
    except params.ParameterError as exc:
        raise AlertError(f"alert.check_query: {exc}") from None
    request = connectors.QueryRequest(
        sql=sql,
        parameters=parameters,
        batch_size=batch_size,
        timeout_seconds=seconds,
        execution_id=execution_id,
    )
    try:
        async with asyncio.timeout(seconds):
            await check(connector, request, evaluator)
    except TimeoutError:
        raise AlertError(f"alert.check_query ran longer than {seconds:g} s") from None
    except (connectors.ConnectorError, AlertError) as exc:
        raise AlertError(f"alert.check_query: {exc}") from None


@dataclass(frozen=True, kw_only=True)
class Judged:
    decision: Decision
    value: str | None
    truth: bool | None
    previous: str | None = None
    """The state it was judged on (its last_execution_id; None: no state yet)."""
    claims: str | None = None
    """on_change, to be sent: the file hash its transition records as delivered at once, so
    that a run ending meanwhile with the same content is not sent too (given back when no
    delivery took it: `delivered`)."""
    delivered_before: tuple[str | None, str | None] = (None, None)
    """The state's delivered (sha256, execution id) it was judged on."""

    @property
    def label(self) -> str:
        if self.decision.deliver:
            return DECIDED_DELIVER
        return DECIDED_RESOLVED if self.decision.resolved else DECIDED_SKIP


def _text(value: object) -> str | None:
    if value is None:
        return None
    if isinstance(value, Decimal):
        value = format(value.normalize(), "f") if value == value.to_integral() else str(value)
    return str(value)[:255]


async def judge(
    store: Store,
    config_id: int,
    alert: Alert,
    evaluator: Evaluator | None,
    *,
    file_sha256: str | None,
) -> Judged:
    state = await alerts.state(store, config_id)
    value: Any = None
    truth: bool | None = None
    if evaluator is not None:
        value, truth = evaluator.result()
    decision = alert_rules.decide(
        alert,
        truth=truth,
        previous_truth=state.last_truth,
        file_sha256=file_sha256,
        previous_delivered_sha256=state.delivered_sha256,
    )
    claims = file_sha256 if alert.mode is Mode.ON_CHANGE and decision.deliver else None
    return Judged(
        decision=decision,
        value=_text(value),
        truth=truth,
        previous=state.last_execution_id,
        claims=claims,
        delivered_before=(state.delivered_sha256, state.delivered_execution_id),
    )


def columns(judged: Judged) -> Mapping[str, Any]:
    """The execution's columns that record the decision."""
    return {
        "alert_value": judged.value,
        "alert_decision": judged.label,
        "alert_reason": judged.decision.reason[:1000],
    }


async def settle(
    store: Store,
    config_id: int,
    execution_id: str,
    alert: Alert,
    evaluator: Evaluator | None,
    judged: Judged,
    *,
    file_sha256: str | None,
    record: Callable[..., Awaitable[bool]],
) -> Judged | None:
    """Record `judged` on the execution (`record(**columns)`: the owner's conditional write;
    False when this node no longer owns the run: then None, nothing moved) and move the alert
    state from the state it was judged on. When another run moved it meanwhile, judge again
    (`file_sha256`: this run's file, for on_change) and repeat; returns the decision that
    holds."""
    for _ in range(SETTLE_ATTEMPTS):
        if not await record(**columns(judged)):
            return None
        if await alerts.transition(
            store,
            config_id,
            previous=judged.previous,
            execution_id=execution_id,
            truth=judged.truth,
            claim_sha256=judged.claims,
        ):
            return judged
        judged = await judge(store, config_id, alert, evaluator, file_sha256=file_sha256)
    raise RuntimeError(
        f"the alert state of report {config_id} kept moving under this run "
        f"({SETTLE_ATTEMPTS} attempts): not decided"
    )


async def delivered(
    store: Store, config_id: int, execution_id: str, judged: Judged | None, *, took: bool, sha: str
) -> None:
    """After the deliveries of a run judged to be sent: when a delivery took its file (sent,
    or a retry pending), on_change compares with that file from now on; when none did, the
    file its transition claimed is given back (the previous delivered one again, unless a run
    delivered since), so the next run with this content is sent again."""
    if judged is None or not judged.decision.deliver:
        return
    if took:
        await alerts.save_delivered(
            store, config_id, execution_id=execution_id, delivered_sha256=sha
        )
    elif judged.claims is not None:
        await alerts.release_delivered(
            store, config_id, execution_id=execution_id, previous=judged.delivered_before
        )


def needs_file(alert: Alert) -> bool:
    """on_change decides on the file's hash: a check query cannot decide it before the run."""
    return alert.mode is Mode.ON_CHANGE
