"""Remember every release mlreactor queues, so that what its target later says about it can be tied back.

``TrackedReleases`` wraps the ``queue_release`` adapter: after the adapter returns (a new release, or the one an
earlier attempt queued), the release is recorded under ``(target, scope, run/release id)`` with the model, version,
correlation id and workspace of the action — insert-if-absent, so redeliveries change nothing. Hooks and the
reconciler find it there (``Ledger.find_release``); nothing they receive can name a different model.

The adapters' ``ActionResult.data`` says which target it was: ``target`` (``azure-devops-pipeline`` |
``azure-devops-release`` | ``github-actions``), ``organization`` or ``repository``, ``project``, ``id``, ``url``,
``model``, ``version``, ``release_key``. Where an adapter leaves a field out (the Azure DevOps adapter records
``flavour`` rather than ``target``), the action's parameters and the settings fill it in.
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import urlsplit

from shared.actions import ActionAdapter, ActionResult, PlannedAction
from shared.clock import Clock, SystemClock
from shared.ledger.port import Ledger, ReleaseRecord
from shared.releases.signals import TargetKind

log = logging.getLogger("mlreactor.releases.tracking")


def organization_name(url: str) -> str:
    """``https://dev.azure.com/contoso`` → ``contoso`` (also ``contoso.visualstudio.com`` and local fakes' paths)."""
    parts = urlsplit(url.strip().rstrip("/"))
    path = [p for p in parts.path.split("/") if p]
    if path:
        return path[-1].lower()
    host = (parts.hostname or url).lower()
    return host.split(".")[0]


def release_record(action: PlannedAction, result: ActionResult, default_organization: str | None,
                   now: Any) -> ReleaseRecord | None:
    """The record of a queued release, or None when the result names no run/release (nothing to follow)."""
    data, params = dict(result.data), action.params
    release_id = str(data.get("id") or result.external_id or "")
    model, version = str(data.get("model") or getattr(params, "model", "")), str(
        data.get("version") or getattr(params, "version", ""))
    if not release_id or not model or not version:
        return None
    flavour = str(data.get("flavour") or getattr(params, "flavour", "pipeline"))
    target = str(data.get("target") or (
        TargetKind.AZURE_DEVOPS_RELEASE if flavour == "classic" else TargetKind.AZURE_DEVOPS_PIPELINE))
    if target == TargetKind.GITHUB_ACTIONS:
        scope = str(data.get("repository") or getattr(params, "repository", "") or "")
        definition = str(data.get("workflow") or getattr(params, "workflow", "") or "")
    else:
        organization = str(data.get("organization") or getattr(params, "organization", None)
                           or default_organization or "")
        scope = organization_name(organization) if organization else ""
        definition = str(data.get("pipeline_id") or data.get("definition_id")
                         or getattr(params, "pipeline_id" if flavour != "classic" else "definition_id", "") or "")
    if not scope:
        log.warning("queue_release %s: cannot tell the organization/repository of release %s; its hooks will be "
                    "ignored", action.rule, release_id)
        return None
    return ReleaseRecord(
        target=target, scope=scope.lower(), release_id=release_id, model=model, version=version,
        correlation_id=action.correlation_id, workspace=action.event.source, queued_at=now,
        project=str(data.get("project") or getattr(params, "project", "") or ""), definition=definition,
        environment=str(data.get("environment") or getattr(params, "environment", "") or ""),
        url=str(data.get("url") or result.url or ""), release_key=str(data.get("release_key") or ""),
        updated_at=now,
    )


class TrackedReleases:
    """A ``queue_release`` adapter that records what it queued (see the module docstring)."""

    def __init__(self, inner: ActionAdapter, ledger: Ledger, *, default_organization: str | None = None,
                 clock: Clock | None = None) -> None:
        self.inner = inner
        self._ledger = ledger
        self._organization = default_organization
        self._clock = clock or SystemClock()

    @property
    def live(self) -> bool:
        return self.inner.live

    def __getattr__(self, name: str) -> Any:
        """Everything else is the wrapped adapter's (e.g. a router's gate verdicts for ``/api/health``)."""
        return getattr(self.inner, name)

    def execute(self, action: PlannedAction) -> ActionResult:
        result = self.inner.execute(action)
        record = release_record(action, result, self._organization, self._clock.now())
        if record is not None:
            # A TransientError here fails the action; its redelivery finds the release queued and tracks it then.
            self._ledger.track_release(record)
        return result
