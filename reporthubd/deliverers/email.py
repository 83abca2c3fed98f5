"""Email delivery with aiosmtplib.

Server settings come from `[smtp]` in the config, overridden per delivery by `delivery_config.smtp`
(`host`, `port`, `username`, `password`, `tls`, `timeout_seconds`, `from_address`, `ca_file`,
`validate_certs`). `tls`: `implicit` (SMTPS), `starttls` (required), `none` (plain, loopback
hosts only) or `auto` (the default: STARTTLS required unless the host is loopback, where it is
used when offered).

delivery_config keys: `subject` and `body` (templates, see templating.py), `from_address`,
`reply_to`, `preview_rows` (default 10: the first rows of the result, in the report's column
formats, shown in the body; 0: none), `title`, `locale` and `timezone` (the audience's),
`html_template` and `text_template` (sandboxed Jinja; the body and its variables:
email_body.py), `max_attachment_mb`
(default 20) and `oversize`: a file over the limit is zipped; if the zip is still over it, the
attempt fails with the reason (`oversize: "fail"`, the default) or, with `oversize: "link"`, the
mail carries the presigned download link of an S3 delivery of the same execution instead of the
file. The attachment is read back and checked against the produced file's size (and hash) before
sending: never an empty, truncated or misnamed attachment.

Recipients are the delivery's active `to`/`cc`/`bcc` rows, or the subset an attempt names (a retry
goes only to the recipients that failed). The result's `details` split the recipients by outcome:
`accepted`, and `refused` (each with the server's answer and whether a retry can help: 4xx replies
can, 5xx cannot); the ledger writes one row per group.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import io
import os
import ssl
import uuid
import zipfile
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import formataddr
from pathlib import Path
from typing import Any

import aiosmtplib

from reporthubd import domain, secrets
from reporthubd.config import Settings, is_loopback
from reporthubd.deliverers import email_body, templating
from reporthubd.deliverers.base import (
    Attempt,
    AttemptResult,
    Deliverer,
    DeliveryError,
    ProducedFile,
)
from reporthubd.deliverers.common import (
    CHUNK,
    Options,
    describe,
    is_certificate_error,
    ok,
    permanent,
    retryable,
)

MB = 1024 * 1024
DEFAULT_SUBJECT = "Report {report_name} — {date}"
DEFAULT_BODY = "The report {report_name} is attached."


@dataclass(frozen=True, kw_only=True)
class Server:
    host: str
    port: int
    username: str | None
    password: str | None
    tls: str
    timeout: float
    from_address: str
    reply_to: str | None
    ca_file: str | None
    validate_certs: bool

    @property
    def target(self) -> str:
        return f"smtp://{self.host}:{self.port}"


@dataclass(frozen=True, kw_only=True)
class Attachment:
    path: Path
    name: str
    media_type: str
    size: int
    sha256: str | None
    zipped: bool


class Oversize(Exception):
    """The file stays over the attachment limit even zipped."""


def server_settings(delivery: domain.Delivery, settings: Settings) -> Server:
    smtp = settings.smtp
    options = Options(delivery.delivery_config, "delivery_config")
    override = Options(options.mapping("smtp"), "delivery_config.smtp")
    host = override.text("host", smtp.host) or smtp.host
    tls = override.text("tls", smtp.tls) or smtp.tls
    if tls not in {"auto", "starttls", "implicit", "none"}:
        raise DeliveryError("delivery_config.smtp.tls: must be auto, starttls, implicit or none")
    if tls == "none" and not is_loopback(host):
        raise DeliveryError(
            f"smtp tls 'none' is only allowed for a loopback host, not {host}: use starttls"
        )
    password = override.secret("password")
    if password is None and smtp.password is not None and "username" not in override.config:
        try:
            password = secrets.resolve(smtp.password, where="smtp.password")
        except secrets.SecretError as exc:
            raise DeliveryError(str(exc)) from None
    return Server(
        host=host,
        port=override.integer("port", smtp.port),
        username=override.text("username", smtp.username),
        password=password,
        tls=tls,
        timeout=override.number("timeout_seconds", smtp.timeout_seconds),
        from_address=options.text("from_address")
        or override.text("from_address")
        or smtp.from_address,
        reply_to=options.text("reply_to") or smtp.reply_to,
        ca_file=override.text("ca_file", getattr(smtp, "ca_file", None)),
        validate_certs=override.flag("validate_certs", True),
    )


class EmailDeliverer(Deliverer):
    async def deliver(self, attempt: Attempt) -> AttemptResult:
        file = attempt.job.file
        options = Options(self.delivery.delivery_config, "delivery_config")
        recipients = list(attempt.recipients or self.delivery.recipients)
        try:
            server = server_settings(self.delivery, self.settings)
        except DeliveryError as exc:
            return permanent("smtp", str(exc))
        target = server.target
        if not recipients:
            return permanent(target, "no active recipients")
        if file is None:
            return permanent(target, "no file to deliver")
        try:
            limit = options.number("max_attachment_mb", 20.0) * MB
            oversize = options.text("oversize", "fail") or "fail"
            if oversize not in {"fail", "link"}:
                raise DeliveryError("delivery_config.oversize: must be fail or link")
            preview_rows = email_body.preview_rows(options)
            variables = templating.attempt_variables(attempt)
            subject = templating.render(
                options.text("subject", DEFAULT_SUBJECT) or DEFAULT_SUBJECT,
                variables,
                what="subject",
            )
            intro = templating.render(
                options.text("body", DEFAULT_BODY) or DEFAULT_BODY, variables, what="body"
            )
        except DeliveryError as exc:
            return permanent(target, str(exc))
        details: dict[str, Any] = {}
        link: str | None = None
        try:
            attachment: Attachment | None = await asyncio.to_thread(prepare_attachment, file, limit)
        except Oversize as exc:
            if oversize != "link":
                return permanent(target, str(exc), recipients=_addresses(recipients))
            link = variables.get("download_url")
            if not link:
                return permanent(
                    target,
                    f"{exc}; oversize is 'link' but no S3 delivery of this execution "
                    "recorded a presigned URL",
                )
            attachment = None
            details["sent_as"] = "link"
        except DeliveryError as exc:
            return permanent(target, str(exc))
        except OSError as exc:
            return retryable(target, f"cannot read the produced file: {describe(exc)}")
        if attachment is not None:
            details["sent_as"] = "zip" if attachment.zipped else "attachment"
            details["attachment"] = attachment.name
        try:
            message = await asyncio.to_thread(
                build_message,
                server=server,
                recipients=recipients,
                subject=subject,
                intro=intro,
                variables=variables,
                attempt=attempt,
                attachment=attachment,
                link=link,
                preview_rows=preview_rows,
                options=options,
                default_zone=self.settings.scheduler.timezone,
            )
        except DeliveryError as exc:
            return permanent(target, str(exc))
        details["message_id"] = message["Message-ID"]
        return await self._send(server, message, recipients, details, confirm=attempt.confirm)

    async def _send(
        self,
        server: Server,
        message: EmailMessage,
        recipients: Sequence[domain.Recipient],
        details: dict[str, Any],
        *,
        confirm: Callable[[str], Awaitable[None]],
    ) -> AttemptResult:
        target = server.target
        addresses = [r.email for r in recipients]
        try:
            async with _client(server) as smtp:
                await confirm("sending the message")
                refused, _ = await smtp.send_message(
                    message, sender=server.from_address, recipients=addresses
                )
        except aiosmtplib.SMTPRecipientsRefused as exc:
            refused = {
                error.recipient: aiosmtplib.SMTPResponse(error.code, error.message)
                for error in exc.recipients
            }
        except aiosmtplib.SMTPAuthenticationError as exc:
            if 400 <= exc.code < 500:
                return retryable(target, f"authentication failed for now: {exc.code} {exc.message}")
            return permanent(target, f"authentication refused: {exc.code} {exc.message}")
        except aiosmtplib.SMTPResponseException as exc:
            reason = f"SMTP {exc.code} {exc.message}"
            if 400 <= exc.code < 500:
                return retryable(target, reason)
            return permanent(target, reason)
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            return _connection_failure(target, exc)
        failed = []
        for recipient in recipients:
            answer = refused.get(recipient.email)
            if answer is None:
                continue
            code = int(getattr(answer, "code", 0) or 0)
            text = str(getattr(answer, "message", answer))
            failed.append(
                {
                    "email": recipient.email,
                    "type": recipient.recipient_type.value,
                    "error": secrets.redact_text(f"SMTP {code} {text}"),
                    "retryable": 400 <= code < 500,
                }
            )
        accepted = [r.email for r in recipients if r.email not in refused]
        details |= {"accepted": accepted, "refused": failed}
        if not failed:
            return ok(target, **details)
        error = "; ".join(f"{item['email']}: {item['error']}" for item in failed)
        return AttemptResult(
            ok=False,
            target=target,
            error=f"refused by the server: {error}",
            retryable=any(item["retryable"] for item in failed),
            details=details,
        )

    async def test(self) -> AttemptResult:
        try:
            server = server_settings(self.delivery, self.settings)
        except DeliveryError as exc:
            return permanent("smtp", str(exc))
        try:
            async with _client(server) as smtp:
                await smtp.noop()
        except aiosmtplib.SMTPAuthenticationError as exc:
            return permanent(server.target, f"authentication refused: {exc.code} {exc.message}")
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            return _connection_failure(server.target, exc)
        return ok(server.target)


def _connection_failure(target: str, exc: BaseException) -> AttemptResult:
    """A server lacking what the settings require (STARTTLS, AUTH) will not grow it by waiting:
    permanent. Connection errors and timeouts: retryable."""
    if isinstance(exc, aiosmtplib.SMTPNotSupported) or "not supported" in str(exc):
        return permanent(target, f"server does not support what is required: {describe(exc)}")
    if is_certificate_error(exc):
        return permanent(target, f"TLS certificate not verified: {describe(exc)}")
    return retryable(target, f"SMTP connection failed: {describe(exc)}")


def start_tls_mode(server: Server) -> bool | None:
    """aiosmtplib's `start_tls`: True required, False never, None when the server offers it."""
    if server.tls in {"implicit", "none"}:
        return False
    if server.tls == "starttls":
        return True
    return None if is_loopback(server.host) else True


@functools.lru_cache(maxsize=32)
def _context(ca_file: str | None, stamp: float) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=ca_file)


def tls_context(ca_file: str | None) -> ssl.SSLContext:
    """The verifying TLS context, built once per CA file (and again when the file changes).
    Building one loads the CA bundle: bench/notices.py measured 200 ms of CPU per message, 80 %
    of an email notice's cost, when every attempt built its own."""
    try:
        stamp = os.stat(ca_file).st_mtime if ca_file else 0.0
    except OSError:
        stamp = -1.0  # let ssl report the missing file
    return _context(ca_file, stamp)


class _client:
    """Connect, secure, log in; quit on the way out."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.smtp: aiosmtplib.SMTP | None = None

    async def __aenter__(self) -> aiosmtplib.SMTP:
        server = self.server
        context = None
        if server.tls != "none" and (server.ca_file or server.validate_certs):
            context = tls_context(server.ca_file)
        start_tls = start_tls_mode(server)
        smtp = aiosmtplib.SMTP(
            hostname=server.host,
            port=server.port,
            use_tls=server.tls == "implicit",
            start_tls=start_tls,
            validate_certs=server.validate_certs,
            tls_context=context if server.validate_certs else None,
            timeout=server.timeout,
        )
        await smtp.connect()
        self.smtp = smtp
        try:
            if server.username:
                await smtp.login(server.username, server.password or "")
        except BaseException:
            smtp.close()
            raise
        return smtp

    async def __aexit__(self, *exc: object) -> None:
        if self.smtp is None:
            return
        try:
            await self.smtp.quit()
        except (aiosmtplib.SMTPException, OSError, TimeoutError):
            self.smtp.close()


def _addresses(recipients: Sequence[domain.Recipient]) -> list[str]:
    return [r.email for r in recipients]


def prepare_attachment(file: ProducedFile, limit: float) -> Attachment:
    """The file as it will be attached, zipped when over the limit; checked byte for byte
    against what the engine produced. Raises Oversize when even the zip is too large."""
    if not file.name or "/" in file.name or not file.path.is_file():
        raise DeliveryError(f"the produced file {file.name!r} is missing from the workspace")
    actual = file.path.stat().st_size
    if actual != file.size or actual == 0:
        raise DeliveryError(
            f"the produced file {file.name} has {actual} bytes, expected {file.size}: not sent"
        )
    if file.size <= limit:
        return Attachment(
            path=file.path,
            name=file.name,
            media_type=file.media_type,
            size=file.size,
            sha256=file.sha256,
            zipped=False,
        )
    zipped = file.path.with_name(f"{file.name}.zip")
    temp = zipped.with_name(f".{zipped.name}.tmp")
    with zipfile.ZipFile(temp, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=6) as archive:
        archive.write(file.path, arcname=file.name)
    temp.replace(zipped)
    size = zipped.stat().st_size
    limit_mb = limit / MB
    if size > limit:
        zipped.unlink(missing_ok=True)
        raise Oversize(
            f"{file.name} is {file.size / MB:.1f} MB, {size / MB:.1f} MB zipped: over the "
            f"attachment limit of {limit_mb:g} MB"
        )
    return Attachment(
        path=zipped,
        name=zipped.name,
        media_type="application/zip",
        size=size,
        sha256=None,
        zipped=True,
    )


def build_message(
    *,
    server: Server,
    recipients: Sequence[domain.Recipient],
    subject: str,
    intro: str,
    variables: Mapping[str, Any],
    attempt: Attempt,
    attachment: Attachment | None,
    link: str | None,
    preview_rows: int,
    options: Options,
    default_zone: str = "UTC",
) -> EmailMessage:
    """The whole message: headers, the text and HTML bodies (email_body.py) with the chart as
    a CID image of the HTML part, the attachment. Blocking: call off the loop."""
    file = attempt.job.file
    preview = (
        email_body.read_preview(file, preview_rows, attempt.job.config)
        if file is not None
        else None
    )
    body = email_body.compose(
        attempt=attempt,
        run=variables,
        intro=intro,
        options=options,
        preview=preview,
        link=link,
        attached=attachment.name if attachment is not None else None,
        default_zone=default_zone,
    )
    message = EmailMessage()
    message["Subject"] = " ".join(subject.split())
    message["From"] = server.from_address
    to = [_format(r) for r in recipients if r.recipient_type is domain.RecipientType.TO]
    cc = [_format(r) for r in recipients if r.recipient_type is domain.RecipientType.CC]
    if to:
        message["To"] = ", ".join(to)
    if cc:
        message["Cc"] = ", ".join(cc)
    if not to and not cc:
        message["To"] = "undisclosed-recipients:;"
    if server.reply_to:
        message["Reply-To"] = server.reply_to
    domain_part = server.from_address.rpartition("@")[2] or "reporthubd"
    # The same Message-ID on every attempt, node and restart (from the idempotency key): SMTP
    # does not deduplicate, but mail stores and clients that drop a second copy of a
    # Message-ID they hold (Gmail does) then show a message resent after a kill once.
    key = uuid.uuid5(uuid.NAMESPACE_URL, f"reporthubd:{attempt.idempotency_key}")
    message["Message-ID"] = f"<{key}@{domain_part}>"
    message["X-Reporthub-Execution"] = attempt.job.execution_id
    message["X-Reporthub-Idempotency-Key"] = attempt.idempotency_key

    message.set_content(body.text)
    message.add_alternative(body.html, subtype="html")
    html_part = message.get_body(preferencelist=("html",))
    assert html_part is not None
    for image in body.images:
        html_part.add_related(
            image.data,
            maintype="image",
            subtype="png",
            cid=f"<{image.cid}>",
            filename=image.filename,
            disposition="inline",
        )

    if attachment is not None:
        data = _read_checked(attachment)
        maintype, _, subtype = attachment.media_type.partition("/")
        message.add_attachment(
            data,
            maintype=maintype or "application",
            subtype=subtype or "octet-stream",
            filename=attachment.name,
        )
    return message


def _read_checked(attachment: Attachment) -> bytes:
    buffer = io.BytesIO()
    digest = hashlib.sha256()
    with attachment.path.open("rb") as handle:
        while chunk := handle.read(CHUNK):
            buffer.write(chunk)
            digest.update(chunk)
    data = buffer.getvalue()
    if len(data) != attachment.size or not data:
        raise DeliveryError(
            f"attachment {attachment.name}: read {len(data)} bytes, expected {attachment.size}"
        )
    if attachment.sha256 and digest.hexdigest() != attachment.sha256:
        raise DeliveryError(f"attachment {attachment.name}: content differs from the produced file")
    return data


def _format(recipient: domain.Recipient) -> str:
    if recipient.name:
        try:
            return str(Address(display_name=recipient.name, addr_spec=recipient.email))
        except (ValueError, IndexError):
            pass
    return formataddr((recipient.name or "", recipient.email))
