"""Judge whether a GitHub environment holds a job for a person, from ``GET /repos/{o}/{r}/environments/{name}``.

Only a ``required_reviewers`` protection rule with at least one reviewer asks a person (GitHub's "Get an environment":
``protection_rules[]`` of type ``required_reviewers`` list ``reviewers`` and ``prevent_self_review``; any one reviewer
approves). Wait timers and branch policies do not. A missing environment is *not gated*: GitHub creates an
environment, without protection rules, the first time a job references one that does not exist (github/docs#3126;
the arit-ucsb environment-check action exists because of it). ``can_admins_bypass`` (default true) is reported.

Pure, like the Azure DevOps judge: the adapter fetches, ``mlreactor simulate`` feeds its own world.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from shared.adapters.releases.gates import GateCheck


def judge_environment(where: str, name: str, environment: Mapping[str, Any] | None, now: datetime) -> GateCheck:
    def verdict(gated: bool, reason: str, **found: Any) -> GateCheck:
        return GateCheck("github-actions", where, name, gated, reason, checked_at=now, **found)

    if environment is None:
        return verdict(False, f"environment {name!r} does not exist (or the credentials cannot see it: GitHub answers "
                              "404 for both), and GitHub creates it without protection rules when the workflow's job "
                              "first references it: create it with required reviewers")
    rules = environment.get("protection_rules") or []
    reviewing = [r for r in rules if r.get("type") == "required_reviewers"]
    if not reviewing:
        kinds = sorted({str(r.get("type")) for r in rules})
        has = f" (protection rules: {', '.join(kinds)})" if kinds else " (no protection rules)"
        return verdict(False, f"environment {name!r} has no required reviewers{has}")
    rule = reviewing[0]
    reviewers = tuple(_reviewer(r) for r in rule.get("reviewers") or [])
    if not reviewers:
        return verdict(False, f"the required-reviewers rule of environment {name!r} names nobody")
    prevent = bool(rule.get("prevent_self_review", False))
    own = "the dispatcher may not approve its own run" if prevent else "the dispatcher may approve its own run"
    bypass = "; admins may bypass" if environment.get("can_admins_bypass", True) else ""
    return verdict(True, f"required reviewers {', '.join(reviewers)} (any one approves; {own}{bypass})",
                   approvers=reviewers, min_approvers=1, self_approval_blocked=prevent)


def _reviewer(entry: Mapping[str, Any]) -> str:
    who = entry.get("reviewer") or {}
    label = who.get("login") or who.get("slug") or who.get("name") or who.get("id") or "?"
    return f"team {label}" if entry.get("type") == "Team" else str(label)
