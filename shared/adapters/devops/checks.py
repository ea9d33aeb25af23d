"""Judge whether an Azure DevOps target holds a release for a person — from what the REST API says, nothing else.

YAML pipelines: the environment the production stage deploys to, looked up by name (distributed-task environments
API), and its check configurations (``GET {project}/_apis/pipelines/checks/configurations?resourceType=environment
&resourceId=ID&$expand=settings``, Microsoft's "Check Configurations - List"). Only an **Approval** check (type id
``8c6f20a7-a545-4486-9777-f762fafe0d4d``) with at least one approver asks a person; branch control, business hours
and other checks do not. A missing environment is *not gated*: Azure Pipelines creates it — without checks — the first
time a run targets it (Microsoft's "Create and target an environment").

Classic releases: the release definition's stage (``environments[].name``) must have a pre-deployment approval that is
not automated (``preDeployApprovals.approvals[].isAutomated: false`` with an approver).

These functions are pure: the adapter fetches, ``mlreactor simulate`` feeds its own world, both judge the same way.
Unverified: pre-/post-check approvals (separate check types) are not counted as approvals here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from shared.adapters.releases.gates import GateCheck

APPROVAL_CHECK_TYPE = "8c6f20a7-a545-4486-9777-f762fafe0d4d"


def judge_environment(
    where: str, name: str, environment_id: int | None, checks: Sequence[Mapping[str, Any]], now: datetime
) -> GateCheck:
    """The verdict on a YAML pipeline's environment from its check configurations (raw JSON, settings expanded)."""

    def verdict(gated: bool, reason: str, **found: Any) -> GateCheck:
        return GateCheck("azure-devops-pipeline", where, name, gated, reason, checked_at=now, **found)

    if environment_id is None:
        return verdict(False, f"environment {name!r} does not exist, and Azure Pipelines would create it without "
                              "checks on the first run: create it and add an Approval check")
    approvals = [c for c in checks if _is_approval(c)]
    if not approvals:
        kinds = sorted({str((c.get("type") or {}).get("name") or "?") for c in checks})
        has = f" (it has only: {', '.join(kinds)})" if kinds else ""
        return verdict(False, f"environment {name!r} (id {environment_id}) has no Approval check{has}")
    for check in approvals:
        settings = check.get("settings") or {}
        approvers = tuple(_identity(a) for a in settings.get("approvers") or [])
        if not approvers:
            continue
        minimum = int(settings.get("minRequiredApprovers") or 0)
        blocked = bool(settings.get("requesterCannotBeApprover", False))
        needed = f"{minimum} of {len(approvers)}" if minimum else f"all {len(approvers)}"
        own = "requesters may not approve their own runs" if blocked else "requesters may approve their own runs"
        return verdict(True, f"Approval check by {', '.join(approvers)} ({needed} required; {own})",
                       approvers=approvers, min_approvers=minimum or len(approvers), self_approval_blocked=blocked)
    return verdict(False, f"the Approval check on environment {name!r} names no approver")


@dataclass(frozen=True)
class StageApproval:
    """One pre-deployment approval step of a classic stage (``ReleaseDefinitionApprovalStep``)."""

    automated: bool
    approver: str | None


def judge_stage(
    where: str,
    stage: str,
    stages: Mapping[str, Sequence[StageApproval]],
    now: datetime,
    *,
    creator_can_approve: bool | None = None,
    required: int | None = None,
) -> GateCheck:
    """The verdict on a classic release definition's stage from its pre-deployment approvals."""

    def verdict(gated: bool, reason: str, **found: Any) -> GateCheck:
        return GateCheck("azure-devops-release", where, stage, gated, reason, checked_at=now, **found)

    named = {s.lower(): s for s in stages}
    if stage.lower() not in named:
        return verdict(False, f"the definition has no stage {stage!r} (stages: {', '.join(stages) or 'none'})")
    steps = stages[named[stage.lower()]]
    people = tuple(s.approver for s in steps if not s.automated and s.approver)
    if not people:
        what = "is automated (nobody is asked)" if steps else "is missing"
        return verdict(False, f"the pre-deployment approval of stage {stage!r} {what}")
    blocked = None if creator_can_approve is None else not creator_can_approve
    own = {None: "", True: "; the release creator may not approve", False: "; the release creator may approve"}[blocked]
    minimum = required or len(people)
    return verdict(True, f"pre-deployment approval by {', '.join(people)} ({minimum} required{own})",
                   approvers=people, min_approvers=minimum, self_approval_blocked=blocked)


def _is_approval(check: Mapping[str, Any]) -> bool:
    kind = check.get("type") or {}
    return str(kind.get("id", "")).lower() == APPROVAL_CHECK_TYPE or str(kind.get("name", "")).lower() == "approval"


def _identity(identity: Mapping[str, Any]) -> str:
    return str(identity.get("displayName") or identity.get("uniqueName") or identity.get("id") or "?")
