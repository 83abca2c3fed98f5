"""History routes: list executions, download an execution's file.

- `GET /api/executions` — filters `config_id`, `schedule_id`, `status` (comma-separated, as
  stored: upper case),
  `since`, `until` (ISO 8601 with an offset), `limit` (1-500, default 50), `offset`; newest first.
  The answer carries `items`, `total`, `limit`, `offset` and `next_after`. Paging deep into a
  long history goes by keyset instead: `after` = the previous answer's `next_after` (null on
  the last page); such a page costs the same at run 100,000 as on the first page, and its
  `total` is null (no COUNT over the history; an `offset` counts from the cursor).
- `GET /api/execution/{execution_id}/file` — the produced file while it is retained: 404 for an
  unknown execution or a file no longer kept, 409 while the execution has not produced it yet.
"""

from __future__ import annotations

import asyncio
import codecs
import urllib.parse
from datetime import datetime
from pathlib import Path

from aiohttp import web

from reporthubd import domain
from reporthubd.control import envelope
from reporthubd.control.params import MAX_ID
from reporthubd.control.runtime import runtime
from reporthubd.domain import execution_data
from reporthubd.store import console as store_console
from reporthubd.store import executions
from reporthubd.store import status as history

MAX_LIMIT = 500


class BadQuery(ValueError):
    pass


def _int(
    request: web.Request, name: str, *, minimum: int, maximum: int | None = None
) -> int | None:
    raw = request.query.get(name)
    if raw is None:
        return None
    try:
        value = int(raw)
    except ValueError:
        raise BadQuery(f"{name} must be an integer, got {raw!r}") from None
    if value < minimum or (maximum is not None and value > maximum):
        bound = f"{minimum}-{maximum}" if maximum is not None else f">= {minimum}"
        raise BadQuery(f"{name} must be {bound}, got {value}")
    return value


def _time(request: web.Request, name: str) -> datetime | None:
    raw = request.query.get(name)
    if raw is None:
        return None
    try:
        value = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise BadQuery(f"{name} must be an ISO 8601 time, got {raw!r}") from None
    if value.tzinfo is None:
        raise BadQuery(f"{name} must carry a UTC offset (e.g. 2026-11-29T00:00:00Z)")
    return value


def _cursor(request: web.Request) -> store_console.Cursor | None:
    raw = request.query.get("after")
    if raw is None:
        return None
    try:
        return store_console.Cursor.parse(raw)
    except ValueError:
        raise BadQuery(
            f"after must be a next_after value of an earlier answer, got {raw[:80]!r}"
        ) from None


def _statuses(request: web.Request) -> tuple[str, ...]:
    raw = request.query.get("status")
    if raw is None:
        return ()
    words = tuple(word.strip() for word in raw.split(","))
    known = {s.value for s in domain.ExecutionStatus}
    unknown = [repr(w) for w in words if w not in known]
    if unknown:
        raise BadQuery(f"unknown status {', '.join(unknown)} (known: {', '.join(sorted(known))})")
    return words


async def list_executions(request: web.Request) -> web.Response:
    try:
        query = history.ExecutionQuery(
            config_id=_int(request, "config_id", minimum=1, maximum=MAX_ID),
            schedule_id=_int(request, "schedule_id", minimum=1, maximum=MAX_ID),
            statuses=_statuses(request),
            since=_time(request, "since"),
            until=_time(request, "until"),
            limit=_int(request, "limit", minimum=1, maximum=MAX_LIMIT) or 50,
            offset=_int(request, "offset", minimum=0, maximum=MAX_ID) or 0,
            after=_cursor(request),
        )
    except BadQuery as exc:
        return envelope.error("bad request", str(exc), status=400)
    page = await history.search_executions(runtime(request).store, query)
    of = f" of {page.total}" if page.total is not None else ""
    return envelope.success(
        f"{len(page.items)}{of} executions",
        {
            "items": [execution_data(item) for item in page.items],
            "total": page.total,
            "limit": query.limit,
            "offset": query.offset,
            "next_after": page.next_after.text() if page.next_after is not None else None,
        },
    )


async def download_file(request: web.Request) -> web.StreamResponse:
    daemon = runtime(request)
    execution_id = request.match_info["execution_id"]
    execution = await executions.get_execution(daemon.store, execution_id)
    if execution is None:
        return envelope.error("not found", f"execution {execution_id} does not exist", status=404)
    if not execution.file_path:
        if execution.status.is_terminal:
            return envelope.error(
                "not found", f"execution {execution_id} produced no file", status=404
            )
        return envelope.error(
            "not ready", f"execution {execution_id} has not produced its file yet", status=409
        )
    path = await asyncio.to_thread(
        _retained_file, daemon.settings.execution.workspace, execution.file_path
    )
    if path is None:
        return envelope.error(
            "not found", f"the file of execution {execution_id} is no longer retained", status=404
        )
    name = execution.file_name or path.name
    media_type = await asyncio.to_thread(file_media_type, path, name)
    return web.FileResponse(
        path, headers={"Content-Disposition": content_disposition(name), "Content-Type": media_type}
    )


_UTF8_BOM = b"\xef\xbb\xbf"
_SNIFF_BYTES = 64 * 1024
_MEDIA_TYPES = {
    ".xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    ".pdf": "application/pdf",
    ".json": "application/json",
    ".jsonl": "application/x-ndjson",
    ".gz": "application/gzip",
    ".zip": "application/zip",
}


def file_media_type(path: Path, name: str) -> str:
    """The Content-Type of a produced file, one of openapi_schemas.DOWNLOAD_TYPES. A CSV is
    declared `charset=utf-8` when it is UTF-8 (with its BOM, or when its first 64 KiB decode as
    UTF-8); written in another encoding (csv option `encoding`), it is `text/csv` without a
    charset rather than a wrong one."""
    suffix = Path(name).suffix.lower()
    if suffix != ".csv":
        return _MEDIA_TYPES.get(suffix, "application/octet-stream")
    with path.open("rb") as file:
        head = file.read(_SNIFF_BYTES)
    if head.startswith(_UTF8_BOM):
        return "text/csv; charset=utf-8"
    try:
        codecs.getincrementaldecoder("utf-8")().decode(head, final=False)
    except UnicodeDecodeError:
        return "text/csv"
    return "text/csv; charset=utf-8"


def content_disposition(name: str) -> str:
    """`attachment` with an ASCII fallback name and the exact name as RFC 5987 `filename*`. The
    name comes from a shared table (any service may write it): control characters, quotes and
    backslashes never reach the header, so no header can be injected or break the answer."""
    printable = "".join(ch for ch in name if ch.isprintable())
    fallback = (
        "".join(ch if ch.isascii() and ch not in '"\\' else "_" for ch in printable).strip()
        or "report"
    )
    encoded = urllib.parse.quote(printable or "report", safe="")
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{encoded}"


def _retained_file(workspace: str, file_path: str) -> Path | None:
    """The file, if it is still there and inside the workspace (never anything else)."""
    base = Path(workspace).resolve()
    path = Path(file_path).resolve()
    if not path.is_relative_to(base) or not path.is_file():
        return None
    return path


def add_routes(app: web.Application) -> None:
    app.router.add_get("/api/executions", list_executions)
    app.router.add_get("/api/execution/{execution_id}/file", download_file)
