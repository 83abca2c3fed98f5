"""Export benchmark (issue 4): query → CSV file, reporthubd against the practical limits and pandas.

usage: .venv/bin/python bench/export.py [--rounds N] [--suite compare,scale,lag] [--rebuild]
                                        [--databases pg,my]

Builds a deterministic `sales` table (1,000,000 rows, 10 columns: int, timestamp, date, two
texts, numeric(12,2), int, boolean, a note with commas and quotes every 10th row, a text that is
NULL in a third of the rows) in a `rh_bench` database of the running PostgreSQL (127.0.0.1:5432,
user postgres) and MariaDB (127.0.0.1:3306, root), plus a 5,000,000-row `sales5m` for the scale
suite. Tables are reused between runs (`--rebuild` recreates them).

Suites:
- compare (1M rows, interleaved rounds): reporthubd's CSV report through the Engine (with its
  fast path: PostgreSQL COPY / MySQL raw text), `psql \\copy ... csv` and `mariadb -B --quick`
  (the practical limits), pandas `read_sql` + `to_csv` (psycopg 3 / PyMySQL, the common way).
- scale: reporthubd at 1M and 5M rows: peak RSS of each (memory must not grow with rows).
- lag: four reporthubd exports of 1M rows at once in one event loop, while a ticker sleeping
  10 ms measures the loop's lag (p50/p99/max) — what the control plane and the scheduler feel.

Every method runs in its own process (this script re-invoked with `--worker`), so peak RSS is
that method's own (`ru_maxrss` from os.wait4). Wall time is measured from outside the process
(interpreter start and imports included); "in-process" is the export itself. Tables print the
median (min–max) of the rounds and the ratio to the baseline computed per round.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

PG = {"host": "127.0.0.1", "port": 5432, "username": "postgres", "database": "rh_bench"}
MY = {"host": "127.0.0.1", "port": 3306, "username": "root", "password": "", "database": "rh_bench"}
COLUMNS = (
    "id, created_at, sale_date, customer_name, region, amount, quantity, is_returned, note, "
    "discount_code"
)


def pg_sales(table: str, rows: int) -> list[str]:
    return [
        f"DROP TABLE IF EXISTS {table}",
        f"""CREATE TABLE {table} AS
        SELECT g AS id,
               timestamp '2024-01-01' + g * interval '17 seconds' AS created_at,
               date '2024-01-01' + (g % 700) AS sale_date,
               'customer ' || (g % 99991) AS customer_name,
               (ARRAY['North','South','East','West','Central'])[1 + g % 5] AS region,
               round((g % 100000) * 1.37, 2)::numeric(12,2) AS amount,
               g % 50 AS quantity,
               g % 20 = 0 AS is_returned,
               'note ' || md5(g::text) || CASE WHEN g % 10 = 0 THEN ', "x"' ELSE ' ok' END
                 AS note,
               CASE WHEN g % 3 = 0 THEN NULL ELSE 'DC-' || upper(substr(md5((g*7)::text), 1, 8))
               END AS discount_code
        FROM generate_series(1, {rows}) g""",
        f"ALTER TABLE {table} ADD PRIMARY KEY (id)",
        f"VACUUM ANALYZE {table}",
    ]


def my_sales(table: str, rows: int) -> list[str]:
    return [
        f"DROP TABLE IF EXISTS {table}",
        f"""CREATE TABLE {table} (id int PRIMARY KEY, created_at datetime NOT NULL,
            sale_date date NOT NULL, customer_name varchar(40) NOT NULL,
            region varchar(20) NOT NULL, amount decimal(12,2) NOT NULL, quantity int NOT NULL,
            is_returned boolean NOT NULL, note text NOT NULL, discount_code varchar(16) NULL)
            ENGINE=InnoDB DEFAULT CHARSET=utf8mb4""",
        f"""INSERT INTO {table}
        SELECT seq, TIMESTAMP '2024-01-01 00:00:00' + INTERVAL seq * 17 SECOND,
               DATE '2024-01-01' + INTERVAL (seq % 700) DAY,
               concat('customer ', seq % 99991), ELT(1 + seq % 5, 'North', 'South', 'East',
               'West', 'Central'), ROUND((seq % 100000) * 1.37, 2), seq % 50, seq % 20 = 0,
               concat('note ', md5(seq), IF(seq % 10 = 0, ', "x"', ' ok')),
               IF(seq % 3 = 0, NULL, concat('DC-', upper(substr(md5(seq * 7), 1, 8))))
        FROM seq_1_to_{rows}""",
        f"ANALYZE TABLE {table}",
    ]


# -- setup ---------------------------------------------------------------------------------------


async def _pg_execute(database: str, statements: list[str]) -> list[Any]:
    import asyncpg

    conn = await asyncpg.connect(host="127.0.0.1", port=5432, user="postgres", database=database)
    try:
        return [await conn.fetch(statement) for statement in statements]
    finally:
        await conn.close()


async def _my_execute(database: str | None, statements: list[str]) -> list[Any]:
    import aiomysql

    conn = await aiomysql.connect(
        host="127.0.0.1", port=3306, user="root", password="", db=database, autocommit=True
    )
    try:
        out = []
        async with conn.cursor() as cursor:
            for statement in statements:
                await cursor.execute(statement)
                out.append(await cursor.fetchall())
        return out
    finally:
        conn.close()


async def _count(kind: str, table: str) -> int:
    try:
        if kind == "pg":
            rows = await _pg_execute("rh_bench", [f"SELECT count(*) FROM {table}"])
            return int(rows[0][0][0])
        rows = await _my_execute("rh_bench", [f"SELECT count(*) FROM {table}"])
        return int(rows[0][0][0])
    except Exception:
        return -1


async def setup(databases: list[str], rebuild: bool, sizes: dict[str, int]) -> None:
    if "pg" in databases:
        exists = await _pg_execute(
            "postgres", ["SELECT 1 FROM pg_database WHERE datname = 'rh_bench'"]
        )
        if not exists[0]:
            await _pg_execute("postgres", ["CREATE DATABASE rh_bench"])
    if "my" in databases:
        await _my_execute(None, ["CREATE DATABASE IF NOT EXISTS rh_bench CHARACTER SET utf8mb4"])
    for kind in databases:
        for table, rows in sizes.items():
            if not rebuild and await _count(kind, table) == rows:
                continue
            started = time.perf_counter()
            if kind == "pg":
                await _pg_execute("rh_bench", pg_sales(table, rows))
            else:
                await _my_execute("rh_bench", my_sales(table, rows))
            print(
                f"built {kind} {table} ({rows:,} rows) in {time.perf_counter() - started:.1f} s",
                flush=True,
            )


async def _template_store(path: Path) -> None:
    from reporthubd.config import StoreSettings
    from reporthubd.store import migrate
    from reporthubd.store.database import Store

    store = Store(StoreSettings(url=f"sqlite:///{path}"))
    await store.start()
    await migrate.upgrade(store)
    await store.stop()


# -- workers (each in its own process) -----------------------------------------------------------


async def _engine_export(
    kind: str, table: str, out_dir: Path, copies: int = 1, ticker: bool = False
) -> dict[str, Any]:
    """Run `copies` CSV reports of `table` through a real Engine (SQLite store in out_dir)."""
    import shutil

    import sqlalchemy as sa

    from reporthubd import domain
    from reporthubd.config import Settings
    from reporthubd.engine import Engine
    from reporthubd.store import executions, schema
    from reporthubd.store.database import Store

    # A store migrated once by the driver: alembic is not the export's cost.
    shutil.copyfile(out_dir.parent / "template.db", out_dir / "store.db")

    settings = Settings.model_validate(
        {
            "store": {"url": f"sqlite:///{out_dir}/store.db"},
            "execution": {"workspace": str(out_dir / "ws"), "max_concurrent_executions": 8},
            "logging": {"level": "WARNING"},
        }
    )
    store = Store(settings.store)
    await store.start()
    async with store.engine.begin() as conn:
        source = await conn.execute(
            sa.insert(schema.datasources).values(
                name="bench",
                type="postgresql" if kind == "pg" else "mysql",
                connection_config=PG if kind == "pg" else MY,
            )
        )
        config = await conn.execute(
            sa.insert(schema.configs).values(
                name="bench",
                datasource_id=source.inserted_primary_key[0],
                query_text=f"SELECT {COLUMNS} FROM {table}",
                output_format="csv",
                timeout_seconds=3600,
            )
        )
    config_id = int(config.inserted_primary_key[0])
    engine = Engine(settings, store, node_id="bench")
    await engine.start()
    lags: list[float] = []
    stop = asyncio.Event()

    async def tick() -> None:
        while not stop.is_set():
            before = time.perf_counter()
            await asyncio.sleep(0.01)
            lags.append(time.perf_counter() - before - 0.01)

    ticking = asyncio.create_task(tick(), name="lag-ticker") if ticker else None
    started = time.perf_counter()
    ids = [
        await engine.create_and_submit(
            config_id, trigger_type=domain.TriggerType.MANUAL, deliver=False
        )
        for _ in range(copies)
    ]
    await asyncio.gather(*(t for i in ids if (t := engine.task(i)) is not None))
    elapsed = time.perf_counter() - started
    stop.set()
    if ticking is not None:
        await ticking
    results = [await executions.get_execution(store, i) for i in ids]
    await engine.stop()
    await store.stop()
    for r in results:
        assert r is not None and r.status is domain.ExecutionStatus.COMPLETED, r
    first = results[0]
    assert first is not None
    out: dict[str, Any] = {
        "rows": first.row_count,
        "t_export_s": elapsed,
        "out_bytes": first.file_size,
        "file": first.file_path,
    }
    if lags:
        ordered = sorted(lags)
        out["lag_ms"] = {
            "p50": 1000 * ordered[len(ordered) // 2],
            "p99": 1000 * ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))],
            "max": 1000 * ordered[-1],
            "ticks": len(ordered),
        }
    return out


def _pandas_export(kind: str, table: str, out: Path) -> dict[str, Any]:
    import pandas as pd
    from sqlalchemy import create_engine, text

    url = (
        "postgresql+psycopg://postgres@127.0.0.1:5432/rh_bench"
        if kind == "pg"
        else "mysql+pymysql://root:@127.0.0.1:3306/rh_bench"
    )
    started = time.perf_counter()
    engine = create_engine(url)
    with engine.connect() as conn:
        frame = pd.read_sql(text(f"SELECT {COLUMNS} FROM {table}"), conn)
    frame.to_csv(out, index=False)
    engine.dispose()
    return {
        "rows": len(frame),
        "t_export_s": time.perf_counter() - started,
        "out_bytes": out.stat().st_size,
    }


def worker(args: argparse.Namespace) -> None:
    method, kind, table = args.worker
    out_dir = Path(args.out_dir)
    if method == "reporthubd":
        result = asyncio.run(_engine_export(kind, table, out_dir))
    elif method == "lag":
        result = asyncio.run(_engine_export(kind, table, out_dir, copies=4, ticker=True))
    elif method == "pandas":
        result = _pandas_export(kind, table, out_dir / "pandas.csv")
    else:
        raise SystemExit(f"unknown worker {method}")
    print(json.dumps(result))


# -- driver --------------------------------------------------------------------------------------


def run_measured(argv: list[str], stdout_path: Path | None = None) -> dict[str, Any]:
    """Run argv as a child; wall time and its rusage (peak RSS) via os.wait4."""
    out = stdout_path.open("wb") if stdout_path else subprocess.PIPE
    started = time.perf_counter()
    child = subprocess.Popen(argv, stdout=out, stderr=subprocess.PIPE)
    stdout = child.stdout.read() if child.stdout else b""
    stderr = child.stderr.read() if child.stderr else b""
    _, status, usage = os.wait4(child.pid, 0)
    wall = time.perf_counter() - started
    if stdout_path:
        out.close()  # type: ignore[union-attr]
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        raise RuntimeError(f"{argv[:3]}... failed ({code}): {stderr.decode()[-800:]}")
    inner: dict[str, Any] = {}
    for line in reversed(stdout.decode().splitlines()):
        if line.startswith("{"):
            inner = json.loads(line)
            break
    return {
        "wall_s": wall,
        "rss_mb": usage.ru_maxrss / 1024,
        "cpu_s": usage.ru_utime + usage.ru_stime,
        **inner,
    }


def method_argv(method: str, kind: str, table: str, out_dir: Path) -> tuple[list[str], Path | None]:
    query = f"SELECT {COLUMNS} FROM {table}"
    if method == "psql":
        return [
            "psql",
            "-X",
            "-q",
            "-h",
            "127.0.0.1",
            "-U",
            "postgres",
            "-d",
            "rh_bench",
            "-c",
            f"\\copy ({query}) to '{out_dir / 'psql.csv'}' csv header",
        ], None
    if method == "mariadb":
        return [
            "mariadb",
            "--no-defaults",
            "-h",
            "127.0.0.1",
            "-P",
            "3306",
            "-uroot",
            "rh_bench",
            "-B",
            "--quick",
            "-e",
            query,
        ], out_dir / "mariadb.tsv"
    return [
        sys.executable,
        __file__,
        "--worker",
        method,
        kind,
        table,
        "--out-dir",
        str(out_dir),
    ], None


def _rss_floor() -> str:
    """The driver's own peak RSS: children cannot be measured below it (fork inherits it)."""
    import resource

    return f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB"


def median_range(values: list[float], fmt: str = "{:.2f}") -> str:
    if not values:
        return "n/a"
    return (fmt + " (" + fmt + "–" + fmt + ")").format(
        statistics.median(values), min(values), max(values)
    )


def compare(databases: list[str], rounds: int, work: Path) -> None:
    plan = {
        "pg": [("psql", "baseline"), ("reporthubd", ""), ("pandas", "")],
        "my": [("mariadb", "baseline"), ("reporthubd", ""), ("pandas", "")],
    }
    for kind in databases:
        label = "PostgreSQL" if kind == "pg" else "MariaDB"
        methods = [m for m, _ in plan[kind]]
        results: dict[str, list[dict[str, Any]]] = {m: [] for m in methods}
        for round_no in range(rounds):
            for method in methods:
                out_dir = Path(tempfile.mkdtemp(dir=work))
                argv, stdout_path = method_argv(method, kind, "sales", out_dir)
                measured = run_measured(argv, stdout_path)
                results[method].append(measured)
                print(
                    f"  {label} round {round_no + 1} {method:<11} wall {measured['wall_s']:6.2f} s"
                    f"  rss {measured['rss_mb']:6.0f} MB",
                    flush=True,
                )
                subprocess.run(["rm", "-rf", str(out_dir)], check=True)
        base = methods[0]
        print(f"\n{label}, 1,000,000 rows → CSV ({rounds} rounds; wall from outside the process)")
        print(
            "| method | wall s | in-process s | rows/s (wall) | peak RSS MB | x baseline "
            "(per round) |"
        )
        print("|---|---|---|---|---|---|")
        for method in methods:
            runs = results[method]
            walls = [r["wall_s"] for r in runs]
            ratios = [r["wall_s"] / b["wall_s"] for r, b in zip(runs, results[base], strict=True)]
            inner = [r["t_export_s"] for r in runs if "t_export_s" in r]
            print(
                f"| {method} | {median_range(walls)} | {median_range(inner)} | "
                f"{1_000_000 / statistics.median(walls):,.0f} | "
                f"{median_range([r['rss_mb'] for r in runs], '{:.0f}')} | "
                f"{median_range(ratios)} |"
            )
        ours = statistics.median(r["wall_s"] for r in results["reporthubd"])
        pandas = statistics.median(r["wall_s"] for r in results["pandas"])
        limit = statistics.median(r["wall_s"] for r in results[base])
        target = 1.5 if kind == "pg" else 4.0
        print(
            f"reporthubd / {base}: {ours / limit:.2f}x (target ≤ {target}x); "
            f"pandas / reporthubd: {pandas / ours:.2f}x (target ≥ 3x)\n",
            flush=True,
        )


def scale(databases: list[str], work: Path) -> None:
    print("reporthubd peak RSS by result size")
    print("| database | rows | wall s | peak RSS MB | 5M / 1M RSS |")
    print("|---|---|---|---|---|")
    for kind in databases:
        peaks = {}
        for table, rows in (("sales", 1_000_000), ("sales5m", 5_000_000)):
            out_dir = Path(tempfile.mkdtemp(dir=work))
            argv, _ = method_argv("reporthubd", kind, table, out_dir)
            measured = run_measured(argv)
            assert measured["rows"] == rows, measured
            peaks[rows] = measured["rss_mb"]
            subprocess.run(["rm", "-rf", str(out_dir)], check=True)
            ratio = f"{peaks[rows] / peaks[1_000_000]:.3f}" if rows != 1_000_000 else ""
            print(
                f"| {kind} | {rows:,} | {measured['wall_s']:.2f} | {measured['rss_mb']:.0f} | "
                f"{ratio} |",
                flush=True,
            )
    print()


def lag(databases: list[str], work: Path) -> None:
    print("event-loop lag while four 1M-row exports run in one loop (ticker: sleep 10 ms)")
    print("| database | wall s | p50 ms | p99 ms | max ms | ticks | peak RSS MB |")
    print("|---|---|---|---|---|---|---|")
    for kind in databases:
        out_dir = Path(tempfile.mkdtemp(dir=work))
        argv = [
            sys.executable,
            __file__,
            "--worker",
            "lag",
            kind,
            "sales",
            "--out-dir",
            str(out_dir),
        ]
        measured = run_measured(argv)
        lags = measured["lag_ms"]
        print(
            f"| {kind} | {measured['wall_s']:.2f} | {lags['p50']:.1f} | {lags['p99']:.1f} | "
            f"{lags['max']:.1f} | {lags['ticks']} | {measured['rss_mb']:.0f} |",
            flush=True,
        )
        subprocess.run(["rm", "-rf", str(out_dir)], check=True)
    print()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--suite", default="compare,scale,lag")
    parser.add_argument("--databases", default="pg,my")
    parser.add_argument("--rebuild", action="store_true")
    parser.add_argument("--worker", nargs=3, metavar=("METHOD", "DB", "TABLE"))
    parser.add_argument("--out-dir")
    parser.add_argument("--setup", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return
    if args.setup:
        sizes = json.loads(args.setup)
        asyncio.run(setup(args.databases.split(","), args.rebuild, sizes))
        asyncio.run(_template_store(Path(args.out_dir) / "template.db"))
        return
    databases = [d for d in args.databases.split(",") if d]
    suites = args.suite.split(",")
    sizes = {"sales": 1_000_000}
    if "scale" in suites:
        sizes["sales5m"] = 5_000_000
    with tempfile.TemporaryDirectory(prefix="rh-bench-") as tmp:
        work = Path(tmp)
        # Setup runs in a child: a forked child's peak RSS starts at its parent's size, so the
        # driver stays small (stdlib only) for the measured children.
        setup_argv = [
            sys.executable,
            __file__,
            "--setup",
            json.dumps(sizes),
            "--databases",
            args.databases,
            "--out-dir",
            str(work),
        ]
        subprocess.run(setup_argv + (["--rebuild"] if args.rebuild else []), check=True)
        print(f"(driver peak RSS {_rss_floor()}: the floor of every child's figure)")
        if "compare" in suites:
            compare(databases, args.rounds, work)
        if "scale" in suites:
            scale(databases, work)
        if "lag" in suites:
            lag(databases, work)


if __name__ == "__main__":
    main()
