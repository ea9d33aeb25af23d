"""The way of one event: admit → claim → match → plan → execute → record.

Exactly-once effects under at-least-once delivery come from two keys: the event's (source + id), claimed once with a
lease before any action runs (the recorded intent of all its actions), and each action's idempotency key, under which
its result is recorded before the next action starts — the last one together with the event's outcome and audit entry
(one ledger write); a dry-run result, which a redelivery makes again the same, waits for that write. A redelivery
skips actions already done and tells the adapter when an earlier attempt may have acted without recording it
(``PlannedAction.resumed``).

Outcomes: ``acted``, ``ignored`` (with the reason), ``duplicate``, ``rejected`` (workspace not allowed),
``quarantined`` (permanent failure, stored for a person) and ``failed`` (transient: the trigger raises so Event Grid
redelivers; done actions are not repeated).

While it works, the holder keeps its claim alive (``shared/lease.py``) and starts an action only while the lease
covers the action's deadline. Nothing raises out of ``handle``: an unexpected error is retried for
``error_deliveries`` deliveries, then quarantined. Every text an adapter gives back is redacted here
(``shared/redact.py``) before it is stored, audited, logged or answered.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Mapping, Sequence
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
from shared.events import AzureMLEvent, ParseFailure, Registry, UnknownEvent, parse_delivery
from shared.jsontext import dumps
from shared.lease import Held, LeaseLost
from shared.ledger.port import (
    ActionRecord,
    ActionStatus,
    AuditEntry,
    ClaimOutcome,
    ClaimResult,
    EventRecord,
    Ledger,
    QuarantineRecord,
)
from shared.outcomes import ActionOutcome, EventOutcome, Outcome
from shared.reactions import ONCE_WINDOW, Action, Rule, Rules, Verdict, evaluate, once_key, throttle_key
from shared.redact import redact, redact_tree
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
        deadline: timedelta | None = None,
        renew_every: timedelta | None = None,
        error_deliveries: int = 3,
        telemetry: Telemetry | None = None,
    ) -> None:
        """``deadline`` is the most one action may take (each adapter cuts its own work inside it; default a quarter
        of the lease, 30 s for the default 2 min): an action only starts while the lease covers it. ``renew_every``
        (default ``lease / 3``) is the heartbeat of a claim held through a long action. ``error_deliveries`` bounds
        the deliveries an unexpected error is retried for before the event is quarantined with it."""
        self.rules = rules
        self.ledger = ledger
        self.adapters = adapters
        self.clock = clock or SystemClock()
        self.lease = lease
        self.budget = budget
        self.deadline = deadline if deadline is not None else lease / 4
        if self.deadline >= lease:
            raise ValueError(f"an action's deadline ({self.deadline}) must be shorter than the lease ({lease})")
        self.renew_every = renew_every
        self.error_deliveries = error_deliveries
        self.telemetry = telemetry or NoTelemetry()

    # entry points ---------------------------------------------------------------------------------------------
    def handle_delivery(self, payload: str | bytes | object) -> list[EventOutcome]:
        """A whole delivery (array or single object); every element gets an outcome, bad ones are quarantined."""
        try:
            items = parse_delivery(payload)
        except Exception as exc:
            reason = str(exc) if isinstance(exc, EventParseError) else f"cannot parse the delivery: {_describe(exc)}"
            return [self._quarantine_unparsed(None, reason, _raw_text(payload))]
        return [self.handle(item) for item in items]

    def handle(self, item: AzureMLEvent | ParseFailure) -> EventOutcome:
        """One event's outcome; nothing it raises escapes (an unexpected error is classified and recorded)."""
        if isinstance(item, ParseFailure):
            return self._quarantine_unparsed(_safe_text(item.event_id), item.reason, _raw_text(item.raw))
        with self.telemetry.event(item) as span:
            outcome = self._handle_event(item)
            self.telemetry.event_done(span, outcome)
        log.info(
            "event %.200s %s: %s (%s)", item.id, item.kind.value, outcome.outcome.value, outcome.reason,
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
                    errors.append(ActionOutcome(verdict.rule.name, spec.kind.value, key, "failed", redact(
                        _render_error(index, spec, exc))))
        return Plan(verdicts, actions, errors)

    def _render(
        self, rule: Rule, index: int, spec: Action, event: AzureMLEvent, context: dict[str, Any],
        steps: dict[str, Any] | None = None, key: str | None = None,
    ) -> PlannedAction:
        scope = {**context, **(steps or {})}
        rendered = templates.render_tree(spec.template, scope)
        params = PARAMS[spec.kind].model_validate(rendered, context={"rendered": True})
        self._check_destination(spec, params)
        return PlannedAction(
            key=key or idempotency_key(rule.name, index, spec.kind, event), rule=rule.name, index=index, kind=spec.kind,
            params=params, event=event, correlation_id=event.correlation_id, steps=dict(steps or {}),
        )

    def _check_destination(self, spec: Action, params: Any) -> None:
        """Where a request and its credential go is the rules' decision, never the event's: a destination is as the
        rules file wrote it, or — rendered from the event — a workspace in ``allowed_workspaces``. The loader refuses
        templates there already; this holds even if one got through."""
        allowed = {w.lower() for w in self.rules.spec.allowed_workspaces}
        for name in type(params).destinations:
            value = getattr(params, name, None)
            if value is None or value == getattr(spec.params, name):
                continue
            if name == "workspace" and Registry.parse(str(value)) is None and str(value).lower() not in allowed:
                raise PermanentError(f"{name} {value!r} is not in allowed_workspaces: refused")
            if name != "workspace" or Registry.parse(str(value)) is not None:
                raise PermanentError(f"{name} {value!r} was chosen by the event, not by the rules: refused")

    # the way of one event -------------------------------------------------------------------------------------
    def _handle_event(self, event: AzureMLEvent) -> EventOutcome:
        def result(outcome: Outcome, reason: str, **kw: Any) -> EventOutcome:
            return EventOutcome(
                event.id, event.event_type, event.subject, event.source, event.correlation_id, outcome, reason, **kw
            )

        stage = "admitting"
        try:
            if not self.rules.allows(event):
                reason = f"source {event.source!r} is not in allowed_workspaces"
                return self._record(event, result(Outcome.REJECTED, reason))
            if isinstance(event, UnknownEvent):
                return self._record(event, result(Outcome.IGNORED, f"unknown event type {event.event_type!r}"))
            stage = "claiming"
            now = self.clock.now()
            try:
                # SQLite: the claim and the windows its rules open are one commit — with the outcome too when no
                # rule fires (nothing runs between the claim and the outcome, so nothing needs the claim stored first).
                with self.ledger.together():
                    claim = self.ledger.claim_event(event.key, event.id, now, self.lease)
                    ours = claim.outcome in (ClaimOutcome.CLAIMED, ClaimOutcome.RESUMED)
                    firing = self._fire(event, claim) if ours else None
                    if isinstance(firing, _Firing) and not firing.fired:
                        return self._settle(event, _unfired(result, firing), claim.record, [])
            except TransientError as exc:
                return self._record(event, result(Outcome.FAILED, f"cannot claim the event: {redact(str(exc))}"))
            if firing is None:  # done before, or held by another instance
                if claim.outcome is ClaimOutcome.DONE:  # logged and traced, not stored: a redelivery storm adds no rows
                    return result(Outcome.DUPLICATE, f"already handled (outcome {claim.record.outcome})")
                reason = "another instance holds this event's lease; Event Grid will redeliver"
                return self._record(event, result(Outcome.FAILED, reason))
        except Exception as exc:
            return self._unclaimed_error(event, result, stage, exc)

        pending = _Unstored()
        held = Held(self.ledger, claim.record, self.lease, self.clock, every=self.renew_every)
        try:
            with held.kept():
                outcome = self._react(event, result, firing, claim, held, pending)
        except TransientError as exc:  # ledger trouble mid-way: let Event Grid come back
            outcome = result(Outcome.FAILED, f"transient failure: {redact(str(exc))}")
        except Exception as exc:
            outcome = self._unexpected(event, result(Outcome.FAILED, ""), _stage(exc, "reacting"), exc)
        if outcome.outcome is Outcome.QUARANTINED and self.rules.spec.on_quarantine is not None:
            outcome = self._tell_quarantine(event, outcome, claim, held, pending)
        return self._settle(event, outcome, held.record, pending.records)

    def _unexpected(self, event: AzureMLEvent, outcome: EventOutcome, stage: str, exc: BaseException) -> EventOutcome:
        """An error nobody classified: retried for ``error_deliveries`` deliveries (counted in the ledger beside the
        event), then quarantined with it. If even the count cannot be stored, the delivery fails (and comes back)."""
        log.error("unexpected error while %s event %s", stage, event.id, exc_info=exc)
        what = f"unexpected error while {stage}: {redact(_describe(exc))}"
        try:
            seen = self.ledger.start_action(
                derived_key({"event": event.key, "unexpected": True}), event.key, event.id, "(engine)",
                "unexpected-error", self.clock.now(),
            ).attempts
        except Exception as count_exc:
            return replace(outcome, outcome=Outcome.FAILED,
                           reason=f"{what}; will retry (cannot count deliveries: {redact(_describe(count_exc))})")
        if seen >= self.error_deliveries:
            return replace(outcome, outcome=Outcome.QUARANTINED,
                           reason=f"{what} (on {seen} deliveries: quarantined)")
        return replace(outcome, outcome=Outcome.FAILED,
                       reason=f"{what}; will retry (delivery {seen} of {self.error_deliveries})")

    def _unclaimed_error(
        self, event: AzureMLEvent, result: Callable[..., EventOutcome], stage: str, exc: BaseException
    ) -> EventOutcome:
        """An unexpected error before the event was claimed: counted, then quarantined without a claim."""
        outcome = self._unexpected(event, result(Outcome.FAILED, ""), stage, exc)
        if outcome.outcome is not Outcome.QUARANTINED:
            return self._record(event, outcome)
        try:
            self.ledger.quarantine(QuarantineRecord(self.clock.now(), event.key, event.id, outcome.reason,
                                                    _raw_text(event.raw())))
        except Exception as store_exc:
            return replace(outcome, outcome=Outcome.FAILED, reason=f"{outcome.reason}; cannot quarantine: "
                           f"{redact(_describe(store_exc))}")
        return self._record(event, outcome)

    def _tell_quarantine(
        self, event: AzureMLEvent, outcome: EventOutcome, claim: ClaimResult, held: Held, pending: _Unstored
    ) -> EventOutcome:
        """Notify the ``on_quarantine`` channels, once per event (recorded like any action; a redrive skips it).

        The event is quarantined whatever the notification does: a failure to tell (even a bug) is logged, not
        retried.
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
        try:
            told, _ = self._run(notice, claim, held, pending)
        except Exception as exc:
            log.error("event %s: on_quarantine failed", event.id, exc_info=exc)
            told = self._outcome(notice, "failed", f"unexpected error: {redact(_describe(exc))}")
        if told.status not in ("done", "skipped"):
            log.warning("event %s is quarantined but Ops could not be told: %s", event.id, told.detail)
        return replace(outcome, actions=[*outcome.actions, told])

    def _fire(self, event: AzureMLEvent, claim: ClaimResult) -> _Firing | Exception:
        """Match the rules and take the windows (throttle, once_per) of those that match — inside the claim's write.

        An error is handed back, not raised, so the claim is stored whatever happens: ``_react`` raises it, where an
        error in reacting is handled (released and retried, or counted and quarantined).
        """
        try:
            context = event.context()
            matched = [rule for rule in self.rules.candidates(event) if evaluate(rule, event, context).matched]
        except Exception as exc:
            escape = _Escape("matching", exc)
            escape.__cause__ = exc
            return escape
        fired: list[Rule] = []
        held_back: list[str] = []
        try:
            for rule in matched:
                reason = self._hold(rule, event, context, claim)
                if reason:
                    held_back.append(f"{rule.name} ({reason})")
                else:
                    fired.append(rule)
        except Exception as exc:
            return exc
        return _Firing(context, fired, held_back)

    def _react(
        self,
        event: AzureMLEvent,
        result: Callable[..., EventOutcome],
        firing: _Firing | Exception,
        claim: ClaimResult,
        held: Held,
        pending: _Unstored,
    ) -> EventOutcome:
        if isinstance(firing, Exception):
            raise firing
        context, fired, held_back = firing.context, firing.fired, firing.held_back
        deadline = time.monotonic() + self.budget.total_seconds()
        outcomes = [
            o for rule in fired for o in self._execute_rule(rule, event, context, deadline, claim, held, pending)
        ]
        names = [rule.name for rule in fired]
        retry = [o for o in outcomes if o.status == "retry"]
        failed = [o for o in outcomes if o.status == "failed"]
        suffix = f"; throttled: {', '.join(held_back)}" if held_back else ""
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

    def _hold(self, rule: Rule, event: AzureMLEvent, context: dict[str, Any], claim: ClaimResult) -> str | None:
        """Why a matching rule must not fire now (throttle window or once_per), or None.

        Decided only when this event first fires the rule: once an earlier delivery of it recorded one of the rule's
        actions, a redelivery (or redrive) finishes the rule whatever happened to the window since.
        """
        if claim.actions and any(
                idempotency_key(rule.name, i, spec.kind, event) in claim.actions for i, spec in enumerate(rule.do)):
            return None
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
        held: Held,
        pending: _Unstored,
    ) -> list[ActionOutcome]:
        """Run a rule's actions in order; each action's result is visible to the later ones under its ``id``.

        After an action fails, the later actions that have an ``if`` wait with it (their condition may depend on
        the failed step); the others still run, so one failing channel does not block the rest — unless the failed
        action has an ``id``: its result is a step later parameters and messages read (a gate's verdict), so all
        later actions wait for it rather than run without it. Once the claim is lost, nothing more runs.
        """
        steps: dict[str, Any] = {}
        blocked: str | None = None
        missing: list[str] = []  # ids of earlier actions that did not complete
        outcomes: list[ActionOutcome] = []
        for index, spec in enumerate(rule.do):
            key = idempotency_key(rule.name, index, spec.kind, event)

            def outcome(status: str, detail: str, spec: Action = spec, key: str = key) -> ActionOutcome:
                return ActionOutcome(rule.name, spec.kind.value, key, status, detail)

            if held.lost:
                outcomes.append(outcome("retry", f"not started: {held.lost}"))
                continue
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
                outcomes.append(outcome("failed", redact(_render_error(index, spec, exc))))
                blocked = blocked or "failed"
                missing += [spec.params.id] if spec.params.id else []
                continue
            done, data = self._run(action, claim, held, pending)
            outcomes.append(done)
            if done.status in ("retry", "failed"):
                blocked = "retry" if "retry" in (blocked, done.status) else "failed"
                missing += [spec.params.id] if spec.params.id else []
            elif spec.params.id:
                steps[spec.params.id] = data
        return outcomes

    def _run(
        self, action: PlannedAction, claim: ClaimResult, held: Held, pending: _Unstored
    ) -> tuple[ActionOutcome, dict[str, Any]]:
        with self.telemetry.action(action) as span:
            started = time.monotonic()
            outcome, data = self._attempt(action, claim, held, pending)
            self.telemetry.action_done(span, outcome, time.monotonic() - started)
        return outcome, data

    def _attempt(
        self, action: PlannedAction, claim: ClaimResult, held: Held, pending: _Unstored
    ) -> tuple[ActionOutcome, dict[str, Any]]:
        """Run one action unless an earlier attempt recorded it done.

        The earlier actions' results (``pending``) are stored before this action's effect if one of them records an
        effect; this one's is left in ``pending``, for the next action or for ``_settle`` to store with the event's
        outcome. The effect starts only while this instance holds the claim for the action's whole deadline. Every
        text the adapter gives back (its result, its error) is redacted here, before it is stored, audited or
        answered.
        """
        earlier = claim.actions.get(action.key)
        if earlier is not None and earlier.status is ActionStatus.DONE:
            detail = f"already done: {earlier.detail}"
            outcome = self._outcome(action, "skipped", detail, earlier.external_id, earlier.url, earlier.data)
            return outcome, dict(earlier.data)
        if claim.outcome is ClaimOutcome.RESUMED:  # an earlier attempt may have acted without recording it
            action = replace(action, resumed=True, earlier=claim.actions)
        if pending.effects:  # one write: the earlier actions' results with their sub-steps' results
            self.ledger.record_action(*pending.records)
            pending.clear()
        try:
            held.check(self.deadline)
        except LeaseLost as exc:
            log.warning("event %s: %s/%s not started: %s", action.event.id, action.rule, action.kind, exc)
            return self._outcome(action, "retry", str(exc)), {}
        adapter = self.adapters[action.kind]
        try:
            done: ActionResult = adapter.execute(action)
        except NotReadyError as exc:
            return self._outcome(action, "retry", f"not ready: {redact(str(exc))}"), {}
        except TransientError as exc:
            log.warning("action %s/%s failed transiently: %s", action.rule, action.kind, exc)
            return self._outcome(action, "retry", redact(str(exc))), {}
        except PermanentError as exc:
            pending.add([self._result(action, ActionStatus.FAILED, redact(str(exc)), earlier=earlier)], adapter.live)
            return self._outcome(action, "failed", redact(str(exc))), {}
        except Exception as exc:
            raise _Escape(f"executing {action.rule}/{action.kind.value}", exc) from exc
        detail, url, data = redact(done.detail), redact(done.url) if done.url else None, redact_tree(dict(done.data))
        pending.add([*done.records, self._result(
            action, ActionStatus.DONE, detail, done.external_id, url, data, earlier=earlier
        )], adapter.live)
        return self._outcome(action, "done", detail, done.external_id, url, data), dict(data)

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
        action: PlannedAction, status: str, detail: str, external_id: str | None = None, url: str | None = None,
        data: Mapping[str, Any] | None = None,
    ) -> ActionOutcome:
        return ActionOutcome(action.rule, action.kind.value, action.key, status, detail, external_id, url,
                             dict(data or {}))

    def _settle(
        self, event: AzureMLEvent, outcome: EventOutcome, claim: EventRecord, pending: Sequence[ActionRecord]
    ) -> EventOutcome:
        """Store the outcome, the action results not stored yet and the audit entry in one ledger write.

        A transient failure releases the event (the next delivery resumes at once). If the outcome cannot be
        stored, the delivery fails: the lease runs out and a redelivery resumes, skipping what is recorded done.
        The write is conditional on ``claim`` (as last renewed): if another instance took the event over, its
        state is kept and this instance says so.
        """
        now = self.clock.now()
        try:
            stored = None
            if outcome.outcome is Outcome.QUARANTINED:
                stored = QuarantineRecord(now, event.key, event.id, redact(outcome.reason), _raw_text(event.raw()))
            final = None if outcome.outcome is Outcome.FAILED else outcome.outcome.value
            kept = self.ledger.settle_event(
                claim, final, now, actions=pending, audit=self._audit_entry(event, outcome, now),
                quarantine=stored,
            )
        except Exception as exc:
            if outcome.outcome is Outcome.FAILED:
                return outcome
            if not isinstance(exc, TransientError):
                log.error("event %s: cannot record %s", event.id, outcome.outcome.value, exc_info=exc)
            reason = f"cannot record {outcome.outcome.value}: {redact(_describe(exc))}"
            return replace(outcome, outcome=Outcome.FAILED, reason=reason)
        if not kept:
            log.warning("event %s: another instance took it over while this one worked (lease ran out); its "
                        "outcome %s was not stored as the event's", event.id, outcome.outcome.value)
        return outcome

    def _quarantine_unparsed(self, event_id: str | None, reason: str, raw: str) -> EventOutcome:
        """Store a payload that cannot be parsed, once: a batch redelivered after another event's failure brings
        the same poison payload back, and it is claimed by its content like any event by its id.

        If the ledger cannot take it, the delivery fails (Event Grid brings the payload back later). Counted in the
        telemetry like any event's outcome, so the quarantine alert sees it."""
        outcome = self._store_unparsed(event_id, reason, raw)
        self.telemetry.unparsed(outcome)
        return outcome

    def _store_unparsed(self, event_id: str | None, reason: str, raw: str) -> EventOutcome:
        now = self.clock.now()
        reason = _safe_text(redact(reason)) or ""
        try:
            digest = derived_key({"unparsed": raw})
            with self.ledger.together():  # SQLite: claimed and quarantined in one commit, or neither
                claim = self.ledger.claim_event(f"unparsed|{digest}", digest, now, self.lease)
                if claim.outcome in (ClaimOutcome.DONE, ClaimOutcome.BUSY):
                    return EventOutcome(event_id, None, None, None, None, Outcome.DUPLICATE, "already quarantined")
                outcome = EventOutcome(event_id, None, None, None, None, Outcome.QUARANTINED, reason)
                audit = AuditEntry(now, None, event_id, "", "", "", "", outcome.outcome.value, reason)
                self.ledger.settle_event(claim.record, outcome.outcome.value, now, audit=audit,
                                         quarantine=QuarantineRecord(now, None, event_id, reason, raw))
        except Exception as exc:
            if not isinstance(exc, TransientError):
                log.error("cannot quarantine an unparseable event %.200s", event_id, exc_info=exc)
            why = f"cannot quarantine an unparseable event ({reason}): {redact(_describe(exc))}"
            return EventOutcome(event_id, None, None, None, None, Outcome.FAILED, why)
        log.warning("quarantined an unparseable event %.200s: %s", event_id, reason)
        return outcome

    def _record(self, event: AzureMLEvent, outcome: EventOutcome) -> EventOutcome:
        """Audit an outcome reached without a claim. If that cannot be stored, the delivery fails (and comes back)."""
        try:
            self.ledger.record_audit(self._audit_entry(event, outcome, self.clock.now()))
        except Exception as exc:
            if outcome.outcome is Outcome.FAILED:
                return outcome
            reason = f"cannot record {outcome.outcome.value}: {redact(_describe(exc))}"
            return replace(outcome, outcome=Outcome.FAILED, reason=reason)
        return outcome

    @staticmethod
    def _audit_entry(event: AzureMLEvent, outcome: EventOutcome, now: datetime) -> AuditEntry:
        return AuditEntry(
            at=now, event_key=event.key, event_id=event.id, event_type=event.event_type,
            subject=event.subject, source=event.source, correlation_id=event.correlation_id,
            outcome=outcome.outcome.value, reason=redact(outcome.reason), reactions=list(outcome.reactions),
            actions=[a.as_dict() for a in outcome.actions],
        )


class _Unstored:
    """Action results not in the ledger yet: stored with the event's outcome, or at once before the next action
    starts if one of them records an effect — a crash must not repeat a done effect. A result from an adapter that
    is not live (dry-run; the gate judging the event's own numbers) records none: a redelivery makes it again, the
    same, so it waits for the next write (on a dry run, one commit an action fewer)."""

    __slots__ = ("effects", "records")

    def __init__(self) -> None:
        self.records: list[ActionRecord] = []
        self.effects = False

    def add(self, records: Sequence[ActionRecord], live: bool) -> None:
        self.records += records
        self.effects = self.effects or live

    def clear(self) -> None:
        self.records = []
        self.effects = False


@dataclass(frozen=True)
class _Firing:
    """What the matched rules do with an event: those that fire, and why the others are held back."""

    context: dict[str, Any]
    fired: list[Rule]
    held_back: list[str]


def _unfired(result: Callable[..., EventOutcome], firing: _Firing) -> EventOutcome:
    """The outcome of an event no rule fires on: none matched, or each that did is held back (and why)."""
    held_back = firing.held_back
    return result(Outcome.IGNORED, f"throttled: {', '.join(held_back)}" if held_back else "no rule matched")


class _Escape(Exception):
    """An unexpected error, with the stage it escaped from (matching, executing rule/kind)."""

    def __init__(self, stage: str, cause: BaseException) -> None:
        super().__init__(f"{stage}: {_describe(cause)}")
        self.stage = stage
        self.cause = cause


def _stage(exc: BaseException, default: str) -> str:
    return exc.stage if isinstance(exc, _Escape) else default


def _describe(exc: BaseException) -> str:
    """``Type: message`` of the real cause, on one line, short."""
    cause = exc.cause if isinstance(exc, _Escape) else exc
    text = " ".join(str(cause).split())
    return f"{type(cause).__name__}: {text[:300]}" if text else type(cause).__name__


def _safe_text(text: str | None) -> str | None:
    """Text any ledger can store: lone surrogates (invalid Unicode) escaped."""
    if text is None:
        return None
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text


def _raw_text(raw: object) -> str:
    """The payload as it came, for the quarantine blob: storable (ASCII-escaped JSON), however deep or odd."""
    if isinstance(raw, bytes | bytearray):
        raw = raw.decode("utf-8", "backslashreplace")
    if isinstance(raw, str):
        return _safe_text(raw) or ""
    try:
        return dumps(raw)
    except (RecursionError, ValueError, TypeError) as exc:
        return json.dumps({"unserialisable payload": type(raw).__name__, "why": str(exc)[:200]})


def _render_error(index: int, spec: Action, exc: BaseException) -> str:
    return f"do[{index}].{spec.kind.value}: cannot render parameters: {_first_line(exc)}"


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
