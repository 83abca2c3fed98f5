"""Chart drawing benchmark (issue 19): reporthubd's charts (layout in formats/chartdraw.py, PNG by
Pillow, vector in the PDF by reportlab's graphics) against matplotlib (Agg), for the email's PNG.

usage: .venv/bin/python bench/charts.py [--matplotlib-python PATH] [--rounds N]

matplotlib is not a dependency; give the Python of a virtualenv that has it (e.g.
`python3 -m venv /tmp/mpl && /tmp/mpl/bin/pip install matplotlib`). Each measurement runs in a
fresh process: import time (the chart's modules, cold), render time (a bar chart of 60 points in
three series and a line chart of 500 points, 1040 × 520 pixels, median of --rounds), and the
installed size of what each needs beyond the Python standard library.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

OURS = r"""
import json, sys, time
t = time.perf_counter()
from reporthubd.formats import chartdraw, charts
imported = time.perf_counter() - t
labels = [f"P{i}" for i in range(60)]
def points(kind, n, series):
    spec = charts.ChartSpec(type=charts.ChartType(kind), x="x", y=("y",), width=520, height=260)
    xs = [f"P{i}" for i in range(n)]
    return charts.ChartPoints(spec=spec, labels=xs, series=[f"s{s}" for s in range(series)],
        values=[[(i * 37 + s * 11) % 100 + 1.0 for i in range(n)] for s in range(series)],
        y_column="y")
out = {"import_s": imported}
for name, args in {"bar60x3": ("bar", 60, 3), "line500": ("line", 500, 1)}.items():
    p = points(*args)
    times = []
    for _ in range(ROUNDS):
        t = time.perf_counter()
        chartdraw.png(chartdraw.draw(p, str))
        times.append(time.perf_counter() - t)
    out[name] = sorted(times)[len(times) // 2]
print(json.dumps(out))
"""

MATPLOTLIB = r"""
import json, io, time
t = time.perf_counter()
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt
imported = time.perf_counter() - t
out = {"import_s": imported}
def draw(kind, n, series):
    fig, ax = plt.subplots(figsize=(5.2, 2.6), dpi=200)
    xs = list(range(n))
    for s in range(series):
        ys = [(i * 37 + s * 11) % 100 + 1.0 for i in range(n)]
        if kind == "bar":
            w = 0.8 / series
            ax.bar([x + s * w for x in xs], ys, width=w)
        else:
            ax.plot(xs, ys)
    ax.set_xticks(xs[:: max(1, n // 20)])
    ax.set_xticklabels([f"P{i}" for i in xs[:: max(1, n // 20)]], rotation=45)
    ax.set_title("chart")
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
for name, args in {"bar60x3": ("bar", 60, 3), "line500": ("line", 500, 1)}.items():
    times = []
    for _ in range(ROUNDS):
        t = time.perf_counter()
        draw(*args)
        times.append(time.perf_counter() - t)
    out[name] = sorted(times)[len(times) // 2]
print(json.dumps(out))
"""

SIZE = r"""
import importlib.metadata as md, json, sys, pathlib
seen, total = set(), 0
todo = list(sys.argv[1:])
while todo:
    name = todo.pop()
    key = name.lower().replace("_", "-")
    if key in seen:
        continue
    seen.add(key)
    try:
        dist = md.distribution(name)
    except md.PackageNotFoundError:
        continue
    for f in dist.files or []:
        p = pathlib.Path(dist.locate_file(f))
        if p.is_file():
            total += p.stat().st_size
    for req in dist.requires or []:
        if "extra ==" in req:
            continue
        todo.append(req.split(";")[0].split("[")[0].split("<")[0].split(">")[0].split("=")[0]
                    .split("!")[0].split("~")[0].strip())
print(json.dumps({"packages": sorted(seen), "mb": total / 1e6}))
"""


def run(python: str, code: str, rounds: int, *args: str) -> dict[str, object]:
    done = subprocess.run(
        [python, "-c", code.replace("ROUNDS", str(rounds)), *args],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).resolve().parents[1],
    )
    return json.loads(done.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--matplotlib-python", default="/tmp/mplvenv/bin/python")
    parser.add_argument("--rounds", type=int, default=9)
    args = parser.parse_args()
    ours = [run(sys.executable, OURS, args.rounds) for _ in range(3)]
    theirs = [run(args.matplotlib_python, MATPLOTLIB, args.rounds) for _ in range(3)]
    our_size = run(sys.executable, SIZE, 1, "reportlab", "pillow")
    their_size = run(args.matplotlib_python, SIZE, 1, "matplotlib")

    def median(xs: list[dict[str, object]], key: str) -> float:
        return statistics.median(float(x[key]) for x in xs)  # type: ignore[arg-type]

    print(
        "| library | installed MB (with its dependencies) | import ms | bar 60x3 PNG ms | "
        "line 500 PNG ms |"
    )
    print("|---|---|---|---|---|")
    for name, runs, size in (
        ("reporthubd (reportlab + Pillow)", ours, our_size),
        ("matplotlib 3 (Agg)", theirs, their_size),
    ):
        print(
            f"| {name} | {float(size['mb']):.0f} ({', '.join(size['packages'])}) | "  # type: ignore[arg-type]
            f"{median(runs, 'import_s') * 1000:.0f} | {median(runs, 'bar60x3') * 1000:.0f} | "
            f"{median(runs, 'line500') * 1000:.0f} |"
        )


if __name__ == "__main__":
    main()
