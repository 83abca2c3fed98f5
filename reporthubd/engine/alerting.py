"""Conditional alerts in a run (issue 17, item 2; the rules: reporthubd/alert_rules.py).

- `AlertingWriter` puts the condition's `Evaluator` around the run's writer: each batch is fed to
  it as it streams to the file (no second query, no row kept). With a row_count condition the
  CSV fast path stays (its chunks carry their row counts); any other condition needs the rows.
- `check` runs a report's `check_query` (cheap, before the expensive report) on its datasource
  and evaluates the condition over its rows.
- `judge` decides from the report's alert state in the store (store/alerts.py), and `settle`
  records the value and decision on the execution and moves the state; the pipeline calls it only
  while this node owns the run.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping, Sequence
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
    return Judged(decision=decision, value=_text(value), truth=truth)


def columns(judged: Judged) -> Mapping[str, Any]:
    """The execution's columns that record the decision."""
    return {
        "alert_value": judged.value,
        "alert_decision": judged.label,
        "alert_reason": judged.decision.reason[:1000],
    }


async def settle(
    store: Store, config_id: int, execution_id: str, judged: Judged, *, file_sha256: str | None
) -> None:
    """Move the report's alert state after a run this node owns and recorded."""
    await alerts.save(
        store,
        config_id,
        execution_id=execution_id,
        truth=judged.truth,
        delivered_sha256=file_sha256 if judged.decision.deliver else None,
    )


def needs_file(alert: Alert) -> bool:
    """on_change decides on the file's hash: a check query cannot decide it before the run."""
    return alert.mode is Mode.ON_CHANGE
