"""The way of one event: admit → claim → match → plan → execute → record.

Exactly-once effects under at-least-once delivery come from two keys: the event's (source + id), claimed once with a
lease before any action runs (the recorded intent of all its actions), and each action's idempotency key, under which
its result is recorded before the next action starts — the last one together with the event's outcome and audit entry
(one ledger write). A redelivery skips actions already done and tells the adapter when an earlier attempt may have
acted without recording it (``PlannedAction.resumed``).

Outcomes: ``acted``, ``ignored`` (with the reason), ``duplicate``, ``rejected`` (workspace not allowed),
``quarantined`` (permanent failure, stored for a person) and ``failed`` (transient: the trigger raises so Event Grid
redelivers; done actions are not repeated).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from shared import templates
from shared.actions import (
    PARAMS,
    ActionAdapter,
    ActionKind,
    ActionResult,
    NotifyParams,
    PlannedAction,
    derived_key,
    idempotency_key,
)
from shared.clock import Clock, SystemClock, format_duration
from shared.errors import EventParseError, NotReadyError, PermanentError, TransientError
from shared.events import AzureMLEvent, ParseFailure, UnknownEvent, parse_delivery
from shared.ledger.port import (
    ActionRecord,
    ActionStatus,
    AuditEntry,
    ClaimOutcome,
    ClaimResult,
    Ledger,
    QuarantineRecord,
)
from shared.outcomes import ActionOutcome, EventOutcome, Outcome
from shared.reactions import ONCE_WINDOW, Action, Rule, Rules, Verdict, evaluate, once_key, throttle_key
from shared.telemetry import NoTelemetry, Telemetry

log = logging.getLogger("mlreactor.engine")


@dataclass(frozen=True)
class Plan:
    """What the rules make of one event, before anything runs (also what ``explain`` prints)."""

    verdicts: list[Verdict]
    actions: list[PlannedAction]
    errors: list[ActionOutcome]

    @property
    def fired(self) -> list[Rule]:
        return [v.rule for v in self.verdicts if v.matched]


class Engine:
    def __init__(
        self,
        rules: Rules,
        ledger: Ledger,
        adapters: dict[ActionKind, ActionAdapter],
        *,
        clock: Clock | None = None,
        lease: timedelta = timedelta(minutes=2),
        budget: timedelta = timedelta(seconds=20),
        telemetry: Telemetry | None = None,
    ) -> None:
        self.rules = rules
        self.ledger = ledger
        self.adapters = adapters
        self.clock = clock or SystemClock()
        self.lease = lease
        self.budget = budget
        self.telemetry = telemetry or NoTelemetry()

    # entry points ---------------------------------------------------------------------------------------------
    def handle_delivery(self, payload: str | bytes | object) -> list[EventOutcome]:
        """A whole delivery (array or single object); every element gets an outcome, bad ones are quarantined."""
        try:
            items = parse_delivery(payload)
        except EventParseError as exc:
            raw = payload if isinstance(payload, str) else repr(payload)
            return [self._quarantine_unparsed(None, str(exc), raw)]
        return [self.handle(item) for item in items]

    def handle(self, item: AzureMLEvent | ParseFailure) -> EventOutcome:
        if isinstance(item, ParseFailure):
            return self._quarantine_unparsed(item.event_id, item.reason, json.dumps(item.raw, default=str))
        with self.telemetry.event(item) as span:
            outcome = self._handle_event(item)
            self.telemetry.event_done(span, outcome)
        log.info(
            "event %s %s: %s (%s)", item.id, item.kind.value, outcome.outcome.value, outcome.reason,
            extra={"correlation_id": item.correlation_id, "event_id": item.id, "outcome": outcome.outcome.value},
        )
        return outcome

    def plan(self, event: AzureMLEvent) -> Plan:
        """Match every rule and render the actions of those that fire (no throttle, no side effects).

        Parameters that use an earlier action's result (``{{ gate.verdict }}``) are rendered only when the rule
        runs; here they show as not yet renderable.
        """
        context = event.context()
        verdicts = [evaluate(rule, event, context) for rule in self.rules.spec.rules]
        actions: list[PlannedAction] = []
        errors: list[ActionOutcome] = []
        for verdict in verdicts:
            if not verdict.matched:
                continue
            for index, spec in enumerate(verdict.rule.do):
                try:
                    actions.append(self._render(verdict.rule, index, spec, event, context))
                except (PermanentError, ValueError) as exc:
                    key = idempotency_key(verdict.rule.name, index, spec.kind, event)
                    errors.append(ActionOutcome(verdict.rule.name, spec.kind.value, key, "failed", _render_error(
                        index, spec, exc)))
        return Plan(verdicts, actions, errors)

    @staticmethod
    def _render(
        rule: Rule, index: int, spec: Action, event: AzureMLEvent, context: dict[str, Any],
        steps: dict[str, Any] | None = None, key: str | None = None,
    ) -> PlannedAction:
        scope = {**context, **(steps or {})}
        rendered = templates.render_tree(spec.params.model_dump(exclude={"id", "if_"}), scope)
        params = PARAMS[spec.kind].model_validate(rendered, context={"rendered": True})
        return PlannedAction(
            key=key or idempotency_key(rule.name, index, spec.kind, event), rule=rule.name, index=index, kind=spec.kind,
            params=params, event=event, correlation_id=event.correlation_id, steps=dict(steps or {}),
        )

    # the way of one event -------------------------------------------------------------------------------------
    def _handle_event(self, event: AzureMLEvent) -> EventOutcome:
        def result(outcome: Outcome, reason: str, **kw: Any) -> EventOutcome:
            return EventOutcome(
                event.id, event.event_type, event.subject, event.source, event.correlation_id, outcome, reason, **kw
            )

        if not self.rules.allows(event):
            reason = f"source {event.source!r} is not in allowed_workspaces"
            return self._record(event, result(Outcome.REJECTED, reason))
        if isinstance(event, UnknownEvent):
            return self._record(event, result(Outcome.IGNORED, f"unknown event type {event.event_type!r}"))

        now = self.clock.now()
        try:
            claim = self.ledger.claim_event(event.key, event.id, now, self.lease)
        except TransientError as exc:
            return self._record(event, result(Outcome.FAILED, f"cannot claim the event: {exc}"))
        if claim.outcome is ClaimOutcome.DONE:  # logged and traced, not stored: a redelivery storm adds no rows
            return result(Outcome.DUPLICATE, f"already handled (outcome {claim.record.outcome})")
        if claim.outcome is ClaimOutcome.BUSY:
            reason = "another instance holds this event's lease; Event Grid will redeliver"
            return self._record(event, result(Outcome.FAILED, reason))

        pending: list[ActionRecord] = []
        try:
            outcome = self._react(event, result, claim, pending)
        except TransientError as exc:  # ledger trouble mid-way: let Event Grid come back
            outcome = result(Outcome.FAILED, f"transient failure: {exc}")
        except Exception as exc:  # a bug must not loop for 24 h: quarantine it for a person
            log.exception("unexpected error handling event %s", event.id)
            outcome = result(Outcome.QUARANTINED, f"internal error: {type(exc).__name__}: {exc}")
        if outcome.outcome is Outcome.QUARANTINED and self.rules.spec.on_quarantine is not None:
            outcome = self._tell_quarantine(event, outcome, claim, pending)
        return self._settle(event, outcome, claim, pending)

    def _tell_quarantine(
        self, event: AzureMLEvent, outcome: EventOutcome, claim: ClaimResult, pending: list[ActionRecord]
    ) -> EventOutcome:
        """Notify the ``on_quarantine`` channels, once per event (recorded like any action; a redrive skips it).

        The event is quarantined whatever the notification does: a failure to tell is logged, not retried.
        """
        assert self.rules.spec.on_quarantine is not None
        params = NotifyParams(
            channels=self.rules.spec.on_quarantine.channels, message="event_quarantined",
            facts={"Reason": outcome.reason[:500]},
        )
        notice = PlannedAction(
            key=idempotency_key("on_quarantine", 0, ActionKind.NOTIFY, event), rule="on_quarantine", index=0,
            kind=ActionKind.NOTIFY, params=params, event=event, correlation_id=event.correlation_id,
        )
        told, _ = self._run(notice, claim, pending)
        if told.status not in ("done", "skipped"):
            log.warning("event %s is quarantined but Ops could not be told: %s", event.id, told.detail)
        return replace(outcome, actions=[*outcome.actions, told])

    def _react(
        self,
        event: AzureMLEvent,
        result: Callable[..., EventOutcome],
        claim: ClaimResult,
        pending: list[ActionRecord],
    ) -> EventOutcome:
        context = event.context()
        matched = [rule for rule in self.rules.spec.rules if evaluate(rule, event, context).matched]
        fired: list[Rule] = []
        held: list[str] = []
        for rule in matched:
            reason = self._hold(rule, event, context)
            if reason:
                held.append(f"{rule.name} ({reason})")
            else:
                fired.append(rule)
        if not fired:
            return result(Outcome.IGNORED, f"throttled: {', '.join(held)}" if held else "no rule matched")

        deadline = time.monotonic() + self.budget.total_seconds()
        outcomes = [
            o for rule in fired for o in self._execute_rule(rule, event, context, deadline, claim, pending)
        ]
        names = [rule.name for rule in fired]
        retry = [o for o in outcomes if o.status == "retry"]
        failed = [o for o in outcomes if o.status == "failed"]
        suffix = f"; throttled: {', '.join(held)}" if held else ""
        if retry:
            reason = "; ".join(f"{o.rule}/{o.kind}: {o.detail}" for o in retry)
            return result(Outcome.FAILED, f"will retry: {reason}{suffix}", reactions=names, actions=outcomes)
        if failed:
            reason = "; ".join(f"{o.rule}/{o.kind}: {o.detail}" for o in failed)
            return result(Outcome.QUARANTINED, reason + suffix, reactions=names, actions=outcomes)
        counts = {status: sum(o.status == status for o in outcomes) for status in ("done", "skipped", "not run")}
        reason = f"{counts['done']} action(s) done"
        reason += f", {counts['skipped']} already done before" if counts["skipped"] else ""
        reason += f", {counts['not run']} not run (condition false)" if counts["not run"] else ""
        return result(Outcome.ACTED, reason + suffix, reactions=names, actions=outcomes)

    def _hold(self, rule: Rule, event: AzureMLEvent, context: dict[str, Any]) -> str | None:
        """Why a matching rule must not fire now (throttle window or once_per), or None."""
        now = self.clock.now()
        key = throttle_key(rule, event, context)
        if key is not None and rule.throttle is not None:
            window = rule.throttle.once_within
            if not self.ledger.acquire_throttle(key, event.key, window, now).allowed:
                return f"once within {format_duration(window)}"
        key = once_key(rule, event, context)
        if key is not None and not self.ledger.acquire_throttle(key, event.key, ONCE_WINDOW, now).allowed:
            return f"already fired once for {key.split('|', 2)[2]}"
        return None

    def _execute_rule(
        self,
        rule: Rule,
        event: AzureMLEvent,
        context: dict[str, Any],
        deadline: float,
        claim: ClaimResult,
        pending: list[ActionRecord],
    ) -> list[ActionOutcome]:
        """Run a rule's actions in order; each action's result is visible to the later ones under its ``id``.

        After an action fails, the later actions that have an ``if`` wait with it (their condition may depend on
        the failed step); the others still run, so one failing channel does not block the rest — unless the failed
        action has an ``id``: its result is a step later parameters and messages read (a gate's verdict), so all
        later actions wait for it rather than run without it.
        """
        steps: dict[str, Any] = {}
        blocked: str | None = None
        missing: list[str] = []  # ids of earlier actions that did not complete
        outcomes: list[ActionOutcome] = []
        for index, spec in enumerate(rule.do):
            key = idempotency_key(rule.name, index, spec.kind, event)

            def outcome(status: str, detail: str, spec: Action = spec, key: str = key) -> ActionOutcome:
                return ActionOutcome(rule.name, spec.kind.value, key, status, detail)

            if blocked and (spec.params.if_ is not None or missing):
                waits_for = spec.params.if_ or ", ".join(missing)
                outcomes.append(outcome(blocked, f"waits for an earlier failed action ({waits_for})"))
                continue
            if not spec.params.condition_holds({**context, **steps}):
                outcomes.append(outcome("not run", f"if {spec.params.if_}: false"))
                continue
            if time.monotonic() > deadline:
                outcomes.append(outcome("retry", "out of time for this delivery; continues on redelivery"))
                blocked = "retry"
                continue
            try:
                action = self._render(rule, index, spec, event, context, steps, key)
            except (PermanentError, ValueError) as exc:
                outcomes.append(outcome("failed", _render_error(index, spec, exc)))
                blocked = blocked or "failed"
                missing += [spec.params.id] if spec.params.id else []
                continue
            done, data = self._run(action, claim, pending)
            outcomes.append(done)
            if done.status in ("retry", "failed"):
                blocked = "retry" if "retry" in (blocked, done.status) else "failed"
                missing += [spec.params.id] if spec.params.id else []
            elif spec.params.id:
                steps[spec.params.id] = data
        return outcomes

    def _run(
        self, action: PlannedAction, claim: ClaimResult, pending: list[ActionRecord]
    ) -> tuple[ActionOutcome, dict[str, Any]]:
        with self.telemetry.action(action) as span:
            started = time.monotonic()
            outcome, data = self._attempt(action, claim, pending)
            self.telemetry.action_done(span, outcome, time.monotonic() - started)
        return outcome, data

    def _attempt(
        self, action: PlannedAction, claim: ClaimResult, pending: list[ActionRecord]
    ) -> tuple[ActionOutcome, dict[str, Any]]:
        """Run one action unless an earlier attempt recorded it done.

        The previous action's result (``pending``) is stored before this action's effect; this one's is left in
        ``pending``, for the next action or for ``_settle`` to store with the event's outcome.
        """
        earlier = claim.actions.get(action.key)
        if earlier is not None and earlier.status is ActionStatus.DONE:
            detail = f"already done: {earlier.detail}"
            return self._outcome(action, "skipped", detail, earlier.external_id, earlier.url), dict(earlier.data)
        if claim.outcome is ClaimOutcome.RESUMED:  # an earlier attempt may have acted without recording it
            action = replace(action, resumed=True, earlier=claim.actions)
        if pending:  # one write: the previous action's result with its sub-steps' results
            self.ledger.record_action(*pending)
            pending.clear()
        adapter = self.adapters[action.kind]
        try:
            done: ActionResult = adapter.execute(action)
        except NotReadyError as exc:
            return self._outcome(action, "retry", f"not ready: {exc}"), {}
        except TransientError as exc:
            log.warning("action %s/%s failed transiently: %s", action.rule, action.kind, exc)
            return self._outcome(action, "retry", str(exc)), {}
        except PermanentError as exc:
            pending.append(self._result(action, ActionStatus.FAILED, str(exc), earlier=earlier))
            return self._outcome(action, "failed", str(exc)), {}
        pending.extend(done.records)
        pending.append(self._result(
            action, ActionStatus.DONE, done.detail, done.external_id, done.url, done.data, earlier=earlier
        ))
        return self._outcome(action, "done", done.detail, done.external_id, done.url), dict(done.data)

    def _result(
        self, action: PlannedAction, status: ActionStatus, detail: str, external_id: str | None = None,
        url: str | None = None, data: Mapping[str, Any] | None = None, *, earlier: ActionRecord | None = None,
    ) -> ActionRecord:
        """``earlier``: the record a previous attempt left (e.g. a failure being redriven), replaced in one write."""
        return ActionRecord(
            key=action.key, event_key=action.event.key, event_id=action.event.id, rule=action.rule,
            kind=action.kind.value, status=status, external_id=external_id, detail=detail, url=url,
            updated_at=self.clock.now(), data=dict(data or {}), version=earlier.version if earlier else "",
        )

    @staticmethod
    def _outcome(
        action: PlannedAction, status: str, detail: str, external_id: str | None = None, url: str | None = None
    ) -> ActionOutcome:
        return ActionOutcome(action.rule, action.kind.value, action.key, status, detail, external_id, url)

    def _settle(
        self, event: AzureMLEvent, outcome: EventOutcome, claim: ClaimResult, pending: list[ActionRecord]
    ) -> EventOutcome:
        """Store the outcome, the last action result and the audit entry in one ledger write.

        A transient failure releases the event (the next delivery resumes at once). If the outcome cannot be
        stored, the delivery fails: the lease runs out and a redelivery resumes, skipping what is recorded done.
        """
        now = self.clock.now()
        try:
            if outcome.outcome is Outcome.QUARANTINED:
                raw = json.dumps(event.raw(), default=str)
                self.ledger.quarantine(QuarantineRecord(now, event.key, event.id, outcome.reason, raw))
            final = None if outcome.outcome is Outcome.FAILED else outcome.outcome.value
            kept = self.ledger.settle_event(
                claim.record, final, now, actions=pending, audit=self._audit_entry(event, outcome, now)
            )
        except TransientError as exc:
            if outcome.outcome is Outcome.FAILED:
                return outcome
            return replace(outcome, outcome=Outcome.FAILED, reason=f"cannot record {outcome.outcome.value}: {exc}")
        if not kept:
            log.warning("event %s: another instance took it over while this one worked (lease ran out)", event.id)
        return outcome

    def _quarantine_unparsed(self, event_id: str | None, reason: str, raw: str) -> EventOutcome:
        """Store a payload that cannot be parsed, once: a batch redelivered after another event's failure brings
        the same poison payload back, and it is claimed by its content like any event by its id."""
        now = self.clock.now()
        digest = derived_key({"unparsed": raw})
        claim = self.ledger.claim_event(f"unparsed|{digest}", digest, now, self.lease)
        if claim.outcome in (ClaimOutcome.DONE, ClaimOutcome.BUSY):
            return EventOutcome(event_id, None, None, None, None, Outcome.DUPLICATE, "already quarantined")
        self.ledger.quarantine(QuarantineRecord(now, None, event_id, reason, raw))
        outcome = EventOutcome(event_id, None, None, None, None, Outcome.QUARANTINED, reason)
        audit = AuditEntry(now, None, event_id, "", "", "", "", outcome.outcome.value, reason)
        self.ledger.settle_event(claim.record, outcome.outcome.value, now, audit=audit)
        log.warning("quarantined an unparseable event %s: %s", event_id, reason)
        return outcome

    def _record(self, event: AzureMLEvent, outcome: EventOutcome) -> EventOutcome:
        """Audit an outcome reached without a claim. If that cannot be stored, the delivery fails (and comes back)."""
        try:
            self.ledger.record_audit(self._audit_entry(event, outcome, self.clock.now()))
        except TransientError as exc:
            if outcome.outcome is Outcome.FAILED:
                return outcome
            return replace(outcome, outcome=Outcome.FAILED, reason=f"cannot record {outcome.outcome.value}: {exc}")
        return outcome

    @staticmethod
    def _audit_entry(event: AzureMLEvent, outcome: EventOutcome, now: datetime) -> AuditEntry:
        return AuditEntry(
            at=now, event_key=event.key, event_id=event.id, event_type=event.event_type,
            subject=event.subject, source=event.source, correlation_id=event.correlation_id,
            outcome=outcome.outcome.value, reason=outcome.reason, reactions=list(outcome.reactions),
            actions=[a.as_dict() for a in outcome.actions],
        )


def _render_error(index: int, spec: Action, exc: BaseException) -> str:
    return f"do[{index}].{spec.kind.value}: cannot render parameters: {_first_line(exc)}"


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
