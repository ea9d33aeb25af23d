"""A release signal in: find the release mlreactor queued, build its typed event, run it through the engine.

Hooks (``hooks.py``) and the reconciler (``reconciler.py``) both end here, so they cannot disagree::

    signal (target, scope, id, kind)
      → ledger.find_release           unknown: ``ignored`` (a run mlreactor did not queue), audited
      → state check                   already past it or ended otherwise: ``ignored`` ("already deployed")
      → ReleaseEvent                  model, version, correlation id, workspace from the ledger record only;
                                      id = sha256(target, scope, id, kind[, reminder n])
      → engine.handle                 the same allowlist, dedup, rules, audit as every event: a second signal of
                                      the same transition (a replay, or hook + reconciler) is a ``duplicate``
      → ledger.advance_release        unless the engine must see it again (``failed``)
"""

from __future__ import annotations

from datetime import datetime

from shared.actions import derived_key
from shared.engine import Engine
from shared.events import RELEASE_EVENTS, EventKind, ReleaseEvent
from shared.ledger.port import AuditEntry, ReleaseRecord, ReleaseState
from shared.outcomes import EventOutcome, Outcome
from shared.releases.signals import STATE_OF, Signal, TargetKind


def release_event(record: ReleaseRecord, signal: Signal, now: datetime, via: str, reminder: int = 0) -> ReleaseEvent:
    """The typed event of one transition. Its id depends only on the release and the transition (and the reminder
    number), so every report of that transition, from any source, is the same event."""
    fields: dict[str, object] = {"target": record.target, "scope": record.scope, "id": record.release_id,
                                 "kind": signal.kind.value}
    if reminder:
        fields["reminder"] = reminder
    waiting_since = record.waiting_since or (now if signal.kind is EventKind.RELEASE_AWAITING_APPROVAL else None)
    raw: dict[str, object] = {
        "id": derived_key(fields)[:40],
        "topic": record.workspace,
        "subject": f"releases/{record.target}/{record.scope}/{record.release_id}",
        "eventType": signal.kind.value,  # exactly the kind: the audit and the verdicts read it
        "eventTime": now.isoformat(),
        "data": {
            "target": record.target, "scope": record.scope, "project": record.project,
            "releaseId": record.release_id, "model": record.model, "version": record.version,
            "correlationId": record.correlation_id, "environment": record.environment, "url": record.url,
            "approvalUrl": signal.link or record.url, "actor": signal.actor, "comment": signal.comment,
            "status": signal.status, "via": via, "reminder": reminder,
            "waitingSince": waiting_since.isoformat() if waiting_since else None,
            "sourceType": signal.source_type, "notification": signal.notification,
        },
    }
    return RELEASE_EVENTS[signal.kind].model_validate(_flatten(raw))


def _flatten(raw: dict[str, object]) -> dict[str, object]:
    """The model's field aliases (``data.releaseid`` ...), as ``parse_event`` builds them; ``data`` kept whole."""
    data = raw["data"]
    assert isinstance(data, dict)
    return {"id": raw["id"], "source": raw["topic"], "subject": raw["subject"], "event_type": raw["eventType"],
            "time": raw["eventTime"], "data": data, **{f"data.{k.lower()}": v for k, v in data.items()}}


def receive(engine: Engine, signal: Signal, now: datetime, via: str) -> EventOutcome:
    """One signal through the chain (see the module docstring); the outcome is the engine's or ``ignored``."""
    ledger = engine.ledger
    record = ledger.find_release(signal.target, signal.scope, signal.release_id)
    if record is None:
        return _ignored(engine, signal, now, f"no release mlreactor queued is {signal.target} {signal.scope} "
                                             f"#{signal.release_id}")
    if record.environment and signal.environment and signal.environment.lower() != record.environment.lower():
        return _ignored(engine, signal, now, f"{signal.status} is about {signal.environment!r}, mlreactor waits "
                                             f"for {record.environment!r}", record)
    state = STATE_OF[signal.kind]
    if record.state is not state and not record.state.may_become(state):
        return _ignored(engine, signal, now, f"{signal.status}: the release is already {record.state.value}", record)
    outcome = engine.handle(release_event(record, signal, now, via))
    if outcome.outcome is not Outcome.FAILED:
        waiting = now if state is ReleaseState.AWAITING_APPROVAL else None
        ledger.advance_release(record.key, state, now, waiting_since=waiting)
    return outcome


def remind(engine: Engine, record: ReleaseRecord, number: int, now: datetime) -> EventOutcome:
    """The ``number``-th reminder that a release still waits: a ReleaseAwaitingApproval of its own id."""
    signal = Signal(target=TargetKind(record.target), scope=record.scope, release_id=record.release_id,
                    kind=EventKind.RELEASE_AWAITING_APPROVAL, status="still awaiting approval",
                    source_type="mlreactor:reminder")
    return engine.handle(release_event(record, signal, now, "reconciler", reminder=number))


def _ignored(engine: Engine, signal: Signal, now: datetime, reason: str,
             record: ReleaseRecord | None = None) -> EventOutcome:
    """Audited like any ignored event, so an operator sees that the hook arrived and why nothing happened."""
    source = record.workspace if record else f"{signal.target}:{signal.scope}"
    subject = f"releases/{signal.target}/{signal.scope}/{signal.release_id}"
    event_id = signal.notification or derived_key({"signal": signal.model_dump(mode="json")})[:40]
    correlation = record.correlation_id if record else ""
    engine.ledger.record_audit(AuditEntry(now, None, event_id, signal.source_type, subject, source, correlation,
                                          Outcome.IGNORED.value, reason))
    return EventOutcome(event_id, signal.source_type, subject, source, correlation, Outcome.IGNORED, reason)
