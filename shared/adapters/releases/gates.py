"""Is a release target held by a person? The verdict of one check, and a per-process book of recent verdicts.

mlreactor never trusts a release target to be gated: before every queue it reads the target's configuration (an Azure
DevOps environment's checks, a classic stage's pre-deployment approvals, a GitHub environment's protection rules) and
refuses to queue where no person would be asked. Reading only: nothing here approves, rejects or edits an approval.

A positive verdict is kept for ``release_gate_cache_seconds`` (default 10 min) so the steady state adds no request per
release; a negative one is never reused — the next release looks again, so a check added in the meantime counts at
once. The book keeps the last verdict of each target either way, for ``/api/health`` and ``mlreactor gates``.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, Literal

from shared.errors import PermanentError

TargetKind = Literal["azure-devops-pipeline", "azure-devops-release", "github-actions"]


@dataclass(frozen=True)
class GateCheck:
    """One verdict: is ``environment`` of ``where`` gated by a person, and why (not)."""

    kind: TargetKind
    where: str  # "organization contoso, project mlops, pipeline 42" / "repository contoso/ml-release, workflow ..."
    environment: str
    gated: bool
    reason: str
    approvers: tuple[str, ...] = ()
    #: Azure DevOps ``minRequiredApprovers`` (0 there means "all of them"); GitHub: any one reviewer suffices (1).
    min_approvers: int | None = None
    #: ``requesterCannotBeApprover`` (Azure DevOps) / ``prevent_self_review`` (GitHub); None where not applicable.
    self_approval_blocked: bool | None = None
    checked_at: datetime | None = None
    cached: bool = False

    @property
    def summary(self) -> str:
        """``gated: Approval by ml-release-board (1 of 1 required; requesters may not approve their own runs)``."""
        if not self.gated:
            return f"NOT gated: {self.reason}"
        return f"gated: {self.reason}"

    def as_dict(self) -> dict[str, Any]:
        return {
            "target": self.kind, "where": self.where, "environment": self.environment, "gated": self.gated,
            "reason": self.reason, "approvers": list(self.approvers), "min_approvers": self.min_approvers,
            "self_approval_blocked": self.self_approval_blocked,
            "checked_at": self.checked_at.isoformat() if self.checked_at else None, "cached": self.cached,
        }


class NotGated(PermanentError):
    """Nothing was queued: the target would deploy without asking a person. Quarantined; redrive once fixed."""

    def __init__(self, check: GateCheck) -> None:
        super().__init__(
            f"refused to queue: {check.where}, environment {check.environment!r} is not gated by a person — "
            f"{check.reason}. Nothing was queued; add the approval, then redrive the event "
            "(mlreactor deadletter redrive --quarantined)"
        )
        self.check = check


@dataclass
class GateBook:
    """Recent verdicts by target, shared by the threads of one process."""

    ttl: timedelta
    _verdicts: dict[str, GateCheck] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def fresh(self, target: str, now: datetime) -> GateCheck | None:
        """A positive verdict younger than ``ttl``, marked ``cached``; never a negative one."""
        with self._lock:
            check = self._verdicts.get(target)
        if check is None or not check.gated or check.checked_at is None or now - check.checked_at >= self.ttl:
            return None
        return replace(check, cached=True)

    def remember(self, target: str, check: GateCheck) -> None:
        with self._lock:
            self._verdicts[target] = check

    def latest(self) -> list[GateCheck]:
        with self._lock:
            return list(self._verdicts.values())
