"""`reporthubd demo`: the daemon on an embedded SQLite store in a local folder, no setup needed.

Creates (or reuses) the folder with a config file, a SQLite store and a workspace, then runs the
daemon in the foreground until Ctrl-C. Demo reports are added by the demo issue; today the folder
holds an empty store ready for definitions.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from reporthubd import logs
from reporthubd.config import load_settings

CONFIG_TEMPLATE = """\
# Written by `reporthubd demo`. Every setting is described in config.toml.example.
[store]
url = "sqlite:///{store}"

[execution]
workspace = "{workspace}"
max_concurrent_executions = 2

[control]
listen = "{listen}"

[logging]
level = "INFO"
format = "auto"
"""


def main(folder: Path, *, listen: str) -> int:
    from reporthubd.daemon import Daemon

    folder = folder.resolve()
    folder.mkdir(parents=True, exist_ok=True)
    config_path = folder / "config.toml"
    if not config_path.exists():
        config_path.write_text(
            CONFIG_TEMPLATE.format(
                store=folder / "store.db", workspace=folder / "workspace", listen=listen
            ),
            encoding="utf-8",
        )
    settings = load_settings(config_path)
    logs.configure(settings.logging)
    host_port = settings.control.listen
    print(f"reporthubd demo in {folder}")
    print(f"  config:  {config_path}")
    print(f"  health:  curl http://{host_port}/healthz")
    print("  stop:    Ctrl-C")
    return asyncio.run(Daemon(settings, config_path=config_path).run())
