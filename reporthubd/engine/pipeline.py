"""One execution, from its RUNNING row to a terminal status (or RUNNING while deliveries retry).

Order (every step that can fail before connecting does so before connecting):
resolve parameters → write them back → pick and configure the writer → check the query's
placeholders against the values → render the file name → connect → stream rows into the file
within the timeout → empty-result policy → deliveries → final status.

Each failure becomes FAILED with a readable `error_message`; the timeout becomes TIMEOUT; a
cancellation (API, drain) becomes CANCELLED with its reason. The workspace directory of a run that
did not produce a file is removed.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import time
from collections.abc import AsyncGenerator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from reporthubd import domain, logs, metrics, templates
from reporthubd.connectors import base as connectors
from reporthubd.connectors import params
from reporthubd.deliverers.base import DeliveryJob, DeliveryReport, ProducedFile, run_key
from reporthubd.engine import naming, parameters
from reporthubd.formats import base as formats
from reporthubd.store import executions

if TYPE_CHECKING:
    from reporthubd.engine.engine import Engine

log = logs.get(__name__)

Status = domain.ExecutionStatus


class RunFailed(Exception):
    """A failure with the message the execution row shows."""


class MaxRowsExceeded(RunFailed):
    pass


@dataclass
class Progress:
    """What the CLI and the control plane can see of a run while it goes."""

    execution_id: str
    phase: str = "queued"
    rows: int = 0
    bytes: int = 0
    started: float | None = None
    fast_path: str | None = None

    def elapsed(self) -> float:
        return time.monotonic() - self.started if self.started is not None else 0.0


@dataclass
class Outcome:
    status: Status
    error_message: str | None = None
    row_count: int | None = None
    file: dict[str, Any] = field(default_factory=dict)


def utcnow() -> datetime:
    return datetime.now(UTC)


class Run:
    def __init__(
        self,
        engine: Engine,
        execution: domain.Execution,
        definitions: executions.RunDefinitions,
        progress: Progress,
        *,
        deliver: bool,
    ) -> None:
        self.engine = engine
        self.store = engine.store
        self.settings = engine.settings
        self.execution = execution
        self.defs = definitions
        self.config = definitions.config
        self.progress = progress
        self.deliver = deliver
        self.directory = Path(self.settings.execution.workspace) / execution.id
        self.log = log.bind(
            execution_id=execution.id,
            config_id=execution.config_id,
            schedule_id=execution.schedule_id,
            node_id=engine.node_id,
        )

    async def execute(self) -> Outcome:
        """Run and record the final status; CancelledError is recorded, then re-raised."""
        try:
            outcome = await self._produce()
        except asyncio.CancelledError:
            reason = self.engine.cancel_reason(self.execution.id)
            await asyncio.shield(self._discard())
            outcome = Outcome(Status.CANCELLED, error_message=reason, row_count=self.progress.rows)
            await asyncio.shield(self._record(outcome))
            raise
        except RunFailed as exc:
            await asyncio.shield(self._discard())
            outcome = Outcome(Status.FAILED, error_message=str(exc), row_count=self.progress.rows)
        except Exception as exc:  # a bug: recorded on the row, logged with its traceback
            self.log.exception("execution crashed")
            await asyncio.shield(self._discard())
            outcome = Outcome(
                Status.FAILED,
                error_message=f"internal error: {type(exc).__name__}: {exc}",
                row_count=self.progress.rows,
            )
        await asyncio.shield(self._record(outcome))
        return outcome

    async def _record(self, outcome: Outcome) -> None:
        values: dict[str, Any] = dict(outcome.file)
        if outcome.row_count is not None:
            values["row_count"] = outcome.row_count
        if outcome.status is not Status.RUNNING:
            values |= {
                "status": outcome.status,
                "finished_at": utcnow(),
                "error_message": outcome.error_message,
            }
        if values:
            await executions.update_execution(
                self.store,
                self.execution.id,
                only_if_status=(Status.RUNNING,),
                durable=True,
                **values,
            )
        self.progress.phase = "done"
        if outcome.status is not Status.RUNNING:
            metrics.EXECUTIONS.labels(outcome.status.value).inc()
            metrics.EXECUTION_SECONDS.observe(self.progress.elapsed())
        if outcome.file:
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

    async def _produce(self) -> Outcome:
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
        merged = parameters.merge(
            config.parameters,
            self.defs.schedule.parameters if self.defs.schedule else None,
            self.execution.parameters,
        )
        try:
            resolved = parameters.resolve(merged, variables)
        except templates.TemplateError as exc:
            raise RunFailed(str(exc)) from None
        await executions.update_execution(
            self.store, self.execution.id, durable=True, parameters=parameters.to_json(resolved)
        )

        options = dict(config.format_options)
        truncate = options.pop("truncate", False)
        if not isinstance(truncate, bool):
            raise RunFailed("format option 'truncate' must be true or false")
        context = formats.RenderContext(
            report_name=config.name,
            execution_id=self.execution.id,
            parameters=resolved,
            scheduled_for=self.execution.scheduled_for,
            generated_at=utcnow(),
        )
        try:
            # The first use imports the writer's library (reportlab...): off the loop.
            writer_cls = await asyncio.to_thread(formats.writer_class, config.output_format.value)
            writer = writer_cls(options, context)
        except formats.FormatError as exc:
            raise RunFailed(str(exc)) from None

        source = self.defs.datasource
        dialect = "mysql" if source.type is domain.DatasourceType.MYSQL else "standard"
        try:
            params.check(config.query_text, resolved, dialect=dialect)
        except params.ParameterError as exc:
            raise RunFailed(str(exc)) from None

        file_variables = self._file_variables(variables, resolved, writer.file_extension)
        try:
            file_name = naming.render(
                config.file_name_template, file_variables, extension=writer.file_extension
            )
        except templates.TemplateError as exc:
            raise RunFailed(str(exc)) from None

        try:
            # The first use imports the driver (an SDK may take a second): off the loop.
            connector_cls = await asyncio.to_thread(connectors.connector_class, source.type.value)
            connector = connector_cls(source)
        except connectors.ConnectorError as exc:
            raise RunFailed(str(exc)) from None

        await asyncio.to_thread(self.directory.mkdir, parents=True, exist_ok=True)
        path = self.directory / file_name
        timeout = config.timeout_seconds or self.settings.execution.query_timeout_seconds
        request = connectors.QueryRequest(
            sql=config.query_text,
            parameters=resolved,
            batch_size=self.settings.execution.batch_size,
            timeout_seconds=timeout,
            execution_id=self.execution.id,
        )
        try:
            async with asyncio.timeout(timeout) as deadline:
                written = await self._query(connector, writer, path, request, truncate)
        except TimeoutError:
            if not deadline.expired():
                raise RunFailed("the data source timed out") from None
            await self._discard()
            return Outcome(
                Status.TIMEOUT,
                error_message=(
                    f"the query ran longer than its timeout of {timeout:g} s and was stopped "
                    "on the server"
                ),
                row_count=self.progress.rows,
            )
        except (connectors.ConnectorError, formats.FormatError) as exc:
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

    def _file_variables(
        self, variables: Mapping[str, Any], resolved: Mapping[str, Any], extension: str
    ) -> dict[str, Any]:
        execution = self.execution
        out: dict[str, Any] = dict(variables)
        out |= {str(k): v for k, v in resolved.items() if str(k).isidentifier()}
        out |= {
            "parameters": dict(resolved),
            "report_name": self.config.name,
            "report_id": self.config.id,
            "config_id": self.config.id,
            "execution_id": execution.id,
            "schedule_id": execution.schedule_id,
            "trigger_type": execution.trigger_type.value,
            "date": variables["now"].date().isoformat(),
            "ext": extension,
            "extension": extension,
        }
        return out

    async def _query(
        self,
        connector: connectors.Connector,
        writer: formats.FormatWriter,
        path: Path,
        request: connectors.QueryRequest,
        truncate: bool,
    ) -> formats.WrittenFile:
        self.progress.phase = "connecting"
        await connector.open()
        self.progress.phase = "querying"
        written = await self._server_rendered(connector, writer, path, request, truncate)
        if written is None:
            written = await self._streamed(connector, writer, path, request, truncate)
        return written

    async def _server_rendered(
        self,
        connector: connectors.Connector,
        writer: formats.FormatWriter,
        path: Path,
        request: connectors.QueryRequest,
        truncate: bool,
    ) -> formats.WrittenFile | None:
        """The CSV fast path (PostgreSQL COPY, MySQL raw text) when the options allow it."""
        from reporthubd.formats.csv import CSVWriter

        stream_csv = getattr(connector, "stream_csv", None)
        if not isinstance(writer, CSVWriter) or stream_csv is None:
            return None
        spec = writer.server_csv()
        max_rows = self.config.max_rows
        if spec is None or (truncate and max_rows):
            return None
        limit = max_rows + 1 if max_rows else None
        opened = False
        try:
            async with stream_csv(request, spec, limit=limit) as rendered:
                if rendered is None:
                    return None
                await writer.open(path, rendered.columns)
                opened = True
                self.progress.phase = "writing"
                if hasattr(rendered, "copy_to"):
                    self.progress.fast_path = "postgresql-copy"

                    async def sink(data: bytes) -> None:
                        self.progress.bytes += len(data)
                        await writer.write_rendered(data, 0)

                    rows = await rendered.copy_to(sink)
                    await writer.write_rendered(b"", rows)
                    self.progress.rows = rows
                else:
                    self.progress.fast_path = "mysql-raw-text"
                    rows = 0
                    async with contextlib.aclosing(rendered.chunks()) as chunks:
                        async for data, count in chunks:
                            rows += count
                            self.progress.rows = rows
                            self.progress.bytes += len(data)
                            await writer.write_rendered(data, count)
                if max_rows and rows > max_rows:
                    raise MaxRowsExceeded(_too_many(max_rows))
            return await writer.close()
        except BaseException:
            if opened:
                await asyncio.shield(writer.abort())
            raise

    async def _streamed(
        self,
        connector: connectors.Connector,
        writer: formats.FormatWriter,
        path: Path,
        request: connectors.QueryRequest,
        truncate: bool,
    ) -> formats.WrittenFile:
        max_rows = self.config.max_rows
        opened = False
        count = 0
        try:
            async with connector.stream(request) as result:
                await writer.open(path, result.columns)
                opened = True
                self.progress.phase = "writing"
                cut = False
                async with contextlib.aclosing(_batches(result)) as batches:
                    async for batch in batches:
                        if max_rows and count + len(batch) > max_rows:
                            if not truncate:
                                raise MaxRowsExceeded(_too_many(max_rows))
                            batch = batch[: max_rows - count]
                            cut = True
                        if batch:
                            await writer.write_batch(batch)
                        count += len(batch)
                        self.progress.rows = count
                        if cut:
                            break
                if cut:
                    await writer.note_truncated(max_rows or 0)
            return await writer.close()
        except BaseException:
            if opened:
                await asyncio.shield(writer.abort())
            raise

    async def _finish(
        self, written: formats.WrittenFile, file_name: str, variables: dict[str, Any]
    ) -> Outcome:
        config = self.config
        deliveries = self.defs.deliveries if self.deliver else ()
        variables = {k: v for k, v in variables.items() if not callable(v) and not _is_undefined(v)}
        variables |= {"row_count": written.rows, "file_name": file_name}
        if written.rows == 0 and config.empty_result_policy is domain.EmptyResultPolicy.SKIP:
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
                        skip_reason="the result is empty and empty_result_policy is skip",
                    )
                )
            return Outcome(Status.COMPLETED, row_count=0)

        file_columns = {
            "file_name": file_name,
            "file_path": str(written.path),
            "file_size": written.size,
            "file_sha256": written.sha256,
            "row_count": written.rows,
        }
        # Delivery or recipient rows left out as invalid count as failed deliveries: a report
        # set to be delivered must not finish COMPLETED with nothing recorded about them.
        left_out = self.defs.problems if self.deliver else ()
        if not deliveries:
            if left_out:
                return Outcome(
                    Status.FAILED,
                    error_message=_left_out_message(left_out, delivered=0),
                    row_count=written.rows,
                    file=file_columns,
                )
            return Outcome(Status.COMPLETED, row_count=written.rows, file=file_columns)
        await executions.update_execution(
            self.store,
            self.execution.id,
            only_if_status=(Status.RUNNING,),
            durable=True,
            **file_columns,
        )
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
            )
        )
        if report is None:
            return Outcome(
                Status.FAILED,
                error_message="the deliveries could not be run (see the daemon log)",
                row_count=written.rows,
                file=file_columns,
            )
        if report.pending:
            # The delivery ledger settles the final status once the retries are done.
            return Outcome(Status.RUNNING, row_count=written.rows, file=file_columns)
        if report.failed:
            total = report.failed + report.delivered
            message = f"{report.failed} of {total} deliveries failed (see report_delivery_logs)"
            if left_out:
                message += "; " + _left_out_message(left_out, delivered=report.delivered)
            status = Status.PARTIAL if report.delivered else Status.FAILED
            return Outcome(status, error_message=message, row_count=written.rows, file=file_columns)
        if left_out:
            status = Status.PARTIAL if report.delivered else Status.FAILED
            message = _left_out_message(left_out, delivered=report.delivered)
            return Outcome(status, error_message=message, row_count=written.rows, file=file_columns)
        return Outcome(Status.COMPLETED, row_count=written.rows, file=file_columns)

    async def _deliver(self, job: DeliveryJob) -> DeliveryReport | None:
        try:
            return await self.engine.deliveries.run(job)
        except Exception:
            self.log.exception("delivery runner failed")
            return None


def _too_many(max_rows: int) -> str:
    return (
        f"the result has more than max_rows ({max_rows}) rows; raise max_rows, or set the "
        'format option "truncate": true to cut it instead'
    )


def _is_undefined(value: Any) -> bool:
    import jinja2

    return isinstance(value, jinja2.Undefined)


async def _batches(result: connectors.QueryResult) -> AsyncGenerator[list[connectors.Row], None]:
    async for batch in result.batches():
        yield batch


def _left_out_message(problems: Sequence[str], *, delivered: int) -> str:
    first = problems[0] if len(problems[0]) <= 300 else problems[0][:300] + "…"
    return (
        f"{len(problems)} invalid delivery or recipient row(s) left out ({delivered} "
        f"delivered): {first}"
    )
