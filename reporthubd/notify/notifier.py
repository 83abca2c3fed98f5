"""The notifier: from lifecycle events to notices in the ledger (issue 17, item 1).

It subscribes to the lifecycle events of this node (`__call__`: quick, it only queues) and
decides in its own task (`run`, named and watched by the daemon's Supervisor):

- a run that ended (COMPLETED, PARTIAL, FAILED, TIMEOUT): the report's rules step the incident
  (notify_rules.step) as every node reads it from the store (store/incidents.py): a notice for
  its first bad run, optional reminders, `recovered` at the first good run after it, and at the
  rule's `suspend_after`-th consecutive failure the schedule is paused (store/pauses.py, the
  reason recorded and shown) and a `suspended` notice says so;
- a PARTIAL or FAILED run with a delivery given up (its last ledger row FAILED):
  `retries_exhausted`, one per delivery;
- a fire claimed SKIPPED as missed: one `missed` notice per schedule and outage (the fires of
  one outage share their reason, which names the down window; paused and holiday fires are not
  missed); a run that waited past its wait deadline (wait_expired, PENDING -> SKIPPED) is
  missed too, one notice per fire;
- a run whose conditional alert turned false (on_transition, engine/alerting.py): one
  `resolved` notice to each delivery the alert went through (the report's deliveries that took
  the run that turned it true; store/alerts.alert_audience), not to the rules' targets: the
  resolution goes where the alert went. It is part of the alert, as the alert's own send is, so
  it is decided even with `[notifications] enabled = false` (which silences the rules).

Notices are recorded under keys every node derives alike, so a notice exists once however many
nodes see its cause (store/notices.py); this node's sender is woken to send it at once.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from reporthubd import domain, logs, metrics
from reporthubd.lifecycle.events import LifecycleEvent
from reporthubd.notify import messages, report_rules
from reporthubd.notify.settings import NotificationSettings
from reporthubd.notify_rules import Event, Incident, Rule, RuleError, step
from reporthubd.store import alerts, delivery_logs, executions, incidents, notices, pauses
from reporthubd.store.database import Store, error_line
from reporthubd.timeutil import utcnow

log = logs.get(__name__)

_S = domain.ExecutionStatus
OUTCOMES = {_S.FAILED: Event.FAILED, _S.TIMEOUT: Event.TIMEOUT, _S.PARTIAL: Event.PARTIAL}
ENDED = frozenset({_S.COMPLETED, _S.PARTIAL, _S.FAILED, _S.TIMEOUT})
SUSPENDED = "suspended"
RESOLVED = "resolved"
SUSPENDED_BY = "reporthubd"
_WINDOW = re.compile(r"^missed: .*? from \S+ to \S+")
QUEUE_LIMIT = 10_000
DECIDERS = 4
SWEEP_SECONDS = 60.0
SWEEP_WINDOW = timedelta(minutes=15)


@dataclass(frozen=True, kw_only=True)
class Report:
    name: str
    owners: tuple[str, ...]
    rules: tuple[Rule, ...]


def missed_key(schedule_id: int | None, reason: str) -> str:
    """One key per schedule and outage: the reason up to its down window."""
    found = _WINDOW.match(reason)
    stem = found.group(0) if found else reason
    digest = hashlib.sha256(stem.encode()).hexdigest()[:20]
    return f"missed:{schedule_id}:{digest}"


class Notifier:
    def __init__(
        self,
        settings: NotificationSettings,
        store: Store,
        *,
        node_id: str,
        link_base: str,
        wake: Callable[[], None] = lambda: None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.node_id = node_id
        self.link_base = link_base
        self.wake = wake
        self._queue: asyncio.Queue[LifecycleEvent] = asyncio.Queue(QUEUE_LIMIT)
        self._bad_rules_logged: set[int] = set()

    # -- the subscriber: quick, it only queues ------------------------------------------------

    def __call__(self, event: LifecycleEvent) -> None:
        if not self.settings.enabled and event.new is not _S.COMPLETED:
            return  # with notices off, only an alert's resolution (a COMPLETED run) is decided
        wanted = event.new in ENDED and event.transition is not domain.Transition.CREATED
        missed = (
            event.new is _S.SKIPPED
            and event.transition is domain.Transition.CREATED
            and (event.reason or "").startswith("missed")
        )
        # A run that waited past its deadline (wait_policy skip) is a missed fire too.
        missed = missed or event.transition is domain.Transition.WAIT_EXPIRED
        if not (wanted or missed):
            return
        try:
            self._queue.put_nowait(event)
        except asyncio.QueueFull:
            log.error("notice queue full: event dropped", execution_id=event.execution_id)

    @property
    def enabled(self) -> bool:
        """The rules' notices are decided (`[notifications] enabled`)."""
        return self.settings.enabled

    async def idle(self) -> None:
        """Wait until every queued event is decided (tests, benchmarks)."""
        await self._queue.join()

    # -- the sweep: decisions a node died before making ---------------------------------------

    async def sweep_loop(self) -> None:
        """Every SWEEP_SECONDS, decide again the latest ended run of each stream that ended in
        the last SWEEP_WINDOW, and the first missed fire of each schedule and outage recorded
        in it: a node killed between a run's end (or a claim) and its notice's record loses
        nothing (the records are idempotent, so the decisions already made add nothing)."""
        while True:
            await asyncio.sleep(SWEEP_SECONDS)
            try:
                await self.sweep(utcnow() - SWEEP_WINDOW)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a store outage: the next sweep tries again
                log.warning("notice sweep failed", error=error_line(exc))

    async def sweep(self, since: datetime) -> list[str]:
        recorded: list[str] = []
        for execution_id in await incidents.latest_ended(self.store, since=since):
            recorded += await self.decide_run(execution_id)
        if not self.settings.enabled:
            return recorded
        for missed in await incidents.recent_missed(self.store, since=since):
            recorded += await self.decide(
                LifecycleEvent(
                    execution_id=missed.execution_id,
                    config_id=missed.config_id,
                    schedule_id=missed.schedule_id,
                    transition=domain.Transition.CREATED,
                    old=None,
                    new=_S.SKIPPED,
                    reason=missed.reason,
                    node_id=self.node_id,
                    at=utcnow(),
                    trigger_type=domain.TriggerType.SCHEDULE,
                    scheduled_for=missed.scheduled_for,
                )
            )
        if recorded:
            log.warning("notices recorded by the sweep", count=len(recorded))
        return recorded

    # -- the decision task --------------------------------------------------------------------

    async def run(self) -> None:
        """DECIDERS workers over the queue, each a named task: decisions read the store, so a
        burst of ends (a minute boundary) is decided side by side. Their order does not
        matter: each is a function of the runs as stored, and records are idempotent."""
        async with asyncio.TaskGroup() as group:
            for n in range(DECIDERS):
                group.create_task(self._decider(), name=f"notice-decider-{n}")

    async def _decider(self) -> None:
        while True:
            event = await self._queue.get()
            try:
                await self._decide_with_retries(event)
            finally:
                self._queue.task_done()

    async def _decide_with_retries(self, event: LifecycleEvent) -> None:
        for attempt in range(1, 4):
            try:
                await self.decide(event)
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning(
                    "notice decision failed",
                    execution_id=event.execution_id,
                    attempt=attempt,
                    error=error_line(exc),
                )
                await asyncio.sleep(attempt)
        log.error("notice decision given up", execution_id=event.execution_id)

    async def decide(self, event: LifecycleEvent) -> list[str]:
        """Record the notices `event` calls for; returns the ids this node recorded."""
        report = await self.report(event.config_id)
        if report is None:
            return []
        if event.new is _S.SKIPPED:
            return await self._missed(event, report) if report.rules and self.enabled else []
        return await self.decide_run(event.execution_id, report)

    async def _resolved(self, execution: domain.Execution, report: Report) -> list[str]:
        """A conditional alert that turned false (on_transition): one "resolved" notice to each
        delivery the alert went through (see the module docstring)."""
        if execution.alert_decision != RESOLVED:
            return []
        alert_run, ids = await alerts.alert_audience(
            self.store, execution.config_id, before=execution.finished_at or utcnow()
        )
        why = execution.alert_reason or "the alert's condition no longer holds"
        if alert_run is not None:
            why += f" (the alert was sent by run {alert_run})"
        facts = self._facts(RESOLVED, report, execution, why=why)
        targets = [f"delivery:{i}" for i in ids]
        key = f"alert:{execution.id}"
        return await self._record(_for_targets(targets, key, RESOLVED, 0, execution, facts))

    async def decide_run(self, execution_id: str, report: Report | None = None) -> list[str]:
        """Record the notices the end of `execution_id` calls for (again: what was recorded
        before is not recorded twice)."""
        execution = await executions.get_execution(self.store, execution_id)
        if execution is None or execution.status not in ENDED:
            return []
        if report is None:
            report = await self.report(execution.config_id)
            if report is None:
                return []
        # Decided here, so the sweep also records a resolved notice a killed node left out.
        resolved = (
            await self._resolved(execution, report) if execution.status is _S.COMPLETED else []
        )
        if not report.rules or not self.enabled:
            return resolved
        recorded = resolved + await self._run_ended(execution, report)
        if execution.status in (_S.PARTIAL, _S.FAILED):
            recorded += await self._given_up(execution, report)
        return recorded

    async def report(self, config_id: int) -> Report | None:
        found = await incidents.report_notify(self.store, config_id)
        if found is None:
            return None
        name, raw = found
        try:
            own = report_rules.parse_notify(raw, key=f"report_configs[{config_id}].notify")
        except RuleError as exc:
            if config_id not in self._bad_rules_logged:
                self._bad_rules_logged.add(config_id)
                log.error("report notify settings refused", config_id=config_id, error=str(exc))
            own = report_rules.ReportNotify()
        rules = report_rules.effective_rules(own, self.settings.default)
        return Report(name=name, owners=own.owners, rules=rules)

    async def _run_ended(self, execution: domain.Execution, report: Report) -> list[str]:
        finished = execution.finished_at or utcnow()
        history = await incidents.history(
            self.store,
            config_id=execution.config_id,
            schedule_id=execution.schedule_id,
            execution_id=execution.id,
            finished_at=finished,
        )
        outcome = OUTCOMES.get(execution.status)
        open_key = (
            f"incident:{history.opener.execution_id}"
            if history.previous_bad and history.opener is not None
            else None
        )
        earlier = await notices.of_incident(self.store, open_key) if open_key else []
        batch: list[notices.NewNotice] = []
        suspend_after: int | None = None
        for rule in report.rules:
            targets = report_rules.targets(rule, report.owners)
            incident = None
            if open_key is not None and history.opener is not None:
                mine = [n for n in earlier if n.target in targets and n.event != SUSPENDED]
                latest = max(mine, key=lambda n: (n.sequence, n.created_at), default=None)
                incident = Incident(
                    key=open_key,
                    event=OUTCOMES.get(history.opener.status, Event.FAILED),
                    opened_at=history.opener.finished_at.timestamp(),
                    failures=history.failures,
                    sequence=latest.sequence if latest is not None else 0,
                    notified_at=latest.created_at.timestamp() if latest is not None else None,
                )
            decided = step(
                rule, incident, outcome=outcome, run_key=execution.id, now=finished.timestamp()
            )
            key = decided.incident_key
            if key is None:
                continue
            for event, sequence in decided.notices:
                facts = self._facts(
                    event.value,
                    report,
                    execution,
                    why=execution.error_message,
                    reminder=sequence,
                    incident=_incident_line(decided.incident, key, event),
                )
                batch += _for_targets(targets, key, event.value, sequence, execution, facts)
            if decided.suspend and execution.schedule_id is not None:
                suspend_after = rule.suspend_after
                facts = self._facts(
                    SUSPENDED,
                    report,
                    execution,
                    why=f"{rule.suspend_after} consecutive failures; the latest: "
                    f"{execution.error_message or execution.status.value}",
                )
                batch += _for_targets(targets, key, SUSPENDED, 0, execution, facts)
        suspending = [n for n in batch if n.event == SUSPENDED]
        recorded = await self._record(suspending)
        # The suspension's notice is its claim: a node (or a sweep) deciding the same run again
        # finds it recorded and does not pause a schedule someone has resumed since.
        if suspend_after is not None and (recorded or not suspending):
            await self._suspend(execution, suspend_after)
        return recorded + await self._record([n for n in batch if n.event != SUSPENDED])

    async def _suspend(self, execution: domain.Execution, count: int) -> None:
        assert execution.schedule_id is not None
        reason = (
            f"suspended after {count} consecutive failures (latest run {execution.id}: "
            f"{(execution.error_message or execution.status.value).splitlines()[0][:300]})"
        )
        try:
            await pauses.pause(self.store, execution.schedule_id, by=SUSPENDED_BY, reason=reason)
        except pauses.PauseConflict:
            return  # paused already (by a person, or by another node for this incident)
        except pauses.UnknownSchedule:
            return
        metrics.SUSPENDED_SCHEDULES.inc()
        log.warning(
            "schedule suspended",
            schedule_id=execution.schedule_id,
            execution_id=execution.id,
            failures=count,
        )

    async def _given_up(self, execution: domain.Execution, report: Report) -> list[str]:
        rows = await delivery_logs.logs_for_execution(self.store, execution.id)
        last: dict[int, delivery_logs.DeliveryLog] = {}
        for row in rows:
            last[row.delivery_id] = row
        batch: list[notices.NewNotice] = []
        for delivery_id, row in sorted(last.items()):
            if row.status is not domain.DeliveryStatus.FAILED:
                continue
            key = f"retries:{execution.id}:{delivery_id}"
            why = f"delivery {delivery_id} to {row.target or '?'} after attempt {row.attempt}: "
            why += row.error_message or "failed"
            for rule in report.rules:
                if Event.RETRIES_EXHAUSTED not in rule.events:
                    continue
                facts = self._facts(Event.RETRIES_EXHAUSTED.value, report, execution, why=why)
                targets = report_rules.targets(rule, report.owners)
                batch += _for_targets(
                    targets, key, Event.RETRIES_EXHAUSTED.value, 0, execution, facts
                )
        return await self._record(batch)

    async def _missed(self, event: LifecycleEvent, report: Report) -> list[str]:
        reason = event.reason or "missed"
        key = missed_key(event.schedule_id, reason)
        batch: list[notices.NewNotice] = []
        for rule in report.rules:
            if Event.MISSED not in rule.events:
                continue
            facts = messages.Facts(
                event=Event.MISSED.value,
                report_name=report.name,
                config_id=event.config_id,
                schedule_id=event.schedule_id,
                execution_id=event.execution_id,
                scheduled_for=event.scheduled_for,
                why=reason,
                link=messages.run_link(self.link_base, event.execution_id),
            )
            batch += [
                notices.NewNotice(
                    incident_key=key,
                    event=Event.MISSED.value,
                    target=target,
                    config_id=event.config_id,
                    schedule_id=event.schedule_id,
                    execution_id=event.execution_id,
                    message=messages.compose(facts),
                )
                for target in report_rules.targets(rule, report.owners)
            ]
        return await self._record(batch)

    async def record_late(
        self,
        *,
        config_id: int,
        schedule_id: int,
        scheduled_for: datetime,
        execution_id: str | None,
        why: str,
    ) -> list[str] | None:
        """The `late` notices of a fire past its schedule's deadline (notify/deadlines.py): the
        ids this node recorded, or None when no rule of the report sends `late` (or notices
        are off)."""
        if not self.enabled:
            return None
        report = await self.report(config_id)
        if report is None:
            return []
        key = f"late:{schedule_id}:{scheduled_for.isoformat()}"
        facts = messages.Facts(
            event=Event.LATE.value,
            report_name=report.name,
            config_id=config_id,
            schedule_id=schedule_id,
            execution_id=execution_id,
            scheduled_for=scheduled_for,
            why=why,
            link=messages.run_link(self.link_base, execution_id),
        )
        batch = [
            notices.NewNotice(
                incident_key=key,
                event=Event.LATE.value,
                target=target,
                config_id=config_id,
                schedule_id=schedule_id,
                execution_id=execution_id,
                message=messages.compose(facts),
            )
            for rule in report.rules
            if Event.LATE in rule.events
            for target in report_rules.targets(rule, report.owners)
        ]
        if not batch:
            return None
        return await self._record(_unique(batch))

    def _facts(
        self,
        event: str,
        report: Report,
        execution: domain.Execution,
        *,
        why: str | None,
        reminder: int = 0,
        incident: str | None = None,
    ) -> messages.Facts:
        return messages.Facts(
            event=event,
            report_name=report.name,
            config_id=execution.config_id,
            schedule_id=execution.schedule_id,
            execution_id=execution.id,
            scheduled_for=execution.scheduled_for,
            why=why,
            link=messages.run_link(self.link_base, execution.id),
            reminder=reminder,
            incident=incident,
        )

    async def _record(self, batch: list[notices.NewNotice]) -> list[str]:
        batch = _unique(batch)
        if not batch:
            return []
        ids: list[str] = []
        at = utcnow()
        for notice in batch:
            inserted = await notices.record(self.store, [notice], at=at)
            if inserted:
                ids += inserted
                metrics.NOTICES.labels(event=notice.event).inc()
                log.info(
                    "notice recorded",
                    notice_id=inserted[0],
                    notice_event=notice.event,
                    incident_key=notice.incident_key,
                    config_id=notice.config_id,
                    execution_id=notice.execution_id,
                    node_id=self.node_id,
                )
        if ids:
            self.wake()
        return ids


def _unique(batch: Iterable[notices.NewNotice]) -> list[notices.NewNotice]:
    seen: set[tuple[str, str, str, int]] = set()
    out = []
    for notice in batch:
        key = (notice.incident_key, notice.event, notice.target, notice.sequence)
        if key not in seen:
            seen.add(key)
            out.append(notice)
    return out


def _for_targets(
    targets: list[str],
    key: str,
    event: str,
    sequence: int,
    execution: domain.Execution,
    facts: messages.Facts,
) -> list[notices.NewNotice]:
    text = messages.compose(facts)
    return [
        notices.NewNotice(
            incident_key=key,
            event=event,
            target=target,
            sequence=sequence,
            config_id=execution.config_id,
            schedule_id=execution.schedule_id,
            execution_id=execution.id,
            message=text,
        )
        for target in targets
    ]


def _incident_line(incident: Incident | None, key: str, event: Event) -> str | None:
    opened_by = key.removeprefix("incident:")
    if event is Event.RECOVERED:
        return f"closed; it was opened by run {opened_by}"
    if incident is None:
        return None
    return f"opened by run {opened_by}; {incident.failures} bad run(s) in a row so far"
