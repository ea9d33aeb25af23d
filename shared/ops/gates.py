"""``mlreactor gates check``: is every release rule's target held by a person — live, now, reading only.

For each ``queue_release`` action of each enabled rule, the target's approvals are read from Azure DevOps or GitHub
exactly as the release adapter reads them before a queue (no cache), and judged the same way. Nothing is queued,
dispatched or changed: the adapters are built on a ledger that refuses every call.

``check_release_gates`` returns typed results, for this command and for ``doctor``; ``cached_gates`` reports what
the running process last verified (``/api/health``). A target that cannot be checked (not configured, templated from
the event, unreachable) counts as not gated: the command fails closed.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from shared.actions import ActionAdapter, ActionKind, QueueReleaseParams
from shared.adapters.releases.gates import GateCheck
from shared.adapters.releases.router import ReleaseRouter
from shared.errors import MlreactorError
from shared.reactions import Rules
from shared.settings import Settings

_TEMPLATE = re.compile(r"\{\{|\{%")
_TARGET_FIELDS = ("organization", "project", "pipeline_id", "definition_id", "repository", "workflow", "environment")


@dataclass(frozen=True)
class RuleGate:
    """One release action's target and its verdict (``gated`` False also when it could not be checked)."""

    rule: str
    index: int
    target: str
    environment: str
    gated: bool
    why: str
    check: GateCheck | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"rule": self.rule, "index": self.index, "target": self.target, "environment": self.environment,
                "gated": self.gated, "why": self.why, "check": self.check.as_dict() if self.check else None}


def check_release_gates(settings: Settings, rules: Rules) -> list[RuleGate]:
    """Read every release rule's approvals now; one ``RuleGate`` per ``queue_release`` action of an enabled rule."""
    router = _router(settings)
    results: list[RuleGate] = []
    for rule in rules.spec.rules:
        if not rule.enabled:
            continue
        for index, spec in enumerate(rule.do):
            if spec.kind is not ActionKind.QUEUE_RELEASE:
                continue
            params = spec.params
            assert isinstance(params, QueueReleaseParams)
            results.append(_check(rule.name, index, params, router))
    return results


def cached_gates(adapters: Iterable[ActionAdapter]) -> dict[str, Any]:
    """What this process last verified, per target (``/api/health``): no request is made."""
    verdicts = [v for a in adapters if isinstance(a, ReleaseRouter) for v in a.verdicts()]
    return {"all_gated": all(v.gated for v in verdicts), "verified": [v.as_dict() for v in verdicts]}


def _check(rule: str, index: int, params: QueueReleaseParams, router: ReleaseRouter) -> RuleGate:
    target = _describe(params)

    def verdict(gated: bool, why: str, check: GateCheck | None = None) -> RuleGate:
        return RuleGate(rule, index, target, params.environment, gated, why, check)

    templated = [f for f in _TARGET_FIELDS if _TEMPLATE.search(str(getattr(params, f) or ""))]
    if templated:
        return verdict(False, f"cannot check: {', '.join(templated)} depend(s) on the event")
    adapter = router.for_params(params)
    if not adapter.live or not hasattr(adapter, "check_gate"):
        setting = "MLREACTOR_GITHUB_APP_ID/…_PRIVATE_KEY or MLREACTOR_GITHUB_TOKEN" if params.flavour == "github" \
            else "MLREACTOR_DEVOPS_ORGANIZATION_URL"
        return verdict(False, f"cannot check: the target is not configured ({setting})")
    try:
        check = adapter.check_gate(params)
    except MlreactorError as exc:
        return verdict(False, f"cannot check: {exc}")
    return verdict(check.gated, check.reason, check)


def _describe(params: QueueReleaseParams) -> str:
    if params.flavour == "github":
        return f"github-actions {params.repository} {params.workflow}"
    org = (params.organization or "").rstrip("/").rsplit("/", 1)[-1]
    where = f"{org + '/' if org else ''}{params.project}"
    if params.flavour == "classic":
        return f"azure-devops-release {where} definition {params.definition_id}"
    return f"azure-devops-pipeline {where} pipeline {params.pipeline_id}"


def _router(settings: Settings) -> ReleaseRouter:
    """The live release adapters the settings allow, on a ledger that refuses to be used (reading only)."""
    from shared.adapters.dryrun import DryRunAdapter  # noqa: PLC0415 - the CLI loads what it needs

    devops: ActionAdapter = DryRunAdapter(ActionKind.QUEUE_RELEASE)
    github: ActionAdapter = DryRunAdapter(ActionKind.QUEUE_RELEASE)
    if settings.devops_organization_url:
        from shared.adapters.devops import DevOpsReleaseAdapter  # noqa: PLC0415

        devops = DevOpsReleaseAdapter(settings, _ReadOnly())
    if settings.github_is_configured:
        from shared.adapters.github import GitHubReleaseAdapter  # noqa: PLC0415

        github = GitHubReleaseAdapter(settings, _ReadOnly())
    return ReleaseRouter(devops, github)


class _ReadOnly:
    """The gate check never queues: any use of the ledger would be a bug."""

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"the gate check must not use the ledger ({name})")
