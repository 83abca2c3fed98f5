"""Data-driven runs in the store: a report's driver, a burst's audiences, and their claims.

A burst is one data-driven run, keyed by its parent run's logical id (`recovers_id or id`, so a
recovery of a lost parent carries on with the same audiences). Its audiences are written once
(UNIQUE (burst_id, audience_key)), in batches, while the driver's rows stream. Each audience's
child execution id is drawn from (burst_id, audience_key) (`child_id`), so inserting that
execution row is the audience's claim: the primary key lets exactly one insert win, across
nodes, restarts and a kill mid-fan-out, as UNIQUE (schedule_id, scheduled_for, attempt) does for
fires (store/claims.py). A child that is lost is recovered by the usual sweep (a recovery run with
`recovers_id` = the child's id); its audience is found through either id.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from reporthubd import domain
from reporthubd.store import schema
from reporthubd.store.database import Store
from reporthubd.timeutil import utcnow

_d = schema.audience_drivers
_b = schema.bursts
_a = schema.audiences
_e = schema.executions

_NAMESPACE = uuid.UUID("6f1d3c1e-9a55-4c1b-8d7e-2a7f0e6b1a18")
# Audiences per INSERT: 5 columns x 500 rows stays far below every server's bound variables.
CHUNK = 500


@dataclass(frozen=True, kw_only=True)
class AudienceDriver:
    """`report_audience_drivers`: the query whose rows are a report's audiences."""

    id: int
    config_id: int
    datasource_id: int
    query_text: str
    key_column: str | None = None
    """The column that names an audience; None: a hash of the whole row."""
    recipients_column: str = "recipients"


@dataclass(frozen=True, kw_only=True)
class Audience:
    burst_id: str
    key: str
    seq: int
    recipients: tuple[str, ...] = ()
    parameters: Mapping[str, Any] = field(default_factory=dict)
    overrides: Mapping[str, str] = field(default_factory=dict)
    """file_name, locale, timezone, subject (only those the driver row gave)."""

    @property
    def child_id(self) -> str:
        return child_id(self.burst_id, self.key)

    def document(self) -> dict[str, Any]:
        return {
            "recipients": list(self.recipients),
            "parameters": dict(self.parameters),
            "overrides": dict(self.overrides),
        }


@dataclass(frozen=True, kw_only=True)
class Role:
    """What an execution of a report is to a burst: its parent, one audience's child, or
    neither (no active driver)."""

    driver: AudienceDriver | None = None
    audience: Audience | None = None

    @property
    def is_parent(self) -> bool:
        return self.driver is not None and self.audience is None


@dataclass(frozen=True, kw_only=True)
class Burst:
    burst_id: str
    config_id: int
    audiences: int | None
    enumerated_at: datetime | None
    delivered: int | None = None
    failed: int | None = None
    skipped: int | None = None
    finished_at: datetime | None = None


@dataclass(frozen=True, kw_only=True)
class Counts:
    """A burst's audiences by the outcome of their latest child run."""

    audiences: int = 0
    delivered: int = 0
    failed: int = 0
    skipped: int = 0
    """Completed with an empty result and empty_result_policy skip: nothing sent."""
    unfinished: int = 0
    """Not claimed yet, or claimed and not finished."""

    def as_dict(self) -> dict[str, int]:
        return {
            "audiences": self.audiences,
            "delivered": self.delivered,
            "failed": self.failed,
            "skipped": self.skipped,
            "unfinished": self.unfinished,
        }


def child_id(burst_id: str, key: str) -> str:
    """The child execution id of one audience: the same for every node and every attempt."""
    return str(uuid.uuid5(_NAMESPACE, f"{burst_id}\x00{key}"))


def burst_id_of(execution: domain.Execution) -> str:
    return execution.recovers_id or execution.id


def _driver(row: Any) -> AudienceDriver:
    return AudienceDriver(
        id=int(row.id),
        config_id=int(row.config_id),
        datasource_id=int(row.datasource_id),
        query_text=row.query_text,
        key_column=row.key_column or None,
        recipients_column=row.recipients_column or "recipients",
    )


def _audience(row: Any) -> Audience:
    doc = row.audience if isinstance(row.audience, dict) else {}
    return Audience(
        burst_id=row.burst_id,
        key=row.audience_key,
        seq=int(row.seq),
        recipients=tuple(str(r) for r in doc.get("recipients") or ()),
        parameters=dict(doc.get("parameters") or {}),
        overrides={str(k): str(v) for k, v in (doc.get("overrides") or {}).items()},
    )


# -- the driver (a definition) -------------------------------------------------------------------


async def get_driver(store: Store, config_id: int) -> AudienceDriver | None:
    """The active driver of `config_id`, or None."""
    async with store.engine.connect() as conn:
        row = (
            await conn.execute(sa.select(_d).where(_d.c.config_id == config_id, _d.c.is_active))
        ).first()
    return _driver(row) if row is not None else None


_AUDIENCE_COLUMNS = ("child_id", "burst_id", "seq", "audience_key", "audience")


async def active_drivers(store: Store) -> list[AudienceDriver]:
    async with store.engine.connect() as conn:
        rows = (await conn.execute(sa.select(_d).where(_d.c.is_active).order_by(_d.c.id))).all()
    return [_driver(row) for row in rows]


async def role(store: Store, execution: domain.Execution) -> Role:
    """What `execution` is to a burst, in one round trip (two for a parent): the audience whose
    child it is (by its id, or for a recovery run the id it stands in for), else the report's
    active driver (or, for the recovery of a parent, the driver its burst started with)."""
    ids = [execution.id] + ([execution.recovers_id] if execution.recovers_id else [])
    child = sa.select(_a.c.child_id).where(_a.c.child_id.in_(ids)).limit(1).scalar_subquery()
    columns = [
        sa.select(_a.c[name]).where(_a.c.child_id == child).scalar_subquery().label(name)
        for name in _AUDIENCE_COLUMNS
    ]
    usable: sa.ColumnElement[bool] = _d.c.is_active
    if execution.recovers_id:
        # A recovered parent carries on with its burst even if the driver was switched off
        # meanwhile: it must not run as a plain report to the report's own recipients.
        started = sa.exists().where(_b.c.burst_id == execution.recovers_id)
        usable = sa.or_(_d.c.is_active, started)
    driver = sa.select(_d.c.id).where(_d.c.config_id == execution.config_id, usable).limit(1)
    query = sa.select(*columns, driver.scalar_subquery().label("rh_driver"))
    async with store.engine.connect() as conn:
        found = (await conn.execute(query)).one()
        if found.child_id is not None:
            audience: Any = found
            if isinstance(found.audience, str):  # a driver that hands JSON back as text
                audience = _Row(found, json.loads(found.audience))
            return Role(audience=_audience(audience))
        if found.rh_driver is None:
            return Role()
        row = (await conn.execute(sa.select(_d).where(_d.c.id == found.rh_driver))).first()
    return Role(driver=_driver(row) if row is not None else None)


@dataclass(frozen=True)
class _Row:
    base: Any
    audience: Any

    def __getattr__(self, name: str) -> Any:
        return getattr(self.base, name)


# -- a burst and its audiences -------------------------------------------------------------------


async def open_burst(store: Store, burst_id: str, config_id: int) -> Burst:
    """The burst's row, inserted by the first caller (a recovered parent finds it)."""
    async with store.engine.begin() as conn:
        await conn.execute(
            _insert_ignore(store, _b, [{"burst_id": burst_id, "config_id": config_id}])
        )
        row = (await conn.execute(sa.select(_b).where(_b.c.burst_id == burst_id))).one()
    return Burst(**{key: row._mapping[key] for key in Burst.__dataclass_fields__})


async def get_burst(store: Store, burst_id: str) -> Burst | None:
    async with store.engine.connect() as conn:
        row = (await conn.execute(sa.select(_b).where(_b.c.burst_id == burst_id))).first()
    if row is None:
        return None
    return Burst(**{key: row._mapping[key] for key in Burst.__dataclass_fields__})


async def add_audiences(store: Store, audiences: Sequence[Audience]) -> None:
    """Write a batch of a burst's audiences; one already written (an earlier pass of a parent
    that was lost) keeps its row."""
    now = utcnow()
    rows = [
        {
            "child_id": a.child_id,
            "burst_id": a.burst_id,
            "seq": a.seq,
            "audience_key": a.key,
            "audience": a.document(),
            "created_at": now,
        }
        for a in audiences
    ]
    async with store.engine.begin() as conn:
        for start in range(0, len(rows), CHUNK):
            await conn.execute(_insert_ignore(store, _a, rows[start : start + CHUNK]))


async def mark_enumerated(store: Store, burst_id: str, audiences: int) -> None:
    async with store.engine.begin() as conn:
        await conn.execute(
            sa.update(_b)
            .where(_b.c.burst_id == burst_id, _b.c.enumerated_at.is_(None))
            .values(enumerated_at=utcnow(), audiences=audiences)
        )


async def discard_audiences(store: Store, burst_id: str) -> None:
    """A driver found invalid before anything was sent: its audiences go (nothing claimed)."""
    async with store.engine.begin() as conn:
        await conn.execute(sa.delete(_a).where(_a.c.burst_id == burst_id))


async def next_audiences(
    store: Store, burst_id: str, *, after: tuple[int, str] | None, limit: int
) -> list[Audience]:
    """The burst's audiences in driver order, `limit` at a time after `after` (seq, child_id)."""
    query = sa.select(_a).where(_a.c.burst_id == burst_id)
    if after is not None:
        seq, last = after
        query = query.where(sa.or_(_a.c.seq > seq, sa.and_(_a.c.seq == seq, _a.c.child_id > last)))
    query = query.order_by(_a.c.seq, _a.c.child_id).limit(limit)
    async with store.engine.connect() as conn:
        rows = (await conn.execute(query)).all()
    return [_audience(row) for row in rows]


@dataclass(frozen=True, kw_only=True)
class Claims:
    """What one `claim_children` call won."""

    ids: list[str]
    """The children this node may run, in the audiences' order: inserted by this call, or
    PENDING and already this node's (an earlier attempt of the call whose answer was lost)."""
    inserted: frozenset[str]
    """Those this call inserted, exactly as `child_execution` builds them (empty where the
    store cannot tell: MariaDB after an insert that skipped some rows)."""


def child_execution(
    parent: domain.Execution,
    audience: Audience,
    *,
    parameters: Mapping[str, Any],
    node_id: str,
    created_at: datetime,
) -> domain.Execution:
    """The child execution row of one audience as its claim inserts it: PENDING, this node's,
    the parent's `scheduled_for`, the parent's resolved parameters under the audience's."""
    return domain.Execution(
        id=audience.child_id,
        config_id=parent.config_id,
        schedule_id=None,
        trigger_type=domain.TriggerType.AUDIENCE,
        scheduled_for=parent.scheduled_for,
        status=domain.ExecutionStatus.PENDING,
        parameters={**parameters, **audience.parameters},
        node_id=node_id,
        created_at=created_at,
    )


async def claim_children(
    store: Store,
    parent: domain.Execution,
    audiences: Sequence[Audience],
    *,
    parameters: Mapping[str, Any],
    node_id: str,
    created_at: datetime | None = None,
) -> Claims:
    """Claim each audience by inserting its child execution (`child_execution`, created at
    `created_at`, default now). One refused by the key belongs to whoever inserted it first."""
    if not audiences:
        return Claims(ids=[], inserted=frozenset())
    now = created_at or utcnow()
    rows = []
    for a in audiences:
        child = child_execution(parent, a, parameters=parameters, node_id=node_id, created_at=now)
        rows.append(
            {
                "id": child.id,
                "config_id": child.config_id,
                "schedule_id": None,
                "trigger_type": child.trigger_type.value,
                "scheduled_for": child.scheduled_for,
                "status": child.status.value,
                "parameters": dict(child.parameters),
                "node_id": node_id,
                "created_at": now,
            }
        )
    ids = [a.child_id for a in audiences]
    async with store.engine.begin() as conn:
        if store.dialect in ("postgresql", "sqlite"):
            inserted = await conn.execute(_insert_ignore(store, _e, rows).returning(_e.c.id))
            fresh = frozenset(row.id for row in inserted)
            if len(fresh) == len(ids):
                return Claims(ids=ids, inserted=fresh)
        else:
            result = await conn.execute(_insert_ignore(store, _e, rows))
            if result.rowcount == len(ids):
                return Claims(ids=ids, inserted=frozenset(ids))
            fresh = frozenset()
        mine = await conn.execute(
            sa.select(_e.c.id).where(
                _e.c.id.in_(ids),
                _e.c.node_id == node_id,
                _e.c.status == domain.ExecutionStatus.PENDING.value,
            )
        )
        ours = fresh | {row.id for row in mine}
    return Claims(ids=[i for i in ids if i in ours], inserted=fresh)


async def counts(store: Store, burst_id: str) -> Counts:
    """The burst's audiences by their latest child run (a lost child's recovery run stands in
    for it). Reads the child rows in one pass, two small tuples per audience."""
    children = sa.select(_a.c.child_id).where(_a.c.burst_id == burst_id)
    columns = (
        _e.c.id,
        _e.c.recovers_id,
        _e.c.status,
        _e.c.file_name,
        _e.c.row_count,
        _e.c.created_at,
    )
    own = sa.select(*columns).where(_e.c.id.in_(children))
    recovered = sa.select(*columns).where(_e.c.recovers_id.in_(children))
    async with store.engine.connect() as conn:
        total = (
            await conn.execute(
                sa.select(sa.func.count()).select_from(_a).where(_a.c.burst_id == burst_id)
            )
        ).scalar_one()
        latest: dict[str, tuple[Any, ...]] = {}
        for query in (own, recovered):
            for row in (await conn.execute(query)).all():
                audience = row.recovers_id or row.id
                seen = latest.get(audience)
                if seen is None or (row.created_at, row.id) > (seen[3], seen[4]):
                    latest[audience] = (
                        row.status,
                        row.file_name,
                        row.row_count,
                        row.created_at,
                        row.id,
                    )
    delivered = failed = skipped = unfinished = 0
    for status, file_name, _rows, _at, _id in latest.values():
        if status == domain.ExecutionStatus.COMPLETED.value:
            if file_name is None:
                skipped += 1
            else:
                delivered += 1
        elif status in (domain.ExecutionStatus.PENDING.value, domain.ExecutionStatus.RUNNING.value):
            unfinished += 1
        else:
            failed += 1
    unfinished += int(total) - len(latest)
    return Counts(
        audiences=int(total),
        delivered=delivered,
        failed=failed,
        skipped=skipped,
        unfinished=unfinished,
    )


async def finish_burst(store: Store, burst_id: str, final: Counts) -> None:
    async with store.engine.begin() as conn:
        await conn.execute(
            sa.update(_b)
            .where(_b.c.burst_id == burst_id)
            .values(
                audiences=final.audiences,
                delivered=final.delivered,
                failed=final.failed,
                skipped=final.skipped,
                finished_at=utcnow(),
            )
        )


async def list_audiences(
    store: Store, burst_id: str, *, offset: int = 0, limit: int = 100
) -> list[Audience]:
    query = (
        sa.select(_a)
        .where(_a.c.burst_id == burst_id)
        .order_by(_a.c.seq, _a.c.child_id)
        .offset(offset)
        .limit(limit)
    )
    async with store.engine.connect() as conn:
        rows = (await conn.execute(query)).all()
    return [_audience(row) for row in rows]


async def prune_bursts(store: Store, *, before: datetime, batch_size: int = 500) -> int:
    """Delete the bursts created before `before` whose parent runs have all ended, with their
    audiences, `batch_size` rows per transaction (the janitor, beside prune_executions: the
    same retention, so a burst goes with its runs). Returns the count of bursts deleted."""
    terminal = [s.value for s in domain.ExecutionStatus if s.is_terminal]
    live_parent = sa.exists().where(
        sa.or_(_e.c.id == _b.c.burst_id, _e.c.recovers_id == _b.c.burst_id),
        _e.c.status.not_in(terminal),
    )
    total = 0
    while True:
        async with store.engine.connect() as conn:
            ids = list(
                (
                    await conn.execute(
                        sa.select(_b.c.burst_id)
                        .where(_b.c.created_at < before, ~live_parent)
                        .order_by(_b.c.created_at)
                        .limit(batch_size)
                    )
                ).scalars()
            )
        if not ids:
            return total
        for burst_id in ids:
            while True:  # a burst may hold 10,000 audiences: a batch per transaction
                async with store.engine.begin() as conn:
                    children = list(
                        (
                            await conn.execute(
                                sa.select(_a.c.child_id)
                                .where(_a.c.burst_id == burst_id)
                                .limit(batch_size)
                            )
                        ).scalars()
                    )
                    if children:
                        await conn.execute(sa.delete(_a).where(_a.c.child_id.in_(children)))
                    else:
                        await conn.execute(sa.delete(_b).where(_b.c.burst_id == burst_id))
                if not children:
                    break
        total += len(ids)
        if len(ids) < batch_size:
            return total


def _insert_ignore(store: Store, table: sa.Table, rows: list[dict[str, Any]]) -> Any:
    # Each dialect's insert is imported when used: a daemon loads its own store's dialect only.
    if store.dialect == "postgresql":
        from sqlalchemy.dialects import postgresql

        return postgresql.insert(table).values(rows).on_conflict_do_nothing()
    if store.dialect == "sqlite":
        from sqlalchemy.dialects import sqlite

        return sqlite.insert(table).values(rows).on_conflict_do_nothing()
    return sa.insert(table).values(rows).prefix_with("IGNORE")
