"""The notice sender: takes due notices from the ledger under a lease and sends each through a
delivery method (issue 17, item 1), exactly once across nodes and restarts.

Every node runs one (`run`, a named task the daemon watches). It wakes at once when this node
recorded a notice (`wake`), and every `poll_interval_seconds` for notices other nodes recorded,
retries that are due and notices whose sender died mid-send (its lease ran out: the notice is
taken over, not lost). A notice travels through the `Deliverer` interface
(deliverers/base.py): `email:ADDRESS` as an email to that address, `delivery:ID` through that
report_deliveries row's method (email, webhook, and any other registered method), with the
notice's subject and body as the delivery's `subject`/`body`, its text as the file
(notice-<event>-<id>.txt) and its words in the template variables (`notice_subject`,
`notice_text`, `notice_event`, `notice_id`, `incident_key`, `run_url`).

The lease is the fence: right before the method's commit point (`Attempt.confirm`) the sender
extends it with a conditional write, and a node that no longer holds the notice (it was frozen
past its lease and another node took over) sends nothing. SENT and the failure states are
written only by the holder of the attempt. The one remaining window is a node killed between
the server's acceptance and the SENT write: the notice is then sent again after the lease under
the same idempotency key (`Attempt.idempotency_key`, `notice:<id>:<delivery>`), which each
channel carries as far as it can (webhook `Idempotency-Key`/`webhook-id`, Slack metadata looked
up before a repeat, Google Chat `requestId`; Teams and SMTP cannot deduplicate: see
docs/operators.md, "What exactly once means per channel").
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from reporthubd import domain, logs, metrics
from reporthubd.config import Settings
from reporthubd.deliverers.base import (
    NOTICE_RUN_PREFIX,
    Attempt,
    AttemptResult,
    DeliveryError,
    DeliveryJob,
    ProducedFile,
    deliverer_class,
)
from reporthubd.deliverers.templating import run_variables
from reporthubd.notify import messages
from reporthubd.notify.settings import NotificationSettings
from reporthubd.store import delivery_logs, executions, notices
from reporthubd.store.database import Store, error_line
from reporthubd.timeutil import utcnow

log = logs.get(__name__)

BATCH = 20
CONCURRENCY = 4
NOTICE_DELIVERY_ID = 0
"""The id of the delivery an `email:` target is sent through (it has no report_deliveries row)."""


class NoticeSender:
    def __init__(self, settings: Settings, store: Store, *, node_id: str) -> None:
        self.settings = settings
        self.store = store
        self.node_id = node_id
        self._wake = asyncio.Event()
        self._slots = asyncio.Semaphore(CONCURRENCY)

    @property
    def options(self) -> NotificationSettings:
        return self.settings.notifications

    def wake(self) -> None:
        self._wake.set()

    async def on_reload(self, settings: Settings) -> str:
        self.settings = settings
        return "notices: settings reloaded"

    async def run(self) -> None:
        while True:
            self._wake.clear()
            try:
                sent = await self.process_due()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a store outage: try again at the next poll
                log.warning("taking due notices failed", error=error_line(exc))
                sent = 0
            if sent >= BATCH:
                continue
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.options.poll_interval_seconds):
                    await self._wake.wait()

    async def process_due(self) -> int:
        """Take up to BATCH due notices and send them; returns how many were taken."""
        taken = await notices.take_due(
            self.store,
            node_id=self.node_id,
            now=utcnow(),
            lease_seconds=self.options.lease_seconds,
            limit=BATCH,
        )
        if taken:
            await asyncio.gather(*(self._send_slot(notice) for notice in taken))
        return len(taken)

    async def _send_slot(self, notice: notices.Notice) -> None:
        async with self._slots:
            try:
                await self.send(notice)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the notice stays SENDING: taken over after its lease
                log.exception("sending a notice failed", notice_id=notice.id, error=str(exc))

    async def send(self, notice: notices.Notice) -> bool:
        """One attempt of a notice this node holds; True when it was sent."""
        now = utcnow()
        subject, body = messages.split(notice.message or notice.event)
        lost = False

        async def fence(what: str) -> None:
            nonlocal lost
            until = utcnow() + timedelta(seconds=self.options.lease_seconds)
            held = await notices.extend_lease(self.store, notice, node_id=self.node_id, until=until)
            if not held:
                lost = True
                raise domain.OwnershipLost(f"notice {notice.id} taken over: {what} not done")

        path: Path | None = None
        try:
            delivery = await self._delivery(notice, subject)
            config = await self._config(notice)
            path, file = await asyncio.to_thread(self._write_file, notice)
            job = DeliveryJob(
                execution_id=notice.execution_id or notice.id,
                config=config,
                deliveries=[delivery],
                file=file,
                variables=await self._variables(notice, config, subject, body, file),
                run_key=f"{NOTICE_RUN_PREFIX}{notice.id}",
                fence=fence,
            )
            cls = await asyncio.to_thread(deliverer_class, delivery.method.value)
            result = await cls(delivery, self.settings).deliver(
                Attempt(job=job, delivery=delivery, number=notice.attempt)
            )
        except domain.OwnershipLost:
            log.warning("notice not sent: taken over by another node", notice_id=notice.id)
            return False
        except DeliveryError as exc:
            result = AttemptResult(ok=False, target=notice.target, error=str(exc))
        except (OSError, ImportError) as exc:
            result = AttemptResult(
                ok=False, target=notice.target, error=error_line(exc), retryable=True
            )
        finally:
            if path is not None:
                with contextlib.suppress(OSError):
                    await asyncio.to_thread(path.unlink)
        if lost:
            return False
        return await self._settle(notice, result, now)

    async def _settle(self, notice: notices.Notice, result: AttemptResult, now: datetime) -> bool:
        if result.ok:
            done = await notices.mark_sent(self.store, notice, node_id=self.node_id, at=utcnow())
            if done:
                metrics.NOTICE_SENDS.labels(event=notice.event, outcome="sent").inc()
                metrics.NOTICE_DELAY.observe(
                    max(0.0, (utcnow() - notice.created_at).total_seconds())
                )
                log.info(
                    "notice sent",
                    notice_id=notice.id,
                    notice_event=notice.event,
                    attempt=notice.attempt,
                    execution_id=notice.execution_id,
                )
            return done
        error = result.error or "not delivered"
        retry_at: datetime | None = None
        if result.retryable and notice.attempt < self.options.max_attempts:
            wait = self.options.retry_interval_seconds * 2 ** (notice.attempt - 1)
            if result.retry_after is not None:
                wait = max(wait, result.retry_after.total_seconds())
            retry_at = now + timedelta(seconds=min(wait, 6 * 3600))
        await notices.mark_failed(
            self.store, notice, node_id=self.node_id, error=error, retry_at=retry_at
        )
        outcome = "retrying" if retry_at is not None else "failed"
        metrics.NOTICE_SENDS.labels(event=notice.event, outcome=outcome).inc()
        log.warning(
            "notice not sent",
            notice_id=notice.id,
            notice_event=notice.event,
            attempt=notice.attempt,
            outcome=outcome,
            error=error,
        )
        return False

    async def _delivery(self, notice: notices.Notice, subject: str) -> domain.Delivery:
        kind, _, rest = notice.target.partition(":")
        texts = {"subject": "{notice_subject}", "body": "{notice_text}"}
        if kind == "email":
            return domain.Delivery(
                id=NOTICE_DELIVERY_ID,
                config_id=notice.config_id or 0,
                name="notice",
                method=domain.DeliveryMethod.EMAIL,
                delivery_config=texts,
                max_retry=0,
                retry_interval_minutes=0,
                recipients=(
                    domain.Recipient(
                        id=0,
                        delivery_id=NOTICE_DELIVERY_ID,
                        recipient_type=domain.RecipientType.TO,
                        email=rest,
                        name=None,
                    ),
                ),
            )
        if kind == "delivery" and rest.isdigit():
            found = await delivery_logs.get_delivery(self.store, int(rest))
            if not isinstance(found, domain.Delivery):
                why = "; ".join(found.problems) if found is not None else "no such row"
                raise DeliveryError(f"notice target {notice.target}: {why}")
            return domain.Delivery(
                id=found.id,
                config_id=found.config_id,
                name=found.name,
                method=found.method,
                delivery_config={**found.delivery_config, **texts},
                max_retry=found.max_retry,
                retry_interval_minutes=found.retry_interval_minutes,
                recipients=found.recipients,
                is_active=found.is_active,
            )
        raise DeliveryError(f"notice target {notice.target!r}: unknown kind of target")

    async def _config(self, notice: notices.Notice) -> domain.ReportConfig:
        found = (
            await executions.get_config(self.store, notice.config_id)
            if notice.config_id is not None
            else None
        )
        if found is not None:
            return found
        return domain.ReportConfig(
            id=notice.config_id or 0,
            name=f"report {notice.config_id}",
            description=None,
            datasource_id=0,
            query_text="",
            parameters={},
            output_format=domain.OutputFormat.CSV,
            format_options={},
            file_name_template=None,
            timeout_seconds=None,
            max_rows=None,
            empty_result_policy=domain.EmptyResultPolicy.DELIVER,
        )

    async def _variables(
        self,
        notice: notices.Notice,
        config: domain.ReportConfig,
        subject: str,
        body: str,
        file: ProducedFile,
    ) -> dict[str, Any]:
        execution = (
            await executions.get_execution(self.store, notice.execution_id)
            if notice.execution_id
            else None
        )
        variables = run_variables(
            execution_id=notice.execution_id or notice.id,
            config=config,
            parameters=dict(execution.parameters) if execution is not None else {},
            scheduled_for=execution.scheduled_for if execution is not None else None,
            started_at=execution.started_at if execution is not None else None,
            file_name=file.name,
            schedule_id=notice.schedule_id,
            trigger_type=execution.trigger_type.value if execution is not None else None,
        )
        link = next(
            (
                line.removeprefix("Look: ")
                for line in body.splitlines()
                if line.startswith("Look: ")
            ),
            None,
        )
        return variables | {
            "notice_subject": subject,
            "notice_text": body,
            "notice_event": notice.event,
            "notice_id": notice.id,
            "incident_key": notice.incident_key,
            "run_url": link,
        }

    def _write_file(self, notice: notices.Notice) -> tuple[Path, ProducedFile]:
        folder = Path(self.settings.execution.workspace).expanduser() / "notices"
        folder.mkdir(parents=True, exist_ok=True)
        data = (notice.message or notice.event).encode()
        path = folder / f"{notice.id}-{notice.attempt}.txt"
        path.write_bytes(data)
        name = f"notice-{notice.event}-{notice.id[:8]}.txt"
        return path, ProducedFile(
            path=path,
            name=name,
            size=len(data),
            sha256=hashlib.sha256(data).hexdigest(),
            media_type="text/plain",
            row_count=0,
        )
