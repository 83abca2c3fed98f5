"""What a command costs before it does anything: modules imported, import time, and the idle
daemon's resident memory (issue 16).

    .venv/bin/python bench/imports.py                     # everything (~1.5 min)
    .venv/bin/python bench/imports.py --suite commands    # module counts and times only
    .venv/bin/python bench/imports.py --suite rss --settle 20 --stores sqlite,mariadb

commands: each command runs in a fresh interpreter (`python -c`, which calls `reporthubd.cli.main`
and then reports `len(sys.modules)`, the wall time of import + command, and which of the heavy
libraries got loaded). Rounds give median (min-max) wall time. The floors in the same table are
bare interpreters importing only what any such command cannot avoid.

rss: `reporthubd run` on an empty store at its schema (`db upgrade` run before; no definitions,
control plane on a free port), RSS read from /proc 20 s after start, beside the floors: an
interpreter that imports asyncio, SQLAlchemy's asyncio layer and the store's driver (and aiohttp,
which the daemon serves) and then sleeps. The MariaDB store is a fresh database on the running
server (127.0.0.1:3306, root), dropped after.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

PYTHON = sys.executable
ROOT = Path(__file__).resolve().parent.parent
HEAVY = (
    "sqlalchemy",
    "alembic",
    "aiohttp",
    "aiosqlite",
    "aiomysql",
    "pymysql",
    "asyncpg",
    "openpyxl",
    "reportlab",
    "boto3",
    "aiobotocore",
    "asyncssh",
    "pandas",
    "jinja2",
)

# Runs a command in-process, then writes one JSON line on the fd $BENCH_FD names
# (the command's stdout is its own).
_RUNNER = """
import sys, time, json, os
t0 = time.perf_counter()
from reporthubd import cli
try:
    rc = cli.main(sys.argv[1:])
except SystemExit as exc:
    rc = exc.code
wall = time.perf_counter() - t0
heavy = [m for m in json.loads(os.environ["BENCH_HEAVY"]) if m in sys.modules]
report = {"modules": len(sys.modules), "wall": wall, "rc": rc, "heavy": heavy}
os.write(int(os.environ["BENCH_FD"]), json.dumps(report).encode())
"""

_FLOOR = """
import sys, time, json, os, importlib
t0 = time.perf_counter()
for name in sys.argv[1:]:
    importlib.import_module(name)
wall = time.perf_counter() - t0
report = {"modules": len(sys.modules), "wall": wall, "rc": 0, "heavy": []}
os.write(int(os.environ["BENCH_FD"]), json.dumps(report).encode())
"""

_SLEEPER = """
import sys, time, importlib
for name in sys.argv[1:]:
    importlib.import_module(name)
import asyncio
asyncio.run(asyncio.sleep(3600))
"""

# The daemon, with a timer thread that writes the module count once the settle time is up.
_DAEMON = """
import sys, os, threading, json
def report():
    os.write(int(os.environ["BENCH_FD"]), json.dumps({"modules": len(sys.modules),
                            "heavy": [m for m in json.loads(os.environ["BENCH_HEAVY"])
                                      if m in sys.modules]}).encode())
    os.close(int(os.environ["BENCH_FD"]))
timer = threading.Timer(float(os.environ["BENCH_SETTLE"]), report)
timer.daemon = True
timer.start()
from reporthubd import cli
sys.exit(cli.main(sys.argv[1:]))
"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _config(directory: Path, store_url: str) -> Path:
    path = directory / "config.toml"
    path.write_text(
        f'[store]\nurl = "{store_url}"\nauto_upgrade = true\n\n'
        f'[control]\nlisten = "127.0.0.1:{_free_port()}"\n\n'
        f'[execution]\nworkspace = "{directory / "workspace"}"\n\n'
        '[logging]\nlevel = "WARNING"\n',
        encoding="utf-8",
    )
    return path


def _run_child(code: str, argv: list[str], env: dict[str, str]) -> dict[str, object]:
    read_fd, write_fd = os.pipe()
    proc = subprocess.Popen(
        [PYTHON, "-c", code, *argv],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        pass_fds=(write_fd,),
        env={**os.environ, **env, "BENCH_HEAVY": json.dumps(HEAVY), "BENCH_FD": str(write_fd)},
        cwd=ROOT,
    )
    os.close(write_fd)
    with os.fdopen(read_fd, "rb") as pipe:
        data = pipe.read()
    _, stderr = proc.communicate()
    if not data:
        raise SystemExit(f"{argv}: no report; stderr:\n{stderr.decode(errors='replace')}")
    result: dict[str, object] = json.loads(data)
    return result


def _mariadb_admin(sql: str) -> None:
    import pymysql  # type: ignore[import-untyped]

    conn = pymysql.connect(host="127.0.0.1", port=3306, user="root", autocommit=True)
    try:
        with conn.cursor() as cursor:
            cursor.execute(sql)
    finally:
        conn.close()


@contextlib.contextmanager
def _store(kind: str, directory: Path) -> Iterator[str]:
    if kind == "sqlite":
        yield f"sqlite:///{directory / 'store.db'}"
        return
    name = f"rh_bench_imports_{secrets.token_hex(3)}"
    _mariadb_admin(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4")
    try:
        yield f"mysql://root@127.0.0.1:3306/{name}"
    finally:
        _mariadb_admin(f"DROP DATABASE IF EXISTS `{name}`")


def _median_range(values: list[float], fmt: str) -> str:
    low, mid, high = (fmt.format(v) for v in (min(values), statistics.median(values), max(values)))
    return f"{mid} ({low}-{high})"


def suite_commands(rounds: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        config = _config(directory, f"sqlite:///{directory / 'store.db'}")
        env = {"REPORTHUBD_ENV_FILE": ""}
        # A store at its schema, so `check` does its whole work.
        _run_child(_RUNNER, ["db", "upgrade", "-c", str(config)], env)
        cases: list[tuple[str, str, list[str]]] = [
            ("floor: python -c pass", _FLOOR, []),
            ("floor: asyncio", _FLOOR, ["asyncio"]),
            ("floor: asyncio, sqlalchemy", _FLOOR, ["asyncio", "sqlalchemy"]),
            (
                "floor: + sqlalchemy.ext.asyncio, aiosqlite",
                _FLOOR,
                ["asyncio", "sqlalchemy.ext.asyncio", "aiosqlite"],
            ),
            ("version", _RUNNER, ["version"]),
            ("--help", _RUNNER, ["--help"]),
            ("next --cron", _RUNNER, ["next", "--cron", "0 6 * * *", "--tz", "UTC"]),
            ("check (SQLite)", _RUNNER, ["check", "-c", str(config)]),
            ("export (SQLite)", _RUNNER, ["export", "-c", str(config)]),
            ("import reporthubd.daemon", _FLOOR, ["reporthubd.daemon"]),
        ]
        print(f"commands: fresh interpreter each, {rounds} round(s); wall = import + command")
        print(f"| {'command':<42} | {'modules':>7} | {'wall ms':>20} | heavy modules loaded |")
        print(f"|{'-' * 44}|{'-' * 9}|{'-' * 22}|----------------------|")
        for label, code, argv in cases:
            runs = [_run_child(code, argv, env) for _ in range(rounds)]
            walls = [float(str(r["wall"])) * 1000 for r in runs]
            heavy = ", ".join(str(h) for h in runs[0]["heavy"]) or "-"  # type: ignore[attr-defined]
            print(
                f"| {label:<42} | {runs[0]['modules']!s:>7} | "
                f"{_median_range(walls, '{:.0f}'):>20} | {heavy} |"
            )


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def _sleeper_rss(modules: list[str], settle: float) -> float:
    proc = subprocess.Popen([PYTHON, "-c", _SLEEPER, *modules], cwd=ROOT)
    try:
        time.sleep(min(settle, 3.0))
        return _rss_mb(proc.pid)
    finally:
        proc.kill()
        proc.wait()


def _daemon_rss(kind: str, settle: float) -> tuple[float, dict[str, object]]:
    with tempfile.TemporaryDirectory() as tmp, _store(kind, Path(tmp)) as url:
        config = _config(Path(tmp), url)
        # The store at its schema before the daemon starts (a restart, not the first start,
        # whose upgrade imports Alembic).
        _run_child(_RUNNER, ["db", "upgrade", "-c", str(config)], {"REPORTHUBD_ENV_FILE": ""})
        read_fd, write_fd = os.pipe()
        proc = subprocess.Popen(
            [PYTHON, "-c", _DAEMON, "run", "-c", str(config)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            pass_fds=(write_fd,),
            env={
                **os.environ,
                "REPORTHUBD_ENV_FILE": "",
                "BENCH_HEAVY": json.dumps(HEAVY),
                "BENCH_SETTLE": str(settle),
                "BENCH_FD": str(write_fd),
            },
            cwd=ROOT,
        )
        os.close(write_fd)
        try:
            with os.fdopen(read_fd, "rb") as pipe:
                data = pipe.read()  # returns when the timer thread closes its fd
            if proc.poll() is not None:
                raise SystemExit(f"the daemon on {kind} exited early: {proc.returncode}")
            rss = _rss_mb(proc.pid)
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        info: dict[str, object] = json.loads(data) if data else {}
        return rss, info


_LIBRARIES = (
    "sqlalchemy.ext.asyncio",
    "aiohttp.web",
    "pydantic",
    "structlog",  # with rich when it is installed (a test dependency here)
    "croniter",
    "prometheus_client",
    "dotenv",
)
"""The third-party libraries an idle daemon loads besides its store's driver."""


def suite_rss(stores: list[str], settle: float) -> None:
    floors = [
        ("floor: asyncio (sleeping)", ["asyncio"]),
        ("floor: + sqlalchemy.ext.asyncio, aiosqlite", ["sqlalchemy.ext.asyncio", "aiosqlite"]),
        ("floor: + aiohttp.web", ["sqlalchemy.ext.asyncio", "aiosqlite", "aiohttp.web"]),
        ("floor: sqlalchemy.ext.asyncio, aiomysql", ["sqlalchemy.ext.asyncio", "aiomysql"]),
        (
            "floor: + aiohttp.web (MariaDB)",
            ["sqlalchemy.ext.asyncio", "aiomysql", "aiohttp.web"],
        ),
        ("floor: every library the daemon imports (SQLite)", [*_LIBRARIES, "aiosqlite"]),
        ("floor: every library the daemon imports (MariaDB)", [*_LIBRARIES, "aiomysql"]),
    ]
    print(f"idle RSS: {settle:.0f} s after start (floors: 3 s after their imports)")
    print(f"| {'process':<50} | {'RSS MB':>6} | {'modules':>7} | heavy modules loaded |")
    print(f"|{'-' * 52}|{'-' * 8}|{'-' * 9}|----------------------|")
    for label, modules in floors:
        print(f"| {label:<50} | {_sleeper_rss(modules, settle):6.1f} | {'':>7} | |")
    for kind in stores:
        rss, info = _daemon_rss(kind, settle)
        heavy = ", ".join(str(h) for h in info.get("heavy", [])) or "-"  # type: ignore[attr-defined]
        print(
            f"| {'reporthubd run, empty ' + kind + ' store':<50} | {rss:6.1f} | "
            f"{info.get('modules', '?')!s:>7} | {heavy} |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--suite", default="commands,rss", help="commands,rss")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--settle", type=float, default=20.0, help="seconds before reading RSS")
    parser.add_argument("--stores", default="sqlite,mariadb")
    args = parser.parse_args()
    suites = args.suite.split(",")
    if "commands" in suites:
        suite_commands(args.rounds)
        print()
    if "rss" in suites:
        suite_rss(args.stores.split(","), args.settle)


if __name__ == "__main__":
    main()
