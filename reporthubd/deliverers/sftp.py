"""SFTP delivery with asyncssh.

delivery_config keys:
- `host` (required), `port` (22), `username` (required).
- `password`, or `private_key_file` (a path) / `private_key` (the key text; inline or a reference),
  with `passphrase` for an encrypted key.
- Host key checking is on by default: `known_hosts` (a known_hosts file) or `host_key` (the
  server's public key, pinned, e.g. "ssh-ed25519 AAAA..."); with neither, the user's
  ~/.ssh/known_hosts. `insecure_skip_host_key_check: true` turns it off, and every connection
  made that way is logged as a warning.
- `remote_dir` (template, created if missing; default the login directory), `file_name`
  (template, default the produced file's name), `timeout_seconds` (default 30) for connecting,
  logging in and each SFTP request.

The file is uploaded to a temporary name in the remote directory, its size checked with a stat,
then renamed into place (POSIX rename where the server offers it, so a reader never sees a
partial file).
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets as random
from collections.abc import Awaitable, Callable
from pathlib import PurePosixPath
from typing import Any

import asyncssh

from reporthubd import logs
from reporthubd.deliverers import templating
from reporthubd.deliverers.base import Attempt, AttemptResult, Deliverer, DeliveryError
from reporthubd.deliverers.common import Options, describe, ok, permanent, retryable

log = logs.get(__name__)


class SFTPDeliverer(Deliverer):
    def _connect_args(self) -> tuple[str, int, float, dict[str, Any]]:
        options = Options(self.delivery.delivery_config, "delivery_config")
        host = options.required("host")
        port = options.integer("port", 22)
        timeout = options.number("timeout_seconds", 30.0)
        args: dict[str, Any] = {
            "username": options.required("username"),
            "connect_timeout": timeout,
            "login_timeout": timeout,
            "agent_path": None,
            "config": None,
        }
        password = options.secret("password")
        passphrase = options.secret("passphrase")
        keys: list[Any] = []
        try:
            if key_file := options.text("private_key_file"):
                keys.append(asyncssh.read_private_key(key_file, passphrase))
            if key_text := options.secret("private_key"):
                keys.append(asyncssh.import_private_key(key_text, passphrase))
        except (OSError, asyncssh.KeyImportError, asyncssh.KeyEncryptionError) as exc:
            raise DeliveryError(f"private key unusable: {describe(exc)}") from None
        if not password and not keys:
            raise DeliveryError("delivery_config: password, private_key_file or private_key needed")
        args["client_keys"] = keys or None
        if password:
            args["password"] = password
        if not keys:
            args["preferred_auth"] = "password,keyboard-interactive"
        if options.flag("insecure_skip_host_key_check", False):
            log.warning(
                "sftp host key check disabled by configuration",
                delivery_id=self.delivery.id,
                host=host,
            )
            args["known_hosts"] = None
        elif host_key := options.text("host_key"):
            try:
                args["known_hosts"] = ([asyncssh.import_public_key(host_key)], [], [])
            except asyncssh.KeyImportError as exc:
                raise DeliveryError(f"delivery_config.host_key: {describe(exc)}") from None
        elif known := options.text("known_hosts"):
            args["known_hosts"] = known
        return host, port, timeout, args

    async def deliver(self, attempt: Attempt) -> AttemptResult:
        file = attempt.job.file
        config = self.delivery.delivery_config
        target = f"{config.get('host', '')}:{config.get('remote_dir', '')}"
        if file is None:
            return permanent(target, "no file to deliver")
        try:
            host, port, timeout, args = self._connect_args()
            options = Options(config, "delivery_config")
            variables = templating.attempt_variables(attempt)
            directory = templating.remote_path(
                templating.render(
                    options.text("remote_dir", "") or "", variables, what="remote_dir"
                ),
                what="remote_dir",
            )
            name = templating.safe_file_name(
                templating.render(
                    options.text("file_name", "{file_name}") or "{file_name}",
                    variables,
                    what="file_name",
                ),
                what="file_name",
            )
        except DeliveryError as exc:
            return permanent(target, str(exc))
        final = directory / name
        target = f"sftp://{host}:{port}/{str(final).lstrip('/')}"
        try:
            async with (
                asyncssh.connect(host, port, **args) as conn,
                conn.start_sftp_client() as sftp,
            ):
                await _upload(
                    sftp,
                    directory,
                    name,
                    file.path,
                    file.size,
                    limit=timeout,
                    confirm=attempt.confirm,
                )
        except asyncssh.HostKeyNotVerifiable as exc:
            return permanent(target, f"host key not trusted (mismatch or unknown): {exc.reason}")
        except asyncssh.PermissionDenied as exc:
            return permanent(target, f"authentication refused: {exc.reason}")
        except _SizeMismatch as exc:
            return retryable(target, str(exc))
        except asyncssh.SFTPError as exc:
            reason = f"SFTP {exc.reason} ({final})"
            if exc.code in {asyncssh.FX_PERMISSION_DENIED, asyncssh.FX_WRITE_PROTECT}:
                return permanent(target, reason)
            return retryable(target, reason)
        except asyncssh.DisconnectError as exc:
            return retryable(target, f"disconnected: {exc.reason}")
        except (OSError, TimeoutError, asyncssh.Error) as exc:
            return retryable(target, f"connection failed: {describe(exc)}")
        return ok(target, path=str(final), size=file.size)

    async def test(self) -> AttemptResult:
        config = self.delivery.delivery_config
        target = f"{config.get('host', '')}"
        try:
            host, port, timeout, args = self._connect_args()
        except DeliveryError as exc:
            return permanent(target, str(exc))
        target = f"sftp://{host}:{port}"
        try:
            async with (
                asyncssh.connect(host, port, **args) as conn,
                conn.start_sftp_client() as sftp,
            ):
                home = await asyncio.wait_for(sftp.realpath("."), timeout)
        except asyncssh.HostKeyNotVerifiable as exc:
            return permanent(target, f"host key not trusted (mismatch or unknown): {exc.reason}")
        except asyncssh.PermissionDenied as exc:
            return permanent(target, f"authentication refused: {exc.reason}")
        except (OSError, TimeoutError, asyncssh.Error) as exc:
            return retryable(target, f"connection failed: {describe(exc)}")
        return ok(target, home=str(home))


class _SizeMismatch(Exception):
    pass


async def _upload(
    sftp: asyncssh.SFTPClient,
    directory: PurePosixPath,
    name: str,
    local: Any,
    size: int,
    *,
    limit: float,
    confirm: Callable[[str], Awaitable[None]],
) -> None:
    timeout = limit
    if str(directory) not in {"", "."}:
        await asyncio.wait_for(sftp.makedirs(str(directory), exist_ok=True), timeout)
    temp = str(directory / f".{name}.{random.token_hex(6)}.part")
    final = str(directory / name)
    try:
        await sftp.put(str(local), temp)
        stored = (await asyncio.wait_for(sftp.stat(temp), timeout)).size
        if stored != size:
            raise _SizeMismatch(f"size check failed: uploaded {stored} bytes of {size}")
        await confirm("renaming the upload into place")
        try:
            await asyncio.wait_for(sftp.posix_rename(temp, final), timeout)
        except asyncssh.SFTPOpUnsupported:  # no POSIX rename: replace in two steps
            if await sftp.exists(final):
                await sftp.remove(final)
            await asyncio.wait_for(sftp.rename(temp, final), timeout)
    except BaseException:
        # The upload failed already; removing the temp file is best effort.
        with contextlib.suppress(Exception):
            await asyncio.shield(sftp.remove(temp))
        raise
