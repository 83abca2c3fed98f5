"""The delivery job of an execution that already ran: for a retry and for a redelivery.

The engine hands the first round its `DeliveryJob`; later rounds rebuild one from what the
store recorded. Only the run's own definitions are read (its config and that config's active
deliveries, `executions.load_run_definitions`), never the whole definition set, and the file
must still be in the workspace where the execution recorded it.
"""

from __future__ import annotations

import asyncio
import mimetypes
from collections.abc import Sequence
from pathlib import Path

from reporthubd import domain
from reporthubd.deliverers import templating
from reporthubd.deliverers.base import DeliveryJob, ProducedFile, run_key
from reporthubd.engine.ledger.context import LedgerContext
from reporthubd.store import executions

MEDIA_TYPES = {
    ".csv": "text/csv",
    ".xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    ".json": "application/json",
    ".pdf": "application/pdf",
    ".gz": "application/gzip",
    ".zip": "application/zip",
}


def media_type_for(name: str) -> str:
    suffix = Path(name).suffix.lower()
    return MEDIA_TYPES.get(suffix) or mimetypes.guess_type(name)[0] or "application/octet-stream"


def produced_file(execution: domain.Execution) -> ProducedFile | None:
    """The execution's file as recorded, or None when it has none (or it left the workspace)."""
    if not execution.file_path or not execution.file_name:
        return None
    path = Path(execution.file_path)
    if not path.is_file():
        return None
    return ProducedFile(
        path=path,
        name=execution.file_name,
        size=execution.file_size if execution.file_size is not None else path.stat().st_size,
        sha256=execution.file_sha256 or "",
        media_type=media_type_for(execution.file_name),
        row_count=execution.row_count or 0,
    )


async def job_for(
    context: LedgerContext, execution: domain.Execution, delivery_ids: Sequence[int] | None
) -> tuple[DeliveryJob | None, str | None]:
    """The execution's job with its active deliveries (only `delivery_ids` when given), or None
    and the reason it cannot be delivered any more."""
    try:
        definitions = await executions.load_run_definitions(
            context.store,
            execution.config_id,
            None,  # a delivery needs no schedule: a broken one must not abandon the retry
            default_timezone=context.settings.scheduler.timezone,
        )
    except executions.DefinitionProblem as exc:
        return None, str(exc)
    config = definitions.config
    deliveries = list(definitions.deliveries)
    if delivery_ids is not None:
        deliveries = [d for d in deliveries if d.id in delivery_ids]
        if not deliveries:
            return None, "the delivery is missing or inactive"
    file = await asyncio.to_thread(produced_file, execution)
    if file is None:
        return None, "the execution's file is no longer in the workspace"
    variables = templating.run_variables(
        execution_id=execution.id,
        config=config,
        parameters=execution.parameters,
        scheduled_for=execution.scheduled_for,
        started_at=execution.started_at,
        row_count=execution.row_count,
        file_name=execution.file_name,
        schedule_id=execution.schedule_id,
        trigger_type=execution.trigger_type.value,
    )
    return (
        DeliveryJob(
            execution_id=execution.id,
            run_key=run_key(execution),
            config=config,
            deliveries=deliveries,
            file=file,
            variables=variables,
        ),
        None,
    )
