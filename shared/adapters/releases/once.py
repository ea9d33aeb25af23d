"""At most one release per (rule, action, model version), whichever target queues it.

The engine's idempotency key is per event, so a second, model-scoped guard lives here, in the same ledger::

    release key = sha256({"rule", "index", "model", "version"})    carried in the run (parameter/input and run name)
                                                                      or the release description
    claim_event("release|<key>")   a lease: one instance at a time queues this model version (the claim is the intent)
      CLAIMED  → verify the gate → queue → settle_event(lock done, with the result) in one write
      DONE     → already queued (by this or another event): answer with the recorded run/release, queue nothing
      BUSY     → another instance is queueing it right now: TransientError, Event Grid redelivers
      RESUMED  → an earlier attempt may have queued and died before recording: the target finds its run by the key
                 and only queues if there is none

A permanent failure (a target that is not gated, a 4xx) releases the lock with a FAILED record: a redrive after the
fix claims it again and queues exactly once.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

from shared.actions import ActionResult, PlannedAction, QueueReleaseParams, derived_key
from shared.clock import Clock
from shared.errors import PermanentError, TransientError
from shared.lease import Held
from shared.ledger.port import ActionRecord, ActionStatus, ClaimOutcome, Ledger
from shared.redact import redact


def release_key(action: PlannedAction, params: QueueReleaseParams) -> str:
    """The model-version-scoped key: the same rule and action releasing the same model version is one release."""
    return derived_key({"rule": action.rule, "index": action.index, "model": params.model, "version": params.version})


def queue_once(
    ledger: Ledger,
    clock: Clock,
    lease: timedelta,
    action: PlannedAction,
    key: str,
    target: str,
    queue: Callable[[bool], ActionResult],
) -> ActionResult:
    """Run ``queue(resumed)`` at most once per release key; answer a repeat with what was recorded."""
    params = action.params
    assert isinstance(params, QueueReleaseParams)
    lock = f"release|{key}"
    # The lock is shared by every event that releases this model version: its claims all name the lock itself as
    # their event id (the Tables ledger places records by it).
    claim = ledger.claim_event(lock, lock, clock.now(), lease)
    if claim.outcome is ClaimOutcome.DONE:
        done = claim.actions.get(key)
        if done is None:  # the lock outlived its record (purged): say so rather than queue again
            raise PermanentError(f"the release of {params.model}:{params.version} was queued before; its record "
                                 "is gone")
        return ActionResult(
            external_id=done.external_id, url=done.url, data=done.data,
            detail=f"already queued for {params.model}:{params.version}: {done.detail}",
        )
    if claim.outcome is ClaimOutcome.BUSY:
        raise TransientError(
            f"the release of {params.model}:{params.version} to {target} is being queued by another delivery; "
            "Event Grid will redeliver"
        )

    def record(status: ActionStatus, detail: str, done: ActionResult | None = None) -> ActionRecord:
        return ActionRecord(
            key=key, event_key=lock, event_id=lock, rule=action.rule, kind=action.kind.value, status=status,
            external_id=done.external_id if done else None, detail=detail, url=done.url if done else None,
            updated_at=clock.now(), data=dict(done.data) if done else {},
        )

    # The lock is renewed while a slow lookup or queue runs (see shared/lease.py); settled with its last version.
    held = Held(ledger, claim.record, lease, clock)
    try:
        with held.kept():
            result = queue(claim.outcome is ClaimOutcome.RESUMED or action.resumed)
    except PermanentError as exc:
        ledger.settle_event(held.record, None, clock.now(), actions=[record(ActionStatus.FAILED, redact(str(exc)))])
        raise
    except TransientError:
        ledger.settle_event(held.record, None, clock.now())
        raise
    ledger.settle_event(held.record, "queued", clock.now(), actions=[record(ActionStatus.DONE, result.detail, result)])
    return result
