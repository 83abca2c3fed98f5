"""Workbook benchmark (issue 18 item 3): three sheets of n/3 rows each against one sheet of n rows,
the same rows (bench/formats.py's `sales` shape) through the same ExcelWriter (stream engine),
the sheets driven as engine.sections drives them (formats.workbook.Book, one SectionWriter per
query, `begin_section` between them).

usage: .venv/bin/python bench/workbook.py [--rows N] [--rounds R] [--format excel|pdf]

Each method runs in its own process (peak RSS is its own, from os.wait4); rounds interleave; the
table prints median (min–max) and the ratio to the one-sheet file, per round. Each sheet streams:
peak RSS must not grow with the number of sheets.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

_spec = importlib.util.spec_from_file_location(
    "bench_formats", Path(__file__).with_name("formats.py")
)
assert _spec is not None and _spec.loader is not None
fx = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(fx)


async def _write(fmt: str, sheets: int, n: int, out: Path) -> int:
    from reporthubd.formats import capture, workbook
    from reporthubd.formats.base import writer_class

    options: dict[str, Any] = {}
    if sheets > 1:
        options["sheet_name"] = "S1"
        options["sheets"] = [{"name": f"S{i}", "query": "x"} for i in range(2, sheets + 1)]
    plan = workbook.split(fmt, options)
    writer = capture.wrap(writer_class(fmt)(options, fx._context()), options)
    per = n // sheets
    if plan is None:
        await writer.open(out, fx.columns())
        for batch in fx.batches(n):
            await writer.write_batch(batch)
        return (await writer.close()).rows
    book = workbook.Book(writer, plan)
    written = None
    for index in range(book.count):
        part = book.part(index)
        await part.open(out, fx.columns())
        for batch in fx.batches(per):
            await part.write_batch(batch)
        written = await part.close()
    assert written is not None
    return written.rows


def worker(fmt: str, sheets: int, n: int, out: Path) -> None:
    import resource

    started = time.perf_counter()
    rows = asyncio.run(_write(fmt, sheets, n, out))
    print(
        json.dumps(
            {
                "rows": rows,
                "t_s": time.perf_counter() - started,
                "maxrss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
            }
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=150_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--format", default="excel", choices=("excel", "pdf"))
    parser.add_argument("--worker", nargs=3)
    args = parser.parse_args()
    if args.worker:
        sheets, n, out = args.worker
        worker(args.format, int(sheets), int(n), Path(out))
        return
    methods = {"one sheet": 1, "three sheets": 3}
    results: dict[str, list[dict[str, Any]]] = {m: [] for m in methods}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            for name, sheets in methods.items():
                out = Path(tmp) / f"wb-{sheets}.{'xlsx' if args.format == 'excel' else 'pdf'}"
                cmd = [sys.executable, __file__, "--format", args.format, "--worker"]
                x = fx.run_measured([*cmd, str(sheets), str(args.rows), str(out)])
                if x["rc"] != 0:
                    raise SystemExit(f"{name} failed: {x['stderr']}")
                x["mb"] = out.stat().st_size / 1e6
                results[name].append(x)
                print(
                    f"  r{r} {name:12s} wall={x['wall_s']:.2f}s rss={x['rss_mb']:.0f}MB "
                    f"file={x['mb']:.1f}MB rows={x['inner']['rows']}",
                    flush=True,
                )
    print(f"\n### workbook ({args.format}): {args.rows:,} rows, {args.rounds} round(s)\n")
    print("| method | wall s | ratio | peak RSS MB | RSS ratio | file MB |")
    print("|---|---|---|---|---|---|")
    base = results["one sheet"]
    for name, xs in results.items():
        ratio = [x["wall_s"] / b["wall_s"] for x, b in zip(xs, base, strict=True)]
        rss = [x["rss_mb"] / b["rss_mb"] for x, b in zip(xs, base, strict=True)]
        print(
            f"| {name} | {fx.med([x['wall_s'] for x in xs])} | {statistics.median(ratio):.2f} | "
            f"{fx.med([x['rss_mb'] for x in xs], '{:.0f}')} | {statistics.median(rss):.2f} | "
            f"{statistics.median([x['mb'] for x in xs]):.1f} |"
        )


if __name__ == "__main__":
    main()
