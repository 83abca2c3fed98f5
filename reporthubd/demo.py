"""`reporthubd demo`: the daemon with sample data and reports in a local folder, no setup needed.

On a fresh machine (no database server, no configuration) it creates, or reuses, a folder holding:

- `config.toml`: the demo's settings (a SQLite store, the workspace, INFO logs);
- `store.db`: the SQLite store (migrated on start);
- `sales.db`: a SQLite sample datasource, about 100,000 orders generated here from a fixed seed
  (regions, products, customers with accented and CJK names, decimal amounts, UTC timestamps)
  over the 90 days up to the day (UTC) it is generated. It is reused for the rest of that day;
  on a later day (or after a demo upgrade that changed the generator) it is generated again, so
  "yesterday" and "the last hour" always hold orders: the same rows, shifted to the new day,
  written to a temporary file renamed over the old one (about half a second);
- `reports/`: where the demo reports' file-share deliveries write their files.

The demo reports are the catalog file `reporthubd/demo_catalog.toml`, applied through
`store.catalog.apply` on every start (matched by name: a second run changes nothing). Then the
daemon starts with its control plane on 127.0.0.1 (port 8000, or a free port when 8000 is taken
and no `--listen` was given), runs one report at once so that a file lands without waiting for
the next minute, and prints what to open and what to try. Ctrl-C stops it (exit 0).
"""

from __future__ import annotations

import asyncio
import os
import random
import shlex
import socket
import sqlite3
import sys
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import quote

from reporthubd import catalog, domain, logs
from reporthubd.config import ConfigError, Settings, load_settings, parse_listen
from reporthubd.systemd import Notifier

DEFAULT_LISTEN = "127.0.0.1:8000"
CATALOG_RESOURCE = "demo_catalog.toml"
DEMO_REPORTS = ("daily-orders", "regional-sales", "sales-summary", "orders-feed")
"""The packaged catalog's reports, in the order the banner lists them. Each is run once at
start-up (a manual run), so one file of each format lands before the first scheduled fire."""

CONFIG_TEMPLATE = """\
# Written by `reporthubd demo`. Every setting is described in config.toml.example.
# The control plane address comes from `reporthubd demo --listen` (default 127.0.0.1:8000).
[store]
url = "sqlite:///{store}"

[execution]
workspace = "{workspace}"
max_concurrent_executions = 2
file_retention_hours = 24

[scheduler]
reload_interval_seconds = 10

[logging]
level = "INFO"
format = "auto"
"""

# -- the sample dataset ---------------------------------------------------------------------------

DATASET_VERSION = "1"
SEED = 20_261_129
ORDERS = 100_000
CUSTOMERS = 3_000
DAYS = 90
CENT = Decimal("0.01")

# region -> (country, first names, family names, family name first, separator)
PEOPLE: dict[str, list[tuple[str, tuple[str, ...], tuple[str, ...], bool, str]]] = {
    "Europe": [
        (
            "Germany",
            ("Jürgen", "Lena", "Matthias", "Anja"),
            ("Müller", "Schäfer", "Groß", "Köhler"),
            False,
            " ",
        ),
        (
            "France",
            ("François", "Anaïs", "Hélène", "Jérôme"),
            ("Dubois", "Lefèvre", "Moreau", "Girard"),
            False,
            " ",
        ),
        (
            "Spain",
            ("José", "María", "Íñigo", "Lucía"),
            ("García", "Núñez", "Muñoz", "Peña"),
            False,
            " ",
        ),
        (
            "Poland",
            ("Łukasz", "Małgorzata", "Zofia", "Paweł"),
            ("Nowak", "Wiśniewski", "Wójcik", "Kowalczyk"),
            False,
            " ",
        ),
        (
            "Sweden",
            ("Björn", "Åsa", "Linnéa", "Göran"),
            ("Öberg", "Lindqvist", "Sjöberg", "Åkesson"),
            False,
            " ",
        ),
    ],
    "Americas": [
        (
            "United States",
            ("James", "Emily", "Zoë", "Michael"),
            ("Smith", "Johnson", "O'Brien", "Rivera"),
            False,
            " ",
        ),
        (
            "Brazil",
            ("João", "Conceição", "Luís", "Ana"),
            ("Araújo", "Gonçalves", "Simões", "Brandão"),
            False,
            " ",
        ),
        (
            "Mexico",
            ("Sofía", "Ramón", "Andrés", "Xóchitl"),
            ("Hernández", "López", "Martínez", "Ibáñez"),
            False,
            " ",
        ),
        (
            "Canada",
            ("Chloé", "Étienne", "Geneviève", "Noah"),
            ("Tremblay", "Côté", "Bélanger", "Gagnon"),
            False,
            " ",
        ),
    ],
    "Asia-Pacific": [
        ("Japan", ("太郎", "花子", "翔", "陽菜"), ("山田", "佐藤", "鈴木", "高橋"), True, " "),
        ("South Korea", ("민준", "서연", "지호", "하은"), ("김", "이", "박", "최"), True, ""),
        (
            "Vietnam",
            ("Văn An", "Thị Hoa", "Minh Đức", "Ngọc Ánh"),
            ("Nguyễn", "Trần", "Lê", "Phạm"),
            True,
            " ",
        ),
        (
            "India",
            ("Aarav", "Priya", "Ananya", "Rohan"),
            ("Sharma", "Patel", "Iyer", "Reddy"),
            False,
            " ",
        ),
        (
            "Australia",
            ("Olivia", "Jack", "Chloe", "Liam"),
            ("Wilson", "Taylor", "Kelly", "Nguyen"),
            False,
            " ",
        ),
    ],
}
REGION_WEIGHTS = {"Europe": 40, "Americas": 35, "Asia-Pacific": 25}
# (name, category, unit price, popularity)
PRODUCTS = (
    ("Espresso machine", "Kitchen", "249.00", 6),
    ("Coffee grinder", "Kitchen", "89.90", 9),
    ("Café au lait cups (4)", "Kitchen", "24.50", 14),
    ("Standing desk", "Office", "499.00", 4),
    ("Ergonomic chair", "Office", "329.00", 5),
    ("Desk lamp", "Office", "39.95", 12),
    ("Noise-cancelling headphones", "Electronics", "199.00", 8),
    ("USB-C dock", "Electronics", "129.00", 9),
    ("Mechanical keyboard", "Electronics", "109.00", 10),
    ("Notebook A5 (3-pack)", "Stationery", "12.90", 23),
)
DISCOUNTS = (Decimal("0"), Decimal("0.05"), Decimal("0.10"), Decimal("0.15"))
DISCOUNT_WEIGHTS = (70, 15, 10, 5)
QUANTITY_WEIGHTS = (60, 20, 10, 6, 4)  # 1..5 units

SCHEMA = """
CREATE TABLE dataset_info (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE customers (
    customer_id INTEGER PRIMARY KEY, name TEXT NOT NULL, country TEXT NOT NULL,
    region TEXT NOT NULL);
CREATE TABLE products (
    product_id INTEGER PRIMARY KEY, name TEXT NOT NULL, category TEXT NOT NULL,
    unit_price NUMERIC(10, 2) NOT NULL);
CREATE TABLE orders (
    order_id INTEGER PRIMARY KEY, ordered_at TEXT NOT NULL,
    customer_id INTEGER NOT NULL REFERENCES customers,
    product_id INTEGER NOT NULL REFERENCES products,
    quantity INTEGER NOT NULL, unit_price NUMERIC(10, 2) NOT NULL, discount NUMERIC(4, 2) NOT NULL,
    amount NUMERIC(12, 2) NOT NULL);
"""


@dataclass(frozen=True, kw_only=True)
class Dataset:
    path: Path
    orders: int
    first_day: date
    last_day: date
    generated: bool
    """True when this run generated it, False when an existing one was reused."""


def _dataset_info(path: Path) -> dict[str, str] | None:
    try:
        conn = sqlite3.connect(f"file:{quote(str(path))}?mode=ro", uri=True)
    except sqlite3.Error:
        return None
    try:
        return dict(conn.execute("SELECT key, value FROM dataset_info").fetchall())
    except sqlite3.Error:
        return None
    finally:
        conn.close()


def ensure_dataset(path: Path, *, today: date) -> Dataset:
    """Reuse the dataset at `path` when it is current (same generator version, its newest day
    is `today`); otherwise generate it into a temporary file and rename that over it."""
    info = _dataset_info(path) if path.exists() else None
    if info is not None and info.get("version") == DATASET_VERSION:
        last_day = date.fromisoformat(info["last_day"])
        if last_day >= today:
            return Dataset(
                path=path,
                orders=int(info["orders"]),
                first_day=date.fromisoformat(info["first_day"]),
                last_day=last_day,
                generated=False,
            )
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.unlink(missing_ok=True)
    try:
        first_day = generate(temporary, last_day=today)
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
    return Dataset(path=path, orders=ORDERS, first_day=first_day, last_day=today, generated=True)


def generate(path: Path, *, last_day: date) -> date:
    """Write the sample sales database to `path`: the same rows for the same `last_day` (the
    random choices come from a fixed seed; only the calendar is anchored on `last_day`)."""
    rng = random.Random(SEED)
    first_day = last_day - timedelta(days=DAYS - 1)

    people = [(region, person) for region, group in PEOPLE.items() for person in group]
    customers = []
    for customer_id in range(1, CUSTOMERS + 1):
        region = rng.choices(list(REGION_WEIGHTS), weights=list(REGION_WEIGHTS.values()))[0]
        country, firsts, families, family_first, sep = rng.choice(
            [person for r, person in people if r == region]
        )
        first, family = rng.choice(firsts), rng.choice(families)
        name = f"{family}{sep}{first}" if family_first else f"{first}{sep}{family}"
        customers.append((customer_id, name, country, region))

    products = [
        (product_id, name, category, price)
        for product_id, (name, category, price, _) in enumerate(PRODUCTS, start=1)
    ]
    prices = [Decimal(price) for _, _, price, _ in PRODUCTS]
    popularity = [weight for *_, weight in PRODUCTS]

    # Order times first, sorted, so order ids grow with time as in a real shop.
    instants = sorted(rng.randrange(DAYS * 86_400) for _ in range(ORDERS))
    product_ids = rng.choices(range(1, len(PRODUCTS) + 1), weights=popularity, k=ORDERS)
    customer_ids = [rng.randrange(1, CUSTOMERS + 1) for _ in range(ORDERS)]
    quantities = rng.choices(range(1, 6), weights=QUANTITY_WEIGHTS, k=ORDERS)
    discounts = rng.choices(DISCOUNTS, weights=DISCOUNT_WEIGHTS, k=ORDERS)
    day_text = [(first_day + timedelta(days=n)).isoformat() for n in range(DAYS)]

    def orders() -> Iterator[tuple[Any, ...]]:
        for index in range(ORDERS):
            day, seconds = divmod(instants[index], 86_400)
            hours, rest = divmod(seconds, 3_600)
            price = prices[product_ids[index] - 1]
            amount = (price * quantities[index] * (1 - discounts[index])).quantize(
                CENT, rounding=ROUND_HALF_UP
            )
            yield (
                index + 1,
                f"{day_text[day]} {hours:02d}:{rest // 60:02d}:{rest % 60:02d}",
                customer_ids[index],
                product_ids[index],
                quantities[index],
                str(price),
                str(discounts[index]),
                str(amount),
            )

    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode = OFF")
        conn.execute("PRAGMA synchronous = OFF")
        conn.execute("BEGIN")
        for statement in SCHEMA.split(";"):
            if statement.strip():
                conn.execute(statement)
        conn.executemany("INSERT INTO customers VALUES (?, ?, ?, ?)", customers)
        conn.executemany("INSERT INTO products VALUES (?, ?, ?, ?)", products)
        conn.executemany("INSERT INTO orders VALUES (?, ?, ?, ?, ?, ?, ?, ?)", orders())
        conn.execute("CREATE INDEX orders_ordered_at ON orders (ordered_at)")
        conn.execute("CREATE INDEX customers_region ON customers (region)")
        conn.executemany(
            "INSERT INTO dataset_info VALUES (?, ?)",
            [
                ("version", DATASET_VERSION),
                ("seed", str(SEED)),
                ("orders", str(ORDERS)),
                ("first_day", first_day.isoformat()),
                ("last_day", last_day.isoformat()),
                ("generated_at", datetime.now(UTC).isoformat(timespec="seconds")),
            ],
        )
        conn.execute("COMMIT")
    finally:
        conn.close()
    return first_day


# -- the demo catalog -----------------------------------------------------------------------------


def demo_catalog(folder: Path) -> catalog.Catalog:
    """The packaged demo catalog with its relative paths made absolute under `folder`."""
    text = resources.files("reporthubd").joinpath(CATALOG_RESOURCE).read_text(encoding="utf-8")
    data = tomllib.loads(text)
    for datasource in data.get("datasources", []):
        if datasource.get("type") == "sqlite":
            config = datasource["connection_config"]
            config["path"] = str(folder / config["path"])
    for report in data.get("reports", []):
        for delivery in report.get("deliveries", []):
            if delivery.get("method") == "file_share":
                delivery["config"]["path"] = str(folder / delivery["config"]["path"])
    return catalog.Catalog.model_validate(data)


@dataclass(frozen=True, kw_only=True)
class Applied:
    summary: str
    configs: dict[str, domain.ReportConfig]
    """By name."""
    schedules: list[domain.Schedule]


class DemoError(Exception):
    """The demo cannot start; the message says why."""


async def prepare_store(settings: Settings, folder: Path) -> Applied:
    """Migrate the demo store and apply the demo catalog (one transaction, idempotent).
    Raises DemoError for a store this version cannot use or a catalog that does not apply."""
    from reporthubd.store import catalog as store_catalog
    from reporthubd.store import migrate
    from reporthubd.store.database import Store
    from reporthubd.store.definitions import load_definitions

    store = Store(settings.store)
    await store.start()
    try:
        state = await migrate.schema_state(store)
        if not state.known:
            raise DemoError(f"{store.location}: {state.problem()}")
        await migrate.upgrade(store)
        try:
            plan = await store_catalog.apply(store, demo_catalog(folder))
        except catalog.CatalogError as exc:
            raise DemoError(f"the demo reports do not apply to {store.location}: {exc}") from None
        found = await load_definitions(store, default_timezone=settings.scheduler.timezone)
    finally:
        await store.stop()
    return Applied(
        summary=plan.summary() if not plan.empty else "no changes",
        configs={config.name: config for config in found.configs.values()},
        schedules=sorted(found.schedules.values(), key=lambda s: s.id),
    )


# -- the control plane's address ------------------------------------------------------------------


def _port_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        # As the control plane binds (SO_REUSEADDR): a port in TIME_WAIT counts as free.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        port: int = probe.getsockname()[1]
        return port


class ListenError(ValueError):
    """An unusable `--listen`; the message says why and what to do."""


def choose_listen(requested: str | None) -> tuple[str, str | None]:
    """The address to listen on and, when the default port was taken, a note saying so.
    An explicit `--listen` is used as given; ListenError when it is malformed or taken."""
    if requested is not None:
        try:
            host, port = parse_listen(requested)
        except ValueError as exc:
            raise ListenError(f"--listen: {exc}") from None
        if host.count(".") == 3 and not _port_free(host, port):
            raise ListenError(
                f"--listen: {requested} is taken; pick another port, or leave --listen out "
                f"to use {DEFAULT_LISTEN} or a free port"
            )
        return requested, None
    host, port = parse_listen(DEFAULT_LISTEN)
    if _port_free(host, port):
        return DEFAULT_LISTEN, None
    other = _free_port(host)
    return f"{host}:{other}", f"port {port} is taken, so the demo listens on {other} instead"


# -- running it -----------------------------------------------------------------------------------


class _ReadyNotifier(Notifier):
    """The daemon's systemd notifier, which also tells the demo when the daemon is ready."""

    def __init__(self) -> None:
        super().__init__()
        self.ready_event = asyncio.Event()

    def ready(self, status: str | None = None) -> None:
        super().ready(status)
        self.ready_event.set()


def _write_config(folder: Path) -> Path:
    config_path = folder / "config.toml"
    if not config_path.exists():
        config_path.write_text(
            CONFIG_TEMPLATE.format(store=folder / "store.db", workspace=folder / "workspace"),
            encoding="utf-8",
        )
    return config_path


def main(folder: Path, *, listen: str | None) -> int:
    try:
        return _main(folder.resolve(), listen)
    except KeyboardInterrupt:  # Ctrl-C before the daemon took over the signal
        print("\nreporthubd demo: stopped before it was ready", flush=True)
        return 0


def _main(folder: Path, requested_listen: str | None) -> int:
    folder.mkdir(parents=True, exist_ok=True)
    reports = folder / "reports"
    reports.mkdir(exist_ok=True)
    config_path = _write_config(folder)
    try:
        listen, listen_note = choose_listen(requested_listen)
    except ListenError as exc:
        print(f"reporthubd demo: {exc}", file=sys.stderr)
        return 2
    # The daemon re-reads its config on reload: the address stays the one chosen here.
    os.environ["REPORTHUBD_CONTROL_LISTEN"] = listen
    try:
        settings = load_settings(config_path)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    logs.configure(settings.logging)

    print(f"reporthubd demo in {folder}", flush=True)
    dataset = ensure_dataset(folder / "sales.db", today=datetime.now(UTC).date())
    verb = "generated" if dataset.generated else "reused"
    print(
        f"  sample data: {verb} {dataset.path} ({dataset.orders:,} orders, "
        f"{dataset.first_day} to {dataset.last_day} UTC)",
        flush=True,
    )
    return asyncio.run(_run(settings, config_path, folder, listen, listen_note))


async def _run(
    settings: Settings, config_path: Path, folder: Path, listen: str, listen_note: str | None
) -> int:
    from reporthubd.daemon import Daemon
    from reporthubd.store.database import StoreUnavailable

    try:
        applied = await prepare_store(settings, folder)
    except (DemoError, StoreUnavailable) as exc:
        print(f"reporthubd demo: {exc}", file=sys.stderr)
        return 1
    print(f"  demo reports: {applied.summary} (from the packaged {CATALOG_RESOURCE})", flush=True)

    notifier = _ReadyNotifier()
    daemon = Daemon(settings, config_path=config_path, notifier=notifier)
    run = asyncio.create_task(daemon.run(), name="demo-daemon")
    ready = asyncio.create_task(notifier.ready_event.wait(), name="demo-wait-ready")
    await asyncio.wait({run, ready}, return_when=asyncio.FIRST_COMPLETED)
    if not ready.done():  # the daemon could not start; it logged why
        ready.cancel()
        return await run

    started = []
    if daemon.engine is not None:
        for name in DEMO_REPORTS:
            if name in applied.configs:
                await daemon.engine.create_and_submit(
                    applied.configs[name].id, trigger_type=domain.TriggerType.MANUAL
                )
                started.append(name)
    port = (daemon.control.port if daemon.control else None) or parse_listen(listen)[1]
    print(_banner(folder, port, listen_note, applied, started), flush=True)
    code = await run
    print("reporthubd demo: stopped", flush=True)
    return code


def _self_command() -> str:
    """How this demo was started, so the printed commands work as pasted (`.venv/bin/...`)."""
    argv0 = sys.argv[0] if sys.argv else ""
    if Path(argv0).name == "reporthubd":
        return shlex.quote(argv0)
    return f"{shlex.quote(sys.executable)} -m reporthubd"


def _banner(
    folder: Path, port: int, listen_note: str | None, applied: Applied, started: list[str]
) -> str:
    base = f"http://127.0.0.1:{port}"
    command = _self_command()
    config_file = shlex.quote(str(folder / "config.toml"))
    by_id = {config.id: config for config in applied.configs.values()}
    lines = [""]
    if listen_note:
        lines.append(f"  note: {listen_note}")
    lines += [
        f"  open:          {base}/   (the status page)",
        f"  files land in: {folder / 'reports'}/<report name>/",
        "",
        "  reports:",
    ]
    for name in DEMO_REPORTS:
        if (config := applied.configs.get(name)) is not None:
            kind = config.output_format.value
            lines.append(f"    id {config.id}  {name:<15} {kind:<6} {config.description}")
    lines += ["", "  schedules (cron in the schedule's own time zone):"]
    for schedule in applied.schedules:
        config = by_id.get(schedule.config_id)
        report = config.name if config is not None else str(schedule.config_id)
        zone = schedule.timezone.key
        params = ", ".join(f"{k}={v}" for k, v in schedule.parameters.items())
        lines.append(
            f"    id {schedule.id}  {report:<15} {schedule.cron_expression:<15} {zone:<17}{params}"
        )
    if started:
        lines += [
            "",
            f"  Each report was also run once just now ({len(started)} manual runs), so there is a",
            "  file of each format without waiting for the schedules.",
        ]
    first = applied.configs.get(DEMO_REPORTS[0])
    lines += ["", "  try:"]
    if first is not None:
        lines += [
            f"    curl -X POST {base}/api/execute/{first.id}",
            f"        runs {first.name} now (any report id works); the answer has the execution id",
        ]
    lines += [
        f"    curl {base}/api/execution/EXECUTION_ID",
        "        that run: status, rows, file name",
    ]
    if applied.schedules:
        schedule_id = applied.schedules[0].id
        lines += [
            f"    curl -X POST {base}/api/scheduler/trigger/{schedule_id}",
            f"        fires schedule {schedule_id} now, with its parameters",
        ]
    lines += [
        f"    curl {base}/api/scheduler/jobs",
        "        every schedule and its next fire",
        f"    {command} export -c {config_file} > my-reports.toml",
        f"    {command} apply -c {config_file} my-reports.toml",
        "        the demo's reports as a TOML file: edit it, apply it back (the running daemon",
        "        picks the change up within 10 seconds)",
        "",
        "  Files accumulate (a few MB an hour); delete the folder when you are done.",
        "  Stop: Ctrl-C. Running the demo again reuses the folder, its data and its reports.",
    ]
    return "\n".join(lines)
