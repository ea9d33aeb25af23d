"""The ledger port: what the engine needs from durable, shared state — and nothing more.

Two implementations: ``sqlite`` (embedded default, several processes on one machine) and ``tables`` (Azure Table
Storage, every Function instance). Both pass the conformance suite in ``tests/ledger/``.

Event claim timeline (one event key, two instances A and B)::

    A: claim ──► IN_PROGRESS(lease until t+L) ── actions ── settle(outcome) ──► DONE(outcome)
    B:      claim (before t+L) ──► BUSY: raise, Event Grid redelivers later
    B:      claim (after A died, after t+L) ──► RESUMED: take over; done actions are skipped
    B:      claim (after settle) ──► DONE: duplicate
    A: transient failure ── settle(None) ──► RELEASED: the next claim RESUMES at once
    A: a long action ── renew(version) every lease/3 ──► lease pushed on; None: lost, stop before the next effect

The claim is the recorded intent of every action of the event: no action runs before the claim is stored. Each
action's result is stored before the next action starts; the last one is stored with the event's outcome and its
audit entry in one ``settle_event`` (one atomic write on both backends), which keeps the happy path short.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, Protocol


class EventStatus(StrEnum):
    IN_PROGRESS = "in_progress"
    RELEASED = "released"
    DONE = "done"


class ClaimOutcome(StrEnum):
    CLAIMED = "claimed"  # first time seen
    RESUMED = "resumed"  # seen before, not finished (released, or a dead instance's lease expired)
    BUSY = "busy"  # another instance holds a live lease
    DONE = "done"  # finished before: a duplicate


class ActionStatus(StrEnum):
    STARTED = "started"  # intent recorded (adapters' sub-steps); the result is not known yet
    DONE = "done"  # final: never replaced
    FAILED = "failed"  # permanent failure, recorded for a person; a redrive may replace it


@dataclass(frozen=True)
class EventRecord:
    key: str
    event_id: str
    status: EventStatus
    outcome: str | None
    lease_until: datetime | None
    attempts: int
    updated_at: datetime
    #: Opaque concurrency token of this claim (the entity's ETag on Tables); ``settle_event`` is conditional on it.
    version: str = ""


@dataclass(frozen=True)
class ClaimResult:
    outcome: ClaimOutcome
    record: EventRecord
    #: Results recorded under this claim key by earlier attempts, by action key — given with RESUMED and DONE
    #: (empty on a first claim: nothing can have run yet).
    actions: Mapping[str, ActionRecord] = field(default_factory=dict)


@dataclass(frozen=True)
class ActionRecord:
    """The result of one action, keyed by its idempotency key; ``event_id`` places it beside its event."""

    key: str
    event_key: str
    event_id: str
    rule: str
    kind: str
    status: ActionStatus
    external_id: str | None
    detail: str
    url: str | None
    updated_at: datetime
    #: Attempts counted by ``start_action`` (adapters that give up after N tries); 0 if never started that way.
    attempts: int = 0
    #: What the action found out (e.g. a quality gate's verdict), so a redelivery that skips the done action
    #: still gives later actions the same result.
    data: dict[str, Any] = field(default_factory=dict)
    #: Opaque concurrency token of the stored record as it was read or written (the entity's ETag on Tables; empty
    #: when not known). A result recorded with it replaces that record without reading it again. Not content: two
    #: records that say the same are equal whatever their versions.
    version: str = field(default="", compare=False)


@dataclass(frozen=True)
class ThrottleDecision:
    """``allowed`` opens or re-enters a window; otherwise ``suppressed`` counts the firings folded into it.

    When a new window opens, ``suppressed`` is the count folded into the previous one (for digests:
    "and 14 more in the last 10 min").
    """

    allowed: bool
    suppressed: int
    window_start: datetime


@dataclass(frozen=True)
class PurgeProgress:
    """What one ``purge`` call did: ``finished`` False means its time budget ran out and the next call continues
    where this one stopped (the Tables ledger stores the continuation)."""

    deleted: int
    finished: bool


@dataclass(frozen=True)
class AuditEntry:
    at: datetime
    event_key: str | None
    event_id: str | None
    event_type: str
    subject: str
    source: str
    correlation_id: str
    outcome: str
    reason: str
    reactions: list[str] = field(default_factory=list)
    actions: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "at": self.at.isoformat(),
            "event_key": self.event_key,
            "event_id": self.event_id,
            "event_type": self.event_type,
            "subject": self.subject,
            "source": self.source,
            "correlation_id": self.correlation_id,
            "outcome": self.outcome,
            "reason": self.reason,
            "reactions": list(self.reactions),
            "actions": list(self.actions),
        }


class ReleaseState(StrEnum):
    """Where a release mlreactor queued stands, as far as its target has told (hooks) or shown (reconciler).

    States only move forward (``rank``); a terminal state never changes — a late or replayed signal for an earlier
    state is ignored, so one release ends once, however its signals arrive.
    """

    QUEUED = "queued"
    AWAITING_APPROVAL = "awaiting_approval"
    APPROVED = "approved"
    DEPLOYED = "deployed"
    REJECTED = "rejected"
    FAILED = "failed"
    EXPIRED = "expired"

    @property
    def rank(self) -> int:
        return {"queued": 0, "awaiting_approval": 1, "approved": 2}.get(self.value, 3)

    @property
    def terminal(self) -> bool:
        return self.rank == 3

    def may_become(self, other: ReleaseState) -> bool:
        """Forward only, and a terminal state is final (the same state again is a no-op, not a move)."""
        return not self.terminal and other.rank > self.rank


@dataclass(frozen=True)
class ReleaseRecord:
    """A release mlreactor queued, found again by what its target calls it: ``(target, scope, release_id)``.

    ``target`` is the kind (``azure-devops-pipeline``, ``azure-devops-release``, ``github-actions``), ``scope`` the
    organization (Azure DevOps, lower case) or ``owner/repo`` (GitHub), ``release_id`` the run or release id. The
    rest is what mlreactor knew when it queued it — the only source of model, version, correlation and workspace for
    the release's events.
    """

    target: str
    scope: str
    release_id: str
    model: str
    version: str
    correlation_id: str
    workspace: str
    queued_at: datetime
    project: str = ""
    #: The pipeline id / release definition id / workflow: what the reconciler needs to read the state.
    definition: str = ""
    environment: str = ""
    url: str = ""
    release_key: str = ""
    state: ReleaseState = ReleaseState.QUEUED
    #: When the release was first seen waiting for an approval (reminders count from here).
    waiting_since: datetime | None = None
    #: Last time the reconciler (or a signal) looked at it; the reconciler reads the least recently checked first.
    checked_at: datetime | None = None
    updated_at: datetime | None = None

    @property
    def key(self) -> str:
        return release_lookup_key(self.target, self.scope, self.release_id)


def release_lookup_key(target: str, scope: str, release_id: str) -> str:
    return f"{target}|{scope.lower()}|{release_id}"


@dataclass(frozen=True)
class QuarantineRecord:
    at: datetime
    event_key: str | None
    event_id: str | None
    reason: str
    raw: str


class Ledger(Protocol):
    """Durable state shared by every instance. All times are timezone-aware UTC, passed in (injectable clock).

    Infrastructure failures (throttling, timeouts, a busy database) raise ``TransientError``.
    """

    def claim_event(self, key: str, event_id: str, now: datetime, lease: timedelta) -> ClaimResult:
        """Claim ``key`` (see the timeline above). Every claim of one key must pass the same ``event_id``: it places
        the records (the Tables ledger keeps an event, its action results and its audit entries in the partition
        of its event id)."""
        ...

    def together(self) -> AbstractContextManager[None]:
        """The calls made inside, on this thread, as one write where the store can: SQLite runs them in one
        transaction (one commit instead of one each); Tables, whose calls here touch different partitions, runs each
        on its own. Only for calls made before any effect (a claim and the windows its rules open; the outcome of an
        event nothing runs for): atomic or not, what they decide is the same."""
        ...

    def record_action(self, *records: ActionRecord) -> None:
        """Store action results (one write when they share an event). A ``DONE`` record is final: a later result
        for the same key is dropped. An existing record keeps its attempt count."""
        ...

    def get_action(self, key: str, event_id: str) -> ActionRecord | None:
        """The record of an action (or of an adapter's own sub-step), found beside its event."""
        ...

    def start_action(
        self, key: str, event_key: str, event_id: str, rule: str, kind: str, now: datetime
    ) -> ActionRecord:
        """For adapters that track sub-steps (e.g. one record per notification channel): record the intent
        (insert-if-absent), count the attempt unless it is done, and return the record as it now stands (with its
        ``version``, so the result can be recorded over it in one write)."""
        ...

    def renew_event(self, claim: EventRecord, now: datetime, lease: timedelta) -> EventRecord | None:
        """Extend a live claim's lease to ``now + lease`` (the holder's heartbeat during a long action).

        Conditional on ``claim.version`` like ``settle_event``: the renewed record (its new version, to settle or
        renew with next), or None if the claim is no longer ours — another instance took the event over, or it was
        settled. Fast events never call it: only an action outlasting a third of the lease does.
        """
        ...

    def settle_event(
        self,
        claim: EventRecord,
        outcome: str | None,
        now: datetime,
        *,
        actions: Sequence[ActionRecord] = (),
        audit: AuditEntry | None = None,
        quarantine: QuarantineRecord | None = None,
    ) -> bool:
        """Finish the claimed event with ``outcome`` (None: release it for a redelivery), in one atomic write with
        the last action results and the audit entry — and the ``quarantine`` record of an event stored for a
        person (in the same transaction on SQLite; first, with its payload blob, on Table Storage).

        Conditional on ``claim.version``: if another instance took the event over meanwhile (our lease ran out),
        its state is left alone — the action results and the audit entry are still stored — and False is returned.
        """
        ...

    def reopen_event(self, key: str, event_id: str, now: datetime) -> bool:
        """Make a finished (e.g. quarantined) event claimable again, for redrive. False if unknown or not finished."""
        ...

    def acquire_throttle(self, key: str, holder: str, window: timedelta, now: datetime) -> ThrottleDecision:
        """Compare-and-swap on the window: the holder of an open window re-enters it (redelivery)."""
        ...

    def quarantine(self, record: QuarantineRecord) -> None: ...

    def quarantined(self, since: datetime | None = None) -> list[QuarantineRecord]:
        """Oldest first."""
        ...

    def record_audit(self, entry: AuditEntry) -> None: ...

    def audit(
        self,
        *,
        event_id: str | None = None,
        correlation_id: str | None = None,
        since: datetime | None = None,
        limit: int = 200,
    ) -> list[AuditEntry]:
        """Newest first. By event id one partition on Tables, by correlation id two; otherwise a scan (for
        operators, not for probes)."""
        ...

    def purge(self, before: datetime, *, budget: timedelta | None = None) -> PurgeProgress:
        """Delete every record last touched before ``before``. With a ``budget``, stop once it is spent; the next
        call continues the unfinished pass (with that pass's cutoff) instead of starting again."""
        ...

    def track_release(self, record: ReleaseRecord) -> bool:
        """Remember a queued release (insert-if-absent: a redelivered queue_release changes nothing). True if new."""
        ...

    def find_release(self, target: str, scope: str, release_id: str) -> ReleaseRecord | None:
        """The release mlreactor queued under that target and id, or None (a run mlreactor did not queue)."""
        ...

    def advance_release(
        self, key: str, state: ReleaseState, now: datetime, *, waiting_since: datetime | None = None
    ) -> bool:
        """Move a release to ``state`` if ``ReleaseState.may_become`` allows it (a compare-and-swap on the stored
        state); either way its ``checked_at`` becomes ``now``. True if the state moved."""
        ...

    def pending_releases(self, limit: int) -> list[ReleaseRecord]:
        """Releases not yet in a terminal state, least recently checked first, at most ``limit``."""
        ...

    def close(self) -> None: ...
