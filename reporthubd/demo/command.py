"""`reporthubd demo [--dir FOLDER] [--listen HOST:PORT]`: prepare the folder (config, sample
data, demo reports in the store), start the daemon, run each demo report once, print the banner.
Ctrl-C stops it (exit 0); a store or address that cannot be used exits 1 or 2 with one line."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

from reporthubd import domain, logs, seed_env
from reporthubd.commands import EXIT_PROBLEM, EXIT_USAGE
from reporthubd.config import ConfigError, Settings, load_settings, parse_listen
from reporthubd.daemon import Daemon
from reporthubd.demo.banner import banner
from reporthubd.demo.dataset import ensure_dataset
from reporthubd.demo.listen import ListenError, choose_listen
from reporthubd.demo.reports import (
    CATALOG_RESOURCE,
    DEMO_REPORTS,
    DemoError,
    notified_schedule,
    prepare_store,
)
from reporthubd.systemd import Notifier
from reporthubd.timeutil import utcnow

CONFIG_TEMPLATE = """\
# Written by `reporthubd demo`. Every setting is described in config.toml.example.
# The control plane address comes from `reporthubd demo --listen` (default 127.0.0.1:8000).
[store]
url = "sqlite:///{store}"

[execution]
workspace = "{workspace}"
max_concurrent_executions = 2
file_retention_hours = 24

[scheduler]
reload_interval_seconds = 10

[logging]
level = "INFO"
format = "auto"
"""


class _ReadyNotifier(Notifier):
    """The daemon's systemd notifier, which also tells the demo when the daemon is ready."""

    def __init__(self) -> None:
        super().__init__()
        self.ready_event = asyncio.Event()

    def ready(self, status: str | None = None) -> None:
        super().ready(status)
        self.ready_event.set()


def _write_config(folder: Path) -> Path:
    config_path = folder / "config.toml"
    if not config_path.exists():
        config_path.write_text(
            CONFIG_TEMPLATE.format(store=folder / "store.db", workspace=folder / "workspace"),
            encoding="utf-8",
        )
    return config_path


def main(folder: Path, *, listen: str | None) -> int:
    try:
        return _main(folder.resolve(), listen)
    except KeyboardInterrupt:  # Ctrl-C before the daemon took over the signal
        print("\nreporthubd demo: stopped before it was ready", flush=True)
        return 0


def _main(folder: Path, requested_listen: str | None) -> int:
    folder.mkdir(parents=True, exist_ok=True)
    reports = folder / "reports"
    reports.mkdir(exist_ok=True)
    config_path = _write_config(folder)
    try:
        listen, listen_note = choose_listen(requested_listen)
    except ListenError as exc:
        print(f"reporthubd demo: {exc}", file=sys.stderr)
        return EXIT_USAGE
    # The daemon re-reads its config on reload: the address stays the one chosen here.
    os.environ["REPORTHUBD_CONTROL_LISTEN"] = listen
    _leave_the_seed_deployment_alone()
    try:
        settings = load_settings(config_path)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return EXIT_USAGE
    logs.configure(settings.logging)

    print(f"reporthubd demo in {folder}", flush=True)
    sales = ensure_dataset(folder / "sales.db", today=utcnow().date())
    verb = "generated" if sales.generated else "reused"
    print(
        f"  sample data: {verb} {sales.path} ({sales.orders:,} orders, "
        f"{sales.first_day} to {sales.last_day} UTC)",
        flush=True,
    )
    return asyncio.run(_run(settings, config_path, folder, listen, listen_note))


async def _run(
    settings: Settings, config_path: Path, folder: Path, listen: str, listen_note: str | None
) -> int:
    try:
        applied = await prepare_store(settings, folder)
    except DemoError as exc:
        print(f"reporthubd demo: {exc}", file=sys.stderr)
        return EXIT_PROBLEM
    print(f"  demo reports: {applied.summary} (from the packaged {CATALOG_RESOURCE})", flush=True)

    notifier = _ReadyNotifier()
    daemon = Daemon(settings, config_path=config_path, notifier=notifier)
    run = asyncio.create_task(daemon.run(), name="demo-daemon")
    ready = asyncio.create_task(notifier.ready_event.wait(), name="demo-wait-ready")
    await asyncio.wait({run, ready}, return_when=asyncio.FIRST_COMPLETED)
    if not ready.done():  # the daemon could not start; it logged why
        ready.cancel()
        return await run

    started = []
    if daemon.engine is not None:
        notified = notified_schedule(applied)
        for name in DEMO_REPORTS:
            if name not in applied.configs:
                continue
            config_id = applied.configs[name].id
            if notified is not None and notified.config_id == config_id and daemon.scheduler:
                await daemon.scheduler.trigger(notified.id)  # its schedule's stream of runs
            else:
                await daemon.engine.create_and_submit(
                    config_id, trigger_type=domain.TriggerType.MANUAL
                )
            started.append(name)
    port = (daemon.control.port if daemon.control else None) or parse_listen(listen)[1]
    print(banner(folder, port, listen_note, applied, started), flush=True)
    code = await run
    print("reporthubd demo: stopped", flush=True)
    return code


def _leave_the_seed_deployment_alone() -> None:
    """The demo runs on its own embedded store and address: a seed deployment's `.env` in the
    working directory, or its DB_* variables in the environment, configure `reporthubd run`,
    not the demo (read as usual, they would name a second store and stop it)."""
    dotenv = seed_env.env_file(os.environ)
    ignored = seed_env.seed_names(os.environ)
    os.environ[seed_env.ENV_FILE_VARIABLE] = ""
    for name in ignored:
        del os.environ[name]
    if dotenv is not None or ignored:
        what = ", ".join(([str(dotenv)] if dotenv else []) + ignored)
        print(f"reporthubd demo: leaving the seed's deployment settings alone ({what})")
