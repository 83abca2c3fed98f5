"""The delivery ledger's rows: one `report_delivery_logs` row per attempt (per recipient group).

A row with status RETRYING and a `next_retry_at` is a pending retry: the retry worker of any node
claims it with a conditional update (moving `next_retry_at` to the end of a lease, so a node that
dies mid-send leaves it to be claimed again later), then records the next attempt and clears
`next_retry_at` of the claimed row in one transaction. A RETRYING row without `next_retry_at` is
history: an attempt that failed and was retried.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from reporthubd import domain, logs
from reporthubd.store import journal, schema
from reporthubd.store.database import Store
from reporthubd.store.rows import delivery as delivery_record
from reporthubd.store.rows import recipient as recipient_record
from reporthubd.store.types import MalformedJSON

T = schema.delivery_logs

log = logs.get(__name__)


@dataclass(frozen=True, kw_only=True)
class RecipientRef:
    """An address as the ledger records it: enough to send to it again."""

    recipient_type: domain.RecipientType
    email: str

    def __str__(self) -> str:
        return f"{self.recipient_type.value}:{self.email}"


@dataclass(frozen=True, kw_only=True)
class DeliveryLog:
    id: int
    execution_id: str
    delivery_id: int
    attempt: int
    status: domain.DeliveryStatus
    target: str | None
    error_message: str | None
    started_at: datetime | None
    finished_at: datetime | None
    next_retry_at: datetime | None
    recipient_group: str = ""
    recipients: tuple[RecipientRef, ...] = ()
    details: Mapping[str, Any] = field(default_factory=dict)

    @property
    def pending(self) -> bool:
        return self.status is domain.DeliveryStatus.RETRYING and self.next_retry_at is not None


@dataclass(frozen=True, kw_only=True)
class NewLog:
    """A row to write."""

    execution_id: str
    delivery_id: int
    attempt: int
    status: domain.DeliveryStatus
    target: str | None = None
    error_message: str | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    next_retry_at: datetime | None = None
    recipient_group: str = ""
    recipients: Sequence[RecipientRef] = ()
    details: Mapping[str, Any] | None = None

    def values(self) -> dict[str, Any]:
        return {
            "execution_id": self.execution_id,
            "delivery_id": self.delivery_id,
            "attempt": self.attempt,
            "status": self.status.value,
            "target": (self.target or "")[:1024] or None,
            "error_message": self.error_message,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "next_retry_at": self.next_retry_at,
            "recipient_group": self.recipient_group,
            "recipients": format_recipients(self.recipients) if self.recipients else None,
            "details": dict(self.details) if self.details else None,
        }


def format_recipients(recipients: Sequence[RecipientRef]) -> str:
    return ", ".join(str(r) for r in recipients)


def parse_recipients(text: str | None) -> tuple[RecipientRef, ...]:
    found = []
    for item in (text or "").split(","):
        kind, _, email = item.strip().partition(":")
        if not email:
            continue
        try:
            found.append(RecipientRef(recipient_type=domain.RecipientType(kind), email=email))
        except ValueError:
            continue
    return tuple(found)


def _record(row: Any) -> DeliveryLog:
    details = row.details if isinstance(row.details, dict) else {}
    if isinstance(row.details, MalformedJSON):
        details = {}
    return DeliveryLog(
        id=row.id,
        execution_id=row.execution_id,
        delivery_id=row.delivery_id,
        attempt=row.attempt,
        status=domain.DeliveryStatus(row.status),
        target=row.target,
        error_message=row.error_message,
        started_at=row.started_at,
        finished_at=row.finished_at,
        next_retry_at=row.next_retry_at,
        recipient_group=row.recipient_group or "",
        recipients=parse_recipients(row.recipients),
        details=details,
    )


async def insert_logs(store: Store, rows: Sequence[NewLog]) -> bool:
    """Write the rows of one attempt in one transaction. Returns False (writing nothing) when
    one of them exists already: another node recorded this attempt first. When the store is
    unreachable the rows wait in the store journal (store/journal.py) and this returns True."""
    if not rows:
        return True
    written = await journal.durable(store, "insert_logs", rows=[row.values() for row in rows])
    return True if written is None else bool(written)


@journal.operation("insert_logs")
async def _insert_logs(store: Store, *, rows: Sequence[dict[str, Any]]) -> bool:
    try:
        async with store.engine.begin() as conn:
            for row in rows:
                await conn.execute(sa.insert(T).values(**row))
    except sa.exc.IntegrityError:
        return False
    return True


async def record_retry(store: Store, claimed_id: int, rows: Sequence[NewLog]) -> bool:
    """Record the attempt made for the claimed pending row and settle that row, atomically (or,
    while the store is unreachable, in the store journal: then True)."""
    written = await journal.durable(
        store, "record_retry", claimed_id=claimed_id, rows=[row.values() for row in rows]
    )
    return True if written is None else bool(written)


@journal.operation("record_retry")
async def _record_retry(store: Store, *, claimed_id: int, rows: Sequence[dict[str, Any]]) -> bool:
    try:
        async with store.engine.begin() as conn:
            for row in rows:
                await conn.execute(sa.insert(T).values(**row))
            await conn.execute(sa.update(T).where(T.c.id == claimed_id).values(next_retry_at=None))
    except sa.exc.IntegrityError:
        return False
    return True


async def logs_for_execution(store: Store, execution_id: str) -> list[DeliveryLog]:
    async with store.engine.connect() as conn:
        result = await conn.execute(
            sa.select(T)
            .where(T.c.execution_id == execution_id)
            .order_by(T.c.delivery_id, T.c.attempt, T.c.id)
        )
        out = []
        for row in result:
            try:
                out.append(_record(row))
            except ValueError as exc:  # a status outside the vocabulary, from another service
                log.warning("invalid delivery log row left out", log_id=row.id, error=str(exc))
        return out


async def get_log(store: Store, log_id: int) -> DeliveryLog | None:
    async with store.engine.connect() as conn:
        row = (await conn.execute(sa.select(T).where(T.c.id == log_id))).first()
    return _record(row) if row is not None else None


async def due_retries(store: Store, *, now: datetime, limit: int = 50) -> list[DeliveryLog]:
    """Pending retries whose time has come, oldest first."""
    async with store.engine.connect() as conn:
        result = await conn.execute(
            sa.select(T)
            .where(
                T.c.status == domain.DeliveryStatus.RETRYING.value,
                T.c.next_retry_at.is_not(None),
                T.c.next_retry_at <= now,
            )
            .order_by(T.c.next_retry_at, T.c.id)
            .limit(limit)
        )
        return [_record(row) for row in result]


async def next_retry_time(store: Store) -> datetime | None:
    """When the earliest pending retry (of any node) is due."""
    async with store.engine.connect() as conn:
        value = (
            await conn.execute(
                sa.select(sa.func.min(T.c.next_retry_at)).where(
                    T.c.status == domain.DeliveryStatus.RETRYING.value,
                    T.c.next_retry_at.is_not(None),
                )
            )
        ).scalar()
    return value if isinstance(value, datetime) else None


async def count_pending(store: Store) -> int:
    """Pending retries in the store (every node's)."""
    async with store.engine.connect() as conn:
        value = (
            await conn.execute(
                sa.select(sa.func.count()).where(
                    T.c.status == domain.DeliveryStatus.RETRYING.value,
                    T.c.next_retry_at.is_not(None),
                )
            )
        ).scalar()
    return int(value or 0)


async def claim_retry(store: Store, log_id: int, *, now: datetime, lease_until: datetime) -> bool:
    """Take a due pending retry for this node: a conditional update that only one node wins.
    The row stays pending until `lease_until`, so a retry whose node dies is claimed again."""
    async with store.engine.begin() as conn:
        result = await conn.execute(
            sa.update(T)
            .where(
                T.c.id == log_id,
                T.c.status == domain.DeliveryStatus.RETRYING.value,
                T.c.next_retry_at.is_not(None),
                T.c.next_retry_at <= now,
            )
            .values(next_retry_at=lease_until)
        )
    return bool(result.rowcount)


async def release_retry(store: Store, log_id: int, *, at: datetime) -> None:
    """Give a claimed retry back (e.g. the daemon is stopping), due again at `at`."""
    async with store.engine.begin() as conn:
        await conn.execute(
            sa.update(T)
            .where(T.c.id == log_id, T.c.status == domain.DeliveryStatus.RETRYING.value)
            .values(next_retry_at=at)
        )


async def abandon_retry(store: Store, log_id: int, *, reason: str, at: datetime) -> None:
    """A pending retry that cannot be made (delivery removed, file gone): it fails for good."""
    async with store.engine.begin() as conn:
        await conn.execute(
            sa.update(T)
            .where(T.c.id == log_id, T.c.status == domain.DeliveryStatus.RETRYING.value)
            .values(
                status=domain.DeliveryStatus.FAILED.value,
                next_retry_at=None,
                error_message=reason,
                finished_at=at,
            )
        )


async def has_pending_retry(store: Store, execution_id: str) -> bool:
    """Whether the execution still waits for a delivery retry (its file must stay, and the
    dead-execution sweep must leave it alone)."""
    async with store.engine.connect() as conn:
        found = (
            await conn.execute(
                sa.select(T.c.id)
                .where(
                    T.c.execution_id == execution_id,
                    T.c.status == domain.DeliveryStatus.RETRYING.value,
                    T.c.next_retry_at.is_not(None),
                )
                .limit(1)
            )
        ).first()
    return found is not None


async def unsettled_executions(
    store: Store, *, stale_before: datetime, own_node: str | None = None, limit: int = 100
) -> list[str]:
    """RUNNING executions the ledger owns (they have a RETRYING row) with nothing pending any
    more and a heartbeat older than `stale_before` (or, whatever their heartbeat, of node
    `own_node`, which keeps refreshing it): the node that made their last retry died before
    settling them. The lost-execution sweep leaves these alone, so the ledger settles them."""
    e = schema.executions
    retrying = sa.exists().where(
        T.c.execution_id == e.c.id, T.c.status == domain.DeliveryStatus.RETRYING.value
    )
    pending = sa.exists().where(
        T.c.execution_id == e.c.id,
        T.c.status == domain.DeliveryStatus.RETRYING.value,
        T.c.next_retry_at.is_not(None),
    )
    stale = sa.or_(
        e.c.heartbeat_at < stale_before,
        sa.and_(
            e.c.heartbeat_at.is_(None),
            sa.func.coalesce(e.c.started_at, e.c.created_at) < stale_before,
        ),
    )
    if own_node is not None:
        stale = sa.or_(stale, e.c.node_id == own_node)
    async with store.engine.connect() as conn:
        result = await conn.execute(
            sa.select(e.c.id)
            .where(
                e.c.status == domain.ExecutionStatus.RUNNING.value,
                stale,
                retrying,
                ~pending,
            )
            .order_by(e.c.id)
            .limit(limit)
        )
        return [row.id for row in result]


async def max_attempt(store: Store, execution_id: str, delivery_id: int) -> int:
    async with store.engine.connect() as conn:
        value = (
            await conn.execute(
                sa.select(sa.func.max(T.c.attempt)).where(
                    T.c.execution_id == execution_id, T.c.delivery_id == delivery_id
                )
            )
        ).scalar()
    return int(value or 0)


async def get_delivery(store: Store, delivery_id: int) -> domain.Delivery | domain.RowError | None:
    """The delivery a ledger is asked to test: its row (active or not), validated, with its
    active recipients; None when there is no such row. Invalid recipient rows are left out."""
    deliveries, recipients = schema.deliveries, schema.recipients
    async with store.engine.connect() as conn:
        row = (
            (await conn.execute(sa.select(deliveries).where(deliveries.c.id == delivery_id)))
            .mappings()
            .first()
        )
        if row is None:
            return None
        people = (
            (
                await conn.execute(
                    sa.select(recipients)
                    .where(
                        recipients.c.delivery_id == delivery_id,
                        recipients.c.is_active == sa.true(),
                    )
                    .order_by(recipients.c.id)
                )
            )
            .mappings()
            .all()
        )
    record = delivery_record(dict(row))
    if isinstance(record, domain.RowError):
        return record
    valid = [
        p for p in (recipient_record(dict(r)) for r in people) if isinstance(p, domain.Recipient)
    ]
    return replace(record, recipients=tuple(valid))
