"""Starting and stopping the control plane's listener."""

from __future__ import annotations

from aiohttp import web

from reporthubd import logs
from reporthubd.config import ControlSettings, parse_listen
from reporthubd.control.app import Runtime, build_app

log = logs.get(__name__)


class ControlServer:
    def __init__(self, settings: ControlSettings, runtime: Runtime) -> None:
        self.settings = settings
        self.runtime = runtime
        self._runner: web.AppRunner | None = None
        self.port: int | None = None

    async def start(self) -> None:
        host, port = parse_listen(self.settings.listen)
        app = build_app(self.runtime, max_body_bytes=self.settings.max_body_bytes)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port, reuse_address=True)
        await site.start()
        sockets = getattr(site._server, "sockets", None) or []
        self.port = sockets[0].getsockname()[1] if sockets else port
        log.info("control plane listening", host=host, port=self.port)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
