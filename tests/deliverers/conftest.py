"""Fixtures of the deliverer tests: the real peers, a store with one report, produced files."""

from __future__ import annotations

import hashlib
import itertools
import os
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from reporthubd import domain
from reporthubd.config import ExecutionSettings, Settings, StoreSettings
from reporthubd.deliverers import templating
from reporthubd.deliverers.base import DeliveryJob, ProducedFile
from reporthubd.engine.ledger import DeliveryLedger
from reporthubd.store import executions, migrate, schema
from reporthubd.store.database import Store
from reporthubd.store.definitions import load_definitions
from tests import servers
from tests.deliverers import peers

MB = 1024 * 1024
SCALE = 1 / 60  # a 1-minute retry interval waits one second
_names = itertools.count(1)


def make_file(path: Path, size: int, *, compressible: bool = False) -> ProducedFile:
    """A produced file of `size` bytes, written in chunks (random, or CSV-like text)."""
    digest = hashlib.sha256()
    with path.open("wb") as out:
        written = 0
        row = 0
        while written < size:
            if compressible:
                lines = []
                for _ in range(2000):
                    row += 1
                    lines.append(f"{row},customer-{row % 977},{row * 37 % 10007}.25,EUR\n")
                chunk = "".join(lines).encode()
            else:
                chunk = os.urandom(1024 * 1024)
            chunk = chunk[: size - written]
            out.write(chunk)
            digest.update(chunk)
            written += len(chunk)
    media = "text/csv" if path.suffix == ".csv" else "application/octet-stream"
    return ProducedFile(
        path=path,
        name=path.name,
        size=size,
        sha256=digest.hexdigest(),
        media_type=media,
        row_count=row or 1,
    )


@pytest.fixture(scope="session")
def big_file(tmp_path_factory: pytest.TempPathFactory) -> ProducedFile:
    """25 MB of random bytes (incompressible) as a CSV-named report."""
    return make_file(tmp_path_factory.mktemp("big") / "sales-25mb.csv", 25 * MB)


@pytest.fixture
def small_file(tmp_path: Path) -> ProducedFile:
    path = tmp_path / "workspace" / "daily-sales.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"id,region,amount\n1,north,10.50\n2,south,7.25\n3,east,3.00\n")
    return ProducedFile(
        path=path,
        name=path.name,
        size=path.stat().st_size,
        sha256=hashlib.sha256(path.read_bytes()).hexdigest(),
        media_type="text/csv",
        row_count=3,
    )


def settings_for(store: Store, **execution: Any) -> Settings:
    return Settings(
        store=StoreSettings(url=store.settings.url),
        execution=ExecutionSettings(retry_time_scale=SCALE, **execution),
    )


@pytest.fixture
async def sqlite_store(tmp_path: Path) -> AsyncIterator[Store]:
    database = servers.create_database("sqlite", tmp_path)
    store = Store(StoreSettings(url=database.url))
    await store.start()
    await migrate.upgrade(store)
    yield store
    await store.stop()


@dataclass
class Report:
    """One report config in the store with its deliveries, and an execution to deliver."""

    store: Store
    settings: Settings
    config_id: int
    delivery_ids: list[int]
    execution_id: str
    file: ProducedFile

    @property
    def ledger(self) -> DeliveryLedger:
        return DeliveryLedger(self.settings, self.store, node_id="test-node")

    async def job(self) -> DeliveryJob:
        definitions = await load_definitions(self.store, default_timezone="UTC")
        config = definitions.configs[self.config_id]
        deliveries = [definitions.deliveries[i] for i in self.delivery_ids]
        execution = await executions.get_execution(self.store, self.execution_id)
        assert execution is not None
        return DeliveryJob(
            execution_id=self.execution_id,
            config=config,
            deliveries=deliveries,
            file=self.file,
            variables=templating.run_variables(
                execution_id=self.execution_id,
                config=config,
                parameters=execution.parameters,
                scheduled_for=execution.scheduled_for,
                row_count=self.file.row_count,
                file_name=self.file.name,
            ),
        )

    async def execution(self) -> domain.Execution:
        found = await executions.get_execution(self.store, self.execution_id)
        assert found is not None
        return found


@dataclass(frozen=True, kw_only=True)
class DeliverySpec:
    method: str
    config: Mapping[str, Any]
    max_retry: int = 3
    retry_interval_minutes: int = 1
    recipients: Sequence[tuple[str, str]] = ()
    """(recipient_type, email)"""


async def seed_report(
    store: Store,
    settings: Settings,
    file: ProducedFile,
    specs: Sequence[DeliverySpec],
    *,
    parameters: Mapping[str, Any] | None = None,
    status: domain.ExecutionStatus = domain.ExecutionStatus.RUNNING,
) -> Report:
    n = next(_names)
    async with store.engine.begin() as conn:
        ds = (
            await conn.execute(
                sa.insert(schema.datasources).values(
                    name=f"ds-{n}", type="sqlite", connection_config={"path": "/dev/null"}
                )
            )
        ).inserted_primary_key[0]
        config_id = (
            await conn.execute(
                sa.insert(schema.configs).values(
                    name=f"daily-sales-{n}",
                    datasource_id=ds,
                    query_text="SELECT 1",
                    output_format="csv",
                )
            )
        ).inserted_primary_key[0]
        delivery_ids = []
        for index, spec in enumerate(specs):
            delivery_id = (
                await conn.execute(
                    sa.insert(schema.deliveries).values(
                        config_id=config_id,
                        name=f"{spec.method}-{index}",
                        method=spec.method,
                        delivery_config=dict(spec.config),
                        max_retry=spec.max_retry,
                        retry_interval_minutes=spec.retry_interval_minutes,
                    )
                )
            ).inserted_primary_key[0]
            for kind, email in spec.recipients:
                await conn.execute(
                    sa.insert(schema.recipients).values(
                        delivery_id=delivery_id, recipient_type=kind, email=email
                    )
                )
            delivery_ids.append(delivery_id)
    execution_id = await executions.insert_execution(
        store,
        config_id=config_id,
        trigger_type=domain.TriggerType.MANUAL,
        status=status,
        parameters=dict(parameters or {"region": "north"}),
        node_id="test-node",
    )
    assert execution_id is not None
    await executions.update_execution(
        store,
        execution_id,
        started_at=datetime.now(UTC),
        file_name=file.name,
        file_path=str(file.path),
        file_size=file.size,
        file_sha256=file.sha256,
        row_count=file.row_count,
    )
    return Report(
        store=store,
        settings=settings,
        config_id=config_id,
        delivery_ids=delivery_ids,
        execution_id=execution_id,
        file=file,
    )


# -- peers --------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[peers.SSHServer]:
    server = peers.SSHServer(tmp_path_factory.mktemp("sshd"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def smtp_server(tmp_path: Path) -> Iterator[peers.SMTPServer]:
    server = peers.SMTPServer(tmp_path / "smtp")
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def s3_server() -> Iterator[peers.S3Server]:
    server = peers.S3Server()
    server.start()
    yield server
    server.stop()


@pytest.fixture
async def bucket(s3_server: peers.S3Server) -> str:
    import aioboto3

    name = f"reports-{next(_names)}-{servers.SESSION}"
    async with aioboto3.Session().client("s3", **s3_server.client_args()) as s3:
        await s3.create_bucket(Bucket=name)
    return name


@pytest.fixture
async def receiver() -> AsyncIterator[peers.WebhookReceiver]:
    hook = peers.WebhookReceiver()
    await hook.start()
    yield hook
    await hook.stop()
