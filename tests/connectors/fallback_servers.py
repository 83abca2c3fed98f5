"""Fallback servers for the connector contract suite (../shared/TESTING.md, "Started by the tests").

Each is a child process on a free 127.0.0.1 port, stopped by its PID:

- MongoDB: `nx-27017` (a MongoDB wire-protocol server on SQLite), from this venv.
- BigQuery: `bqemulator` from its OWN venv (REPORTHUB_BQEMULATOR_PYTHON, default
  /opt/reporthub-bqemulator/bin/python; scripts/install-test-servers.sh creates it), started by
  `bqemulator_launch.py`, which no-ops the DuckDB extension downloads that fail offline.
- Snowflake: fakesnow's HTTP server (`fakesnow.server.app` under uvicorn) from this venv.

Plus two fault servers: a closed port and a TCP listener that accepts and never answers.
A missing piece is reported through `servers.unavailable` (skip locally, fail in CI).
"""

from __future__ import annotations

import os
import shutil
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from tests import servers

HERE = Path(__file__).resolve().parent
BIN = Path(sys.executable).parent
BQEMULATOR_PYTHON = Path(
    os.environ.get("REPORTHUB_BQEMULATOR_PYTHON", "/opt/reporthub-bqemulator/bin/python")
)
START_TIMEOUT = 60.0


class ChildServer:
    """A server process started by the tests and stopped by its PID."""

    def __init__(self, name: str, directory: Path) -> None:
        self.name = name
        self.dir = directory
        self.port = servers.free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = directory / f"{name}.log"

    def command(self) -> list[str]:
        raise NotImplementedError

    def env(self) -> dict[str, str]:
        return dict(os.environ)

    def ready(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                return True
        except OSError:
            return False

    def start(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("wb") as log_file:
            self.proc = subprocess.Popen(
                self.command(),
                stdout=log_file,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=self.env(),
                cwd=self.dir,
            )
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            if self.ready():
                return
            time.sleep(0.1)
        self.stop()
        tail = self.log_path.read_text(errors="replace")[-2000:]
        raise RuntimeError(f"{self.name} did not start on port {self.port}:\n{tail}")

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


class NxMongo(ChildServer):
    """nx-27017 on an SQLite file (single-database mode: a collection is a table)."""

    def __init__(self, directory: Path) -> None:
        super().__init__("nx-27017", directory)
        self.db_path = directory / "nx.db"

    def seed(self, collection: str, rows: int, text: str) -> None:
        """Bulk-load `{"n": 1..rows, "s": text}` documents before the server starts.

        Inserting 200,000 documents through the wire protocol takes nx-27017 ~12 s; writing its
        storage table (id, _id, JSON data) with one SQL statement takes well under a second. The
        connector under test still reads every document through the wire protocol.
        """
        assert self.proc is None, "seed before start"
        self.dir.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self.db_path)
        try:
            conn.executescript(
                f"""
                CREATE TABLE IF NOT EXISTS "{collection}" (
                    id INTEGER PRIMARY KEY AUTOINCREMENT, _id TEXT, data TEXT NOT NULL);
                CREATE UNIQUE INDEX IF NOT EXISTS "idx_{collection}_id" ON "{collection}"(_id);
                """
            )
            conn.execute(
                f"""
                INSERT INTO "{collection}" (_id, data)
                WITH RECURSIVE c(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM c WHERE n < ?)
                SELECT printf('%024x', n),
                       json_object('n', n, 's', ?, '_id',
                                   json_object('__neosqlite_objectid__', json('true'),
                                               'id', printf('%024x', n)))
                FROM c
                """,
                (rows, text),
            )
            conn.commit()
        finally:
            conn.close()

    @staticmethod
    def executable() -> Path | None:
        path = BIN / "nx-27017"
        return path if path.exists() else None

    def command(self) -> list[str]:
        exe = self.executable()
        assert exe is not None
        return [
            str(exe),
            "--db",
            str(self.db_path),
            "--host",
            "127.0.0.1",
            "-p",
            str(self.port),
            "--log-file",
            str(self.dir / "nx.log"),
            "--pid-file",
            str(self.dir / "nx.pid"),
        ]

    @property
    def uri(self) -> str:
        return f"mongodb://127.0.0.1:{self.port}/?directConnection=true"


class BigQueryEmulator(ChildServer):
    def __init__(self, directory: Path) -> None:
        super().__init__("bqemulator", directory)
        self.grpc_port = servers.free_port()

    def command(self) -> list[str]:
        return [
            str(BQEMULATOR_PYTHON),
            str(HERE / "bqemulator_launch.py"),
            "start",
            "--rest-host",
            "127.0.0.1",
            "--rest-port",
            str(self.port),
            "--grpc-host",
            "127.0.0.1",
            "--grpc-port",
            str(self.grpc_port),
            "--ephemeral",
            "--project",
            "rh-test",
        ]

    def env(self) -> dict[str, str]:
        return {**os.environ, "OTEL_SDK_DISABLED": "true"}

    def ready(self) -> bool:
        try:
            with urllib.request.urlopen(
                f"http://127.0.0.1:{self.port}/bigquery/v2/projects/rh-test/datasets", timeout=1
            ):
                return True
        except OSError:
            return False

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"


class FakeSnowflake(ChildServer):
    def __init__(self, directory: Path) -> None:
        super().__init__("fakesnow", directory)

    def command(self) -> list[str]:
        return [
            sys.executable,
            "-c",
            "import sys, uvicorn, fakesnow.server; uvicorn.run(fakesnow.server.app, "
            "host='127.0.0.1', port=int(sys.argv[1]), log_level='warning')",
            str(self.port),
        ]


def nx_available() -> str | None:
    if NxMongo.executable() is None:
        return "nx-27017 is not installed (pip install nx-27017)"
    return None


def bqemulator_available() -> str | None:
    if not BQEMULATOR_PYTHON.exists():
        return (
            f"bqemulator venv not found at {BQEMULATOR_PYTHON} "
            "(scripts/install-test-servers.sh creates it)"
        )
    return None


def fakesnow_available() -> str | None:
    try:
        import fakesnow.server  # noqa: F401
    except ImportError as exc:
        return f"fakesnow[server] is not installed ({exc.name})"
    return None


class SilentListener:
    """A TCP port that accepts connections (kernel backlog) and never says a word."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = int(self.sock.getsockname()[1])

    def close(self) -> None:
        self.sock.close()


def closed_port() -> int:
    """A port on which nothing listens (connections are refused at once)."""
    return servers.free_port()


def odbc_driver_registered(name: str) -> bool:
    if not shutil.which("odbcinst"):
        return False
    out = subprocess.run(["odbcinst", "-q", "-d"], capture_output=True, text=True, check=False)
    return f"[{name}]" in out.stdout


def msodbcsql_library() -> Path | None:
    """Microsoft's ODBC Driver 18 shared library shipped in the mssql-python-odbc wheel."""
    try:
        import mssql_python_odbc
    except ImportError:
        return None
    base = Path(mssql_python_odbc.__file__).parent / "libs" / "linux" / "debian_ubuntu"
    found = sorted(base.glob("*/lib/libmsodbcsql-18.*.so*"))
    return found[0] if found else None


def register_msodbcsql(directory: Path) -> bool:
    """Register [ODBC Driver 18 for SQL Server] next to the system's drivers, through an
    odbcinst.ini under ODBCSYSINI (process-wide for this test session)."""
    if os.environ.get("ODBCSYSINI"):
        return True
    library = msodbcsql_library()
    if library is None:
        return False
    system = Path("/etc/odbcinst.ini")
    text = system.read_text() if system.exists() else ""
    text += (
        "\n[ODBC Driver 18 for SQL Server]\n"
        "Description=Microsoft ODBC Driver 18 for SQL Server\n"
        f"Driver={library}\nUsageCount=1\n"
    )
    (directory / "odbcinst.ini").write_text(text)
    (directory / "odbc.ini").write_text("")
    os.environ["ODBCSYSINI"] = str(directory)
    return True
