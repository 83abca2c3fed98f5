"""Starting and stopping the control plane's listeners (TCP, and optionally a Unix socket)."""

from __future__ import annotations

import asyncio

from aiohttp import web

from reporthubd import logs
from reporthubd.config import ControlSettings, Settings, parse_listen
from reporthubd.control.app import Runtime, build_app
from reporthubd.control.auth import HEALTH_PATHS, TokenGate, read_tokens

log = logs.get(__name__)


class ControlServer:
    def __init__(self, settings: ControlSettings, runtime: Runtime) -> None:
        self.settings = settings
        self.runtime = runtime
        self._runner: web.AppRunner | None = None
        self.port: int | None = None
        self.gate = TokenGate(open_paths=HEALTH_PATHS if settings.open_health else frozenset())

    async def start(self) -> None:
        if self.settings.token_file:
            self.gate.replace(await asyncio.to_thread(read_tokens, self.settings.token_file))
        host, port = parse_listen(self.settings.listen)
        app = build_app(self.runtime, max_body_bytes=self.settings.max_body_bytes, gate=self.gate)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port, reuse_address=True)
        await site.start()
        sockets = getattr(site._server, "sockets", None) or []
        self.port = sockets[0].getsockname()[1] if sockets else port
        log.info("control plane listening", host=host, port=self.port, auth=self.gate.enabled)
        if self.settings.unix_socket:
            unix = web.UnixSite(self._runner, self.settings.unix_socket)
            await unix.start()
            log.info("control plane listening", unix_socket=self.settings.unix_socket)

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
