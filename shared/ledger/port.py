"""The ledger port: what the engine needs from durable, shared state — and nothing more.

Two implementations: ``sqlite`` (embedded default, several processes on one machine) and ``tables`` (Azure Table
Storage, every Function instance). Both must pass ``tests/ledger_conformance.py``.

Event claim timeline (one event key, two instances A and B)::

    A: claim ──► IN_PROGRESS(lease until t+L) ── actions ── finish ──► DONE(outcome)
    B:      claim (before t+L) ──► BUSY: raise, Event Grid redelivers later
    B:      claim (after A died, after t+L) ──► RESUMED: take over; done actions are skipped
    B:      claim (after finish) ──► DONE: duplicate
    A: transient failure ── release ──► RELEASED: the next claim RESUMES at once
"""

from __future__ import annotations

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
    STARTED = "started"  # intent recorded; the result is not known yet
    DONE = "done"
    FAILED = "failed"  # permanent failure, recorded for a person


@dataclass(frozen=True)
class EventRecord:
    key: str
    event_id: str
    status: EventStatus
    outcome: str | None
    lease_until: datetime | None
    attempts: int
    updated_at: datetime


@dataclass(frozen=True)
class ClaimResult:
    outcome: ClaimOutcome
    record: EventRecord


@dataclass(frozen=True)
class ActionRecord:
    key: str
    event_key: str
    rule: str
    kind: str
    status: ActionStatus
    attempts: int
    external_id: str | None
    detail: str
    url: str | None
    updated_at: datetime
    #: What the action found out (e.g. a quality gate's verdict), so a redelivery that skips the done action
    #: still gives later actions the same result.
    data: dict[str, Any] = field(default_factory=dict)


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


@dataclass(frozen=True)
class QuarantineRecord:
    at: datetime
    event_key: str | None
    event_id: str | None
    reason: str
    raw: str


class Ledger(Protocol):
    """Durable state shared by every instance. All times are timezone-aware UTC, passed in (injectable clock)."""

    def claim_event(self, key: str, event_id: str, now: datetime, lease: timedelta) -> ClaimResult: ...

    def finish_event(self, key: str, outcome: str, now: datetime) -> None: ...

    def release_event(self, key: str, now: datetime) -> None: ...

    def reopen_event(self, key: str, now: datetime) -> bool:
        """Make a finished (e.g. quarantined) event claimable again, for redrive. False if unknown."""
        ...

    def get_action(self, key: str) -> ActionRecord | None: ...

    def start_action(self, key: str, event_key: str, rule: str, kind: str, now: datetime) -> ActionRecord:
        """Record the intent (insert-if-absent) and return the record as it now stands; counts the attempt."""
        ...

    def finish_action(
        self,
        key: str,
        status: ActionStatus,
        now: datetime,
        *,
        external_id: str | None = None,
        detail: str = "",
        url: str | None = None,
        data: dict[str, Any] | None = None,
    ) -> None: ...

    def acquire_throttle(self, key: str, holder: str, window: timedelta, now: datetime) -> ThrottleDecision:
        """Compare-and-swap on the window: the holder of an open window re-enters it (redelivery)."""
        ...

    def quarantine(self, record: QuarantineRecord) -> None: ...

    def quarantined(self, since: datetime | None = None) -> list[QuarantineRecord]: ...

    def record_audit(self, entry: AuditEntry) -> None: ...

    def audit(
        self,
        *,
        event_id: str | None = None,
        correlation_id: str | None = None,
        since: datetime | None = None,
        limit: int = 200,
    ) -> list[AuditEntry]:
        """Newest first."""
        ...

    def purge(self, before: datetime) -> int:
        """Delete every record last touched before ``before``; returns how many."""
        ...

    def close(self) -> None: ...
