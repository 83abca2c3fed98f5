"""The real peers of the deliverer tests (../shared/TESTING.md): OpenSSH sshd, aiosmtpd with
STARTTLS and AUTH, moto's S3 server, an aiohttp webhook receiver. Each listens on 127.0.0.1 on a
free port and is stopped by its own handle (sshd by its PID)."""

from __future__ import annotations

import asyncio
import getpass
import hashlib
import hmac
import os
import shutil
import socket
import ssl
import subprocess
import time
from dataclasses import dataclass, field
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path
from typing import Any

from aiohttp import web

from tests import servers

SSHD = "/usr/sbin/sshd"


def wait_port(port: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {timeout}s")


def keygen(path: Path, passphrase: str = "") -> str:
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", passphrase, "-f", str(path)],
        check=True,
        capture_output=True,
    )
    return Path(f"{path}.pub").read_text().strip()


class SSHServer:
    """OpenSSH sshd with its own host key, config and authorized key; SFTP via internal-sftp."""

    def __init__(self, directory: Path) -> None:
        if not os.path.exists(SSHD) or not shutil.which("ssh-keygen"):
            servers.unavailable(
                "OpenSSH server missing: apt-get install -y --no-install-recommends openssh-server"
            )
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self.host_key = keygen(directory / "host_key")
        self.client_key_path = directory / "client_key"
        self.client_key = keygen(self.client_key_path)
        self.stranger_key_path = directory / "stranger_key"
        keygen(self.stranger_key_path)
        self.other_host_key = keygen(directory / "other_host_key")
        self.encrypted_key_path = directory / "encrypted_key"
        self.passphrase = "key-passphrase-42"
        encrypted = keygen(self.encrypted_key_path, self.passphrase)
        (directory / "authorized_keys").write_text(f"{self.client_key}\n{encrypted}\n")
        self.known_hosts = directory / "known_hosts"
        self.user = getpass.getuser()
        self.port = servers.free_port()
        self.config = directory / "sshd_config"
        self.config.write_text(
            "\n".join(
                [
                    f"Port {self.port}",
                    "ListenAddress 127.0.0.1",
                    f"HostKey {directory / 'host_key'}",
                    f"PidFile {directory / 'sshd.pid'}",
                    f"AuthorizedKeysFile {directory / 'authorized_keys'}",
                    "PermitRootLogin prohibit-password",
                    "PasswordAuthentication no",
                    "KbdInteractiveAuthentication no",
                    "UsePAM no",
                    "StrictModes no",
                    "Subsystem sftp internal-sftp",
                    "LogLevel ERROR",
                    "",
                ]
            )
        )
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        os.makedirs("/run/sshd", exist_ok=True)
        self.log = (self.directory / "sshd.log").open("wb")
        self.proc = subprocess.Popen(
            [SSHD, "-D", "-e", "-f", str(self.config)], stdout=self.log, stderr=subprocess.STDOUT
        )
        wait_port(self.port)
        self.known_hosts.write_text(f"[127.0.0.1]:{self.port} {self.host_key}\n")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self.proc = None
            self.log.close()


# -- SMTP ---------------------------------------------------------------------------------------


def self_signed_cert(directory: Path) -> tuple[Path, Path]:
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=IP:127.0.0.1,DNS:localhost",
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    content: bytes

    def message(self) -> EmailMessage:
        parsed = BytesParser(policy=policy.default).parsebytes(self.content)
        assert isinstance(parsed, EmailMessage)
        return parsed

    def attachments(self) -> dict[str, bytes]:
        found = {}
        for part in self.message().iter_attachments():
            payload = part.get_payload(decode=True)
            assert isinstance(payload, bytes)
            found[part.get_filename() or ""] = payload
        return found


@dataclass
class Mailbox:
    """aiosmtpd handler: records messages; refuses listed recipients with 450 a number of times."""

    messages: list[Received] = field(default_factory=list)
    busy: dict[str, int] = field(default_factory=dict)
    rcpt_seen: list[str] = field(default_factory=list)

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: Any
    ) -> str:
        self.rcpt_seen.append(address)
        if self.busy.get(address, 0) > 0:
            self.busy[address] -= 1
            return "450 4.2.1 Mailbox busy, try again later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append(
            Received(
                mail_from=envelope.mail_from,
                rcpt_tos=list(envelope.rcpt_tos),
                content=bytes(envelope.original_content or envelope.content),
            )
        )
        return "250 Message accepted"


class SMTPServer:
    """aiosmtpd with STARTTLS required and AUTH (`mode="starttls"`), SMTPS (`"implicit"`), or a
    plain server offering neither TLS nor AUTH (`"plain"`)."""

    USER = "reports"
    PASSWORD = "s3cret-pass"

    def __init__(self, directory: Path, mode: str = "starttls") -> None:
        from aiosmtpd.controller import Controller
        from aiosmtpd.smtp import AuthResult, LoginPassword

        directory.mkdir(parents=True, exist_ok=True)
        self.cert, key = self_signed_cert(directory)
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.cert, key)
        self.mailbox = Mailbox()
        self.port = servers.free_port()
        self.auth_attempts = 0

        def authenticate(
            server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any
        ) -> Any:
            self.auth_attempts += 1
            ok = (
                isinstance(auth_data, LoginPassword)
                and auth_data.login == self.USER.encode()
                and auth_data.password == self.PASSWORD.encode()
            )
            return AuthResult(success=ok, handled=False)

        options: dict[str, Any] = {"data_size_limit": 96 * 1024 * 1024}
        if mode == "starttls":
            options |= {
                "tls_context": context,
                "require_starttls": True,
                "authenticator": authenticate,
                "auth_require_tls": True,
            }
        elif mode == "implicit":
            options |= {
                "ssl_context": context,
                "authenticator": authenticate,
                "auth_require_tls": False,
            }
        self.controller = Controller(self.mailbox, hostname="127.0.0.1", port=self.port, **options)

    def start(self) -> None:
        self.controller.start()

    def stop(self) -> None:
        self.controller.stop()

    def smtp_config(self, **overrides: Any) -> dict[str, Any]:
        return {
            "host": "127.0.0.1",
            "port": self.port,
            "username": self.USER,
            "password": self.PASSWORD,
            "tls": "starttls",
            "ca_file": str(self.cert),
            "timeout_seconds": 20,
        } | overrides


# -- S3 -----------------------------------------------------------------------------------------


class S3Server:
    KEY_ID = "testing-key-id"
    SECRET = "testing-secret-key"

    def __init__(self) -> None:
        from moto.server import ThreadedMotoServer

        self.port = servers.free_port()
        self.server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.server.start()
        wait_port(self.port)

    def stop(self) -> None:
        self.server.stop()

    def client_args(self) -> dict[str, Any]:
        return {
            "endpoint_url": self.endpoint,
            "aws_access_key_id": self.KEY_ID,
            "aws_secret_access_key": self.SECRET,
            "region_name": "us-east-1",
        }

    def delivery_config(self, bucket: str, **overrides: Any) -> dict[str, Any]:
        return {
            "bucket": bucket,
            "endpoint_url": self.endpoint,
            "region": "us-east-1",
            "access_key_id": self.KEY_ID,
            "secret_access_key": self.SECRET,
        } | overrides


# -- webhook ------------------------------------------------------------------------------------


@dataclass
class Hit:
    headers: dict[str, str]
    body: bytes
    at: float

    @property
    def json(self) -> Any:
        import json

        return json.loads(self.body)

    def multipart_file(self) -> tuple[dict[str, Any], bytes]:
        """(metadata, file bytes) of a multipart body."""
        import json

        content_type = self.headers["Content-Type"]
        boundary = content_type.split("boundary=", 1)[1].encode()
        parts = self.body.split(b"--" + boundary)
        metadata: dict[str, Any] = {}
        data = b""
        for part in parts:
            if b"\r\n\r\n" not in part:
                continue
            head, _, payload = part.partition(b"\r\n\r\n")
            payload = payload[:-2] if payload.endswith(b"\r\n") else payload
            if b'name="metadata"' in head:
                metadata = json.loads(payload)
            elif b'name="file"' in head:
                data = payload
        return metadata, data

    def signature_valid(self, secret: str, tolerance: float = 300) -> bool:
        """The receiver's check, as documented in reporthubd/deliverers/webhook.py."""
        header = self.headers.get("X-Reporthub-Signature", "")
        fields = dict(part.split("=", 1) for part in header.split(",") if "=" in part)
        timestamp = fields.get("t", "0")
        if abs(time.time() - int(timestamp)) > tolerance:
            return False
        expected = hmac.new(
            secret.encode(), timestamp.encode() + b"." + self.body, hashlib.sha256
        ).hexdigest()
        return hmac.compare_digest(expected, fields.get("v1", ""))


class WebhookReceiver:
    """An aiohttp server recording every request; `answers` scripts the next responses."""

    def __init__(self, port: int | None = None, tls: tuple[Path, Path] | None = None) -> None:
        self.port = port or servers.free_port()
        self.tls = tls
        self.hits: list[Hit] = []
        self.answers: list[tuple[int, dict[str, str]]] = []
        self.seen_keys: set[str] = set()
        self.accepted: list[Hit] = []
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}/hook"

    async def handle(self, request: web.Request) -> web.Response:
        hit = Hit(headers=dict(request.headers), body=await request.read(), at=time.time())
        self.hits.append(hit)
        if self.answers:
            status, headers = self.answers.pop(0)
            return web.Response(status=status, headers=headers, text=f"scripted {status}")
        key = hit.headers.get("Idempotency-Key", "")
        if key and key in self.seen_keys:
            return web.Response(status=200, text="duplicate dropped")
        self.seen_keys.add(key)
        self.accepted.append(hit)
        return web.Response(status=200, text="ok")

    async def start(self) -> None:
        app = web.Application(client_max_size=200 * 1024 * 1024)
        app.router.add_route("*", "/hook", self.handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        context = None
        if self.tls is not None:
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(*self.tls)
        site = web.TCPSite(
            self._runner, "127.0.0.1", self.port, reuse_address=True, ssl_context=context
        )
        await site.start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None


class StalledListener:
    """Accepts TCP connections and never says a word: for timeouts."""

    def __init__(self) -> None:
        self.port = servers.free_port()
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", self.port))
        self.sock.listen(16)

    def close(self) -> None:
        self.sock.close()


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


async def wait_until(predicate: Any, timeout: float = 60.0, interval: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = predicate()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        await asyncio.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s")
