"""File share delivery: a local directory or a mounted NFS/SMB share.

delivery_config keys:
- `path` (required): the base directory; it must exist (a share that is not mounted is a
  retryable failure, it may come back).
- `sub_path`: a directory template under the base (see templating.py); default none.
- `overwrite`: `overwrite` (default) replaces an existing file; `unique` adds `-1`, `-2`… before
  the extension; `fail` refuses, leaving the existing file untouched.
- `file_mode`: the new file's permissions, octal as a string (`"0640"`) or an integer.

The rendered target can never leave the base: `..`, absolute paths and symbolic links that point
out of the base are refused before anything (directory or file) is written. The write is atomic:
a temporary file in the target directory, fsync, then a rename (or a hard link for `fail` and
`unique`, which never replaces a file), then an fsync of the directory.
"""

from __future__ import annotations

import asyncio
import errno
import os
import secrets as random
from dataclasses import dataclass
from pathlib import Path

from reporthubd import logs
from reporthubd.deliverers import templating
from reporthubd.deliverers.base import Attempt, AttemptResult, Deliverer, DeliveryError
from reporthubd.deliverers.common import CHUNK, Options, ok, permanent, retryable

log = logs.get(__name__)

POLICIES = ("overwrite", "unique", "fail")


@dataclass(frozen=True, kw_only=True)
class Plan:
    base: Path
    directory: Path
    file_name: str
    policy: str
    mode: int | None


class FileShareDeliverer(Deliverer):
    def _options(self) -> Options:
        return Options(self.delivery.delivery_config, "delivery_config")

    def _base(self, options: Options) -> Path:
        base = Path(options.required("path"))
        if not base.is_absolute():
            raise DeliveryError("delivery_config.path: must be an absolute path")
        return base

    def plan(self, attempt: Attempt) -> Plan:
        """Everything decided and checked before a byte is written."""
        options = self._options()
        base = self._base(options)
        policy = options.text("overwrite", "overwrite") or "overwrite"
        if policy not in POLICIES:
            raise DeliveryError(f"delivery_config.overwrite: must be one of {', '.join(POLICIES)}")
        mode = _parse_mode(self.delivery.delivery_config.get("file_mode"))
        variables = templating.attempt_variables(attempt)
        sub = templating.safe_relative_path(
            templating.render(options.text("sub_path", "") or "", variables, what="sub_path"),
            what="sub_path",
        )
        assert attempt.job.file is not None
        name = templating.safe_file_name(attempt.job.file.name, what="file_name")
        return Plan(base=base, directory=base / sub, file_name=name, policy=policy, mode=mode)

    async def deliver(self, attempt: Attempt) -> AttemptResult:
        file = attempt.job.file
        if file is None:
            return permanent("", "no file to deliver")
        try:
            plan = self.plan(attempt)
        except DeliveryError as exc:
            return permanent(str(self.delivery.delivery_config.get("path", "")), str(exc))
        target = str(plan.directory / plan.file_name)
        try:
            temp = await asyncio.to_thread(_stage, plan, file.path)
            try:
                await attempt.confirm("moving the file into place")
                written = await asyncio.to_thread(_place_and_sync, plan, temp)
            finally:
                await asyncio.to_thread(temp.unlink, missing_ok=True)
        except DeliveryError as exc:
            return permanent(target, str(exc))
        except FileExistsError:
            return permanent(target, f"{target} exists and overwrite is 'fail'")
        except PermissionError as exc:
            return permanent(target, f"permission denied: {exc.filename or target}")
        except FileNotFoundError as exc:
            return retryable(target, f"not found (share not mounted?): {exc.filename or target}")
        except OSError as exc:
            reason = os.strerror(exc.errno) if exc.errno else str(exc)
            if exc.errno in {errno.EROFS}:
                return permanent(target, f"read-only file system: {reason}")
            return retryable(target, f"{reason} ({exc.filename or target})")
        return ok(str(written), path=str(written), size=file.size)

    async def test(self) -> AttemptResult:
        try:
            base = self._base(self._options())
        except DeliveryError as exc:
            return permanent("", str(exc))
        checks = await asyncio.to_thread(
            lambda: (base.is_dir(), os.access(base, os.W_OK | os.X_OK))
        )
        if not checks[0]:
            return retryable(str(base), f"{base} is not a directory (share not mounted?)")
        if not checks[1]:
            return permanent(str(base), f"{base} is not writable by this process")
        return ok(str(base))


def _parse_mode(raw: object) -> int | None:
    if raw is None or raw == "":
        return None
    if isinstance(raw, bool):
        raise DeliveryError('delivery_config.file_mode: must be octal like "0640"')
    if isinstance(raw, int):
        value = raw
    elif isinstance(raw, str):
        try:
            value = int(raw, 8)
        except ValueError:
            raise DeliveryError(
                f'delivery_config.file_mode: {raw!r} is not octal like "0640"'
            ) from None
    else:
        raise DeliveryError('delivery_config.file_mode: must be octal like "0640"')
    if not 0 <= value <= 0o7777:
        raise DeliveryError("delivery_config.file_mode: out of range")
    return value


def _inside(base: Path, candidate: Path) -> bool:
    real_base = os.path.realpath(base)
    real = os.path.realpath(candidate)
    return os.path.commonpath([real_base, real]) == real_base


def _stage(plan: Plan, source: Path) -> Path:
    """The file copied to a temporary name beside its final place, on disk (fsynced)."""
    if not plan.base.is_dir():
        raise FileNotFoundError(errno.ENOENT, "base path missing", str(plan.base))
    # Symbolic links inside the base may point anywhere: resolve before creating anything.
    if not _inside(plan.base, plan.directory) or not _inside(
        plan.base, plan.directory / plan.file_name
    ):
        raise DeliveryError(f"{plan.directory / plan.file_name} resolves outside the base path")
    plan.directory.mkdir(parents=True, exist_ok=True)
    if not _inside(plan.base, plan.directory):  # raced with a link created meanwhile
        raise DeliveryError(f"{plan.directory} resolves outside the base path")
    temp = plan.directory / f".{plan.file_name}.{random.token_hex(6)}.tmp"
    try:
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # umask applies
        with os.fdopen(fd, "wb") as out, source.open("rb") as src:
            while chunk := src.read(CHUNK):
                out.write(chunk)
            out.flush()
            os.fsync(out.fileno())
        if plan.mode is not None:
            os.chmod(temp, plan.mode)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    return temp


def _place_and_sync(plan: Plan, temp: Path) -> Path:
    """The staged file moved into its final place (the delivery's commit point)."""
    final = _place(plan, temp)
    _fsync_dir(plan.directory)
    return final


def _place(plan: Plan, temp: Path) -> Path:
    final = plan.directory / plan.file_name
    if plan.policy == "overwrite":
        os.replace(temp, final)
        return final
    stem, dot, ext = plan.file_name.partition(".")
    candidates = [final]
    if plan.policy == "unique":
        candidates += [plan.directory / f"{stem}-{n}{dot}{ext}" for n in range(1, 1000)]
    for candidate in candidates:
        try:
            os.link(temp, candidate)  # never replaces an existing file
        except FileExistsError:
            continue
        except OSError as exc:
            if exc.errno not in {errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP}:
                raise
            # Shares without hard links (SMB): check then rename, the best such a share allows.
            if candidate.exists():
                continue
            os.rename(temp, candidate)
            return candidate
        return candidate
    raise FileExistsError(errno.EEXIST, "exists", str(final))


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
