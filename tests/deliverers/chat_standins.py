"""Stand-ins for the chat services, which cannot be reached from here (../shared/TESTING.md):

- `SlackStandIn`: a local aiohttp app answering the Slack Web API methods the slack delivery
  uses, with Slack's documented JSON (`{"ok": true, ...}`, `{"ok": false, "error": ...}` with
  HTTP 200, a 429 `ratelimited` with `Retry-After`). The official `slack_sdk` client builds the
  requests, so their shape is the real one; this app only records and answers them.
- `ChatWebhookStandIn`: an HTTP receiver for the Teams (Workflows) and Google Chat webhooks that
  records each JSON message; the tests check the card itself (Teams: Microsoft's Adaptive Cards
  parser, `adaptive_card_problems`).

A STAND-IN, not the service: it checks what the documentation promises (the token, a known
upload, the upload's length), nothing more."""

from __future__ import annotations

import asyncio
import itertools
import json
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

from tests import servers

PEERS = Path(__file__).resolve().parent.parent / "peers"
VALIDATOR = PEERS / "validate_adaptive_card.js"


@dataclass
class SlackCall:
    method: str
    params: dict[str, Any]
    headers: dict[str, str]
    at: float


@dataclass
class Upload:
    file_id: str
    filename: str
    length: int
    data: bytes = b""
    completed: bool = False
    channel: str | None = None
    thread_ts: str | None = None


@dataclass
class SlackStandIn:
    """Slack Web API stand-in on 127.0.0.1 (`base_url` for `AsyncWebClient`)."""

    token: str = "xoxb-test-token-0001"
    port: int = field(default_factory=servers.free_port)
    calls: list[SlackCall] = field(default_factory=list)
    uploads: dict[str, Upload] = field(default_factory=dict)
    messages: list[dict[str, Any]] = field(default_factory=list)
    rate_limited: dict[str, list[int]] = field(default_factory=dict)
    """method → Retry-After seconds of the next answers: each call pops one and answers 429."""
    history_scope: bool = True
    """False: conversations.history answers missing_scope (a token without channels:history)."""
    hold: asyncio.Event | None = None
    """Set: chat.postMessage records the message, then holds its answer until it is set."""
    held: int = 0
    _runner: web.AppRunner | None = None
    _ids: Any = field(default_factory=lambda: itertools.count(1))

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api/"

    def calls_of(self, method: str) -> list[SlackCall]:
        return [c for c in self.calls if c.method == method]

    async def _params(self, request: web.Request) -> dict[str, Any]:
        params: dict[str, Any] = dict(request.query)
        if request.content_type == "application/json":
            params |= await request.json()
        elif request.can_read_body:
            params |= dict(await request.post())
        return params

    async def api(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        params = await self._params(request)
        self.calls.append(SlackCall(method, params, dict(request.headers), time.monotonic()))
        waits = self.rate_limited.get(method)
        if waits:
            return web.json_response(
                {"ok": False, "error": "ratelimited"},
                status=429,
                headers={"Retry-After": str(waits.pop(0))},
            )
        if request.headers.get("Authorization") != f"Bearer {self.token}":
            return web.json_response({"ok": False, "error": "invalid_auth"})
        if method == "chat.postMessage" and self.hold is not None:
            answer = self._post_message(params)
            self.held += 1
            await self.hold.wait()  # the sender is killed here: Slack has the message
            return web.json_response(answer)
        handler = {
            "auth.test": self._auth_test,
            "conversations.history": self._history,
            "files.getUploadURLExternal": self._get_upload_url,
            "files.completeUploadExternal": self._complete_upload,
            "chat.postMessage": self._post_message,
        }.get(method)
        if handler is None:
            return web.json_response({"ok": False, "error": "unknown_method"})
        return web.json_response(handler(params))

    def _auth_test(self, params: dict[str, Any]) -> dict[str, Any]:
        return {"ok": True, "url": "https://stand-in.slack.com/", "team": "T", "user": "bot"}

    def _get_upload_url(self, params: dict[str, Any]) -> dict[str, Any]:
        if not params.get("filename") or not str(params.get("length", "")).isdigit():
            return {"ok": False, "error": "invalid_arguments"}
        file_id = f"F{next(self._ids):08d}"
        self.uploads[file_id] = Upload(file_id, params["filename"], int(params["length"]))
        return {
            "ok": True,
            "upload_url": f"http://127.0.0.1:{self.port}/upload/v1/{file_id}",
            "file_id": file_id,
        }

    async def upload(self, request: web.Request) -> web.Response:
        upload = self.uploads.get(request.match_info["file_id"])
        if upload is None:
            return web.Response(status=404, text="unknown upload")
        upload.data = await request.read()
        if len(upload.data) != upload.length:
            return web.Response(status=400, text="length mismatch")
        return web.Response(text=f"OK - {len(upload.data)}")

    def _complete_upload(self, params: dict[str, Any]) -> dict[str, Any]:
        files = params.get("files")
        items = json.loads(files) if isinstance(files, str) else files
        done = []
        for item in items or []:
            upload = self.uploads.get(item.get("id"))
            if upload is None or len(upload.data) != upload.length:
                return {"ok": False, "error": "file_not_found"}
            upload.completed = True
            upload.channel = params.get("channel_id")
            upload.thread_ts = params.get("thread_ts")
            done.append({"id": upload.file_id, "title": item.get("title") or upload.filename})
        return {"ok": True, "files": done}

    def _history(self, params: dict[str, Any]) -> dict[str, Any]:
        """Newest first, `limit` of them; metadata only with include_all_metadata (as Slack)."""
        if not self.history_scope:
            return {"ok": False, "error": "missing_scope", "needed": "channels:history"}
        channel = params.get("channel")
        limit = int(params.get("limit") or 100)
        full = str(params.get("include_all_metadata", "")).lower() in {"1", "true"}
        found = [m for m in reversed(self.messages) if m.get("channel") == channel][:limit]
        shown = [
            {"type": "message", "ts": m["ts"], "text": m.get("text", "")}
            | ({"metadata": m["metadata"]} if full and m.get("metadata") else {})
            for m in found
        ]
        return {"ok": True, "messages": shown, "has_more": False}

    def keys(self) -> list[str]:
        """The idempotency key of each message posted, in order (None: none carried)."""
        return [
            ((m.get("metadata") or {}).get("event_payload") or {}).get("idempotency_key")
            for m in self.messages
        ]

    def _post_message(self, params: dict[str, Any]) -> dict[str, Any]:
        if not params.get("channel"):
            return {"ok": False, "error": "channel_not_found"}
        ts = f"{1_700_000_000 + len(self.messages)}.000100"
        self.messages.append(params | {"ts": ts})
        return {"ok": True, "channel": params["channel"], "ts": ts, "message": {"ts": ts}}

    async def start(self) -> None:
        app = web.Application(client_max_size=200 * 1024 * 1024)
        app.router.add_post("/api/{method}", self.api)
        app.router.add_get("/api/{method}", self.api)
        app.router.add_post("/upload/v1/{file_id}", self.upload)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port, reuse_address=True).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None


@dataclass
class ChatWebhookStandIn:
    """A Teams Workflows / Google Chat incoming-webhook stand-in: records JSON messages,
    answers 200, or the scripted `answers` (status, headers) first."""

    port: int = field(default_factory=servers.free_port)
    messages: list[dict[str, Any]] = field(default_factory=list)
    queries: list[dict[str, str]] = field(default_factory=list)
    answers: list[tuple[int, dict[str, str]]] = field(default_factory=list)
    posts: int = 0
    """Every JSON post taken, repeats included."""
    by_request_id: dict[str, dict[str, Any]] = field(default_factory=dict)
    hold: asyncio.Event | None = None
    """Set: a post is recorded, then its answer held until it is set."""
    held: int = 0
    _runner: web.AppRunner | None = None

    def url(self, path: str = "/hook", query: str = "sig=stand-in-signature-secret") -> str:
        return f"http://127.0.0.1:{self.port}{path}?{query}"

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        if self.answers:
            status, headers = self.answers.pop(0)
            return web.Response(status=status, headers=headers, text=f"scripted {status}")
        if not request.content_type.startswith("application/json"):
            return web.Response(status=415, text="JSON only")
        self.posts += 1
        request_id = request.query.get("requestId")
        # Google Chat: an existing requestId returns the message created with it, no new one.
        if request_id is None or request_id not in self.by_request_id:
            message = json.loads(body)
            self.messages.append(message)
            self.queries.append(dict(request.query))
            if request_id is not None:
                self.by_request_id[request_id] = message
        if self.hold is not None:
            self.held += 1
            await self.hold.wait()
        return web.Response(status=202 if "workflows" in request.path else 200, text="{}")

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/{tail:.*}", self.handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port, reuse_address=True).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None


def adaptive_card_validator() -> list[str]:
    """The command that runs Microsoft's Adaptive Cards parser (npm `adaptivecards`, installed
    into tests/peers by scripts/install-test-deps.d/node-peers.sh); skips when it is missing."""
    node = shutil.which("node")
    if node is None:
        servers.unavailable("node missing: apt-get install -y nodejs")
    if not (PEERS / "node_modules" / "adaptivecards").is_dir():
        servers.unavailable(
            "npm adaptivecards missing: bash scripts/install-test-deps.d/node-peers.sh"
        )
    return [node, str(VALIDATOR)]


def adaptive_card_problems(message: dict[str, Any]) -> dict[str, Any]:
    """Run the Teams message through the validator: {"errors": [...], "card": parsed JSON}."""
    done = subprocess.run(
        adaptive_card_validator(),
        input=json.dumps(message).encode(),
        capture_output=True,
        check=False,
        timeout=60,
    )
    if done.returncode not in (0, 1):
        raise RuntimeError(f"validator crashed: {done.stderr.decode()[:2000]}")
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def google_chat_schema() -> dict[str, Any]:
    """Google's published Chat API description (the discovery document chat.v1.json that the
    google-api-python-client package ships) as a JSON Schema of `Message`: every `$ref` resolved
    to its definition, and objects closed (`additionalProperties: false`), so an unknown or
    misspelt field, a wrong type or a value outside an enum is refused."""
    from importlib import resources

    try:
        documents = resources.files("googleapiclient") / "discovery_cache" / "documents"
    except ModuleNotFoundError:
        servers.unavailable(
            "google-api-python-client missing: pip install google-api-python-client"
        )
    discovery = json.loads((documents / "chat.v1.json").read_text(encoding="utf-8"))

    def convert(node: Any) -> Any:
        if isinstance(node, list):
            return [convert(item) for item in node]
        if not isinstance(node, dict):
            return node
        if "$ref" in node:
            return {"$ref": f"#/definitions/{node['$ref']}"}
        out: dict[str, Any] = {}
        kind = node.get("type")
        if kind in {"string", "boolean", "object", "array", "number"}:
            out["type"] = kind
        elif kind == "integer":
            out["type"] = "integer"
        if "enum" in node:
            out["enum"] = node["enum"]
        if "items" in node:
            out["items"] = convert(node["items"])
        if "properties" in node:
            out["properties"] = {k: convert(v) for k, v in node["properties"].items()}
            out["additionalProperties"] = False
        if "additionalProperties" in node:
            out["additionalProperties"] = convert(node["additionalProperties"])
        if kind == "string" and node.get("format") in {"int64", "uint64", "google-datetime"}:
            out["type"] = "string"
        return out

    definitions = {name: convert(schema) for name, schema in discovery["schemas"].items()}
    return {"$ref": "#/definitions/Message", "definitions": definitions}


def google_chat_problems(message: dict[str, Any]) -> list[str]:
    """What the Chat API's published schema refuses in a webhook message (empty: valid)."""
    import jsonschema

    validator = jsonschema.Draft7Validator(google_chat_schema())
    return [
        f"{'/'.join(str(p) for p in error.absolute_path)}: {error.message}"
        for error in validator.iter_errors(message)
    ]
