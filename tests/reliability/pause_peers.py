"""What the pause tests deliver to and look at: the four delivery peers (a file share directory,
OpenSSH's SFTP, aiosmtpd, moto's S3) with one delivery row of each per report, the copies each
peer holds of a report; a relay between a node and the store server that freezes the node right
after it sent a chosen statement; and a picture of the store server's transactions and lock
waits (which connection of which node holds what, who waits for it) for a failure message.

Every copy a peer holds carries something of its own attempt (a `unique` file share, an SFTP
file and an S3 key named after `attempted_at`), so a second delivery of the same report adds a
copy instead of overwriting the first one.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import psutil
import pymysql
import sqlalchemy as sa

from reporthubd.store import schema
from reporthubd.store.database import Store
from tests import servers
from tests.deliverers import peers

ATTEMPT_STAMP = "{attempted_at:%Y%m%dT%H%M%S%f}"
METHODS = ("file_share", "email", "sftp", "s3")
RECIPIENT = "ops@example.com"


@dataclass
class Peers:
    """The four peers of one test module, shared by its cases (reports have unique names)."""

    root: Path
    sshd: peers.SSHServer
    smtp: peers.SMTPServer
    s3: peers.S3Server
    bucket: str

    @property
    def share(self) -> Path:
        return self.root / "share"

    @property
    def sftp_root(self) -> Path:
        return self.root / "sftp"

    def delivery_configs(self) -> dict[str, dict[str, Any]]:
        """method -> delivery_config of the report's one delivery by that method."""
        return {
            "file_share": {
                "path": str(self.share),
                "sub_path": "{report_name}",
                "overwrite": "unique",
            },
            "email": {"smtp": self.smtp.smtp_config(), "subject": "{report_name}"},
            "sftp": {
                "host": "127.0.0.1",
                "port": self.sshd.port,
                "username": self.sshd.user,
                "private_key_file": str(self.sshd.client_key_path),
                "host_key": self.sshd.host_key,
                "remote_dir": str(self.sftp_root) + "/{report_name}",
                "file_name": f"{ATTEMPT_STAMP}-{{file_name}}",
            },
            "s3": self.s3.delivery_config(
                self.bucket, key=f"{{report_name}}/{ATTEMPT_STAMP}-{{file_name}}"
            ),
        }

    def copies(self, report: str) -> dict[str, list[str]]:
        """method -> the copies of `report` that peer holds (names, subjects or keys)."""

        def files(directory: Path) -> list[str]:
            if not directory.is_dir():
                return []
            return sorted(
                str(p.relative_to(directory))
                for p in directory.rglob("*")
                if p.is_file() and not p.name.startswith(".")
            )

        client = boto3.client("s3", **self.s3.client_args())
        listed = client.list_objects_v2(Bucket=self.bucket, Prefix=f"{report}/")
        subjects = [str(m.message()["Subject"]) for m in self.smtp.mailbox.messages]
        return {
            "file_share": files(self.share / report),
            "email": [subject for subject in subjects if subject == report],
            "sftp": files(self.sftp_root / report),
            "s3": sorted(str(o["Key"]) for o in listed.get("Contents", [])),
        }


async def add_deliveries(store: Store, config_id: int, peers_: Peers) -> dict[str, int]:
    """One delivery per method (no retries: a failed attempt shows as FAILED at once) and the
    email recipient; returns method -> delivery id."""
    ids: dict[str, int] = {}
    async with store.engine.begin() as conn:
        for method, config in peers_.delivery_configs().items():
            result = await conn.execute(
                sa.insert(schema.deliveries).values(
                    config_id=config_id,
                    name=f"pause-{method}",
                    method=method,
                    delivery_config=config,
                    max_retry=0,
                )
            )
            ids[method] = int(result.inserted_primary_key[0])
        await conn.execute(
            sa.insert(schema.recipients).values(
                delivery_id=ids["email"], recipient_type="to", email=RECIPIENT
            )
        )
    return ids


# -- a relay that freezes its node mid-transaction ---------------------------------------------


class FreezingRelay:
    """A TCP relay between one node and the store server (MariaDB). Once armed, it freezes the
    node (SIGSTOP) right after relaying the first packet that contains every one of the armed
    fragments: the server runs that statement, and the node sends nothing after it (its COMMIT
    included) until it is continued. Without `arm` it only relays."""

    def __init__(self) -> None:
        self.port = servers.free_port()
        self.frozen = asyncio.Event()
        self.statement = b""
        self.upstream_ports: set[int] = set()
        self._pid: int | None = None
        self._fragments: Sequence[bytes] = ()
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: list[asyncio.StreamWriter] = []

    def store_url(self, url: str) -> str:
        """`url` (the store on the MariaDB server) through this relay."""
        direct = f"@{servers.MARIADB_HOST}:{servers.MARIADB_PORT}/"
        assert direct in url, url
        return url.replace(direct, f"@127.0.0.1:{self.port}/")

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port)

    def arm(self, pid: int, *fragments: bytes) -> None:
        self._pid, self._fragments = pid, fragments

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(
            servers.MARIADB_HOST, servers.MARIADB_PORT
        )
        self.upstream_ports.add(up_writer.get_extra_info("sockname")[1])
        self._writers += [writer, up_writer]
        for task in (
            asyncio.create_task(self._relay(reader, up_writer, watch=True)),
            asyncio.create_task(self._relay(up_reader, writer, watch=False)),
        ):
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _relay(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, watch: bool
    ) -> None:
        with contextlib.suppress(OSError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
                if watch and self._should_freeze(data):
                    assert self._pid is not None
                    os.kill(self._pid, signal.SIGSTOP)
                    self.statement = data[5:400]  # past the packet header and command byte
                    self.frozen.set()
        writer.close()

    def _should_freeze(self, data: bytes) -> bool:
        if self.frozen.is_set() or not self._fragments:
            return False
        return all(fragment in data for fragment in self._fragments)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for writer in self._writers:
            writer.close()


# -- the store server's locks ------------------------------------------------------------------

LOCK_WAITS = """
SELECT r.trx_mysql_thread_id AS waiting_thread, r.trx_query AS waiting_query,
       TIMESTAMPDIFF(SECOND, r.trx_wait_started, NOW()) AS waited_s,
       b.trx_mysql_thread_id AS blocking_thread, b.trx_query AS blocking_query,
       TIMESTAMPDIFF(SECOND, b.trx_started, NOW()) AS blocker_open_s,
       l.lock_table, l.lock_index, l.lock_mode, l.lock_type, l.lock_data
FROM information_schema.innodb_lock_waits w
JOIN information_schema.innodb_trx r ON r.trx_id = w.requesting_trx_id
JOIN information_schema.innodb_trx b ON b.trx_id = w.blocking_trx_id
LEFT JOIN information_schema.innodb_locks l ON l.lock_id = w.requested_lock_id
"""
TRANSACTIONS = """
SELECT trx_mysql_thread_id AS thread, trx_state AS state,
       TIMESTAMPDIFF(SECOND, trx_started, NOW()) AS open_s, trx_query AS query,
       trx_rows_locked AS rows_locked, trx_rows_modified AS rows_modified,
       trx_lock_structs AS lock_structs, trx_tables_locked AS tables_locked
FROM information_schema.innodb_trx ORDER BY trx_started
"""
PROCESSES = """
SELECT id AS thread, host, db, command, time AS seconds, state, LEFT(info, 300) AS info
FROM information_schema.processlist WHERE db IN %s ORDER BY id
"""


def _client_ports(pids: dict[str, int]) -> dict[int, str]:
    """Local TCP port -> node name, for every connection of the nodes' processes."""
    owners: dict[int, str] = {}
    for name, pid in pids.items():
        try:
            connections = psutil.Process(pid).net_connections(kind="tcp")
        except psutil.Error:
            continue
        for connection in connections:
            owners[connection.laddr.port] = name
    return owners


def _rows(cursor: Any, sql: str, args: Any = None) -> list[dict[str, Any]]:
    cursor.execute(sql, args)
    return list(cursor.fetchall())


def lock_picture(
    pids: dict[str, int], databases: list[str], relayed: dict[int, str] | None = None
) -> str:
    """The server's transactions, lock waits and connections to `databases`, each connection
    named by the node that holds it (`pids`: node name -> pid; `relayed`: local port of a
    relay's upstream connection -> the name of the node behind it)."""
    owners = _client_ports(pids) | (relayed or {})
    conn = pymysql.connect(
        host=servers.MARIADB_HOST,
        port=servers.MARIADB_PORT,
        user="root",
        password="",
        cursorclass=pymysql.cursors.DictCursor,
    )
    try:
        with conn.cursor() as cursor:
            processes = _rows(cursor, PROCESSES, (tuple(databases),))
            transactions = _rows(cursor, TRANSACTIONS)
            waits = _rows(cursor, LOCK_WAITS)
            status = _rows(cursor, "SHOW ENGINE INNODB STATUS")
    finally:
        conn.close()
    node_of = {}
    for process in processes:
        port = str(process["host"]).rpartition(":")[2]
        node_of[process["thread"]] = owners.get(int(port), "?") if port.isdigit() else "?"

    def who(thread: Any) -> str:
        return f"thread {thread} ({node_of.get(thread, '?')})"

    # Only this test's connections: other tests share the server.
    transactions = [t for t in transactions if t["thread"] in node_of]
    waits = [w for w in waits if w["waiting_thread"] in node_of or w["blocking_thread"] in node_of]
    lines = ["transactions:"]
    lines += [f"  {who(t.pop('thread'))}: {t}" for t in transactions] or ["  none"]
    lines.append("lock waits:")
    for wait in waits:
        waiting, blocking = wait.pop("waiting_thread"), wait.pop("blocking_thread")
        lines.append(f"  {who(waiting)} waits for {who(blocking)}: {wait}")
    if not waits:
        lines.append("  none")
    lines.append("connections:")
    lines += [f"  {who(p.pop('thread'))}: {p}" for p in processes]
    text = status[0]["Status"] if status else ""
    section = text.partition("TRANSACTIONS\n------------\n")[2].partition("--------\nFILE I/O")[0]
    threads = {f"MariaDB thread id {thread}," for thread in node_of}
    ours = [b for b in section.split("---TRANSACTION") if any(t in b for t in threads)]
    lines.append("innodb status, this test's transactions:")
    lines += [f"---TRANSACTION{block.rstrip()}" for block in ours] or ["  none"]
    return "\n".join(lines)


WAITS_ON = """
SELECT COUNT(*) FROM information_schema.innodb_lock_waits w
JOIN information_schema.innodb_trx r ON r.trx_id = w.requesting_trx_id
JOIN information_schema.processlist p ON p.id = r.trx_mysql_thread_id
WHERE p.db IN %s
"""


def lock_waits_on(databases: list[str]) -> int:
    """How many transactions on connections to `databases` wait for a lock now."""
    conn = pymysql.connect(
        host=servers.MARIADB_HOST, port=servers.MARIADB_PORT, user="root", password=""
    )
    try:
        with conn.cursor() as cursor:
            cursor.execute(WAITS_ON, (tuple(databases),))
            return int(cursor.fetchone()[0])
    finally:
        conn.close()
