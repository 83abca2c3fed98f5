"""One execution, from its RUNNING row to a terminal status (or RUNNING while deliveries retry).

Order (every step that can fail before connecting does so before connecting):
resolve parameters → write them back → pick and configure the writer → check the query's
placeholders against the values → render the file name → connect → stream rows into the file
within the timeout → empty-result policy → deliveries → final status.

Each failure becomes FAILED with a readable `error_message`; the timeout becomes TIMEOUT; a
cancellation (API, drain) becomes CANCELLED with its reason. The workspace directory of a run that
did not produce a file is removed. Every status is written through the lifecycle
(lifecycle/executions.py).

Fencing: the file becomes the run's (its columns recorded, its deliveries started) by a write
conditional on the run being RUNNING and this node's, and each delivery attempt is confirmed
first (lifecycle/fencing.py). A run found lost (another node marked it FAILED "node lost" while
this node was frozen) stops there: it records nothing, delivers nothing, removes its file.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import shutil
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from reporthubd import alert_rules, domain, logs, metrics, templates
from reporthubd.config import Settings
from reporthubd.connectors import base as connectors
from reporthubd.connectors import params
from reporthubd.deliverers import templating
from reporthubd.deliverers.base import (
    DeliveryJob,
    DeliveryReport,
    DeliveryRunner,
    ProducedFile,
    run_key,
)
from reporthubd.domain import OwnershipLost
from reporthubd.engine import alerting, naming, parameters, sections, splitting, streaming
from reporthubd.engine.plugin_classes import plugin_class
from reporthubd.engine.pool import Slot
from reporthubd.engine.streaming import Progress
from reporthubd.formats import base as formats
from reporthubd.formats import capture, workbook
from reporthubd.lifecycle.executions import Lifecycle
from reporthubd.store import executions
from reporthubd.store.database import Store
from reporthubd.timeutil import utcnow

log = logs.get(__name__)

Status = domain.ExecutionStatus


class RunFailed(Exception):
    """A failure with the message the execution row shows."""


@dataclass
class RunOutcome:
    status: Status
    error_message: str | None = None
    row_count: int | None = None
    file: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class RunContext:
    """What a run needs of the engine that runs it."""

    settings: Settings
    store: Store
    node_id: str
    lifecycle: Lifecycle
    deliveries: DeliveryRunner
    cancel_reason: Callable[[str], str]


class Run:
    def __init__(
        self,
        context: RunContext,
        execution: domain.Execution,
        definitions: executions.RunDefinitions,
        progress: Progress,
        *,
        deliver: bool,
        slot: Slot | None = None,
    ) -> None:
        self.context = context
        self.slot = slot  # the pool slot held: a sheet on another datasource moves it there
        self.lifecycle = context.lifecycle
        self.store = context.store
        self.settings = context.settings
        self.execution = execution
        self.defs = definitions
        self.config = definitions.config
        self.progress = progress
        self.deliver = deliver
        self.alert: alert_rules.Alert | None = None
        self.evaluator: alert_rules.Evaluator | None = None
        self.judged: alerting.Judged | None = None
        self.directory = Path(self.settings.execution.workspace) / execution.id
        self.log = log.bind(
            execution_id=execution.id,
            config_id=execution.config_id,
            schedule_id=execution.schedule_id,
            node_id=context.node_id,
        )

    async def execute(self) -> RunOutcome | None:
        """Run and record the final status; CancelledError is recorded, then re-raised.
        Returns None for a run this node found it no longer owns (nothing recorded)."""
        ownership = self.lifecycle.ownership
        try:
            outcome = await self._produce()
        except asyncio.CancelledError:
            await asyncio.shield(self._discard())
            if ownership.was_lost(self.execution.id):
                self._log_lost("stopped by a revalidation")
                raise
            reason = self.context.cancel_reason(self.execution.id)
            outcome = RunOutcome(
                Status.CANCELLED, error_message=reason, row_count=self.progress.rows
            )
            await asyncio.shield(self._record(outcome))
            raise
        except OwnershipLost as exc:
            await asyncio.shield(self._discard())
            self._log_lost(str(exc))
            return None
        except RunFailed as exc:
            await asyncio.shield(self._discard())
            outcome = RunOutcome(
                Status.FAILED, error_message=str(exc), row_count=self.progress.rows
            )
        except Exception as exc:  # a bug: recorded on the row, logged with its traceback
            self.log.exception("execution crashed")
            await asyncio.shield(self._discard())
            outcome = RunOutcome(
                Status.FAILED,
                error_message=f"internal error: {type(exc).__name__}: {exc}",
                row_count=self.progress.rows,
            )
        await asyncio.shield(self._record(outcome))
        return outcome

    def _log_lost(self, reason: str) -> None:
        self.progress.phase = "lost"
        self.log.warning(
            "execution lost by this node: stopped without recording or delivering",
            reason=reason,
            rows=self.progress.rows,
        )

    async def _record(self, outcome: RunOutcome) -> None:
        if outcome.status is Status.RUNNING:
            # Deliveries retry: the ledger settles the final status later.
            columns = dict(outcome.file)
            if outcome.row_count is not None:
                columns["row_count"] = outcome.row_count
            written = await self.lifecycle.record(self.execution, **columns) if columns else True
        else:
            written = await self.lifecycle.finish(
                self.execution,
                outcome.status,
                error=outcome.error_message,
                row_count=outcome.row_count,
                file=outcome.file,
            )
        if not written:
            self.log.warning(
                "execution outcome not recorded: the run is no longer this node's",
                status=outcome.status.value,
            )
            if outcome.file and outcome.status is not Status.RUNNING:
                await self._discard()  # not the run's file: its final status was the fence
        self.progress.phase = "done"
        if outcome.status is not Status.RUNNING:
            metrics.EXECUTION_SECONDS.observe(self.progress.elapsed())
        if outcome.file and written:
            metrics.ROWS_WRITTEN.inc(outcome.row_count or 0)
            metrics.BYTES_WRITTEN.inc(int(outcome.file.get("file_size") or 0))
        self.log.info(
            "execution finished",
            status=outcome.status.value,
            rows=outcome.row_count,
            seconds=round(self.progress.elapsed(), 3),
            fast_path=self.progress.fast_path,
            error=outcome.error_message,
        )

    async def _discard(self) -> None:
        with contextlib.suppress(OSError):
            await asyncio.to_thread(shutil.rmtree, self.directory, True)

    # -- the steps ------------------------------------------------------------------------------

    def _zone(self) -> ZoneInfo:
        return ZoneInfo(self.settings.scheduler.timezone)

    async def _produce(self) -> RunOutcome:
        config = self.config
        base = parameters.time_base(
            scheduled_for=self.execution.scheduled_for,
            created_at=self.execution.created_at,
            schedule=self.defs.schedule,
            default_zone=self._zone(),
            now=utcnow(),
        )
        variables = templates.time_variables(
            base.logical_time,
            base.zone,
            window_start=base.window_start,
            window_end=base.window_end,
        )
        variables.update(
            parameters.business_day_variables(self.defs.schedule, base.logical_time, base.zone)
        )
        merged = parameters.merge(
            config.parameters,
            self.defs.schedule.parameters if self.defs.schedule else None,
            self.execution.parameters,
        )
        try:
            resolved = parameters.resolve(merged, variables)
        except templates.TemplateError as exc:
            raise RunFailed(str(exc)) from None
        as_json = parameters.to_json(resolved)
        # A burst's child was claimed with them, even {} (store/audiences.py); a NULL becomes {}.
        child = self.execution.trigger_type is domain.TriggerType.AUDIENCE
        if as_json != dict(self.execution.parameters) or not (as_json or child):
            await self.lifecycle.record(self.execution, parameters=as_json)

        options = dict(config.format_options)
        truncate = options.pop("truncate", False)
        if not isinstance(truncate, bool):
            raise RunFailed("format option 'truncate' must be true or false")
        try:  # a workbook's further sheets (formats.workbook, engine.sections)
            plan = workbook.split(config.output_format.value, options)
        except formats.FormatError as exc:
            raise RunFailed(str(exc)) from None
        context = formats.RenderContext(
            report_name=config.name,
            execution_id=self.execution.id,
            parameters=resolved,
            scheduled_for=self.execution.scheduled_for,
            generated_at=utcnow(),
        )
        try:
            # The first use imports the writer's library (reportlab...): off the loop.
            writer_cls = await plugin_class(formats.writer_class, config.output_format.value)
            # The email's preview rows and the chart are captured while the rows stream.
            writer: formats.FormatWriter = capture.wrap(writer_cls(options, context), options)
        except formats.FormatError as exc:
            raise RunFailed(str(exc)) from None
        try:
            # The alert's condition is evaluated while the rows stream (engine/alerting.py).
            self.alert = alerting.alert_of(config) if self.deliver else None
        except alert_rules.AlertError as exc:
            raise RunFailed(str(exc)) from None
        if self.alert is not None and self.alert.condition is not None:
            self.evaluator = alert_rules.Evaluator(self.alert.condition)
            if self.alert.check_query is None:
                writer = alerting.AlertingWriter(writer, self.evaluator)

        source = self.defs.datasource
        dialect = "mysql" if source.type is domain.DatasourceType.MYSQL else "standard"
        try:
            params.check(config.query_text, resolved, dialect=dialect)
            prepared = await sections.prepare(self.store, plan, source, resolved) if plan else []
        except params.ParameterError as exc:
            raise RunFailed(str(exc)) from None
        except sections.SectionError as exc:
            raise RunFailed(str(exc)) from None

        file_variables = naming.variables(
            variables, resolved, self.execution, self.config, extension=writer.file_extension
        )
        try:
            file_name = naming.render(
                config.file_name_template, file_variables, extension=writer.file_extension
            )
        except templates.TemplateError as exc:
            raise RunFailed(str(exc)) from None

        try:
            # The first use imports the driver (an SDK may take a second): off the loop.
            connector_cls = await plugin_class(connectors.connector_class, source.type.value)
            connector = splitting.rows_for(connector_cls(source), self.defs, self.directory.parent)
        except connectors.ConnectorError as exc:
            raise RunFailed(str(exc)) from None

        timeout = config.timeout_seconds or self.settings.execution.query_timeout_seconds
        if self.alert is not None and self.alert.check_query and self.evaluator is not None:
            checked = await self._check(connector_cls(source), resolved, timeout, file_variables)
            if checked is not None:
                return checked
        await asyncio.to_thread(self.directory.mkdir, parents=True, exist_ok=True)
        path = self.directory / file_name
        request = connectors.QueryRequest(
            sql=config.query_text,
            parameters=resolved,
            batch_size=self.settings.execution.batch_size,
            timeout_seconds=timeout,
            execution_id=self.execution.id,
        )
        try:
            async with asyncio.timeout(timeout) as deadline:
                if plan is not None:
                    written = await sections.write_all(
                        connector,
                        writer,
                        path,
                        request,
                        plan,
                        prepared,
                        max_rows=config.max_rows,
                        truncate=truncate,
                        progress=self.progress,
                        use=self._use,
                    )
                else:
                    written = await streaming.write_result(
                        connector,
                        writer,
                        path,
                        request,
                        max_rows=config.max_rows,
                        truncate=truncate,
                        progress=self.progress,
                    )
        except TimeoutError:
            if not deadline.expired():
                raise RunFailed("the data source timed out") from None
            await self._discard()
            return RunOutcome(
                Status.TIMEOUT,
                error_message=(
                    f"the query ran longer than its timeout of {timeout:g} s and was stopped "
                    "on the server"
                ),
                row_count=self.progress.rows,
            )
        except (
            connectors.ConnectorError,
            formats.FormatError,
            streaming.MaxRowsExceeded,
            alert_rules.AlertError,
        ) as exc:
            raise RunFailed(str(exc)) from None
        except OSError as exc:
            raise RunFailed(f"cannot write the file: {exc}") from None
        finally:
            # Outside the timeout: a close that lingers (asyncpg waits for the server to end the
            # connection; each connector bounds its close) cannot turn a result that has fully
            # arrived into TIMEOUT.
            with contextlib.suppress(Exception):
                await asyncio.shield(connector.close())

        return await self._finish(written, file_name, file_variables)

    async def _finish(
        self, written: formats.WrittenFile, file_name: str, variables: dict[str, Any]
    ) -> RunOutcome:
        # The file becomes the run's only while this node owns the run: the write that says so
        # (final status, or the file's record before deliveries) is fenced, and is the check;
        # an alert's state and deliveries recorded SKIPPED are confirmed first.
        config = self.config
        deliveries = self.defs.deliveries if self.deliver else ()
        skip_empty = (
            written.rows == 0 and config.empty_result_policy is domain.EmptyResultPolicy.SKIP
        )
        if self.alert is not None or (deliveries and skip_empty):
            await self.lifecycle.ownership.confirm(self.execution.id, what="recording the file")
        variables = {k: v for k, v in variables.items() if not callable(v) and not _is_undefined(v)}
        stem, ext = templating.split_file_name(file_name)
        variables |= {
            "row_count": written.rows,
            "file_name": file_name,
            "file_stem": stem,
            "file_ext": ext,
        }
        file_columns = {
            "file_name": file_name,
            "file_path": str(written.path),
            "file_size": written.size,
            "file_sha256": written.sha256,
            "row_count": written.rows,
        }
        if self.alert is not None:
            if self.judged is None:
                self.judged = await alerting.judge(
                    self.store, config.id, self.alert, self.evaluator, file_sha256=written.sha256
                )
            # The delivered file's hash moves only once a delivery took it (below).
            await self._settle(self.judged, written.sha256)
            if not self.judged.decision.deliver:
                await self._skip(deliveries, variables, self.judged)
                return RunOutcome(Status.COMPLETED, row_count=written.rows, file=file_columns)
        if skip_empty:
            await self._discard()
            if deliveries:
                self.progress.phase = "delivering"
                await self._deliver(
                    DeliveryJob(
                        execution_id=self.execution.id,
                        run_key=run_key(self.execution),
                        config=config,
                        deliveries=deliveries,
                        file=None,
                        variables=variables,
                        skip_reason=splitting.empty_reason(self.defs),
                        fence=self._fence,
                    )
                )
            return RunOutcome(Status.COMPLETED, row_count=0)

        # Delivery or recipient rows left out as invalid count as failed deliveries: a report
        # set to be delivered must not finish COMPLETED with nothing recorded about them.
        left_out = self.defs.problems if self.deliver else ()
        if not deliveries:
            if left_out:
                return RunOutcome(
                    Status.FAILED,
                    error_message=_left_out_message(left_out, delivered=0),
                    row_count=written.rows,
                    file=file_columns,
                )
            return RunOutcome(Status.COMPLETED, row_count=written.rows, file=file_columns)
        if not await self.lifecycle.record(self.execution, heartbeat_at=utcnow(), **file_columns):
            raise self.lifecycle.ownership.refused(self.execution.id, "recording the file")
        self.progress.phase = "delivering"
        produced = ProducedFile(
            path=written.path,
            name=file_name,
            size=written.size,
            sha256=written.sha256,
            media_type=written.media_type,
            row_count=written.rows,
        )
        report = await self._deliver(
            DeliveryJob(
                execution_id=self.execution.id,
                run_key=run_key(self.execution),
                config=config,
                deliveries=deliveries,
                file=produced,
                variables=variables,
                fence=self._fence,
            )
        )
        took = report is not None and bool(report.delivered or report.pending)
        await alerting.delivered(
            self.store, config.id, self.execution.id, self.judged, took=took, sha=written.sha256
        )
        if report is None:
            return RunOutcome(
                Status.FAILED,
                error_message="the deliveries could not be run (see the daemon log)",
                row_count=written.rows,
                file=file_columns,
            )
        if report.pending:
            # The delivery ledger settles the final status once the retries are done.
            return RunOutcome(Status.RUNNING, row_count=written.rows, file=file_columns)
        if report.failed:
            total = report.failed + report.delivered
            message = f"{report.failed} of {total} deliveries failed (see report_delivery_logs)"
            if left_out:
                message += "; " + _left_out_message(left_out, delivered=report.delivered)
            status = Status.PARTIAL if report.delivered else Status.FAILED
            return RunOutcome(
                status, error_message=message, row_count=written.rows, file=file_columns
            )
        if left_out:
            status = Status.PARTIAL if report.delivered else Status.FAILED
            message = _left_out_message(left_out, delivered=report.delivered)
            return RunOutcome(
                status, error_message=message, row_count=written.rows, file=file_columns
            )
        return RunOutcome(Status.COMPLETED, row_count=written.rows, file=file_columns)

    async def _check(
        self,
        connector: connectors.Connector,
        resolved: Mapping[str, Any],
        seconds: float,
        variables: dict[str, Any],
    ) -> RunOutcome | None:
        """The alert's check_query before the report: None to run the report, else the outcome
        of a run not sent (COMPLETED, its deliveries SKIPPED with the reason)."""
        assert self.alert is not None and self.alert.check_query and self.evaluator is not None
        self.progress.phase = "checking"
        try:
            await alerting.check_first(
                connector,
                self.alert.check_query,
                self.evaluator,
                resolved,
                mysql=self.defs.datasource.type is domain.DatasourceType.MYSQL,
                batch_size=self.settings.execution.batch_size,
                seconds=seconds,
                execution_id=self.execution.id,
            )
        except alert_rules.AlertError as exc:
            raise RunFailed(str(exc)) from None
        judged = await alerting.judge(
            self.store, self.config.id, self.alert, self.evaluator, file_sha256=None
        )
        if alerting.needs_file(self.alert):
            return None  # on_change decides on the file: judged after the report ran
        self.judged = judged
        if judged.decision.deliver:
            return None
        await self.lifecycle.ownership.confirm(self.execution.id, what="recording the alert")
        await self._settle(judged, None)
        if self.judged.decision.deliver:
            return None  # another run moved the state meanwhile: judged again, this one is sent
        variables = {k: v for k, v in variables.items() if not callable(v) and not _is_undefined(v)}
        deliveries = self.defs.deliveries if self.deliver else ()
        await self._skip(deliveries, variables, judged)
        return RunOutcome(Status.COMPLETED, row_count=0)

    async def _settle(self, judged: alerting.Judged, file_sha256: str | None) -> None:
        """The decision on the execution, then the report's alert state (while this node owns
        the run: the caller confirmed it), judged again if another run moved the state."""
        assert self.alert is not None
        record = functools.partial(self.lifecycle.record, self.execution)
        settled = await alerting.settle(
            self.store, self.config.id, self.execution.id, self.alert, self.evaluator, judged,
            file_sha256=file_sha256, record=record,
        )  # fmt: skip
        d = self.judged = settled or judged
        self.log.info("alert decided", decision=d.label, value=d.value, reason=d.decision.reason)

    async def _skip(
        self,
        deliveries: Sequence[domain.Delivery],
        variables: dict[str, Any],
        judged: alerting.Judged,
    ) -> None:
        """A run the alert does not send: each delivery recorded SKIPPED with the reason."""
        if not deliveries:
            return
        self.progress.phase = "delivering"
        await self._deliver(
            DeliveryJob(
                execution_id=self.execution.id,
                run_key=run_key(self.execution),
                config=self.config,
                deliveries=deliveries,
                file=None,
                variables=variables,
                skip_reason=f"not sent: {judged.decision.reason}",
                fence=self._fence,
            )
        )

    async def _use(self, datasource: domain.Datasource) -> None:
        if self.slot is not None:  # a sheet's query, under its own datasource's limit
            await self.slot.move(f"datasource-{datasource.id}", datasource.max_concurrent_queries)

    async def _fence(self, what: str) -> None:
        await self.lifecycle.ownership.confirm(self.execution.id, what=what)

    async def _deliver(self, job: DeliveryJob) -> DeliveryReport | None:
        try:
            return await self.context.deliveries.run(job)
        except OwnershipLost:
            raise
        except Exception:
            self.log.exception("delivery runner failed")
            return None


def _is_undefined(value: Any) -> bool:
    import jinja2

    return isinstance(value, jinja2.Undefined)


def _left_out_message(problems: Sequence[str], *, delivered: int) -> str:
    first = problems[0] if len(problems[0]) <= 300 else problems[0][:300] + "…"
    return (
        f"{len(problems)} invalid delivery or recipient row(s) left out ({delivered} "
        f"delivered): {first}"
    )
