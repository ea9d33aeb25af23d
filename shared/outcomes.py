"""What happened to one event and to each of its actions: the engine writes these, telemetry and the views read them.

Kept below the engine and telemetry so that neither has to import the other.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class Outcome(StrEnum):
    ACTED = "acted"
    IGNORED = "ignored"
    DUPLICATE = "duplicate"
    REJECTED = "rejected"
    QUARANTINED = "quarantined"
    FAILED = "failed"


@dataclass(frozen=True)
class ActionOutcome:
    rule: str
    kind: str
    key: str
    status: str  # done | skipped (done before) | not run (its if was false) | failed | retry
    detail: str = ""
    external_id: str | None = None
    url: str | None = None
    #: What the action found out or would have sent (a gate's verdict, a release's id, dry-run's rendered
    #: parameters): structured, so the audit and ``--json`` need not parse ``detail``.
    data: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "rule": self.rule, "kind": self.kind, "key": self.key[:16], "status": self.status,
            "detail": self.detail, "external_id": self.external_id, "url": self.url, "data": dict(self.data),
        }


@dataclass(frozen=True)
class EventOutcome:
    event_id: str | None
    event_type: str | None
    subject: str | None
    source: str | None
    correlation_id: str | None
    outcome: Outcome
    reason: str
    reactions: list[str] = field(default_factory=list)
    actions: list[ActionOutcome] = field(default_factory=list)

    @property
    def should_raise(self) -> bool:
        """Only a transient failure asks Event Grid to redeliver."""
        return self.outcome is Outcome.FAILED

    def as_dict(self) -> dict[str, Any]:
        return {
            "event_id": self.event_id,
            "event_type": self.event_type,
            "subject": self.subject,
            "correlation_id": self.correlation_id,
            "outcome": self.outcome.value,
            "reason": self.reason,
            "reactions": list(self.reactions),
            "actions": [a.as_dict() for a in self.actions],
        }
