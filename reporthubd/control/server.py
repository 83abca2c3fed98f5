"""Starting and stopping the control plane's listeners: every TCP address of `control.listen`
and `control.extra_listen`, and optionally a Unix socket.

Every listener serves the same application through one runner: the same routes, the same token
gate, the same envelope. (The seed's two ports, an execution API and a scheduler API, thus both
answer the whole API: one process has one authority, and a client of either side keeps working
whichever port it was pointed at.) An address that cannot be bound stops the start.
"""

from __future__ import annotations

import asyncio
from http import HTTPStatus
from typing import Any

from aiohttp import web, web_protocol, web_request

from reporthubd import logs
from reporthubd.config import ControlSettings, Settings, parse_listen
from reporthubd.control import envelope
from reporthubd.control.app import build_app
from reporthubd.control.auth import HEALTH_PATHS, TokenGate, read_tokens
from reporthubd.control.runtime import Runtime

log = logs.get(__name__)


class _EnvelopeProtocol(web_protocol.RequestHandler):
    """Errors raised before the application sees a request (the HTTP parser's limits: a request
    line or header over 8190 bytes, too many headers, a malformed request) answered in the
    envelope like every other error, instead of aiohttp's plain text."""

    def handle_error(
        self,
        request: web_request.BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        super().handle_error(request, status, exc, message)  # logs it; raises if already sent
        phrase = HTTPStatus(status).phrase if status in HTTPStatus._value2member_map_ else "Error"
        # e.g. "Got more than 8190 bytes when reading: bytearray(b'<the request line>')": say
        # what was wrong, without echoing the oversized input back.
        detail = (message or "").strip().split(": bytearray(", 1)[0].split("\n", 1)[0]
        if status >= 500 or not detail:
            detail = phrase
        answer = envelope.error(phrase, detail[:300], status=status)
        answer.force_close()
        return answer


class _EnvelopeServer(web.Server):
    def __call__(self) -> web_protocol.RequestHandler:
        return _EnvelopeProtocol(self, loop=self._loop, **self._kwargs)


class _Runner(web.AppRunner):
    async def _make_server(self) -> web.Server:
        server = await super()._make_server()
        kwargs: dict[str, Any] = dict(server._kwargs)
        return _EnvelopeServer(
            server.request_handler,
            request_factory=server.request_factory,
            handler_cancellation=server.handler_cancellation,
            loop=server._loop,
            **kwargs,
        )


class ControlServer:
    def __init__(self, settings: ControlSettings, runtime: Runtime) -> None:
        self.settings = settings
        self.runtime = runtime
        self._runner: web.AppRunner | None = None
        self.ports: list[int] = []
        """The bound TCP ports, in the order of `settings.addresses` (port 0 resolved)."""
        self.gate = TokenGate(open_paths=HEALTH_PATHS if settings.open_health else frozenset())

    async def start(self) -> None:
        if self.settings.token_file:
            self.gate.replace(await asyncio.to_thread(read_tokens, self.settings.token_file))
        app = build_app(self.runtime, max_body_bytes=self.settings.max_body_bytes, gate=self.gate)
        self._runner = _Runner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        for address in self.settings.addresses:
            host, port = parse_listen(address)
            site = web.TCPSite(self._runner, host, port, reuse_address=True)
            await site.start()
            sockets = getattr(site._server, "sockets", None) or []
            bound = sockets[0].getsockname()[1] if sockets else port
            self.ports.append(bound)
            log.info("control plane listening", host=host, port=bound, auth=self.gate.enabled)
        if self.settings.unix_socket:
            unix = web.UnixSite(self._runner, self.settings.unix_socket)
            await unix.start()
            log.info("control plane listening", unix_socket=self.settings.unix_socket)

    @property
    def port(self) -> int | None:
        """The port of `control.listen`, once bound."""
        return self.ports[0] if self.ports else None

    async def reload(self, settings: Settings) -> str:
        """Re-read the token file (rotation). A bad file keeps the old tokens and raises."""
        if settings.control.token_file:
            self.gate.replace(await asyncio.to_thread(read_tokens, settings.control.token_file))
            return "control tokens re-read"
        return "control: no token file"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
            self.ports = []
