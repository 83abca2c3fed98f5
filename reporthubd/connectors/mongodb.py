"""MongoDB through pymongo's `AsyncMongoClient`.

A report's `query_text` is a JSON document, one of::

    {"collection": "orders", "pipeline": [{"$match": {"region": {"$param": "region"}}}, ...]}
    {"collection": "orders", "filter": {...}, "projection": {...}, "sort": {"placed_at": -1},
     "limit": 1000, "skip": 0}

`{"$param": "name"}` anywhere in the document is replaced by the parameter's value as a typed BSON
value (Decimal → Decimal128, date → midnight UTC datetime), never pasted into text; a name with
no value is an error naming it. Pipelines that write (`$out`, `$merge`, at any depth) are refused.

Rows: documents are flattened to dotted paths (`customer.address.city`); arrays (and empty
objects) become JSON text; ObjectId and UUID become strings, Decimal128 a Decimal, dates aware UTC
datetimes, binary data bytes.

Columns: the union of the keys seen in the first `options.sample_size` documents (default 1000),
in first-seen order; those documents are held back to build the header, then streamed. **A key
that first appears after the sample is not added** (the header has been written by then): its
values are dropped and the stream logs `mongodb.late_keys` once with the key names. Use a
`projection` or `$project` stage to fix the columns of documents whose shapes vary late.

Server work is bounded by `maxTimeMS` (from the request's timeout) and, on cancellation, the
cursor is closed (killCursors) and operations tagged with this stream's comment are killed
(`$currentOp` + `killOp`, where the user may run them).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets as token_source
import time
import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from bson import Binary, Decimal128, ObjectId, Regex, Timestamp
from bson.errors import InvalidDocument
from pymongo import AsyncMongoClient
from pymongo.errors import (
    ConfigurationError,
    ExecutionTimeout,
    InvalidURI,
    PyMongoError,
)
from pymongo.uri_parser import parse_uri

from reporthubd import logs
from reporthubd import secrets as app_secrets
from reporthubd.connectors import common
from reporthubd.connectors.base import (
    Column,
    ColumnKind,
    Connector,
    ConnectorError,
    QueryRequest,
    QueryResult,
    Row,
    TestResult,
)

log = logs.get(__name__)

DEFAULT_SAMPLE_SIZE = 1000
WRITE_STAGES = frozenset({"$out", "$merge"})


class MongoConnector(Connector):
    _client: AsyncMongoClient[dict[str, Any]] | None = None

    def _settings(self) -> tuple[str | None, str, dict[str, Any]]:
        """(uri, where, client keyword arguments) — `where` names hosts and database only."""
        ds = self.datasource
        config = ds.connection_config
        opts = common.options(ds)
        timeout_ms = int(common.connect_timeout(ds) * 1000)
        kwargs: dict[str, Any] = {
            "tz_aware": True,
            "tzinfo": UTC,
            "uuidRepresentation": "standard",
            "serverSelectionTimeoutMS": timeout_ms,
            "connectTimeoutMS": timeout_ms,
            "appname": str(opts.get("app_name", "reporthubd")),
        }
        uri = common.secret(ds, "uri")
        database = config.get("database")
        if uri:
            try:
                parsed = parse_uri(uri, validate=False)
            except (InvalidURI, ConfigurationError, ValueError) as exc:
                detail = app_secrets.redact_text(str(exc))
                raise common.config_error(ds, f"invalid uri: {detail}") from None
            hosts = ",".join(f"{h}:{p}" for h, p in parsed["nodelist"]) or "srv"
            database = database or parsed.get("database")
        else:
            host = str(config.get("host") or "127.0.0.1")
            port = int(config.get("port") or 27017)
            hosts = f"{host}:{port}"
            kwargs["host"] = host
            kwargs["port"] = port
            username = config.get("username")
            if username:
                kwargs["username"] = str(username)
                kwargs["password"] = common.secret(ds, "password")
                kwargs["authSource"] = str(opts.get("auth_source", database or "admin"))
        if not database:
            raise common.config_error(ds, "database is required (or give it in the uri)")
        self._database = str(database)
        # TLS and topology settings, passed through by their pymongo names.
        for key, name in (
            ("tls", "tls"),
            ("tls_ca_file", "tlsCAFile"),
            ("tls_certificate_key_file", "tlsCertificateKeyFile"),
            ("tls_allow_invalid_certificates", "tlsAllowInvalidCertificates"),
            ("tls_allow_invalid_hostnames", "tlsAllowInvalidHostnames"),
            ("direct_connection", "directConnection"),
            ("replica_set", "replicaSet"),
            ("read_preference", "readPreference"),
        ):
            if key in opts:
                kwargs[name] = opts[key]
        if "tls_certificate_key_file_password" in opts:
            try:
                kwargs["tlsCertificateKeyFilePassword"] = app_secrets.resolve(
                    opts["tls_certificate_key_file_password"], where="tls key password"
                )
            except app_secrets.SecretError as exc:
                raise ConnectorError(str(exc)) from None
        return uri, f"{hosts}/{database}", kwargs

    async def open(self) -> None:
        uri, self._where, kwargs = self._settings()
        timeout = kwargs["serverSelectionTimeoutMS"] / 1000
        try:
            self._client = AsyncMongoClient(uri, **kwargs) if uri else AsyncMongoClient(**kwargs)
            async with asyncio.timeout(timeout + 0.5):  # selection fails first; this is a bound
                await self._client.admin.command("ping")
        except TimeoutError:
            await self.close()
            raise self._error("cannot connect", f"no answer within {timeout:g} s") from None
        except (PyMongoError, KeyError, TypeError, ValueError) as exc:
            # The non-PyMongo errors: a wire-compatible server answering a handshake or an
            # authentication exchange in an unexpected shape.
            await self.close()
            raise self._error("cannot connect", f"{type(exc).__name__}: {exc}") from None

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            with contextlib.suppress(PyMongoError):
                await client.close()

    def _error(self, what: str, exc: BaseException | str) -> ConnectorError:
        return common.failure(self.datasource, getattr(self, "_where", "?"), what, exc)

    def _require(self) -> AsyncMongoClient[dict[str, Any]]:
        if self._client is None:
            raise ConnectorError(f"mongodb datasource {self.datasource.name!r} is not open")
        return self._client

    async def test(self) -> TestResult:
        client = self._require()
        started = time.perf_counter()
        try:
            await client[self._database].command("ping")
        except PyMongoError as exc:
            raise self._error("ping failed", exc) from None
        round_trip_ms = (time.perf_counter() - started) * 1000
        version: str | None = None
        # Informational only: some wire-compatible servers answer buildInfo without a version.
        with contextlib.suppress(PyMongoError):
            info = await client.admin.command("buildInfo")
            version = str(info["version"]) if info.get("version") else None
        return TestResult(ok=True, server_version=version, round_trip_ms=round_trip_ms)

    @asynccontextmanager
    async def stream(self, request: QueryRequest) -> AsyncIterator[QueryResult]:
        client = self._require()
        query = parse_query(request.sql, request.parameters)
        collection = client[self._database][query.collection]
        comment = f"reporthubd:{request.execution_id or token_source.token_hex(8)}"
        max_time: dict[str, Any] = (
            {"maxTimeMS": max(1, int(request.timeout_seconds * 1000))}
            if request.timeout_seconds
            else {}
        )
        sample_size = int(common.options(self.datasource).get("sample_size", DEFAULT_SAMPLE_SIZE))
        cursor: Any = None
        finished = False
        try:
            try:
                if query.pipeline is not None:
                    cursor = await collection.aggregate(
                        query.pipeline, batchSize=request.batch_size, comment=comment, **max_time
                    )
                else:
                    cursor = collection.find(
                        query.filter,
                        query.projection,
                        sort=query.sort,
                        limit=query.limit,
                        skip=query.skip,
                        batch_size=request.batch_size,
                        comment=comment,
                        max_time_ms=max_time.get("maxTimeMS"),
                    )
                sample: list[dict[str, Any]] = []
                async for document in cursor:
                    sample.append(document)
                    if len(sample) >= sample_size:
                        break
            except (PyMongoError, InvalidDocument) as exc:
                raise self._query_error(exc) from None
            result = _MongoResult(self, cursor, sample, request.batch_size, sample_size)
            yield result
            finished = result.exhausted
        finally:
            # Also on cancellation (the engine's timeout or a user cancel) and early exits.
            if cursor is not None:
                if not finished:
                    await self._stop_on_server(client, cursor, comment)
                with contextlib.suppress(PyMongoError):
                    await cursor.close()

    def _query_error(self, exc: BaseException) -> ConnectorError:
        if isinstance(exc, ExecutionTimeout):
            return self._error("query timed out on the server (maxTimeMS)", exc)
        return self._error("query failed", exc)

    async def _stop_on_server(self, client: AsyncMongoClient[Any], cursor: Any, tag: str) -> None:
        """Close the cursor (killCursors) and kill in-flight operations carrying our comment."""

        async def stop() -> None:
            if cursor is not None:
                with contextlib.suppress(PyMongoError):
                    await cursor.close()
            with contextlib.suppress(PyMongoError, KeyError, TypeError):
                admin = client.admin
                ops = await admin.aggregate(
                    [{"$currentOp": {}}, {"$match": {"command.comment": tag}}]
                )
                async for op in ops:
                    await admin.command("killOp", op=op["opid"])

        with contextlib.suppress(TimeoutError, asyncio.CancelledError):
            await asyncio.wait_for(asyncio.shield(stop()), common.CANCEL_GRACE_SECONDS)


class _MongoResult(QueryResult):
    def __init__(
        self,
        connector: MongoConnector,
        cursor: Any,
        sample: list[dict[str, Any]],
        batch_size: int,
        sample_size: int,
    ) -> None:
        self._connector = connector
        self._cursor = cursor
        self._batch_size = batch_size
        flat = [flatten(document) for document in sample]
        self._names: list[str] = list(dict.fromkeys(key for row in flat for key in row))
        self.columns = [
            _column(name, [row.get(name) for row in flat if row.get(name) is not None])
            for name in self._names
        ]
        self._sample = flat
        self._more = len(sample) >= sample_size
        self.exhausted = False

    def _row(self, flat: Mapping[str, Any]) -> Row:
        return tuple(flat.get(name) for name in self._names)

    async def batches(self) -> AsyncIterator[list[Row]]:
        known = set(self._names)
        late: dict[str, None] = {}
        sample, self._sample = self._sample, []
        for start in range(0, len(sample), self._batch_size):
            yield [self._row(flat) for flat in sample[start : start + self._batch_size]]
        if self._more:
            batch: list[Row] = []
            try:
                async for document in self._cursor:
                    flat = flatten(document)
                    if len(late) < 20:
                        late.update(dict.fromkeys(k for k in flat if k not in known))
                    batch.append(self._row(flat))
                    if len(batch) >= self._batch_size:
                        yield batch
                        batch = []
            except (PyMongoError, InvalidDocument) as exc:
                raise self._connector._query_error(exc) from None
            if batch:
                yield batch
        if late:
            log.warning(
                "mongodb.late_keys",
                datasource=self._connector.datasource.name,
                keys=list(late),
                rule="keys first seen after the header sample are dropped",
            )
        self.exhausted = True


class _Query:
    def __init__(self, document: Mapping[str, Any]) -> None:
        self.collection = document["collection"]
        self.pipeline: list[dict[str, Any]] | None = document.get("pipeline")
        self.filter: dict[str, Any] = document.get("filter") or {}
        self.projection: dict[str, Any] | None = document.get("projection")
        raw_sort = document.get("sort")
        self.sort: list[tuple[str, int]] | None = None
        if isinstance(raw_sort, Mapping):
            self.sort = [(str(k), int(v)) for k, v in raw_sort.items()]
        elif isinstance(raw_sort, list):
            self.sort = [(str(k), int(v)) for k, v in raw_sort]
        self.limit = int(document.get("limit") or 0)
        self.skip = int(document.get("skip") or 0)


def parse_query(text: str, parameters: Mapping[str, Any]) -> _Query:
    """Parse a report's JSON query document and substitute its `{"$param": name}` values."""
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConnectorError(f"mongodb query is not valid JSON: {exc}") from None
    if not isinstance(document, dict) or not isinstance(document.get("collection"), str):
        raise ConnectorError('mongodb query must be a JSON object with a "collection" name')
    unknown = set(document) - {
        "collection",
        "pipeline",
        "filter",
        "projection",
        "sort",
        "limit",
        "skip",
    }
    if unknown:
        raise ConnectorError(f"mongodb query has unknown keys: {', '.join(sorted(unknown))}")
    if "pipeline" in document:
        if not isinstance(document["pipeline"], list):
            raise ConnectorError('mongodb query "pipeline" must be a list of stages')
        if set(document) & {"filter", "projection", "sort", "limit", "skip"}:
            raise ConnectorError('mongodb query: give either "pipeline" or find options, not both')
        written = _write_stages(document["pipeline"])
        if written:
            raise ConnectorError(
                f"mongodb query refused: stage {written} writes data and reports are read-only"
            )
    missing: list[str] = []
    substituted = _substitute(document, parameters, missing)
    if missing:
        names = ", ".join(dict.fromkeys(missing))
        raise ConnectorError(f"the query uses parameter(s) {names} but no value was given")
    return _Query(substituted)


def _write_stages(value: Any) -> str | None:
    if isinstance(value, Mapping):
        for key, item in value.items():
            if key in WRITE_STAGES:
                return str(key)
            found = _write_stages(item)
            if found:
                return found
    elif isinstance(value, list):
        for item in value:
            found = _write_stages(item)
            if found:
                return found
    return None


def _substitute(value: Any, parameters: Mapping[str, Any], missing: list[str]) -> Any:
    if isinstance(value, Mapping):
        if len(value) == 1 and "$param" in value and isinstance(value["$param"], str):
            name = value["$param"]
            if name not in parameters:
                missing.append(name)
                return None
            return to_bson(parameters[name])
        return {key: _substitute(item, parameters, missing) for key, item in value.items()}
    if isinstance(value, list):
        return [_substitute(item, parameters, missing) for item in value]
    return value


def to_bson(value: Any) -> Any:
    """A parameter value as the BSON type MongoDB compares it with."""
    if isinstance(value, Decimal):
        return Decimal128(value)
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day, tzinfo=UTC)
    if isinstance(value, list | tuple):
        return [to_bson(item) for item in value]
    if isinstance(value, Mapping):
        return {str(k): to_bson(v) for k, v in value.items()}
    return value


def flatten(document: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested objects → dotted keys; leaves converted to plain Python values."""
    out: dict[str, Any] = {}
    for key, value in document.items():
        path = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            out.update(flatten(value, f"{path}."))
        else:
            out[path] = plain(value)
    return out


def plain(value: Any) -> Any:
    if value is None or isinstance(value, bool | str | float):
        return value
    if isinstance(value, int):  # Int64 included
        return int(value)
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, Decimal128):
        return value.to_decimal()
    if isinstance(value, ObjectId | uuid.UUID):
        return str(value)
    if isinstance(value, Binary):
        if value.subtype in (3, 4) and len(value) == 16:
            return str(value.as_uuid(value.subtype))
        return bytes(value)
    if isinstance(value, bytes):
        return value
    if isinstance(value, Mapping | list | tuple):
        return JsonText(
            json.dumps(value, default=_json_default, ensure_ascii=False, separators=(",", ":"))
        )
    if isinstance(value, Timestamp):
        return value.as_datetime()
    if isinstance(value, Regex):
        return f"/{value.pattern}/{value.flags}"
    return str(value)


def _json_default(value: Any) -> Any:
    converted = plain(value)
    if isinstance(converted, datetime):
        return converted.isoformat()
    if isinstance(converted, Decimal):
        return str(converted)
    if isinstance(converted, bytes):
        return converted.hex()
    return converted


class JsonText(str):
    """An array (or empty object) rendered as JSON text."""

    __slots__ = ()


_KINDS: Sequence[tuple[type, ColumnKind, str]] = (
    (bool, ColumnKind.BOOLEAN, "bool"),
    (int, ColumnKind.INTEGER, "long"),
    (float, ColumnKind.FLOAT, "double"),
    (Decimal, ColumnKind.DECIMAL, "decimal"),
    (datetime, ColumnKind.DATETIME_TZ, "date"),
    (bytes, ColumnKind.BINARY, "binData"),
    (JsonText, ColumnKind.TEXT, "array"),
    (str, ColumnKind.TEXT, "string"),
)


def _kind_of(value: Any) -> tuple[ColumnKind, str]:
    for cls, kind, name in _KINDS:
        if isinstance(value, cls):
            return kind, name
    return ColumnKind.OTHER, type(value).__name__


def _column(name: str, values: list[Any]) -> Column:
    kinds = {_kind_of(value) for value in values}
    if not kinds:
        return Column(name=name, kind=ColumnKind.TEXT, source_type="null")
    if len(kinds) == 1:
        kind, source = kinds.pop()
        return Column(name=name, kind=kind, source_type=source)
    plain_kinds = {kind for kind, _ in kinds}
    if plain_kinds <= {ColumnKind.INTEGER, ColumnKind.FLOAT}:
        return Column(name=name, kind=ColumnKind.FLOAT, source_type="number")
    if plain_kinds <= {ColumnKind.INTEGER, ColumnKind.DECIMAL}:
        return Column(name=name, kind=ColumnKind.DECIMAL, source_type="number")
    return Column(name=name, kind=ColumnKind.OTHER, source_type="mixed")
