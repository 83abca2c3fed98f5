"""Delivery benchmark (issue 7): each deliverer sends one file to its real local peer, against a
plain baseline doing the same transfer in the same script, on the same peer.

usage: .venv/bin/python bench/deliveries.py [--mb 25] [--repeat 3] [--methods file_share,...]

Peers (as in tests/deliverers/peers.py): OpenSSH sshd, aiosmtpd with STARTTLS + AUTH, moto's S3
server, an aiohttp receiver, a temporary directory. Baselines:

- file_share: shutil.copyfile + fsync (reporthubd adds the path checks, temp file, rename).
- sftp: asyncssh `put` to the final name on one connection (reporthubd adds host key pinning,
  makedirs, temp name, stat check, rename).
- s3: aioboto3 `upload_file` (boto's managed transfer; reporthubd does its own multipart,
  metadata, HEAD check and a presigned URL).
- webhook: aiohttp POST of the raw file (reporthubd builds a multipart body and signs it with
  HMAC, streaming the file twice).
- email: aiosmtplib sending a prebuilt message with the file attached (reporthubd builds the
  message, re-reads and checks the attachment, renders the bodies).

Printed per method: the median wall time of `--repeat` runs for both, MB/s, the ratio
reporthubd/baseline, and the process's peak RSS after the method's runs. The machine is small and
shared: read the ratios, not the absolute figures.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import resource
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from email.message import EmailMessage
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from reporthubd import domain
from reporthubd.config import Settings
from reporthubd.deliverers.base import Attempt, DeliveryJob, ProducedFile, deliverer_class
from tests.deliverers import peers

MB = 1024 * 1024


def make_file(path: Path, size: int) -> ProducedFile:
    digest = hashlib.sha256()
    with path.open("wb") as out:
        left = size
        while left:
            chunk = os.urandom(min(MB, left))
            out.write(chunk)
            digest.update(chunk)
            left -= len(chunk)
    return ProducedFile(
        path=path,
        name=path.name,
        size=size,
        sha256=digest.hexdigest(),
        media_type="text/csv",
        row_count=1,
    )


def attempt_for(method: str, config: dict[str, Any], file: ProducedFile) -> Attempt:
    report = domain.ReportConfig(
        id=1,
        name="bench",
        description=None,
        datasource_id=1,
        query_text="SELECT 1",
        parameters={},
        output_format=domain.OutputFormat.CSV,
        format_options={},
        file_name_template=None,
        timeout_seconds=None,
        max_rows=None,
        empty_result_policy=domain.EmptyResultPolicy.DELIVER,
    )
    recipients = (
        domain.Recipient(
            id=1,
            delivery_id=1,
            recipient_type=domain.RecipientType.TO,
            email="bench@example.com",
            name=None,
        ),
    )
    delivery = domain.Delivery(
        id=1,
        config_id=1,
        name=method,
        method=domain.DeliveryMethod(method),
        delivery_config=config,
        max_retry=0,
        retry_interval_minutes=1,
        recipients=recipients if method == "email" else (),
    )
    job = DeliveryJob(execution_id="bench", config=report, deliveries=[delivery], file=file)
    return Attempt(job=job, delivery=delivery, number=1)


async def timed(run: Callable[[], Awaitable[Any]], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        await run()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


async def bench_method(
    method: str, file: ProducedFile, work: Path, repeat: int
) -> tuple[float, float]:
    settings = Settings()

    async def ours(config: dict[str, Any]) -> None:
        attempt = attempt_for(method, config, file)
        result = await deliverer_class(method)(attempt.delivery, settings).deliver(attempt)
        if not result.ok:
            raise RuntimeError(f"{method}: {result.error}")

    if method == "file_share":
        share = work / "share"
        share.mkdir()

        def copy() -> None:
            target = share / "baseline.csv"
            shutil.copyfile(file.path, target)
            with target.open("rb+") as handle:
                os.fsync(handle.fileno())

        return (
            await timed(lambda: ours({"path": str(share), "sub_path": "ours"}), repeat),
            await timed(lambda: asyncio.to_thread(copy), repeat),
        )

    if method == "sftp":
        import asyncssh

        server = peers.SSHServer(work / "sshd")
        server.start()
        try:
            config = {
                "host": "127.0.0.1",
                "port": server.port,
                "username": server.user,
                "private_key_file": str(server.client_key_path),
                "host_key": server.host_key,
                "remote_dir": str(work / "inbox"),
            }

            async def plain() -> None:
                async with (
                    asyncssh.connect(
                        "127.0.0.1",
                        server.port,
                        username=server.user,
                        client_keys=[str(server.client_key_path)],
                        known_hosts=None,
                    ) as conn,
                    conn.start_sftp_client() as sftp,
                ):
                    await sftp.put(str(file.path), str(work / "baseline.csv"))

            return await timed(lambda: ours(config), repeat), await timed(plain, repeat)
        finally:
            server.stop()

    if method == "s3":
        import aioboto3

        server = peers.S3Server()
        server.start()
        try:
            async with aioboto3.Session().client("s3", **server.client_args()) as s3:
                await s3.create_bucket(Bucket="bench")
            config = server.delivery_config("bench", presign_seconds=600)

            async def plain() -> None:
                async with aioboto3.Session().client("s3", **server.client_args()) as s3:
                    await s3.upload_file(str(file.path), "bench", "baseline.csv")

            return await timed(lambda: ours(config), repeat), await timed(plain, repeat)
        finally:
            server.stop()

    if method == "webhook":
        import aiohttp

        receiver = peers.WebhookReceiver()
        await receiver.start()
        try:
            config = {"url": receiver.url, "mode": "multipart", "secret": "bench-secret"}

            async def plain() -> None:
                async with aiohttp.ClientSession() as http:
                    with file.path.open("rb") as handle:
                        async with http.post(receiver.url + "?baseline", data=handle) as answer:
                            answer.raise_for_status()

            return await timed(lambda: ours(config), repeat), await timed(plain, repeat)
        finally:
            await receiver.stop()

    if method == "email":
        import aiosmtplib

        server = peers.SMTPServer(work / "smtp")
        server.start()
        try:
            config = {"smtp": server.smtp_config(), "max_attachment_mb": file.size / MB + 1}

            async def plain() -> None:
                message = EmailMessage()
                message["From"] = "reporthubd@localhost"
                message["To"] = "bench@example.com"
                message["Subject"] = "baseline"
                message.set_content("baseline")
                message.add_attachment(
                    file.path.read_bytes(), maintype="text", subtype="csv", filename=file.name
                )
                import ssl

                await aiosmtplib.send(
                    message,
                    hostname="127.0.0.1",
                    port=server.port,
                    username=server.USER,
                    password=server.PASSWORD,
                    start_tls=True,
                    tls_context=ssl.create_default_context(cafile=str(server.cert)),
                )

            return await timed(lambda: ours(config), repeat), await timed(plain, repeat)
        finally:
            server.stop()
    raise ValueError(method)


async def main() -> None:
    import logging

    for noisy in ("werkzeug", "mail.log", "asyncssh", "botocore"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=float, default=25.0)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--methods", default="file_share,sftp,s3,webhook,email")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="rh-bench-deliveries-") as tmp:
        work = Path(tmp)
        file = make_file(work / "report.csv", int(args.mb * MB))
        print(f"file: {file.size / MB:.1f} MB, median of {args.repeat} runs each")
        print(
            f"{'method':<11} {'ours s':>8} {'ours MB/s':>10} {'base s':>8} {'base MB/s':>10} "
            f"{'ratio':>6} {'peak RSS MB':>12}"
        )
        for method in args.methods.split(","):
            method_dir = work / method
            method_dir.mkdir()
            ours, base = await bench_method(method, file, method_dir, args.repeat)
            rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            mb = file.size / MB
            print(
                f"{method:<11} {ours:8.3f} {mb / ours:10.1f} {base:8.3f} {mb / base:10.1f} "
                f"{ours / base:6.2f} {rss:12.0f}"
            )


if __name__ == "__main__":
    asyncio.run(main())
