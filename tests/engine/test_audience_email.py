"""Email fan-out (issue 18): each customer gets their own statement through a real SMTP server
(aiosmtpd, STARTTLS and AUTH), with per-audience parameters, locale, file name and subject.
Every message is checked: its recipients, its subject, and that its attachment holds exactly that
customer's rows, formatted in that customer's locale."""

from __future__ import annotations

import csv
import io
import sqlite3
from pathlib import Path

import babel.numbers
import sqlalchemy as sa

from reporthubd.engine import Engine
from reporthubd.engine.ledger import DeliveryLedger
from reporthubd.store import audiences as audience_rows
from reporthubd.store import schema
from reporthubd.store.database import Store
from tests.deliverers import peers
from tests.engine.conftest import add_config, add_datasource, engine_settings, run_to_end

CUSTOMERS = 12
LOCALES = ("de_DE", "en_US", "fr_FR")


def _amounts(customer: int) -> list[float]:
    return [1000.5 + customer * 101 + line for line in range(1 + customer % 3)]


async def test_each_customer_gets_their_own_rows_in_their_locale(
    tmp_path: Path, engine_store: Store
) -> None:
    data = tmp_path / "data.db"
    with sqlite3.connect(data) as conn:
        conn.execute("CREATE TABLE customers (id TEXT, email TEXT, locale TEXT, name TEXT)")
        conn.execute("CREATE TABLE invoices (customer TEXT, line INTEGER, amount REAL)")
        for c in range(CUSTOMERS):
            conn.execute(
                "INSERT INTO customers VALUES (?, ?, ?, ?)",
                (f"C{c:02d}", f"billing{c}@example.com", LOCALES[c % 3], f"Customer {c}"),
            )
            for line, amount in enumerate(_amounts(c)):
                conn.execute("INSERT INTO invoices VALUES (?, ?, ?)", (f"C{c:02d}", line, amount))
        conn.execute("INSERT INTO invoices VALUES ('ZZ', 0, 999999)")  # nobody's audience
    conn.close()
    server = peers.SMTPServer(tmp_path / "smtp")
    server.start()
    settings = engine_settings(tmp_path, max_concurrent_executions=3)
    ledger = DeliveryLedger(settings, engine_store, node_id="test-node")
    engine = Engine(settings, engine_store, node_id="test-node", deliveries=ledger)
    await engine.start()
    try:
        ds = await add_datasource(engine_store, "sqlite", {"path": str(data)})
        config = await add_config(
            engine_store,
            ds,
            "SELECT customer, line, amount FROM invoices WHERE customer = :customer ORDER BY line",
            name="Customer statement",
            format_options={
                "formatted": True,
                "columns": {"amount": {"kind": "currency", "currency": "EUR"}},
            },
        )
        async with engine_store.engine.begin() as conn:
            await conn.execute(
                sa.insert(schema.audience_drivers).values(
                    config_id=config,
                    datasource_id=ds,
                    key_column="customer",
                    recipients_column="email",
                    query_text=(
                        "SELECT id AS customer, email, locale, "
                        "'statement_' || id AS file_name, "
                        "'Your statement, ' || name AS subject FROM customers"
                    ),
                )
            )
            delivery = (
                await conn.execute(
                    sa.insert(schema.deliveries).values(
                        config_id=config,
                        name="mail",
                        method="email",
                        delivery_config={"smtp": server.smtp_config()},
                    )
                )
            ).inserted_primary_key[0]
            # The report's own recipient is replaced by each audience's.
            await conn.execute(
                sa.insert(schema.recipients).values(
                    delivery_id=delivery, email="everyone@example.com"
                )
            )
        parent = await run_to_end(engine, config)
    finally:
        await engine.stop()
        server.stop()

    assert parent.status.value == "COMPLETED", parent.error_message
    burst = await audience_rows.get_burst(engine_store, parent.id)
    assert burst is not None and (burst.audiences, burst.delivered) == (CUSTOMERS, CUSTOMERS)
    messages = server.mailbox.messages
    assert len(messages) == CUSTOMERS
    seen = set()
    for received in messages:
        assert len(received.rcpt_tos) == 1
        address = received.rcpt_tos[0]
        c = int(address.removeprefix("billing").split("@")[0])
        seen.add(c)
        message = received.message()
        assert message["Subject"] == f"Your statement, Customer {c}"
        attachments = received.attachments()
        assert list(attachments) == [f"statement_C{c:02d}.csv"]
        table = list(csv.reader(io.StringIO(attachments[f"statement_C{c:02d}.csv"].decode())))
        locale = LOCALES[c % 3]
        expected = [
            [f"C{c:02d}", str(line), babel.numbers.format_currency(amount, "EUR", locale=locale)]
            for line, amount in enumerate(_amounts(c))
        ]
        assert table[1:] == expected, (locale, table)
    assert seen == set(range(CUSTOMERS))
    assert "everyone@example.com" not in {r for m in messages for r in m.rcpt_tos}
