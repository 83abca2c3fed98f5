"""Google BigQuery through google-cloud-bigquery (a synchronous SDK, run in worker threads).

`connection_config`: `project` (required), `location`, `credentials_file` or `credentials_json`
(a secret: inline, {"env"} or {"file"}) or neither for the default credential chain,
`maximum_bytes_billed` (a guard: the job fails instead of billing more). `options`:
`connect_timeout_seconds`, `api_endpoint` (private endpoints, emulators), `anonymous` (no
credentials, for emulators only), `read_only_check` (default true), `labels` (object).

Each stream runs one query job with typed `@name` parameters; the SDK's pages (`page_size` = the
batch size) are converted in the worker thread and handed over through a bounded queue, so the
event loop never blocks and at most two pages are in memory. Before the job, a dry run checks that
the statement is a SELECT (BigQuery has no read-only session) and that it fits under
`maximum_bytes_billed`. Cancellation (timeout or user) cancels the job on the server
(`jobs.cancel`); the request's timeout is also set as the job's `job_timeout_ms`.
`test()` is a dry run (BigQuery has no server version).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import time
import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from datetime import date, datetime
from datetime import time as time_of_day
from decimal import Decimal
from typing import Any

from google.api_core import exceptions as google_errors
from google.api_core.client_options import ClientOptions
from google.api_core.retry import Retry
from google.auth import exceptions as google_auth_errors
from google.cloud import bigquery

from reporthubd.connectors import common, params
from reporthubd.connectors.base import (
    Column,
    ColumnKind,
    Connector,
    ConnectorError,
    QueryRequest,
    QueryResult,
    TestResult,
)

READ_STATEMENTS = frozenset({"SELECT"})
_KINDS: Mapping[str, ColumnKind] = {
    "INTEGER": ColumnKind.INTEGER,
    "INT64": ColumnKind.INTEGER,
    "NUMERIC": ColumnKind.DECIMAL,
    "BIGNUMERIC": ColumnKind.DECIMAL,
    "FLOAT": ColumnKind.FLOAT,
    "FLOAT64": ColumnKind.FLOAT,
    "BOOLEAN": ColumnKind.BOOLEAN,
    "BOOL": ColumnKind.BOOLEAN,
    "DATE": ColumnKind.DATE,
    "DATETIME": ColumnKind.DATETIME,
    "TIMESTAMP": ColumnKind.DATETIME_TZ,
    "TIME": ColumnKind.TIME,
    "STRING": ColumnKind.TEXT,
    "GEOGRAPHY": ColumnKind.TEXT,
    "BYTES": ColumnKind.BINARY,
    "JSON": ColumnKind.JSON,
    "RECORD": ColumnKind.JSON,
    "STRUCT": ColumnKind.JSON,
}
_ERRORS = (google_errors.GoogleAPIError, google_auth_errors.GoogleAuthError, OSError, ValueError)


def column_of(field: Any) -> Column:
    if field.mode == "REPEATED":
        kind = ColumnKind.JSON
        source = f"ARRAY<{field.field_type}>"
    else:
        kind = _KINDS.get(str(field.field_type).upper(), ColumnKind.OTHER)
        source = str(field.field_type)
    return Column(
        name=field.name,
        kind=kind,
        source_type=source,
        precision=field.precision,
        scale=field.scale,
    )


def query_parameter(name: str, value: Any) -> Any:
    """A typed BigQuery parameter for a Python value."""
    if isinstance(value, list | tuple):
        element = next((v for v in value if v is not None), None)
        kind = _scalar_type(element) if element is not None else "STRING"
        return bigquery.ArrayQueryParameter(name, kind, [_scalar_value(v) for v in value])
    return bigquery.ScalarQueryParameter(name, _scalar_type(value), _scalar_value(value))


def _scalar_type(value: Any) -> str:
    if value is None or isinstance(value, str):
        return "STRING"
    if isinstance(value, bool):
        return "BOOL"
    if isinstance(value, int):
        return "INT64"
    if isinstance(value, float):
        return "FLOAT64"
    if isinstance(value, Decimal):
        _sign, digits, exponent = value.as_tuple()
        scale = max(0, -int(exponent))
        whole = len(digits) - scale
        return "NUMERIC" if scale <= 9 and whole <= 29 else "BIGNUMERIC"
    if isinstance(value, bytes | bytearray):
        return "BYTES"
    if isinstance(value, datetime):
        return "TIMESTAMP" if value.tzinfo else "DATETIME"
    if isinstance(value, date):
        return "DATE"
    if isinstance(value, time_of_day):
        return "TIME"
    if isinstance(value, Mapping):
        return "JSON"
    raise ConnectorError(f"cannot bind a {type(value).__name__} as a BigQuery parameter")


def _scalar_value(value: Any) -> Any:
    if isinstance(value, Mapping):
        return json.dumps(value)
    if isinstance(value, bytearray):
        return bytes(value)
    return value


def _message(exc: BaseException) -> str:
    message = getattr(exc, "message", None)
    return str(message) if message else str(exc)


class BigQueryConnector(Connector):
    _client: bigquery.Client | None = None

    def _settings(self) -> None:
        ds = self.datasource
        self._project = common.setting(ds, "project")
        if not self._project:
            raise common.config_error(ds, "project is required")
        self._location: str | None = common.setting(ds, "location")
        self._where = f"project {self._project}" + (
            f", location {self._location}" if self._location else ""
        )
        self._timeout = common.connect_timeout(ds)
        opts = common.options(ds)
        if opts.get("api_endpoint"):
            self._where += f", endpoint {opts['api_endpoint']}"
        self._read_only_check = bool(opts.get("read_only_check", True))
        self._labels = {str(k): str(v) for k, v in (opts.get("labels") or {}).items()}
        raw_limit = common.setting(ds, "maximum_bytes_billed")
        self._maximum_bytes_billed = int(raw_limit) if raw_limit is not None else None

    def _make_client(self) -> bigquery.Client:
        ds = self.datasource
        opts = common.options(ds)
        credentials: Any = None
        credentials_json = common.secret(ds, "credentials_json")
        credentials_file = common.setting(ds, "credentials_file")
        if opts.get("anonymous"):
            from google.auth.credentials import AnonymousCredentials

            credentials = AnonymousCredentials()  # type: ignore[no-untyped-call]
        elif credentials_json or credentials_file:
            from google.oauth2 import service_account

            if credentials_json:
                info = json.loads(credentials_json)
                credentials = service_account.Credentials.from_service_account_info(  # type: ignore[no-untyped-call]
                    info
                )
            else:
                credentials = service_account.Credentials.from_service_account_file(  # type: ignore[no-untyped-call]
                    str(credentials_file)
                )
        client_options = (
            ClientOptions(api_endpoint=str(opts["api_endpoint"]))
            if opts.get("api_endpoint")
            else None
        )
        return bigquery.Client(
            project=str(self._project),
            credentials=credentials,
            location=self._location,
            client_options=client_options,
        )

    def _retry(self) -> Retry:
        return bigquery.DEFAULT_RETRY.with_deadline(self._timeout).with_timeout(self._timeout)

    def _error(self, what: str, exc: BaseException | str) -> ConnectorError:
        detail = exc if isinstance(exc, str) else _message(exc)
        return common.failure(self.datasource, self._where, what, detail)

    async def open(self) -> None:
        self._settings()
        try:
            async with asyncio.timeout(self._timeout):
                self._client = await asyncio.to_thread(self._make_client)
                await asyncio.to_thread(self._dry_run, "SELECT 1", [])
        except TimeoutError:
            await self.close()
            raise self._error("cannot connect", f"no answer within {self._timeout:g} s") from None
        except (*_ERRORS, ConnectorError) as exc:
            await self.close()
            if isinstance(exc, ConnectorError) and "datasource" in str(exc):
                raise
            raise self._error("cannot connect", exc) from None

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await asyncio.to_thread(client.close)

    def _require(self) -> bigquery.Client:
        if self._client is None:
            raise ConnectorError(f"bigquery datasource {self.datasource.name!r} is not open")
        return self._client

    def _dry_run(self, sql: str, parameters: Sequence[Any]) -> Any:
        config = bigquery.QueryJobConfig(
            dry_run=True, use_query_cache=False, query_parameters=list(parameters)
        )
        return self._require().query(
            sql,
            job_config=config,
            location=self._location,
            timeout=self._timeout,
            retry=self._retry(),
            job_retry=None,
        )

    async def test(self) -> TestResult:
        started = time.perf_counter()
        try:
            await asyncio.to_thread(self._dry_run, "SELECT 1", [])
        except _ERRORS as exc:
            raise self._error("dry run failed", exc) from None
        return TestResult(
            ok=True,
            server_version=None,
            round_trip_ms=(time.perf_counter() - started) * 1000,
            message="dry run succeeded",
        )

    @asynccontextmanager
    async def stream(self, request: QueryRequest) -> AsyncIterator[QueryResult]:
        client = self._require()
        bound = params.bind(request.sql, request.parameters, "at", dialect="bigquery")
        parameters = [query_parameter(name, value) for name, value in bound.mapping.items()]
        job_id = f"reporthubd_{_label(request.execution_id or 'adhoc')}_{uuid.uuid4().hex}"
        labels = dict(self._labels)
        if request.execution_id:
            labels["reporthubd_execution"] = _label(request.execution_id)
        config = bigquery.QueryJobConfig(
            query_parameters=parameters,
            use_legacy_sql=False,
            labels=labels,
            maximum_bytes_billed=self._maximum_bytes_billed,
        )
        if request.timeout_seconds:
            config.job_timeout_ms = int(request.timeout_seconds * 1000)

        def produce(feed: common.ThreadFeed) -> None:
            if self._read_only_check:
                dry = self._dry_run(bound.sql, parameters)
                if dry.statement_type not in READ_STATEMENTS:
                    raise ConnectorError(
                        f"refused a {dry.statement_type} statement: reports are read-only"
                    )
                processed = dry.total_bytes_processed or 0
                if self._maximum_bytes_billed is not None and (
                    processed > self._maximum_bytes_billed
                ):
                    raise ConnectorError(
                        f"the query would process {processed} bytes, over "
                        f"maximum_bytes_billed {self._maximum_bytes_billed}"
                    )
            if feed.stopping:
                return
            job = client.query(
                bound.sql,
                job_config=config,
                job_id=job_id,
                location=self._location,
                timeout=self._timeout,
                retry=self._retry(),
                job_retry=None,
            )
            rows = job.result(page_size=request.batch_size)
            feed.put([column_of(field) for field in rows.schema])
            for page in rows.pages:
                feed.put([tuple(row.values()) for row in page])

        feed = common.ThreadFeed(f"bigquery-{job_id}", produce, translate=self._translate)
        async with common.feed_result(
            feed, on_abandon=lambda: self._cancel_job(client, job_id)
        ) as result:
            yield result

    def _translate(self, exc: BaseException) -> BaseException:
        if isinstance(exc, ConnectorError):
            return self._error("query refused", str(exc))
        if isinstance(exc, _ERRORS):
            return self._error("query failed", exc)
        return exc

    async def _cancel_job(self, client: bigquery.Client, job_id: str) -> None:
        def cancel() -> None:
            with contextlib.suppress(*_ERRORS):
                client.cancel_job(job_id, location=self._location, timeout=self._timeout)

        with contextlib.suppress(TimeoutError, asyncio.CancelledError):
            await asyncio.wait_for(
                asyncio.shield(asyncio.to_thread(cancel)), common.CANCEL_GRACE_SECONDS
            )


def _label(value: str) -> str:
    """BigQuery labels and job ids allow letters, digits, `_` and `-` (lower case for labels)."""
    return re.sub(r"[^a-z0-9_-]", "_", value.lower())[:63]
