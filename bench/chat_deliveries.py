"""Chat delivery benchmark (issue 17, item 4): the slack delivery of one file through slack_sdk to
the local Slack stand-in (tests/deliverers/chat_standins.py), against a plain aiohttp POST of the
same file to the same stand-in's upload URL, and the Teams card (preview read, card built,
posted) against a POST of a fixed small JSON message. The baseline upload is the same external
upload flow by hand (files.getUploadURLExternal and the raw POST with aiohttp); the slack
delivery adds chat.postMessage, files.completeUploadExternal, the SDK and the preview.

usage: .venv/bin/python bench/chat_deliveries.py [--mb 50] [--repeat 3]

Each method runs in its own child process (the stand-in in the parent), so the peak RSS printed
(from os.wait4) is the method's own: a Slack upload streams the file, so its peak should not grow
with the file. Printed: median wall time of --repeat runs, the ratio to the baseline, peak RSS.
The machine is small and shared: read the ratios, not the absolute figures.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

MB = 1024 * 1024


def make_file(path: Path, size: int) -> str:
    digest = hashlib.sha256()
    with path.open("wb") as out:
        row = 0
        while out.tell() < size:
            lines = "".join(
                f"{row + i},region-{(row + i) % 7},{(row + i) * 3}.25\n" for i in range(5000)
            )
            row += 5000
            data = lines.encode()[: size - out.tell()]
            out.write(data)
            digest.update(data)
    return digest.hexdigest()


async def _child(method: str, base_url: str, token: str, path: Path, sha: str, size: int) -> float:
    from reporthubd import domain
    from reporthubd.config import Settings
    from reporthubd.deliverers.base import Attempt, DeliveryJob, ProducedFile, deliverer_class

    file = ProducedFile(
        path=path,
        name=path.name,
        size=size,
        sha256=sha,
        media_type="text/csv",
        row_count=1,
    )
    import aiohttp

    cls = deliverer_class(method) if not method.startswith("baseline") else None
    started = time.perf_counter()  # imports done: the clock sees the transfer only
    if method == "baseline_upload":
        headers = {"Authorization": f"Bearer {token}"}
        params = {"filename": path.name, "length": str(size)}
        async with aiohttp.ClientSession(headers=headers) as session:
            url = base_url + "files.getUploadURLExternal"
            async with session.post(url, data=params) as answer:
                upload = (await answer.json())["upload_url"]
            with path.open("rb") as handle:
                async with session.post(upload, data=handle) as answer:
                    await answer.read()
        return time.perf_counter() - started
    if method == "baseline_post":
        message = {"type": "message", "text": "x"}
        async with (
            aiohttp.ClientSession() as session,
            session.post(base_url, json=message) as answer,
        ):
            await answer.read()
        return time.perf_counter() - started
    config: dict[str, Any] = (
        {"token": token, "channel": "C0BENCH", "base_url": base_url, "max_file_mb": 4096}
        if method == "slack"
        else {"url": base_url}
    )
    delivery = domain.Delivery(
        id=1,
        config_id=1,
        name=method,
        method=domain.DeliveryMethod(method),
        delivery_config=config,
        max_retry=0,
        retry_interval_minutes=0,
    )
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
    job = DeliveryJob(execution_id="bench-run", config=report, deliveries=[delivery], file=file)
    assert cls is not None
    result = await cls(delivery, Settings()).deliver(Attempt(job=job, delivery=delivery, number=1))
    if not result.ok:
        raise SystemExit(f"{method}: {result.error}")
    return time.perf_counter() - started


def run_child(args: list[str]) -> tuple[float, float]:
    """(seconds, peak RSS MB) of one child run."""
    proc = subprocess.Popen(
        [sys.executable, __file__, "--child", *args], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    if status != 0:
        raise SystemExit(f"child {args[0]} failed: {out}")
    return float(json.loads(out)["seconds"]), usage.ru_maxrss / 1024


async def serve() -> None:
    """The stand-ins, in their own process (what they receive stays out of the clients' RSS)."""
    from tests.deliverers.chat_standins import ChatWebhookStandIn, SlackStandIn

    slack = SlackStandIn()
    hook = ChatWebhookStandIn()
    await slack.start()
    await hook.start()
    print(json.dumps({"slack": slack.base_url, "token": slack.token, "hook": hook.url()}))
    sys.stdout.flush()
    await asyncio.to_thread(sys.stdin.read)  # until the parent closes it
    await slack.stop()
    await hook.stop()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mb", type=int, default=50)
    parser.add_argument("--repeat", type=int, default=3)
    options = parser.parse_args()
    server = subprocess.Popen(
        [sys.executable, __file__, "--serve"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert server.stdout is not None and server.stdin is not None
    peers = json.loads(server.stdout.readline())
    try:
        with tempfile.TemporaryDirectory() as folder:
            for size_mb in sorted({1, options.mb}):
                path = Path(folder) / f"sales-{size_mb}mb.csv"
                sha = make_file(path, size_mb * MB)
                rows = []
                for method, url in (
                    ("baseline_upload", peers["slack"]),
                    ("slack", peers["slack"]),
                    ("baseline_post", peers["hook"]),
                    ("teams", peers["hook"]),
                ):
                    runs = [
                        run_child([method, url, peers["token"], str(path), sha])
                        for _ in range(options.repeat)
                    ]
                    seconds = statistics.median(r[0] for r in runs)
                    peak = max(r[1] for r in runs)
                    rows.append((method, seconds, peak))
                base = {m: s for m, s, _ in rows}
                print(f"file {size_mb} MB, median of {options.repeat}:")
                for method, seconds, peak in rows:
                    baseline = "baseline_upload" if method == "slack" else "baseline_post"
                    ratio = (
                        f"{seconds / base[baseline]:.2f}x"
                        if method in ("slack", "teams")
                        else "1.00x"
                    )
                    shown = f"{seconds * 1000:8.1f} ms  {ratio:>7}  peak RSS {peak:6.1f} MB"
                    print(f"  {method:16} {shown}")
    finally:
        server.stdin.close()
        server.wait(30)


if __name__ == "__main__":
    if "--child" in sys.argv:
        method, url, token, file_path, digest = sys.argv[sys.argv.index("--child") + 1 :]
        size = os.path.getsize(file_path)
        spent = asyncio.run(_child(method, url, token, Path(file_path), digest, size))
        print(json.dumps({"seconds": spent}))
    elif "--serve" in sys.argv:
        asyncio.run(serve())
    else:
        main()
