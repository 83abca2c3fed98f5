"""The demo's sample datasource: a SQLite sales database generated from a fixed seed.

About 100,000 orders (regions, products, customers with accented and CJK names, decimal amounts,
UTC timestamps) over the 90 days up to the day (UTC) it is generated. The same `last_day` gives
the same rows; only the calendar is anchored on it. `ensure_dataset` reuses a current file and
otherwise writes a new one to a temporary file renamed over the old one (about half a second),
so a reader never sees half a database.
"""

from __future__ import annotations

import os
import random
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any
from urllib.parse import quote

from reporthubd.timeutil import utcnow

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
                ("generated_at", utcnow().isoformat(timespec="seconds")),
            ],
        )
        conn.execute("COMMIT")
    finally:
        conn.close()
    return first_day
